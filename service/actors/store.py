"""The supervisors' short, per-operation access to the project rows (never a long-lived session)."""

from __future__ import annotations

from uuid import UUID

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import select, update

from service.db.models import ProjectModel
from service.runtimes.base import ProjectRef, RuntimeKind


class ProjectStore:
    def __init__(self, db: SQLAlchemyAsyncConfig, default_runtime: RuntimeKind) -> None:
        self.db = db
        self.default_runtime = default_runtime

    def _ref(self, row: ProjectModel) -> ProjectRef:
        runtime: RuntimeKind = "local" if (row.runtime or self.default_runtime) == "local" else "docker"
        return ProjectRef(
            id=row.id, name=row.name, path=row.path, image=row.image, runtime=runtime, container_id=row.container_id
        )

    async def load(self, project_id: UUID) -> ProjectRef | None:
        async with self.db.get_session() as session:
            row = await session.get(ProjectModel, project_id)
            return None if row is None else self._ref(row)

    async def all_ids(self) -> list[UUID]:
        async with self.db.get_session() as session:
            return list(await session.scalars(select(ProjectModel.id)))

    async def save_container_id(self, project_id: UUID, container_id: str | None) -> None:
        async with self.db.get_session() as session:
            await session.execute(
                update(ProjectModel).where(ProjectModel.id == project_id).values(container_id=container_id)
            )
            await session.commit()
