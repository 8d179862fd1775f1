"""The ``Environment``: the one interface through which the service acts on a project's
workspace, and the only place that knows which runtime a project has.

Everything done to a workspace after it was created — PTY sessions, test runs, every git
command, test-file snapshots — goes through the project's environment and runs *inside* it
(docker: in the project's container, as the non-root ``agent`` user). The service on the host
never executes, follows or interprets workspace content: the agent that wrote it is hostile.

Two implementations: ``DockerEnvironment`` (the default, a sandbox) and ``LocalEnvironment``
(the host itself, unsandboxed; an operator's choice). A project's supervisor owns its
environment as a child; nothing else branches on the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import IO, Literal, Protocol

import msgspec

from service.actors import messages as m
from service.containers.schemas import Container
from service.runtimes.base import ContainerState, ProjectRef, RuntimeKind
from service.runtimes.pty import Holding, PtyProcess, SpawnSpec

# What a command prints is kept as a bounded tail of this many bytes, whatever it prints.
OUTPUT_LIMIT = 64 * 1024
# A chunk of a command's output as it comes: which stream, and the bytes (awaited: backpressure).
OnOutput = Callable[[Literal["stdout", "stderr"], bytes], Awaitable[None]]
BASE_ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "C.UTF-8"}


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """A command run to completion (or to its deadline)."""

    exit_code: int | None  # None: it did not finish (timed out, or its status is unknown)
    output: bytes  # the last ``output_limit`` bytes of stdout and stderr (stderr alone with a sink)
    truncated: bool = False  # the output was longer than the tail kept (or the sink's limit)
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")


class TailBuffer:
    """The last ``limit`` bytes of a stream, in bounded memory however long the stream is."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self._data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._data += chunk[-self.limit :]
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def value(self) -> bytes:
        return bytes(self._data)


class BoundedSink:
    """Writes a command's stdout to a file the service owns, up to ``limit`` bytes."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self.file = file
        self.limit = limit
        self.written = 0
        self.overflowed = False

    def write(self, chunk: bytes) -> bool:
        """Answers False once the limit is passed (the command should then be ended)."""
        if self.written + len(chunk) > self.limit:
            self.overflowed = True
            return False
        self.file.write(chunk)
        self.written += len(chunk)
        return True


class Environment(Protocol):
    """A project's environment. Its owner is the project's supervisor; the supervisor's
    children (sessions, workflow runs) call its command methods."""

    @property
    def kind(self) -> RuntimeKind: ...

    @property
    def project(self) -> ProjectRef: ...

    @property
    def container_id(self) -> str | None:
        """The container this environment runs in, if it has one."""
        ...

    def reload(self, project: ProjectRef) -> None:
        """The project's row changed (name, image): take the new values."""
        ...

    # --- lifecycle: driven by the supervisor ------------------------------------------------

    async def adopt(self) -> None:
        """At the supervisor's start: find what already exists (docker: the labelled container)."""
        ...

    async def ensure(self) -> None:
        """Make the environment ready for sessions and commands (docker: running, checked)."""
        ...

    async def container(self, request: m.ContainerRequest) -> Container | None:
        """Answer a container request of the API (get, start, stop, restart, remove)."""
        ...

    async def purge(self) -> None:
        """The project is deleted with its workspace: remove what the environment made for it
        (docker: the container and the home volume)."""
        ...

    def view(self, state: ContainerState) -> Container:
        """The API view of its container's Docker state, with what the environment knows."""
        ...

    async def on_event(self, event: m.ContainerEvent) -> None: ...

    async def on_restart_due(self, generation: int) -> None: ...

    async def reconcile(self) -> None: ...

    def close(self) -> None:
        """The supervisor stops: cancel timers (the container itself is kept)."""
        ...

    # --- work: sessions and commands ---------------------------------------------------------

    @property
    def default_shell(self) -> list[str]: ...

    def session_env(self) -> dict[str, str]:
        """The environment variables every session starts with."""
        ...

    async def spawn_pty(self, spec: SpawnSpec, *, key: str) -> PtyProcess:
        """Start ``spec.argv`` under a PTY in the workspace (docker: as ``agent``, held by
        the session holder where the image has it: the process's ``holding`` then says where)."""
        ...

    async def reattach_pty(
        self, spec: SpawnSpec, *, key: str, holding: Holding, since: int | None = None
    ) -> PtyProcess | None:
        """Attach again to a held program that an earlier service started (``spec`` gives
        the size and environment of the new attachment; ``since``, the holder's offset of the
        output the session's saved scrollback ends at). None: it cannot be there any more
        (the container stopped or restarted since); local: always None."""
        ...

    async def run(
        self,
        argv: list[str],
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        output_limit: int = OUTPUT_LIMIT,
        stdout: BoundedSink | None = None,
        stdin: bytes | None = None,
        on_output: OnOutput | None = None,
        cwd: str | None = None,
    ) -> RunResult:
        """Run ``argv`` to completion in the workspace (docker: as ``agent``), no TTY.

        Its output is kept as a bounded tail; with ``stdout``, standard output goes to that
        sink instead (bounded too) and the tail holds standard error. ``stdin`` is written to
        the command, then closed. ``on_output`` gets every chunk as it comes. ``cwd`` is a
        directory inside the environment (default: the workspace). Past ``timeout``, or when
        the caller is cancelled, the command's process group is killed; a timeout says
        ``timed_out``."""
        ...

    async def snapshot(self, patterns: tuple[str, ...], *, timeout: float, cwd: str | None = None) -> dict[str, str]:
        """Path → digest of every entry under ``cwd`` (default: the workspace) that matches
        ``patterns``, taken inside the environment: regular files by content, links by their
        target text (never followed), FIFOs, sockets and devices by what they are (never
        opened)."""
        ...
