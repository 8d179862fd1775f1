"""``ProjectSupervisor``: the one actor per project, a small router over its children.

Its children are declared in ``CHILDREN`` (data, with their restart modes): the project's
environment (docker: its container), its PTY sessions and its workflow runs. They are made
once per project by the registry (``ProjectChildren``) and outlive a crash of the supervisor's
loop: the restarted loop takes the same children back; they end only when the project's
supervisor is stopped (project deleted, service shut down).

It reads its mailbox one message at a time. Quick work is answered in the loop; slow work
(engine calls: create, start, stop, exec spawn; ending a session) is *deferred*: the handler
returns ``Deferred(work)``, a child task does it and replies when it finishes (triotp's
``NoReply``/``reply``), and the loop goes on with the next message. A message whose asker has
already given up is dropped unread. Expected errors (``AppError``) go back to the asker;
anything else crashes the supervisor, and the registry restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from service.actors import messages as m
from service.actors.mailbox import Envelope, Mailbox
from service.actors.policy import RestartMode
from service.actors.store import ProjectStore
from service.errors import AppError, Conflict, Unavailable
from service.logs import get_logger
from service.runtimes.base import ProjectRef
from service.runtimes.environment import Environment
from service.sessions.children import SessionSet
from service.workflows.engine import WorkflowEngine
from service.workspace import commands, files

log = get_logger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """A kind of child and how it is restarted when it fails (triotp's child spec)."""

    name: str
    restart: RestartMode
    what: str


CHILDREN = (
    ChildSpec("environment", RestartMode.ON_FAILURE, "the container: restarted after a failure, within the policy"),
    ChildSpec("sessions", RestartMode.NEVER, "each session's own mode: never (default) or on-failure"),
    ChildSpec("runs", RestartMode.NEVER, "a run is never re-run; one interrupted by a restart is resumed"),
)


@dataclass
class ProjectChildren:
    """What one project's supervisor owns. Made by the registry, once per project."""

    environment: Environment
    sessions: SessionSet
    workflows: WorkflowEngine

    def replace_environment(self, environment: Environment) -> None:
        self.environment.close()
        self.environment = environment
        self.sessions.environment = environment
        self.workflows.environment = environment


@dataclass(frozen=True)
class Deferred:
    """A handler's answer "not yet": ``work`` runs as a child task that replies when done."""

    work: Coroutine[Any, Any, Any]
    what: str


class ChildCrashed(RuntimeError):
    pass


class ProjectSupervisor:
    def __init__(
        self,
        project: ProjectRef,
        mailbox: Mailbox,
        *,
        children: ProjectChildren,
        store: ProjectStore,
        make_environment: Callable[[ProjectRef], Environment],
    ) -> None:
        self.project = project
        self.mailbox = mailbox
        self.children = children
        self.store = store
        self.make_environment = make_environment
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def environment(self) -> Environment:
        return self.children.environment

    @property
    def sessions(self) -> SessionSet:
        return self.children.sessions

    @property
    def workflows(self) -> WorkflowEngine:
        return self.children.workflows

    @property
    def container_id(self) -> str | None:
        return self.environment.container_id

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(project_id=str(self.project.id))
        try:
            await self.environment.adopt()
            await self.sessions.restore()  # the held sessions a previous service left running
            await self.workflows.kick(self.project)  # resumes a run the service was running
            while True:
                # One message at a time; its request dies with _process's frame, so that an
                # idle supervisor holds nothing of it (a failed reply's traceback would).
                await self._process(await self.mailbox.receive())
        finally:
            await self._cancel_tasks()

    async def _process(self, envelope: Envelope) -> None:
        reply = envelope.reply
        if reply is not None and reply.done():
            # The asker gave up (timed out) before its turn came: do not act on it later.
            log.info("supervisor.message_dropped", message=type(envelope.message).__name__, reason="asker gave up")
            return
        try:
            result = await self.handle(envelope.message)
        except AppError as exc:
            _answer_error(envelope, exc)
            return
        except Exception as exc:
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            raise
        if isinstance(result, Deferred):
            self._defer(envelope, result)
        elif reply is not None and not reply.done():
            reply.set_result(result)

    def _defer(self, envelope: Envelope, deferred: Deferred) -> None:
        async def work() -> None:
            try:
                result = await deferred.work
            except AppError as exc:
                _answer_error(envelope, exc)
            except asyncio.CancelledError:
                if envelope.reply is not None and not envelope.reply.done():
                    envelope.reply.set_exception(Unavailable("the project's supervisor stopped"))
                raise
            except Exception as exc:
                if envelope.reply is not None and not envelope.reply.done():
                    envelope.reply.set_exception(exc)
                await self.mailbox.put(m.ChildFailed(what=deferred.what, error=f"{type(exc).__name__}: {exc}"))
            else:
                if envelope.reply is not None and not envelope.reply.done():
                    envelope.reply.set_result(result)

        task = asyncio.create_task(work(), name=f"{deferred.what}-{self.project.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def handle(self, message: m.Message) -> Any:  # noqa: PLR0911, PLR0912 - one case per message
        environment = self.environment
        match message:
            case m.GetContainer() | m.StartContainer() | m.StopContainer() | m.RestartContainer() | m.RemoveContainer():
                return Deferred(environment.container(message), "container-request")
            case m.PurgeEnvironment():
                return Deferred(environment.purge(), "environment-purge")
            case m.ContainerEvent():
                return Deferred(environment.on_event(message), "container-event")
            case m.RestartDue(generation=generation):
                return Deferred(environment.on_restart_due(generation), "container-restart")
            case m.Reconcile():
                return Deferred(environment.reconcile(), "container-reconcile")
            case m.ProjectChanged():
                return await self._reload()
            case m.OpenSession(run_id=run_id):
                if run_id is not None and not self.workflows.is_active(run_id):
                    raise Conflict(f"the workflow run {run_id} is over: no session is opened for it")
                return Deferred(self.sessions.open(message), "session-open")
            case m.DefaultSession():
                return Deferred(self.sessions.default(message), "session-open")
            case m.FindSession(session_id=session_id):
                return self.sessions.sessions.get(session_id)
            case m.ListSessions():
                return [session.view() for session in self.sessions.sessions.values()]
            case m.CloseSession(session_id=session_id):
                return Deferred(self.sessions.close(session_id), "session-close")
            case m.SessionExited():
                return await self.sessions.on_exited(message)
            case m.SessionRestartDue():
                return Deferred(self.sessions.on_restart_due(message), "session-restart")
            case m.StartRuns() | m.RunFinished():
                return await self.workflows.kick(self.project)
            case m.DiffRun(run_id=run_id, limit=limit, offset=offset):
                return Deferred(self.workflows.diff(run_id, limit=limit, offset=offset), "run-diff")
            case m.MergeRun(run_id=run_id):
                return Deferred(self.workflows.merge(run_id), "run-merge")
            case m.DiscardRun(run_id=run_id):
                return Deferred(self.workflows.discard(run_id), "run-discard")
            case m.CancelRun(run_id=run_id):
                return Deferred(self.workflows.cancel(run_id, self.sessions), "run-cancel")
            case m.ReadPath(path=path):
                return Deferred(files.read_path(environment, path), "files-read")
            case m.WriteFile(path=path, data=data):
                return Deferred(files.write_file(environment, path, data), "files-write")
            case m.DeleteFile(path=path):
                return Deferred(files.delete_file(environment, path), "files-delete")
            case m.Exec():
                return Deferred(commands.run_exec(environment, message), "exec")
            case m.ChildFailed(what=what, error=error):
                raise ChildCrashed(f"{what}: {error}")
        raise TypeError(f"unknown message {type(message).__name__}")

    async def _reload(self) -> None:
        project = await self.store.load(self.project.id)
        if project is None:
            return
        self.project = project
        if project.runtime != self.environment.kind:
            # The runtime changed: a new environment child; sessions already open keep theirs.
            log.info("environment.replaced", old=self.environment.kind, new=project.runtime)
            self.children.replace_environment(self.make_environment(project))
            await self.environment.adopt()
        else:
            self.environment.reload(project)


def _answer_error(envelope: Envelope, exc: AppError) -> None:
    if envelope.reply is not None and not envelope.reply.done():
        envelope.reply.set_exception(exc)
    elif envelope.reply is None:
        log.warning("supervisor.message_failed", message=type(envelope.message).__name__, detail=exc.detail)
