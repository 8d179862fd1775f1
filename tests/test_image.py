"""The default image as scripts/docker-up.sh builds it: the real Claude Code, as ``agent``.

No model API is reachable here, so ``claude`` is exercised up to its authentication error.
Every container is run with network mode ``none``, under a name of this test's own, and
removed by that name.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import docker_required

BASE_IMAGE = "agentdock-base:latest"
ROOT = Path(__file__).resolve().parent.parent
PIN_FILE = ROOT / "scripts" / "claude-code.version"
NOT_LOGGED_IN = Path(__file__).resolve().parent / "data" / "claude-not-logged-in.jsonl"


def pinned_version() -> str:
    """The first line of the pin file that is neither blank nor a comment, as docker-up.sh reads it."""
    for line in PIN_FILE.read_text().splitlines():
        version = line.split("#", 1)[0].strip()
        if version:
            return version
    raise AssertionError(f"{PIN_FILE} pins no version")


def stream_json(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def base_image(docker_available: None) -> str:
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False).returncode != 0:
        reason = f"{BASE_IMAGE} is not built here; scripts/docker-up.sh builds it"
        if docker_required():
            pytest.fail(f"{reason} (AGENTDOCK_REQUIRE_DOCKER/CI is set: Docker tests must run)")
        pytest.skip(reason)
    return BASE_IMAGE


def run_in(
    image: str, *command: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` as uid 1000 without network; the container is removed even on a timeout."""
    name = f"agentdock-test-image-{uuid.uuid4().hex[:12]}"
    env_args = [f"--env={key}={value}" for key, value in (env or {}).items()]
    argv = ["docker", "run", "--rm", f"--name={name}", "--network=none", "--user=1000", *env_args, image, *command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False, timeout=30)


def test_the_pin_is_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", pinned_version())


@pytest.mark.docker
def test_the_image_is_labelled_with_the_pinned_version(base_image: str) -> None:
    label = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{ index .Config.Labels "agentdock.claude-version" }}', base_image],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert label == pinned_version(), "scripts/docker-up.sh rebuilds the image when its label differs from the pin"


@pytest.mark.docker
def test_claude_version_answers_as_agent(base_image: str) -> None:
    result = run_in(base_image, "sh", "-c", "id -u; command -v claude; claude --version")
    assert result.returncode == 0, result.stdout + result.stderr
    uid, path, version = result.stdout.splitlines()
    assert uid == "1000"
    assert path == "/usr/local/bin/claude"
    assert version == f"{pinned_version()} (Claude Code)"


@pytest.mark.docker
def test_claude_without_credentials_fails_at_once_with_a_result(base_image: str) -> None:
    started = time.monotonic()
    result = run_in(
        base_image,
        "claude",
        "-p",
        "say hi",
        "--output-format",
        "stream-json",
        "--verbose",
        env={"HOME": "/home/agent"},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stdout + result.stderr
    assert elapsed < 30, f"claude took {elapsed:.1f} s to fail without credentials"
    events = stream_json(result.stdout)
    assert events[0]["type"] == "system" and events[0]["subtype"] == "init"
    last = events[-1]
    assert last["type"] == "result" and last["is_error"] is True, last
    assert last["result"], "the result carries Claude's own reason"


@pytest.mark.docker
def test_agent_has_a_private_claude_dir(base_image: str) -> None:
    result = run_in(base_image, "stat", "-c", "%u:%g %a %F", "/home/agent", "/home/agent/.claude")
    assert result.returncode == 0, result.stdout + result.stderr
    home, claude_dir = result.stdout.splitlines()
    assert home.startswith("1000:1000 ")
    assert claude_dir == "1000:1000 700 directory"


@pytest.mark.docker
def test_tools_claude_needs_are_in_the_image(base_image: str) -> None:
    result = run_in(base_image, "sh", "-c", "rg --version && git --version && ps -p 1 -o pid=")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ripgrep ")


def test_the_not_logged_in_fixture_is_claude_s_own_output() -> None:
    """tests/data/claude-not-logged-in.jsonl is what the real binary printed (see that test above);
    other tests replay it, so it must keep the shape they rely on."""
    events = stream_json(NOT_LOGGED_IN.read_text())
    assert [event["type"] for event in events] == ["system", "assistant", "result"]
    assert events[1]["error"] == "authentication_failed"
    assert events[-1]["is_error"] is True
    assert events[-1]["result"] == events[1]["message"]["content"][0]["text"]
    assert {"num_turns", "total_cost_usd", "usage", "session_id"} <= events[-1].keys()
