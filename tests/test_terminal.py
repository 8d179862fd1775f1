"""PTY sessions and the terminal WebSocket, end to end against a real server, in both runtimes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyte
import pytest
import websockets

from service.runtimes.docker_pty import BULK_READ_BYTES, DockerExecPty
from service.sessions.session import COALESCE_S, PROMPT_BYTES, PtySession
from service.sessions.viewer import Viewer
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
    # ... and the replay is the screen: a reset, whole lines of history, then the screen's rows
    assert f"\x1b[3Jline-{seen[0] - 1}\r\n" in late.messages[1]["data"]
    assert first.output.endswith("".join(frame["data"] for frame in live_frames))


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


# --- coalescing: a session without a process, fed as its runtime feeds it -------------------------


def bare_session() -> PtySession:
    return PtySession(
        project_id=uuid.uuid4(), command=["sh"], cols=80, rows=24, env={}, restart="never", on_exit=lambda *_: None
    )


async def frames_of(viewer: Viewer) -> list[str]:
    """The frames queued for the viewer, taken and marked sent (as the socket's sender does)."""
    frames = await viewer.take()
    for frame in frames:
        viewer.sent(frame)
    return [json.loads(frame.text)["data"] for frame in frames]


async def test_bulk_output_in_small_pieces_goes_out_in_few_frames() -> None:
    session = bare_session()
    viewer, _ = session.attach(read_only=False)
    piece = b"0123456789" * 50 + b"\r\n"  # 502 bytes: how the engine hands on `yes | head` output
    for _ in range(100):
        session._on_data(piece)
    await asyncio.sleep(COALESCE_S * 3)
    frames = await frames_of(viewer)
    assert "".join(frames) == (piece * 100).decode()
    # The window's first KiB at once (two pieces), then the rest as one frame when it ends.
    assert [len(frame) for frame in frames] == [502, 502, 98 * 502]


async def test_keys_and_a_redraw_after_a_quiet_spell_go_out_at_once() -> None:
    session = bare_session()
    viewer, _ = session.attach(read_only=False)
    for key in "abc":  # typed back to back: each echo at once, within one window
        session._on_data(key.encode())
        assert await frames_of(viewer) == [key]
    session._on_data(b"x" * PROMPT_BYTES)  # past the window's budget: gathered
    assert viewer.queued_bytes == 0
    await asyncio.sleep(COALESCE_S * 3)
    assert await frames_of(viewer) == ["x" * PROMPT_BYTES]
    await asyncio.sleep(COALESCE_S * 2)
    redraw = "\x1b[H\x1b[2J" + "é" * 2000  # a screenful after a key, with a character split below
    data = redraw.encode()
    session._on_data(data[:2001])
    assert await frames_of(viewer) == [redraw[: (2001 - 7) // 2 + 7]]
    session._on_data(data[2001:])
    await asyncio.sleep(COALESCE_S * 3)
    assert await frames_of(viewer) == [redraw[(2001 - 7) // 2 + 7 :]]


# --- a reconnect shows the screen; several viewers, one size ------------------------------------------

# A full-screen program: on the alternate screen it draws a box once, then redraws only a
# counter inside it and a status line, far more than the 256 KiB scrollback holds, so the box
# itself is long gone from the ring when a viewer reconnects.
FULL_SCREEN = r"""read go
printf '\033[?1049h\033[2J\033[3;10H\033[1;34m+------------------------------+'
r=4; while [ $r -le 6 ]; do printf '\033[%d;10H|\033[%d;41H|' $r $r; r=$((r+1)); done
printf '\033[7;10H+------------------------------+\033[0m\033[5;12H\033[33mTITLE\033[0m'
i=0; while [ $i -lt 4000 ]; do i=$((i+1))
printf '\033[5;20H\033[32mcount %06d\033[0m\033[10;1Hstatus %06d: a partial redraw of this line ...\033[K' $i $i
done
printf '\033[12;1HDONE\033[5;25H'
read end"""


def screen_of(text: str, cols: int = 80, rows: int = 24) -> pyte.Screen:
    """What a terminal shows after ``text`` (pyte; enough for these checks)."""
    screen = pyte.Screen(cols, rows)
    pyte.Stream(screen).feed(text)
    return screen


async def test_a_reconnect_shows_the_screen_a_full_screen_program_drew(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh", "-c", FULL_SCREEN])
    async with server.connect(session["id"]) as first:
        await first.recv()
        await first.type("go\n")
        await first.until_output("DONE", timeout=60)
        live = screen_of(first.output)
    async with server.connect(session["id"]) as later:
        assert (await later.recv())["type"] == "status"
        replay = await later.recv()
        assert replay["type"] == "output"
        assert len(replay["data"]) < 64 * 1024  # the screen, not the 256 KiB of redraws
        shown = screen_of(replay["data"])
    for screen in (live, shown):
        assert screen.display[2][9:41] == "+------------------------------+"
        assert screen.display[4][9:41] == "| TITLE   count 004000         |"
        assert screen.display[9].startswith("status 004000: a partial redraw")
        assert screen.display[11].startswith("DONE")
        assert (screen.cursor.y, screen.cursor.x) == (4, 24)
        assert screen.buffer[2][9].fg == "blue" and screen.buffer[2][9].bold
        assert screen.buffer[4][19].fg == "green" and screen.buffer[4][11].fg == "brown"
    assert shown.display[2:12] == live.display[2:12]


async def test_the_size_is_the_smallest_of_the_writable_viewers(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, name())
        session = await server.session(client, project, command=["sh"], cols=120, rows=50)

        async def size() -> tuple[int, int]:
            body = (await client.get(f"/api/sessions/{session['id']}")).json()
            return body["cols"], body["rows"]

        async with server.connect(session["id"]) as a, server.connect(session["id"], mode="view") as watcher:
            await a.recv()
            await watcher.recv()
            await a.send({"type": "resize", "cols": 100, "rows": 40})
            async with server.connect(session["id"]) as b:
                await b.recv()
                await b.send({"type": "resize", "cols": 90, "rows": 45})
                await watcher.send({"type": "resize", "cols": 20, "rows": 10})  # read-only: refused
                assert "read-only" in (await watcher.until(lambda m, _t: m["type"] == "error"))["message"]
                await asyncio.sleep(0.3)
                await a.type("stty size\n")
                await a.until_output("40 90")  # the smallest columns and the smallest rows
                assert await size() == (90, 40)
            # b, the narrower, has gone: the size is recomputed from the writable viewers left
            await asyncio.sleep(0.3)
            await a.type("stty size\n")
            await a.until_output("40 100")
            assert await size() == (100, 40)
            await a.send({"type": "resize", "cols": 110, "rows": 48})
            await asyncio.sleep(0.3)
            await a.type("stty size\n")
            await a.until_output("48 110")
        # no writable viewer left: the size stays what it was
        await asyncio.sleep(0.3)
        assert await size() == (110, 48)


class PausingProtocol:
    """aiohttp's protocol under an exec stream, as far as the reader uses it: it records pauses."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


class ScriptedStream:
    """aiodocker's exec stream as the reader sees it: these chunks, then the end."""

    def __init__(self, chunks: list[bytes], protocol: PausingProtocol) -> None:
        self.chunks = chunks
        self._resp = SimpleNamespace(connection=SimpleNamespace(protocol=protocol))

    async def read_out(self) -> SimpleNamespace | None:
        await asyncio.sleep(0)
        return SimpleNamespace(stream=1, data=self.chunks.pop(0)) if self.chunks else None

    async def close(self) -> None:
        pass


async def test_a_bulk_read_lets_the_next_one_gather_and_a_key_never_waits() -> None:
    protocol = PausingProtocol()
    bulk = b"x" * BULK_READ_BYTES
    stream = ScriptedStream([b"k", b"e", bulk, b"y"], protocol)
    pty = DockerExecPty(
        None,  # type: ignore[arg-type]  # the reader needs no runtime
        container_id="c" * 64,
        exec_=SimpleNamespace(id="e" * 64),
        stream=stream,
        pidfile="/tmp/.agentdock-session-test.pid",  # never used
        user="agent",
    )
    seen: list[tuple[bytes, list[str]]] = []
    ended = asyncio.Event()
    pty.start_reading(lambda data: seen.append((data, list(protocol.calls))), ended.set)
    await asyncio.wait_for(ended.wait(), 5)
    # Keys go on as they come; after the bulk read the socket rested once before the next read.
    assert seen == [(b"k", []), (b"e", []), (bulk, []), (b"y", ["pause", "resume"])]
    await pty.close()
