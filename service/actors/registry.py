"""``SupervisorRegistry``: one supervisor per project, started at start-up for every project in
the database and on demand; a crashed supervisor is restarted (with its own intensity limit);
shutdown stops every supervisor and never a container, and lets go of the sessions a holder
keeps rather than ending them (their scrollback saved every 10 s while it changes)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy.exc import SQLAlchemyError

from service.actors import messages as m
from service.actors.mailbox import DEFAULT_ASK_TIMEOUT_S, Mailbox
from service.actors.policy import RestartPolicy, RestartTracker
from service.actors.store import ProjectStore
from service.actors.supervisor import ProjectChildren, ProjectSupervisor
from service.containers.schemas import Container, to_container
from service.errors import AppError, NotFound, Unavailable
from service.logs import get_logger
from service.metrics import instruments
from service.runtimes.base import ContainerState, ProjectRef
from service.runtimes.docker import DockerRuntime
from service.runtimes.environment import Environment
from service.runtimes.factory import Environments
from service.sessions.children import SessionIndex, SessionSet
from service.sessions.store import SAVE_EVERY_S, SAVE_TICK_S, SessionStore
from service.workflows.engine import AgentEnvironmentOf, WorkflowEngine, WorkflowServices

log = get_logger(__name__)

SUPERVISOR_POLICY = RestartPolicy(max_restarts=5, window_s=60.0, backoff_initial_s=0.1, backoff_max_s=5.0)


@dataclass(frozen=True)
class SupervisorSnapshot:
    """What one supervisor holds, read without touching it (for metrics at scrape time)."""

    project_id: UUID
    failed: bool
    mailbox_depth: int
    runtime: str
    container_id: str | None


@dataclass
class _Entry:
    mailbox: Mailbox
    tracker: RestartTracker
    children: ProjectChildren
    supervisor: ProjectSupervisor | None = None
    task: asyncio.Task[None] | None = None
    failed: str | None = None  # set when the supervisor crashed too often
    pending: set[asyncio.Task[None]] = field(default_factory=set)


class SupervisorRegistry:
    def __init__(
        self,
        *,
        docker: DockerRuntime,
        agent_environment: AgentEnvironmentOf,
        store: ProjectStore,
        policy: RestartPolicy,
        workflow_services: WorkflowServices,
        session_store: SessionStore | None = None,
        supervisor_policy: RestartPolicy = SUPERVISOR_POLICY,
    ) -> None:
        self.session_store = session_store
        self._saver: asyncio.Task[None] | None = None
        self.workflow_services = workflow_services
        self.docker = docker
        self.agent_environment = agent_environment
        self.environments = Environments(docker, policy, allow_local=docker.settings.allow_local_runtime)
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
        if self.session_store is not None:
            self._saver = asyncio.create_task(self._save_scrollbacks(), name="scrollback-saver")
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
        """The service stops: every supervisor, letting go of held sessions (not ending them)."""
        self._closing = True
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        await asyncio.gather(*(self.stop(project_id, release=True) for project_id in list(self._entries)))

    async def _save_scrollbacks(self) -> None:
        """Save the scrollback of every held session that changed, each at most once every
        SAVE_EVERY_S (spread over the ticks: the sessions' saves do not come all at once)."""
        while True:
            await asyncio.sleep(SAVE_TICK_S)
            for entry in list(self._entries.values()):
                try:
                    await entry.children.sessions.save_all(every=SAVE_EVERY_S)
                except Exception as exc:  # a full disk must not end the saving for good
                    log.warning("session.scrollback_save_failed", error=f"{type(exc).__name__}: {exc}")

    async def stop(self, project_id: UUID, *, release: bool = False) -> None:
        """Stop the project's supervisor (its container keeps running). Deleting a project
        calls this after its row is gone: under the lock, so that no request that raced the
        delete can start a supervisor for it again; its sessions end. With ``release`` (the
        service stops), sessions a holder keeps are let go of instead."""
        async with self._lock:
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
        # The supervisor no longer runs: its children are the registry's to end.
        await entry.children.workflows.stop()
        if release:
            await entry.children.sessions.release_all()
        else:
            await entry.children.sessions.close_all()
        entry.children.environment.close()
        for envelope in entry.mailbox.drain():
            if envelope.reply is not None and not envelope.reply.done():
                envelope.reply.set_exception(Unavailable("the project's supervisor stopped"))
        log.info("supervisor.stopped", project_id=str(project_id))

    def _new_entry(self, project: ProjectRef) -> _Entry:
        mailbox = Mailbox(f"the supervisor of project {project.name!r}")
        environment = self._make_environment(project, mailbox)
        children = ProjectChildren(
            environment=environment,
            sessions=SessionSet(
                mailbox=mailbox,
                environment=environment,
                policy=self.policy,
                index=self.index,
                agent_environment=functools.partial(self.agent_environment, project.id),
                store=self.session_store,
            ),
            workflows=WorkflowEngine(self.workflow_services, mailbox, environment),
        )
        return _Entry(mailbox=mailbox, tracker=RestartTracker(self.supervisor_policy), children=children)

    def _make_environment(self, project: ProjectRef, mailbox: Mailbox) -> Environment:
        project_id = project.id

        async def save(container_id: str | None) -> None:
            await self.store.save_container_id(project_id, container_id)

        return self.environments.make(project, tell=mailbox.put, save=save)

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
                    entry = self._new_entry(project)
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

    def snapshot(self) -> list[SupervisorSnapshot]:
        return [
            SupervisorSnapshot(
                project_id=project_id,
                failed=entry.failed is not None,
                mailbox_depth=len(entry.mailbox),
                runtime=entry.children.environment.kind,
                container_id=entry.children.environment.container_id,
            )
            for project_id, entry in list(self._entries.items())
        ]

    def find_by_container(self, container_id: str) -> UUID | None:
        """The project whose supervisor owns this container."""
        for project_id, entry in self._entries.items():
            if entry.children.environment.container_id == container_id:
                return project_id
        return None

    def container_view(self, state: ContainerState) -> Container:
        """A container listed from Docker, with its environment's restart count and failure
        (a read of a snapshot: nothing is changed outside the supervisor)."""
        view = to_container(state)
        entry = self._entries.get(view.project_id) if view.project_id else None
        if entry is None or entry.children.environment.container_id != state.id:
            return view
        return entry.children.environment.view(state)

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
            children=entry.children,
            store=self.store,
            make_environment=lambda changed: self._make_environment(changed, entry.mailbox),
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
        instruments.SUPERVISOR_CRASHES.inc()
        delay = entry.tracker.record_failure()
        if delay is None:
            instruments.SUPERVISOR_GAVE_UP.inc()
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
