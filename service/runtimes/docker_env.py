"""``DockerEnvironment``: a project's environment in its own container — the sandbox.

It owns the container's lifecycle (adoption, start, stop, restarts after failures under the
restart policy, and giving up past its intensity limit) and runs every command and session
inside the container as the non-root ``agent`` user.

Lifecycle operations are serialized by one lock, so the supervisor may run them as deferred
child tasks while its mailbox keeps moving; status is always read from Docker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import aiodocker
import msgspec

from service.actors import messages as m
from service.actors.policy import RestartPolicy, RestartTracker
from service.containers.schemas import Container, to_container
from service.errors import AppError, Conflict, NotFound, Unavailable
from service.logs import get_logger
from service.metrics import instruments
from service.runtimes import holder
from service.runtimes.base import ContainerState, ProjectRef
from service.runtimes.build import BuildDefinition, BuildProgress, BuildResult, ensure_image, parse_definition
from service.runtimes.docker import AGENT_UID, DockerRuntime, home_volume
from service.runtimes.docker_pty import DockerExecPty
from service.runtimes.environment import BASE_ENV, OUTPUT_LIMIT, BoundedSink, OnOutput, RunResult
from service.runtimes.pty import Holding, PtyProcess, SpawnSpec
from service.runtimes.snapshot import SNAPSHOT_OUTPUT_LIMIT, snapshot_argv, snapshot_result

log = get_logger(__name__)

AGENT_USER = "agent"
# The default shell: bash where the image has it, else sh; a login shell either way.
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"]
# Run once per container, as root inside it, before anything runs as `agent`: refuse an image
# whose `agent` is root (or missing), and hand the workspace to `agent` where it is not yet
# (a workspace made for the local runtime, or an older one). All inside the container: a link
# the agent made can only point into the container's own file system; -h never follows one.
CHECK = """
uid=$(id -u "$1" 2>/dev/null) || { echo "the image has no user '$1'"; exit 3; }
[ "$uid" != 0 ] || { echo "the image's user '$1' is root (uid 0)"; exit 4; }
gid=$(id -g "$1")
[ "$(stat -c %u /workspace)" = "$uid" ] || chown -hR "$uid:$gid" /workspace
"""
# A devcontainer's postCreateCommand runs once per container, as its user, before any session.
POST_CREATE_MARKER = "/tmp/.agentdock-post-create-done"  # noqa: S108 - inside the container
POST_CREATE_TIMEOUT_S = 1800.0

Tell = Callable[[m.Message], Awaitable[None]]
SaveContainerId = Callable[[str | None], Awaitable[None]]


def instance_of(state: ContainerState) -> str:
    """A container's id and start time: which run of the container a held session lives in."""
    started = state.started_at.isoformat() if state.started_at is not None else ""
    return f"{state.id}@{started}"


class DockerEnvironment:
    kind: Literal["docker"] = "docker"

    def __init__(
        self, project: ProjectRef, *, runtime: DockerRuntime, policy: RestartPolicy, tell: Tell, save: SaveContainerId
    ) -> None:
        self._project = project
        self.save = save  # persists the container id in the project's row
        self.runtime = runtime
        self.policy = policy
        self.tell = tell  # into the supervisor's mailbox, for timers (waits for room)
        self.tracker = RestartTracker(policy)
        self._container_id: str | None = project.container_id
        self.want_running = False
        self.gave_up = False
        self.last_failure: str | None = None
        self._adopted = False
        self._checked: str | None = None  # the container whose image passed CHECK
        self._instance: str | None = None  # the running container's id and start time
        self._holder: dict[str, bool] = {}  # instance -> whether its image has the holder
        self._generation = 0
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # The project's own environment (Dockerfile / devcontainer.json), as last built or read.
        self.definition: BuildDefinition | None = None

    @property
    def project(self) -> ProjectRef:
        return self._project

    @property
    def container_id(self) -> str | None:
        return self._container_id

    def reload(self, project: ProjectRef) -> None:
        self._project = msgspec.structs.replace(project, container_id=self._container_id)

    def close(self) -> None:
        self._cancel_timer()

    # --- adoption --------------------------------------------------------------------

    async def adopt(self) -> None:
        async with self._lock:
            await self._adopt()

    async def _adopt(self) -> None:
        """Re-adopt the project's labelled container, if any. An unreachable engine is not a
        crash: adoption is retried with the next request."""
        try:
            state = await self.runtime.find(self._project)
        except AppError as exc:
            log.warning("container.adopt_failed", detail=exc.detail)
            return
        self._adopted = True
        if state is None:
            if self._container_id is not None:
                await self._set_container_id(None)
            return
        if state.id != self._container_id:
            await self._set_container_id(state.id)
        self.want_running = state.status == "running"
        log.info("container.adopted", container_id=state.id, status=state.status)

    async def _ensure_adopted(self) -> None:
        if not self._adopted:
            await self._adopt()
            if not self._adopted:
                raise Unavailable("the Docker engine does not answer; the container's state is unknown")

    async def _set_container_id(self, container_id: str | None) -> None:
        self._container_id = container_id
        self._project = msgspec.structs.replace(self._project, container_id=container_id)
        await self.save(container_id)

    # --- API requests ----------------------------------------------------------------

    def view(self, state: ContainerState | None) -> Container:
        """The API view of the container: Docker's state plus what this environment knows."""
        if state is None:
            assert self._container_id is not None
            return Container(
                id=self._container_id,
                project_id=self._project.id,
                name="",
                image=self._project.image,
                status="missing",
                restart_count=self.tracker.restarts,
                last_failure=self.last_failure,
            )
        return to_container(
            state, restart_count=self.tracker.restarts, last_failure=self.last_failure, gave_up=self.gave_up
        )

    async def container(self, request: m.ContainerRequest) -> Container | None:
        async with self._lock:
            await self._ensure_adopted()
            match request:
                case m.GetContainer():
                    return await self._get()
                case m.StartContainer():
                    self._deliberate(want_running=True)
                    return self.view(await self._bring_up(rebuild=True))
                case m.StopContainer():
                    return await self._stop()
                case m.RestartContainer():
                    return await self._restart()
                case m.RemoveContainer():
                    await self._remove()
                    return None
        raise TypeError(f"unknown container request {type(request).__name__}")

    async def _get(self) -> Container:
        if self._container_id is None:
            raise NotFound(f"project {self._project.name!r} has no container yet; start it to create one")
        return self.view(await self.runtime.inspect(self._container_id))

    async def _bring_up(self, *, rebuild: bool = False) -> ContainerState:
        """Create the container if missing, start it if not running; answer its state. When it
        starts (or ``rebuild``), the project's own environment is built if its definition
        changed, and a container of an older image is replaced by one of the new."""
        state = await self.runtime.inspect(self._container_id) if self._container_id else None
        build = None
        if state is None or state.status != "running" or rebuild:
            build = await self._own_image()
            if build is not None and state is not None and state.image != build.tag:
                await self.runtime.remove(state.id)
                log.info("container.removed", container_id=state.id, source="rebuilt", image=build.tag)
                await self._set_container_id(None)
                state = None
        if state is None:
            state = await self.runtime.create(
                self._project,
                image=build.tag if build is not None else None,
                env=build.definition.container_env if build is not None else None,
            )
            await self._set_container_id(state.id)
            log.info("container.created", container_id=state.id, image=state.image, name=state.name)
        if state.status != "running":
            await self.runtime.start(state.id)
            state = await self.runtime.inspect(state.id) or state
            log.info("container.started", container_id=state.id)
        return state

    def _deliberate(self, *, want_running: bool) -> None:
        """A person asked: forget pending restarts and failure history."""
        self.want_running = want_running
        self._generation += 1
        self._cancel_timer()
        if want_running:
            self.gave_up = False
            self.last_failure = None
            self.tracker.reset()

    async def _stop(self) -> Container:
        if self._container_id is None:
            raise NotFound(f"project {self._project.name!r} has no container")
        self._deliberate(want_running=False)
        await self.runtime.stop(self._container_id)
        log.info("container.stopped", container_id=self._container_id)
        return self.view(await self.runtime.inspect(self._container_id))

    async def _restart(self) -> Container:
        self._deliberate(want_running=True)
        if self._container_id is not None:
            await self.runtime.stop(self._container_id)
        state = await self._bring_up(rebuild=True)
        instruments.CONTAINER_RESTARTS.labels(reason="requested").inc()
        log.info("container.restarted", container_id=state.id, reason="requested", restart_count=self.tracker.restarts)
        return self.view(state)

    async def _remove(self) -> None:
        self._deliberate(want_running=False)
        if self._container_id is None:
            raise NotFound(f"project {self._project.name!r} has no container")
        container_id = self._container_id
        await self.runtime.remove(container_id)
        await self._set_container_id(None)
        log.info("container.removed", container_id=container_id, source="api")

    async def purge(self) -> None:
        """The project is deleted with its workspace: its container and home volume go too."""
        async with self._lock:
            await self._ensure_adopted()
            self._deliberate(want_running=False)
            if self._container_id is not None:
                container_id = self._container_id
                await self.runtime.remove(container_id)
                await self._set_container_id(None)
                log.info("container.removed", container_id=container_id, source="purge")
            if await self.runtime.remove_volume(self._project):
                log.info("environment.volume_removed", volume=home_volume(self._project))

    # --- ready for work ----------------------------------------------------------------

    async def ensure(self) -> None:
        await self._running_id()

    async def _running_id(self) -> str:
        """The container, created, started and checked if need be; answers its id."""
        async with self._lock:
            await self._ensure_adopted()
            if self.gave_up:
                raise Conflict(
                    f"the container of project {self._project.name!r} failed too often ({self.last_failure}); "
                    "start it again first"
                )
            if not self.want_running:
                self._deliberate(want_running=True)
            state = await self._bring_up()
            self._instance = instance_of(state)
            if self._checked != state.id:
                if self.definition is None:
                    self.definition = await self._read_definition()
                await self._check(state.id)
                await self._post_create(state.id)
                self._checked = state.id
            return state.id

    async def _own_image(self) -> BuildResult | None:
        """The image of the project's own environment (built if its digest has none yet), or
        None where the workspace defines none."""
        build = await ensure_image(self.runtime, Path(self._project.path), self._project.id, on_event=_quiet)
        self.definition = build.definition if build is not None else None
        if build is not None and build.built:
            log.info("environment.image_built", tag=build.tag, kind=build.definition.kind)
        return build

    async def _read_definition(self) -> BuildDefinition | None:
        """For an adopted container: the definition's user and settings (no build)."""
        try:
            return await asyncio.to_thread(parse_definition, Path(self._project.path))
        except AppError as exc:
            log.warning("environment.definition_unreadable", detail=exc.detail)
            return None

    @property
    def user(self) -> str:
        """Who sessions and commands run as: ``agent``, or the devcontainer's ``remoteUser``."""
        if self.definition is not None and self.definition.remote_user:
            return self.definition.remote_user
        return AGENT_USER

    async def _post_create(self, container_id: str) -> None:
        command = self.definition.post_create if self.definition is not None else None
        if not command:
            return
        argv = command if isinstance(command, list) else ["/bin/sh", "-c", command]
        guarded = ["/bin/sh", "-c", f'test -e {POST_CREATE_MARKER} && exit 0; "$@" && touch {POST_CREATE_MARKER}', "pc"]
        result = await self.runtime.run(
            container_id, [*guarded, *argv], user=self.user, timeout=POST_CREATE_TIMEOUT_S, env=self._base_env()
        )
        if result.exit_code != 0:
            raise Conflict(
                f"the devcontainer's postCreateCommand failed (exit code {result.exit_code}): {result.text[-1000:]}"
            )
        log.info("environment.post_created", container_id=container_id)

    def _base_env(self) -> dict[str, str]:
        env = {"LANG": "C.UTF-8"}
        if self.user == AGENT_USER:
            env |= {"HOME": "/home/agent", "USER": AGENT_USER}
        if self.definition is not None:
            env |= self.definition.remote_env
        return env

    async def _check(self, container_id: str) -> None:
        result = await self.runtime.run_plain(
            container_id, ["/bin/sh", "-c", CHECK, "agentdock-check", self.user], user="0", timeout=600
        )
        if result.exit_code == 0:
            return
        if result.exit_code in (3, 4):
            raise Conflict(
                f"the image of project {self._project.name!r} is refused: {result.text.strip()}; sessions and "
                f"commands run as a non-root user ('agent', uid {AGENT_UID} in the default image, or the "
                "devcontainer's remoteUser)"
            )
        raise Conflict(f"the container of project {self._project.name!r} could not be prepared: {result.text[-500:]}")

    # --- Docker events, timers, reconciliation ----------------------------------------

    async def on_event(self, event: m.ContainerEvent) -> None:
        async with self._lock:
            if event.container_id != self._container_id:
                return
            match event.action:
                case "die":
                    await self._on_die(event.exit_code)
                case "oom":
                    self.last_failure = "out of memory"
                    log.warning("container.oom", container_id=event.container_id)
                case "destroy":
                    self._deliberate(want_running=False)
                    await self._set_container_id(None)
                    log.info("container.removed", container_id=event.container_id, source="external")
                case "start" if not self.want_running:
                    self.want_running = True
                    log.info("container.started", container_id=event.container_id, source="external")

    async def _on_die(self, exit_code: int | None) -> None:
        assert self._container_id is not None
        state = await self.runtime.inspect(self._container_id)
        if state is not None and state.status == "running":
            return  # a die that a restart has already overtaken
        if not self.want_running:
            return  # a stop someone asked for: not a failure
        reason = self.last_failure if self.last_failure == "out of memory" else f"exited with code {exit_code}"
        self._failed(reason, exit_code=exit_code)

    def _failed(self, reason: str, **fields: Any) -> None:
        """Record a failure of a container we want running; restart later, or give up."""
        self.last_failure = reason
        delay = self.tracker.record_failure() if self.policy.should_restart(failed=True) else None
        instruments.CONTAINER_FAILURES.inc()
        if delay is None:
            self.gave_up = True
            instruments.CONTAINER_GAVE_UP.inc()
            self.want_running = False
            self._generation += 1
            log.error(
                "container.gave_up",
                container_id=self._container_id,
                reason=reason,
                restart_count=self.tracker.restarts,
                max_restarts=self.policy.max_restarts,
                window_s=self.policy.window_s,
            )
            return
        log.warning("container.died", container_id=self._container_id, reason=reason, restart_in_s=delay, **fields)
        self._schedule_restart(delay)

    def _schedule_restart(self, delay: float) -> None:
        self._cancel_timer()
        generation = self._generation

        async def fire() -> None:
            await asyncio.sleep(delay)
            await self.tell(m.RestartDue(generation=generation))

        self._timer = asyncio.create_task(fire(), name=f"restart-timer-{self._project.id}")

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None

    async def on_restart_due(self, generation: int) -> None:
        async with self._lock:
            self._timer = None
            if generation != self._generation or not self.want_running:
                return
            try:
                state = await self._bring_up()
            except AppError as exc:
                self._failed(f"restart failed: {exc.detail}")
                return
            self.tracker.record_restart()
            instruments.CONTAINER_RESTARTS.labels(reason="failure").inc()
            log.info(
                "container.restarted", container_id=state.id, reason="failure", restart_count=self.tracker.restarts
            )

    async def reconcile(self) -> None:
        async with self._lock:
            if not self._adopted:
                await self._adopt()
                return
            if not self.want_running or self._container_id is None or self._timer is not None:
                return
            state = await self.runtime.inspect(self._container_id)
            if state is None or state.status != "running":
                reason = "missing" if state is None else f"exited with code {state.exit_code}"
                self._failed(f"found {reason} on reconciliation")

    # --- work: sessions and commands, inside the container as `agent` -------------------

    @property
    def default_shell(self) -> list[str]:
        return list(SHELL)

    def session_env(self) -> dict[str, str]:
        return {**BASE_ENV, **self._base_env()}

    async def spawn_pty(self, spec: SpawnSpec, *, key: str) -> PtyProcess:
        container_id = await self._running_id()
        instance = self._instance
        spec = msgspec.structs.replace(spec, user=self.user)
        held = instance is not None and await self._has_holder(container_id, instance)
        return await DockerExecPty.spawn(self.runtime, container_id, spec, key=key, instance=instance if held else None)

    async def reattach_pty(
        self, spec: SpawnSpec, *, key: str, holding: Holding, since: int | None = None
    ) -> PtyProcess | None:
        """Attach to a held program again, if the container it ran in still runs (the same
        container, not restarted since), its output from offset ``since`` on. Never starts
        the container."""
        async with self._lock:
            await self._ensure_adopted()
            if self._container_id is None:
                return None
            state = await self.runtime.inspect(self._container_id)
        if state is None or state.status != "running" or instance_of(state) != holding.instance:
            return None
        if not await self._image_has_holder(state.id, holding.instance):
            return None  # held by another holder (dtach, before agentdock-hold): not ours to attach to
        spec = msgspec.structs.replace(spec, user=holding.user)
        return await DockerExecPty.reattach(
            self.runtime, state.id, spec, key=key, instance=holding.instance, since=since
        )

    async def _has_holder(self, container_id: str, instance: str) -> bool:
        """Whether a new session runs under the holder: the operator wants it and the image has it."""
        if self.runtime.settings.session_holder == "none":
            return False
        return await self._image_has_holder(container_id, instance)

    async def _image_has_holder(self, container_id: str, instance: str) -> bool:
        known = self._holder.get(instance)
        if known is None:
            try:
                result = await self.runtime.run_plain(container_id, holder.PROBE, user=self.user, timeout=15)
            except (aiodocker.DockerError, Unavailable):
                return False  # asked again at the next session
            known = self._holder[instance] = result.exit_code == 0
            if not known:
                log.info("session.holder_missing", container_id=container_id, holder=holder.HOLDER)
        return known

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
        container_id = await self._running_id()
        return await self.runtime.run(
            container_id,
            argv,
            user=self.user,
            timeout=timeout,
            env={**self._base_env(), **(env or {})},
            output_limit=output_limit,
            stdout=stdout,
            stdin=stdin,
            on_output=on_output,
            cwd=cwd,
        )

    async def snapshot(self, patterns: tuple[str, ...], *, timeout: float, cwd: str | None = None) -> dict[str, str]:
        result = await self.run(snapshot_argv(patterns), timeout=timeout, output_limit=SNAPSHOT_OUTPUT_LIMIT, cwd=cwd)
        return snapshot_result(result, timeout)


def _quiet(_: BuildProgress) -> None:
    """A build started by a container's start is logged by its outcome; the build API streams."""
