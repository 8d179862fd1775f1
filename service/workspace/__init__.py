"""The workspace reached through the API: files (list, read, write, delete) and one-off commands
(exec). All of it runs inside the project's environment; the host only parses plain data."""
