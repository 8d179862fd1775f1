"""A session in the docker runtime: a Docker exec instance with ``Tty: true``, attached over
the engine's socket, resized with the exec-resize call, its exit code read from exec inspect.

Docker 20.10 (API 1.41) has no ``ConsoleSize``: an exec starts at 0x0 and a resize after
start races the program. So a wrapper sets the size inside first (``stty``), records its
pid (the process group: a TTY exec is a session leader) and execs the command. Docker has
no call that ends an exec and closing its stream leaves the process running, so ending a
session signals that process group inside the container and checks that it is gone.

Where the container has the session holder (the default images do), the program runs under
it and outlives the service: the exec is then the holder's, without a TTY (the holder owns the
program's PTY; keys and resizes go to it as frames), and a new service attaches a new one
(``reattach``). See ``service.runtimes.holder``.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from typing import Any

import aiodocker

from service.errors import Unavailable
from service.logs import get_logger
from service.runtimes import holder
from service.runtimes.docker import WORKDIR, DockerRuntime
from service.runtimes.pty import ExitStatus, Holding, OnData, OnEof, SpawnSpec

log = get_logger(__name__)

WRAPPER = 'echo $$ > "$1"; stty rows "$2" cols "$3" 2>/dev/null; shift 3; exec "$@"'

# Streaming output reaches us in pieces of a few hundred bytes to 4 KiB, and every read costs
# the event loop a wake-up and the engine a write. After a read of BULK_READ_BYTES or more the
# socket is left alone for GATHER_S, so that the next read takes what gathered meanwhile (tens
# of KiB): far less CPU per MB, here and in the engine (docs/benchmarks.md). An echoed key is a
# few bytes, and never waits.
BULK_READ_BYTES = 2048
MAX_COMPLAINTS = 3  # lines of the holder's standard error logged per stream
GATHER_S = 0.001


class DockerExecPty:
    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        container_id: str,
        exec_: Any,
        stream: Any,
        pidfile: str,
        user: str,
        instance: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.exec = exec_
        self.stream = stream
        self.pidfile = pidfile
        self.user = user
        # Held (``instance`` given): the holder's files share this prefix.
        self.holding = Holding(instance=instance, user=user) if instance is not None else None
        self.held_at = pidfile.removesuffix(".pid") if instance is not None else None
        self.offset: int | None = None  # held: known once the stream's first bytes have come
        self._head = b""  # held: the first bytes of the stream, until they make its offset
        self._ending: asyncio.Future[int | None] | None = None  # the signal `terminate` ended it with
        self._reader: asyncio.Task[None] | None = None
        self._size: tuple[int, int] | None = None
        self._program_started = False
        self._reapply: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(
        cls, runtime: DockerRuntime, container_id: str, spec: SpawnSpec, key: str, *, instance: str | None = None
    ) -> DockerExecPty:
        """Start the program; under the holder when the container has it (``instance``: the
        container's id and start time, recorded so that a later service can attach again)."""
        if instance is not None:
            at = holder.base(key)
            argv = holder.run_argv(at, spec.rows, spec.cols, spec.argv)
            return await cls._start(runtime, container_id, spec, argv, pidfile=f"{at}.pid", instance=instance)
        size = [str(spec.rows), str(spec.cols)]
        pidfile = f"/tmp/.agentdock-session-{key}.pid"  # noqa: S108 - inside the container
        argv = ["/bin/sh", "-c", WRAPPER, "agentdock-session", pidfile, *size, *spec.argv]
        return await cls._start(runtime, container_id, spec, argv, pidfile=pidfile, instance=None)

    @classmethod
    async def reattach(
        cls, runtime: DockerRuntime, container_id: str, spec: SpawnSpec, key: str, *, instance: str, since: int | None
    ) -> DockerExecPty:
        """Attach to a held program that a previous service started, its output from offset
        ``since`` on. When it is gone, the exec hands on its last output and ends at once, and
        ``wait`` tells how the program ended."""
        at = holder.base(key)
        argv = holder.attach_argv(at, spec.rows, spec.cols, since)
        return await cls._start(runtime, container_id, spec, argv, pidfile=f"{at}.pid", instance=instance)

    @classmethod
    async def _start(
        cls,
        runtime: DockerRuntime,
        container_id: str,
        spec: SpawnSpec,
        argv: list[str],
        *,
        pidfile: str,
        instance: str | None,
    ) -> DockerExecPty:
        user = spec.user or ""
        engine = runtime.engine
        try:
            async with engine.call("an exec create", timeout=30):
                exec_ = await engine.client.containers.container(container_id).exec(
                    argv,
                    stdin=True,
                    tty=instance is None,  # a held program's PTY is the holder's
                    user=user,
                    environment=spec.env,
                    workdir=posixpath.join(WORKDIR, spec.cwd) if spec.cwd else WORKDIR,
                )
                stream = exec_.start(detach=False)
                await stream.__aenter__()
        except aiodocker.DockerError as exc:
            raise Unavailable(f"the session could not start in the container: {exc.message}") from None
        return cls(
            runtime,
            container_id=container_id,
            exec_=exec_,
            stream=stream,
            pidfile=pidfile,
            user=user,
            instance=instance,
        )

    def start_reading(self, on_data: OnData, on_eof: OnEof) -> None:
        held = self.held_at is not None

        async def pump() -> None:
            protocol = _protocol_of(self.stream)
            complaints = 0
            try:
                while (message := await self.stream.read_out()) is not None:
                    if held and message.stream != 1:  # the holder's own complaint, not output
                        complaints += 1
                        if complaints <= MAX_COMPLAINTS:  # the agent can write there too
                            text = message.data[-500:].decode("utf-8", "replace")
                            log.warning("session.holder_said", container_id=self.container_id, text=text)
                        continue
                    data = message.data
                    if held:
                        data = self._counted(data)
                        if not data:
                            continue
                    elif not self._program_started:
                        self._first_output()
                    on_data(data)
                    if protocol is not None and len(message.data) >= BULK_READ_BYTES and not _queued(self.stream):
                        protocol.pause_reading()
                        try:
                            await asyncio.sleep(GATHER_S)
                        finally:
                            protocol.resume_reading()
            except (aiodocker.DockerError, OSError, RuntimeError) as exc:
                log.warning("session.stream_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                on_eof()

        self._reader = asyncio.create_task(pump(), name=f"exec-reader-{self.exec.id[:12]}")

    def _counted(self, data: bytes) -> bytes:
        """The program's bytes of a held stream, after the offset it begins with."""
        if self.offset is None:
            self._head += data
            if len(self._head) < holder.OFFSET_BYTES:
                return b""
            self.offset = int.from_bytes(self._head[: holder.OFFSET_BYTES], "big")
            data, self._head = self._head[holder.OFFSET_BYTES :], b""
        self.offset += len(data)
        return data

    async def write(self, data: bytes) -> None:
        with contextlib.suppress(RuntimeError, OSError):  # a closed stream: the process is gone
            await self.stream.write_in(holder.keys(data) if self.held_at is not None else data)

    async def resize(self, cols: int, rows: int) -> None:
        if self.held_at is not None:  # in order with the keys, and never undone: the holder sized it
            with contextlib.suppress(RuntimeError, OSError):
                await self.stream.write_in(holder.resize(cols, rows))
            return
        # A resize that reaches the engine before the wrapper's own `stty` would be undone by
        # it; the program's first output means the wrapper is done, and the latest size is
        # applied once more then (see _first_output).
        self._size = (cols, rows)
        await self._resize_now(cols, rows)

    def _first_output(self) -> None:
        self._program_started = True
        if self._size is not None:
            self._reapply = asyncio.create_task(self._resize_now(*self._size))

    async def _resize_now(self, cols: int, rows: int) -> None:
        with contextlib.suppress(aiodocker.DockerError, Unavailable):
            async with self.runtime.engine.call("an exec resize"):
                await self.exec.resize(h=rows, w=cols)

    async def terminate(self) -> None:
        self._ending = asyncio.get_running_loop().create_future()
        signal = None
        try:
            signal = await self.runtime.end_group(self.container_id, self.pidfile, user=self.user)
        finally:
            self._ending.set_result(signal)

    async def wait(self) -> ExitStatus:
        if self.held_at is not None:
            return await self._collect()
        info: dict[str, Any] = {}
        for _ in range(200):
            try:
                async with self.runtime.engine.call("an exec inspect"):
                    info = await self.exec.inspect()
            except (aiodocker.DockerError, Unavailable):
                return ExitStatus(exit_code=None)
            if not info.get("Running"):
                break
            await asyncio.sleep(0.02)
        code = info.get("ExitCode")
        if code is None or info.get("Running"):
            return ExitStatus(exit_code=None)
        return ExitStatus(exit_code=code, signal=code - 128 if code > 128 else None)

    async def _collect(self) -> ExitStatus:
        """The held program's status, from the file its wrapper wrote; then its files go."""
        try:
            result = await self.runtime.run_plain(
                self.container_id,
                ["/bin/sh", "-c", holder.COLLECT, "agentdock-collect", self.held_at or ""],
                user=self.user,
                timeout=15,
            )
        except (aiodocker.DockerError, Unavailable):
            return ExitStatus(exit_code=None)
        code = holder.parse_exit(result.text)
        # Killed by `terminate`, whose answer may come after the stream's end: wait for it.
        signal = await asyncio.shield(self._ending) if code is None and self._ending is not None else None
        return holder.ended(code, signal)

    async def close(self) -> None:
        if self._reapply is not None:
            self._reapply.cancel()
        with contextlib.suppress(Exception):
            await self.stream.close()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def _protocol_of(stream: Any) -> Any:
    """aiohttp's protocol under aiodocker's exec stream, to pause its reads (aiodocker has no
    public way to it); None where a version of aiodocker keeps it elsewhere: reads go on as
    they come."""
    connection = getattr(getattr(stream, "_resp", None), "connection", None)
    protocol = getattr(connection, "protocol", None)
    return protocol if hasattr(protocol, "pause_reading") and hasattr(protocol, "resume_reading") else None


def _queued(stream: Any) -> int:
    """Messages aiodocker has read and not handed on yet (those need no pause to gather)."""
    return len(getattr(stream, "_queue", None) or ())
