"""``POST /api/projects/{id}/environment/build`` and its events socket: thin, the work is in
``service.runtimes.build`` (``BuildManager`` on the app state)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, WebSocket, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, PathParameter

from service.api.openapi import errors
from service.auth import accept_websocket
from service.runtimes.build import BuildEvent
from service.state import AppState

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]
TOO_SLOW = 4008
_encode = msgspec.json.Encoder().encode


class BuildStarted(msgspec.Struct, frozen=True, kw_only=True):
    build_id: UUID


class EnvironmentController(Controller):
    path = "/api/projects/{project_id:uuid}/environment"
    tags = ["environment"]

    @post(
        "/build",
        operation_id="buildEnvironment",
        summary="Build the project's own environment (Dockerfile or devcontainer.json)",
        status_code=202,
        responses=errors(404, 409, 503),
    )
    async def build(self, project_id: ProjectId, app_state: NamedDependency[AppState]) -> BuildStarted:
        """Starts a build in the background; its progress is on the events socket. 404 for an
        unknown project, 400 where the workspace defines no (valid) environment, 409 while a
        build of the project runs."""
        return BuildStarted(build_id=await app_state.builds.start(project_id))


@websocket("/api/projects/{project_id:uuid}/environment/events", opt={"public": True})  # token checked below
async def environment_events(socket: WebSocket[Any, Any, Any], project_id: FromPath[UUID]) -> None:
    """The running build (or the last one's outcome), then one event per build chunk and state
    change: ``{"type": "build", "build_id", "state", "stream"?, "status"?, "error"?, "tag"?}``."""
    state: AppState = socket.app.state.agentdock
    if not await accept_websocket(socket, state.api_token, state.settings.allowed_origins):
        return
    if await state.registry.store.load(project_id) is None:
        await socket.close(code=4404, reason="no such project")
        return
    queue, first = state.builds.subscribe(project_id)
    try:
        for event in first:
            await socket.send_text(_encode(event).decode())
        while True:
            receive: asyncio.Task[Any] = asyncio.create_task(_receive(socket))
            waiting = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({receive, waiting}, return_when=asyncio.FIRST_COMPLETED)
            for task in (receive, waiting):
                if task not in done:
                    task.cancel()
            if receive in done and receive.result()["type"] == "websocket.disconnect":
                return
            if waiting in done:
                item: BuildEvent | None = waiting.result()
                if item is None:
                    await socket.close(code=TOO_SLOW, reason="too far behind")
                    return
                await socket.send_text(_encode(item).decode())
    except (WebSocketDisconnect, OSError, RuntimeError):
        return
    finally:
        state.builds.unsubscribe(project_id, queue)


async def _receive(socket: WebSocket[Any, Any, Any]) -> Any:
    return await socket.receive()
