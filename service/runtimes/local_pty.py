"""A PTY on the host through ptyprocess. The master fd is non-blocking and read by the event
loop's reader callback; writes that would block wait for the loop's writer callback."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time

import ptyprocess

from service.runtimes.pty import TERMINATION, ExitStatus, Holding, OnData, OnEof, SpawnSpec

READ_SIZE = 65536


class LocalPty:
    holding: Holding | None = None  # a local session ends with the service (no holder on the host)
    offset: int | None = None

    def __init__(self, process: ptyprocess.PtyProcess) -> None:
        self.process = process
        self.fd: int = process.fd
        os.set_blocking(self.fd, False)
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False

    @classmethod
    async def spawn(cls, spec: SpawnSpec, cwd: str) -> LocalPty:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **spec.env}
        process = await asyncio.to_thread(
            ptyprocess.PtyProcess.spawn, spec.argv, cwd=cwd, env=env, dimensions=(spec.rows, spec.cols)
        )
        return cls(process)

    def start_reading(self, on_data: OnData, on_eof: OnEof) -> None:
        def readable() -> None:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:  # EIO: the last process holding the slave side is gone
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                data = b""
            if data:
                on_data(data)
                return
            self._stop_reading()
            on_eof()

        self._reading = True
        self._loop.add_reader(self.fd, readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.fd)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                ready = self._loop.create_future()
                self._loop.add_writer(self.fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    self._loop.remove_writer(self.fd)
                continue
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    return  # the process is gone; input has nowhere to go
                raise
            view = view[written:]

    async def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(OSError):
            self.process.setwinsize(rows, cols)

    def _group_alive(self) -> bool:
        self.process.isalive()  # reaps the leader once it has exited
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    async def terminate(self) -> None:
        for sig, grace in TERMINATION:
            if not self._group_alive():
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._group_alive():
                await asyncio.sleep(0.02)

    async def wait(self) -> ExitStatus:
        while self.process.isalive():
            await asyncio.sleep(0.01)
        if self.process.signalstatus is not None:
            return ExitStatus(exit_code=128 + self.process.signalstatus, signal=self.process.signalstatus)
        return ExitStatus(exit_code=self.process.exitstatus)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        # Not ptyprocess's close(): it sleeps (blocking) and kills; ending is terminate()'s job.
        with contextlib.suppress(OSError):
            self.process.fileobj.close()
        self.process.closed = True
