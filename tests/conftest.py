from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db.migrate import upgrade
from service.docker.engine import DockerEngine
from service.errors import Unavailable
from service.settings import Settings

TOKEN = "test-token-0123456789"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_token": TOKEN,
        "log_format": "json",
        "network": "none",
        "runtime": "docker",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """Settings whose database has every migration applied (sync: Alembic runs its own loop)."""
    upgrade(settings)
    return settings


@pytest.fixture
def app(migrated: Settings) -> Litestar:
    return create_app(migrated)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def docker_required() -> bool:
    return os.environ.get("AGENTDOCK_REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def docker_available() -> None:
    """Skips a test where no Docker engine answers, except in CI, where that is a failure."""

    async def probe() -> str | None:
        engine = DockerEngine()
        try:
            await engine.version(timeout=10)
        except Unavailable as exc:
            return exc.detail
        finally:
            await engine.close()
        return None

    problem = asyncio.run(probe())
    if problem is not None:
        reason = f"no Docker engine answers: {problem}"
        if docker_required():
            pytest.fail(f"{reason} (AGENTDOCK_REQUIRE_DOCKER/CI is set: Docker tests must run)")
        pytest.skip(f"{reason}; run scripts/docker-up.sh to start one")


class CapturedLogs(list[dict[str, Any]]):
    """Every structlog event, with context variables merged, as the production renderer sees it."""

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self if entry["event"] == name]

    def names(self) -> list[str]:
        return [str(entry["event"]) for entry in self]


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    import structlog

    captured = CapturedLogs()

    def capture(_: Any, method: str, event_dict: Any) -> Any:
        event_dict["log_level"] = method
        captured.append(dict(event_dict))
        raise structlog.DropEvent

    old = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture], cache_logger_on_first_use=False)
    try:
        yield captured
    finally:
        structlog.configure(**old)
