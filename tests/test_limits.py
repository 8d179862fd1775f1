"""Limits on what API clients can make (issue 10, item 10): projects, queued runs per project,
viewers per session, and the size of a WebSocket frame."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.settings import Settings
from service.state import AppState
from service.workflows.definitions import get_workflow
from service.workflows.schemas import RunCreate
from tests.conftest import BUSYBOX_IMAGE, wait_until
from tests.live import LiveServer

Client = AsyncTestClient[Litestar]


async def create(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_defaults_and_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.max_projects, defaults.max_queued_runs, defaults.max_viewers) == (1000, 100, 64)
    given = Settings.from_env(
        {"AGENTDOCK_MAX_PROJECTS": "5", "AGENTDOCK_MAX_QUEUED_RUNS": "6", "AGENTDOCK_MAX_VIEWERS": "7"}
    )
    assert (given.max_projects, given.max_queued_runs, given.max_viewers) == (5, 6, 7)


# -- projects -----------------------------------------------------------------------------------


@pytest.mark.settings(max_projects=2)
async def test_one_project_too_many_is_409(client: Client, migrated: Settings) -> None:
    first = await create(client, name="one")
    await create(client, name="two")
    response = await client.post("/api/projects", json={"name": "three"})
    assert response.status_code == 409, response.text
    assert "AGENTDOCK_MAX_PROJECTS" in response.json()["detail"]
    assert "2" in response.json()["detail"]
    assert not (migrated.workspaces_dir / "three").exists()
    assert [p["name"] for p in (await client.get("/api/projects")).json()["items"]] == ["one", "two"]
    # Room again once one is gone.
    assert (await client.delete(f"/api/projects/{first['id']}", params={"purge": "true"})).status_code == 204
    await create(client, name="three")


# -- queued runs --------------------------------------------------------------------------------


@pytest.mark.settings(max_queued_runs=2, runtime="local")
async def test_one_queued_run_too_many_is_409(client: Client, app: Litestar) -> None:
    """The runs already queued are written straight to the store, so that none of them starts
    before the request that is one too many."""
    state: AppState = app.state.agentdock
    harmless = {"agent_command": ["true"], "test_command": "true"}
    busy = await create(client, name="busy", **harmless)
    busy_id = uuid.UUID(busy["id"])
    queued = [
        await state.runs.create(busy_id, RunCreate(workflow="tdd", task=f"queued {i}"), get_workflow("tdd"))
        for i in range(2)
    ]
    body = {"workflow": "tdd", "task": "one more", "max_attempts": 1}
    response = await client.post(f"/api/projects/{busy['id']}/workflow-runs", json=body)
    assert response.status_code == 409, response.text
    assert "AGENTDOCK_MAX_QUEUED_RUNS" in response.json()["detail"]
    assert (await state.runs.page_for_project(busy_id, limit=50, offset=0)).total == 2  # nothing was added
    # Only runs that are still queued count: one that is over makes room.
    await state.runs.update_run(queued[0].id, state="cancelled")
    assert await state.runs.count_in_states(busy_id, ("queued",)) == 1
    response = await client.post(f"/api/projects/{busy['id']}/workflow-runs", json=body)
    assert response.status_code == 201, response.text


# -- the terminal WebSocket, against a real server (uvicorn applies ws_max_size) --------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("limits"),
        runtime="local",
        image=BUSYBOX_IMAGE,
        extra_env={"AGENTDOCK_MAX_VIEWERS": "2"},
    )
    live.start()
    try:
        yield live
    finally:
        live.stop()


async def shell(server: LiveServer) -> dict[str, Any]:
    async with server.client() as client:
        project = await server.project(client, f"t-{uuid.uuid4().hex[:10]}")
        return await server.session(client, project, command=["sh"])


async def viewers(server: LiveServer, session_id: str) -> int:
    async with server.client() as client:
        count: int = (await client.get(f"/api/sessions/{session_id}")).json()["viewers"]
        return count


async def test_one_viewer_too_many_is_closed_with_4429(server: LiveServer) -> None:
    session = await shell(server)
    async with server.connect(session["id"]) as first, server.connect(session["id"], mode="view") as second:
        assert (await first.recv())["type"] == "status"
        assert (await second.recv())["type"] == "status"
        async with server.connect(session["id"]) as third:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await third.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4429
            assert "2" in closed.value.rcvd.reason
            assert not third.messages  # refused before anything was sent
        await first.type("echo still-$((2*3))\n")
        await first.until_output("still-6")  # the viewers attached are untouched
    refused = [e for e in server.events("session.viewer.refused") if e["session_id"] == session["id"]]
    assert len(refused) == 1 and refused[0]["limit"] == 2
    # The limit counts the viewers attached now: once they are gone, a new one is taken.
    await wait_until(lambda: _no_viewers(server, session["id"]))
    async with server.connect(session["id"]) as again:
        assert (await again.recv())["type"] == "status"


async def _no_viewers(server: LiveServer, session_id: str) -> bool:
    return await viewers(server, session_id) == 0


@pytest.mark.parametrize("size", [64 * 1024 + 1, 200 * 1024])
async def test_an_oversized_frame_is_refused_by_the_server(server: LiveServer, size: int) -> None:
    session = await shell(server)
    frame = json.dumps({"type": "input", "data": "x" * size})
    async with server.connect(session["id"]) as term:
        assert (await term.recv())["type"] == "status"
        with contextlib.suppress(websockets.ConnectionClosed):  # the close may overtake the send
            await term.ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await term.until(lambda _m, _t: False)  # whatever comes (a prompt), until the close
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009  # message too big
        assert not any(m["type"] == "error" for m in term.messages)  # the service never saw it
    # Under the limit is taken (an invalid message: an error reply, the socket stays), and a
    # new socket works as ever.
    async with server.connect(session["id"]) as term:
        assert (await term.recv())["type"] == "status"
        await term.ws.send("x" * (60 * 1024))
        assert (await term.until(lambda m, _t: m["type"] == "error"))["message"].startswith("invalid message")
        await term.type("echo fine-$((4*4))\n")
        await term.until_output("fine-16")
