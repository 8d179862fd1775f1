"""The sessions of one project, as children of its supervisor: opened, restarted under the
restart policy, and ended only from the supervisor's loop.

A session whose program a holder keeps (docker, agentdock-hold) is recorded (``SessionStore``): when
the service stops, it is let go of, not ended (``release_all``), and the next service's
supervisor attaches to it again before anything else (``restore``), with the same id, state
and scrollback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

import msgspec

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
from service.sessions.store import SessionRecord, SessionStore

log = get_logger(__name__)

MAX_RUNNING = 256
MAX_KEPT_EXITED = 32


RESTORE_WAIT_S = 30.0  # a request for a session not known yet waits this long for restores at most


class SessionIndex:
    """Session id → session, for routing requests and sockets to the right project. Written
    only by supervisors; read by controllers.

    After a restart, the sessions a previous service left come back as each project's
    supervisor restores them, after the service already answers: a request for one of them
    meanwhile waits for the restores still under way (``find``) rather than get a 404."""

    def __init__(self) -> None:
        self._by_id: dict[UUID, PtySession] = {}
        self._restoring: dict[object, float] = {}  # a restore under way -> when it is no longer waited for
        self._restored = asyncio.Event()
        self._restored.set()

    def restoring(self, token: object) -> None:
        self._restoring[token] = time.monotonic() + RESTORE_WAIT_S
        self._restored.clear()

    def restored(self, token: object) -> None:
        self._restoring.pop(token, None)
        self._waited_for()

    def _waited_for(self) -> float | None:
        """The latest deadline of the restores still waited for (None: none is)."""
        now = time.monotonic()
        for token, deadline in list(self._restoring.items()):
            if deadline <= now:  # a supervisor that never got to its restore: not waited for
                del self._restoring[token]
        if not self._restoring:
            self._restored.set()
            return None
        return max(self._restoring.values())

    async def find(self, session_id: UUID) -> PtySession | None:
        """The session, once no restore that could bring it back is under way."""
        session = self._by_id.get(session_id)
        if session is None and (deadline := self._waited_for()) is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._restored.wait()
            session = self._by_id.get(session_id)
        return session

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
        store: SessionStore | None = None,
    ) -> None:
        self.agent_environment = agent_environment
        self.store = store
        self._restored = False
        if store is not None:  # until ``restore`` has run (or this set is closed)
            index.restoring(self)
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
        env = await self._env(msg.env)
        restart = "on-failure" if msg.restart == "on-failure" else "never"
        record = SessionRecord(
            id=uuid4(),
            project_id=project.id,
            command=command,
            cols=msg.cols,
            rows=msg.rows,
            restart=restart,
            is_default=is_default,
            render=msg.render,
            cwd=msg.cwd,
            run_id=msg.run_id,
            env=dict(msg.env or {}),
            opened_at=datetime.now(UTC),
        )
        session = self._session(record, env)
        session.attach_process(await self._spawn(session))
        self._keep(session)
        if session.holding is not None and self.store is not None:
            await self._record(session, msgspec.structs.replace(record, holding=session.holding))
        log.info(
            "session.opened", session_id=str(session.id), command=command, cols=msg.cols, rows=msg.rows, restart=restart
        )
        return session

    async def _record(self, session: PtySession, record: SessionRecord) -> None:
        """Record a held session; one that cannot be recorded ends with this service, as an
        unheld one does (a program nobody would find again must not be left running)."""
        assert self.store is not None
        try:
            await self.store.add(record)
        except Exception as exc:
            session.holding = None
            log.warning("session.record_failed", session_id=str(session.id), error=f"{type(exc).__name__}: {exc}")

    async def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        # The operator's env file, the project's env and secrets: only in this exec's environment.
        agent_env = (await self.agent_environment()).env if self.agent_environment is not None else {}
        return {**self.environment.session_env(), **agent_env, **(extra or {})}

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
        if session.holding is not None and self.store is not None:
            self._background(self.store.remove(session.id), f"session-forget-{session.id}")
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
        await self._record_state(session)
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
        if session.holding is not None and self.store is not None:
            await self.store.update(session.id, restart_count=session.restart_count, holding=session.holding)
        await self._record_state(session)
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
        """End every session (the project is deleted)."""
        self.index.restored(self)
        self._generation += 1
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*(self.close(sid) for sid in list(self.sessions)), return_exceptions=True)

    async def release_all(self) -> None:
        """The service stops: held sessions are let go of (their programs go on, their
        scrollback is saved for the next service); the others end."""
        self.index.restored(self)
        self._generation += 1
        for task in list(self._deliveries):
            task.cancel()
        held = [s for s in self.sessions.values() if s.holding is not None and s.running and self.store is not None]
        for session in held:
            self.sessions.pop(session.id, None)
            self.index.remove(session)
            timer = self._timers.pop(session.id, None)
            if timer is not None:
                timer.cancel()
        await asyncio.gather(*(self._release(session) for session in held), return_exceptions=True)
        await asyncio.gather(*(self.close(sid) for sid in list(self.sessions)), return_exceptions=True)

    async def _release(self, session: PtySession) -> None:
        await session.release()
        await self.save_scrollback(session)
        log.info("session.released", session_id=str(session.id), project_id=str(session.project_id))

    async def save_all(self, *, every: float = 0.0) -> None:
        for session in list(self.sessions.values()):
            await self.save_scrollback(session, every=every)

    async def save_scrollback(self, session: PtySession, *, every: float = 0.0) -> None:
        """Save what a later service needs that changed: the scrollback (when ``every``
        seconds have passed since its last save, or its program has restarted since), and the
        size (a restored session is attached at the size it had, not the one it was opened
        with)."""
        if self.store is None or session.holding is None:
            return
        if (session.cols, session.rows) != session.saved_size:
            size = (session.cols, session.rows)
            await self.store.update(session.id, cols=size[0], rows=size[1])
            session.saved_size = size
        version, generation = session.scrollback.version, session.generation
        if version == session.saved_version:
            return
        if generation == session.saved_generation and time.monotonic() - session.saved_at < every:
            return
        offset = session.output_offset()
        if offset is None:  # its holder has not said where its output begins: next time
            return
        await self.store.save_scrollback(session.id, session.scrollback.data(), offset)
        session.saved_version, session.saved_generation, session.saved_at = version, generation, time.monotonic()

    # --- the sessions a previous service left running ------------------------------------

    async def restore(self) -> None:
        """Attach again to the held sessions of the project (once, when the supervisor first
        runs): running ones get a new client; ones that ended meanwhile report how."""
        if self._restored or self.store is None:
            return
        try:
            records = await self.store.of_project(self.environment.project.id)
            self._restored = True
            for record in records:
                if record.id in self.sessions:
                    continue
                try:
                    await self._restore(record)
                except Exception as exc:  # one session that cannot come back does not stop the rest
                    error = f"{type(exc).__name__}: {exc}"
                    log.warning("session.restore_failed", session_id=str(record.id), error=error)
        finally:
            self.index.restored(self)

    def _session(self, record: SessionRecord, env: dict[str, str]) -> PtySession:
        """The session a record describes (a new one, or one a previous service left)."""
        restart: Literal["never", "on-failure"] = "on-failure" if record.restart == "on-failure" else "never"
        return PtySession(
            project_id=record.project_id,
            command=record.command,
            cols=record.cols,
            rows=record.rows,
            env=env,
            restart=restart,
            on_exit=self._exited,
            is_default=record.is_default,
            renderer=make_renderer(record.render),
            cwd=record.cwd,
            session_id=record.id,
            created_at=record.opened_at,
        )

    async def _restore(self, record: SessionRecord) -> None:
        assert record.holding is not None  # a recorded session is a held one
        session = self._session(record, await self._env(record.env))
        session.restart_count = record.restart_count
        session.holding = record.holding
        assert self.store is not None  # restore() runs only with a store
        saved, offset = await self.store.load_scrollback(record.id, session.scrollback.limit)
        if offset is None and not await self.store.has_scrollback(record.id):
            offset = 0  # never saved: all the holder kept of its output is the session's
        if saved:
            session.scrollback.restore(saved)
            session.saved_version = session.scrollback.version
        process = None
        if record.state == "running":
            spec = SpawnSpec(argv=record.command, cols=record.cols, rows=record.rows, env=session.env, cwd=record.cwd)
            process = await self.environment.reattach_pty(spec, key=record.id.hex, holding=record.holding, since=offset)
        if process is None:
            if record.state == "running":  # its container stopped or restarted since: it is gone
                session.ended_before("error", None, None)
                await self._record_state(session)
            else:
                session.ended_before(record.state, record.exit_code, record.signal)
            self._keep(session)
            log.info("session.restored", session_id=str(session.id), state=session.state, exit_code=session.exit_code)
            return
        session.attach_process(process)
        self._keep(session)
        log.info("session.restored", session_id=str(session.id), state=session.state, exit_code=session.exit_code)

    async def _record_state(self, session: PtySession) -> None:
        if session.holding is None or self.store is None or session.id not in self.sessions:
            return
        await self.store.update(session.id, state=session.state, exit_code=session.exit_code, signal=session.signal)

    def _background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
