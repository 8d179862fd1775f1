"""Containers: one per project, owned by the project's supervisor; status read from Docker."""
