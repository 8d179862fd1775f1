"""ORM models. The schema changes only through Alembic migrations in ``migrations/``."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDAuditBase, orm_registry
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

metadata = orm_registry.metadata


def compare_type(
    _context: Any,
    _inspected_column: Any,
    _metadata_column: Any,
    _inspected: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Alembic's type comparison, less the false alarms of advanced-alchemy's TypeDecorators
    (SQLite reflects ``BINARY(16)`` of a GUID as NUMERIC): those are never reported as changed."""
    if isinstance(metadata_type, TypeDecorator):
        return False
    return None


class ProjectModel(UUIDAuditBase):
    __tablename__ = "project"

    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(64), default="blank")
    repo_url: Mapped[str | None] = mapped_column(Text, default=None)
    github_url: Mapped[str | None] = mapped_column(Text, default=None)
    image: Mapped[str] = mapped_column(String(255))
    runtime: Mapped[str | None] = mapped_column(String(16), default=None)
    test_command: Mapped[str] = mapped_column(Text, default="")
    agent_command: Mapped[list[str]] = mapped_column(JSON, default=list)
    agent: Mapped[str | None] = mapped_column(String(64), default=None)  # a preset's name
    parallel_runs: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    test_patterns: Mapped[list[str] | None] = mapped_column(JSON, default=None)  # None: the template's
    container_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Plain, non-secret environment variables of the project's agents (secrets: ProjectSecretModel).
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")


class ProjectSecretModel(UUIDAuditBase):
    """One secret of a project: its value encrypted with the service's key (``service.secrets.crypto``),
    deleted with the project."""

    __tablename__ = "project_secret"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class WorkflowRunModel(UUIDAuditBase):
    __tablename__ = "workflow_run"

    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    workflow: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    max_attempts: Mapped[int] = mapped_column(Integer)
    step_timeout_s: Mapped[float] = mapped_column(Float)
    idle_timeout_s: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    base_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    branch: Mapped[str | None] = mapped_column(String(255), default=None)
    commit_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    pull_request_url: Mapped[str | None] = mapped_column(Text, default=None)
    test_snapshot: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSON, default=None)
    review: Mapped[str] = mapped_column(String(16), default="unreviewed", server_default="unreviewed")
    worktree: Mapped[str | None] = mapped_column(Text, default=None)  # relative to the workspace
    base_branch: Mapped[str | None] = mapped_column(String(255), default=None)
    steps: Mapped[list[WorkflowStepModel]] = relationship(
        back_populates="run", order_by="WorkflowStepModel.position", cascade="all, delete-orphan", lazy="selectin"
    )


class WorkflowStepModel(UUIDAuditBase):
    __tablename__ = "workflow_step"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    run_id: Mapped[UUID] = mapped_column(ForeignKey("workflow_run.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    session_id: Mapped[str | None] = mapped_column(String(36), default=None)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    agent_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    run: Mapped[WorkflowRunModel] = relationship(back_populates="steps")


class TerminalSessionModel(UUIDAuditBase):
    """A session whose program a holder keeps (docker, agentdock-hold): what a later service needs to
    attach to it again and to report it. Sessions that end with the service are not kept."""

    __tablename__ = "terminal_session"

    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    command: Mapped[list[str]] = mapped_column(JSON)
    cols: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    restart: Mapped[str] = mapped_column(String(16))
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    render: Mapped[str | None] = mapped_column(String(32), default=None)
    cwd: Mapped[str | None] = mapped_column(Text, default=None)
    run_id: Mapped[str | None] = mapped_column(String(36), default=None)  # a workflow run's agent step
    env_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # the request's env, encrypted
    holding: Mapped[dict[str, str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    signal: Mapped[int | None] = mapped_column(Integer, default=None)
    opened_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
