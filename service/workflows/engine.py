"""The workflow runs of one project, a child of its supervisor: one run at a time, the others
wait ``queued``; a run that was ``running`` when the service stopped is resumed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from service.actors import messages as m
from service.actors.mailbox import Mailbox
from service.errors import Conflict, NotFound
from service.git.host import Author
from service.logs import get_logger
from service.runtimes.base import ProjectRef
from service.runtimes.environment import Environment
from service.secrets.services import AgentEnvironment
from service.sessions.children import SessionSet
from service.workflows.events import RunEvents
from service.workflows.runner import Publish, RunExecution
from service.workflows.schemas import FINISHED, Run
from service.workflows.store import RunStore

log = get_logger(__name__)


# The exec environment of a project's agents (env file, project env, secrets) and its redactor.
AgentEnvironmentOf = Callable[[UUID], Awaitable[AgentEnvironment]]


@dataclass(frozen=True)
class WorkflowServices:
    """What every project's engine shares."""

    store: RunStore
    events: RunEvents
    author: Author
    publish: Publish | None = None
    agent_environment: AgentEnvironmentOf | None = None


class WorkflowEngine:
    def __init__(self, services: WorkflowServices, mailbox: Mailbox, environment: Environment) -> None:
        self.services = services
        self.mailbox = mailbox
        self.environment = environment
        self.execution: RunExecution | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def is_active(self, run_id: UUID) -> bool:
        return self.busy and self.execution is not None and self.execution.run_id == run_id

    async def kick(self, project: ProjectRef) -> None:
        """Start the next run when none runs: a resumed one first, then the oldest queued."""
        if self.busy:
            return
        store = self.services.store
        runs = await store.in_states(project.id, ("running",))
        resumed = bool(runs)
        runs = runs or await store.in_states(project.id, ("queued",))
        if not runs:
            return
        run = runs[0]
        if resumed:
            log.info("workflow.run.resumed", run_id=str(run.id), project_id=str(project.id))
            self.services.events.publish(run, "resumed")
        execution = RunExecution(
            run.id,
            project=project,
            store=store,
            events=self.services.events,
            ask=self.mailbox.ask,
            environment=self.environment,
            author=self.services.author,
            publish=self.services.publish,
            agent_environment=self.services.agent_environment,
        )
        self.execution = execution
        self.task = asyncio.create_task(execution.execute(), name=f"workflow-run-{run.id}")
        self.task.add_done_callback(lambda _: self._finished(run.id))

    def _finished(self, run_id: UUID) -> None:
        with contextlib.suppress(Exception):  # a full mailbox: the next StartRuns picks it up
            self.mailbox.tell(m.RunFinished(run_id=run_id))

    async def cancel(self, run_id: UUID, sessions: SessionSet) -> Run:
        store = self.services.store
        run = await store.get(run_id)
        if run.state in FINISHED:
            raise Conflict(f"the run is {run.state} already")
        if self.is_active(run_id) and self.execution is not None and self.task is not None:
            self.execution.cancel_requested = True
            session_id = self.execution.session_id
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            if session_id is not None:
                with contextlib.suppress(NotFound):
                    await sessions.close(session_id)
            return await store.get(run_id)
        run = await store.update_run(run_id, state="cancelled", reason="cancelled before it started")
        self.services.events.publish(run, "cancelled")
        log.info("workflow.run.cancelled", run_id=str(run_id), project_id=str(run.project_id))
        return run

    async def stop(self) -> None:
        """The service is stopping: end the run's task without changing its state, so that
        it is resumed at the next start."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
