"""One workflow run, step by step. Every change is persisted before it is announced, so a
run that was interrupted resumes at its current step, re-run from the beginning."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec

from service.actors import messages as m
from service.agents.presets import agent_argv, get_preset
from service.agents.stream import AgentReport
from service.errors import AppError
from service.git import workspace as workspace_git
from service.git.host import Author
from service.logs import get_logger
from service.metrics import instruments
from service.runtimes.base import ProjectRef
from service.runtimes.environment import Environment
from service.secrets.services import AgentEnvironment
from service.sessions.session import PtySession
from service.workflows import gates, testrun
from service.workflows.definitions import StepDefinition, get_workflow, render_prompt
from service.workflows.events import RunEvents
from service.workflows.schemas import GateResult, Run, Step
from service.workflows.store import ProjectWorkflowSettings, RunStore, now, project_workflow_settings

log = get_logger(__name__)

BLOCKED = re.compile(r"^\s*BLOCKED:\s*(.+?)\s*$", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
GIT_TIMEOUT_S = 120.0
SNAPSHOT_TIMEOUT_S = 120.0
AGENT_COLS, AGENT_ROWS = 120, 40

Ask = Callable[[m.Message, float], Awaitable[Any]]
# Publish the run's branch and open a pull request: (run, github_url, environment, base branch) → fields
Publish = Callable[[Run, str, Environment, str], Awaitable[dict[str, str]]]


class StepEnded(Exception):
    """The run cannot go on: it ends in ``state`` for ``reason``."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class RunExecution:
    def __init__(
        self,
        run_id: UUID,
        *,
        project: ProjectRef,
        store: RunStore,
        events: RunEvents,
        ask: Ask,
        environment: Environment,
        author: Author,
        publish: Publish | None = None,
        agent_environment: Callable[[UUID], Awaitable[AgentEnvironment]] | None = None,
    ) -> None:
        self.agent_environment = agent_environment
        self.run_id = run_id
        self.project = project
        self.store = store
        self.events = events
        self.ask = ask
        self.environment = environment
        self.author = author
        self.publish = publish
        self.cancel_requested = False
        self.worktree: str | None = None  # where the run works, relative to the workspace
        self.session_id: UUID | None = None
        self.log = log.bind(project_id=str(project.id), run_id=str(run_id))

    async def _agent_env(self) -> AgentEnvironment:
        """The agents' exec environment (env file, project env, secrets), read per attempt."""
        if self.agent_environment is None:
            return AgentEnvironment(env={}, secret_values=frozenset())
        return await self.agent_environment(self.project.id)

    async def _save_run(self, change: str, **values: Any) -> Run:
        run = await self.store.update_run(self.run_id, **values)
        instruments.run_saved(values)
        self.events.publish(run, change)
        return run

    async def _save_step(self, position: int, change: str, **values: Any) -> Run:
        run = await self.store.update_step(self.run_id, position, **values)
        instruments.step_saved(run.steps[position].name, run.steps[position].started_at, values)
        self.events.publish(run, change)
        return run

    # --- the run --------------------------------------------------------------------

    async def execute(self) -> None:
        position = 0
        try:
            run = await self.store.get(self.run_id)
            settings = await project_workflow_settings(self.store.db, self.project.id)
            workflow = get_workflow(run.workflow)
            if run.state == "queued":
                # Its own worktree on its own branch from the start: the main work tree and
                # other runs are never touched.
                worktree = workspace_git.worktree_path(run.id)
                base, original = await workspace_git.add_worktree(
                    self.environment, worktree, f"agentdock/{run.id}", timeout=GIT_TIMEOUT_S
                )
                run = await self._save_run(
                    "started", state="running", base_commit=base, worktree=worktree, base_branch=original
                )
                self.log.info("workflow.run.started", workflow=run.workflow, worktree=worktree)
            elif run.worktree is not None:  # resumed: find its worktree again (made anew if gone)
                await workspace_git.add_worktree(
                    self.environment, run.worktree, f"agentdock/{run.id}", timeout=GIT_TIMEOUT_S
                )
            self.worktree = run.worktree
            for position, step in enumerate(workflow.steps):
                if run.steps[position].state == "passed":
                    continue
                run = await self._step(run, position, step, settings)
        except asyncio.CancelledError:
            if self.cancel_requested:
                await self._cancelled(position)
            raise
        except StepEnded as ended:
            await self._save_run(ended.state, state=ended.state, reason=ended.reason)
            if ended.state == "blocked":
                self.log.info("workflow.run.blocked", reason=ended.reason)
            else:
                self.log.info("workflow.run.failed", reason=ended.reason)
            return
        except Exception as exc:
            reason = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            await self._save_run("failed", state="failed", reason=f"the run broke: {reason}")
            self.log.error("workflow.run.failed", reason=reason, exc_info=not isinstance(exc, AppError))  # noqa: TRY400
            return
        await self._save_run("succeeded", state="succeeded", reason=None)
        self.log.info("workflow.run.succeeded", branch=run.branch, commit=run.commit_sha)

    async def _cancelled(self, position: int) -> None:
        run = await self.store.get(self.run_id)
        if run.steps[position].state == "running":
            await self.store.update_step(self.run_id, position, state="cancelled", finished_at=now())
        await self._save_run("cancelled", state="cancelled", reason="cancelled")
        self.log.info("workflow.run.cancelled")

    async def _step(self, run: Run, position: int, step: StepDefinition, settings: ProjectWorkflowSettings) -> Run:
        if step.kind == "service":
            return await self._commit(run, position, settings)
        return await self._agent_step(run, position, step, settings)

    # --- agent steps ------------------------------------------------------------------

    async def _agent_step(
        self, run: Run, position: int, step: StepDefinition, settings: ProjectWorkflowSettings
    ) -> Run:
        record = run.steps[position]
        # A step that was running when the service stopped: its agent is watched again where a
        # holder kept its session; otherwise its attempt re-runs from the beginning.
        attempt = record.attempts if record.state == "running" and record.attempts else record.attempts + 1
        resuming = record.state == "running"  # its agent may still run, kept by the holder
        failure = record.gate.retry_with if record.gate is not None else None
        conversation: str | None = None  # the agent's own conversation, continued on a retry
        patterns = settings.test_patterns
        snapshots = dict(await self.store.snapshot(self.run_id) or {})
        if "base" not in snapshots:
            snapshots["base"] = await self.environment.snapshot(patterns, timeout=SNAPSHOT_TIMEOUT_S, cwd=self.worktree)
            await self.store.update_run(self.run_id, test_snapshot=snapshots)
        while True:
            run = await self._save_step(
                position,
                "step.started",
                state="running",
                attempts=attempt,
                started_at=record.started_at or now(),
                finished_at=None,
            )
            self.log.info("workflow.step.started", step=step.name, attempt=attempt)
            agent_env = await self._agent_env()
            prompt = render_prompt(
                task=run.task, step=step, test_command=settings.test_command, attempt=attempt, failure=failure
            )
            session = await self._surviving(record) if resuming else None
            resuming = False
            if session is not None:  # the service restarted; the agent went on: watch it, not again
                self.session_id = session.id
                self.log.info("workflow.step.reattached", step=step.name, attempt=attempt, session_id=str(session.id))
            else:
                session = await self._open_agent(run, step, attempt, prompt, settings, conversation=conversation)
                await self._save_step(position, "step.session", session_id=str(session.id))
            ended = await self._agent_ended(session, run, position=position, step=step, attempt=attempt, env=agent_env)
            conversation = ended or conversation
            result = await self._gate(step, settings, patterns, snapshots, agent_env)
            instruments.gate_judged(str(step.gate), passed=result.passed)
            if result.passed:
                if step.gate == "red":
                    snapshots["red"] = await self.environment.snapshot(
                        patterns, timeout=SNAPSHOT_TIMEOUT_S, cwd=self.worktree
                    )
                    await self.store.update_run(self.run_id, test_snapshot=snapshots)
                self.log.info("workflow.step.gate_passed", step=step.name, attempt=attempt, reason=result.reason)
                return await self._save_step(
                    position, "step.passed", state="passed", gate=_gate_record(result), finished_at=now()
                )
            self.log.info(
                "workflow.step.gate_failed",
                step=step.name,
                attempt=attempt,
                reason=result.reason,
                exit_code=result.exit_code,
            )
            if attempt >= run.max_attempts:
                await self._fail_step(position, result)
                raise StepEnded(
                    "failed", f"step {step.name} did not pass its gate in {attempt} attempt(s): {result.reason}"
                )
            failure = f"{result.reason}\n--- test output (tail) ---\n{result.output_tail or ''}"
            await self._save_step(position, "step.retried", gate={**_gate_record(result), "retry_with": failure})
            self.log.info("workflow.step.retried", step=step.name, attempt=attempt + 1)
            attempt += 1
            record = (await self.store.get(self.run_id)).steps[position]

    async def _agent_ended(
        self,
        session: PtySession,
        run: Run,
        *,
        position: int,
        step: StepDefinition,
        attempt: int,
        env: AgentEnvironment,
    ) -> str | None:
        """Watch the agent to its end and record its report; the step ends here when it was
        stopped, could not run, or is blocked. Answers the agent's conversation id, if any."""
        ended = await self._watch(session, run)
        report = session.renderer.report if session.renderer is not None else None
        if report is not None:
            if report.message:
                report = msgspec.structs.replace(report, message=env.redact(report.message))
            await self._save_step(position, "step.reported", agent_report=msgspec.to_builtins(report))
        if ended is not None:
            await self.ask(m.CloseSession(session_id=session.id), 30)
            await self._fail_step(position, GateResult(passed=False, reason=ended))
            raise StepEnded("failed", f"step {step.name}: {ended}")
        broken = _agent_failed(session, report)
        if broken is not None:
            broken = env.redact(broken)
            # An agent that cannot run (a missing program, no credentials) fails at once, in
            # its own words: retrying would only fail the same way.
            await self._fail_step(position, GateResult(passed=False, reason=broken))
            self.log.info("workflow.step.agent_failed", step=step.name, attempt=attempt, reason=broken)
            raise StepEnded("failed", f"step {step.name}: {broken}")
        blocked = _blocked_reason(session.output_text())
        if blocked is not None:
            blocked = env.redact(blocked)
            await self._fail_step(position, GateResult(passed=False, reason=f"the agent is blocked: {blocked}"))
            raise StepEnded("blocked", blocked)
        return report.session_id if report is not None else None

    async def _surviving(self, record: Step) -> PtySession | None:
        """The session of a step that was running when the service stopped, if a holder kept it."""
        if not record.session_id:
            return None
        try:
            session_id = UUID(record.session_id)
        except ValueError:
            return None
        session: PtySession | None = await self.ask(m.FindSession(session_id=session_id), 30)
        return session

    async def _open_agent(
        self,
        run: Run,
        step: StepDefinition,
        attempt: int,
        prompt: str,
        settings: ProjectWorkflowSettings,
        *,
        conversation: str | None,
    ) -> PtySession:
        preset = get_preset(settings.agent) if settings.agent else None
        command = list(preset.command) if preset is not None else settings.agent_command
        resume = None
        if preset is not None and preset.resume and conversation:
            resume = [conversation if element == "{session}" else element for element in preset.resume]
        argv = agent_argv(command, prompt, resume=resume)
        env = {
            "AGENTDOCK_RUN_ID": str(run.id),
            "AGENTDOCK_STEP": step.name,
            "AGENTDOCK_ATTEMPT": str(attempt),
            "AGENTDOCK_TASK": run.task,
        }
        message = m.OpenSession(
            command=argv,
            cols=AGENT_COLS,
            rows=AGENT_ROWS,
            env=env,
            run_id=run.id,
            render=preset.output if preset is not None else None,
            cwd=self.worktree,
        )
        session: PtySession = await self.ask(message, 120)
        self.session_id = session.id
        return session

    async def _watch(self, session: PtySession, run: Run) -> str | None:
        """Wait for the agent to end; answers why it was stopped, if it was."""
        deadline = time.monotonic() + run.step_timeout_s
        while True:
            now_ = time.monotonic()
            if now_ >= deadline:
                return f"the step took longer than {run.step_timeout_s:g} s"
            if now_ - session.last_output_at >= run.idle_timeout_s:
                return f"the agent printed nothing for {run.idle_timeout_s:g} s"
            idle_left = run.idle_timeout_s - (now_ - session.last_output_at)
            if await session.wait_exited(min(deadline - now_, idle_left, 1.0)):
                return None

    async def _gate(
        self,
        step: StepDefinition,
        settings: ProjectWorkflowSettings,
        patterns: tuple[str, ...],
        snapshots: dict[str, dict[str, str]],
        agent_env: AgentEnvironment,
    ) -> GateResult:
        run = await self.store.get(self.run_id)
        outcome = await testrun.run_tests(
            self.environment,
            settings.test_command,
            timeout=run.step_timeout_s,
            env=agent_env.env,
            redact=agent_env.redact,
            cwd=self.worktree,
        )
        after = await self.environment.snapshot(patterns, timeout=SNAPSHOT_TIMEOUT_S, cwd=self.worktree)
        before = snapshots["base"] if step.gate == "red" else snapshots.get("red", snapshots["base"])
        return gates.judge(step.gate, outcome, before=before, after=after)

    async def _fail_step(self, position: int, result: GateResult) -> None:
        await self._save_step(position, "step.failed", state="failed", gate=_gate_record(result), finished_at=now())

    # --- the commit step ----------------------------------------------------------------

    async def _commit(self, run: Run, position: int, settings: ProjectWorkflowSettings) -> Run:
        run = await self._save_step(
            position, "step.started", state="running", attempts=run.steps[position].attempts + 1, started_at=now()
        )
        self.log.info("workflow.step.started", step="commit", attempt=run.steps[position].attempts)
        branch = f"agentdock/{run.id}"
        message = f"{run.task.strip().splitlines()[0][:72]}\n\nagentdock workflow {run.workflow}, run {run.id}"
        try:
            if self.worktree is not None:
                sha = await workspace_git.commit_in_worktree(
                    self.environment, self.worktree, message, author=self.author, timeout=GIT_TIMEOUT_S
                )
                base = run.base_branch or "main"
            else:  # a run from before worktrees, resumed: on a branch of the main tree
                sha, base = await workspace_git.commit_on_branch(
                    self.environment, branch, message, author=self.author, timeout=GIT_TIMEOUT_S
                )
            extra: dict[str, str] = {}
            if self.publish is not None and settings.github_url:
                committed = await self._save_run("committed", branch=branch, commit_sha=sha)
                extra = await self.publish(committed, settings.github_url, self.environment, base)
                sha = extra.pop("commit_sha", sha)
        except AppError as exc:
            await self._fail_step(position, GateResult(passed=False, reason=exc.detail))
            raise StepEnded("failed", f"step commit: {exc.detail}") from None
        await self._save_run("committed", branch=branch, commit_sha=sha, **extra)
        self.log.info("workflow.step.gate_passed", step="commit", branch=branch, commit=sha)
        return await self._save_step(
            position,
            "step.passed",
            state="passed",
            gate={"passed": True, "reason": f"committed {sha[:12]} on {branch}", "branch": branch, "commit": sha},
            finished_at=now(),
        )


def _agent_failed(session: PtySession, report: AgentReport | None) -> str | None:
    """Why the agent's program could not do the step at all, in its own words, if so."""
    if report is not None and report.is_error:
        return f"the agent reported an error: {report.message or '(no message)'}"
    if session.exit_code in (0, None):
        return None
    lines = [line.strip() for line in ANSI.sub("", session.output_text()).replace("\r", "").splitlines()]
    said = " / ".join([line for line in lines if line][-3:])[-1000:]
    return f"the agent exited with code {session.exit_code}: {said or '(it printed nothing)'}"


def _blocked_reason(output: str) -> str | None:
    match = BLOCKED.search(ANSI.sub("", output).replace("\r", ""))
    return match.group(1) if match else None


def _gate_record(result: GateResult) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "reason": result.reason,
        "exit_code": result.exit_code,
        "output_tail": result.output_tail,
        "tests_changed": result.tests_changed,
    }
