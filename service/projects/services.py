"""The projects service: the database rows and the workspace directories, kept in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.exceptions import IntegrityError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import select

from service.db.models import ProjectModel
from service.errors import Conflict, NotFound
from service.logs import get_logger
from service.projects import workspace
from service.projects.schemas import DEFAULT_AGENT_COMMAND, Project, ProjectCreate, ProjectUpdate
from service.scaffolding.templates import get_template
from service.settings import Settings

log = get_logger(__name__)


class ProjectRepository(SQLAlchemyAsyncRepository[ProjectModel]):
    model_type = ProjectModel


class ProjectService(SQLAlchemyAsyncRepositoryService[ProjectModel, ProjectRepository]):
    repository_type = ProjectRepository

    async def get_project(self, project_id: UUID) -> ProjectModel:
        project = await self.get_one_or_none(id=project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        return project

    async def list_projects(self) -> list[ProjectModel]:
        rows = await self.repository.session.scalars(select(ProjectModel).order_by(ProjectModel.created_at))
        return list(rows)

    async def _ensure_name_free(self, name: str) -> None:
        if await self.get_one_or_none(name=name) is not None:
            raise Conflict(f"a project named {name!r} already exists")

    async def create_project(self, data: ProjectCreate, settings: Settings) -> ProjectModel:
        template = get_template(data.template)
        await self._ensure_name_free(data.name)
        path = workspace.create_workspace(settings.workspaces_dir, data.name)
        try:
            project = await self.create(
                ProjectModel(
                    name=data.name,
                    description=data.description,
                    path=str(path),
                    template=template.name,
                    repo_url=data.repo_url,
                    image=data.image or settings.image,
                    runtime=data.runtime,
                    test_command=data.test_command if data.test_command is not None else template.test_command,
                    agent_command=list(data.agent_command or DEFAULT_AGENT_COMMAND),
                ),
                auto_commit=True,
            )
        except IntegrityError:
            workspace.purge_workspace(settings.workspaces_dir, path)
            raise Conflict(f"a project named {data.name!r} already exists") from None
        except BaseException:
            workspace.purge_workspace(settings.workspaces_dir, path)
            raise
        log.info("project.created", project_id=str(project.id), name=project.name, path=project.path)
        return project

    async def update_project(self, project_id: UUID, data: ProjectUpdate) -> ProjectModel:
        project = await self.get_project(project_id)
        changes: dict[str, Any] = {
            field: value for field in data.__struct_fields__ if (value := getattr(data, field)) is not msgspec.UNSET
        }
        if "name" in changes and changes["name"] != project.name:
            await self._ensure_name_free(changes["name"])
        for field, value in changes.items():
            setattr(project, field, value)
        try:
            project = await self.update(project, auto_commit=True)
        except IntegrityError:
            raise Conflict(f"a project named {changes.get('name')!r} already exists") from None
        log.info("project.updated", project_id=str(project.id), fields=sorted(changes))
        return project

    async def delete_project(self, project_id: UUID, settings: Settings, *, purge: bool) -> ProjectModel:
        project = await self.get_project(project_id)
        await self.delete(project.id, auto_commit=True)
        if purge:
            workspace.purge_workspace(settings.workspaces_dir, Path(project.path))
        log.info("project.deleted", project_id=str(project.id), name=project.name, purged=purge)
        return project


def to_schema(project: ProjectModel, settings: Settings) -> Project:
    return Project(
        id=project.id,
        name=project.name,
        description=project.description,
        path=project.path,
        template=project.template,
        repo_url=project.repo_url,
        github_url=project.github_url,
        image=project.image,
        runtime=project.runtime or settings.runtime,  # type: ignore[arg-type]
        test_command=project.test_command,
        agent_command=list(project.agent_command),
        created_at=project.created_at,
        updated_at=project.updated_at,
        container_id=project.container_id,
    )
