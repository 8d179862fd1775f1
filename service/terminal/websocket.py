"""``WS /api/terminal/{id}``: attach a viewer to a session and carry its input.

Refusals (token 4401, origin 4403, unknown id 4404, one viewer too many 4429) come right
after accept and before anything is sent or taken. On attach: a status message, the
screen as it stands (a model of it: recent history, then what the program last drew), then
live output. A malformed message gets an ``error`` reply and the socket
stays open; so does an oversized one where the server lets it through (``agentdock serve``
sets uvicorn's ``ws_max_size`` to ``MAX_MESSAGE_BYTES``, so there a larger frame closes the
socket with 1009 before it is buffered). A viewer that falls more than its limit behind is
closed with 4008.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from uuid import UUID

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath

from service.actors import messages as m
from service.auth import accept_websocket
from service.errors import AppError, NotFound
from service.logs import get_logger
from service.sessions.schemas import ClientMessage, ErrorFrame, InputMessage, InterruptMessage, ResizeMessage
from service.sessions.session import PtySession
from service.sessions.viewer import Viewer
from service.state import AppState

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
CLOSE_TOO_SLOW = 4008
CLOSE_TOO_MANY_VIEWERS = 4429
_CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
_decode = msgspec.json.Decoder(ClientMessage).decode
_encode = msgspec.json.Encoder().encode


async def resolve(state: AppState, target: str) -> PtySession:
    """A session id; or a project id or its container id, meaning that project's default shell."""
    project_id: UUID | None = None
    if _CONTAINER_ID.match(target):
        project_id = state.registry.find_by_container(target)
    else:
        try:
            key = UUID(target)
        except ValueError:
            raise NotFound(f"{target!r} is not a session, project or container id") from None
        session = await state.registry.index.find(key)
        if session is not None:
            return session
        project_id = key
    if project_id is None:
        raise NotFound(f"no project owns the container {target}")
    result: PtySession = await state.registry.ask(project_id, m.DefaultSession(), timeout=120)
    return result


@websocket("/api/terminal/{target:str}", opt={"public": True})  # the token is checked below
async def terminal(socket: WebSocket[Any, Any, Any], target: FromPath[str]) -> None:
    state: AppState = socket.app.state.agentdock
    if not await accept_websocket(socket, state.api_token, state.settings.allowed_origins):
        return
    try:
        session = await resolve(state, target)
    except AppError as exc:
        await socket.close(code=exc.close_code, reason=exc.detail[:120])
        return
    read_only = socket.query_params.get("mode") == "view"
    limit = state.settings.max_viewers
    if session.viewer_count >= limit:  # no await between this check and the attach below
        log.warning(
            "session.viewer.refused", session_id=str(session.id), project_id=str(session.project_id), limit=limit
        )
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await socket.close(code=CLOSE_TOO_MANY_VIEWERS, reason=f"too many viewers: at most {limit} per session")
        return
    viewer, first = session.attach(read_only=read_only)
    log.info(
        "session.viewer.attached", session_id=str(session.id), project_id=str(session.project_id), read_only=read_only
    )
    sender = asyncio.create_task(_send(socket, viewer, first))
    receiver = asyncio.create_task(_receive(socket, session, viewer))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        session.detach(viewer)
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError):
                await task
    if viewer.dropped:
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await socket.close(code=CLOSE_TOO_SLOW, reason="too slow: reconnect to get the scrollback")
    else:
        log.info("session.viewer.detached", session_id=str(session.id), project_id=str(session.project_id))


async def _send(socket: WebSocket[Any, Any, Any], viewer: Viewer, first: list[Any]) -> None:
    for frame in first:
        await socket.send_text(frame.text)
    while True:
        frames = await viewer.take()
        if viewer.dropped:
            return
        for frame in frames:
            await socket.send_text(frame.text)
            viewer.sent(frame)


async def _receive(socket: WebSocket[Any, Any, Any], session: PtySession, viewer: Viewer) -> None:
    async def refuse(message: str) -> None:
        await socket.send_text(_encode(ErrorFrame(message=message)).decode())

    while True:
        event = await socket.receive()
        if event["type"] == "websocket.disconnect":
            return
        text = event.get("text")
        if not isinstance(text, str):
            await refuse("binary frames are not accepted: send JSON text messages")
            continue
        if len(text) > MAX_MESSAGE_BYTES or len(text.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
            await refuse(f"message too large: at most {MAX_MESSAGE_BYTES} bytes")
            continue
        try:
            message = _decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await refuse(f"invalid message: {exc}")
            continue
        if viewer.read_only:
            await refuse("this viewer is read-only (mode=view): input, interrupt and resize are refused")
            continue
        match message:
            case InputMessage(data=data):
                await session.write(data.encode("utf-8", errors="replace"))
            case InterruptMessage():
                await session.interrupt()
            case ResizeMessage(cols=cols, rows=rows):
                await session.viewer_size(viewer, cols, rows)  # the smallest writable viewer's size
