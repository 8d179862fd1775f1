"""Project env, project secrets (write-only, encrypted at rest), the operator's agent env
file, and the environment an agent's exec receives."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.errors import ConfigurationError, Conflict, NotFound
from service.secrets.envfile import load_env_file, parse_env
from service.secrets.services import AgentEnvironment, AgentSecrets
from service.settings import Settings
from tests.conftest import TOKEN, CapturedLogs

Client = AsyncTestClient[Litestar]

# Long and unlike anything else, so that a find in bytes means a leak.
SECRET = "sk-ant-api03-TOPSECRET-5b0c1d2e3f4a5b6c7d8e9f"
OTHER_SECRET = "ghp_OTHERSECRET_0123456789abcdefABCDEF"
FILE_SECRET = "sk-ant-FROMTHEFILE-a1b2c3d4e5f6"


async def create(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def secrets_of(client: Client) -> AgentSecrets:
    app = client.app
    assert isinstance(app, Litestar)
    result: AgentSecrets = app.state.agentdock.secrets
    return result


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent.env"
    path.write_text(f"# the operator's credentials\nANTHROPIC_API_KEY={FILE_SECRET}\nSHARED=from-file\nFILE_ONLY=1\n")
    path.chmod(0o600)
    return path


@pytest.fixture
async def env_client(migrated: Settings, env_file: Path) -> AsyncIterator[Client]:
    """A client of an app whose operator named an agent env file."""
    settings = dataclasses.replace(migrated, agent_env_file=env_file)
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


# --- the API -----------------------------------------------------------------------------


async def test_set_list_overwrite_delete(client: Client) -> None:
    project = await create(client, name="demo")
    base = f"/api/projects/{project['id']}/secrets"
    assert (await client.get(base)).json() == []

    put = await client.put(f"{base}/ANTHROPIC_API_KEY", json={"value": SECRET})
    assert put.status_code == 204, put.text
    assert put.content == b""
    assert (await client.put(f"{base}/GITHUB_TOKEN", json={"value": OTHER_SECRET})).status_code == 204

    listed = await client.get(base)
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()] == ["ANTHROPIC_API_KEY", "GITHUB_TOKEN"]
    assert all(set(s) == {"name", "updated_at"} for s in listed.json())
    first_time = listed.json()[0]["updated_at"]

    again = await client.put(f"{base}/ANTHROPIC_API_KEY", json={"value": SECRET + "-rotated"})
    assert again.status_code == 204
    relisted = (await client.get(base)).json()
    assert [s["name"] for s in relisted] == ["ANTHROPIC_API_KEY", "GITHUB_TOKEN"]
    assert relisted[0]["updated_at"] > first_time
    environment = await secrets_of(client).agent_environment(uuid.UUID(project["id"]))
    assert environment.env["ANTHROPIC_API_KEY"] == SECRET + "-rotated"

    deleted = await client.delete(f"{base}/GITHUB_TOKEN")
    assert deleted.status_code == 204
    assert [s["name"] for s in (await client.get(base)).json()] == ["ANTHROPIC_API_KEY"]
    gone = await client.delete(f"{base}/GITHUB_TOKEN")
    assert gone.status_code == 404
    assert "GITHUB_TOKEN" in gone.json()["detail"]


async def test_unknown_project_is_404(client: Client) -> None:
    missing = uuid.uuid4()
    base = f"/api/projects/{missing}/secrets"
    for response in (
        await client.get(base),
        await client.put(f"{base}/A_KEY", json={"value": "x"}),
        await client.delete(f"{base}/A_KEY"),
    ):
        assert response.status_code == 404, response.text
        assert str(missing) in response.json()["detail"]


@pytest.mark.parametrize(
    "name", ["lower", "9LIVES", "WITH-DASH", "A" * 65, "AGENTDOCK_PROJECT_ID", "AGENTDOCK_", "ÄPFEL"]
)
async def test_bad_names_are_400(client: Client, name: str) -> None:
    project = await create(client, name="demo")
    base = f"/api/projects/{project['id']}/secrets"
    for response in (
        await client.put(f"{base}/{name}", json={"value": SECRET}),
        await client.delete(f"{base}/{name}"),
    ):
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "secret name" in detail
        assert "A-Z" in detail or "AGENTDOCK_" in detail
        assert SECRET not in response.text
    assert (await client.get(base)).json() == []


async def test_longest_name_is_fine(client: Client) -> None:
    project = await create(client, name="demo")
    name = "_" + "A9" * 31 + "Z"
    assert len(name) == 64
    assert (await client.put(f"/api/projects/{project['id']}/secrets/{name}", json={"value": "v"})).status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"value": 42},
        {"value": None},
        {"value": SECRET, "extra": 1},
        {"value": "x" * (64 * 1024 + 1)},
        {"value": "é" * (32 * 1024 + 1)},  # under 64 Ki characters, over 64 KiB
    ],
)
async def test_bad_bodies_are_400_and_never_echo_the_value(client: Client, body: dict[str, Any]) -> None:
    project = await create(client, name="demo")
    response = await client.put(f"/api/projects/{project['id']}/secrets/KEY", json=body)
    assert response.status_code == 400, response.text
    assert "detail" in response.json()
    if isinstance(body.get("value"), str):
        assert body["value"][:64] not in response.text
    assert (await client.get(f"/api/projects/{project['id']}/secrets")).json() == []


async def test_value_of_64_kib_is_accepted(client: Client) -> None:
    project = await create(client, name="demo")
    value = "v" * (64 * 1024)
    response = await client.put(f"/api/projects/{project['id']}/secrets/BIG", json={"value": value})
    assert response.status_code == 204
    environment = await secrets_of(client).agent_environment(uuid.UUID(project["id"]))
    assert environment.env["BIG"] == value


# --- never visible -------------------------------------------------------------------------


async def test_value_is_encrypted_at_rest_and_never_shown(
    logs: CapturedLogs, client: Client, migrated: Settings
) -> None:
    project = await create(client, name="demo")
    base = f"/api/projects/{project['id']}/secrets"
    responses = [
        await client.put(f"{base}/ANTHROPIC_API_KEY", json={"value": SECRET}),
        await client.get(base),
        await client.get(f"/api/projects/{project['id']}"),
        await client.get("/api/projects"),
        await client.put(f"{base}/ANTHROPIC_API_KEY", json={"value": SECRET}),
        await client.put(f"{base}/bad-name", json={"value": SECRET}),
        await client.put(f"{base}/TOO_BIG", json={"value": SECRET * 2000}),
        await client.get("/schema/openapi.json"),
    ]
    for response in responses:
        assert SECRET not in response.text
        assert SECRET not in json.dumps(dict(response.headers))

    # The database's bytes (the WAL too, where a recent write may still sit) hold no trace of it.
    data = migrated.data_dir
    stored = b"".join(path.read_bytes() for path in data.glob("agentdock.db*"))
    assert b"ANTHROPIC_API_KEY" in stored  # the name is stored, so the file is the right one
    for form in (SECRET.encode(), SECRET.encode("utf-16-le"), SECRET[8:24].encode()):
        assert form not in stored

    # Nor does the log: every event, with every field, as the renderer would see it.
    logged = json.dumps(list(logs), default=str)
    assert SECRET not in logged
    [event] = [e for e in logs.events("secret.set") if e["name"] == "ANTHROPIC_API_KEY"][:1]
    assert set(event) - {"event", "log_level", "timestamp", "request_id"} == {"project_id", "name"}
    assert event["project_id"] == project["id"]

    # Yet it is stored: the agent's environment has it.
    environment = await secrets_of(client).agent_environment(uuid.UUID(project["id"]))
    assert environment.env["ANTHROPIC_API_KEY"] == SECRET
    assert SECRET not in repr(environment)
    assert SECRET not in repr(secrets_of(client))


async def test_delete_is_logged_with_ids_only(logs: CapturedLogs, client: Client) -> None:
    project = await create(client, name="demo")
    base = f"/api/projects/{project['id']}/secrets"
    await client.put(f"{base}/KEY", json={"value": SECRET})
    assert (await client.delete(f"{base}/KEY")).status_code == 204
    [event] = logs.events("secret.deleted")
    assert (event["project_id"], event["name"]) == (project["id"], "KEY")
    assert SECRET not in json.dumps(list(logs), default=str)


async def test_secrets_are_deleted_with_their_project(client: Client, migrated: Settings) -> None:
    keep = await create(client, name="keep")
    drop = await create(client, name="drop")
    for project in (keep, drop):
        for name in ("ONE", "TWO"):
            put = await client.put(f"/api/projects/{project['id']}/secrets/{name}", json={"value": SECRET})
            assert put.status_code == 204
    assert (await client.delete(f"/api/projects/{drop['id']}")).status_code == 204

    with sqlite3.connect(migrated.data_dir / "agentdock.db") as conn:
        rows = conn.execute("SELECT project_id, name FROM project_secret ORDER BY name").fetchall()
    assert [(str(uuid.UUID(bytes=row[0])), row[1]) for row in rows] == [(keep["id"], "ONE"), (keep["id"], "TWO")]
    assert (await client.get(f"/api/projects/{drop['id']}/secrets")).status_code == 404
    with pytest.raises(NotFound):
        await secrets_of(client).agent_environment(uuid.UUID(drop["id"]))


# --- the key ---------------------------------------------------------------------------------


async def test_key_file_is_made_at_first_start_with_mode_0600(migrated: Settings) -> None:
    key_file = migrated.secret_key_file
    app = create_app(migrated)
    assert not key_file.exists()  # building the app (e.g. `agentdock openapi`) makes no key
    async with AsyncTestClient(app=app):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_bytes()
        Fernet(key.strip())  # a valid key
    key_file.chmod(0o644)
    async with AsyncTestClient(app=create_app(migrated)):
        assert key_file.read_bytes() == key  # read back, not replaced
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_a_value_stored_under_another_key_is_a_clear_409(client: Client, migrated: Settings) -> None:
    project = await create(client, name="demo")
    await client.put(f"/api/projects/{project['id']}/secrets/ANTHROPIC_API_KEY", json={"value": SECRET})
    migrated.secret_key_file.write_bytes(Fernet.generate_key() + b"\n")  # the key was replaced
    async with AsyncTestClient(app=create_app(migrated)) as other:
        other.headers["Authorization"] = f"Bearer {TOKEN}"
        assert [s["name"] for s in (await other.get(f"/api/projects/{project['id']}/secrets")).json()] == [
            "ANTHROPIC_API_KEY"
        ]
        with pytest.raises(Conflict) as caught:
            await secrets_of(other).agent_environment(uuid.UUID(project["id"]))
    assert caught.value.status_code == 409
    assert "ANTHROPIC_API_KEY" in caught.value.detail
    assert "key" in caught.value.detail
    assert SECRET not in caught.value.detail


def test_a_damaged_key_file_is_a_configuration_error(migrated: Settings) -> None:
    migrated.secret_key_file.parent.mkdir(parents=True, exist_ok=True)
    migrated.secret_key_file.write_text("not a key\n")
    with pytest.raises(ConfigurationError, match="secret-key"):
        create_app(migrated)


# --- the agent env file --------------------------------------------------------------------------


def test_env_file_syntax() -> None:
    text = "\n".join(
        [
            "# a comment",
            "   # an indented comment",
            "",
            "PLAIN=value",
            "SPACED =  padded value  ",
            "export EXPORTED=yes",
            "export   MANY_SPACES=1",
            'DOUBLE="a \\"quote\\", a\\nnewline, a \\\\ and a # too"  # a comment',
            "INLINE=value # a comment",
            "HASH=abc#def",
            "EMPTY=",
            "EMPTY_QUOTES=''",
            "EQUALS=a=b=c",
            "PLAIN=again",
            "_UNDER_9=ok",
        ]
    )
    assert parse_env(text) == {
        "PLAIN": "again",
        "SPACED": "padded value",
        "EXPORTED": "yes",
        "MANY_SPACES": "1",
        "DOUBLE": 'a "quote", a\nnewline, a \\ and a # too',
        "INLINE": "value",
        "HASH": "abc#def",
        "EMPTY": "",
        "EMPTY_QUOTES": "",
        "EQUALS": "a=b=c",
        "_UNDER_9": "ok",
    }


def test_env_file_single_quotes_are_literal() -> None:
    assert parse_env("A='x \\n $Y # z'\n") == {"A": "x \\n $Y # z"}
    assert parse_env("A='x' # note\r\nB=2\r\n") == {"A": "x", "B": "2"}


@pytest.mark.parametrize(
    ("lines", "line", "why"),
    [
        ([FILE_SECRET], 1, "NAME=value"),
        (["OK=1", f"lower={FILE_SECRET}"], 2, "A-Z"),
        (["OK=1", "", f"9A={FILE_SECRET}"], 3, "A-Z"),
        ([f"AGENTDOCK_API_TOKEN={FILE_SECRET}"], 1, "reserved"),
        ([f"KEY='{FILE_SECRET}"], 1, "not closed"),
        ([f'KEY="{FILE_SECRET}'], 1, "not closed"),
        ([f"KEY='{FILE_SECRET}' trailing"], 1, "after the closing quote"),
        ([f"{FILE_SECRET}=value"], 1, "A-Z"),
        (["# fine", f"export {FILE_SECRET}"], 2, "NAME=value"),
    ],
)
def test_bad_env_file_names_the_line_never_its_value(tmp_path: Path, lines: list[str], line: int, why: str) -> None:
    path = tmp_path / "agent.env"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigurationError) as caught:
        load_env_file(path)
    message = str(caught.value)
    assert f"line {line}:" in message
    assert why in message
    assert str(path) in message
    assert "AGENTDOCK_AGENT_ENV_FILE" in message
    assert FILE_SECRET not in message
    assert FILE_SECRET[:12] not in message


def test_env_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_env_file(tmp_path / "missing.env")
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"KEY=\xff\xfe\n")
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_env_file(binary)


def test_env_file_setting(tmp_path: Path, env_file: Path) -> None:
    settings = Settings.from_env({"AGENTDOCK_DATA_DIR": str(tmp_path / "d"), "AGENTDOCK_AGENT_ENV_FILE": str(env_file)})
    assert settings.agent_env_file == env_file
    assert Settings.from_env({"AGENTDOCK_DATA_DIR": str(tmp_path / "d")}).agent_env_file is None
    assert settings.secret_key_file == tmp_path / "d" / "secret-key"


def test_a_bad_env_file_stops_the_start(migrated: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text(f"GOOD=1\n{FILE_SECRET}\n")
    with pytest.raises(ConfigurationError, match="line 2") as caught:
        create_app(dataclasses.replace(migrated, agent_env_file=path))
    assert FILE_SECRET not in str(caught.value)
    with pytest.raises(ConfigurationError, match="cannot read"):
        create_app(dataclasses.replace(migrated, agent_env_file=tmp_path / "missing.env"))


# --- the environment an exec receives ------------------------------------------------------------


async def test_agent_environment_precedence_and_redaction(logs: CapturedLogs, env_client: Client) -> None:
    project = await create(
        env_client, name="demo", env={"SHARED": "from-env", "PROJECT_SETTING": "plain", "OVERRIDDEN": "from-env"}
    )
    base = f"/api/projects/{project['id']}/secrets"
    await env_client.put(f"{base}/OVERRIDDEN", json={"value": SECRET})
    await env_client.put(f"{base}/GITHUB_TOKEN", json={"value": OTHER_SECRET})

    # Called as the workflow runner and the session opener do: no request around it.
    environment = await secrets_of(env_client).agent_environment(uuid.UUID(project["id"]))
    assert isinstance(environment, AgentEnvironment)
    assert environment.env == {
        "ANTHROPIC_API_KEY": FILE_SECRET,  # the env file
        "FILE_ONLY": "1",
        "SHARED": "from-env",  # the project's env over the file
        "PROJECT_SETTING": "plain",
        "OVERRIDDEN": SECRET,  # a secret over the project's env
        "GITHUB_TOKEN": OTHER_SECRET,
    }
    # The env file's values and the project's secrets; not the plain env.
    assert environment.secret_values == frozenset({FILE_SECRET, "from-file", "1", SECRET, OTHER_SECRET})

    text = f"key={FILE_SECRET} token {OTHER_SECRET}\nvalue: {SECRET}; setting plain, 1 file from-file"
    redacted = environment.redact(text)
    for value in (FILE_SECRET, SECRET, OTHER_SECRET):
        assert value not in redacted
    assert redacted.count("[redacted]") == 4
    assert "setting plain, 1 file" in redacted  # too short to be a credential: left alone
    long_output = "x" * 10_000 + SECRET
    assert environment.redact(long_output) == "x" * 10_000 + "[redacted]"  # never cut short

    # Another project sees the file's values only.
    other = await create(env_client, name="other")
    plain = await secrets_of(env_client).agent_environment(uuid.UUID(other["id"]))
    assert plain.env == {"ANTHROPIC_API_KEY": FILE_SECRET, "SHARED": "from-file", "FILE_ONLY": "1"}
    assert plain.redact("nothing secret") == "nothing secret"

    [loaded] = logs.events("agent_env.loaded")
    assert loaded["names"] == ["ANTHROPIC_API_KEY", "FILE_ONLY", "SHARED"]
    assert FILE_SECRET not in json.dumps(list(logs), default=str)


async def test_agent_environment_of_an_unknown_project(client: Client) -> None:
    with pytest.raises(NotFound):
        await secrets_of(client).agent_environment(uuid.uuid4())


# --- the project's plain env ---------------------------------------------------------------------


async def test_project_env_round_trip(client: Client) -> None:
    project = await create(client, name="demo")
    assert project["env"] == {}
    made = await create(client, name="with-env", env={"NODE_ENV": "test", "EMPTY": ""})
    assert made["env"] == {"NODE_ENV": "test", "EMPTY": ""}
    assert (await client.get(f"/api/projects/{made['id']}")).json()["env"] == made["env"]

    patched = await client.patch(f"/api/projects/{made['id']}", json={"env": {"ONLY": "this"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["env"] == {"ONLY": "this"}  # PATCH replaces the mapping
    other_field = await client.patch(f"/api/projects/{made['id']}", json={"description": "x"})
    assert other_field.json()["env"] == {"ONLY": "this"}  # left out: unchanged
    cleared = await client.patch(f"/api/projects/{made['id']}", json={"env": {}})
    assert cleared.json()["env"] == {}
    listed = (await client.get("/api/projects")).json()["items"]
    assert {p["name"]: p["env"] for p in listed} == {"demo": {}, "with-env": {}}


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"lower": "x"}, "env"),
        ({"1ABC": "x"}, "env"),
        ({"A" * 65: "x"}, "env"),
        ({"AGENTDOCK_PROJECT_ID": "x"}, "AGENTDOCK_PROJECT_ID is reserved"),
        ({"BIG": "x" * (8 * 1024 + 1)}, "env"),
        ({"WIDE": "é" * (4 * 1024 + 1)}, "over 8 KiB"),
        ({f"K{i}": "v" for i in range(101)}, "env"),
        ({"K": 1}, "env"),
        ([["K", "v"]], "env"),
    ],
)
async def test_project_env_is_validated(client: Client, env: Any, why: str) -> None:
    created = await client.post("/api/projects", json={"name": "demo", "env": env})
    assert created.status_code == 400, created.text
    assert why in json.dumps(created.json())
    project = await create(client, name="ok")
    patched = await client.patch(f"/api/projects/{project['id']}", json={"env": env})
    assert patched.status_code == 400, patched.text
    assert (await client.get(f"/api/projects/{project['id']}")).json()["env"] == {}


async def test_project_env_at_its_limits(client: Client) -> None:
    env = {f"K{i}": "v" for i in range(99)} | {"LONGEST": "x" * 8 * 1024}
    project = await create(client, name="demo", env=env)
    assert project["env"] == env


def run_openapi(tmp_path: Path, env_file: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTDOCK_")},
        "AGENTDOCK_DATA_DIR": str(tmp_path / "data"),
        "AGENTDOCK_AGENT_ENV_FILE": str(env_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "service", "openapi"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_cli_reads_the_env_file_and_writes_only_the_schema(tmp_path: Path, env_file: Path) -> None:
    result = run_openapi(tmp_path, env_file)
    assert result.returncode == 0, result.stderr
    assert "/api/projects/{project_id}/secrets" in json.loads(result.stdout)["paths"]
    assert not (tmp_path / "data" / "secret-key").exists()


def test_a_bad_env_file_is_a_clear_cli_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text(f"GOOD=1\nexport {FILE_SECRET}\n")
    result = run_openapi(tmp_path, path)
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "line 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert FILE_SECRET not in result.stderr + result.stdout


def test_openapi_shapes_of_secrets(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_token="x")
    schema = create_app(settings, api_token="x").openapi_schema.to_schema()
    paths = schema["paths"]
    assert set(paths["/api/projects/{project_id}/secrets"]) >= {"get"}
    assert set(paths["/api/projects/{project_id}/secrets/{name}"]) >= {"put", "delete"}
    assert "204" in paths["/api/projects/{project_id}/secrets/{name}"]["put"]["responses"]
    assert "204" in paths["/api/projects/{project_id}/secrets/{name}"]["delete"]["responses"]
    components = schema["components"]["schemas"]
    assert set(components["Secret"]["properties"]) == {"name", "updated_at"}
    assert components["SecretPut"]["properties"]["value"]["maxLength"] == 64 * 1024
    assert "env" in components["Project"]["required"]
    assert not settings.secret_key_file.exists()
