"""API token auth: ``Authorization: Bearer <token>`` on REST, ``?token=`` on WebSockets.

REST is checked by a guard (401 with a JSON ``detail``). WebSockets cannot see an HTTP status
in a browser, so their listeners accept and close with 4401 themselves (``check_websocket``).
"""

from __future__ import annotations

import hmac
import re
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection, WebSocket
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler

from service.errors import Forbidden, Unauthorized

PUBLIC = "public"
METRICS = "metrics"  # GET /metrics: the metrics token is accepted there too


def token_matches(expected: str, provided: str | None) -> bool:
    if not provided:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def require_token(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard on every HTTP route but those marked ``opt={"public": True}``. A route marked
    ``opt={"metrics": True}`` also takes ``AGENTDOCK_METRICS_TOKEN``, where it is set."""
    if handler.opt.get(PUBLIC) or connection.scope["type"] != ScopeType.HTTP:
        return
    provided = bearer_token(connection)
    if token_matches(connection.app.state.api_token, provided):
        return
    metrics_token: str | None = connection.app.state.get("metrics_token")
    if not (handler.opt.get(METRICS) and metrics_token and token_matches(metrics_token, provided)):
        raise Unauthorized("missing or invalid API token: send 'Authorization: Bearer <token>'")


LOCALHOST_ORIGIN = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?$")


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """A WebSocket's ``Origin``: absent (not a browser), the same origin, a configured one, or
    (when none is configured) any localhost origin."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True
    return not allowed and bool(LOCALHOST_ORIGIN.match(origin))


def websocket_refusal(socket: WebSocket[Any, Any, Any], expected_token: str, allowed: tuple[str, ...]) -> int | None:
    """The close code for a socket that must be refused (4401 token, 4403 origin), or None.
    Called after accept and before anything is sent or taken: a browser sees close codes
    only after the handshake."""
    if not token_matches(expected_token, socket.query_params.get("token")):
        return Unauthorized.close_code
    if not origin_allowed(socket.headers.get("origin"), socket.headers.get("host"), allowed):
        return Forbidden.close_code
    return None


async def accept_websocket(socket: WebSocket[Any, Any, Any], expected_token: str, allowed: tuple[str, ...]) -> bool:
    """Accept the handshake, then refuse (close 4401 or 4403) before anything is sent or
    taken where the token or the origin is wrong; answers whether the socket may go on."""
    await socket.accept()
    refusal = websocket_refusal(socket, expected_token, allowed)
    if refusal is None:
        return True
    await socket.close(
        code=refusal, reason="unauthenticated" if refusal == Unauthorized.close_code else "origin not allowed"
    )
    return False
