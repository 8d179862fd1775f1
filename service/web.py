"""HTTP edge: the request-id / access-log middleware and the one mapping of errors to responses."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import AppError
from service.logs import get_logger
from service.metrics import instruments

log = get_logger("service.web")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request an id (kept from ``X-Request-ID`` when sane), binds it to the log
    context, returns it as a header, logs one ``http.request`` event per request and counts it
    in the metrics by its route *template* (``/api/projects/{project_id}``, never the path
    with its ids). The query string is never logged: a WebSocket token travels there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        status: dict[str, int] = {}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if scope["type"] == ScopeType.HTTP:
                    duration = time.perf_counter() - started
                    method = scope.get("method", "")
                    code = status.get("code", 500)
                    log.info(
                        "http.request",
                        method=method,
                        path=scope["path"],
                        status=code,
                        duration_ms=round(duration * 1000, 2),
                    )
                    route = scope.get("path_template") or "unmatched"
                    instruments.http_request(method, route, code, duration)


def app_error_handler(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, Any]]:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return Response(
        {"status_code": exc.status_code, "detail": exc.detail, **exc.body_extra},
        status_code=exc.status_code,
        headers=headers,
    )


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error(
        "http.unhandled_error", method=request.method, path=request.url.path, error=type(exc).__name__, exc_info=exc
    )
    return Response({"status_code": 500, "detail": "internal server error; see the service log"}, status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AppError: app_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
