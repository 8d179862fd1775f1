"""Projects: the API, the service over the database, and the workspace on disk."""
