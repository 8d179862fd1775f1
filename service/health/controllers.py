from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from sqlalchemy import text

from service.api.openapi import PublicOperation
from service.errors import Unavailable
from service.state import AppState


class DockerHealth(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    version: str | None = None
    detail: str | None = None


class DatabaseHealth(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    detail: str | None = None


HealthStatus = Literal["ok", "degraded"]


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: HealthStatus
    runtime: str
    docker: DockerHealth
    database: DatabaseHealth
    reason: str | None = None


class HealthController(Controller):
    path = "/api/health"
    tags = ["health"]

    @get(
        "/",
        opt={"public": True},
        operation_id="getHealth",
        operation_class=PublicOperation,  # security: [] (no token needed)
        summary="Service health",
        description="200 when the database and (for the docker runtime) the Docker engine answer; 503 otherwise.",
        responses={503: ResponseSpec(data_container=Health, description="degraded: the reason says what")},
    )
    async def health(self, app_state: NamedDependency[AppState]) -> Response[Health]:
        try:
            version = await app_state.docker.version()
            docker = DockerHealth(ok=True, version=version)
        except Unavailable as exc:
            docker = DockerHealth(ok=False, detail=exc.detail)
        try:
            async with app_state.db.get_session() as session:
                await session.execute(text("SELECT 1"))
            database = DatabaseHealth(ok=True)
        except Exception as exc:
            database = DatabaseHealth(ok=False, detail=f"{type(exc).__name__}: {exc}")
        reasons = []
        if not database.ok:
            reasons.append(f"database: {database.detail}")
        if not docker.ok and app_state.settings.runtime == "docker":
            reasons.append(f"docker: {docker.detail}")
        body = Health(
            status="degraded" if reasons else "ok",
            runtime=app_state.settings.runtime,
            docker=docker,
            database=database,
            reason="; ".join(reasons) or None,
        )
        return Response(body, status_code=503 if reasons else 200)
