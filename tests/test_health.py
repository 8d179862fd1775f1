from __future__ import annotations

import subprocess

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings


@pytest.mark.usefixtures("docker_available")
async def test_health_asks_the_real_engine(migrated: Settings) -> None:
    server_version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    async with AsyncTestClient(app=create_app(migrated)) as client:
        response = await client.get("/api/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["docker"] == {"ok": True, "version": server_version}
    assert body["database"] == {"ok": True}


async def test_unreachable_engine_is_503_degraded(migrated: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    async with AsyncTestClient(app=create_app(migrated)) as client:
        response = await client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["docker"]["ok"] is False
    assert "/nonexistent/docker.sock" in body["docker"]["detail"]
    assert body["reason"].startswith("docker:")
    assert body["database"] == {"ok": True}


async def test_local_runtime_is_ok_without_an_engine(
    tmp_path: object, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    local = Settings(**{**{f: getattr(migrated, f) for f in migrated.__dataclass_fields__}, "runtime": "local"})
    async with AsyncTestClient(app=create_app(local)) as client:
        response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["docker"]["ok"] is False


async def test_broken_database_is_503(tmp_path: object, migrated: Settings) -> None:
    broken = Settings(
        **{
            **{f: getattr(migrated, f) for f in migrated.__dataclass_fields__},
            "database_url": "sqlite+aiosqlite:////nonexistent/dir/x.db",
        }
    )
    async with AsyncTestClient(app=create_app(broken)) as client:
        response = await client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["database"]["ok"] is False
    assert "database:" in response.json()["reason"]
