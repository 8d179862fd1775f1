"""Test-gated TDD runs with a scripted fake agent, against a real server, in both runtimes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import remove_project_containers
from tests.live import TOKEN, LiveServer

FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
BASE_IMAGE = "agentdock-base:latest"
FINISHED = {"succeeded", "failed", "blocked", "cancelled"}


def start_server(data_dir: Path, runtime: str) -> LiveServer:
    live = LiveServer(data_dir, runtime=runtime, image=BASE_IMAGE, extra_env={"AGENTDOCK_WORKFLOW_MIN_IDLE_S": "1"})
    live.start()
    return live


@pytest.fixture(scope="module", params=["local", "docker"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if request.param == "docker":
        request.getfixturevalue("docker_available")
    live = start_server(tmp_path_factory.mktemp(f"wf-{request.param}"), request.param)
    try:
        yield live
    finally:
        live.stop()
        if request.param == "docker":
            asyncio.run(remove_project_containers(live.project_ids))


def git(path: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", f"safe.directory={path}", "-C", path, *args], capture_output=True, text=True, check=True
    ).stdout


async def agent_project(server: LiveServer, client: httpx.AsyncClient, mode: str, delay: float = 0) -> dict[str, Any]:
    """A python-template project whose agent is the fake agent in ``mode``."""
    agent = ["python3", "/workspace/.fake_agent.py" if server.runtime == "docker" else str(FAKE_AGENT)]
    command = [*agent, "--mode", mode, "--delay", str(delay), "{prompt}"]
    project = await server.project(
        client, f"wf-{mode}-{uuid.uuid4().hex[:6]}", template="python", agent_command=command
    )
    workspace = Path(project["path"])
    if server.runtime == "docker":
        shutil.copy(FAKE_AGENT, workspace / ".fake_agent.py")
    with (workspace / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".fake_agent.py\n.agent-prompts/\n")
    return project


async def start_run(client: httpx.AsyncClient, project: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"/api/projects/{project['id']}/workflow-runs", json={"workflow": "tdd", "task": "add double(x)", **body}
    )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def wait_run(
    client: httpx.AsyncClient, run_id: str, predicate: Any = None, timeout: float = 120
) -> dict[str, Any]:
    predicate = predicate or (lambda r: r["state"] in FINISHED)
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = (await client.get(f"/api/workflow-runs/{run_id}")).json()
        if predicate(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run did not get there: {json.dumps(run, indent=1)[:3000]}")
        await asyncio.sleep(0.2)


def worktree(project: dict[str, Any], run: dict[str, Any]) -> Path:
    """Where the run works: its own git worktree inside the workspace."""
    return Path(project["path"]) / ".agentdock" / "worktrees" / run["id"]


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["name"] == name)


async def test_honest_agent_succeeds_with_a_commit_on_the_runs_branch(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "honest")
        run = await start_run(client, project)
        assert run["state"] in ("queued", "running")
        assert [s["name"] for s in run["steps"]] == ["red", "green", "refactor", "commit"]
        url = f"{server.ws_base}/api/workflow-runs/{run['id']}/events?token={TOKEN}"
        async with websockets.connect(url) as ws:
            events = [json.loads(raw) async for raw in ws]
            assert ws.close_code == 1000
        done = await wait_run(client, run["id"])
    assert done["state"] == "succeeded", done
    assert [s["state"] for s in done["steps"]] == ["passed"] * 4
    assert all(s["attempts"] == 1 for s in done["steps"])
    assert all(s["session_id"] for s in done["steps"][:3])
    assert step(done, "red")["gate"]["tests_changed"] == ["tests/test_feature.py"]
    assert step(done, "red")["gate"]["exit_code"] != 0
    assert step(done, "green")["gate"]["exit_code"] == 0
    branch = f"agentdock/{run['id']}"
    assert done["branch"] == branch
    path = project["path"]
    assert git(path, "rev-parse", branch).strip() == done["commit_sha"]
    files = git(path, "show", "--name-only", "--format=", branch).split()
    assert sorted(files) == ["feature.py", "tests/test_feature.py"]
    assert git(path, "symbolic-ref", "--short", "HEAD").strip() == "main"  # back where it was
    assert events[0]["change"] == "snapshot"
    changes = [e["change"] for e in events]
    assert "step.started" in changes and "step.passed" in changes
    assert events[-1]["run"]["state"] == "succeeded"
    names = {e["event"] for e in server.events() if e.get("run_id") == run["id"]}
    assert {
        "workflow.run.queued",
        "workflow.run.started",
        "workflow.step.started",
        "workflow.step.gate_passed",
        "workflow.run.succeeded",
    } <= names


async def test_red_tests_that_already_pass_fail_the_gate_and_are_retried(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "red-passes-first")
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
    assert done["state"] == "succeeded", done
    red = step(done, "red")
    assert red["attempts"] == 2
    retry_prompt = (worktree(project, run) / ".agent-prompts" / "red-2.txt").read_text()
    assert "the tests pass already" in retry_prompt
    assert "Attempt 2" in retry_prompt
    assert any(e.get("run_id") == run["id"] for e in server.events("workflow.step.retried"))


async def test_an_agent_that_edits_the_tests_in_green_fails(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "edits-tests")
        run = await start_run(client, project, max_attempts=2)
        done = await wait_run(client, run["id"])
    assert done["state"] == "failed"
    green = step(done, "green")
    assert (green["state"], green["attempts"]) == ("failed", 2)
    assert "tests/test_feature.py" in green["gate"]["reason"]
    assert "green" in done["reason"]
    assert step(done, "refactor")["state"] == "pending"
    assert done["branch"] is None


async def test_blocked_agent_ends_the_run_blocked(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "blocked")
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
    assert done["state"] == "blocked"
    assert done["reason"] == "the task needs a database I cannot reach"
    assert step(done, "red")["state"] == "failed"


async def test_a_hanging_agent_hits_the_idle_timeout(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "hang")
        run = await start_run(client, project, idle_timeout_s=2)
        done = await wait_run(client, run["id"], timeout=60)
        assert done["state"] == "failed"
        assert "printed nothing for 2 s" in done["reason"]
        session = step(done, "red")["session_id"]
        assert (await client.get(f"/api/sessions/{session}")).status_code == 404  # ended and forgotten


async def test_cancel_mid_step_ends_the_session_and_the_next_run_goes(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "honest", delay=30)
        first = await start_run(client, project)
        second = await start_run(client, project, task="a second task")
        running = await wait_run(client, first["id"], lambda r: step(r, "red")["session_id"] is not None)
        assert (await client.get(f"/api/workflow-runs/{second['id']}")).json()["state"] == "queued"
        session = step(running, "red")["session_id"]
        response = await client.post(f"/api/workflow-runs/{first['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["state"] == "cancelled"
        assert step(response.json(), "red")["state"] == "cancelled"
        assert (await client.get(f"/api/sessions/{session}")).status_code == 404
        again = await client.post(f"/api/workflow-runs/{first['id']}/cancel")
        assert again.status_code == 409
        await wait_run(client, second["id"], lambda r: r["state"] == "running")
        cancelled = await client.post(f"/api/workflow-runs/{second['id']}/cancel")
        assert cancelled.json()["state"] == "cancelled"


async def test_bad_run_requests_are_4xx(server: LiveServer) -> None:
    async with server.client() as client:
        project = await agent_project(server, client, "honest")
        base = f"/api/projects/{project['id']}/workflow-runs"
        for body in (
            {"workflow": "nope", "task": "x"},
            {"workflow": "tdd"},
            {"workflow": "tdd", "task": ""},
            {"workflow": "tdd", "task": "x", "max_attempts": 0},
            {"workflow": "tdd", "task": "x", "idle_timeout_s": 0.5},
            {"workflow": "tdd", "task": "x", "extra": 1},
        ):
            response = await client.post(base, json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["detail"]
        unknown = await client.post(
            f"/api/projects/{uuid.uuid4()}/workflow-runs", json={"workflow": "tdd", "task": "x"}
        )
        assert unknown.status_code == 404
        assert (await client.get(f"/api/workflow-runs/{uuid.uuid4()}")).status_code == 404
        assert (await client.get(base)).json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
        for query, code in ((f"/{uuid.uuid4()}/events?token={TOKEN}", 4404), (f"/{uuid.uuid4()}/events", 4401)):
            async with websockets.connect(f"{server.ws_base}/api/workflow-runs{query}") as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        workflows = (await client.get("/api/workflows")).json()
        assert [w["name"] for w in workflows] == ["tdd"]
        assert [s["name"] for s in workflows[0]["steps"]] == ["red", "green", "refactor", "commit"]


@pytest.mark.parametrize("runtime", ["local", "docker"])
async def test_a_run_interrupted_by_a_restart_is_resumed(
    runtime: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_available")
    data = tmp_path / "data"
    first = start_server(data, runtime)
    ids: set[str] = set()
    try:
        async with first.client() as client:
            project = await agent_project(first, client, "honest", delay=2)
            ids = first.project_ids
            run = await start_run(client, project)
            await wait_run(client, run["id"], lambda r: step(r, "green")["state"] == "running")
        first.stop()  # the service stops mid-run
        second = start_server(data, runtime)
        try:
            async with second.client() as client:
                done = await wait_run(client, run["id"])
            assert done["state"] == "succeeded", done
            assert step(done, "red")["attempts"] == 1  # what was recorded before the restart is kept
            assert step(done, "green")["attempts"] == 1  # re-run from the beginning, same attempt
            resumed = [e for e in second.events("workflow.run.resumed") if e["run_id"] == run["id"]]
            assert len(resumed) == 1
        finally:
            second.stop()
    finally:
        first.stop()
        if runtime == "docker":
            await remove_project_containers(ids)


async def test_commit_pushes_the_branch_and_opens_a_pull_request_on_github(tmp_path: Path) -> None:
    from tests.github_double import GitHubDouble

    token = "ghp_workflowdouble0123456789"
    double = GitHubDouble(tmp_path / "github", token).start()
    live = LiveServer(
        tmp_path / "data",
        runtime="local",
        image=BASE_IMAGE,
        extra_env={"AGENTDOCK_GITHUB_TOKEN": token, "AGENTDOCK_GITHUB_API_URL": double.api_url},
    )
    live.start()
    try:
        async with live.client() as client:
            command = ["python3", str(FAKE_AGENT), "--mode", "honest", "{prompt}"]
            project = await live.project(
                client, "published", template="python", agent_command=command, github={"create": True}
            )
            exclude = Path(project["path"]) / ".git" / "info" / "exclude"
            exclude.write_text(exclude.read_text() + ".agent-prompts/\n")
            run = await start_run(client, project, task="add double(x)\n\nwith tests")
            done = await wait_run(client, run["id"])
    finally:
        live.stop()
        double.stop()
    assert done["state"] == "succeeded", done
    branch = f"agentdock/{run['id']}"
    assert len(double.pulls) == 1
    pull = double.pulls[0]
    assert (pull["head"]["ref"], pull["base"]["ref"], pull["title"]) == (branch, "main", "add double(x)")
    assert done["pull_request_url"] == pull["html_url"]
    bare = double.bare_path(f"octocat/{project['name']}")
    pushed = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", f"refs/heads/{branch}"], capture_output=True, text=True, check=True
    )
    assert pushed.stdout.strip() == done["commit_sha"]
    log_text = live.log_path.read_text()
    assert token not in log_text
    assert any(e["run_id"] == run["id"] for e in live.events("workflow.pull_request.opened"))
