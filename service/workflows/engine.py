"""The workflow runs of one project, a child of its supervisor: up to the project's
``parallel_runs`` at once (each in its own git worktree), the others wait ``queued``; a run
that was ``running`` when the service stopped is resumed. The review loop (diff, merge,
discard) works on a finished run's branch and worktree, inside the project's environment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from service.actors import messages as m
from service.actors.mailbox import Mailbox
from service.errors import Conflict, NotFound
from service.git import workspace as workspace_git
from service.git.host import Author
from service.logs import get_logger
from service.runtimes.base import ProjectRef
from service.runtimes.environment import Environment
from service.secrets.services import AgentEnvironment
from service.sessions.children import SessionSet
from service.workflows.events import RunEvents
from service.workflows.runner import GIT_TIMEOUT_S, Publish, RunExecution
from service.workflows.schemas import FINISHED, DiffFile, Run, RunDiff
from service.workflows.store import RunStore, project_workflow_settings

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
    """A project's runs: up to its ``parallel_runs`` at once, each in its own worktree."""

    def __init__(self, services: WorkflowServices, mailbox: Mailbox, environment: Environment) -> None:
        self.services = services
        self.mailbox = mailbox
        self.environment = environment
        self.running: dict[UUID, tuple[RunExecution, asyncio.Task[None]]] = {}
        self._review_lock = asyncio.Lock()  # merges and discards touch the main work tree

    @property
    def busy(self) -> bool:
        return any(not task.done() for _, task in self.running.values())

    def is_active(self, run_id: UUID) -> bool:
        entry = self.running.get(run_id)
        return entry is not None and not entry[1].done()

    async def kick(self, project: ProjectRef) -> None:
        """Start runs while fewer than the project's ``parallel_runs`` run: the ones that were
        running when the service stopped first (resumed), then the oldest queued."""
        store = self.services.store
        self.running = {rid: entry for rid, entry in self.running.items() if not entry[1].done()}
        settings = await project_workflow_settings(store.db, project.id)
        resumable = [r for r in await store.in_states(project.id, ("running",)) if r.id not in self.running]
        queued = await store.in_states(project.id, ("queued",))
        for run in [*resumable, *queued]:
            if len(self.running) >= max(1, settings.parallel_runs) and run.state == "queued":
                break
            if run.state == "running":
                log.info("workflow.run.resumed", run_id=str(run.id), project_id=str(project.id))
                self.services.events.publish(run, "resumed")
            self._start(project, run.id)

    def _start(self, project: ProjectRef, run_id: UUID) -> None:
        execution = RunExecution(
            run_id,
            project=project,
            store=self.services.store,
            events=self.services.events,
            ask=self.mailbox.ask,
            environment=self.environment,
            author=self.services.author,
            publish=self.services.publish,
            agent_environment=self.services.agent_environment,
        )
        task = asyncio.create_task(execution.execute(), name=f"workflow-run-{run_id}")
        self.running[run_id] = (execution, task)
        task.add_done_callback(lambda _: self._finished(run_id))

    def _finished(self, run_id: UUID) -> None:
        with contextlib.suppress(Exception):  # a full mailbox: the next StartRuns picks it up
            self.mailbox.tell(m.RunFinished(run_id=run_id))

    async def cancel(self, run_id: UUID, sessions: SessionSet) -> Run:
        store = self.services.store
        run = await store.get(run_id)
        if run.state in FINISHED:
            raise Conflict(f"the run is {run.state} already")
        entry = self.running.get(run_id)
        if entry is not None and not entry[1].done():
            execution, task = entry
            execution.cancel_requested = True
            session_id = execution.session_id
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if session_id is not None:
                with contextlib.suppress(NotFound):
                    await sessions.close(session_id)
            return await store.get(run_id)
        run = await store.update_run(run_id, state="cancelled", reason="cancelled before it started")
        self.services.events.publish(run, "cancelled")
        log.info("workflow.run.cancelled", run_id=str(run_id), project_id=str(run.project_id))
        return run

    async def stop(self) -> None:
        """The service is stopping: end the runs' tasks without changing their state, so that
        they are resumed at the next start."""
        tasks = [task for _, task in self.running.values() if not task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- the review loop -------------------------------------------------------------

    async def _reviewable(self, run_id: UUID) -> Run:
        run = await self.services.store.get(run_id)
        if self.is_active(run_id) or run.state not in FINISHED:
            raise Conflict(f"the run is {run.state}: review it once it is over")
        if run.review != "unreviewed":
            raise Conflict(f"the run was {run.review} already")
        return run

    async def diff(self, run_id: UUID, *, limit: int, offset: int) -> RunDiff:
        run = await self.services.store.get(run_id)
        branch = f"agentdock/{run.id}"
        if run.worktree is None or run.base_commit is None or run.review == "discarded":
            raise Conflict("the run has no branch to compare (it kept no work, or it was discarded)")
        timeout = GIT_TIMEOUT_S
        files = await workspace_git.diff_files(self.environment, run.base_commit, branch, timeout=timeout)
        page = files[offset : offset + limit]
        patch, cut = await workspace_git.diff_patch(
            self.environment, run.base_commit, branch, [f.path for f in page], timeout=timeout
        )
        head = await workspace_git.head_of(self.environment, branch, timeout=timeout)
        return RunDiff(
            base=run.base_commit,
            head=head,
            files=[DiffFile(path=f.path, additions=f.additions, deletions=f.deletions) for f in page],
            total=len(files),
            limit=limit,
            offset=offset,
            patch=patch,
            truncated=cut,
        )

    async def merge(self, run_id: UUID) -> Run:
        async with self._review_lock:
            run = await self._reviewable(run_id)
            if run.state != "succeeded" or run.worktree is None or run.base_branch is None:
                raise Conflict("only a succeeded run that started on a branch can be merged")
            branch = f"agentdock/{run.id}"
            message = f"Merge {branch}: {run.task.strip().splitlines()[0][:60]}"
            author = self.services.author
            kind, commit = await workspace_git.merge(
                self.environment, branch, run.base_branch, message, author=author, timeout=GIT_TIMEOUT_S
            )
            await workspace_git.remove_worktree(
                self.environment, run.worktree, branch, delete_branch=False, timeout=GIT_TIMEOUT_S
            )
            run = await self.services.store.update_run(run_id, review="merged")
            self.services.events.publish(run, "merged")
            log.info("workflow.run.merged", run_id=str(run_id), how=kind, commit=commit, into=run.base_branch)
            return run

    async def discard(self, run_id: UUID) -> Run:
        async with self._review_lock:
            run = await self._reviewable(run_id)
            if run.worktree is not None:
                await workspace_git.remove_worktree(
                    self.environment, run.worktree, f"agentdock/{run.id}", delete_branch=True, timeout=GIT_TIMEOUT_S
                )
            run = await self.services.store.update_run(run_id, review="discarded")
            self.services.events.publish(run, "discarded")
            log.info("workflow.run.discarded", run_id=str(run_id))
            return run
