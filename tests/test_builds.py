"""A project's own environment: the definition read as data (no-follow, bounded), the build
context as a deterministic, bounded tar, and builds through the engine's API."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from service.docker.engine import DockerEngine
from service.errors import Invalid
from service.runtimes.build import (
    SENT_DOCKERFILE,
    BuildDefinition,
    base_images,
    context_tar,
    definition_from_devcontainer,
    lint_dockerfile,
    parse_definition,
    parse_jsonc,
    read_definition,
    read_regular,
    strip_jsonc,
)
from tests.live import TOKEN, LiveServer

BUSYBOX = "agentdock-busybox:latest"


# --- JSONC and the devcontainer subset (unit) -------------------------------------------------


def test_jsonc_strips_comments_and_trailing_commas_outside_strings() -> None:
    text = """{
      // a comment
      "image": "agentdock-busybox:latest", /* block
      comment */
      "url": "http://x//y/* not a comment */",
      "quote": "a \\" // still a string",
      "list": [1, 2, ],
      "obj": {"a": "b",},
    }"""
    assert parse_jsonc(text.encode()) == {
        "image": "agentdock-busybox:latest",
        "url": "http://x//y/* not a comment */",
        "quote": 'a " // still a string',
        "list": [1, 2],
        "obj": {"a": "b"},
    }


def test_jsonc_refuses_bad_input() -> None:
    with pytest.raises(Invalid, match="not closed"):
        strip_jsonc('{"a": 1 /* open')
    with pytest.raises(Invalid, match="nested deeper"):
        strip_jsonc("[" * 100 + "]" * 100)
    with pytest.raises(Invalid, match="not valid JSON"):
        parse_jsonc(b'{"a": }')
    with pytest.raises(Invalid, match="not UTF-8"):
        parse_jsonc(b"\xff\xfe{")


def test_devcontainer_subset() -> None:
    definition = definition_from_devcontainer(
        {
            "name": "ignored",
            "customizations": {"vscode": {}},
            "build": {"dockerfile": "Dockerfile", "context": "..", "args": {"VERSION": "1"}},
            "containerEnv": {"FOO": "bar"},
            "remoteEnv": {"PATH_EXTRA": "/x", "UNSET": None},
            "remoteUser": "agent",
            "postCreateCommand": ["make", "setup"],
            "forwardPorts": [8000, "db:5432"],
        }
    )
    assert definition.kind == "devcontainer"
    assert definition.image is None
    assert definition.dockerfile == ".devcontainer/Dockerfile"
    assert definition.context == "."
    assert definition.args == {"VERSION": "1"}
    assert definition.container_env == {"FOO": "bar"}
    assert definition.remote_env == {"PATH_EXTRA": "/x"}
    assert definition.remote_user == "agent"
    assert definition.post_create == ["make", "setup"]
    assert definition.forward_ports == [8000, "db:5432"]
    assert definition_from_devcontainer({"image": BUSYBOX, "postCreateCommand": "echo hi"}).post_create == "echo hi"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"image": BUSYBOX, "features": {"ghcr.io/devcontainers/features/node:1": {}}}, "features"),
        ({"dockerComposeFile": "x.yml"}, "dockerComposeFile"),
        ({"image": BUSYBOX, "build": {"dockerfile": "D"}}, "not both"),
        ({"name": "nothing"}, "needs 'image'"),
        ({"build": {"dockerfile": "../../etc/passwd"}}, "leaves the workspace"),
        ({"build": {"dockerfile": "/etc/passwd"}}, "not absolute"),
        ({"build": {"dockerfile": "D", "context": "../.."}}, "leaves the workspace"),
        ({"image": BUSYBOX, "remoteUser": "root"}, "root"),
        ({"image": BUSYBOX, "remoteUser": "0"}, "plain user name"),
        ({"image": BUSYBOX, "remoteUser": "a b"}, "plain user name"),
        ({"image": BUSYBOX, "containerEnv": {"1BAD": "x"}}, "invalid name"),
        ({"image": BUSYBOX, "containerEnv": {"A": 1}}, "must be a string"),
        ({"image": BUSYBOX, "containerEnv": {"A": "x" * 5000}}, "must be a string"),
        ({"image": BUSYBOX, "postCreateCommand": {"a": "b"}}, "object form"),
        ({"image": BUSYBOX, "forwardPorts": [70000]}, "invalid port"),
        ({"image": "bad image!"}, "image name"),
        ([1, 2], "JSON object"),
    ],
)
def test_devcontainer_refusals(config: Any, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        definition_from_devcontainer(config)


def test_dockerfile_lint() -> None:
    lint_dockerfile(b"FROM agentdock-busybox:latest\nRUN echo hi\n", {})
    with pytest.raises(Invalid, match="host's network"):
        lint_dockerfile(b"FROM x\nADD http://169.254.169.254/latest/meta-data /m\n", {})
    with pytest.raises(Invalid, match="host's network"):
        lint_dockerfile(b'FROM x\nADD ["https://example.com/a", "/a"]\n', {})
    with pytest.raises(Invalid, match="host's network"):
        lint_dockerfile(b"FROM x\nADD \\\n  git@github.com:a/b.git /b\n", {})
    content = b"""# syntax=docker/dockerfile:1
ARG BASE=agentdock-busybox:latest
FROM ${BASE} AS one
RUN true
FROM one
COPY --from=one /a /a
COPY --from=agentdock-base:latest /b /b
FROM scratch
"""
    assert base_images(content, {}) == ["agentdock-busybox:latest", "agentdock-base:latest"]
    assert base_images(content, {"BASE": "other:1"})[0] == "other:1"
    with pytest.raises(Invalid, match="has no value"):
        base_images(b"FROM $NOPE\n", {})


# --- no-follow, bounded reads -------------------------------------------------------------------


def test_read_regular_refuses_links_and_fifos(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "devcontainer.json").write_text('{"image": "agentdock-busybox:latest"}')
    (outside / "secret").write_text("FROM agentdock-busybox:latest\n")

    (ws / ".devcontainer").symlink_to(outside)
    with pytest.raises(Invalid, match="not a plain directory"):
        parse_definition(ws)
    (ws / ".devcontainer").unlink()

    (ws / "Dockerfile").symlink_to(outside / "secret")
    with pytest.raises(Invalid, match="not a regular file"):
        parse_definition(ws)
    (ws / "Dockerfile").unlink()

    os.mkfifo(ws / "Dockerfile")
    began = time.monotonic()
    with pytest.raises(Invalid, match="not a regular file"):
        parse_definition(ws)
    assert time.monotonic() - began < 2  # never opened for reading, never waits for a writer
    (ws / "Dockerfile").unlink()

    assert parse_definition(ws) is None
    (ws / "big").write_bytes(b"x" * 100)
    with pytest.raises(Invalid, match="larger than"):
        read_regular(ws, "big", cap=99)
    assert read_regular(ws, "big", cap=100) == b"x" * 100
    assert read_regular(ws, "missing", cap=10) is None
    with pytest.raises(Invalid, match="leaves the workspace"):
        read_regular(ws, "../outside/secret", cap=100)
    with pytest.raises(Invalid, match="relative"):
        read_regular(ws, str(outside / "secret"), cap=100)


def test_a_dockerfile_named_through_a_link_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".devcontainer").mkdir(parents=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "Dockerfile").write_text("FROM agentdock-busybox:latest\n")
    (ws / "sub").symlink_to(tmp_path / "real")
    (ws / ".devcontainer" / "devcontainer.json").write_text('{"build": {"dockerfile": "../sub/Dockerfile"}}')
    with pytest.raises(Invalid, match="not a plain directory"):
        parse_definition(ws)


def test_parse_a_devcontainer_project(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".devcontainer").mkdir(parents=True)
    (ws / ".devcontainer" / "Dockerfile").write_text("FROM agentdock-busybox:latest\nRUN echo built > /built\n")
    (ws / ".devcontainer" / "devcontainer.json").write_text(
        """{
        // JSONC, as VS Code writes it
        "build": {"dockerfile": "Dockerfile", "context": ".."},
        "containerEnv": {"GREETING": "hello"},
        "remoteUser": "agent",
        "postCreateCommand": "echo created > /tmp/created",
        "forwardPorts": [3000],
      }"""
    )
    definition = parse_definition(ws)
    assert definition is not None
    assert definition.kind == "devcontainer"
    assert definition.dockerfile == ".devcontainer/Dockerfile"
    assert definition.dockerfile_content == b"FROM agentdock-busybox:latest\nRUN echo built > /built\n"
    assert definition.container_env == {"GREETING": "hello"}
    assert definition.remote_user == "agent"
    assert definition.post_create == "echo created > /tmp/created"
    assert definition.forward_ports == [3000]
    assert not definition.context_hashed
    full = read_definition(ws)
    assert full is not None
    assert full.context_hashed
    assert full.digest != definition.digest
    (ws / "new-file").write_text("changed")
    changed = read_definition(ws)
    assert changed is not None
    assert changed.digest != full.digest  # the context is in the digest: a change rebuilds


# --- the context tar --------------------------------------------------------------------------


def _tree(ws: Path, outside: Path) -> None:
    (ws / "src" / "deep").mkdir(parents=True)
    (ws / "src" / "a.txt").write_text("a")
    (ws / "src" / "deep" / "b.txt").write_text("b")
    (ws / "run.sh").write_text("#!/bin/sh\n")
    (ws / "run.sh").chmod(0o755)
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("[core]\n")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "x.js").write_text("x")
    (ws / "debug.log").write_text("log")
    (ws / ".dockerignore").write_text("# comment\nnode_modules\n*.log\n!keep.log\n")
    (outside / "secret").write_text("host secret")
    (ws / "link-to-secret").symlink_to(outside / "secret")
    (ws / "link-dir").symlink_to(outside)
    os.mkfifo(ws / "fifo")
    (ws / SENT_DOCKERFILE).write_text("an entry of the reserved name is left out")


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, BuildDefinition]:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    _tree(ws, outside)
    (ws / "Dockerfile").write_text("FROM agentdock-busybox:latest\nCOPY . /app\n")
    definition = parse_definition(ws)
    assert definition is not None
    return ws, definition


def test_context_tar_takes_regular_files_and_directories_only(tree: tuple[Path, BuildDefinition]) -> None:
    ws, definition = tree
    began = time.monotonic()
    file, _ = context_tar(ws, definition)
    assert time.monotonic() - began < 5  # the FIFO was never opened for reading
    with file:
        data = file.read()
    names = _names(data)
    assert names == [
        SENT_DOCKERFILE,
        ".dockerignore",
        "Dockerfile",
        "run.sh",
        "src",
        "src/a.txt",
        "src/deep",
        "src/deep/b.txt",
    ]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
        assert members["run.sh"].mode == 0o755
        assert members["src/a.txt"].mode == 0o644
        sent = tar.extractfile(SENT_DOCKERFILE)
        assert sent is not None
        assert sent.read() == b"FROM agentdock-busybox:latest\nCOPY . /app\n"
    assert b"host secret" not in data


def test_context_tar_is_deterministic(tree: tuple[Path, BuildDefinition]) -> None:
    ws, definition = tree
    first, digest1 = context_tar(ws, definition)
    for path in ws.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (1, 1))
    second, digest2 = context_tar(ws, definition)
    with first, second:
        assert first.read() == second.read()
    assert digest1 == digest2
    (ws / "src" / "a.txt").write_text("A")
    third, digest3 = context_tar(ws, definition)
    third.close()
    assert digest3 != digest1


def test_context_tar_respects_its_limits(tree: tuple[Path, BuildDefinition]) -> None:
    ws, definition = tree
    (ws / "big.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(Invalid, match="larger than its limit"):
        context_tar(ws, definition, limit=4000)
    with pytest.raises(Invalid, match="took too long"):
        context_tar(ws, definition, deadline=time.monotonic() - 1)


def test_a_symlinked_context_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".devcontainer").mkdir(parents=True)
    (ws / ".devcontainer" / "Dockerfile").write_text("FROM agentdock-busybox:latest\n")
    (ws / "ctx").symlink_to(tmp_path)
    (ws / ".devcontainer" / "devcontainer.json").write_text(
        '{"build": {"dockerfile": "Dockerfile", "context": "../ctx"}}'
    )
    definition = parse_definition(ws)
    assert definition is not None
    with pytest.raises(Invalid, match="not a plain directory"):
        context_tar(ws, definition)


# --- against the real engine, through the API -------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, docker_available: None) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "data", runtime="docker", image=BUSYBOX)
    live.start()
    try:
        yield live
    finally:
        live.stop()
        asyncio.run(_remove_images(live.project_ids))


async def _remove_images(project_ids: set[str]) -> None:
    """Only this test's images (tagged by its projects' ids) and containers."""
    from tests.conftest import remove_project_containers

    await remove_project_containers(project_ids)
    engine = DockerEngine()
    try:
        for image in await engine.client.images.list():
            for tag in image.get("RepoTags") or []:
                if any(tag.startswith(f"agentdock-project-{uuid.UUID(pid).hex}:") for pid in project_ids):
                    await engine.client.images.delete(tag, force=True)
    finally:
        await engine.close()


async def _build(live: LiveServer, project: dict[str, Any]) -> list[dict[str, Any]]:
    """Start a build with the events socket open; its events up to the end of the build."""
    url = f"{live.ws_base}/api/projects/{project['id']}/environment/events?token={TOKEN}"
    events: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws, live.client() as client:
        response = await client.post(f"/api/projects/{project['id']}/environment/build")
        assert response.status_code == 202, response.text
        build_id = response.json()["build_id"]
        async with asyncio.timeout(120):
            while True:
                event = json.loads(await ws.recv())
                events.append(event)
                if event["build_id"] == build_id and event["state"] != "running":
                    break
    return events


async def test_a_dockerfile_project_builds_with_progress(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, "dockerfile-build")
        ws = Path(project["path"])
        (ws / "hello.txt").write_text("hello from the context\n")
        (ws / "Dockerfile").write_text(
            "FROM agentdock-busybox:latest\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copied\n"
        )
        events = await _build(server, project)
        assert events[-1]["state"] == "succeeded", events
        tag = events[-1]["tag"]
        assert tag.startswith(f"agentdock-project-{uuid.UUID(project['id']).hex}:")
        streams = "".join(e.get("stream", "") for e in events)
        assert "COPY hello.txt" in streams
        assert "RUN cat /hello.txt" in streams

        engine = DockerEngine()
        try:
            info = await engine.client.images.inspect(tag)
            assert info["Config"]["Labels"]["agentdock.managed"] == "true"
            assert info["Config"]["Labels"]["agentdock.project"] == project["id"]
        finally:
            await engine.close()

        # Unchanged: not rebuilt.
        again = await _build(server, project)
        assert again[-1]["state"] == "succeeded"
        assert again[-1]["tag"] == tag
        names = [e["event"] for e in server.events() if e.get("project_id") == project["id"]]
        assert names.count("environment.build.started") == 2
        succeeded = server.events("environment.build.succeeded")
        assert [e["built"] for e in succeeded] == [True, False]

        # A second request while one runs: 409.
        (ws / "Dockerfile").write_text("FROM agentdock-busybox:latest\nRUN sleep 3\n")
        first = await client.post(f"/api/projects/{project['id']}/environment/build")
        second = await client.post(f"/api/projects/{project['id']}/environment/build")
        assert first.status_code == 202
        assert second.status_code == 409, second.text
        url = f"{server.ws_base}/api/projects/{project['id']}/environment/events?token={TOKEN}"
        async with websockets.connect(url) as sock, asyncio.timeout(60):
            while (event := json.loads(await sock.recv()))["state"] == "running":
                pass
        assert event["state"] == "succeeded"
        assert event["build_id"] == first.json()["build_id"]


async def test_failures_are_clear(server: LiveServer) -> None:
    async with server.client() as client:
        missing = await client.post(f"/api/projects/{uuid.uuid4()}/environment/build")
        assert missing.status_code == 404
        project = await server.project(client, "failing-build")
        none = await client.post(f"/api/projects/{project['id']}/environment/build")
        assert none.status_code == 400
        assert "defines no environment" in none.json()["detail"]

        ws = Path(project["path"])
        (ws / "Dockerfile").write_text("FROM agentdock-busybox:latest\nRUN echo doomed && exit 7\n")
        events = await _build(server, project)
        assert events[-1]["state"] == "failed"
        assert "doomed" in events[-1]["error"] or "non-zero" in events[-1]["error"]
        assert server.events("environment.build.failed")

        (ws / "Dockerfile").write_text("FROM not-on-this-engine:1\n")
        events = await _build(server, project)
        assert events[-1]["state"] == "failed"
        assert "never pulled" in events[-1]["error"]

        (ws / "Dockerfile").write_text("FROM agentdock-busybox:latest\nADD http://169.254.169.254/x /x\n")
        refused = await client.post(f"/api/projects/{project['id']}/environment/build")
        assert refused.status_code == 400
        assert "host's network" in refused.json()["detail"]

    for query, code in (
        (f"/{uuid.uuid4()}/environment/events?token={TOKEN}", 4404),
        (f"/{project['id']}/environment/events", 4401),
    ):
        async with websockets.connect(f"{server.ws_base}/api/projects{query}") as sock:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(sock.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == code


async def test_a_devcontainer_project_builds(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, "devcontainer-build")
        ws = Path(project["path"])
        (ws / ".devcontainer").mkdir()
        (ws / ".devcontainer" / "Dockerfile").write_text("FROM agentdock-busybox:latest\nRUN echo ok > /built\n")
        (ws / ".devcontainer" / "devcontainer.json").write_text(
            """{
              "build": {"dockerfile": "Dockerfile", "context": ".."},
              "containerEnv": {"GREETING": "hello"},
              "remoteUser": "agent",
              "postCreateCommand": ["sh", "-c", "echo created"],
            }"""
        )
        definition = parse_definition(ws)
        assert definition is not None
        assert definition.container_env == {"GREETING": "hello"}
        assert definition.remote_user == "agent"
        assert definition.post_create == ["sh", "-c", "echo created"]
        events = await _build(server, project)
        assert events[-1]["state"] == "succeeded", events
        assert any("RUN echo ok" in e.get("stream", "") for e in events)


# --- the built environment in use: the container, its user, settings and post-create -----------

DEV_DOCKERFILE = """FROM agentdock-busybox:latest
RUN echo 'dev:x:1001:1001::/home/dev:/bin/sh' >> /etc/passwd && mkdir -p /home/dev && chown 1001 /home/dev \\
 && echo {marker} > /etc/built-marker
"""


async def test_sessions_run_in_the_built_environment_as_its_user(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, "own-env")
        ws = Path(project["path"])
        (ws / ".devcontainer").mkdir()
        (ws / ".devcontainer" / "Dockerfile").write_text(DEV_DOCKERFILE.format(marker="first"))
        (ws / ".devcontainer" / "devcontainer.json").write_text(
            json.dumps(
                {
                    "build": {"dockerfile": "Dockerfile"},
                    "containerEnv": {"PROJECT_MODE": "devbox"},
                    "remoteEnv": {"REMOTE_SETTING": "remote-on"},
                    "remoteUser": "dev",
                    "postCreateCommand": "id -u > /workspace/.post-created",
                }
            )
        )
        base = f"/api/projects/{project['id']}"
        started = await client.post(f"{base}/container/start")
        assert started.status_code == 200, started.text
        first = started.json()
        assert first["image"].startswith(f"agentdock-project-{uuid.UUID(project['id']).hex}:")
        probe = ["/bin/sh", "-c", 'echo "u=$(id -u) m=$PROJECT_MODE r=$REMOTE_SETTING b=$(cat /etc/built-marker)"']
        session = await server.session(client, project, command=probe)
        async with server.connect(session["id"]) as term:
            await term.until_output("u=1001 m=devbox r=remote-on b=first")
        assert (ws / ".post-created").read_text().strip() == "1001"  # once, as the devcontainer's user

        # A changed definition is rebuilt when the container starts again: a new image, a new
        # container (the workspace and the home volume stay).
        (ws / ".devcontainer" / "Dockerfile").write_text(DEV_DOCKERFILE.format(marker="second"))
        restarted = await client.post(f"{base}/container/restart")
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["image"] != first["image"]
        assert restarted.json()["id"] != first["id"]
        session = await server.session(client, project, command=probe)
        async with server.connect(session["id"]) as term:
            await term.until_output("b=second")
        events = server.events("environment.image_built")
        assert len([e for e in events if e.get("project_id") == project["id"]]) == 2


async def test_a_definition_whose_user_is_root_is_refused(server: LiveServer) -> None:
    async with server.client() as client:
        project = await server.project(client, "root-env")
        ws = Path(project["path"])
        (ws / "Dockerfile").write_text("FROM agentdock-busybox:latest\nRUN true\n")
        (ws / ".devcontainer").mkdir()
        (ws / ".devcontainer" / "devcontainer.json").write_text(
            json.dumps({"build": {"dockerfile": "../Dockerfile", "context": ".."}, "remoteUser": "root"})
        )
        response = await client.post(f"/api/projects/{project['id']}/sessions", json={"command": ["id"]})
        assert response.status_code in (400, 409), response.text
        assert "root" in response.json()["detail"]
