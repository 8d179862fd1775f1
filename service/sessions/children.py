"""The sessions of one project, as children of its supervisor: opened, restarted under the
restart policy, and ended only from the supervisor's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal
from uuid import UUID

from service.actors import messages as m
from service.actors.mailbox import Mailbox
from service.actors.policy import RestartMode, RestartPolicy, RestartTracker
from service.agents.stream import make_renderer
from service.errors import Conflict, NotFound, Unavailable
from service.logs import get_logger
from service.runtimes.environment import Environment
from service.runtimes.pty import ExitStatus, PtyProcess, SpawnSpec
from service.secrets.services import AgentEnvironment
from service.sessions.session import PtySession

log = get_logger(__name__)

MAX_RUNNING = 256
MAX_KEPT_EXITED = 32


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

    def sessions(self) -> list[PtySession]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


class SessionSet:
    def __init__(
        self,
        *,
        mailbox: Mailbox,
        environment: Environment,
        policy: RestartPolicy,
        index: SessionIndex,
        agent_environment: Callable[[], Awaitable[AgentEnvironment]] | None = None,
    ) -> None:
        self.agent_environment = agent_environment
        self.mailbox = mailbox
        self.environment = environment
        self.policy = policy
        self.index = index
        self.sessions: dict[UUID, PtySession] = {}
        self._trackers: dict[UUID, RestartTracker] = {}
        self._timers: dict[UUID, asyncio.Task[None]] = {}
        self._generation = 0
        self._deliveries: set[asyncio.Task[None]] = set()

    # --- opening --------------------------------------------------------------------

    async def open(self, msg: m.OpenSession, *, is_default: bool = False) -> PtySession:
        environment = self.environment
        project = environment.project
        running = sum(1 for s in self.sessions.values() if s.running)
        if running >= MAX_RUNNING:
            raise Conflict(f"project {project.name!r} already runs {running} sessions (the limit)")
        command = list(msg.command) if msg.command else environment.default_shell
        # The operator's env file, the project's env and secrets: only in this exec's environment.
        agent_env = (await self.agent_environment()).env if self.agent_environment is not None else {}
        env = {**environment.session_env(), **agent_env, **(msg.env or {})}
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
            renderer=make_renderer(msg.render),
            cwd=msg.cwd,
        )
        session.attach_process(await self._spawn(session))
        self._keep(session)
        log.info(
            "session.opened", session_id=str(session.id), command=command, cols=msg.cols, rows=msg.rows, restart=restart
        )
        return session

    async def default(self, msg: m.DefaultSession) -> PtySession:
        for session in self.sessions.values():
            if session.is_default and session.running:
                return session
        return await self.open(m.OpenSession(cols=msg.cols, rows=msg.rows), is_default=True)

    async def _spawn(self, session: PtySession) -> PtyProcess:
        spec = SpawnSpec(argv=session.command, cols=session.cols, rows=session.rows, env=session.env, cwd=session.cwd)
        return await self.environment.spawn_pty(spec, key=session.id.hex)

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
        message = m.SessionExited(session_id=session.id, exit_code=status.exit_code, signal=status.signal)
        try:
            self.mailbox.tell(message)
        except Unavailable:  # a full mailbox: deliver it as soon as there is room, never lose it
            task = asyncio.create_task(self.mailbox.put(message), name=f"session-exit-{session.id}")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def on_exited(self, msg: m.SessionExited) -> None:
        session = self.sessions.get(msg.session_id)
        if session is None:
            return
        log.info("session.exited", session_id=str(session.id), exit_code=msg.exit_code, signal=msg.signal)
        mode = RestartMode.ON_FAILURE if session.restart == "on-failure" else RestartMode.NEVER
        policy = RestartPolicy(mode=mode)
        if session.ending or not policy.should_restart(failed=msg.exit_code != 0):
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
            await self.mailbox.put(m.SessionRestartDue(session_id=session.id, generation=generation))

        self._timers[session.id] = asyncio.create_task(fire(), name=f"session-restart-{session.id}")

    async def on_restart_due(self, msg: m.SessionRestartDue) -> None:
        self._timers.pop(msg.session_id, None)
        session = self.sessions.get(msg.session_id)
        if session is None or session.ending or session.running or msg.generation != self._generation:
            return
        try:
            process = await self._spawn(session)
        except Exception as exc:
            log.warning("session.restart_failed", session_id=str(session.id), error=str(exc))
            await self.on_exited(m.SessionExited(session_id=session.id, exit_code=None))
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
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*(self.close(sid) for sid in list(self.sessions)), return_exceptions=True)
