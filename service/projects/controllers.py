from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated
from uuid import UUID

from advanced_alchemy.extensions.litestar.providers import create_service_dependencies
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from service.actors.messages import GetContainer, ProjectChanged, PurgeEnvironment, RemoveContainer
from service.api.openapi import errors
from service.api.pagination import DEFAULT_LIMIT, Limit, Offset
from service.containers.schemas import Container
from service.errors import Conflict, NotFound
from service.logs import get_logger
from service.projects import workspace
from service.projects.schemas import Project, ProjectCreate, ProjectPage, ProjectUpdate
from service.projects.services import ProjectService, to_schema
from service.state import AppState

log = get_logger(__name__)

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]


class ProjectController(Controller):
    path = "/api/projects"
    tags = ["projects"]
    dependencies = create_service_dependencies(ProjectService, key="projects")

    @post(
        "/",
        operation_id="createProject",
        summary="Create a project",
        responses=errors(409, 502),
    )
    async def create_project(
        self,
        data: JSONBody[ProjectCreate],
        projects: NamedDependency[ProjectService],
        app_state: NamedDependency[AppState],
    ) -> Project:
        project = await projects.create_project(data, app_state.settings)
        return to_schema(project, app_state.settings)

    @get("/", operation_id="listProjects", summary="List projects, oldest first")
    async def list_projects(
        self,
        projects: NamedDependency[ProjectService],
        app_state: NamedDependency[AppState],
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
    ) -> ProjectPage:
        rows, total = await projects.page_of_projects(limit=limit, offset=offset)
        items = [to_schema(p, app_state.settings) for p in rows]
        return ProjectPage(items=items, total=total, limit=limit, offset=offset)

    @get("/{project_id:uuid}", operation_id="getProject", summary="Get a project", responses=errors(404))
    async def get_project(
        self, project_id: ProjectId, projects: NamedDependency[ProjectService], app_state: NamedDependency[AppState]
    ) -> Project:
        return to_schema(await projects.get_project(project_id), app_state.settings)

    @patch("/{project_id:uuid}", operation_id="updateProject", summary="Update a project", responses=errors(404, 409))
    async def update_project(
        self,
        project_id: ProjectId,
        data: JSONBody[ProjectUpdate],
        projects: NamedDependency[ProjectService],
        app_state: NamedDependency[AppState],
    ) -> Project:
        project = await projects.update_project(project_id, data, app_state.settings)
        app_state.registry.tell(project_id, ProjectChanged())
        return to_schema(project, app_state.settings)

    @delete("/{project_id:uuid}", operation_id="deleteProject", summary="Delete a project", responses=errors(404, 503))
    async def delete_project(
        self,
        project_id: ProjectId,
        projects: NamedDependency[ProjectService],
        app_state: NamedDependency[AppState],
        remove_container: Annotated[bool, QueryParameter(description="also remove the project's container")] = False,
        purge: Annotated[
            bool,
            QueryParameter(
                description="also delete the workspace directory, the container and the agent's home volume"
            ),
        ] = False,
    ) -> None:
        project = await projects.get_project(project_id)  # 404 before anything is touched
        path = Path(project.path)
        if purge:  # the container and its home volume go with the workspace
            await app_state.registry.ask(project_id, PurgeEnvironment(), timeout=120)
        elif remove_container:
            container = await _container_or_none(app_state, project_id)
            if container is not None:
                await app_state.registry.ask(project_id, RemoveContainer())
        # The row goes first: from then on no request can start a supervisor for the project,
        # and the one that runs is stopped (under the registry's lock) after.
        await projects.delete_project(project_id)
        await app_state.registry.stop(project_id)
        if purge:  # last: the project's sessions have ended
            await asyncio.to_thread(workspace.purge_workspace, app_state.settings.workspaces_dir, path)
            log.info("project.purged", project_id=str(project_id), path=str(path))


async def _container_or_none(app_state: AppState, project_id: UUID) -> Container | None:
    try:
        result: Container = await app_state.registry.ask(project_id, GetContainer())
    except (NotFound, Conflict):  # no container yet, or the local runtime
        return None
    return result
