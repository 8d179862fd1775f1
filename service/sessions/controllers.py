from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from service.actors import messages as m
from service.api.openapi import errors
from service.api.pagination import DEFAULT_LIMIT, Limit, Offset, window
from service.errors import NotFound

# Annotations name ``schemas.Session``, never a bare ``Session``: advanced-alchemy's plugin puts
# SQLAlchemy's ``Session`` into every handler's signature namespace, and with postponed
# annotations a bare ``-> Session`` resolves to that (an untyped schema).
from service.sessions import schemas
from service.sessions.session import PtySession
from service.state import AppState

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]
SessionId = Annotated[UUID, PathParameter(description="the session's id (a UUID)")]
OPEN_TIMEOUT_S = 120.0  # opening may create and start the container first


class ProjectSessionsController(Controller):
    path = "/api/projects/{project_id:uuid}/sessions"
    tags = ["sessions"]

    @post(
        "/",
        operation_id="openSession",
        summary="Start a program under a PTY in the project's environment",
        responses=errors(404, 409, 503),
    )
    async def open_session(
        self, project_id: ProjectId, data: JSONBody[schemas.SessionCreate], app_state: NamedDependency[AppState]
    ) -> schemas.Session:
        message = m.OpenSession(
            command=data.command, cols=data.cols, rows=data.rows, env=data.env, restart=data.restart
        )
        session: PtySession = await app_state.registry.ask(project_id, message, timeout=OPEN_TIMEOUT_S)
        return session.view()

    @get("/", operation_id="listSessions", summary="The project's sessions", responses=errors(404, 503))
    async def list_sessions(
        self,
        project_id: ProjectId,
        app_state: NamedDependency[AppState],
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
    ) -> schemas.SessionPage:
        sessions: list[schemas.Session] = await app_state.registry.ask(project_id, m.ListSessions())
        items = window(sessions, limit, offset)
        return schemas.SessionPage(items=items, total=len(sessions), limit=limit, offset=offset)


class SessionsController(Controller):
    path = "/api/sessions"
    tags = ["sessions"]

    @get("/{session_id:uuid}", operation_id="getSession", summary="A session", responses=errors(404))
    async def get_session(self, session_id: SessionId, app_state: NamedDependency[AppState]) -> schemas.Session:
        return (await _session(app_state, session_id)).view()

    @delete(
        "/{session_id:uuid}",
        operation_id="closeSession",
        summary="End the session's process group and forget the session",
        responses=errors(404, 503),
    )
    async def close_session(self, session_id: SessionId, app_state: NamedDependency[AppState]) -> None:
        session = await _session(app_state, session_id)
        await app_state.registry.ask(session.project_id, m.CloseSession(session_id=session_id), timeout=30)


async def _session(app_state: AppState, session_id: UUID) -> PtySession:
    session = await app_state.registry.index.find(session_id)
    if session is None:
        raise NotFound(f"no session with id {session_id}")
    return session
