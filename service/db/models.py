"""ORM models. The schema changes only through Alembic migrations in ``migrations/``."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.base import UUIDAuditBase, orm_registry
from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column
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
    container_id: Mapped[str | None] = mapped_column(String(64), default=None)
