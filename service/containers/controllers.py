from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from service.actors import messages as m
from service.api.openapi import errors
from service.api.pagination import DEFAULT_LIMIT, Limit, Offset, window
from service.containers.schemas import Container, ContainerPage
from service.state import AppState

# 409: the project has no container to manage (the local runtime).
CONTAINER_ERRORS = errors(404, 409, 503)
ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]


class ProjectContainerController(Controller):
    path = "/api/projects/{project_id:uuid}/container"
    tags = ["containers"]

    @get(
        "/",
        operation_id="getContainer",
        summary="The project's container, read from Docker",
        responses=CONTAINER_ERRORS,
    )
    async def get_container(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.GetContainer())
        return result

    @post(
        "/start",
        operation_id="startContainer",
        summary="Start the container, creating it if missing",
        status_code=200,
        responses=CONTAINER_ERRORS,
    )
    async def start(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.StartContainer())
        return result

    @post(
        "/stop",
        operation_id="stopContainer",
        summary="Stop the container (not restarted)",
        status_code=200,
        responses=CONTAINER_ERRORS,
    )
    async def stop(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.StopContainer())
        return result

    @post(
        "/restart",
        operation_id="restartContainer",
        summary="Restart the container",
        status_code=200,
        responses=CONTAINER_ERRORS,
    )
    async def restart(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.RestartContainer())
        return result

    @delete(
        "/",
        operation_id="removeContainer",
        summary="Remove the container (the workspace stays)",
        responses=CONTAINER_ERRORS,
    )
    async def remove(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> None:
        await app_state.registry.ask(project_id, m.RemoveContainer())


class ContainersController(Controller):
    path = "/api/containers"
    tags = ["containers"]

    @get(
        "/",
        operation_id="listContainers",
        summary="Every container the service manages, read from Docker",
        responses=errors(503),
    )
    async def list_containers(
        self, app_state: NamedDependency[AppState], limit: Limit = DEFAULT_LIMIT, offset: Offset = 0
    ) -> ContainerPage:
        """A page of them, in Docker's order (newest first)."""
        states = await app_state.docker_runtime.list_managed()
        items = [app_state.registry.container_view(state) for state in window(states, limit, offset)]
        return ContainerPage(items=items, total=len(states), limit=limit, offset=offset)
