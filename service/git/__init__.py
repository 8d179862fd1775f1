"""git, in two places that never mix.

- ``host``: git on the service's host, only where no agent has had the tree: scaffolding a
  brand-new workspace (init, clone, the first push), and the bare publishing repositories
  the service owns (``publishing``).
- ``workspace``: git on a workspace the agent has had, run *inside* the project's environment
  as the agent user through ``Environment.run``; its output is data, never trusted.
"""
