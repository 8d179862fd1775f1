"""``LocalEnvironment``: the project's workspace directory on the host, with no sandbox at all.

Sessions and commands run on the host as the service's own user, in the workspace. That is
why this runtime is the operator's choice alone (``AGENTDOCK_RUNTIME=local`` or
``AGENTDOCK_ALLOW_LOCAL_RUNTIME=1``): it suits machines without Docker and fast tests, never a
hostile agent. It has no container; commands are still bounded in time and output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Literal

from service.actors import messages as m
from service.containers.schemas import Container, to_container
from service.errors import Conflict
from service.runtimes.base import ContainerState, ProjectRef
from service.runtimes.environment import BASE_ENV, OUTPUT_LIMIT, BoundedSink, OnOutput, RunResult, TailBuffer
from service.runtimes.local_pty import LocalPty
from service.runtimes.pty import Holding, PtyProcess, SpawnSpec
from service.runtimes.snapshot import SNAPSHOT_OUTPUT_LIMIT, snapshot_argv, snapshot_result

READ_CHUNK = 65536
_HOST_ENV_KEYS = ("PATH", "HOME", "USER", "LOGNAME")


class LocalEnvironment:
    kind: Literal["local"] = "local"

    def __init__(self, project: ProjectRef, *, allowed: bool = True) -> None:
        self._project = project
        self.allowed = allowed  # the operator may withdraw the power from projects that had it

    @property
    def project(self) -> ProjectRef:
        return self._project

    @property
    def container_id(self) -> str | None:
        return None

    def reload(self, project: ProjectRef) -> None:
        self._project = project

    def close(self) -> None:
        pass

    async def adopt(self) -> None:
        pass

    async def ensure(self) -> None:
        if not self.allowed:
            raise Conflict(
                f"project {self._project.name!r} uses the local runtime, which the operator does not allow: "
                "set AGENTDOCK_ALLOW_LOCAL_RUNTIME=1 for the service, or patch the project to the docker runtime"
            )
        if not await asyncio.to_thread(Path(self._project.path).is_dir):
            raise Conflict(f"the workspace {self._project.path} of project {self._project.name!r} does not exist")

    async def container(self, request: m.ContainerRequest) -> Container | None:
        raise Conflict(f"project {self._project.name!r} uses the local runtime: it has no container")

    def view(self, state: ContainerState) -> Container:
        return to_container(state)

    async def purge(self) -> None:
        pass

    async def on_event(self, event: m.ContainerEvent) -> None:
        pass

    async def on_restart_due(self, generation: int) -> None:
        pass

    async def reconcile(self) -> None:
        pass

    # --- work ------------------------------------------------------------------------

    @property
    def default_shell(self) -> list[str]:
        return [os.environ.get("SHELL") or "/bin/sh"]

    def session_env(self) -> dict[str, str]:
        return {**BASE_ENV, **{k: v for k, v in os.environ.items() if k in ("HOME", "USER", "LOGNAME")}}

    async def spawn_pty(self, spec: SpawnSpec, *, key: str) -> PtyProcess:
        await self.ensure()
        try:
            cwd = str(Path(self._project.path) / spec.cwd) if spec.cwd else self._project.path
            return await LocalPty.spawn(spec, cwd=cwd)
        except Exception as exc:  # ptyprocess raises plain Exception for a missing program
            raise Conflict(f"could not start {spec.argv[0]!r}: {exc}") from None

    async def reattach_pty(
        self, spec: SpawnSpec, *, key: str, holding: Holding, since: int | None = None
    ) -> PtyProcess | None:
        return None  # a local session ends with the service that started it

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
        await self.ensure()
        base = {k: v for k, v in os.environ.items() if k in _HOST_ENV_KEYS}
        separate = stdout is not None or on_output is not None
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=str(Path(self._project.path) / cwd) if cwd else self._project.path,
                env={**base, "LANG": "C.UTF-8", **(env or {})},
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE if separate else asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout ends its children too
            )
        except OSError as exc:
            return RunResult(exit_code=127, output=f"{argv[0]}: {exc}".encode())
        tail = TailBuffer(output_limit)
        overflowed = False

        async def feed() -> None:
            if process.stdin is None or stdin is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(stdin)
                await process.stdin.drain()
            process.stdin.close()

        async def pump_stdout() -> None:
            nonlocal overflowed
            assert process.stdout is not None
            while chunk := await process.stdout.read(READ_CHUNK):
                if on_output is not None:
                    await on_output("stdout", chunk)
                if stdout is None:
                    tail.add(chunk)
                elif not stdout.write(chunk):
                    overflowed = True
                    _kill_group(process)
                    return

        async def pump_stderr() -> None:
            if process.stderr is None:
                return
            while chunk := await process.stderr.read(READ_CHUNK):
                if on_output is not None:
                    await on_output("stderr", chunk)
                tail.add(chunk)

        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(feed(), pump_stdout(), pump_stderr())
                await process.wait()
        except TimeoutError:
            _kill_group(process)
            await process.wait()
            return RunResult(exit_code=None, output=tail.value(), truncated=True, timed_out=True)
        except BaseException:
            _kill_group(process)
            raise
        if overflowed:
            await process.wait()
            return RunResult(exit_code=None, output=tail.value(), truncated=True)
        return RunResult(exit_code=process.returncode, output=tail.value(), truncated=tail.truncated)

    async def snapshot(self, patterns: tuple[str, ...], *, timeout: float, cwd: str | None = None) -> dict[str, str]:
        result = await self.run(snapshot_argv(patterns), timeout=timeout, output_limit=SNAPSHOT_OUTPUT_LIMIT, cwd=cwd)
        return snapshot_result(result, timeout)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
