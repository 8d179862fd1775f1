"""Runtimes: where a project's environment lives. ``docker`` (a container per project, the
default) or ``local`` (the workspace directory on the host, unsandboxed)."""
