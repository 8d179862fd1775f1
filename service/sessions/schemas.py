"""API shapes of sessions, and the terminal WebSocket's messages in both directions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from service.api.pagination import Page

SessionState = Literal["running", "exited", "error"]
Dimension = Annotated[int, msgspec.Meta(ge=1, le=1000)]
EnvName = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = Annotated[str, msgspec.Meta(max_length=32768)]
Argument = Annotated[str, msgspec.Meta(max_length=32768)]


class SessionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    command: Annotated[list[Argument], msgspec.Meta(min_length=1, max_length=256)] | None = None
    cols: Dimension = 80
    rows: Dimension = 24
    env: Annotated[dict[EnvName, EnvValue], msgspec.Meta(max_length=128)] | None = None
    restart: Literal["never", "on-failure"] = "never"


class Session(msgspec.Struct, kw_only=True):
    id: UUID
    project_id: UUID
    command: list[str]
    state: SessionState
    exit_code: int | None
    signal: int | None
    cols: int
    rows: int
    viewers: int
    restart: Literal["never", "on-failure"]
    restart_count: int
    created_at: datetime


class SessionPage(Page, kw_only=True):
    items: list[Session]


# --- terminal WebSocket: client → server ----------------------------------------------------


class InputMessage(msgspec.Struct, tag="input", tag_field="type", forbid_unknown_fields=True):
    data: str


class InterruptMessage(msgspec.Struct, tag="interrupt", tag_field="type", forbid_unknown_fields=True):
    pass


class ResizeMessage(msgspec.Struct, tag="resize", tag_field="type", forbid_unknown_fields=True):
    cols: Dimension
    rows: Dimension


ClientMessage = InputMessage | InterruptMessage | ResizeMessage


# --- terminal WebSocket: server → client ----------------------------------------------------


class OutputFrame(msgspec.Struct, tag="output", tag_field="type"):
    data: str


class StatusFrame(msgspec.Struct, tag="status", tag_field="type", omit_defaults=True):
    state: SessionState
    exit_code: int | None = None
    signal: int | None = None


class ErrorFrame(msgspec.Struct, tag="error", tag_field="type"):
    message: str
