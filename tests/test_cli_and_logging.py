from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from tests.conftest import TOKEN, CapturedLogs


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
