"""What reaches an agent's exec environment besides the service's own ``AGENTDOCK_*``
variables: the operator's agent env file, a project's plain ``env`` and its secrets
(encrypted at rest, write-only through the API)."""
