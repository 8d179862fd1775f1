"""Runs and steps in the database: every change is written at once, in its own short
session, so that a restart loses nothing that was recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import func, select

from service.db.models import ProjectModel, WorkflowRunModel, WorkflowStepModel
from service.errors import NotFound
from service.scaffolding.templates import get_template
from service.workflows.definitions import WorkflowDefinition
from service.workflows.schemas import Gate, Run, RunCreate, RunPage, RunSummary, Step, StepSummary, Usage


def now() -> datetime:
    return datetime.now(UTC)


def to_run(row: WorkflowRunModel) -> Run:
    return Run(
        id=row.id,
        project_id=row.project_id,
        workflow=row.workflow,
        task=row.task,
        state=row.state,  # type: ignore[arg-type]
        reason=row.reason,
        max_attempts=row.max_attempts,
        step_timeout_s=row.step_timeout_s,
        idle_timeout_s=row.idle_timeout_s,
        branch=row.branch,
        commit_sha=row.commit_sha,
        pull_request_url=row.pull_request_url,
        review=row.review,  # type: ignore[arg-type]
        base_commit=row.base_commit,
        worktree=row.worktree,
        base_branch=row.base_branch,
        steps=[
            Step(
                name=s.name,
                state=s.state,  # type: ignore[arg-type]
                attempts=s.attempts,
                session_id=s.session_id,
                gate=None if s.gate is None else msgspec.convert(s.gate, Gate),
                usage=_usage(s.agent_report),
                agent_message=(s.agent_report or {}).get("message"),
                started_at=s.started_at,
                finished_at=s.finished_at,
            )
            for s in sorted(row.steps, key=lambda s: s.position)
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def to_summary(row: WorkflowRunModel) -> RunSummary:
    """A run in a list: its steps' states, without their gates' output."""
    return RunSummary(
        id=row.id,
        project_id=row.project_id,
        workflow=row.workflow,
        task=row.task,
        state=row.state,  # type: ignore[arg-type]
        reason=row.reason,
        max_attempts=row.max_attempts,
        branch=row.branch,
        commit_sha=row.commit_sha,
        pull_request_url=row.pull_request_url,
        review=row.review,  # type: ignore[arg-type]
        steps=[
            StepSummary(
                name=s.name,
                state=s.state,  # type: ignore[arg-type]
                attempts=s.attempts,
                session_id=s.session_id,
                usage=_usage(s.agent_report),
                started_at=s.started_at,
                finished_at=s.finished_at,
            )
            for s in sorted(row.steps, key=lambda s: s.position)
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _usage(report: dict[str, Any] | None) -> Usage | None:
    if not report or all(report.get(k) is None for k in ("input_tokens", "output_tokens", "cost_usd", "turns")):
        return None
    return Usage(
        input_tokens=report.get("input_tokens"),
        output_tokens=report.get("output_tokens"),
        cost_usd=report.get("cost_usd"),
        turns=report.get("turns"),
    )


class RunStore:
    def __init__(self, db: SQLAlchemyAsyncConfig) -> None:
        self.db = db

    async def create(self, project_id: UUID, data: RunCreate, workflow: WorkflowDefinition) -> Run:
        async with self.db.get_session() as session:
            row = WorkflowRunModel(
                project_id=project_id,
                workflow=workflow.name,
                task=data.task,
                state="queued",
                max_attempts=data.max_attempts,
                step_timeout_s=data.step_timeout_s,
                idle_timeout_s=data.idle_timeout_s,
                steps=[
                    WorkflowStepModel(position=i, name=step.name, state="pending", attempts=0)
                    for i, step in enumerate(workflow.steps)
                ],
            )
            session.add(row)
            await session.commit()
            await session.refresh(row, ["steps"])
            return to_run(row)

    async def get(self, run_id: UUID) -> Run:
        async with self.db.get_session() as session:
            row = await session.get(WorkflowRunModel, run_id)
            if row is None:
                raise NotFound(f"no workflow run with id {run_id}")
            return to_run(row)

    async def page_for_project(self, project_id: UUID, *, limit: int, offset: int) -> RunPage:
        """A page of the project's runs, oldest first, as summaries."""
        async with self.db.get_session() as session:
            total = await session.scalar(
                select(func.count()).select_from(WorkflowRunModel).where(WorkflowRunModel.project_id == project_id)
            )
            rows = await session.scalars(
                select(WorkflowRunModel)
                .where(WorkflowRunModel.project_id == project_id)
                .order_by(WorkflowRunModel.created_at, WorkflowRunModel.id)
                .limit(limit)
                .offset(offset)
            )
            return RunPage(items=[to_summary(r) for r in rows], total=int(total or 0), limit=limit, offset=offset)

    async def in_states(self, project_id: UUID, states: tuple[str, ...]) -> list[Run]:
        async with self.db.get_session() as session:
            rows = await session.scalars(
                select(WorkflowRunModel)
                .where(WorkflowRunModel.project_id == project_id, WorkflowRunModel.state.in_(states))
                .order_by(WorkflowRunModel.created_at)
            )
            return [to_run(r) for r in rows]

    async def count_in_states(self, project_id: UUID, states: tuple[str, ...]) -> int:
        async with self.db.get_session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(WorkflowRunModel)
                .where(WorkflowRunModel.project_id == project_id, WorkflowRunModel.state.in_(states))
            )
            return int(count or 0)

    async def snapshot(self, run_id: UUID) -> dict[str, dict[str, str]] | None:
        """The test files' states the run recorded: ``base`` (before red) and ``red``."""
        async with self.db.get_session() as session:
            row = await session.get(WorkflowRunModel, run_id)
            return None if row is None else row.test_snapshot

    async def update_run(self, run_id: UUID, **values: Any) -> Run:
        async with self.db.get_session() as session:
            row = await session.get(WorkflowRunModel, run_id)
            if row is None:
                raise NotFound(f"no workflow run with id {run_id}")
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now()
            await session.commit()
            await session.refresh(row, ["steps"])
            return to_run(row)

    async def update_step(self, run_id: UUID, position: int, **values: Any) -> Run:
        async with self.db.get_session() as session:
            step = await session.scalar(
                select(WorkflowStepModel).where(
                    WorkflowStepModel.run_id == run_id, WorkflowStepModel.position == position
                )
            )
            run = await session.get(WorkflowRunModel, run_id)
            if step is None or run is None:
                raise NotFound(f"no step {position} in workflow run {run_id}")
            for key, value in values.items():
                setattr(step, key, value)
            run.updated_at = now()
            await session.commit()
            await session.refresh(run, ["steps"])
            return to_run(run)


class ProjectWorkflowSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What a run needs of its project, read when the run starts."""

    test_command: str
    agent_command: list[str]
    agent: str | None
    template: str
    github_url: str | None
    test_patterns: tuple[str, ...]
    parallel_runs: int


async def project_workflow_settings(db: SQLAlchemyAsyncConfig, project_id: UUID) -> ProjectWorkflowSettings:
    async with db.get_session() as session:
        row = await session.get(ProjectModel, project_id)
        if row is None:
            raise NotFound(f"no project with id {project_id}")
        return ProjectWorkflowSettings(
            test_command=row.test_command,
            agent_command=list(row.agent_command),
            agent=row.agent,
            template=row.template,
            github_url=row.github_url,
            test_patterns=tuple(row.test_patterns or get_template(row.template).test_patterns),
            parallel_runs=row.parallel_runs or 1,
        )
