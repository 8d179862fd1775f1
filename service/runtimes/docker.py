"""The Docker engine's side of the docker runtime: one long-lived, hardened container per
project, and commands in it, via aiodocker. ``DockerEnvironment`` builds on this."""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
from datetime import datetime
from typing import Any, Literal
from uuid import uuid4

import aiodocker
import aiohttp
from aiodocker.volumes import DockerVolume

from service.docker.engine import DockerEngine
from service.errors import Conflict, NotFound, Unavailable
from service.logs import get_logger
from service.runtimes.base import ContainerState, ContainerStatus, ProjectRef
from service.runtimes.environment import OUTPUT_LIMIT, BoundedSink, OnOutput, RunResult, TailBuffer
from service.settings import Settings

log = get_logger(__name__)

MANAGED_LABEL = "agentdock.managed"
PROJECT_LABEL = "agentdock.project"
AGENT_UID = 1000
AGENT_GID = 1000
WORKDIR = "/workspace"
HOME = "/home/agent"
# A keep-alive that ends at once on SIGTERM (no trap: sh takes the default action), so
# `docker stop` does not wait out its grace period.
KEEPALIVE = ["/bin/sh", "-c", "while :; do sleep 86400; done"]
# Capabilities a root session may need to install packages (apt drops privileges to _apt,
# dpkg chowns files). The default user `agent` holds no effective capabilities at all.
CAP_ADD = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
STOP_TIMEOUT_S = 5
# A command in its own session (so its whole process group can be ended), its pid recorded
# in a file inside the container; the file is removed when it ends.
RUN_WRAPPER = """p=$1; shift
if command -v setsid >/dev/null 2>&1; then setsid /bin/sh -c 'echo $$ > "$0"; exec "$@"' "$p" "$@"
else /bin/sh -c 'echo $$ > "$0"; exec "$@"' "$p" "$@"; fi
c=$?; rm -f "$p"; exit $c
"""
# HUP, TERM, KILL to the group and to the session it leads (a program may have moved into
# process groups of its own), each given up to 1 s; prints the signal that ended it.
TERMINATE = """
pg=$(cat "$1" 2>/dev/null) || exit 0
case "$pg" in ''|0|1|*[!0-9]*) exit 0;; esac
alive() {
  kill -0 -"$pg" 2>/dev/null && return 0
  command -v pgrep >/dev/null 2>&1 && pgrep -s "$pg" >/dev/null 2>&1
}
for sig in HUP TERM KILL; do
  alive || break
  kill -$sig -"$pg" 2>/dev/null
  command -v pkill >/dev/null 2>&1 && pkill -$sig -s "$pg" 2>/dev/null
  i=0
  while [ $i -lt 20 ] && alive; do sleep 0.05; i=$((i+1)); done
  alive || { echo "ended $sig"; break; }
done
if alive; then exit 1; fi
rm -f "$1"
"""
_SIGNALS = {"HUP": 1, "TERM": 15, "KILL": 9}

_STATUS: dict[str, ContainerStatus] = {
    "created": "created",
    "running": "running",
    "restarting": "running",
    "paused": "running",
    "removing": "exited",
    "exited": "exited",
    "dead": "exited",
}
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_docker_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))


def container_name(project: ProjectRef) -> str:
    return f"agentdock-{project.name}-{project.id.hex[:8]}"


def home_volume(project: ProjectRef) -> str:
    """The named volume that holds ``/home/agent`` (``~/.claude``: login, settings, history),
    so that it outlives the container; only purging the project removes it."""
    return f"agentdock-home-{project.id.hex}"


def state_from_inspect(info: dict[str, Any]) -> ContainerState:
    state = info.get("State", {})
    status = _STATUS.get(state.get("Status", ""), "exited")
    labels = info.get("Config", {}).get("Labels") or {}
    return ContainerState(
        id=info["Id"],
        name=info.get("Name", "").lstrip("/"),
        image=info.get("Config", {}).get("Image", ""),
        status=status,
        project_id=labels.get(PROJECT_LABEL),
        started_at=parse_docker_time(state.get("StartedAt")),
        exit_code=state.get("ExitCode") if status == "exited" else None,
    )


class DockerRuntime:
    kind: Literal["docker"] = "docker"

    def __init__(self, engine: DockerEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def container_config(
        self, project: ProjectRef, *, image: str | None = None, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """``image`` and ``env``: a project's own environment (its built image, its
        devcontainer ``containerEnv``: settings, never secrets, which go to execs only)."""
        host_config: dict[str, Any] = {
            "Binds": [f"{project.path}:{WORKDIR}", f"{home_volume(project)}:{HOME}"],
            "Init": True,
            "Privileged": False,
            "CapDrop": ["ALL"],
            "CapAdd": CAP_ADD,
            "SecurityOpt": ["no-new-privileges:true"],
            "PidsLimit": self.settings.container_pids,
            "Memory": self.settings.container_memory,
            "NanoCpus": int(self.settings.container_cpus * 1e9),
            "RestartPolicy": {"Name": "no"},  # the supervisor restarts, not the engine
        }
        if self.settings.network:
            host_config["NetworkMode"] = self.settings.network
        return {
            "Image": image or project.image,
            "Cmd": KEEPALIVE,
            "WorkingDir": WORKDIR,
            "Labels": {MANAGED_LABEL: "true", PROJECT_LABEL: str(project.id)},
            "Env": ["HOME=/home/agent", *(f"{k}={v}" for k, v in (env or {}).items())],
            "Tty": False,
            "OpenStdin": False,
            "HostConfig": host_config,
        }

    async def inspect(self, container_id: str) -> ContainerState | None:
        try:
            async with self.engine.call("a container inspect"):
                info = await self.engine.client.containers.container(container_id).show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise
        return state_from_inspect(info)

    async def find(self, project: ProjectRef) -> ContainerState | None:
        """The project's container: by the id we know, else by label (adoption)."""
        if project.container_id:
            state = await self.inspect(project.container_id)
            if state is not None:
                return state
        candidates = await self.list_managed(project_id=str(project.id))
        if not candidates:
            return None
        return max(candidates, key=lambda c: (c.status == "running", c.started_at or datetime.min.astimezone()))

    async def list_managed(self, *, project_id: str | None = None) -> list[ContainerState]:
        """Every labelled container, or one project's (the engine filters: no scan of all)."""
        labels = [f"{MANAGED_LABEL}=true"]
        if project_id is not None:
            labels.append(f"{PROJECT_LABEL}={project_id}")
        filters = json.dumps({"label": labels})
        async with self.engine.call("a container list"):
            summaries = await self.engine.client.containers.list(all="1", filters=filters)
        states = await asyncio.gather(*(self.inspect(s.id) for s in summaries))
        return [s for s in states if s is not None]

    async def create(
        self, project: ProjectRef, *, image: str | None = None, env: dict[str, str] | None = None
    ) -> ContainerState:
        labels = {MANAGED_LABEL: "true", PROJECT_LABEL: str(project.id)}
        async with self.engine.call("a volume create", timeout=60):
            # Idempotent: an existing volume of that name (a re-created container's) is kept.
            await self.engine.client.volumes.create(  # type: ignore[no-untyped-call]
                {"Name": home_volume(project), "Labels": labels}
            )
        try:
            async with self.engine.call("a container create", timeout=60):
                container = await self.engine.client.containers.create(
                    self.container_config(project, image=image, env=env), name=container_name(project)
                )
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                raise Conflict(
                    f"the image {image or project.image!r} is not on the Docker engine: build it "
                    "(the default image with scripts/docker-up.sh) or pull it, or set another image"
                ) from None
            if exc.status == 409:
                raise Conflict(f"a container named {container_name(project)!r} already exists: {exc.message}") from None
            raise
        # What the engine would answer to an inspect now, without asking it (one round trip
        # less on every container start).
        return ContainerState(
            id=container.id,
            name=container_name(project),
            image=image or project.image,
            status="created",
            project_id=str(project.id),
        )

    async def start(self, container_id: str) -> None:
        try:
            async with self.engine.call("a container start", timeout=60):
                await self.engine.client.containers.container(container_id).start()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                raise NotFound(f"the container {container_id[:12]} no longer exists") from None
            raise Conflict(f"the container {container_id[:12]} could not start: {exc.message}") from None

    async def stop(self, container_id: str) -> None:
        try:
            async with self.engine.call("a container stop", timeout=STOP_TIMEOUT_S + 30):
                await self.engine.client.containers.container(container_id).stop(t=STOP_TIMEOUT_S)
        except aiodocker.DockerError as exc:
            if exc.status not in (304, 404):  # already stopped, or gone
                raise

    async def remove_volume(self, project: ProjectRef) -> bool:
        """Remove the project's home volume; answers whether there was one."""
        try:
            async with self.engine.call("a volume remove", timeout=60):
                volume = DockerVolume(self.engine.client, home_volume(project))  # type: ignore[no-untyped-call]
                await volume.delete()  # type: ignore[no-untyped-call]
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise Conflict(f"the volume {home_volume(project)} could not be removed: {exc.message}") from None
        return True

    async def remove(self, container_id: str) -> None:
        try:
            async with self.engine.call("a container remove", timeout=60):
                await self.engine.client.containers.container(container_id).delete(force=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise

    async def run(
        self,
        container_id: str,
        argv: list[str],
        *,
        user: str,
        timeout: float,
        env: dict[str, str] | None = None,
        output_limit: int = OUTPUT_LIMIT,
        stdout: BoundedSink | None = None,
        stdin: bytes | None = None,
        on_output: OnOutput | None = None,
        cwd: str | None = None,
    ) -> RunResult:
        """Run a command to completion in the container (no TTY) as ``user``, in its own process
        group; keep a bounded tail of its output. Past ``timeout`` (or past the sink's limit),
        or when the caller is cancelled, the group is killed inside the container."""
        pidfile = f"/tmp/.agentdock-run-{uuid4().hex}.pid"  # noqa: S108 - inside the container
        wrapped = ["/bin/sh", "-c", RUN_WRAPPER, "agentdock-run", pidfile, *argv]
        tail = TailBuffer(output_limit)
        async with self.engine.call("an exec create", timeout=30):
            exec_ = await self.engine.client.containers.container(container_id).exec(
                wrapped,
                stdout=True,
                stderr=True,
                stdin=stdin is not None,
                tty=False,
                user=user,
                environment=env,
                workdir=posixpath.join(WORKDIR, cwd) if cwd else WORKDIR,
            )
        timed_out = overflowed = False
        try:
            async with asyncio.timeout(timeout):
                async with exec_.start(detach=False) as stream:
                    if stdin is not None:
                        await _send_stdin(stream, stdin)
                    while (message := await stream.read_out()) is not None:
                        if on_output is not None:
                            await on_output("stdout" if message.stream == 1 else "stderr", message.data)
                        if stdout is not None and message.stream == 1:
                            if not stdout.write(message.data):
                                overflowed = True
                                break
                        else:
                            tail.add(message.data)
        except TimeoutError:
            timed_out = True
        except asyncio.CancelledError:
            # The caller went away (a client that disconnected): the command ends with it.
            await asyncio.shield(self.end_group(container_id, pidfile, user=user))
            raise
        except (aiohttp.ClientError, aiodocker.DockerError, OSError) as exc:
            raise Unavailable(f"the command's stream from the container broke: {exc}") from None
        if timed_out or overflowed:
            await self.end_group(container_id, pidfile, user=user)
            return RunResult(exit_code=None, output=tail.value(), truncated=True, timed_out=timed_out)
        code = await self._exit_code(exec_)
        return RunResult(exit_code=code, output=tail.value(), truncated=tail.truncated)

    async def _exit_code(self, exec_: Any) -> int | None:
        info: dict[str, Any] = {}
        for _ in range(100):
            async with self.engine.call("an exec inspect"):
                info = await exec_.inspect()
            if not info.get("Running"):
                break
            await asyncio.sleep(0.02)
        code = info.get("ExitCode")
        return int(code) if code is not None and not info.get("Running") else None

    async def end_group(self, container_id: str, pidfile: str, *, user: str) -> int | None:
        """Signal the process group (and session) named in ``pidfile`` (HUP, TERM, KILL, each
        given a bounded time), as ``user``: what the pidfile says can only reach that user's
        own processes. Answers the signal that ended it (None: it was gone already, or could
        not be ended, which is logged)."""
        try:
            result = await self.run_plain(
                container_id, ["/bin/sh", "-c", TERMINATE, "agentdock-end", pidfile], user=user, timeout=15
            )
        except (aiodocker.DockerError, Unavailable) as exc:
            log.warning("session.terminate_failed", error=str(exc))
            return None
        if result.exit_code not in (0, None):
            log.warning("session.terminate_failed", error=result.text[-500:] or f"exit {result.exit_code}")
            return None
        words = result.text.split()
        return _SIGNALS.get(words[-1]) if len(words) >= 2 and words[-2] == "ended" else None

    async def run_plain(self, container_id: str, argv: list[str], *, user: str, timeout: float) -> RunResult:
        """A short command of the service's own (no wrapper, no group): bounded output."""
        tail = TailBuffer(OUTPUT_LIMIT)
        async with self.engine.call("a command in the container", timeout=timeout):
            exec_ = await self.engine.client.containers.container(container_id).exec(
                argv, stdout=True, stderr=True, tty=False, user=user, workdir=WORKDIR
            )
            async with exec_.start(detach=False) as stream:
                while (message := await stream.read_out()) is not None:
                    tail.add(message.data)
        return RunResult(exit_code=await self._exit_code(exec_), output=tail.value(), truncated=tail.truncated)


async def _send_stdin(stream: Any, data: bytes) -> None:
    """Write ``data`` to an attached exec's stdin, then half-close it (EOF to the command)
    while its output is still read. aiodocker's ``close()`` would close both directions."""
    view = memoryview(data)
    for start in range(0, len(view), 65536):
        await stream.write_in(bytes(view[start : start + 65536]))
    transport = stream._resp.connection.transport if stream._resp and stream._resp.connection else None
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
