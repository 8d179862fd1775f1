"""``ProjectSupervisor``: the one actor that owns a project's container (and, later, sessions).

It reads its mailbox one message at a time; nothing else changes what it owns. A container
that dies while wanted is restarted after an exponential backoff, within the policy's
intensity limit; past it the container is marked ``error`` and the failure is reported.
Expected errors (``AppError``) go back to the asker; anything else crashes the supervisor,
and the registry restarts it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog

from service.actors import messages as m
from service.actors.mailbox import Envelope, Mailbox
from service.actors.policy import RestartPolicy, RestartTracker
from service.actors.store import ProjectStore
from service.containers.schemas import Container, to_container
from service.errors import AppError, Conflict, NotFound, Unavailable
from service.logs import get_logger
from service.runtimes.base import ContainerState, ProjectRef, Runtime
from service.runtimes.docker import DockerRuntime
from service.sessions.children import SessionSet
from service.workflows.engine import WorkflowEngine

log = get_logger(__name__)


class ProjectSupervisor:
    def __init__(
        self,
        project: ProjectRef,
        mailbox: Mailbox,
        *,
        docker: DockerRuntime,
        local: Runtime,
        store: ProjectStore,
        policy: RestartPolicy,
        sessions: SessionSet,
        workflows: WorkflowEngine,
    ) -> None:
        self.project = project
        self.sessions = sessions
        self.workflows = workflows
        self.mailbox = mailbox
        self.docker = docker
        self.local = local
        self.store = store
        self.policy = policy
        self.tracker = RestartTracker(policy)
        self.container_id: str | None = project.container_id
        self.want_running = False
        self.gave_up = False
        self.last_failure: str | None = None
        self._adopted = False
        self._generation = 0
        self._timer: asyncio.Task[None] | None = None

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(project_id=str(self.project.id))
        try:
            await self._adopt()
            await self.workflows.kick(self.project)  # resumes a run the service was running
            while True:
                # One message at a time; its request dies with _process's frame, so that an
                # idle supervisor holds nothing of it (a failed reply's traceback would).
                await self._process(await self.mailbox.receive())
        finally:
            self._cancel_timer()

    async def _process(self, envelope: Envelope) -> None:
        reply = envelope.reply
        try:
            result = await self.handle(envelope.message)
        except AppError as exc:
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            elif reply is None:
                log.warning("supervisor.message_failed", message=type(envelope.message).__name__, detail=exc.detail)
            return
        except Exception as exc:
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            raise
        if reply is not None and not reply.done():
            reply.set_result(result)

    async def handle(self, message: m.Message) -> Any:  # noqa: PLR0911, PLR0912 - one case per message
        match message:
            case m.GetContainer():
                return await self._get()
            case m.StartContainer():
                return await self._start()
            case m.StopContainer():
                return await self._stop()
            case m.RestartContainer():
                return await self._restart()
            case m.RemoveContainer():
                return await self._remove()
            case m.ContainerEvent():
                return await self._on_event(message)
            case m.RestartDue(generation=generation):
                return await self._on_restart_due(generation)
            case m.Reconcile():
                return await self._reconcile()
            case m.ProjectChanged():
                return await self._reload()
            case m.OpenSession(run_id=run_id):
                if run_id is not None and not self.workflows.is_active(run_id):
                    raise Conflict(f"the workflow run {run_id} is over: no session is opened for it")
                return await self.sessions.open(self.project, message)
            case m.EnsureContainer():
                return await self.ensure_running()
            case m.StartRuns() | m.RunFinished():
                return await self.workflows.kick(self.project)
            case m.CancelRun(run_id=run_id):
                return await self.workflows.cancel(run_id, self.sessions)
            case m.DefaultSession():
                return await self.sessions.default(self.project, message)
            case m.ListSessions():
                return [session.view() for session in self.sessions.sessions.values()]
            case m.CloseSession(session_id=session_id):
                return await self.sessions.close(session_id)
            case m.SessionExited():
                return await self.sessions.on_exited(self.project, message)
            case m.SessionRestartDue():
                return await self.sessions.on_restart_due(self.project, message)
        raise TypeError(f"unknown message {type(message).__name__}")

    # --- adoption --------------------------------------------------------------------

    async def _adopt(self) -> None:
        """Re-adopt the project's labelled container, if any. An unreachable engine is not a
        crash: adoption is retried with the next message."""
        if self.project.runtime != "docker":
            self._adopted = True
            return
        try:
            state = await self.docker.find(self.project)
        except AppError as exc:
            log.warning("container.adopt_failed", detail=exc.detail)
            return
        self._adopted = True
        if state is None:
            if self.container_id is not None:
                await self._set_container_id(None)
            return
        if state.id != self.container_id:
            await self._set_container_id(state.id)
        self.want_running = state.status == "running"
        log.info("container.adopted", container_id=state.id, status=state.status)

    async def _ensure_adopted(self) -> None:
        if not self._adopted:
            await self._adopt()
            if not self._adopted:
                raise Unavailable("the Docker engine does not answer; the container's state is unknown")

    def _require_docker(self) -> None:
        if self.project.runtime != "docker":
            raise Conflict(f"project {self.project.name!r} uses the local runtime: it has no container")

    async def _set_container_id(self, container_id: str | None) -> None:
        self.container_id = container_id
        self.project = msgspec.structs.replace(self.project, container_id=container_id)
        await self.store.save_container_id(self.project.id, container_id)

    # --- API requests ----------------------------------------------------------------

    def view(self, state: ContainerState | None) -> Container:
        """The API view of the container: Docker's state plus what this supervisor knows."""
        if state is None:
            assert self.container_id is not None
            return Container(
                id=self.container_id,
                project_id=self.project.id,
                name="",
                image=self.project.image,
                status="missing",
                restart_count=self.tracker.restarts,
                last_failure=self.last_failure,
            )
        return to_container(
            state, restart_count=self.tracker.restarts, last_failure=self.last_failure, gave_up=self.gave_up
        )

    async def _get(self) -> Container:
        self._require_docker()
        await self._ensure_adopted()
        if self.container_id is None:
            raise NotFound(f"project {self.project.name!r} has no container yet; start it to create one")
        return self.view(await self.docker.inspect(self.container_id))

    async def _bring_up(self) -> ContainerState:
        """Create the container if missing, start it if not running; answer its state."""
        state = await self.docker.inspect(self.container_id) if self.container_id else None
        if state is None:
            state = await self.docker.create(self.project)
            await self._set_container_id(state.id)
            log.info("container.created", container_id=state.id, image=state.image, name=state.name)
        if state.status != "running":
            await self.docker.start(state.id)
            state = await self.docker.inspect(state.id) or state
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

    async def ensure_running(self) -> str:
        """For sessions: the container, created and started if need be; answers its id."""
        self._require_docker()
        await self._ensure_adopted()
        if self.gave_up:
            raise Conflict(
                f"the container of project {self.project.name!r} failed too often ({self.last_failure}); "
                "start it again first"
            )
        if not self.want_running:
            self._deliberate(want_running=True)
        return (await self._bring_up()).id

    async def _start(self) -> Container:
        self._require_docker()
        await self._ensure_adopted()
        self._deliberate(want_running=True)
        return self.view(await self._bring_up())

    async def _stop(self) -> Container:
        self._require_docker()
        await self._ensure_adopted()
        if self.container_id is None:
            raise NotFound(f"project {self.project.name!r} has no container")
        self._deliberate(want_running=False)
        await self.docker.stop(self.container_id)
        log.info("container.stopped", container_id=self.container_id)
        return self.view(await self.docker.inspect(self.container_id))

    async def _restart(self) -> Container:
        self._require_docker()
        await self._ensure_adopted()
        self._deliberate(want_running=True)
        if self.container_id is not None:
            await self.docker.stop(self.container_id)
        state = await self._bring_up()
        log.info("container.restarted", container_id=state.id, reason="requested", restart_count=self.tracker.restarts)
        return self.view(state)

    async def _remove(self) -> None:
        self._require_docker()
        await self._ensure_adopted()
        self._deliberate(want_running=False)
        if self.container_id is None:
            raise NotFound(f"project {self.project.name!r} has no container")
        container_id = self.container_id
        await self.docker.remove(container_id)
        await self._set_container_id(None)
        log.info("container.removed", container_id=container_id, source="api")

    # --- Docker events, timers, reconciliation ----------------------------------------

    async def _on_event(self, event: m.ContainerEvent) -> None:
        if event.container_id != self.container_id:
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
        assert self.container_id is not None
        state = await self.docker.inspect(self.container_id)
        if state is not None and state.status == "running":
            return  # a die that a restart has already overtaken
        if not self.want_running:
            return  # a stop someone asked for: not a failure
        reason = self.last_failure if self.last_failure == "out of memory" else f"exited with code {exit_code}"
        self._failed(reason, exit_code=exit_code)

    def _failed(self, reason: str, **fields: Any) -> None:
        """Record a failure of a container we want running; restart later, or give up."""
        self.last_failure = reason
        delay = self.tracker.record_failure()
        if delay is None:
            self.gave_up = True
            self.want_running = False
            self._generation += 1
            log.error(
                "container.gave_up",
                container_id=self.container_id,
                reason=reason,
                restart_count=self.tracker.restarts,
                max_restarts=self.policy.max_restarts,
                window_s=self.policy.window_s,
            )
            return
        log.warning("container.died", container_id=self.container_id, reason=reason, restart_in_s=delay, **fields)
        self._schedule_restart(delay)

    def _schedule_restart(self, delay: float) -> None:
        self._cancel_timer()
        generation = self._generation

        async def fire() -> None:
            await asyncio.sleep(delay)
            self.mailbox.tell(m.RestartDue(generation=generation))

        self._timer = asyncio.create_task(fire(), name=f"restart-timer-{self.project.id}")

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None

    async def _on_restart_due(self, generation: int) -> None:
        self._timer = None
        if generation != self._generation or not self.want_running:
            return
        try:
            state = await self._bring_up()
        except AppError as exc:
            self._failed(f"restart failed: {exc.detail}")
            return
        self.tracker.record_restart()
        log.info("container.restarted", container_id=state.id, reason="failure", restart_count=self.tracker.restarts)

    async def _reconcile(self) -> None:
        if self.project.runtime != "docker":
            return
        if not self._adopted:
            await self._adopt()
            return
        if not self.want_running or self.container_id is None or self._timer is not None:
            return
        state = await self.docker.inspect(self.container_id)
        if state is None or state.status != "running":
            reason = "missing" if state is None else f"exited with code {state.exit_code}"
            self._failed(f"found {reason} on reconciliation")

    async def _reload(self) -> None:
        project = await self.store.load(self.project.id)
        if project is not None:
            self.project = msgspec.structs.replace(project, container_id=self.container_id)
