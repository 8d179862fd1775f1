"""The terminal in a real browser: xterm.js in headless Debian chromium (driven by
playwright-core, tests/browser/drive.mjs) on a real server's terminal WebSocket, in both
runtimes. Keys are typed into xterm, so its onData sends the input; the output is read back
from xterm's own buffer; a smaller window must reach the shell's ``stty size``. And a new
xterm that reconnects to a full-screen program shows what the program last drew, as the xterm
that watched it live showed it.

Needs node, /usr/bin/chromium and tests/browser/node_modules (``scripts/setup-browser.sh``).
Where one is missing the test skips, except with AGENTDOCK_REQUIRE_BROWSER=1 or CI=true,
where that is a failure."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX_IMAGE
from tests.live import TOKEN, LiveServer, serve_per_runtime
from tests.test_terminal import FULL_SCREEN

BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
DRIVER_TIMEOUT_S = 60
DEFAULT_COLS, DEFAULT_ROWS = 80, 24  # the default shell's size (messages.DefaultSession)


def browser_required() -> bool:
    return os.environ.get("AGENTDOCK_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, once chromium and the pinned node packages are there too."""
    node = shutil.which("node")
    missing = [
        what
        for what, present in (
            ("node", node is not None),
            (str(CHROMIUM), CHROMIUM.exists()),
            ("tests/browser/node_modules", (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()),
        )
        if not present
    ]
    if missing:
        reason = f"missing for the browser test: {', '.join(missing)}"
        if browser_required():
            pytest.fail(f"{reason} (AGENTDOCK_REQUIRE_BROWSER/CI is set: the browser test must run)")
        pytest.skip(f"{reason}; run scripts/setup-browser.sh")
    assert node is not None
    return node


@pytest.fixture(scope="module", params=["local", "docker"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_per_runtime(request, tmp_path_factory, "browser", BUSYBOX_IMAGE)


def drive(node: str, server: LiveServer, target: str, screenshot: Path, scenario: str = "shell") -> dict[str, Any]:
    command = [node, "drive.mjs", "--server", server.base, "--target", target, "--token", TOKEN]
    command += ["--scenario", scenario]
    command += ["--screenshot", str(screenshot), "--timeout-ms", str((DRIVER_TIMEOUT_S - 10) * 1000)]
    done = subprocess.run(
        command, check=False, cwd=BROWSER_DIR, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"drive.mjs printed nothing (exit {done.returncode}); stderr: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0 and result["ok"], (
        f"drive.mjs failed (exit {done.returncode}): {result.get('error')}\n"
        f"steps: {json.dumps(result.get('steps'))}\nstderr: {done.stderr[-2000:]}"
    )
    return result


async def test_xterm_in_chromium_types_echo_hello_and_follows_a_resize(
    node: str, server: LiveServer, tmp_path: Path
) -> None:
    async with server.client() as client:
        project = await server.project(client, f"b-{uuid.uuid4().hex[:10]}")
    screenshot = tmp_path / f"terminal-{server.runtime}.png"
    # The project id, as the front end uses it: the socket attaches to the default shell.
    result = await asyncio.to_thread(drive, node, server, project["id"], screenshot)
    steps = result["steps"]

    assert steps["attach"]["first"] == {"type": "status", "state": "running"}
    echo = steps["echo"]
    assert echo["echoed"]  # the typed command came back through the PTY ...
    assert echo["output"] == "hello"  # ... and its output is a line of its own
    assert steps["sent"]["input"] >= len("stty size\recho hello\rstty size\r")  # typed through onData
    assert steps["sent"]["resize"] >= 2  # the fitted size on open, then the smaller window

    initial, resized = steps["initial_size"], steps["resized_size"]
    # The size the page sent as the socket opened, in both runtimes (in docker, the service
    # re-applies it once the session's wrapper has run its own stty).
    assert initial["output"] == f"{initial['rows']} {initial['cols']}"
    assert resized["output"] == f"{resized['rows']} {resized['cols']}"
    assert (resized["cols"], resized["rows"]) != (initial["cols"], initial["rows"])
    assert resized["cols"] < initial["cols"] and resized["rows"] < initial["rows"]
    assert screenshot.stat().st_size > 0

    async with server.client() as client:
        sessions = (await client.get(f"/api/projects/{project['id']}/sessions")).json()["items"]
    (default,) = [s for s in sessions if s["state"] == "running"]
    assert (default["cols"], default["rows"]) == (resized["cols"], resized["rows"])


async def test_a_new_xterm_shows_what_a_full_screen_program_last_drew(
    node: str, server: LiveServer, tmp_path: Path
) -> None:
    """The program draws a box once on the alternate screen, then redraws a counter and a status
    line in place, more than the scrollback holds: a replay of the raw bytes after a cut would
    begin in the middle of a redraw and lack the box."""
    async with server.client() as client:
        project = await server.project(client, f"b-{uuid.uuid4().hex[:10]}")
        session = await server.session(client, project, command=["sh", "-c", FULL_SCREEN])
    screenshot = tmp_path / f"reconnected-{server.runtime}.png"
    result = await asyncio.to_thread(drive, node, server, session["id"], screenshot, "fullscreen")
    live, again = result["steps"]["live"], result["steps"]["reconnected"]

    assert live["type"] == "alternate"
    assert live["lines"][2][9:41] == "+------------------------------+"
    assert live["lines"][4][9:41] == "| TITLE   count 004000         |"
    assert live["lines"][11] == "DONE"
    assert live["cursor"] == {"x": 24, "y": 4}
    # The new xterm shows the same: buffer, every character and its colours and weight, the
    # cursor, the shell's screen underneath, and the modes.
    assert again["type"] == live["type"]
    assert again["lines"] == live["lines"]
    assert again["cells"] == live["cells"]
    assert again["cursor"] == live["cursor"]
    assert [line for line in again["normal"] if line] == [line for line in live["normal"] if line]
    assert again["modes"] == live["modes"]
    assert result["steps"]["reconnected_frames"] >= 1
    assert not result["steps"]["reconnected_errors"] and not result["steps"]["live_errors"]
    assert result["steps"]["reconnected_input"] == 0  # it answered no replayed query
    assert screenshot.stat().st_size > 0
