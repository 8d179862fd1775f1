from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

# advanced-alchemy's mixins still use a decorator SQLAlchemy 2.1 deprecates (harmless).
warnings.filterwarnings("ignore", message="The declarative_mixin decorator")
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db.migrate import upgrade
from service.docker.engine import DockerEngine
from service.errors import Unavailable
from service.settings import Settings

TOKEN = "test-token-0123456789"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings as an operator of the tests sets them: the docker runtime by default, and
    cloning host paths allowed (the tests clone repositories they make in ``tmp_path``).
    The local runtime stays an operator's power here: pass ``allow_local_runtime=True``."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_token": TOKEN,
        "log_format": "json",
        "network": "none",
        "runtime": "docker",
        "allow_local_clone": True,
    }
    values.update(overrides)
    return Settings(**values)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "settings(**overrides): overrides of make_settings for the test's `settings` (and `client`)"
    )


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The test's settings; ``@pytest.mark.settings(max_projects=2)`` overrides some."""
    marker = request.node.get_closest_marker("settings")
    return make_settings(tmp_path / "data", **(marker.kwargs if marker is not None else {}))


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

    from service.logs import configure_logging

    configure_logging()  # first: a later create_app() must not undo the capture set up below
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


BUSYBOX_IMAGE = "agentdock-busybox:latest"


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async or sync predicate until it returns something truthy; fail after ``timeout``."""
    import inspect
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


async def remove_project_containers(project_ids: set[str]) -> None:
    """Remove only the containers of this test's projects: other labelled containers (from
    other runs or sessions) are not ours to touch."""
    import json

    engine = DockerEngine()
    try:
        containers = await engine.client.containers.list(
            all="1", filters=json.dumps({"label": ["agentdock.managed=true"]})
        )
        for container in containers:
            labels = container._container.get("Labels") or {}
            if labels.get("agentdock.project") in project_ids:
                await container.delete(force=True)
        volumes = await engine.client.volumes.list(filters={"label": ["agentdock.managed=true"]})
        for volume in volumes.get("Volumes") or []:
            if (volume.get("Labels") or {}).get("agentdock.project") in project_ids:
                await (await engine.client.volumes.get(volume["Name"])).delete()
    finally:
        await engine.close()


@pytest.fixture
def docker_settings(tmp_path: Path, docker_available: None) -> Settings:
    """Settings for tests against the real engine: the small busybox image, no network, a
    fast restart backoff so that the intensity limit is reached in seconds, and the local
    runtime allowed (a test checks that a local project beside docker ones has no container)."""
    settings = make_settings(
        tmp_path / "data",
        image=BUSYBOX_IMAGE,
        restart_backoff_s=0.1,
        restart_backoff_max_s=1.0,
        allow_local_runtime=True,
    )
    upgrade(settings)
    return settings


@pytest.fixture
async def docker_client(docker_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client of an app on the real engine; removes its projects' containers afterwards."""
    async with AsyncTestClient(app=create_app(docker_settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client
    await remove_project_containers(project_ids_in(docker_settings))


def project_ids_in(settings: Settings) -> set[str]:
    """Every project id this test's database has held (rows deleted later included: the
    ids are kept in a side table that the ``created_projects`` helper fills)."""
    import sqlite3
    import uuid

    with sqlite3.connect(settings.data_dir / "agentdock.db") as conn:
        ids = {str(uuid.UUID(bytes=row[0])) for row in conn.execute("SELECT id FROM project")}
    marker = settings.data_dir / "created-projects"
    if marker.exists():
        ids |= set(marker.read_text().split())
    return ids


async def create_project(client: AsyncTestClient[Litestar], settings: Settings, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    with (settings.data_dir / "created-projects").open("a") as marker:
        marker.write(project["id"] + "\n")
    return project


def counted(counter: Any) -> float:
    """A counter's value (or a labelled child's), read through prometheus_client's public API."""
    return sum(
        sample.value for metric in counter.collect() for sample in metric.samples if sample.name.endswith("_total")
    )
