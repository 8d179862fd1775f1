"""The browser terminal: ``WS /api/terminal/{id}``."""
