"""The process behind a session: a program under a pseudo-terminal, in either runtime.

Output is pushed to a callback as it arrives (the PTY is always read, never left to fill);
the session decides what to do with it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Protocol

import msgspec

OnData = Callable[[bytes], None]
OnEof = Callable[[], None]

# Ending a session: each signal to the process group, then up to this long for it to go.
TERMINATION = ((signal.SIGHUP, 1.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0))


class ExitStatus(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int | None
    signal: int | None = None


class SpawnSpec(msgspec.Struct, frozen=True, kw_only=True):
    argv: list[str]
    cols: int
    rows: int
    env: dict[str, str]
    user: str | None = None
    cwd: str | None = None  # a directory of the workspace (relative), e.g. a run's worktree


class Holding(msgspec.Struct, frozen=True, kw_only=True):
    """Where a held program lives (docker, under agentdock-hold): enough for a later service to attach
    to it again. ``instance`` is the container's id and start time: a container that has
    restarted since holds none of its old sessions."""

    instance: str
    user: str


class PtyProcess(Protocol):
    holding: Holding | None  # None: the program ends with this service (local; no holder)
    # Held: the holder's count of the program's output up to the next byte ``on_data`` gets
    # (None: not counted, or not known yet). A later service asks for the output from there.
    offset: int | None

    def start_reading(self, on_data: OnData, on_eof: OnEof) -> None:
        """Deliver every chunk of output to ``on_data``, then call ``on_eof`` once."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def terminate(self) -> None:
        """End the process group: SIGHUP, SIGTERM, SIGKILL, each given a bounded time."""
        ...

    async def wait(self) -> ExitStatus:
        """After EOF: the exit status."""
        ...

    async def close(self) -> None:
        """Release what the process holds (fds, streams, tasks)."""
        ...
