"""The exec API's work: one command run to completion in the environment, its output streamed.

The controller makes an ``ExecChannel`` and sends it inside the ``Exec`` message; the
supervisor defers ``run_exec``, which runs the command through ``Environment.run`` (docker: in
the container, as ``agent``, no TTY) and puts NDJSON lines into the channel's bounded queue as
output comes (``on_output`` is awaited: a slow client slows the command, memory stays bounded).
The command ends when it exits, at its deadline, when its output passes ``OUTPUT_CAP`` (the
rest is not sent), or when the client goes away (``gone``): then the run's task is cancelled
and ``Environment.run`` kills the command's process group.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal
from uuid import uuid4

import msgspec

from service.actors import messages as m
from service.errors import AppError, Invalid
from service.logs import get_logger
from service.runtimes.environment import Environment, RunResult
from service.workspace.files import clean_path
from service.workspace.schemas import ExecEnd, ExecOutput, ExecRequest

log = get_logger(__name__)

OUTPUT_CAP = 16 * 1024 * 1024  # bytes of output streamed to the client, stdout and stderr together
QUEUE_LINES = 64  # lines waiting for the client: the backpressure window
START_TIMEOUT_S = 120.0  # the environment may have to be created and started first
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# cd into the requested directory, then exec the command: a missing directory or program is
# reported on stderr (streamed) with the shell's exit code (126 / 127), in both runtimes.
_WRAPPER = 'cd -- "$1" || exit 126; shift; exec "$@"'
_END_LINE = object()


class ExecChannel:
    """Between the controller and the run: the NDJSON lines, "started", and "the client is gone"."""

    def __init__(self) -> None:
        self.lines: asyncio.Queue[bytes | object] = asyncio.Queue(maxsize=QUEUE_LINES)
        self.started = asyncio.Event()
        self.gone = asyncio.Event()

    async def put(self, line: msgspec.Struct | object) -> None:
        """Queue a line, waiting for room; dropped once the client is gone (nobody reads)."""
        item = msgspec.json.encode(line) + b"\n" if isinstance(line, msgspec.Struct) else line
        if self.gone.is_set():
            return
        with contextlib.suppress(asyncio.QueueFull):
            self.lines.put_nowait(item)
            return
        put = asyncio.ensure_future(self.lines.put(item))
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({put, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
            gone.cancel()

    async def wait_started(self, ask: asyncio.Task[Any]) -> None:
        """Until the command runs; the ask's error (404, 503) where it ended before."""
        started = asyncio.ensure_future(self.started.wait())
        try:
            await asyncio.wait({started, ask}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if not self.started.is_set():
            ask.result()  # raises the ask's error
            raise Invalid("the command ended before it started")  # not reached: work always starts first

    async def stream(self, ask: asyncio.Task[Any]) -> AsyncIterator[bytes]:
        """The NDJSON lines until the last one. Leaving early (the client went away: the
        response's task is cancelled, or this generator closed) ends the command."""
        try:
            while True:
                get = asyncio.ensure_future(self.lines.get())
                try:
                    await asyncio.wait({get, ask}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not get.done():
                        get.cancel()
                if get.done() and not get.cancelled():
                    line = get.result()
                    if line is _END_LINE:
                        return
                    assert isinstance(line, bytes)
                    yield line
                    continue
                # The run ended without its last line (the supervisor stopped, the ask timed out).
                while not self.lines.empty():
                    line = self.lines.get_nowait()
                    if isinstance(line, bytes):
                        yield line
                error = ask.exception() if not ask.cancelled() else None
                detail = error.detail if isinstance(error, AppError) else "the command's run ended unexpectedly"
                yield msgspec.json.encode(ExecEnd(exit_code=None, timed_out=False, error=detail)) + b"\n"
                return
        finally:
            self.gone.set()
            ask.cancel()


def exec_message(request: ExecRequest, channel: ExecChannel) -> m.Exec:
    """Check the request (400 with a detail) and make the message that carries it."""
    if isinstance(request.command, str):
        if not request.command.strip():
            raise Invalid("command is empty")
        argv, shown = ["/bin/sh", "-c", request.command], "sh -c"
    else:
        if not request.command[0]:
            raise Invalid("command's first element (the program) is empty")
        argv, shown = list(request.command), request.command[0]
    if any("\x00" in arg for arg in argv):
        raise Invalid("command contains a NUL character")
    env = dict(request.env or {})
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise Invalid(f"env name {name[:64]!r} is not of the form [A-Z_][A-Z0-9_]*")
        if name.startswith("AGENTDOCK_"):
            raise Invalid(f"env name {name!r}: AGENTDOCK_* variables are the service's own")
        if "\x00" in value:
            raise Invalid(f"env {name}'s value contains a NUL character")
    cwd = "/".join(clean_path(request.cwd or "")) or "."
    return m.Exec(argv=argv, shown=shown, cwd=cwd, env=env, timeout_s=request.timeout_s, channel=channel)


async def run_exec(environment: Environment, message: m.Exec) -> None:
    """Run the command, streaming its output into the message's channel (see the module)."""
    channel = message.channel
    assert isinstance(channel, ExecChannel)
    await environment.ensure()
    exec_id = uuid4().hex
    project_id = str(environment.project.id)
    decoders = {
        "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
    }
    sent = 0
    cut = asyncio.Event()

    async def on_output(stream: Literal["stdout", "stderr"], chunk: bytes) -> None:
        nonlocal sent
        if cut.is_set():
            return
        last = sent + len(chunk) >= OUTPUT_CAP
        if last:
            chunk = chunk[: OUTPUT_CAP - sent]
        sent += len(chunk)
        text = decoders[stream].decode(chunk)
        if text:
            await channel.put(ExecOutput(stream=stream, data=text))
        if last:  # only once the last chunk is queued: the run is cancelled when this is set
            cut.set()

    log.info("exec.started", project_id=project_id, exec_id=exec_id, command=message.shown, cwd=message.cwd)
    started = time.monotonic()
    channel.started.set()
    end = ExecEnd(exit_code=None, timed_out=False)
    ended_by = "exit"
    try:
        result, ended_by = await _run_until(environment, message, on_output, cut, channel.gone)
        if result is not None:
            end = ExecEnd(exit_code=result.exit_code, timed_out=result.timed_out)
            ended_by = "timeout" if result.timed_out else "exit"
        else:
            end = ExecEnd(exit_code=None, timed_out=False, truncated=ended_by == "output_limit")
    except AppError as exc:
        ended_by = "error"
        end = ExecEnd(exit_code=None, timed_out=False, error=exc.detail)
    except asyncio.CancelledError:
        ended_by = "cancelled"
        raise
    finally:
        log.info(
            "exec.ended",
            project_id=project_id,
            exec_id=exec_id,
            exit_code=end.exit_code,
            timed_out=end.timed_out,
            ended_by=ended_by,
            duration_s=round(time.monotonic() - started, 3),
        )
    if ended_by == "client_gone":
        return
    for stream, decoder in decoders.items():
        rest = decoder.decode(b"", final=True)
        if rest:
            await channel.put(ExecOutput(stream=stream, data=rest))  # type: ignore[arg-type]
    await channel.put(end)
    await channel.put(_END_LINE)


async def _run_until(
    environment: Environment, message: m.Exec, on_output: Any, cut: asyncio.Event, gone: asyncio.Event
) -> tuple[RunResult | None, str]:
    """The run's result, or None with why it was ended early (its process group killed)."""
    argv = ["/bin/sh", "-c", _WRAPPER, "agentdock-exec", message.cwd, *message.argv]
    run = asyncio.create_task(
        environment.run(argv, timeout=message.timeout_s, env=message.env, output_limit=4096, on_output=on_output)
    )
    cut_wait = asyncio.create_task(cut.wait())
    gone_wait = asyncio.create_task(gone.wait())
    try:
        await asyncio.wait({run, cut_wait, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cut_wait.cancel()
        gone_wait.cancel()
        if not run.done():
            run.cancel()  # Environment.run kills the command's process group
            with contextlib.suppress(asyncio.CancelledError):
                await run
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
    if run.done() and not run.cancelled():
        return run.result(), "exit"
    return None, "client_gone" if gone.is_set() else "output_limit"
