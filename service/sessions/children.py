"""The sessions of one project, as children of its supervisor: opened, restarted under the
restart policy, and ended only from the supervisor's loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Literal
from uuid import UUID

from service.actors import messages as m
from service.actors.mailbox import Mailbox
from service.actors.policy import RestartPolicy, RestartTracker
from service.errors import Conflict, NotFound
from service.logs import get_logger
from service.runtimes.base import ProjectRef
from service.runtimes.docker import DockerRuntime
from service.runtimes.docker_pty import DockerExecPty
from service.runtimes.local_pty import LocalPty
from service.runtimes.pty import ExitStatus, PtyProcess, SpawnSpec
from service.sessions.session import PtySession

log = get_logger(__name__)

MAX_RUNNING = 256
MAX_KEPT_EXITED = 32
DOCKER_USER = "agent"
# The default shell: bash where the image has it, else sh; a login shell either way.
DOCKER_SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"]
BASE_ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "C.UTF-8"}


class SessionIndex:
    """Session id → session, for routing requests and sockets to the right project. Written
    only by supervisors; read by controllers."""

    def __init__(self) -> None:
        self._by_id: dict[UUID, PtySession] = {}

    def add(self, session: PtySession) -> None:
        self._by_id[session.id] = session

    def remove(self, session: PtySession) -> None:
        self._by_id.pop(session.id, None)

    def get(self, session_id: UUID) -> PtySession | None:
        return self._by_id.get(session_id)

    def __len__(self) -> int:
        return len(self._by_id)


class SessionSet:
    def __init__(
        self,
        *,
        mailbox: Mailbox,
        docker: DockerRuntime,
        policy: RestartPolicy,
        index: SessionIndex,
        ensure_container: Callable[[], Awaitable[str]],
    ) -> None:
        self.mailbox = mailbox
        self.docker = docker
        self.policy = policy
        self.index = index
        self.ensure_container = ensure_container
        self.sessions: dict[UUID, PtySession] = {}
        self._trackers: dict[UUID, RestartTracker] = {}
        self._timers: dict[UUID, asyncio.Task[None]] = {}
        self._generation = 0

    # --- opening --------------------------------------------------------------------

    async def open(self, project: ProjectRef, msg: m.OpenSession, *, is_default: bool = False) -> PtySession:
        running = sum(1 for s in self.sessions.values() if s.running)
        if running >= MAX_RUNNING:
            raise Conflict(f"project {project.name!r} already runs {running} sessions (the limit)")
        docker = project.runtime == "docker"
        command = list(msg.command) if msg.command else (DOCKER_SHELL if docker else [_local_shell()])
        env = {**BASE_ENV, **_home_env(docker), **(msg.env or {})}
        restart: Literal["never", "on-failure"] = "on-failure" if msg.restart == "on-failure" else "never"
        session = PtySession(
            project_id=project.id,
            command=command,
            cols=msg.cols,
            rows=msg.rows,
            env=env,
            restart=restart,
            on_exit=self._exited,
            is_default=is_default,
        )
        session.attach_process(await self._spawn(project, session))
        self._keep(session)
        log.info(
            "session.opened", session_id=str(session.id), command=command, cols=msg.cols, rows=msg.rows, restart=restart
        )
        return session

    async def default(self, project: ProjectRef, msg: m.DefaultSession) -> PtySession:
        for session in self.sessions.values():
            if session.is_default and session.running:
                return session
        return await self.open(project, m.OpenSession(cols=msg.cols, rows=msg.rows), is_default=True)

    async def _spawn(self, project: ProjectRef, session: PtySession) -> PtyProcess:
        spec = SpawnSpec(argv=session.command, cols=session.cols, rows=session.rows, env=session.env)
        if project.runtime == "docker":
            container_id = await self.ensure_container()
            spec = SpawnSpec(argv=spec.argv, cols=spec.cols, rows=spec.rows, env=spec.env, user=DOCKER_USER)
            return await DockerExecPty.spawn(self.docker, container_id, spec, key=session.id.hex)
        if not await asyncio.to_thread(os.path.isdir, project.path):
            raise Conflict(f"the workspace {project.path} of project {project.name!r} does not exist")
        try:
            return await LocalPty.spawn(spec, cwd=project.path)
        except (OSError, Exception) as exc:  # ptyprocess raises plain Exception for a missing program
            raise Conflict(f"could not start {session.command[0]!r}: {exc}") from None

    def _keep(self, session: PtySession) -> None:
        self.sessions[session.id] = session
        self.index.add(session)
        exited = [s for s in self.sessions.values() if not s.running and not s.is_default]
        for old in exited[: max(0, len(exited) - MAX_KEPT_EXITED)]:
            self._forget(old)

    def _forget(self, session: PtySession) -> None:
        self.sessions.pop(session.id, None)
        self._trackers.pop(session.id, None)
        timer = self._timers.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        self.index.remove(session)

    # --- exits and restarts ---------------------------------------------------------------

    def _exited(self, session: PtySession, status: ExitStatus) -> None:
        try:
            self.mailbox.tell(m.SessionExited(session_id=session.id, exit_code=status.exit_code, signal=status.signal))
        except Exception as exc:
            log.error("session.exit_undelivered", session_id=str(session.id), error=str(exc))  # noqa: TRY400

    async def on_exited(self, project: ProjectRef, msg: m.SessionExited) -> None:
        session = self.sessions.get(msg.session_id)
        if session is None:
            return
        log.info("session.exited", session_id=str(session.id), exit_code=msg.exit_code, signal=msg.signal)
        failed = msg.exit_code != 0
        if session.ending or session.restart != "on-failure" or not failed:
            return
        tracker = self._trackers.setdefault(session.id, RestartTracker(self.policy))
        delay = tracker.record_failure()
        if delay is None:
            log.error(
                "session.gave_up",
                session_id=str(session.id),
                exit_code=msg.exit_code,
                restart_count=session.restart_count,
                max_restarts=self.policy.max_restarts,
            )
            return
        generation = self._generation

        async def fire() -> None:
            await asyncio.sleep(delay)
            self.mailbox.tell(m.SessionRestartDue(session_id=session.id, generation=generation))

        self._timers[session.id] = asyncio.create_task(fire(), name=f"session-restart-{session.id}")

    async def on_restart_due(self, project: ProjectRef, msg: m.SessionRestartDue) -> None:
        self._timers.pop(msg.session_id, None)
        session = self.sessions.get(msg.session_id)
        if session is None or session.ending or session.running or msg.generation != self._generation:
            return
        try:
            process = await self._spawn(project, session)
        except Exception as exc:
            log.warning("session.restart_failed", session_id=str(session.id), error=str(exc))
            await self.on_exited(project, m.SessionExited(session_id=session.id, exit_code=None))
            return
        session.restart_count += 1
        session.attach_process(process)
        log.info("session.restarted", session_id=str(session.id), restart_count=session.restart_count)

    # --- ending -----------------------------------------------------------------------

    async def close(self, session_id: UUID) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session with id {session_id}")
        self._forget(session)
        await session.end()
        await session.close()
        log.info("session.closed", session_id=str(session.id), exit_code=session.exit_code, signal=session.signal)

    async def close_all(self) -> None:
        """End every session (the supervisor is stopping for good)."""
        self._generation += 1
        await asyncio.gather(*(self.close(sid) for sid in list(self.sessions)), return_exceptions=True)


def _local_shell() -> str:
    return os.environ.get("SHELL") or "/bin/sh"


def _home_env(docker: bool) -> dict[str, str]:
    if docker:
        return {"HOME": "/home/agent", "USER": DOCKER_USER}
    return {k: v for k, v in os.environ.items() if k in ("HOME", "USER", "LOGNAME")}
