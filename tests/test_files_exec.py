"""The files and exec APIs against a live server, in both runtimes: everything is done inside
the project's environment, paths stay in the workspace (``..``, absolute paths, a link the
agent made), FIFOs are never opened, exec streams NDJSON in order, times out, bounds its
output, and ends its process when the client goes away."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.workspace.commands import OUTPUT_CAP
from service.workspace.files import FILE_LIMIT, parse_listing
from tests.conftest import BUSYBOX_IMAGE, wait_until
from tests.live import LiveServer, serve_per_runtime


@pytest.fixture(scope="module", params=["local", "docker"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_per_runtime(request, tmp_path_factory, "files", BUSYBOX_IMAGE)


async def new_project(server: LiveServer, client: httpx.AsyncClient) -> tuple[str, Path]:
    project = await server.project(client, f"files-{uuid.uuid4().hex[:8]}")
    return project["id"], Path(project["path"])


async def run(client: httpx.AsyncClient, project_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with client.stream("POST", f"/api/projects/{project_id}/exec", json=body) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) async for line in response.aiter_lines() if line]


def output(lines: list[dict[str, Any]], stream: str = "stdout") -> str:
    return "".join(line["data"] for line in lines if line.get("stream") == stream)


# --- pure parts -------------------------------------------------------------------------------


def test_listing_records_are_parsed_strictly() -> None:
    listing = parse_listing("d", b"file 3 100 b\x00link 4 5 a \n\x00end\x00")
    assert [(e.name, e.type, e.size, e.mtime) for e in listing.entries] == [
        ("a \n", "link", 4, 5),
        ("b", "file", 3, 100),
    ]
    assert not listing.truncated
    assert parse_listing("d", b"more\x00").truncated
    from service.errors import Conflict

    for bad in (b"file 3 100 b\x00", b"rm 1 1 x\x00end\x00", b"file 1 1 a/b\x00end\x00", b"dir 1 1 ..\x00end\x00"):
        with pytest.raises(Conflict):
            parse_listing("d", bad)


# --- files ------------------------------------------------------------------------------------


async def test_files_round_trip(server: LiveServer) -> None:
    async with server.client() as client:
        project_id, workspace = await new_project(server, client)
        files = f"/api/projects/{project_id}/files"
        content = bytes(range(256)) * 100 + b"\x00\xff end"
        response = await client.put(files, params={"path": "a/b/c.bin"}, content=content)
        assert response.status_code == 204, response.text
        response = await client.get(files, params={"path": "a/b/c.bin"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == content
        assert (workspace / "a/b/c.bin").read_bytes() == content

        listing = (await client.get(files, params={"path": "a/b"})).json()
        assert listing["path"] == "a/b" and not listing["truncated"]
        [entry] = listing["entries"]
        assert entry["name"] == "c.bin" and entry["type"] == "file" and entry["size"] == len(content)
        assert abs(entry["mtime"] - time.time()) < 600

        # A link inside the workspace that points inside is read through, and listed as a link.
        os.symlink("a/b/c.bin", workspace / "inside-link")
        assert (await client.get(files, params={"path": "inside-link"})).content == content
        (workspace / ".hidden").write_text("x")
        root = (await client.get(files, params={"path": ""})).json()
        types = {entry["name"]: entry["type"] for entry in root["entries"]}
        assert types["a"] == "dir" and types["inside-link"] == "link" and types[".hidden"] == "file"
        assert [e["name"] for e in root["entries"]] == sorted(e["name"] for e in root["entries"])
        typed = (await client.get(f"{files}/listing", params={"path": "."})).json()
        assert typed["entries"] == root["entries"]
        assert (await client.get(f"{files}/listing", params={"path": "a/b/c.bin"})).status_code == 409

        # Overwrite, then delete: a directory is refused, a missing file is 404.
        assert (await client.put(files, params={"path": "a/b/c.bin"}, content=b"new")).status_code == 204
        assert (await client.get(files, params={"path": "a/b/c.bin"})).content == b"new"
        assert (await client.delete(files, params={"path": "inside-link"})).status_code == 204
        assert (workspace / "a/b/c.bin").exists(), "deleting a link removes the link, not its target"
        assert (await client.delete(files, params={"path": "a/b/c.bin"})).status_code == 204
        assert (await client.get(files, params={"path": "a/b/c.bin"})).status_code == 404
        assert (await client.delete(files, params={"path": "a/b/c.bin"})).status_code == 404
        response = await client.delete(files, params={"path": "a"})
        assert response.status_code == 409 and "directory" in response.json()["detail"]
        assert (await client.put(files, params={"path": "a"}, content=b"x")).status_code == 409

    written = [e for e in server.events("workspace.file.written") if e.get("project_id") == project_id]
    deleted = [e for e in server.events("workspace.file.deleted") if e.get("project_id") == project_id]
    assert [e["path"] for e in written] == ["a/b/c.bin", "a/b/c.bin"]
    assert [e["path"] for e in deleted] == ["inside-link", "a/b/c.bin"]
    assert all("new" not in json.dumps(e) for e in written), "no content in events"


async def test_files_refuse_paths_that_leave_the_workspace(server: LiveServer) -> None:
    async with server.client() as client:
        project_id, workspace = await new_project(server, client)
        files = f"/api/projects/{project_id}/files"
        os.symlink("/etc", workspace / "escape")  # a link the agent made
        os.symlink("/etc/passwd", workspace / "passwd-link")
        for path in ("../x", "a/../../x", "/etc/passwd", "escape/passwd", "passwd-link", "escape"):
            response = await client.get(files, params={"path": path})
            assert response.status_code == 400, (path, response.text)
            assert response.json()["detail"]
            assert "root:" not in response.text
        for path in ("escape/evil", "passwd-link", "../evil", "escape/new/dir/f"):
            response = await client.put(files, params={"path": path}, content=b"evil")
            assert response.status_code == 400, (path, response.text)
        assert (await client.delete(files, params={"path": "escape/passwd"})).status_code == 400
        assert (await client.delete(files, params={"path": ""})).status_code == 400
        # The link itself may be listed and deleted: it is the workspace's entry.
        assert (await client.delete(files, params={"path": "escape"})).status_code == 204
        assert os.path.exists("/etc/passwd")


async def test_files_never_open_a_fifo_and_bound_sizes(server: LiveServer) -> None:
    async with server.client() as client:
        project_id, workspace = await new_project(server, client)
        files = f"/api/projects/{project_id}/files"
        os.mkfifo(workspace / "pipe")
        started = time.monotonic()
        response = await client.get(files, params={"path": "pipe"})
        assert response.status_code == 400 and "FIFO" in response.json()["detail"]
        assert (await client.put(files, params={"path": "pipe"}, content=b"x")).status_code == 400
        assert time.monotonic() - started < 20, "a FIFO must never be opened"
        listing = (await client.get(files, params={"path": ""})).json()
        assert {"name": "pipe", "type": "other"}.items() <= next(
            e for e in listing["entries"] if e["name"] == "pipe"
        ).items()

        response = await client.put(files, params={"path": "big"}, content=b"x" * (FILE_LIMIT + 1))
        assert response.status_code == 413, response.text
        with (workspace / "sparse").open("wb") as sparse:
            sparse.truncate(FILE_LIMIT + 1)
        response = await client.get(files, params={"path": "sparse"})
        assert response.status_code == 413 and str(FILE_LIMIT + 1) in response.json()["detail"]
        assert (await client.get(files, params={"path": "no/such"})).status_code == 404
        assert (await client.get(f"/api/projects/{uuid.uuid4()}/files", params={"path": ""})).status_code == 404


# --- exec -------------------------------------------------------------------------------------


async def test_exec_streams_in_order_with_the_exit_code(server: LiveServer) -> None:
    async with server.client() as client:
        project_id, workspace = await new_project(server, client)
        script = "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; printf 'caf\\303'; printf '\\251\\n'; exit 3"
        lines = await run(client, project_id, {"command": script})
        assert lines[-1] == {"exit_code": 3, "timed_out": False}
        streams = [(line["stream"], line["data"]) for line in lines[:-1]]
        assert streams[0] == ("stdout", "out1\n") and streams[1] == ("stderr", "err1\n")
        assert output(lines) == "out1\ncafé\n", "UTF-8 split across writes is decoded whole"

        (workspace / "sub").mkdir()
        lines = await run(
            client,
            project_id,
            {"command": ["sh", "-c", 'pwd; echo "$GREETING"'], "cwd": "sub", "env": {"GREETING": "hi"}},
        )
        assert output(lines).splitlines()[0].endswith("/sub") and output(lines).splitlines()[1] == "hi"
        assert lines[-1]["exit_code"] == 0

        lines = await run(client, project_id, {"command": ["no-such-program-xyz"]})
        assert lines[-1]["exit_code"] == 127 and output(lines, "stderr")

        # Output arrives as it comes, before the command ends.
        async with client.stream(
            "POST", f"/api/projects/{project_id}/exec", json={"command": "echo first; sleep 3; echo second"}
        ) as response:
            started = time.monotonic()
            received = response.aiter_lines()
            first = await anext(received)
            assert json.loads(first) == {"stream": "stdout", "data": "first\n"}
            assert time.monotonic() - started < 2.5
            rest = [json.loads(line) async for line in received if line]
        assert rest[-1] == {"exit_code": 0, "timed_out": False}

    started_events = [e for e in server.events("exec.started") if e.get("project_id") == project_id]
    ended = [e for e in server.events("exec.ended") if e.get("project_id") == project_id]
    assert [e["command"] for e in started_events][:3] == ["sh -c", "sh", "no-such-program-xyz"]
    assert all("GREETING" not in json.dumps(e) and e.get("command") != "hi" for e in started_events)
    assert ended and ended[0]["exit_code"] == 3 and "duration_s" in ended[0]


async def test_exec_times_out_and_bounds_its_output(server: LiveServer) -> None:
    async with server.client() as client:
        project_id, _ = await new_project(server, client)
        started = time.monotonic()
        lines = await run(client, project_id, {"command": ["sleep", "30"], "timeout_s": 1})
        assert lines[-1] == {"exit_code": None, "timed_out": True}
        assert time.monotonic() - started < 20

        lines = await run(client, project_id, {"command": "yes 0123456789abcdef"})
        assert lines[-1] == {"exit_code": None, "timed_out": False, "truncated": True}
        assert len(output(lines)) == OUTPUT_CAP


async def test_exec_ends_its_process_when_the_client_goes_away(server: LiveServer) -> None:
    marker = f"{random.randint(100000, 999999)}"
    pattern = f"sleep {marker[:-1]}[{marker[-1]}]"
    survey = f"for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done 2>/dev/null | grep -c '{pattern}'"
    async with server.client() as client:
        project_id, _ = await new_project(server, client)
        async with client.stream(
            "POST", f"/api/projects/{project_id}/exec", json={"command": f"echo ready; sleep {marker}; echo never"}
        ) as response:
            received = response.aiter_lines()  # kept: a dropped iterator closes the response
            assert json.loads(await anext(received)) == {"stream": "stdout", "data": "ready\n"}
            lines = await run(client, project_id, {"command": survey})
            assert output(lines).strip() != "0", "the sleep runs while the client reads"
        # The response is closed: the command's process group is ended.

        async def gone() -> bool:
            return output(await run(client, project_id, {"command": survey})).strip() == "0"

        await wait_until(gone, timeout=30, interval=0.5)

    def ended_by_client() -> bool:  # logged once the kill is confirmed, which may come just after
        ended = [e for e in server.events("exec.ended") if e.get("project_id") == project_id]
        return any(e["ended_by"] == "client_gone" for e in ended)

    await wait_until(ended_by_client, timeout=15)


async def test_exec_refuses_bad_bodies(server: LiveServer) -> None:
    async with server.client() as client:
        project_id, _ = await new_project(server, client)
        url = f"/api/projects/{project_id}/exec"
        for body in (
            {},
            {"command": []},
            {"command": ""},
            {"command": [""]},
            {"command": 5},
            {"command": ["true"], "env": {"lower": "x"}},
            {"command": ["true"], "env": {"AGENTDOCK_API_TOKEN": "x"}},
            {"command": ["true"], "cwd": "../x"},
            {"command": ["true"], "cwd": "/etc"},
            {"command": ["true"], "timeout_s": 0},
            {"command": ["true"], "timeout_s": 100000},
            {"command": ["true"], "extra": 1},
        ):
            response = await client.post(url, json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["detail"]
        response = await client.post(f"/api/projects/{uuid.uuid4()}/exec", json={"command": ["true"]})
        assert response.status_code == 404
        await asyncio.sleep(0)
