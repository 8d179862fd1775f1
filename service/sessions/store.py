"""What a later service needs of the sessions a holder keeps: their rows (SQLite) and their
scrollback (a file each under ``<data>/sessions/``, written every SAVE_EVERY_S while it
changes, and at shutdown). A scrollback file begins with a line that says up to which offset
of the program's output (the holder counts it) it reaches: a later service asks the holder
for the output from there on.

Only held sessions are kept (``PtyProcess.holding``): a local session ends with the service.
The env a request gave a session may hold secrets; it is stored encrypted with the secrets'
key, and only to restart the program under its restart policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import delete, select, update

from service.db.models import TerminalSessionModel
from service.logs import get_logger
from service.runtimes.pty import Holding
from service.secrets.crypto import SecretBox, UndecryptableSecret
from service.sessions.schemas import SessionState

log = get_logger(__name__)

# The saver looks once a SAVE_TICK_S; a session's scrollback that changed is written again
# once SAVE_EVERY_S have passed since its last save (at once after its program started or
# restarted). What came after a save is not lost by a crash: the holder keeps the latest
# 256 KiB of output and hands it on from the saved offset, and a scrollback holds no more.
SAVE_TICK_S = 1.0
SAVE_EVERY_S = 10.0
_HEAD = b"agentdock-scrollback offset="


class SessionRecord(msgspec.Struct, kw_only=True):
    id: UUID
    project_id: UUID
    command: list[str]
    cols: int
    rows: int
    restart: str
    restart_count: int = 0
    is_default: bool = False
    render: str | None = None
    cwd: str | None = None
    run_id: UUID | None = None
    env: dict[str, str] = {}
    holding: Holding | None = None  # set once the program runs under a holder (always, when stored)
    state: SessionState = "running"
    exit_code: int | None = None
    signal: int | None = None
    opened_at: datetime


class SessionStore:
    def __init__(self, db: SQLAlchemyAsyncConfig, directory: Path, box: SecretBox) -> None:
        self.db = db
        self.directory = directory
        self.box = box

    # --- rows ---------------------------------------------------------------------------

    async def add(self, record: SessionRecord) -> None:
        assert record.holding is not None, "only held sessions are recorded"
        sealed = self.box.encrypt(json.dumps(record.env)) if record.env else None
        row = TerminalSessionModel(
            id=record.id,
            project_id=record.project_id,
            command=record.command,
            cols=record.cols,
            rows=record.rows,
            restart=record.restart,
            restart_count=record.restart_count,
            is_default=record.is_default,
            render=record.render,
            cwd=record.cwd,
            run_id=str(record.run_id) if record.run_id is not None else None,
            env_sealed=sealed,
            holding=msgspec.to_builtins(record.holding),
            state=record.state,
            exit_code=record.exit_code,
            signal=record.signal,
            opened_at=record.opened_at,
        )
        async with self.db.get_session() as session:
            await session.merge(row)
            await session.commit()

    async def update(self, session_id: UUID, **values: Any) -> None:
        if "holding" in values:
            values["holding"] = msgspec.to_builtins(values["holding"])
        async with self.db.get_session() as session:
            await session.execute(
                update(TerminalSessionModel).where(TerminalSessionModel.id == session_id).values(**values)
            )
            await session.commit()

    async def remove(self, session_id: UUID) -> None:
        async with self.db.get_session() as session:
            await session.execute(delete(TerminalSessionModel).where(TerminalSessionModel.id == session_id))
            await session.commit()
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(session_id).unlink)

    async def of_project(self, project_id: UUID) -> list[SessionRecord]:
        async with self.db.get_session() as session:
            rows = list(
                await session.scalars(
                    select(TerminalSessionModel)
                    .where(TerminalSessionModel.project_id == project_id)
                    .order_by(TerminalSessionModel.opened_at)
                )
            )
        return [self._record(row) for row in rows]

    def _record(self, row: TerminalSessionModel) -> SessionRecord:
        env: dict[str, str] = {}
        if row.env_sealed:
            try:
                env = json.loads(self.box.decrypt(row.env_sealed))
            except (UndecryptableSecret, ValueError):
                log.warning("session.env_lost", session_id=str(row.id), reason="the secret key changed")
        state: SessionState = "running" if row.state == "running" else "exited" if row.state == "exited" else "error"
        return SessionRecord(
            id=row.id,
            project_id=row.project_id,
            command=list(row.command),
            cols=row.cols,
            rows=row.rows,
            restart=row.restart,
            restart_count=row.restart_count,
            is_default=row.is_default,
            render=row.render,
            cwd=row.cwd,
            run_id=UUID(row.run_id) if row.run_id else None,
            env=env,
            holding=msgspec.convert(row.holding, Holding),
            state=state,
            exit_code=row.exit_code,
            signal=row.signal,
            opened_at=row.opened_at,
        )

    # --- scrollback ---------------------------------------------------------------------

    def _path(self, session_id: UUID) -> Path:
        return self.directory / f"{session_id}.scrollback"

    async def save_scrollback(self, session_id: UUID, data: bytes, offset: int | None) -> None:
        head = _HEAD + (str(offset).encode() if offset is not None else b"") + b"\n"
        await asyncio.to_thread(self._write, self._path(session_id), head + data)

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        partial.replace(path)

    async def has_scrollback(self, session_id: UUID) -> bool:
        return await asyncio.to_thread(self._path(session_id).exists)

    async def load_scrollback(self, session_id: UUID, limit: int) -> tuple[bytes, int | None]:
        """The saved scrollback (its last ``limit`` bytes) and the offset it reaches."""

        def read() -> tuple[bytes, int | None]:
            try:
                with self._path(session_id).open("rb") as file:
                    line = file.readline(len(_HEAD) + 32)
                    offset = None
                    if line.startswith(_HEAD) and line.endswith(b"\n"):
                        start = file.tell()
                        value = line[len(_HEAD) : -1]
                        offset = int(value) if value.isdigit() else None
                    else:  # written before the offset was kept: all of it is scrollback
                        start = 0
                    size = file.seek(0, os.SEEK_END)
                    file.seek(max(start, size - limit))
                    return file.read(limit), offset
            except FileNotFoundError:
                return b"", None

        return await asyncio.to_thread(read)
