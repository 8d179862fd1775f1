from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from service.actors import messages as m
from service.containers.schemas import Container
from service.state import AppState

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]


class ProjectContainerController(Controller):
    path = "/api/projects/{project_id:uuid}/container"
    tags = ["containers"]

    @get("/", summary="The project's container, read from Docker")
    async def get_container(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.GetContainer())
        return result

    @post("/start", summary="Start the container, creating it if missing", status_code=200)
    async def start(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.StartContainer())
        return result

    @post("/stop", summary="Stop the container (not restarted)", status_code=200)
    async def stop(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.StopContainer())
        return result

    @post("/restart", summary="Restart the container", status_code=200)
    async def restart(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> Container:
        result: Container = await app_state.registry.ask(project_id, m.RestartContainer())
        return result

    @delete("/", summary="Remove the container (the workspace stays)")
    async def remove(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> None:
        await app_state.registry.ask(project_id, m.RemoveContainer())


class ContainersController(Controller):
    path = "/api/containers"
    tags = ["containers"]

    @get("/", summary="Every container the service manages, read from Docker")
    async def list_containers(self, app_state: NamedDependency[AppState]) -> list[Container]:
        return [app_state.registry.container_view(state) for state in await app_state.docker_runtime.list_managed()]
