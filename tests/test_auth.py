from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from service.app import create_app
from service.db.migrate import upgrade
from service.settings import Settings, ensure_api_token
from tests.conftest import TOKEN, make_settings


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
async def test_missing_or_wrong_token_is_401(app: Litestar, headers: dict[str, str]) -> None:
    async with AsyncTestClient(app=app) as client:
        for method, path in [("GET", "/api/projects"), ("POST", "/api/projects"), ("GET", "/schema/openapi.json")]:
            response = await client.request(method, path, headers=headers, json={"name": "x"})
            assert response.status_code == 401, (method, path, response.text)
            assert "token" in response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/api/projects", headers={"Authorization": f"Bearer {TOKEN}"})).json()["items"] == []


async def test_health_needs_no_token(app: Litestar) -> None:
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/api/health")
        assert response.status_code in (200, 503)
        assert response.json()["database"]["ok"] is True


async def test_bearer_scheme_is_case_insensitive(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/projects", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


def test_generated_token_is_kept_with_mode_0600(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_token=None)
    token, from_file = ensure_api_token(settings)
    assert from_file
    assert len(token) >= 32
    mode = stat.S_IMODE(settings.token_file.stat().st_mode)
    assert mode == 0o600
    again, _ = ensure_api_token(settings)
    assert again == token


def test_explicit_token_writes_no_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_token="given")
    assert ensure_api_token(settings) == ("given", False)
    assert not settings.token_file.exists()


async def test_generated_token_works_and_is_never_logged(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", api_token=None)
    upgrade(settings)
    with capture_logs() as logs:
        app = create_app(settings)
        token = settings.token_file.read_text().strip()
        async with AsyncTestClient(app=app) as client:
            ok = await client.get("/api/projects", headers={"Authorization": f"Bearer {token}"})
            bad = await client.get("/api/projects", headers={"Authorization": "Bearer nope"})
            assert ok.status_code == 200
            assert bad.status_code == 401
            assert token not in bad.text
    dumped = json.dumps(logs, default=str)
    assert token not in dumped
    assert any(e["event"] == "auth.token_file" and e["token_path"] == str(settings.token_file) for e in logs)


def test_default_bind_is_loopback(tmp_path: Path) -> None:
    assert Settings.from_env({"AGENTDOCK_DATA_DIR": str(tmp_path)}).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("http://localhost:5173", True), ("http://127.0.0.1:3000", True), ("https://evil.example", False)],
)
async def test_cors_allows_localhost_by_default(app: Litestar, origin: str, allowed: bool) -> None:
    async with AsyncTestClient(app=app) as client:
        response = await client.options(
            "/api/projects", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
    assert (response.headers.get("access-control-allow-origin") == origin) is allowed
