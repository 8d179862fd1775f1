"""A project secret reaches the exec environment of sessions, agent steps and gate runs in
the container, and appears nowhere else: not in the database file, the logs, any API answer,
`docker inspect`, the workspace, or the stored gate and step output."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import remove_project_containers
from tests.live import LiveServer
from tests.test_workflows import FAKE_AGENT, start_run, wait_run

pytestmark = pytest.mark.docker

SECRET = "sk-ant-test-0123456789abcdefSECRET"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
# The agent proves it has the secret by its digest, never the value.
AGENT = [
    "/bin/sh",
    "-c",
    'echo "agent-digest=$(printf %s "$API_KEY" | sha256sum | cut -c1-16)"; '
    'exec python3 /workspace/.fake_agent.py --mode honest "$0"',
    "{prompt}",
]
# The gate run needs the secret to pass, and prints it: the stored output must not hold it.
TEST_COMMAND = 'test -n "$API_KEY" || exit 3; echo "gate saw $API_KEY"; python3 -m unittest discover -s tests -t .'


async def test_a_secret_reaches_sessions_agents_and_gates_and_nothing_else(
    tmp_path: Path, docker_available: None
) -> None:
    live = LiveServer(
        tmp_path / "data",
        runtime="docker",
        image="agentdock-base:latest",
        extra_env={"AGENTDOCK_WORKFLOW_MIN_IDLE_S": "1"},
    )
    live.start()
    answers: list[str] = []
    try:
        async with live.client() as client:
            project = await live.project(
                client, "secretive", template="python", agent_command=AGENT, test_command=TEST_COMMAND
            )
            workspace = Path(project["path"])
            shutil.copy(FAKE_AGENT, workspace / ".fake_agent.py")
            (workspace / ".git" / "info" / "exclude").open("a").write(".fake_agent.py\n.agent-prompts/\n")
            base = f"/api/projects/{project['id']}"
            assert (await client.put(f"{base}/secrets/API_KEY", json={"value": SECRET})).status_code == 204
            listed = await client.get(f"{base}/secrets")
            answers.append(listed.text)
            assert [s["name"] for s in listed.json()] == ["API_KEY"]

            # A session has it in its environment.
            session = await live.session(client, project, command=["/bin/sh", "-c", 'printf %s "$API_KEY" | sha256sum'])
            async with live.connect(session["id"]) as term:
                await term.until_output(DIGEST)

            # An agent step and its gate runs have it.
            run = await start_run(client, project)
            done = await wait_run(client, run["id"], timeout=180)
            answers.append(json.dumps(done))
            assert done["state"] == "succeeded", done
            red = next(s for s in done["steps"] if s["name"] == "red")
            async with live.connect(red["session_id"]) as term:
                await term.until_output(f"agent-digest={DIGEST}")
            green = next(s for s in done["steps"] if s["name"] == "green")
            assert "gate saw [redacted]" in green["gate"]["output_tail"]

            answers.extend([(await client.get(f"{base}{path}")).text for path in ("", "/sessions", "/workflow-runs")])
            answers.append((await client.get("/api/projects")).text)
            container_id = (await client.get(f"{base}/container")).json()["id"]
        inspected = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True)
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)

    assert SECRET not in inspected.stdout  # not in the container's Config.Env
    assert all(SECRET not in answer for answer in answers)
    assert SECRET not in live.log_path.read_text()
    for db_file in (tmp_path / "data").glob("agentdock.db*"):
        assert SECRET.encode() not in db_file.read_bytes(), db_file
    for path in workspace.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path
