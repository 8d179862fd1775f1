from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.projects import workspace
from service.settings import Settings
from tests.conftest import CapturedLogs

Client = AsyncTestClient[Litestar]


async def create(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.settings(allow_local_runtime=True)
async def test_create_get_list(client: Client, migrated: Settings) -> None:
    project = await create(client, name="demo", description="a demo")
    assert uuid.UUID(project["id"])
    assert project["name"] == "demo"
    assert project["description"] == "a demo"
    assert project["path"] == str(migrated.workspaces_dir / "demo")
    assert Path(project["path"]).is_dir()
    assert project["template"] == "blank"
    assert project["image"] == migrated.image
    assert project["runtime"] == "docker"
    assert project["agent_command"] == ["claude", "-p", "{prompt}"]
    assert project["repo_url"] is None
    assert project["github_url"] is None
    assert project["container_id"] is None
    assert project["created_at"] and project["updated_at"]

    got = await client.get(f"/api/projects/{project['id']}")
    assert got.status_code == 200
    assert got.json() == project

    await create(client, name="second", template="python", image="busybox:latest", runtime="local")
    listed = await client.get("/api/projects")
    assert listed.status_code == 200
    assert listed.json()["total"] == 2
    assert [p["name"] for p in listed.json()["items"]] == ["demo", "second"]
    second = listed.json()["items"][1]
    assert second["test_command"].startswith("python3 -m unittest")
    assert second["runtime"] == "local"
    assert second["image"] == "busybox:latest"


async def test_duplicate_name_is_409_and_keeps_first(client: Client) -> None:
    first = await create(client, name="dup")
    again = await client.post("/api/projects", json={"name": "dup"})
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    listed = (await client.get("/api/projects")).json()["items"]
    assert [p["id"] for p in listed] == [first["id"]]


async def test_unknown_id_is_404(client: Client) -> None:
    missing = uuid.uuid4()
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"description": "x"}} if method == "PATCH" else {}
        response = await client.request(method, f"/api/projects/{missing}", **kwargs)
        assert response.status_code == 404, (method, response.text)
        assert str(missing) in response.json()["detail"]


async def test_not_a_uuid_is_a_client_error(client: Client) -> None:
    response = await client.get("/api/projects/not-a-uuid")
    assert response.status_code in (400, 404)
    assert "detail" in response.json()


async def test_patch_renames_and_keeps_path(client: Client) -> None:
    project = await create(client, name="old")
    response = await client.patch(
        f"/api/projects/{project['id']}",
        json={"name": "new", "description": "changed", "agent_command": ["aider", "--message", "{prompt}"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "new"
    assert body["description"] == "changed"
    assert body["agent_command"] == ["aider", "--message", "{prompt}"]
    assert body["path"] == project["path"]
    assert body["test_command"] == project["test_command"]
    assert body["updated_at"] >= project["updated_at"]
    assert (await client.get(f"/api/projects/{project['id']}")).json() == body


async def test_patch_to_taken_name_is_409(client: Client) -> None:
    await create(client, name="a")
    b = await create(client, name="b")
    response = await client.patch(f"/api/projects/{b['id']}", json={"name": "a"})
    assert response.status_code == 409
    assert (await client.get(f"/api/projects/{b['id']}")).json()["name"] == "b"


@pytest.mark.settings(allow_local_runtime=True)
async def test_patch_runtime_can_be_reset_to_default(client: Client) -> None:
    project = await create(client, name="rt", runtime="local")
    response = await client.patch(f"/api/projects/{project['id']}", json={"runtime": None})
    assert response.status_code == 200
    assert response.json()["runtime"] == "docker"


async def test_delete_keeps_workspace_unless_purged(client: Client) -> None:
    kept = await create(client, name="kept")
    Path(kept["path"], "work.txt").write_text("precious")
    response = await client.delete(f"/api/projects/{kept['id']}")
    assert response.status_code == 204
    assert (await client.get(f"/api/projects/{kept['id']}")).status_code == 404
    assert Path(kept["path"], "work.txt").read_text() == "precious"

    purged = await create(client, name="purged")
    response = await client.delete(f"/api/projects/{purged['id']}", params={"purge": "true"})
    assert response.status_code == 204
    assert not Path(purged["path"]).exists()


async def test_name_of_a_kept_workspace_is_409(client: Client) -> None:
    kept = await create(client, name="again")
    await client.delete(f"/api/projects/{kept['id']}")
    response = await client.post("/api/projects", json={"name": "again"})
    assert response.status_code == 409
    assert "workspace directory" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "../x"},
        {"name": "a/b"},
        {"name": "."},
        {"name": ".."},
        {"name": "spaces not allowed"},
        {"name": "ünïcode"},
        {"name": 12},
        {"name": None},
        {"name": ["a"]},
        {"name": "ok", "unknown": 1},
        {"name": "ok", "description": 5},
        {"name": "ok", "description": "d" * 5000},
        {"name": "ok", "template": "no-such-template"},
        {"name": "ok", "template": "../etc"},
        {"name": "ok", "image": "bad image"},
        {"name": "ok", "runtime": "vm"},
        {"name": "ok", "agent_command": []},
        {"name": "ok", "agent_command": "claude -p"},
        {"name": "ok", "agent_command": [1, 2]},
        {"name": "ok", "github": {"create": "yes"}},
        {"name": "ok", "github": {"create": True, "org": "bad/org"}},
        [],
        "name",
        None,
    ],
)
async def test_bad_create_bodies_are_4xx_with_detail(client: Client, body: Any, migrated: Settings) -> None:
    response = await client.post("/api/projects", json=body)
    assert response.status_code in (400, 422), response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert (await client.get("/api/projects")).json()["items"] == []
    assert not (migrated.workspaces_dir / "ok").exists()


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", "application/json"),
        (b"{not json", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"name": "x"', "application/json"),
        (b"name=x", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_bodies_are_4xx(client: Client, content: bytes, content_type: str) -> None:
    response = await client.post("/api/projects", content=content, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{"name": "../up"}, {"name": ""}, {"unknown": True}, {"image": ""}, {"agent_command": []}, {"name": 3}, []],
)
async def test_bad_patch_bodies_are_4xx(client: Client, body: Any) -> None:
    project = await create(client, name="stable")
    response = await client.patch(f"/api/projects/{project['id']}", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]
    assert (await client.get(f"/api/projects/{project['id']}")).json() == project


async def test_bad_query_flag_is_400(client: Client) -> None:
    project = await create(client, name="flags")
    response = await client.delete(f"/api/projects/{project['id']}", params={"purge": "maybe"})
    assert response.status_code == 400
    assert (await client.get(f"/api/projects/{project['id']}")).status_code == 200


def owners(path: Path) -> set[tuple[int, int]]:
    """The (uid, gid) of the tree's every entry, links themselves included, never followed."""
    found = {(path.lstat().st_uid, path.lstat().st_gid)}
    for top, dirs, files in os.walk(path):
        for entry in (*dirs, *files):
            st = Path(top, entry).lstat()
            found.add((st.st_uid, st.st_gid))
    return found


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a workspace to uid 1000")


@needs_root
@pytest.mark.settings(allow_local_runtime=True)
async def test_a_docker_workspace_belongs_to_the_agent_user_from_creation(client: Client, logs: CapturedLogs) -> None:
    boxed = await create(client, name="boxed", template="python")
    on_host = await create(client, name="onhost", template="python", runtime="local")
    assert (Path(boxed["path"]) / ".git" / "HEAD").is_file()
    assert owners(Path(boxed["path"])) == {(1000, 1000)}  # .git included
    assert (1000, 1000) not in owners(Path(on_host["path"]))
    [handed] = logs.events("project.workspace_handed_over")
    assert handed["project_id"] == boxed["id"] and handed["path"] == boxed["path"] and handed["uid"] == 1000


@needs_root
def test_hand_over_never_follows_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "inner.txt").write_text("x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file.txt").write_text("x")
    (tree / "file-link").symlink_to(outside)
    (tree / "dir-link").symlink_to(other, target_is_directory=True)
    assert workspace.hand_over(tree, 1000, 1000) == 5  # tree, sub, file.txt and the two links themselves
    assert owners(tree) == {(1000, 1000)}
    assert (outside.stat().st_uid, other.stat().st_uid, (other / "inner.txt").stat().st_uid) == (0, 0, 0)
