"""A PTY session: one program (restarted in place when its policy says so), its scrollback,
and its viewers.

The session's own I/O never goes through the supervisor's mailbox (keystrokes and output are
the hot path); its lifecycle does: the supervisor spawns, restarts and ends the process, and
hears of its exit through ``on_exit``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

import msgspec

from service.agents.stream import ClaudeStreamRenderer
from service.logs import get_logger
from service.metrics import instruments
from service.runtimes.pty import ExitStatus, Holding, PtyProcess
from service.sessions.schemas import OutputFrame, Session, SessionState, StatusFrame
from service.sessions.screen import ScreenModel
from service.sessions.scrollback import DEFAULT_LIMIT, Scrollback
from service.sessions.viewer import DEFAULT_VIEWER_LIMIT, Frame, Viewer

log = get_logger(__name__)

# Frames, not bytes, cost the time. Output after a quiet spell goes out at once and opens a
# window of COALESCE_S; within it, output still goes out at once while the window has carried
# at most PROMPT_BYTES (typing, a prompt), and past that it is gathered until the window ends
# (or FLUSH_AT_BYTES wait), goes out as one frame and opens the next window. So typing is not
# held back, and bulk output makes about one frame a window however small its pieces arrive.
COALESCE_S = 0.004
FLUSH_AT_BYTES = 64 * 1024
PROMPT_BYTES = 1024
INTERRUPT = b"\x03"  # Ctrl-C through the terminal: SIGINT to the foreground process group

_encode = msgspec.json.Encoder().encode


class PtySession:
    def __init__(
        self,
        *,
        project_id: UUID,
        command: list[str],
        cols: int,
        rows: int,
        env: dict[str, str],
        restart: Literal["never", "on-failure"],
        on_exit: Callable[[PtySession, ExitStatus], None],
        scrollback_limit: int = DEFAULT_LIMIT,
        viewer_limit: int = DEFAULT_VIEWER_LIMIT,
        is_default: bool = False,
        renderer: ClaudeStreamRenderer | None = None,
        cwd: str | None = None,
        session_id: UUID | None = None,
        created_at: datetime | None = None,
    ) -> None:
        self.cwd = cwd  # where the program runs, relative to the workspace (None: its root)
        self.id = session_id or uuid4()
        self.project_id = project_id
        self.command = command
        self.cols = cols
        self.rows = rows
        self.env = env
        self.restart = restart
        self.is_default = is_default
        self.renderer = renderer  # turns an agent's structured output into readable lines
        self.created_at = created_at or datetime.now(UTC)
        self.holding: Holding | None = None  # set when a holder keeps the program (it outlives us)
        self.saved_version = -1  # the scrollback's version last saved to disk
        self.saved_generation = -1  # ... and the program it came from (see ``generation``)
        self.saved_at = float("-inf")  # ... and when (monotonic)
        self.generation = 0  # moves with every program attached: a restart counts output from 0
        self.saved_size = (cols, rows)  # the size last recorded (a held session's row)
        self._released = False  # let go of (service shutdown), not ended: its end is not ours to see
        self.state: SessionState = "running"
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.restart_count = 0
        self.ending = False  # ended deliberately: its exit is not a failure
        self.viewers: set[Viewer] = set()
        self.scrollback = Scrollback(scrollback_limit)
        self.screen = ScreenModel(self.scrollback, cols, rows)  # what an attaching viewer is shown
        self._sizes: dict[Viewer, tuple[int, int]] = {}  # (cols, rows) each writable viewer asked for
        self._size_lock = asyncio.Lock()
        self._fitter: asyncio.Task[None] | None = None  # a resize after a writable viewer left
        self.viewer_limit = viewer_limit
        self._on_exit = on_exit
        self._process: PtyProcess | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = bytearray()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._window_start = -COALESCE_S  # the current output window (see COALESCE_S)
        self._window_bytes = 0
        self.last_output_at = time.monotonic()
        self._exited = asyncio.Event()
        self._waiter: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    # --- the process ----------------------------------------------------------------

    def attach_process(self, process: PtyProcess) -> None:
        """Run ``process`` as this session's program (first start, or a restart in place)."""
        self._process = process
        self.generation += 1
        self.holding = process.holding
        self._decoder.reset()
        self.state, self.exit_code, self.signal = "running", None, None
        self._exited.clear()
        self.last_output_at = time.monotonic()
        self._broadcast(self.status_frame())
        process.start_reading(self._on_data, self._on_eof)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def _on_data(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= FLUSH_AT_BYTES:
            self._flush()
        elif self._flush_handle is None:  # else it joins the frame already due
            now = time.monotonic()
            if now - self._window_start >= COALESCE_S:  # after a quiet spell
                self._window_start, self._window_bytes = now, 0
                self._flush()
            elif self._window_bytes + len(self._pending) <= PROMPT_BYTES:
                self._flush()
            else:
                delay = self._window_start + COALESCE_S - now
                self._flush_handle = asyncio.get_running_loop().call_later(delay, self._flush_window)

    def _flush_window(self) -> None:
        """A busy window is over: what gathered goes out, and counts in the next window."""
        self._flush_handle = None
        self._window_start, self._window_bytes = time.monotonic(), 0
        self._flush()

    def _flush(self, *, final: bool = False) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        size = len(self._pending)
        self._window_bytes += size
        instruments.SESSION_OUTPUT_BYTES.inc(size)
        text = self._decoder.decode(self._pending, final)
        self._pending.clear()
        if self.renderer is not None:
            text = self.renderer.feed(text) + (self.renderer.finish() if final else "")
        if not text:
            return
        self.last_output_at = time.monotonic()
        # Scrollback and subscribers are updated in one synchronous step: an attach sees the
        # output either in its snapshot or as a live frame, never both, never neither.
        self.scrollback.append(text)
        self._broadcast(Frame(_encode(OutputFrame(data=text))))

    def output_offset(self) -> int | None:
        """The holder's offset of the program's output that the scrollback ends at (None: not
        counted): what came after it is still on its way, in the decoder or the renderer."""
        process = self._process
        if process is None or process.offset is None:
            return None
        waiting = len(self._pending) + len(self._decoder.getstate()[0])
        if self.renderer is not None:
            waiting += len(self.renderer.held_back.encode())
        return max(0, process.offset - waiting)

    def _on_eof(self) -> None:
        process = self._process
        if process is None or self._released:
            return
        self._waiter = asyncio.create_task(self._finish(process), name=f"session-exit-{self.id}")

    async def _finish(self, process: PtyProcess) -> None:
        """Drain to EOF (done), read the exit status, then tell viewers and the supervisor."""
        self._flush(final=True)
        status = await process.wait()
        await process.close()
        self.exit_code, self.signal = status.exit_code, status.signal
        self.state = "exited" if status.exit_code is not None else "error"
        self._broadcast(self.status_frame())
        self._exited.set()
        self._on_exit(self, status)

    async def wait_exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the program to end; answers whether it has."""
        try:
            async with asyncio.timeout(timeout):
                await self._exited.wait()
        except TimeoutError:
            return False
        return True

    def output_text(self) -> str:
        """What the program printed (as far back as the scrollback reaches)."""
        return self.scrollback.replay()

    async def end(self, timeout: float = 10.0) -> None:
        """End the program: its process group gets SIGHUP, SIGTERM, SIGKILL in turn."""
        self.ending = True
        if self._process is None or not self.running:
            return
        await self._process.terminate()
        try:
            async with asyncio.timeout(timeout):
                await self._exited.wait()
        except TimeoutError:
            log.warning("session.end_timeout", session_id=str(self.id))

    async def release(self) -> None:
        """Let go of a held program without ending it (the service stops; a later one attaches
        again): the stream closes, the program and its holder stay."""
        self._released = True
        await self.close()

    def ended_before(self, state: SessionState, exit_code: int | None, signal: int | None) -> None:
        """A re-adopted session whose program had already ended (or could not be found)."""
        self.state, self.exit_code, self.signal = state, exit_code, signal
        self._exited.set()

    async def close(self) -> None:
        """Release everything (after ``end``); viewers are told it is gone by their sockets."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        if self._process is not None:
            await self._process.close()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._fitter is not None and not self._fitter.done():
            self._fitter.cancel()
        self.screen.close()

    # --- input --------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        if self._process is None or not self.running:
            return
        async with self._write_lock:  # input from several viewers stays in order
            await self._process.write(data)

    async def interrupt(self) -> None:
        await self.write(INTERRUPT)

    async def resize(self, cols: int, rows: int) -> None:
        """Give the terminal this size (viewers' sizes go through ``viewer_size``)."""
        if (cols, rows) != (self.cols, self.rows):
            self.screen.resize(cols, rows)
        self.cols, self.rows = cols, rows
        if self._process is not None and self.running:
            await self._process.resize(cols, rows)

    # One size for several viewers: the smallest columns and the smallest rows over the
    # writable viewers that have sent a size (terminado's resize_to_smallest), so every one of
    # them shows the whole screen. A read-only viewer never resizes. When a writable viewer
    # goes, the size is computed again; with none left that sent one, it stays as it was.

    async def viewer_size(self, viewer: Viewer, cols: int, rows: int) -> None:
        """A writable viewer's terminal has this size: fit the session to its viewers."""
        if viewer.read_only or viewer not in self.viewers:
            return
        self._sizes[viewer] = (cols, rows)
        await self._fit()

    def fitted_size(self) -> tuple[int, int] | None:
        """The size the policy gives, or None while no writable viewer has sent one."""
        sizes = [size for viewer, size in self._sizes.items() if viewer in self.viewers]
        if not sizes:
            return None
        return min(cols for cols, _ in sizes), min(rows for _, rows in sizes)

    async def _fit(self) -> None:
        async with self._size_lock:  # one resize at a time, until the size is the latest fitted one
            while (size := self.fitted_size()) is not None and size != (self.cols, self.rows):
                await self.resize(*size)

    # --- viewers --------------------------------------------------------------------------

    def attach(self, *, read_only: bool) -> tuple[Viewer, list[Frame]]:
        """Subscribe a viewer; answers it with the frames to send first (status, scrollback).
        Snapshot and subscription are one synchronous step."""
        viewer = Viewer(read_only=read_only, limit=self.viewer_limit)
        first = [self.status_frame()]
        replay = self.screen.snapshot()  # the screen as it stands, not the raw bytes after a cut
        if replay:
            first.append(Frame(_encode(OutputFrame(data=replay))))
        self.viewers.add(viewer)
        return viewer, first

    @property
    def viewer_count(self) -> int:
        return len(self.viewers)

    def detach(self, viewer: Viewer) -> None:
        """Unsubscribe a viewer; the size is fitted again to the writable viewers left."""
        self.viewers.discard(viewer)
        if self._sizes.pop(viewer, None) is not None:
            with contextlib.suppress(RuntimeError):  # no event loop: nothing to resize
                if self._fitter is None or self._fitter.done():
                    self._fitter = asyncio.get_running_loop().create_task(self._fit(), name=f"session-fit-{self.id}")

    def _broadcast(self, frame: Frame) -> None:
        for viewer in list(self.viewers):
            if not viewer.push(frame):
                self.viewers.discard(viewer)
                instruments.VIEWERS_DROPPED.inc()
                log.warning(
                    "session.viewer.dropped",
                    session_id=str(self.id),
                    project_id=str(self.project_id),
                    limit=viewer.limit,
                )
        if self.viewers:  # one inc per frame, whatever its size and however many viewers
            instruments.VIEWER_FRAMES.inc()
            instruments.VIEWER_BYTES.inc(frame.size * len(self.viewers))

    def status_frame(self) -> Frame:
        return Frame(_encode(StatusFrame(state=self.state, exit_code=self.exit_code, signal=self.signal)))

    def view(self) -> Session:
        return Session(
            id=self.id,
            project_id=self.project_id,
            command=self.command,
            state=self.state,
            exit_code=self.exit_code,
            signal=self.signal,
            cols=self.cols,
            rows=self.rows,
            viewers=self.viewer_count,
            restart=self.restart,
            restart_count=self.restart_count,
            created_at=self.created_at,
        )
