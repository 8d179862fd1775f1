from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from service.api.pagination import Page
from service.runtimes.base import ContainerState, ContainerStatus


class Container(msgspec.Struct, kw_only=True):
    id: str
    project_id: UUID | None
    name: str
    image: str
    status: ContainerStatus
    started_at: datetime | None = None
    exit_code: int | None = None
    restart_count: int = 0
    last_failure: str | None = None


class ContainerPage(Page, kw_only=True):
    items: list[Container]


def to_container(
    state: ContainerState, *, restart_count: int = 0, last_failure: str | None = None, gave_up: bool = False
) -> Container:
    """The API view of a container's Docker state plus what its supervisor knows. A container
    whose supervisor gave up restarting it is ``error`` until it runs again."""
    return Container(
        id=state.id,
        project_id=_uuid_or_none(state.project_id),
        name=state.name,
        image=state.image,
        status="error" if gave_up and state.status != "running" else state.status,
        started_at=state.started_at,
        exit_code=state.exit_code,
        restart_count=restart_count,
        last_failure=last_failure,
    )


def _uuid_or_none(value: str | None) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None
