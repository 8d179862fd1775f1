"""Agent presets, Claude's stream-json rendered and reported, retries that resume the
conversation, and agents that cannot run failing fast."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.agents.presets import PRESETS, agent_argv
from service.agents.stream import ClaudeStreamRenderer
from tests.live import LiveServer
from tests.test_workflows import start_run, step, wait_run, worktree

Client = AsyncTestClient[Litestar]
HERE = Path(__file__).parent
NOT_LOGGED_IN = HERE / "data" / "claude-not-logged-in.jsonl"


# --- the renderer ----------------------------------------------------------------------------


def events(*items: dict[str, Any]) -> str:
    return "".join(json.dumps(item) + "\r\n" for item in items)


def test_stream_json_is_rendered_as_readable_lines_and_reported() -> None:
    renderer = ClaudeStreamRenderer()
    stream = events(
        {"type": "system", "subtype": "init", "session_id": "s-1", "model": "claude-x", "tools": []},
        {"type": "system", "subtype": "api_retry", "attempt": 2, "max_retries": 10, "retry_delay_ms": 1500},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "Let me look.\x1b[2J"}]}},
        {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Bash", "input": {"c": "ls"}}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": "a\nb", "is_error": False}]}},
        {
            "type": "result",
            "is_error": False,
            "result": "All done.",
            "num_turns": 4,
            "total_cost_usd": 0.5,
            "usage": {"input_tokens": 10, "output_tokens": 20},
            "session_id": "s-1",
        },
    )
    # Fed in awkward pieces: lines split anywhere are put back together.
    shown = "".join(renderer.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + renderer.finish()
    assert "● claude · model claude-x · session s-1" in shown
    assert "retry 2/10 in 1.5 s" in shown
    assert "Let me look.␛[2J" in shown and "\x1b" not in shown  # no terminal control from the agent
    assert '→ Bash({"c":"ls"})' in shown
    assert "← result (3 chars)" in shown
    assert "✓ the agent is done (4 turns, 10 in / 20 out tokens, $0.5000)" in shown
    assert '"type"' not in shown  # no raw JSON left
    report = renderer.report
    assert report is not None
    assert (report.message, report.turns, report.cost_usd, report.session_id) == ("All done.", 4, 0.5, "s-1")
    assert report.usage() == {"input_tokens": 10, "output_tokens": 20, "cost_usd": 0.5, "turns": 4}


def test_lines_that_are_not_events_pass_through() -> None:
    renderer = ClaudeStreamRenderer()
    shown = renderer.feed("plain text\r\n{not json\r\n[1, 2]\r\n") + renderer.feed("tail without newline")
    shown += renderer.finish()
    assert shown == "plain text\r\n{not json\r\n[1, 2]\r\ntail without newline\r\n"
    assert renderer.report is None


def test_the_real_binarys_not_logged_in_output_is_reported() -> None:
    if not NOT_LOGGED_IN.exists():
        pytest.fail(f"{NOT_LOGGED_IN} is missing: it is captured from the real claude binary")
    renderer = ClaudeStreamRenderer()
    shown = renderer.feed(NOT_LOGGED_IN.read_text().replace("\n", "\r\n")) + renderer.finish()
    assert renderer.report is not None and renderer.report.is_error
    assert "Not logged in" in (renderer.report.message or "")
    assert "✗ the agent ended with an error" in shown


def test_preset_argv_places_resume_before_the_prompt() -> None:
    claude = PRESETS["claude"]
    argv = agent_argv(list(claude.command), "do it", resume=["--resume", "abc"])
    assert argv[:1] == ["claude"] and argv[-3:] == ["--resume", "abc", "do it"]
    assert "--permission-mode" in argv and "bypassPermissions" in argv
    assert argv[argv.index("--output-format") + 1] == "stream-json"


# --- the API ---------------------------------------------------------------------------------


async def test_agents_are_listed_and_a_project_chooses_one(client: Client) -> None:
    agents = (await client.get("/api/agents")).json()
    assert [a["name"] for a in agents][:1] == ["claude"]
    assert all(a["command"] and a["description"] for a in agents)
    created = await client.post("/api/projects", json={"name": "withagent", "agent": "claude"})
    assert created.status_code == 201, created.text
    assert created.json()["agent"] == "claude"
    project_id = created.json()["id"]
    for body in ({"agent": "nope"}, {"agent": ""}):
        response = await client.patch(f"/api/projects/{project_id}", json=body)
        assert response.status_code == 400 and response.json()["detail"]
    cleared = await client.patch(f"/api/projects/{project_id}", json={"agent": None})
    assert cleared.json()["agent"] is None
    bad = await client.post("/api/projects", json={"name": "badagent", "agent": "nope"})
    assert bad.status_code == 400 and "GET /api/agents" in bad.json()["detail"]
    # Neither a preset nor a command: the claude preset. A raw command alone: no preset.
    plain = (await client.post("/api/projects", json={"name": "plain"})).json()
    raw = (await client.post("/api/projects", json={"name": "raw", "agent_command": ["x", "{prompt}"]})).json()
    assert (plain["agent"], raw["agent"]) == ("claude", None)


# --- runs with a Claude that speaks stream-json (local runtime, a fake `claude` on the PATH) --


@pytest.fixture(scope="module")
def claude_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = fake_claude_server(tmp_path_factory.mktemp("fake-claude"))
    try:
        yield live
    finally:
        live.stop()


def fake_claude_server(root: Path, **extra_env: str) -> LiveServer:
    """A started local-runtime server with tests/fake_claude.py as `claude` first on its PATH."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shutil.copy(HERE / "fake_agent.py", bin_dir / "fake_agent.py")
    shutil.copy(HERE / "fake_claude.py", bin_dir / "claude")
    (bin_dir / "claude").chmod(0o755)
    env = {"AGENTDOCK_WORKFLOW_MIN_IDLE_S": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}", **extra_env}
    live = LiveServer(root / "data", runtime="local", image="agentdock-base:latest", extra_env=env)
    live.start()
    return live


async def test_a_claude_run_shows_readable_progress_and_records_usage(claude_server: LiveServer) -> None:
    async with claude_server.client() as client:
        project = await claude_server.project(client, "streamed", template="python", agent="claude")
        (Path(project["path"]) / ".git" / "info" / "exclude").open("a").write(".agent-prompts/\n")
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
        assert done["state"] == "succeeded", done
        red = step(done, "red")
        assert red["usage"] == {"input_tokens": 1200, "output_tokens": 340, "cost_usd": 0.0123, "turns": 3}
        assert red["agent_message"] == "Done with red, attempt 1."
        async with claude_server.connect(red["session_id"]) as term:
            await term.until_output("✓ the agent is done")
    assert "● claude · model claude-test" in term.output
    assert "→ Write(" in term.output
    assert '"type": "assistant"' not in term.output
    argv = json.loads((worktree(project, run) / ".agent-prompts" / "red-1.json").read_text())
    assert "--resume" not in argv and argv[-1].startswith("Task: add double(x)")


async def test_a_retry_resumes_the_agents_conversation(claude_server: LiveServer) -> None:
    async with claude_server.client() as client:
        project = await claude_server.project(
            client, "resumed", template="python", agent="claude", env={"FAKE_CLAUDE_MODE": "red-passes-first"}
        )
        (Path(project["path"]) / ".git" / "info" / "exclude").open("a").write(".agent-prompts/\n")
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
    assert done["state"] == "succeeded", done
    assert step(done, "red")["attempts"] == 2
    prompts = worktree(project, run) / ".agent-prompts"
    first, second = (json.loads((prompts / f"red-{n}.json").read_text()) for n in (1, 2))
    assert "--resume" not in first
    conversation = second[second.index("--resume") + 1]
    assert conversation and "the tests pass already" in second[-1]


async def test_an_agent_that_is_not_logged_in_fails_the_step_at_once(claude_server: LiveServer) -> None:
    async with claude_server.client() as client:
        project = await claude_server.project(
            client, "nologin", template="python", agent="claude", env={"FAKE_CLAUDE_MODE": "not-logged-in"}
        )
        began = time.monotonic()
        run = await start_run(client, project, max_attempts=3)
        done = await wait_run(client, run["id"], timeout=60)
    assert done["state"] == "failed"
    assert time.monotonic() - began < 30
    assert "Not logged in" in done["reason"]
    red = step(done, "red")
    assert red["attempts"] == 1 and red["state"] == "failed"  # no retry: it would fail the same way
    assert any(e.get("run_id") == run["id"] for e in claude_server.events("workflow.step.agent_failed"))


async def test_a_missing_agent_program_fails_the_step_at_once(claude_server: LiveServer) -> None:
    async with claude_server.client() as client:
        project = await claude_server.project(
            client, "noprogram", template="python", agent_command=["no-such-agent-cli", "{prompt}"]
        )
        began = time.monotonic()
        run = await start_run(client, project)
        done = await wait_run(client, run["id"], timeout=60)
    assert done["state"] == "failed"
    assert time.monotonic() - began < 30
    assert "no-such-agent-cli" in done["reason"], done["reason"]


async def test_the_real_claude_without_credentials_fails_the_first_step_in_seconds(
    tmp_path: Path, docker_available: None
) -> None:
    """The default image's own `claude`, as `agent`, no credentials and no network: the run
    fails at red within seconds, with Claude's own words as the reason."""
    from tests.conftest import remove_project_containers

    live = LiveServer(tmp_path / "data", runtime="docker", image="agentdock-base:latest")
    live.start()
    try:
        async with live.client() as client:
            project = await live.project(client, "realclaude", template="python", agent="claude")
            await client.post(f"/api/projects/{project['id']}/container/start")
            began = time.monotonic()
            run = await start_run(client, project, max_attempts=3)
            done = await wait_run(client, run["id"], timeout=90)
            took = time.monotonic() - began
            red = step(done, "red")
            async with live.connect(red["session_id"]) as term:
                await term.until_output("✗ the agent ended with an error")
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)
    assert done["state"] == "failed", done
    assert took < 45, took
    assert "Not logged in" in done["reason"], done["reason"]
    assert (red["state"], red["attempts"]) == ("failed", 1)
    assert "Not logged in" in (red["agent_message"] or "")
    assert '"type":' not in term.output  # rendered, not raw JSON
