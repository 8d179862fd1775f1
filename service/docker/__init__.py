"""The edge to the Docker engine (aiodocker): one client per app."""
