"""Contract tests of the API shapes: msgspec round trips and their OpenAPI schemas."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from service.app import create_app
from service.projects.schemas import NAME_PATTERN, Project, ProjectCreate, ProjectUpdate
from service.settings import Settings


def test_project_round_trip() -> None:
    project = Project(
        id=uuid.uuid4(),
        name="demo",
        description="",
        path="/data/workspaces/demo",
        template="python",
        repo_url=None,
        github_url="https://github.com/o/demo",
        image="agentdock-base:latest",
        runtime="docker",
        test_command="python3 -m unittest",
        agent_command=["claude", "-p", "{prompt}"],
        agent="claude",
        test_patterns=["tests/**"],
        parallel_runs=1,
        env={"NODE_ENV": "test"},
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
        container_id=None,
    )
    encoded = msgspec.json.encode(project)
    assert msgspec.json.decode(encoded, type=Project) == project
    as_dict = msgspec.json.decode(encoded)
    assert isinstance(as_dict["id"], str)
    assert as_dict["container_id"] is None


def test_create_defaults_and_unknown_fields() -> None:
    create = msgspec.json.decode(b'{"name": "x"}', type=ProjectCreate)
    assert create.template == "blank"
    assert create.github is None
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"name": "x", "nope": 1}', type=ProjectCreate)


def test_update_distinguishes_absent_from_null() -> None:
    update = msgspec.json.decode(b'{"runtime": null}', type=ProjectUpdate)
    assert update.runtime is None
    assert update.name is msgspec.UNSET


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("A.b_c-9", True),
        (".hidden", True),
        ("..x", True),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a b", False),
        ("", False),
    ],
)
def test_name_pattern(name: str, ok: bool) -> None:
    assert bool(re.match(NAME_PATTERN, name)) is ok


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("schema"), api_token="x")
    result: dict[str, Any] = create_app(settings, api_token="x").openapi_schema.to_schema()
    return result


def test_openapi_project_shape(schema: dict[str, Any]) -> None:
    project = schema["components"]["schemas"]["Project"]
    assert set(project["required"]) == {
        "id",
        "name",
        "description",
        "path",
        "template",
        "repo_url",
        "github_url",
        "image",
        "runtime",
        "test_command",
        "agent_command",
        "agent",
        "test_patterns",
        "parallel_runs",
        "env",
        "created_at",
        "updated_at",
        "container_id",
    }
    assert project["properties"]["id"]["format"] == "uuid"
    assert project["properties"]["created_at"]["format"] == "date-time"


def test_openapi_create_shape(schema: dict[str, Any]) -> None:
    create = schema["components"]["schemas"]["ProjectCreate"]
    assert create["required"] == ["name"]
    name = create["properties"]["name"]
    assert (name["minLength"], name["maxLength"], name["pattern"]) == (1, 64, NAME_PATTERN)
    assert "ProjectUpdate" in schema["components"]["schemas"]


def test_openapi_paths_and_security(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert set(paths["/api/projects"]) >= {"get", "post"}
    assert set(paths["/api/projects/{project_id}"]) >= {"get", "patch", "delete"}
    assert "201" in paths["/api/projects"]["post"]["responses"]
    assert "204" in paths["/api/projects/{project_id}"]["delete"]["responses"]
    params = {p["name"] for p in paths["/api/projects/{project_id}"]["delete"]["parameters"]}
    assert {"project_id", "remove_container", "purge"} <= params
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    assert set(paths["/api/health"]["get"]["responses"]) >= {"200", "503"}
