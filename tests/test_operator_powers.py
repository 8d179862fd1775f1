"""Powers over the host belong to the operator: an API client may choose the `local` runtime
or clone a host path only where the operator's settings allow it (issue 10, item 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.settings import Settings
from tests.test_scaffolding import closed_port, make_bare_repo

Client = AsyncTestClient[Litestar]


async def create(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def nothing_on_disk(settings: Settings, name: str) -> bool:
    return not (settings.workspaces_dir / name).exists()


# -- the local runtime ------------------------------------------------------------------------


@pytest.mark.settings(allow_local_runtime=False)
async def test_local_runtime_is_refused_on_create_without_the_setting(client: Client, migrated: Settings) -> None:
    response = await client.post("/api/projects", json={"name": "hostshell", "runtime": "local"})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "AGENTDOCK_ALLOW_LOCAL_RUNTIME" in detail
    assert "local runtime" in detail
    assert (await client.get("/api/projects")).json()["items"] == []
    assert nothing_on_disk(migrated, "hostshell")


@pytest.mark.settings(allow_local_runtime=False)
async def test_local_runtime_is_refused_on_patch_without_the_setting(client: Client) -> None:
    project = await create(client, name="boxed")
    response = await client.patch(f"/api/projects/{project['id']}", json={"runtime": "local", "description": "x"})
    assert response.status_code == 400, response.text
    assert "AGENTDOCK_ALLOW_LOCAL_RUNTIME" in response.json()["detail"]
    # Nothing of the refused PATCH was applied, not even its harmless fields.
    assert (await client.get(f"/api/projects/{project['id']}")).json() == project
    # The docker runtime and the service default stay open.
    for runtime in ("docker", None):
        response = await client.patch(f"/api/projects/{project['id']}", json={"runtime": runtime})
        assert response.status_code == 200, response.text
        assert response.json()["runtime"] == "docker"


@pytest.mark.settings(allow_local_runtime=True)
async def test_local_runtime_is_allowed_with_the_setting(client: Client) -> None:
    created = await create(client, name="onhost", runtime="local")
    assert created["runtime"] == "local"
    boxed = await create(client, name="boxed")
    response = await client.patch(f"/api/projects/{boxed['id']}", json={"runtime": "local"})
    assert response.status_code == 200, response.text
    assert response.json()["runtime"] == "local"


@pytest.mark.settings(runtime="local")
async def test_local_as_the_default_runtime_allows_it(client: Client, migrated: Settings) -> None:
    assert migrated.allow_local_runtime  # AGENTDOCK_RUNTIME=local is the operator's choice
    created = await create(client, name="default-local", runtime="local")
    assert created["runtime"] == "local"


# -- cloning host paths -------------------------------------------------------------------------


@pytest.mark.settings(allow_local_clone=False)
@pytest.mark.parametrize("form", ["path", "file-url"])
async def test_host_clone_is_refused_without_the_setting(
    client: Client, migrated: Settings, tmp_path: Path, form: str
) -> None:
    bare = make_bare_repo(tmp_path / "host", files={"secret.txt": "host data\n"})
    url = str(bare) if form == "path" else bare.as_uri()
    response = await client.post("/api/projects", json={"name": "grab", "repo_url": url})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "AGENTDOCK_ALLOW_LOCAL_CLONE" in detail
    assert "host data" not in detail
    assert (await client.get("/api/projects")).json()["items"] == []
    assert nothing_on_disk(migrated, "grab")
    assert not migrated.workspaces_dir.exists() or not any(migrated.workspaces_dir.iterdir())


@pytest.mark.settings(allow_local_clone=False)
async def test_remote_clones_do_not_need_the_setting(client: Client, migrated: Settings) -> None:
    """The refusal is for host paths only: an https URL goes on to the clone (here it fails to
    connect: 502, not 400)."""
    url = f"http://127.0.0.1:{closed_port()}/team/repo.git"
    response = await client.post("/api/projects", json={"name": "far", "repo_url": url})
    assert response.status_code == 502, response.text
    assert "AGENTDOCK_ALLOW_LOCAL_CLONE" not in response.json()["detail"]
    assert nothing_on_disk(migrated, "far")


@pytest.mark.settings(allow_local_clone=True)
@pytest.mark.parametrize("form", ["path", "file-url"])
async def test_host_clone_is_allowed_with_the_setting(client: Client, tmp_path: Path, form: str) -> None:
    bare = make_bare_repo(tmp_path / "host", files={"readme.txt": "cloned\n"})
    url = str(bare) if form == "path" else bare.as_uri()
    project = await create(client, name="imported", repo_url=url)
    assert project["repo_url"] == url
    assert (Path(project["path"]) / "readme.txt").read_text() == "cloned\n"


async def test_a_withdrawn_local_runtime_runs_nothing_on_the_host(migrated: Settings, tmp_path: Path) -> None:
    """A project made `local` while the operator allowed it runs nothing once the power is
    withdrawn: its sessions are refused with a detail that says why."""
    import dataclasses

    from service.app import create_app
    from tests.conftest import TOKEN

    allowed = dataclasses.replace(migrated, allow_local_runtime=True)
    async with AsyncTestClient(app=create_app(allowed)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        project = await create(client, name="waslocal", runtime="local")
        marker = tmp_path / "ran-on-host"
        opened = await client.post(
            f"/api/projects/{project['id']}/sessions", json={"command": ["/bin/sh", "-c", "true"]}
        )
        assert opened.status_code == 201, opened.text
    withdrawn = dataclasses.replace(migrated, allow_local_runtime=False)
    async with AsyncTestClient(app=create_app(withdrawn)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = await client.post(
            f"/api/projects/{project['id']}/sessions", json={"command": ["/bin/sh", "-c", f"touch {marker}"]}
        )
        assert response.status_code == 409, response.text
        assert "AGENTDOCK_ALLOW_LOCAL_RUNTIME" in response.json()["detail"]
    assert not marker.exists()
