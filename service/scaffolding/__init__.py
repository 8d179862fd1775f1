"""Scaffolding: project templates, git, and GitHub repositories."""
