"""A held session's saved scrollback says up to which offset of the program's output it
reaches (the holder counts it), so that a later service asks for the rest and shows no gap
and no repeat; a file saved before offsets were kept still loads. A session asked for while
the restores after a restart are under way is waited for, not answered 404."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import pytest

from service.sessions import children
from service.sessions.children import SessionIndex
from service.sessions.store import SessionStore


def store(directory: Path) -> SessionStore:
    return SessionStore(cast(Any, None), directory, cast(Any, None))  # the files only


async def test_the_scrollback_keeps_the_offset_it_reaches(tmp_path: Path) -> None:
    sessions = store(tmp_path / "sessions")
    sid = uuid4()
    assert await sessions.load_scrollback(sid, 100) == (b"", None)
    await sessions.save_scrollback(sid, b"hello\r\nworld", 1234)
    assert await sessions.load_scrollback(sid, 100) == (b"hello\r\nworld", 1234)
    assert await sessions.load_scrollback(sid, 5) == (b"world", 1234)  # the tail, within the limit
    await sessions.save_scrollback(sid, b"agentdock-scrollback offset=9\nnot a header", None)
    assert await sessions.load_scrollback(sid, 100) == (b"agentdock-scrollback offset=9\nnot a header", None)
    assert (tmp_path / "sessions" / f"{sid}.scrollback").stat().st_mode & 0o777 == 0o600


async def test_a_scrollback_saved_without_an_offset_loads_whole(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    sid = uuid4()
    (directory / f"{sid}.scrollback").write_bytes(b"older format\r\n$ ")
    assert await store(directory).load_scrollback(sid, 100) == (b"older format\r\n$ ", None)


async def test_a_session_asked_for_while_restores_run_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    index = SessionIndex()
    sid = uuid4()
    assert await index.find(sid) is None  # nothing under way: at once
    token = object()
    index.restoring(token)
    asking = asyncio.create_task(index.find(sid))
    await asyncio.sleep(0.05)
    assert not asking.done()  # a restore that could bring it back is under way
    session = cast(Any, SimpleNamespace(id=sid))
    index.add(session)
    index.restored(token)
    assert await asking is session
    # A restore that never finishes (its supervisor stopped first) is waited for a bounded time.
    monkeypatch.setattr(children, "RESTORE_WAIT_S", 0.2)
    index.restoring(object())
    started = time.monotonic()
    assert await index.find(uuid4()) is None
    assert 0.1 < time.monotonic() - started < 2
    assert await index.find(uuid4()) is None  # and not again
