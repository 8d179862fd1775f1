"""agentdock: persistent Docker development environments, PTY sessions and test-gated agent workflows."""

__version__ = "0.1.0"
