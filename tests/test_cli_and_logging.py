from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets
from litestar import Litestar
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from tests.conftest import TOKEN, CapturedLogs
from tests.live import free_port

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_openapi_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    env = {"AGENTDOCK_DATA_DIR": str(tmp_path / "data")}
    out = run_cli("openapi", env=env)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert schema["openapi"].startswith("3.")
    assert "/api/projects" in schema["paths"]
    target = tmp_path / "nested" / "openapi.json"
    assert run_cli("openapi", str(target), env=env).returncode == 0
    assert json.loads(target.read_text()) == schema
    assert not (tmp_path / "data" / "api-token").exists()  # writing the schema makes no token


def test_bad_setting_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    out = run_cli("migrate", env={"AGENTDOCK_DATA_DIR": str(tmp_path), "AGENTDOCK_RUNTIME": "vm"})
    assert out.returncode == 2
    assert "AGENTDOCK_RUNTIME" in out.stderr
    assert "Traceback" not in out.stderr


async def test_every_request_logs_an_event_with_request_id(app: Litestar, logs: CapturedLogs) -> None:
    async with AsyncTestClient(app=app) as client:
        response = await client.get(
            "/api/projects?token=query-secret",
            headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "req-42"},
        )
        generated = await client.get("/api/health")
    assert response.headers["x-request-id"] == "req-42"
    requests = logs.events("http.request")
    assert {"method": "GET", "path": "/api/projects", "status": 200, "request_id": "req-42"}.items() <= requests[
        0
    ].items()
    assert requests[1]["request_id"] == generated.headers["x-request-id"]
    dumped = json.dumps(logs, default=str)
    assert TOKEN not in dumped
    assert "query-secret" not in dumped


async def test_unexpected_error_is_json_500_and_logged(app: Litestar) -> None:
    from litestar import get

    @get("/api/boom", sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError("kaboom")

    app.register(boom)
    with capture_logs() as logs:
        async with AsyncTestClient(app=app) as client:
            response = await client.get("/api/boom", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert response.json()["detail"] == "internal server error; see the service log"
    assert "kaboom" not in response.text
    assert any(e["event"] == "http.unhandled_error" for e in logs)


# -- every line is an event -----------------------------------------------------------------

LOG_TOKEN = "log-token-0123456789abcdef"  # a test value that must never be logged
WRONG_TOKEN = "wrong-token-fedcba9876543210"


def json_events(text: str, stream: str) -> list[dict[str, Any]]:
    """Every non-empty line of ``text`` as a JSON event; fails on the first line that is not one."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"a line on {stream} is not JSON: {line!r}") from None
        assert isinstance(event, dict), f"a line on {stream} is not a JSON object: {line!r}"
        missing = {"event", "level", "timestamp", "logger"} - event.keys()
        assert not missing, f"an event on {stream} lacks {missing}: {line!r}"
        events.append(event)
    return events


async def close_code(url: str) -> int | None:
    async with websockets.connect(url, open_timeout=10) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def test_every_line_the_server_writes_is_a_json_event(tmp_path: Path) -> None:
    """A real ``agentdock serve`` in JSON mode: uvicorn's own warnings and connection lines are
    JSON events on stdout like the service's, stderr stays empty, and no token is written."""
    port = free_port()
    env = {
        **os.environ,
        "AGENTDOCK_DATA_DIR": str(tmp_path / "data"),
        "AGENTDOCK_PORT": str(port),
        "AGENTDOCK_API_TOKEN": LOG_TOKEN,
        "AGENTDOCK_RUNTIME": "local",
        "AGENTDOCK_LOG_FORMAT": "json",
        "AGENTDOCK_LOG_LEVEL": "debug",  # uvicorn's connection lines too, which carry ?token=
    }
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        server = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=env, stdout=out, stderr=err)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, stderr_path.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/api/health")).status_code in (200, 503):
                        break
                assert time.monotonic() < deadline, "the server did not answer"
                await asyncio.sleep(0.1)
            # A request that is not HTTP: uvicorn answers 400 and warns "Invalid HTTP request received."
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GARBAGE\r\n\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
            writer.close()
            response = await client.get(
                f"/api/projects?token={LOG_TOKEN}", headers={"Authorization": f"Bearer {LOG_TOKEN}"}
            )
            assert response.status_code == 200
        ws_base = f"ws://127.0.0.1:{port}/api/terminal/{uuid.uuid4()}"
        assert await close_code(f"{ws_base}?token={LOG_TOKEN}") == 4404
        assert await close_code(f"{ws_base}?token={WRONG_TOKEN}") == 4401
    finally:
        server.terminate()
        server.wait(timeout=30)
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    events = json_events(stdout, "stdout") + json_events(stderr, "stderr")
    assert stderr == "", "every event goes to stdout"
    invalid = [e for e in events if e["logger"] == "uvicorn.error" and e["event"] == "Invalid HTTP request received."]
    assert [e["level"] for e in invalid] == ["warning"]
    names = [event["event"] for event in events]
    assert "database.migrated" in names
    assert "service.started" in names
    assert "service.stopped" in names
    assert any(e["logger"].startswith("alembic.") and e["event"].startswith("Running upgrade") for e in events)
    # uvicorn's lines for the WebSockets name the path with its query, the token scrubbed.
    accepted = [e for e in events if e["logger"] == "uvicorn.error" and "WebSocket /api/terminal/" in e["event"]]
    assert len(accepted) >= 2, names
    assert all("token=[redacted]" in e["event"] for e in accepted)
    assert LOG_TOKEN not in stdout + stderr
    assert WRONG_TOKEN not in stdout + stderr


def test_a_failed_migration_is_one_json_event_not_a_traceback(tmp_path: Path) -> None:
    out = run_cli(
        "migrate",
        env={
            "AGENTDOCK_DATA_DIR": str(tmp_path),
            "AGENTDOCK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/agentdock.db",
            "AGENTDOCK_LOG_FORMAT": "json",
        },
    )
    assert out.returncode == 1
    assert out.stderr == ""
    events = json_events(out.stdout, "stdout")
    crashed = [e for e in events if e["event"] == "service.crashed"]
    assert len(crashed) == 1, events
    assert crashed[0]["level"] == "critical"
    assert crashed[0]["error"].startswith("OperationalError: ")
    assert crashed[0]["exception"].startswith("Traceback (most recent call last):")


def test_stdlib_records_and_python_own_messages_are_json_events() -> None:
    """Exceptions logged through `logging`, warnings, and what Python itself would print to
    stderr (a thread's exception, an exception it ignores) are fields of one JSON event each."""
    script = f"""
import logging, threading, warnings
from service.logs import configure_logging

configure_logging("json", capture_uncaught=True)
try:
    raise ValueError("bad value, see /api/terminal/x?token={LOG_TOKEN}")
except ValueError:
    logging.getLogger("asyncio").exception("Task exception was never retrieved")
logging.getLogger("uvicorn.error").warning("Authorization: Bearer %s", "{LOG_TOKEN}")
warnings.warn("an old call", UserWarning, stacklevel=1)
thread = threading.Thread(target=lambda: 1 / 0, name="worker")
thread.start()
thread.join()

class Broken:
    def __del__(self) -> None:
        raise RuntimeError("in __del__")

Broken()
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    events = {e["event"]: e for e in json_events(out.stdout, "stdout")}
    task = events["Task exception was never retrieved"]
    assert (task["logger"], task["level"]) == ("asyncio", "error")
    assert "ValueError: bad value" in task["exception"]
    assert "token=[redacted]" in task["exception"]
    assert events["Authorization: Bearer [redacted]"]["logger"] == "uvicorn.error"
    warning = next(e for e in events.values() if e["logger"] == "py.warnings")
    assert "UserWarning: an old call" in warning["event"]
    thread_crash = events["service.thread_crashed"]
    assert (thread_crash["thread"], thread_crash["error"]) == ("worker", "ZeroDivisionError: division by zero")
    assert "ZeroDivisionError" in thread_crash["exception"]
    ignored = events["service.exception_ignored"]
    assert ignored["error"] == "RuntimeError: in __del__"
    assert "Broken" in ignored["object"]
    assert LOG_TOKEN not in out.stdout


def test_console_mode_stays_readable(tmp_path: Path) -> None:
    out = run_cli("migrate", env={"AGENTDOCK_DATA_DIR": str(tmp_path), "AGENTDOCK_LOG_FORMAT": "console"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("database.migrated" in line and "[service.cli]" in line for line in lines), lines
    assert not any(line.startswith("{") for line in lines)
