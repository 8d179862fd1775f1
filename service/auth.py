"""API token auth: ``Authorization: Bearer <token>`` on REST, ``?token=`` on WebSockets.

REST is checked by a guard (401 with a JSON ``detail``). WebSockets cannot see an HTTP status
in a browser, so their listeners accept and close with 4401 themselves (``check_websocket``).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler

from service.errors import Unauthorized

PUBLIC = "public"


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
    """Guard on every HTTP route but those marked ``opt={"public": True}``."""
    if handler.opt.get(PUBLIC) or connection.scope["type"] != ScopeType.HTTP:
        return
    if not token_matches(connection.app.state.api_token, bearer_token(connection)):
        raise Unauthorized("missing or invalid API token: send 'Authorization: Bearer <token>'")
