"""The small value types that cross the environment interface."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

RuntimeKind = Literal["docker", "local"]
ContainerStatus = Literal["created", "running", "exited", "error", "missing"]


class ProjectRef(msgspec.Struct, frozen=True, kw_only=True):
    """What a runtime needs to know of a project (a snapshot of its row)."""

    id: UUID
    name: str
    path: str
    image: str
    runtime: RuntimeKind
    container_id: str | None = None


class ContainerState(msgspec.Struct, frozen=True, kw_only=True):
    """A container as Docker reports it right now."""

    id: str
    name: str
    image: str
    status: ContainerStatus
    project_id: str | None
    started_at: datetime | None = None
    exit_code: int | None = None
