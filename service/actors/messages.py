"""Every message a supervisor takes. Small, frozen, and all in this one module."""

from __future__ import annotations

from uuid import UUID

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of all supervisor messages."""


# --- container: asked by the API -------------------------------------------------------


class GetContainer(Message, frozen=True):
    """Answer the container's state, read from Docker now."""


class StartContainer(Message, frozen=True):
    """Create the container if missing, then start it; the supervisor wants it running."""


class StopContainer(Message, frozen=True):
    """Stop it; a deliberate stop is not a failure and is not restarted."""


class RestartContainer(Message, frozen=True):
    pass


class RemoveContainer(Message, frozen=True):
    """Stop and remove the container (the workspace stays)."""


class PurgeEnvironment(Message, frozen=True):
    """The project is being deleted with ``purge``: remove its container and home volume."""


ContainerRequest = GetContainer | StartContainer | StopContainer | RestartContainer | RemoveContainer


# --- container: told by the Docker events listener and by timers -------------------------


class ContainerEvent(Message, frozen=True):
    """A Docker event (``die``, ``oom``, ``start``, ``destroy``, …) of a labelled container."""

    action: str
    container_id: str
    exit_code: int | None = None


class RestartDue(Message, frozen=True):
    """A backoff timer fired. ``generation`` guards against timers made stale by a deliberate act."""

    generation: int


class Reconcile(Message, frozen=True):
    """The event stream was (re)established: compare what Docker says with what is wanted."""


class ProjectChanged(Message, frozen=True):
    """The project row changed (image, runtime, name): reload it."""


# --- sessions ---------------------------------------------------------------------------


class OpenSession(Message, frozen=True):
    """Start a program under a PTY; answers the ``PtySession``."""

    command: list[str] | None = None
    cols: int = 80
    rows: int = 24
    env: dict[str, str] | None = None
    restart: str = "never"
    run_id: UUID | None = None  # opened for a workflow run: refused once that run is over
    render: str | None = None  # "claude-stream": the output is rendered (agents.stream)
    cwd: str | None = None  # a directory of the workspace (a run's worktree)


class FindSession(Message, frozen=True):
    """One of the project's sessions (a workflow run re-attaching to its agent step's session
    after a restart); answers the ``PtySession`` or None."""

    session_id: UUID


class DefaultSession(Message, frozen=True):
    """The project's default shell session, started on demand; answers the ``PtySession``."""

    cols: int = 80
    rows: int = 24


class ListSessions(Message, frozen=True):
    pass


class CloseSession(Message, frozen=True):
    """End the session's process group and forget the session."""

    session_id: UUID


class SessionExited(Message, frozen=True):
    """Told by a session when its program ended."""

    session_id: UUID
    exit_code: int | None
    signal: int | None = None


class SessionRestartDue(Message, frozen=True):
    session_id: UUID
    generation: int


# --- workflows --------------------------------------------------------------------------


class StartRuns(Message, frozen=True):
    """A run was queued (or the service started): run the next one if none runs."""


class CancelRun(Message, frozen=True):
    run_id: UUID


class RunFinished(Message, frozen=True):
    run_id: UUID


class DiffRun(Message, frozen=True):
    """A finished run's branch against its base; answers a ``RunDiff``."""

    run_id: UUID
    limit: int = 100
    offset: int = 0


class MergeRun(Message, frozen=True):
    """Merge a succeeded run's branch into the branch it started from; answers the ``Run``."""

    run_id: UUID


class DiscardRun(Message, frozen=True):
    """Delete a finished run's branch and worktree; answers the ``Run``."""

    run_id: UUID


# --- the workspace: files and exec (done inside the environment) -----------------------


class ReadPath(Message, frozen=True):
    """List a directory or read a file; answers a ``DirectoryListing`` or the file's bytes."""

    path: str


class WriteFile(Message, frozen=True):
    """Write a file (parents created)."""

    path: str
    data: bytes


class DeleteFile(Message, frozen=True):
    """Remove a file (a link: the link itself)."""

    path: str


class Exec(Message, frozen=True):
    """Run a command to completion, streaming its output into ``channel`` (an
    ``ExecChannel`` made by the controller, read while the ask is pending)."""

    argv: list[str]
    shown: str  # what is logged of the command: its program only (arguments may hold secrets)
    cwd: str
    env: dict[str, str]
    timeout_s: float
    channel: object


# --- the supervisor itself --------------------------------------------------------------


class ChildFailed(Message, frozen=True):
    """Work the supervisor deferred to a child task broke unexpectedly: the supervisor crashes
    (and the registry restarts it), as if the handler itself had raised."""

    what: str
    error: str
