"""Container management through the API, against the real Docker engine."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.metrics import instruments
from service.settings import Settings
from tests.conftest import (
    BUSYBOX_IMAGE,
    TOKEN,
    CapturedLogs,
    counted,
    create_project,
    remove_project_containers,
    wait_until,
)

Client = AsyncTestClient[Litestar]
pytestmark = pytest.mark.usefixtures("docker_available")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def inspect(container_id: str, template: str) -> str:
    return docker("inspect", "--format", template, container_id)


async def container(client: Client, project: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/api/projects/{project['id']}/container")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_lifecycle_through_the_api(docker_client: Client, docker_settings: Settings, logs: CapturedLogs) -> None:
    project = await create_project(docker_client, docker_settings, name="life")
    pid = project["id"]
    missing = await docker_client.get(f"/api/projects/{pid}/container")
    assert missing.status_code == 404
    assert "start it" in missing.json()["detail"]

    started = await docker_client.post(f"/api/projects/{pid}/container/start")
    assert started.status_code == 200, started.text
    body = started.json()
    assert re.fullmatch(r"[0-9a-f]{64}", body["id"])
    assert body["status"] == "running"
    assert body["project_id"] == pid
    assert body["image"] == BUSYBOX_IMAGE
    assert body["name"] == f"agentdock-life-{pid.replace('-', '')[:8]}"
    assert body["started_at"]
    assert body["restart_count"] == 0
    cid = body["id"]
    assert (await docker_client.get(f"/api/projects/{pid}")).json()["container_id"] == cid
    assert inspect(cid, "{{.State.Running}}") == "true"

    # Starting again is idempotent: same container.
    again = await docker_client.post(f"/api/projects/{pid}/container/start")
    assert again.json()["id"] == cid

    stopped = await docker_client.post(f"/api/projects/{pid}/container/stop")
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "exited"
    await asyncio.sleep(1.5)  # a stop through the API is not a failure: nothing restarts it
    assert (await container(docker_client, project))["status"] == "exited"
    assert inspect(cid, "{{.State.Running}}") == "false"

    restarted = await docker_client.post(f"/api/projects/{pid}/container/restart")
    assert restarted.status_code == 200
    assert restarted.json()["status"] == "running"
    assert restarted.json()["id"] == cid

    listed = (await docker_client.get("/api/containers", params={"limit": 500})).json()["items"]
    assert [c["id"] for c in listed if c["project_id"] == pid] == [cid]

    removed = await docker_client.delete(f"/api/projects/{pid}/container")
    assert removed.status_code == 204
    assert (await docker_client.get(f"/api/projects/{pid}/container")).status_code == 404
    assert subprocess.run(["docker", "inspect", cid], capture_output=True, check=False).returncode != 0
    assert (await docker_client.get(f"/api/projects/{pid}")).json()["container_id"] is None

    names = logs.names()
    for event in (
        "container.created",
        "container.started",
        "container.stopped",
        "container.restarted",
        "container.removed",
    ):
        assert event in names, event
    assert "container.died" not in names
    created = logs.events("container.created")[0]
    assert created["project_id"] == pid
    assert created["container_id"] == cid


async def test_container_is_hardened(docker_client: Client, docker_settings: Settings) -> None:
    project = await create_project(docker_client, docker_settings, name="hard")
    cid = (await docker_client.post(f"/api/projects/{project['id']}/container/start")).json()["id"]
    host = inspect(cid, "{{json .HostConfig}}")
    import json

    config = json.loads(host)
    assert config["Privileged"] is False
    assert config["CapDrop"] == ["ALL"]
    assert sorted(config["CapAdd"]) == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    assert config["SecurityOpt"] == ["no-new-privileges:true"]
    assert config["Init"] is True
    assert config["PidsLimit"] == docker_settings.container_pids
    assert config["Memory"] == docker_settings.container_memory
    assert config["NanoCpus"] == int(docker_settings.container_cpus * 1e9)
    assert config["NetworkMode"] == "none"
    home = f"agentdock-home-{project['id'].replace('-', '')}"
    assert config["Binds"] == [f"{project['path']}:/workspace", f"{home}:/home/agent"]
    assert "docker.sock" not in host
    labels = json.loads(inspect(cid, "{{json .Config.Labels}}"))
    image_labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", BUSYBOX_IMAGE)) or {}
    # Ours, besides what the image itself carries (its revision).
    assert {k: v for k, v in labels.items() if k not in image_labels} == {
        "agentdock.managed": "true",
        "agentdock.project": project["id"],
    }
    assert inspect(cid, "{{.Config.WorkingDir}}") == "/workspace"
    # The workspace is writable by the container's `agent` user (uid 1000).
    docker("exec", "-u", "1000:1000", cid, "sh", "-c", "echo hi > /workspace/probe")
    assert (docker_settings.workspaces_dir / "hard" / "probe").read_text() == "hi\n"


async def test_killed_from_outside_comes_back(
    docker_client: Client, docker_settings: Settings, logs: CapturedLogs
) -> None:
    project = await create_project(docker_client, docker_settings, name="phoenix")
    cid = (await docker_client.post(f"/api/projects/{project['id']}/container/start")).json()["id"]
    await wait_until(lambda: logs.events("docker.events.subscribed"), timeout=10)
    docker("kill", cid)
    back = await wait_until(lambda: _running_again(docker_client, project), timeout=5, interval=0.1)
    assert back["id"] == cid
    assert back["restart_count"] == 1
    died = logs.events("container.died")
    assert died and died[0]["container_id"] == cid and died[0]["exit_code"] == 137
    assert logs.events("container.restarted")[0]["reason"] == "failure"


async def _running_again(client: Client, project: dict[str, Any]) -> dict[str, Any] | None:
    state = await container(client, project)
    return state if state["status"] == "running" and state["restart_count"] >= 1 else None


async def test_killed_over_and_over_gives_up(
    docker_client: Client, docker_settings: Settings, logs: CapturedLogs
) -> None:
    project = await create_project(docker_client, docker_settings, name="storm")
    gave_up_before = counted(instruments.CONTAINER_GAVE_UP)
    restarts_before = counted(instruments.CONTAINER_RESTARTS.labels(reason="failure"))
    cid = (await docker_client.post(f"/api/projects/{project['id']}/container/start")).json()["id"]
    await wait_until(lambda: logs.events("docker.events.subscribed"), timeout=10)
    limit = docker_settings.restart_max
    for attempt in range(1, limit + 1):
        docker("kill", cid)
        await wait_until(lambda n=attempt: len(logs.events("container.restarted")) >= n, timeout=10)
        await wait_until(lambda: inspect(cid, "{{.State.Running}}") == "true", timeout=5)
    docker("kill", cid)  # one more within the window: past the limit
    await wait_until(lambda: logs.events("container.gave_up"), timeout=10)
    await asyncio.sleep(1.5)  # no restart storm: it stays down
    state = await container(docker_client, project)
    assert state["status"] == "error"
    assert state["restart_count"] == limit
    assert "137" in state["last_failure"]
    assert len(logs.events("container.restarted")) == limit
    assert counted(instruments.CONTAINER_GAVE_UP) - gave_up_before == 1
    assert counted(instruments.CONTAINER_RESTARTS.labels(reason="failure")) - restarts_before == limit
    assert inspect(cid, "{{.State.Running}}") == "false"
    # A person may start it again: that clears the error.
    again = await docker_client.post(f"/api/projects/{project['id']}/container/start")
    assert again.json()["status"] == "running"


async def test_new_instance_adopts_the_running_container(docker_settings: Settings, logs: CapturedLogs) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with AsyncTestClient(app=create_app(docker_settings)) as first:
        first.headers.update(headers)
        project = await create_project(first, docker_settings, name="adopt")
        cid = (await first.post(f"/api/projects/{project['id']}/container/start")).json()["id"]
    try:
        assert inspect(cid, "{{.State.Running}}") == "true"  # shutdown stops no container
        async with AsyncTestClient(app=create_app(docker_settings)) as second:
            second.headers.update(headers)
            state = await container(second, project)
            assert state["id"] == cid
            assert state["status"] == "running"
            started = await second.post(f"/api/projects/{project['id']}/container/start")
            assert started.json()["id"] == cid
            listed = [
                c
                for c in (await second.get("/api/containers", params={"limit": 500})).json()["items"]
                if c["project_id"] == project["id"]
            ]
            assert len(listed) == 1
        adopted = logs.events("container.adopted")
        assert any(e["container_id"] == cid and e["project_id"] == project["id"] for e in adopted)
    finally:
        await remove_project_containers({project["id"]})


async def test_missing_image_is_a_clear_409(docker_client: Client, docker_settings: Settings) -> None:
    project = await create_project(docker_client, docker_settings, name="noimage", image="agentdock-no-such-image:1")
    response = await docker_client.post(f"/api/projects/{project['id']}/container/start")
    assert response.status_code == 409
    assert "agentdock-no-such-image:1" in response.json()["detail"]
    assert "docker-up.sh" in response.json()["detail"]


async def test_local_runtime_project_has_no_container(docker_client: Client, docker_settings: Settings) -> None:
    project = await create_project(docker_client, docker_settings, name="loc", runtime="local")
    response = await docker_client.post(f"/api/projects/{project['id']}/container/start")
    assert response.status_code == 409
    assert "local runtime" in response.json()["detail"]


async def test_unknown_project_is_404(docker_client: Client) -> None:
    response = await docker_client.post("/api/projects/00000000-0000-0000-0000-000000000000/container/start")
    assert response.status_code == 404


async def test_delete_project_keeps_or_removes_the_container(docker_client: Client, docker_settings: Settings) -> None:
    kept = await create_project(docker_client, docker_settings, name="keepme")
    kept_cid = (await docker_client.post(f"/api/projects/{kept['id']}/container/start")).json()["id"]
    assert (await docker_client.delete(f"/api/projects/{kept['id']}")).status_code == 204
    assert inspect(kept_cid, "{{.State.Running}}") == "true"

    gone = await create_project(docker_client, docker_settings, name="removeme")
    gone_cid = (await docker_client.post(f"/api/projects/{gone['id']}/container/start")).json()["id"]
    response = await docker_client.delete(f"/api/projects/{gone['id']}", params={"remove_container": "true"})
    assert response.status_code == 204
    assert subprocess.run(["docker", "inspect", gone_cid], capture_output=True, check=False).returncode != 0


async def test_unreachable_engine_is_503(docker_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    async with AsyncTestClient(app=create_app(docker_settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        project = await create_project(client, docker_settings, name="offline")
        for method, path in [("POST", "/container/start"), ("GET", "/container"), ("POST", "/container/stop")]:
            response = await client.request(method, f"/api/projects/{project['id']}{path}")
            assert response.status_code == 503, response.text
            assert "Docker engine" in response.json()["detail"]
        listed = await client.get("/api/containers")
        assert listed.status_code == 503


async def test_the_agents_home_outlives_the_container_until_purged(
    docker_client: Client, docker_settings: Settings
) -> None:
    project = await create_project(docker_client, docker_settings, name="homely")
    base = f"/api/projects/{project['id']}"
    cid = (await docker_client.post(f"{base}/container/start")).json()["id"]
    docker("exec", "-u", "1000:1000", cid, "sh", "-c", "mkdir -p ~/.claude && echo remembered > ~/.claude/state")
    assert (await docker_client.delete(f"{base}/container")).status_code == 204
    again = (await docker_client.post(f"{base}/container/start")).json()["id"]
    assert again != cid
    assert docker("exec", "-u", "1000:1000", again, "cat", "/home/agent/.claude/state").strip() == "remembered"
    volume = f"agentdock-home-{project['id'].replace('-', '')}"
    labels = json.loads(docker("volume", "inspect", "--format", "{{json .Labels}}", volume))
    assert labels == {"agentdock.managed": "true", "agentdock.project": project["id"]}
    assert (await docker_client.delete(base, params={"purge": "true"})).status_code == 204
    assert subprocess.run(["docker", "inspect", again], capture_output=True, check=False).returncode != 0
    assert subprocess.run(["docker", "volume", "inspect", volume], capture_output=True, check=False).returncode != 0
    assert not Path(project["path"]).exists()
