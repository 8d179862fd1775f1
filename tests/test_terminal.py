"""PTY sessions and the terminal WebSocket, end to end against a real server, in both runtimes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import BUSYBOX_IMAGE, remove_project_containers
from tests.live import LiveServer, serve_per_runtime

SAY_UTF8 = r"""s=$(printf '\303\251\342\202\254\360\237\230\200'); i=0
while [ $i -lt 3000 ]; do printf '%s' "$s"; i=$((i+1)); done; echo; echo END"""


@pytest.fixture(scope="module", params=["local", "docker"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_per_runtime(request, tmp_path_factory, "live", BUSYBOX_IMAGE)


def name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def test_echo_round_trip(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"])
    async with server.connect(session["id"]) as term:
        first = await term.recv()
        assert first == {"type": "status", "state": "running"}
        await term.type("echo hel''lo\n")
        await term.until_output("hello\r\n")
    assert server.events("session.viewer.attached")


async def test_stty_size_is_the_creation_size_then_the_resize(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh", "-c", "stty size; exec sh"], cols=123, rows=45)
    async with server.connect(session["id"]) as term:
        await term.until_output("45 123")  # the program's very first instruction sees the size
        await term.send({"type": "resize", "cols": 99, "rows": 33})
        await asyncio.sleep(0.2)
        await term.type("stty size\n")
        await term.until_output("33 99")
    async with server.client() as client:
        body = (await client.get(f"/api/sessions/{session['id']}")).json()
    assert (body["cols"], body["rows"]) == (99, 33)


async def test_interrupt_ends_the_foreground_program_not_the_shell(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"])
    async with server.connect(session["id"]) as term:
        await term.recv()
        await term.type("sleep 100\n")
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await term.send({"type": "interrupt"})
        await asyncio.sleep(0.3)  # Ctrl-C also discards input not yet read, as on any terminal
        await term.type("echo alive-$((6*7))\n")
        await term.until_output("alive-42", timeout=10)
        assert time.monotonic() - started < 5
    async with server.client() as client:
        assert (await client.get(f"/api/sessions/{session['id']}")).json()["state"] == "running"


async def test_exit_code_is_reported(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"])
    async with server.connect(session["id"]) as term:
        await term.recv()
        await term.type("echo bye; exit 3\n")
        status = await term.until_status("exited")
        assert status == {"type": "status", "state": "exited", "exit_code": 3}
        assert "bye" in term.output  # drained before the status
    async with server.client() as client:
        body = (await client.get(f"/api/sessions/{session['id']}")).json()
    assert (body["state"], body["exit_code"]) == ("exited", 3)
    exited = [e for e in server.events("session.exited") if e["session_id"] == session["id"]]
    assert exited and exited[0]["exit_code"] == 3


def numbered(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^line-(\d+)\r$", text, re.MULTILINE)]


async def test_reconnect_replays_the_scrollback_with_an_exact_seam(server: LiveServer) -> None:
    script = (
        "i=0; while [ $i -lt 40000 ]; do i=$((i+1)); echo line-$i; [ $((i % 500)) -eq 0 ] && sleep 0.02; done; "
        "echo DONE"
    )
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh", "-c", f"read go; {script}"])
    async with server.connect(session["id"]) as first:
        await first.recv()
        await first.type("go\n")
        await first.until_output("line-25000\r\n")
        async with server.connect(session["id"]) as late:  # attaches mid-stream
            await late.until_output("DONE")
            await first.until_output("DONE")
            live_frames = [m for m in late.messages[2:] if m["type"] == "output"]
    assert live_frames, "the late viewer attached after the output ended"
    everything = numbered(first.output)
    assert everything == list(range(1, 40001))
    seen = numbered(late.output)
    assert seen == list(range(seen[0], 40001))  # no gap, no double at the replay/live seam
    assert seen[0] > 1  # the 256 KiB scrollback was cut ...
    assert late.output.startswith(f"line-{seen[0]}\r\n")  # ... at a line start
    assert first.output.endswith(late.output)


async def test_two_viewers_receive_the_same_bytes(server: LiveServer) -> None:
    script = "read go; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo row-$i; done; echo END"
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh", "-c", script])
    async with server.connect(session["id"]) as a, server.connect(session["id"]) as b:
        await a.recv()
        await b.recv()
        await a.type("go\n")
        await a.until_output("END\r\n")
        await b.until_output("END\r\n")
        assert a.output == b.output
        assert "row-3000" in a.output


async def test_read_only_viewer_is_refused_input(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"])
    async with server.connect(session["id"]) as owner, server.connect(session["id"], mode="view") as watcher:
        await owner.recv()
        await watcher.recv()
        for message in (
            {"type": "input", "data": "echo sneaky-$((1+1))\n"},
            {"type": "interrupt"},
            {"type": "resize", "cols": 10, "rows": 10},
        ):
            await watcher.send(message)
            reply = await watcher.until(lambda m, _t: m["type"] == "error")
            assert "read-only" in reply["message"]
        await owner.type("echo owner-$((2+2))\n")
        await watcher.until_output("owner-4")  # the watcher still sees output
        assert "sneaky-2" not in watcher.output


async def test_terminal_queries_are_stripped_from_the_replay(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(
            client, project, command=["sh", "-c", r"printf 'before\033[6nmiddle\033[cafter\n'; sleep 60"]
        )
    async with server.connect(session["id"]) as first:
        await first.until_output("after")
    async with server.connect(session["id"]) as later:
        await later.until_output("after")
        assert "beforemiddleafter" in later.output
        assert "\x1b[6n" not in later.output
        assert "\x1b[c" not in later.output


async def test_multibyte_utf8_arrives_intact(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh", "-c", "read go; " + SAY_UTF8])
    async with server.connect(session["id"]) as term:
        await term.recv()
        await term.type("go\n")
        await term.until_output("END")
    assert "é€😀" * 3000 in term.output
    assert "\ufffd" not in term.output


async def test_refusals_have_their_close_codes(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"])
    cases: list[tuple[dict[str, Any], int]] = [
        ({"token": None}, 4401),
        ({"token": "wrong"}, 4401),
        ({"additional_headers": {"Origin": "https://evil.example"}}, 4403),
        ({"additional_headers": {"Origin": "http://localhost:5173"}}, 0),
    ]
    for kwargs, code in cases:
        async with server.connect(session["id"], **kwargs) as term:
            if code == 0:
                assert (await term.recv())["type"] == "status"
                continue
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await term.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == code
            assert not term.messages  # nothing was sent before the close
    for target in (str(uuid.uuid4()), "not-an-id", "f" * 64):
        async with server.connect(target) as term:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await term.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_malformed_messages_get_errors_and_the_socket_stays(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"])
    bad: list[str | bytes] = [
        "not json",
        "{",
        "[]",
        "null",
        "42",
        '{"type": "nope"}',
        '{"type": "input"}',
        '{"type": "input", "data": 5}',
        '{"type": "resize", "cols": 0, "rows": 10}',
        '{"type": "resize", "cols": 1001, "rows": 10}',
        '{"type": "resize", "cols": "80", "rows": 24}',
        '{"type": "input", "data": "x", "extra": 1}',
        b"\x00\x01binary",
    ]
    async with server.connect(session["id"]) as term:
        await term.recv()
        for message in bad:
            await term.ws.send(message)
            reply = await term.until(lambda m, _t: m["type"] == "error")
            assert reply["message"]
        await term.type("echo still-$((3*3))\n")
        await term.until_output("still-9")


async def test_delete_ends_a_process_group_that_ignores_hup_and_term(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(
            client, project, command=["sh", "-c", "trap '' HUP TERM; echo ready; sleep 1234 & wait; sleep 1234"]
        )
        async with server.connect(session["id"]) as term:
            await term.until_output("ready")
            started = time.monotonic()
            response = await client.delete(f"/api/sessions/{session['id']}")
            elapsed = time.monotonic() - started
            assert response.status_code == 204
            status = await term.until_status("exited")
        assert elapsed < 8
        assert status.get("signal") == 9  # it took SIGKILL: HUP and TERM were ignored
        assert (await client.get(f"/api/sessions/{session['id']}")).status_code == 404
        if server.runtime == "docker":
            container = (await client.get(f"/api/projects/{project['id']}/container")).json()["id"]
            ps = subprocess.run(["docker", "exec", container, "ps"], capture_output=True, text=True, check=True)
            assert "sleep 1234" not in ps.stdout
    closed = [e for e in server.events("session.closed") if e["session_id"] == session["id"]]
    assert closed and closed[0]["signal"] == 9


async def test_on_failure_session_restarts_then_gives_up(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh", "-c", "echo run; exit 1"], restart="on-failure")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(e["session_id"] == session["id"] for e in server.events("session.gave_up")):
                break
            await asyncio.sleep(0.1)
        body = (await client.get(f"/api/sessions/{session['id']}")).json()
    assert body["restart_count"] == 5
    assert (body["state"], body["exit_code"]) == ("exited", 1)
    restarted = [e for e in server.events("session.restarted") if e["session_id"] == session["id"]]
    assert len(restarted) == 5


async def test_project_or_container_id_attaches_the_default_shell(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        async with server.connect(project["id"]) as term:
            await term.recv()
            await term.type("echo via-project-$((5*5))\n")
            await term.until_output("via-project-25")
        sessions = (await client.get(f"/api/projects/{project['id']}/sessions")).json()["items"]
        assert len(sessions) == 1
        if server.runtime == "docker":
            container = (await client.get(f"/api/projects/{project['id']}/container")).json()["id"]
            async with server.connect(container) as term:
                await term.recv()
                await term.type("echo via-container\n")
                await term.until_output("via-container")
                assert "via-project-25" in term.output  # the same session: its scrollback
            assert (await client.get(f"/api/projects/{project['id']}/sessions")).json()["total"] == 1


async def test_bad_session_requests_are_4xx(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        for body in (
            {"cols": 0},
            {"rows": 1001},
            {"command": []},
            {"command": "sh"},
            {"env": {"1BAD": "x"}},
            {"restart": "always"},
            {"unknown": 1},
        ):
            response = await client.post(f"/api/projects/{project['id']}/sessions", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["detail"]
        missing = await client.post(f"/api/projects/{project['id']}/sessions", json={"command": ["no-such-program-x"]})
        if server.runtime == "local":
            assert missing.status_code == 409
        assert (await client.get(f"/api/sessions/{uuid.uuid4()}")).status_code == 404
        assert (await client.delete(f"/api/sessions/{uuid.uuid4()}")).status_code == 404


@pytest.mark.usefixtures("docker_available")
async def test_container_death_is_reported_to_viewers(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "d", runtime="docker", image=BUSYBOX_IMAGE, extra_env={"AGENTDOCK_RESTART_MAX": "0"})
    live.start()
    try:
        async with live.client() as client:
            project = await live.project(client, name())
            session = await live.session(client, project, command=["sh"])
            container = (await client.get(f"/api/projects/{project['id']}/container")).json()["id"]
        async with live.connect(session["id"]) as term:
            await term.recv()
            subprocess.run(["docker", "kill", container], check=True, capture_output=True)
            status = await term.until(lambda m, _t: m["type"] == "status" and m["state"] != "running")
            assert status["state"] in ("exited", "error")
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)


@pytest.mark.usefixtures("docker_available")
async def test_more_than_a_hundred_docker_sessions_leave_the_engine_reachable(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "many", runtime="docker", image=BUSYBOX_IMAGE)
    live.start()
    try:
        async with live.client() as client:
            project = await live.project(client, name())
            for _ in range(105):  # each holds an attach stream to the engine
                await live.session(client, project, command=["sleep", "600"])
            health = await client.get("/api/health")
            assert health.status_code == 200, health.text
            container = await client.get(f"/api/projects/{project['id']}/container")
            assert container.status_code == 200
            sessions = (await client.get(f"/api/projects/{project['id']}/sessions", params={"limit": 500})).json()
            assert sessions["total"] == 105
            sessions = sessions["items"]
            assert len(sessions) == 105
            assert (await client.delete(f"/api/sessions/{sessions[0]['id']}")).status_code == 204
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)
