"""The WebSocket protocols as an AsyncAPI 3 document, generated from the structs the sockets
use: served, written by the CLI, and in step with what the sockets really send."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.asyncapi import asyncapi_document
from service.cli import main
from service.runtimes.build.manager import BuildEvent
from service.sessions.schemas import ErrorFrame, InputMessage, OutputFrame, ResizeMessage, StatusFrame
from service.workflows.schemas import Run, RunEvent

Client = AsyncTestClient[Litestar]


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def test_every_channel_message_and_operation_resolves() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {"terminal", "runEvents", "environmentEvents"}
    for channel in document["channels"].values():
        for message in channel["messages"].values():
            payload = resolve(document, message["$ref"])["payload"]
            assert resolve(document, payload["$ref"])["type"] == "object"
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")
        for message in operation["messages"]:
            assert resolve(document, message["$ref"])
    terminal = document["channels"]["terminal"]["messages"]
    assert {"terminalInput", "terminalInterrupt", "terminalResize", "terminalOutput", "terminalStatus"} <= set(terminal)


def test_what_the_sockets_send_matches_the_schemas() -> None:
    """Each message as the service encodes it: its keys are the schema's properties, its
    required ones are there, and its discriminator is the schema's constant."""
    document = asyncapi_document()
    schemas = document["components"]["schemas"]
    run: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "project_id": str(uuid.uuid4()),
        "workflow": "tdd",
        "task": "t",
        "state": "running",
        "reason": None,
        "max_attempts": 3,
        "step_timeout_s": 1.0,
        "idle_timeout_s": 60.0,
        "branch": None,
        "commit_sha": None,
        "pull_request_url": None,
        "steps": [],
        "created_at": datetime.now(UTC).isoformat(),
        "updated_at": datetime.now(UTC).isoformat(),
    }
    samples = [
        InputMessage(data="ls"),
        ResizeMessage(cols=80, rows=24),
        OutputFrame(data="x"),
        StatusFrame(state="exited", exit_code=0),
        ErrorFrame(message="no"),
        RunEvent(change="snapshot", run=msgspec.convert(run, type=Run)),
        BuildEvent(build_id=uuid.uuid4(), state="running"),
    ]
    for sample in samples:
        encoded = json.loads(msgspec.json.encode(sample))
        schema = schemas[type(sample).__name__]
        assert set(encoded) <= set(schema["properties"]), type(sample).__name__
        assert set(schema.get("required", [])) <= set(encoded), type(sample).__name__
        assert schema["properties"]["type"]["enum"] == [encoded["type"]]


async def test_it_is_served_with_the_token(client: Client) -> None:
    served = await client.get("/schema/asyncapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(asyncapi_document()))
    del client.headers["Authorization"]
    assert (await client.get("/schema/asyncapi.json")).status_code == 401


def test_the_cli_writes_it(tmp_path: Path) -> None:
    assert main(["asyncapi", str(tmp_path / "out" / "asyncapi.json")]) == 0
    assert json.loads((tmp_path / "out" / "asyncapi.json").read_text())["asyncapi"] == "3.0.0"
