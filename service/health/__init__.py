"""Health: is the service, its database and its Docker engine answering."""
