"""``SupervisorRegistry``: one supervisor per project, started at start-up for every project in
the database and on demand; a crashed supervisor is restarted (with its own intensity limit);
shutdown stops every supervisor and never a container."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy.exc import SQLAlchemyError

from service.actors import messages as m
from service.actors.mailbox import DEFAULT_ASK_TIMEOUT_S, Mailbox
from service.actors.policy import RestartPolicy, RestartTracker
from service.actors.store import ProjectStore
from service.actors.supervisor import ProjectSupervisor
from service.containers.schemas import Container, to_container
from service.errors import AppError, NotFound, Unavailable
from service.logs import get_logger
from service.runtimes.base import ContainerState, ProjectRef, Runtime
from service.runtimes.docker import DockerRuntime
from service.sessions.children import SessionIndex, SessionSet
from service.workflows.engine import WorkflowEngine, WorkflowServices

log = get_logger(__name__)

SUPERVISOR_POLICY = RestartPolicy(max_restarts=5, window_s=60.0, backoff_initial_s=0.1, backoff_max_s=5.0)


@dataclass
class _Entry:
    mailbox: Mailbox
    tracker: RestartTracker
    sessions: SessionSet
    workflows: WorkflowEngine
    supervisor: ProjectSupervisor | None = None
    task: asyncio.Task[None] | None = None
    failed: str | None = None  # set when the supervisor crashed too often
    pending: set[asyncio.Task[None]] = field(default_factory=set)


class SupervisorRegistry:
    def __init__(
        self,
        *,
        docker: DockerRuntime,
        local: Runtime,
        store: ProjectStore,
        policy: RestartPolicy,
        workflow_services: WorkflowServices,
        supervisor_policy: RestartPolicy = SUPERVISOR_POLICY,
    ) -> None:
        self.workflow_services = workflow_services
        self.docker = docker
        self.local = local
        self.store = store
        self.policy = policy
        self.supervisor_policy = supervisor_policy
        self._entries: dict[UUID, _Entry] = {}
        self.index = SessionIndex()
        self._lock = asyncio.Lock()
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start a supervisor for every project, each re-adopting its container; log
        labelled containers whose project no longer exists, and leave them alone."""
        try:
            project_ids = await self.store.all_ids()
        except SQLAlchemyError as exc:
            # Serve anyway: health reports the database, supervisors start on demand later.
            log.error("database.unavailable", detail=f"{type(exc).__name__}: {exc}")  # noqa: TRY400
            return
        for project_id in project_ids:
            await self.ensure(project_id)
        try:
            containers = await self.docker.list_managed()
        except AppError as exc:
            log.warning("docker.unavailable", detail=exc.detail)
            return
        known = {str(pid) for pid in project_ids}
        for container in containers:
            if container.project_id not in known:
                log.info("container.orphaned", container_id=container.id, project_id=container.project_id)

    async def stop_all(self) -> None:
        self._closing = True
        await asyncio.gather(*(self.stop(project_id) for project_id in list(self._entries)))

    async def stop(self, project_id: UUID) -> None:
        """Stop the project's supervisor (its container keeps running)."""
        entry = self._entries.pop(project_id, None)
        if entry is None:
            return
        for task in [*entry.pending, entry.task]:
            if task is not None and not task.done():
                task.cancel()
        for task in [*entry.pending, entry.task]:
            if task is not None:
                # A task that crashed was reported as supervisor.crashed already.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # The supervisor no longer runs: its run and its sessions are the registry's to end.
        await entry.workflows.stop()
        await entry.sessions.close_all()
        for envelope in entry.mailbox.drain():
            if envelope.reply is not None and not envelope.reply.done():
                envelope.reply.set_exception(Unavailable("the project's supervisor stopped"))
        log.info("supervisor.stopped", project_id=str(project_id))

    def _new_entry(self, name: str) -> _Entry:
        mailbox = Mailbox(f"the supervisor of project {name!r}")
        holder: list[_Entry] = []

        async def ensure_container() -> str:
            supervisor = holder[0].supervisor
            assert supervisor is not None
            return await supervisor.ensure_running()

        # The sessions live in the entry, not in the supervisor: a supervisor that crashes
        # and is restarted takes its sessions back; they end only when the project stops.
        sessions = SessionSet(
            mailbox=mailbox, docker=self.docker, policy=self.policy, index=self.index, ensure_container=ensure_container
        )
        entry = _Entry(
            mailbox=mailbox,
            tracker=RestartTracker(self.supervisor_policy),
            sessions=sessions,
            workflows=WorkflowEngine(self.workflow_services, mailbox),
        )
        holder.append(entry)
        return entry

    # --- messages --------------------------------------------------------------------

    async def ensure(self, project_id: UUID) -> Mailbox:
        """The project's mailbox, starting its supervisor when none runs."""
        entry = self._entries.get(project_id)
        if entry is None:
            async with self._lock:
                entry = self._entries.get(project_id)
                if entry is None:
                    project = await self.store.load(project_id)
                    if project is None:
                        raise NotFound(f"no project with id {project_id}")
                    if self._closing:
                        raise Unavailable("the service is shutting down")
                    entry = self._new_entry(project.name)
                    self._entries[project_id] = entry
                    self._start_supervisor(project, entry)
        if entry.failed:
            raise Unavailable(entry.failed)
        return entry.mailbox

    async def ask(self, project_id: UUID, message: m.Message, timeout: float = DEFAULT_ASK_TIMEOUT_S) -> Any:
        mailbox = await self.ensure(project_id)
        return await mailbox.ask(message, timeout)

    def tell(self, project_id: UUID, message: m.Message) -> bool:
        """Deliver to a running supervisor; answers False when the project has none."""
        entry = self._entries.get(project_id)
        if entry is None or entry.failed:
            return False
        entry.mailbox.tell(message)
        return True

    def tell_all(self, message: m.Message) -> None:
        for project_id in list(self._entries):
            self.tell(project_id, message)

    def supervisor(self, project_id: UUID) -> ProjectSupervisor | None:
        entry = self._entries.get(project_id)
        return None if entry is None else entry.supervisor

    def find_by_container(self, container_id: str) -> UUID | None:
        """The project whose supervisor owns this container."""
        for project_id, entry in self._entries.items():
            if entry.supervisor is not None and entry.supervisor.container_id == container_id:
                return project_id
        return None

    def container_view(self, state: ContainerState) -> Container:
        """A container listed from Docker, with its supervisor's restart count and failure
        (a read of a snapshot: nothing is changed outside the supervisor's loop)."""
        view = to_container(state)
        supervisor = self.supervisor(view.project_id) if view.project_id else None
        if supervisor is None or supervisor.container_id != state.id:
            return view
        return supervisor.view(state)

    # --- supervision -----------------------------------------------------------------

    async def _spawn(self, project_id: UUID, entry: _Entry) -> None:
        project = await self.store.load(project_id)
        if project is None:
            self._entries.pop(project_id, None)
            return
        self._start_supervisor(project, entry)

    def _start_supervisor(self, project: ProjectRef, entry: _Entry) -> None:
        project_id = project.id
        supervisor = ProjectSupervisor(
            project,
            entry.mailbox,
            docker=self.docker,
            local=self.local,
            store=self.store,
            policy=self.policy,
            sessions=entry.sessions,
            workflows=entry.workflows,
        )
        entry.supervisor = supervisor
        # A fresh context: a supervisor started during a request must not carry its request_id.
        entry.task = asyncio.create_task(
            supervisor.run(), name=f"supervisor-{project_id}", context=contextvars.Context()
        )
        entry.task.add_done_callback(lambda task: self._on_exit(project_id, entry, task))
        log.info("supervisor.started", project_id=str(project_id))

    def _on_exit(self, project_id: UUID, entry: _Entry, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._entries.get(project_id) is not entry:
            return
        exc = task.exception()
        log.error(
            "supervisor.crashed",
            project_id=str(project_id),
            error=f"{type(exc).__name__}: {exc}" if exc else "returned",
            exc_info=exc,
        )
        delay = entry.tracker.record_failure()
        if delay is None:
            entry.failed = (
                f"the supervisor of project {project_id} crashed more than "
                f"{self.supervisor_policy.max_restarts} times in {self.supervisor_policy.window_s:g} s"
            )
            log.error("supervisor.gave_up", project_id=str(project_id), reason=entry.failed)
            for envelope in entry.mailbox.drain():
                if envelope.reply is not None and not envelope.reply.done():
                    envelope.reply.set_exception(Unavailable(entry.failed))
            return

        async def restart() -> None:
            await asyncio.sleep(delay)
            await self._spawn(project_id, entry)
            entry.tracker.record_restart()
            log.info("supervisor.restarted", project_id=str(project_id), restart_count=entry.tracker.restarts)

        pending = asyncio.create_task(restart(), name=f"supervisor-restart-{project_id}")
        entry.pending.add(pending)
        pending.add_done_callback(entry.pending.discard)
