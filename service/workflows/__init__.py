"""Workflows: durable, test-gated runs (the built-in ``tdd``) whose gates the service runs itself."""
