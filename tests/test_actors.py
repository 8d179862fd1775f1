"""The actor layer without HTTP: mailbox, restart policy, supervisor crashes, the events stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.actors import messages as m
from service.actors.mailbox import Mailbox
from service.actors.policy import RestartMode, RestartPolicy, RestartTracker
from service.actors.supervisor import ProjectSupervisor
from service.app import create_app
from service.db.config import database_config
from service.docker.engine import DockerEngine
from service.errors import Conflict, NotFound, Unavailable
from service.metrics import instruments
from service.projects.schemas import ProjectCreate
from service.projects.services import ProjectService
from service.settings import Settings
from service.state import AppState
from tests.conftest import (
    BUSYBOX_IMAGE,
    TOKEN,
    CapturedLogs,
    counted,
    create_project,
    remove_project_containers,
    wait_until,
)
from tests.socket_proxy import SocketProxy


def test_tracker_backoff_doubles_and_caps() -> None:
    now = [0.0]
    tracker = RestartTracker(
        RestartPolicy(max_restarts=10, window_s=60, backoff_initial_s=0.5, backoff_max_s=3), clock=lambda: now[0]
    )
    delays = [tracker.record_failure() for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_tracker_gives_up_on_the_sixth_failure_within_the_window() -> None:
    now = [0.0]
    tracker = RestartTracker(RestartPolicy(max_restarts=5, window_s=60), clock=lambda: now[0])
    for _ in range(5):
        assert tracker.record_failure() is not None
        now[0] += 10
    assert tracker.record_failure() is None  # six failures in 50 s


def test_tracker_window_slides() -> None:
    now = [0.0]
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window_s=60), clock=lambda: now[0])
    assert tracker.record_failure() is not None
    assert tracker.record_failure() is not None
    now[0] = 61.0
    assert tracker.record_failure() == 0.5  # the old failures left the window: backoff starts over


def test_restart_modes() -> None:
    assert RestartPolicy(mode=RestartMode.NEVER).should_restart(failed=True) is False
    assert RestartPolicy(mode=RestartMode.ON_FAILURE).should_restart(failed=True) is True
    assert RestartPolicy(mode=RestartMode.ON_FAILURE).should_restart(failed=False) is False
    assert RestartPolicy(mode=RestartMode.ALWAYS).should_restart(failed=False) is True


async def test_mailbox_ask_tell_and_timeout() -> None:
    mailbox = Mailbox("test actor", capacity=2)

    async def actor() -> None:
        while True:
            envelope = await mailbox.receive()
            if envelope.reply is not None:
                envelope.reply.set_result(("echo", envelope.message))

    task = asyncio.create_task(actor())
    try:
        assert await mailbox.ask("hi", timeout=1) == ("echo", "hi")
    finally:
        task.cancel()
    with pytest.raises(Unavailable, match=r"did not answer str within 0\.05 s"):
        await mailbox.ask("nobody listens", timeout=0.05)
    mailbox.tell("a")
    with pytest.raises(Unavailable, match="mailbox full"):
        mailbox.tell("b")  # capacity 2: the unanswered ask above still holds one slot


@contextlib.asynccontextmanager
async def running_state(settings: Settings) -> AsyncIterator[AppState]:
    """The app's actors, started in this test's event loop, without HTTP."""
    state = AppState(settings=settings, api_token=TOKEN, db=database_config(settings), docker=DockerEngine())
    await state.startup()
    try:
        yield state
    finally:
        await state.shutdown()


async def add_project(settings: Settings, name: str) -> uuid.UUID:
    async with ProjectService.new(config=database_config(settings)) as projects:
        project = await projects.create_project(ProjectCreate(name=name), settings)
    return project.id


def local(settings: Settings) -> Settings:
    return Settings(**{**{f: getattr(settings, f) for f in settings.__dataclass_fields__}, "runtime": "local"})


async def test_crashed_supervisor_is_restarted_and_others_keep_working(
    migrated: Settings, logs: CapturedLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local(migrated)
    a_id, b_id = await add_project(settings, "crashy"), await add_project(settings, "steady")
    original = ProjectSupervisor.handle
    crashes = {"left": 1}

    async def faulty(self: ProjectSupervisor, message: m.Message) -> Any:
        if self.project.id == a_id and crashes["left"] > 0:
            crashes["left"] -= 1
            raise RuntimeError("handler bug")
        return await original(self, message)

    monkeypatch.setattr(ProjectSupervisor, "handle", faulty)
    crashes_before = counted(instruments.SUPERVISOR_CRASHES)
    async with running_state(settings) as state:
        registry = state.registry
        first = registry.supervisor(a_id)
        assert first is not None
        with pytest.raises(RuntimeError, match="handler bug"):
            await registry.ask(a_id, m.GetContainer(), timeout=5)
        # the other project answers all along (Conflict: a local project has no container)
        with pytest.raises(Conflict):
            await registry.ask(b_id, m.GetContainer(), timeout=5)
        await wait_until(lambda: logs.events("supervisor.restarted"), timeout=5)
        assert registry.supervisor(a_id) is not first
        with pytest.raises(Conflict):
            await registry.ask(a_id, m.GetContainer(), timeout=5)
    crashed = logs.events("supervisor.crashed")
    assert counted(instruments.SUPERVISOR_CRASHES) - crashes_before == 1
    assert crashed[0]["project_id"] == str(a_id)
    assert "handler bug" in crashed[0]["error"]
    assert {e["project_id"] for e in logs.events("supervisor.stopped")} == {str(a_id), str(b_id)}


async def test_a_crash_is_a_json_500_through_http(migrated: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: ProjectSupervisor, message: m.Message) -> Any:
        raise RuntimeError("handler bug")

    monkeypatch.setattr(ProjectSupervisor, "handle", broken)
    async with AsyncTestClient(app=create_app(local(migrated))) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        project = await create_project(client, migrated, name="boom")
        response = await client.get(f"/api/projects/{project['id']}/container")
    assert response.status_code == 500
    assert "handler bug" not in response.text


async def test_supervisor_crashing_too_often_gives_up(
    migrated: Settings, logs: CapturedLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local(migrated)
    a_id = await add_project(settings, "doomed")

    original = ProjectSupervisor.handle

    async def always_fails(self: ProjectSupervisor, message: m.Message) -> Any:
        if isinstance(message, m.GetContainer):
            raise RuntimeError("always")
        return await original(self, message)

    monkeypatch.setattr(ProjectSupervisor, "handle", always_fails)
    crashes_before, gave_up_before = counted(instruments.SUPERVISOR_CRASHES), counted(instruments.SUPERVISOR_GAVE_UP)
    async with running_state(settings) as state:
        registry = state.registry
        limit = registry.supervisor_policy.max_restarts
        for attempt in range(limit + 1):
            await wait_until(lambda n=attempt: len(logs.events("supervisor.restarted")) >= n, timeout=10)
            with pytest.raises(RuntimeError, match="always"):
                await registry.ask(a_id, m.GetContainer(), timeout=5)
        await wait_until(lambda: logs.events("supervisor.gave_up"), timeout=10)
        with pytest.raises(Unavailable, match="crashed more than"):
            await registry.ask(a_id, m.GetContainer(), timeout=5)
    assert len(logs.events("supervisor.crashed")) == limit + 1
    assert counted(instruments.SUPERVISOR_CRASHES) - crashes_before == limit + 1
    assert counted(instruments.SUPERVISOR_GAVE_UP) - gave_up_before == 1


@pytest.mark.usefixtures("docker_available")
async def test_event_stream_lost_resubscribes_and_reconciles(
    docker_settings: Settings, logs: CapturedLogs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = SocketProxy(tmp_path / "docker.sock")
    proxy.start()
    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    project: dict[str, Any] = {}
    losses_before = counted(instruments.DOCKER_EVENT_STREAM_LOSSES)
    try:
        async with AsyncTestClient(app=create_app(docker_settings)) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            project = await create_project(client, docker_settings, name="resub")
            cid = (await client.post(f"/api/projects/{project['id']}/container/start")).json()["id"]
            await wait_until(lambda: logs.events("docker.events.subscribed"), timeout=10)
            # The engine "goes away": the stream is cut and no new connection is taken ...
            proxy.accepting = False
            proxy.cut()
            await wait_until(lambda: logs.events("docker.events.lost"), timeout=10)
            assert counted(instruments.DOCKER_EVENT_STREAM_LOSSES) > losses_before
            # ... and meanwhile the container dies, an event nobody receives.
            real_engine = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
            subprocess.run(["docker", "kill", cid], check=True, capture_output=True, timeout=30, env=real_engine)
            await asyncio.sleep(0.3)
            assert not logs.events("container.died")
            proxy.accepting = True  # the engine is back: resubscribe, reconcile, restart
            await wait_until(lambda: len(logs.events("docker.events.subscribed")) >= 2, timeout=15)
            await wait_until(lambda: logs.events("container.restarted"), timeout=10)
            state = (await client.get(f"/api/projects/{project['id']}/container")).json()
            assert state["status"] == "running"
            assert state["restart_count"] == 1
            assert "reconciliation" in logs.events("container.died")[0]["reason"]
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        if project:
            await remove_project_containers({project["id"]})
        proxy.close()


@pytest.mark.usefixtures("docker_available")
async def test_orphaned_container_is_logged_and_left_alone(docker_settings: Settings, logs: CapturedLogs) -> None:
    from testcontainers.core.container import DockerContainer

    stranger = str(uuid.uuid4())
    outsider = (
        DockerContainer(BUSYBOX_IMAGE)
        .with_command("sleep 300")
        .with_kwargs(labels={"agentdock.managed": "true", "agentdock.project": stranger}, network_mode="none")
    )
    outsider.start()
    try:
        cid = outsider.get_wrapped_container().id
        async with AsyncTestClient(app=create_app(docker_settings)) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            listed = (await client.get("/api/containers", params={"limit": 500})).json()["items"]
            assert any(c["id"] == cid and c["project_id"] == stranger for c in listed)
        orphaned = [e for e in logs.events("container.orphaned") if e["container_id"] == cid]
        assert orphaned and orphaned[0]["project_id"] == stranger
        running = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Running}}", cid], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert running == "true"
    finally:
        outsider.stop()


async def test_a_full_mailbox_makes_a_timer_wait_not_lose_its_message(logs: CapturedLogs) -> None:
    mailbox = Mailbox("test actor", capacity=1)
    mailbox.tell("first")
    with pytest.raises(Unavailable, match="mailbox full"):
        mailbox.tell("lost")  # a request is refused at once ...
    waiting = asyncio.create_task(mailbox.put(m.RestartDue(generation=1)))  # ... a timer waits
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert logs.events("supervisor.mailbox_full")[0]["message"] == "RestartDue"
    assert (await mailbox.receive()).message == "first"
    await asyncio.wait_for(waiting, 1)
    assert (await mailbox.receive()).message == m.RestartDue(generation=1)


async def test_a_message_whose_asker_gave_up_is_not_acted_on(
    migrated: Settings, logs: CapturedLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local(migrated)
    project_id = await add_project(settings, "patient")
    original = ProjectSupervisor.handle
    handled: list[str] = []

    async def slow(self: ProjectSupervisor, message: m.Message) -> Any:
        handled.append(type(message).__name__)
        if isinstance(message, m.ListSessions):
            await asyncio.sleep(0.5)  # the loop is busy with this one
        return await original(self, message)

    monkeypatch.setattr(ProjectSupervisor, "handle", slow)
    async with running_state(settings) as state:
        busy = asyncio.create_task(state.registry.ask(project_id, m.ListSessions(), timeout=5))
        await asyncio.sleep(0.05)
        with pytest.raises(Unavailable, match="did not answer"):
            await state.registry.ask(project_id, m.CloseSession(session_id=uuid.uuid4()), timeout=0.1)
        assert await busy == []
        await wait_until(lambda: logs.events("supervisor.message_dropped"), timeout=5)
    assert "CloseSession" not in handled
    assert logs.events("supervisor.message_dropped")[0]["message"] == "CloseSession"


@pytest.mark.usefixtures("docker_available")
async def test_a_slow_container_start_does_not_block_the_mailbox(
    docker_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.runtimes.docker import DockerRuntime

    original = DockerRuntime.start

    async def slow_start(self: DockerRuntime, container_id: str) -> None:
        await asyncio.sleep(1.5)
        await original(self, container_id)

    monkeypatch.setattr(DockerRuntime, "start", slow_start)
    project_id = await add_project(docker_settings, "slowstart")
    try:
        async with running_state(docker_settings) as state:
            start = asyncio.create_task(state.registry.ask(project_id, m.StartContainer(), timeout=30))
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert await state.registry.ask(project_id, m.ListSessions(), timeout=1) == []
            with pytest.raises(NotFound):
                await state.registry.ask(project_id, m.CloseSession(session_id=uuid.uuid4()), timeout=1)
            assert loop.time() - began < 1.0  # answered while the start is still going
            assert not start.done()
            assert (await start).status == "running"
    finally:
        await remove_project_containers({str(project_id)})


async def test_a_deleted_project_gets_no_supervisor_back(migrated: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that read the project just before its row was deleted must not leave a
    supervisor running for it: the delete's stop waits for that request's start."""
    from service.actors.store import ProjectStore

    settings = local(migrated)
    project_id = await add_project(settings, "racy")
    original = ProjectStore.load
    loaded = asyncio.Event()

    async def slow_load(self: ProjectStore, pid: uuid.UUID) -> Any:
        project = await original(self, pid)
        loaded.set()
        await asyncio.sleep(0.3)  # the row is deleted while this request holds what it read
        return project

    async with running_state(settings) as state:
        registry = state.registry
        await registry.stop(project_id)  # started at start-up: begin from none
        monkeypatch.setattr(ProjectStore, "load", slow_load)
        racing = asyncio.create_task(registry.ensure(project_id))
        await loaded.wait()
        async with ProjectService.new(config=database_config(settings)) as projects:
            await projects.delete_project(project_id)
        await registry.stop(project_id)  # what DELETE does once the row is gone
        await racing
        assert registry.supervisor(project_id) is None
        monkeypatch.setattr(ProjectStore, "load", original)
        with pytest.raises(NotFound):
            await registry.ensure(project_id)
