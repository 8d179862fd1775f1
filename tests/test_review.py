"""The review loop against the real engine: a run works in its own worktree on its own
branch; its diff is reviewed, then merged into the branch it started from or discarded;
runs of one project go in parallel; a project's own test patterns count."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import remove_project_containers
from tests.live import LiveServer
from tests.test_workflows import FAKE_AGENT, start_run, step, wait_run, worktree

pytestmark = pytest.mark.docker
BASE_IMAGE = "agentdock-base:latest"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, docker_available: None) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("review"),
        runtime="docker",
        image=BASE_IMAGE,
        extra_env={"AGENTDOCK_WORKFLOW_MIN_IDLE_S": "1"},
    )
    live.start()
    try:
        yield live
    finally:
        live.stop()
        asyncio.run(remove_project_containers(live.project_ids))


def git(path: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["git", "-c", f"safe.directory={path}", "-C", str(path), *args], capture_output=True, text=True, check=check
    )
    return done.stdout


async def fake_agent_project(
    server: LiveServer, client: httpx.AsyncClient, name: str, delay: float = 0, **body: Any
) -> dict[str, Any]:
    command = ["python3", "/workspace/.fake_agent.py", "--mode", "honest", "--delay", str(delay), "{prompt}"]
    project = await server.project(
        client, f"{name}-{uuid.uuid4().hex[:6]}", template="python", agent_command=command, **body
    )
    workspace = Path(project["path"])
    shutil.copy(FAKE_AGENT, workspace / ".fake_agent.py")
    with (workspace / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".fake_agent.py\n.agent-prompts/\n")
    return project


async def test_a_run_is_reviewed_then_merged(server: LiveServer) -> None:
    async with server.client() as client:
        project = await fake_agent_project(server, client, "merged")
        workspace = Path(project["path"])
        before = git(workspace, "rev-parse", "HEAD").strip()
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
        assert done["state"] == "succeeded", done
        assert done["review"] == "unreviewed" and done["worktree"] == f".agentdock/worktrees/{run['id']}"
        assert (worktree(project, run) / "feature.py").is_file()
        assert not (workspace / "feature.py").exists()  # the main work tree was never touched
        assert git(workspace, "status", "--porcelain") == ""  # and its status shows no worktrees

        diff = (await client.get(f"/api/workflow-runs/{run['id']}/diff")).json()
        assert diff["base"] == before and diff["head"] == done["commit_sha"]
        assert sorted(f["path"] for f in diff["files"]) == ["feature.py", "tests/test_feature.py"]
        assert all(f["additions"] > 0 and f["deletions"] == 0 for f in diff["files"])
        assert "+def double(x):" in diff["patch"] and diff["truncated"] is False
        paged = (await client.get(f"/api/workflow-runs/{run['id']}/diff", params={"limit": 1, "offset": 1})).json()
        assert (paged["total"], len(paged["files"])) == (2, 1)
        assert paged["files"][0]["path"] == "tests/test_feature.py" and "def double" not in paged["patch"]

        merged = await client.post(f"/api/workflow-runs/{run['id']}/merge")
        assert merged.status_code == 200, merged.text
        assert merged.json()["review"] == "merged"
        assert git(workspace, "rev-parse", "HEAD").strip() == done["commit_sha"]  # a fast-forward
        assert (workspace / "feature.py").is_file()
        assert not worktree(project, run).exists()
        again = await client.post(f"/api/workflow-runs/{run['id']}/merge")
        assert again.status_code == 409 and "merged already" in again.json()["detail"]
    assert any(e.get("run_id") == run["id"] for e in server.events("workflow.run.merged"))


async def test_a_discarded_run_leaves_no_branch_or_worktree(server: LiveServer) -> None:
    async with server.client() as client:
        project = await fake_agent_project(server, client, "discarded")
        workspace = Path(project["path"])
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
        assert done["state"] == "succeeded", done
        response = await client.post(f"/api/workflow-runs/{run['id']}/discard")
        assert response.status_code == 200, response.text
        assert response.json()["review"] == "discarded"
        assert not worktree(project, run).exists()
        assert git(workspace, "rev-parse", "--verify", "--quiet", f"agentdock/{run['id']}", check=False) == ""
        assert not (workspace / "feature.py").exists()
        assert (await client.get(f"/api/workflow-runs/{run['id']}/diff")).status_code == 409
        assert (await client.post(f"/api/workflow-runs/{run['id']}/merge")).status_code == 409


async def test_a_conflicting_merge_is_409_and_changes_nothing(server: LiveServer) -> None:
    async with server.client() as client:
        project = await fake_agent_project(server, client, "conflict")
        workspace = Path(project["path"])
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
        assert done["state"] == "succeeded", done
        # Meanwhile someone commits another feature.py on main.
        exec_ = await client.post(
            f"/api/projects/{project['id']}/exec",
            json={
                "command": "printf 'def double(x):\\n    return x + x  # mine\\n' > feature.py && git add feature.py"
                " && git -c user.name=me -c user.email=me@x commit -q -m mine && git rev-parse HEAD"
            },
        )
        assert '"exit_code":0' in exec_.text.replace(" ", ""), exec_.text
        head = git(workspace, "rev-parse", "HEAD").strip()
        response = await client.post(f"/api/workflow-runs/{run['id']}/merge")
        assert response.status_code == 409, response.text
        assert response.json()["conflicts"] == ["feature.py"]
        assert git(workspace, "rev-parse", "HEAD").strip() == head  # nothing changed
        assert git(workspace, "status", "--porcelain") == ""
        assert "# mine" in (workspace / "feature.py").read_text()
        assert (await client.get(f"/api/workflow-runs/{run['id']}")).json()["review"] == "unreviewed"
        assert worktree(project, run).exists()


async def test_two_runs_of_one_project_run_at_once_in_their_own_worktrees(server: LiveServer) -> None:
    async with server.client() as client:
        project = await fake_agent_project(server, client, "parallel", delay=2, parallel_runs=2)
        assert project["parallel_runs"] == 2
        first = await start_run(client, project)
        second = await start_run(client, project, task="a second task")

        async def both_running() -> bool:
            states = [(await client.get(f"/api/workflow-runs/{r['id']}")).json()["state"] for r in (first, second)]
            return states == ["running", "running"]

        for _ in range(100):
            if await both_running():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the two runs never ran at the same time")
        done = [await wait_run(client, r["id"]) for r in (first, second)]
    assert [d["state"] for d in done] == ["succeeded", "succeeded"], done
    assert done[0]["branch"] != done[1]["branch"]
    assert done[0]["commit_sha"] != done[1]["commit_sha"]
    assert not (Path(project["path"]) / "feature.py").exists()


JEST_AGENT = [
    "/bin/sh",
    "-c",
    'case "$AGENTDOCK_STEP" in red) mkdir -p src && echo "test(\\"sum\\", () => {})" > src/sum.test.ts;; '
    'green) echo "export const sum = 1" > src/sum.ts;; esac; echo done',
    "{prompt}",
]


async def test_a_project_s_own_test_patterns_count_in_red(server: LiveServer) -> None:
    async with server.client() as client:
        body = {"template": "blank", "agent_command": JEST_AGENT, "test_command": "test -f src/sum.ts"}
        plain = await server.project(client, f"jest-default-{uuid.uuid4().hex[:6]}", **body)
        assert "**/*.test.ts" not in plain["test_patterns"]
        run = await start_run(client, plain, max_attempts=1)
        failed = await wait_run(client, run["id"])
        assert failed["state"] == "failed" and "no test file changed" in step(failed, "red")["gate"]["reason"]

        jest = await server.project(
            client, f"jest-{uuid.uuid4().hex[:6]}", test_patterns=["**/*.test.ts", "*.test.ts"], **body
        )
        assert jest["test_patterns"] == ["**/*.test.ts", "*.test.ts"]
        run = await start_run(client, jest, max_attempts=1)
        done = await wait_run(client, run["id"])
        assert done["state"] == "succeeded", done
        assert step(done, "red")["gate"]["tests_changed"] == ["src/sum.test.ts"]
        patched = await client.patch(f"/api/projects/{jest['id']}", json={"test_patterns": None})
        assert patched.json()["test_patterns"] == plain["test_patterns"]  # back to the template's
        bad = await client.patch(f"/api/projects/{jest['id']}", json={"test_patterns": ["../x"]})
        assert bad.status_code == 400
