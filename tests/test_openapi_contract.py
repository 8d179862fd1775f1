"""The OpenAPI document is a contract a front end generates its client from (issue 12):
every success typed, every error shared and documented, clean operation ids, paginated lists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.api.openapi import ERROR_RESPONSES
from service.app import create_app
from service.settings import Settings

Client = AsyncTestClient[Litestar]
METHODS = ("get", "put", "post", "delete", "patch")
OPERATION_ID = re.compile(r"^[a-z][A-Za-z]+$")

# The ids the issue names, and the rest of the routes; a new route needs an entry here.
EXPECTED_IDS = {
    ("get", "/api/health"): "getHealth",
    ("get", "/api/agents"): "listAgents",
    ("get", "/api/templates"): "listTemplates",
    ("get", "/api/workflows"): "listWorkflows",
    ("get", "/api/projects"): "listProjects",
    ("post", "/api/projects"): "createProject",
    ("get", "/api/projects/{project_id}"): "getProject",
    ("patch", "/api/projects/{project_id}"): "updateProject",
    ("delete", "/api/projects/{project_id}"): "deleteProject",
    ("get", "/api/projects/{project_id}/container"): "getContainer",
    ("post", "/api/projects/{project_id}/container/start"): "startContainer",
    ("post", "/api/projects/{project_id}/container/stop"): "stopContainer",
    ("post", "/api/projects/{project_id}/container/restart"): "restartContainer",
    ("delete", "/api/projects/{project_id}/container"): "removeContainer",
    ("get", "/api/containers"): "listContainers",
    ("post", "/api/projects/{project_id}/sessions"): "openSession",
    ("get", "/api/projects/{project_id}/sessions"): "listSessions",
    ("get", "/api/sessions/{session_id}"): "getSession",
    ("delete", "/api/sessions/{session_id}"): "closeSession",
    ("post", "/api/projects/{project_id}/workflow-runs"): "createWorkflowRun",
    ("get", "/api/projects/{project_id}/workflow-runs"): "listWorkflowRuns",
    ("get", "/api/workflow-runs/{run_id}"): "getWorkflowRun",
    ("post", "/api/workflow-runs/{run_id}/cancel"): "cancelWorkflowRun",
    ("get", "/api/projects/{project_id}/secrets"): "listSecrets",
    ("put", "/api/projects/{project_id}/secrets/{name}"): "setSecret",
    ("delete", "/api/projects/{project_id}/secrets/{name}"): "deleteSecret",
    ("post", "/api/projects/{project_id}/environment/build"): "buildEnvironment",
}
PAGED = {
    "listProjects": "ProjectPage",
    "listSessions": "SessionPage",
    "listWorkflowRuns": "RunPage",
    "listContainers": "ContainerPage",
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("contract"), api_token="x")
    result: dict[str, Any] = create_app(settings, api_token="x").openapi_schema.to_schema()
    return result


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def untyped(schema: dict[str, Any], node: Any, where: str, seen: set[str]) -> Iterator[str]:
    """Where in ``node`` a schema says nothing about its values (``{}``, an array of ``{}``, a
    bare ``object`` without properties), following ``$ref``s into the components."""
    if not isinstance(node, dict) or not node:
        yield where
        return
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in schema["components"]["schemas"]:
            yield f"{where} ($ref to a missing {name})"
        elif name not in seen:
            seen.add(name)
            yield from untyped(schema, schema["components"]["schemas"][name], name, seen)
        return
    for key in ("oneOf", "anyOf", "allOf"):
        for i, option in enumerate(node.get(key, [])):
            yield from untyped(schema, option, f"{where}.{key}[{i}]", seen)
    if any(key in node for key in ("oneOf", "anyOf", "allOf", "const", "enum")):
        return
    kind = node.get("type")
    if kind is None:
        yield where
    elif kind == "array" or (isinstance(kind, list) and "array" in kind):
        yield from untyped(schema, node.get("items"), f"{where}[]", seen)
    elif kind == "object" or (isinstance(kind, list) and "object" in kind):
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if not properties and not extra:
            yield where
        for name, value in (properties or {}).items():
            yield from untyped(schema, value, f"{where}.{name}", seen)
        if isinstance(extra, dict):
            yield from untyped(schema, extra, f"{where}{{*}}", seen)


# --- item 1: every success response is typed ---------------------------------------------------


def test_every_success_response_is_typed(schema: dict[str, Any]) -> None:
    problems = []
    for method, path, operation in operations(schema):
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert successes, f"{method.upper()} {path} documents no success"
        for code, response in successes.items():
            if code == "204":
                assert "content" not in response, f"{method.upper()} {path}: a 204 with a body"
                continue
            content = response.get("content", {})
            if not content:
                problems.append(f"{method.upper()} {path} {code}: no body schema")
            for media, entry in content.items():
                body = entry.get("schema")
                where = f"{method.upper()} {path} {code} {media}"
                if media == "application/octet-stream":  # a file's bytes: a binary string
                    if (body or {}).get("type") != "string":
                        problems.append(f"{where}: not a binary string")
                    continue
                # JSON, or NDJSON (each line's schema): typed all the way down.
                problems += [f"{where}: {at}" for at in untyped(schema, body, "body", set())]
    assert not problems, "\n".join(problems)


def test_the_untyped_check_catches_what_it_should() -> None:
    schema: dict[str, Any] = {"components": {"schemas": {"Loose": {"type": "object"}}}}
    assert list(untyped(schema, {}, "a", set())) == ["a"]
    assert list(untyped(schema, {"type": "array", "items": {}}, "a", set())) == ["a[]"]
    assert list(untyped(schema, {"$ref": "#/components/schemas/Loose"}, "a", set())) == ["Loose"]
    assert list(untyped(schema, {"type": "object", "additionalProperties": {"type": "string"}}, "a", set())) == []


def test_session_responses_are_the_session_schema(schema: dict[str, Any]) -> None:
    """advanced-alchemy puts SQLAlchemy's ``Session`` into the signature namespace."""
    paths = schema["paths"]
    opened = paths["/api/projects/{project_id}/sessions"]["post"]["responses"]["201"]
    got = paths["/api/sessions/{session_id}"]["get"]["responses"]["200"]
    for response in (opened, got):
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Session"}
    assert "command" in schema["components"]["schemas"]["Session"]["properties"]


# --- item 3: operation ids and tags -----------------------------------------------------------


def test_operation_ids_are_verb_first_and_unique(schema: dict[str, Any]) -> None:
    ids = [operation.get("operationId", "") for _, _, operation in operations(schema)]
    bad = [i for i in ids if not OPERATION_ID.match(i)]
    assert not bad, bad
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    found = {(method, path): operation["operationId"] for method, path, operation in operations(schema)}
    for key, expected in EXPECTED_IDS.items():
        assert found.get(key) == expected, (key, found.get(key))


def test_tags_are_declared_with_descriptions(schema: dict[str, Any]) -> None:
    declared = {tag["name"]: tag.get("description") for tag in schema["tags"]}
    assert all(declared.values()), declared
    used = {tag for _, _, operation in operations(schema) for tag in operation.get("tags", [])}
    assert used <= set(declared), used - set(declared)


# --- item 2: errors ---------------------------------------------------------------------------


def test_errors_are_shared_through_components_responses(schema: dict[str, Any]) -> None:
    shared = schema["components"]["responses"]
    names = {name for name, _ in ERROR_RESPONSES.values()}
    assert set(shared) <= names
    for response in shared.values():
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {"status_code", "detail"}
    for method, path, operation in operations(schema):
        for code, response in operation["responses"].items():
            if int(code) < 400 or (path, code) == ("/api/health", "503"):
                continue
            if (path, code) == ("/api/workflow-runs/{run_id}/merge", "409"):
                # An error body of its own: ErrorBody's fields and the conflicting paths.
                body = response["content"]["application/json"]["schema"]
                merge = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
                assert {"status_code", "detail", "conflicts"} <= set(merge["properties"])
                continue
            expected = f"#/components/responses/{ERROR_RESPONSES[int(code)][0]}"
            assert response == {"$ref": expected}, (method, path, code, response)


def test_each_operation_documents_the_errors_it_can_give(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        codes = {int(code) for code in operation["responses"]}
        where = f"{method.upper()} {path}"
        if path != "/api/health":
            assert 401 in codes, where
        if "{" in path:
            assert {400, 404} <= codes, where
        if "requestBody" in operation:
            assert {400, 413} <= codes, where
    paths = schema["paths"]

    def codes(method: str, path: str) -> set[int]:
        return {int(code) for code in paths[path][method]["responses"]}

    assert {409, 502} <= codes("post", "/api/projects")
    assert 409 in codes("patch", "/api/projects/{project_id}")
    assert {409, 503} <= codes("post", "/api/projects/{project_id}/container/start")
    assert 503 in codes("get", "/api/containers")
    assert {409, 503} <= codes("post", "/api/projects/{project_id}/sessions")
    assert 409 in codes("post", "/api/projects/{project_id}/workflow-runs")


def test_health_needs_no_token(schema: dict[str, Any]) -> None:
    health = schema["paths"]["/api/health"]["get"]
    assert health["security"] == []
    assert "401" not in health["responses"]
    assert health["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"
    }
    assert schema["components"]["schemas"]["Health"]["properties"]["status"]["enum"] == ["degraded", "ok"] or set(
        schema["components"]["schemas"]["Health"]["properties"]["status"]["enum"]
    ) == {"ok", "degraded"}
    assert schema["security"] == [{"BearerToken": []}]


async def test_an_error_answer_has_the_documented_shape(client: Client) -> None:
    missing = await client.get("/api/projects/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert set(missing.json()) == {"status_code", "detail"}
    invalid = await client.get("/api/projects", params={"limit": 0})
    assert invalid.status_code == 400
    assert {"status_code", "detail"} <= set(invalid.json())


# --- item 4: paginated lists ------------------------------------------------------------------


def test_lists_are_pages(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        page = PAGED.get(operation["operationId"])
        if page is None:
            continue
        body = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{page}"}, (method, path)
        assert set(schema["components"]["schemas"][page]["required"]) == {"items", "total", "limit", "offset"}
        parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert parameters["limit"]["schema"]["minimum"] == 1
        assert parameters["limit"]["schema"]["maximum"] == 500
        assert parameters["offset"]["schema"]["minimum"] == 0
    run_summary = schema["components"]["schemas"]["RunSummary"]
    step_summary = run_summary["properties"]["steps"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert "gate" not in schema["components"]["schemas"][step_summary]["properties"]


async def test_projects_are_paginated(client: Client) -> None:
    for name in ("p1", "p2", "p3"):
        assert (await client.post("/api/projects", json={"name": name})).status_code == 201
    first = (await client.get("/api/projects")).json()
    assert first["total"] == 3 and first["limit"] == 50 and first["offset"] == 0
    assert [p["name"] for p in first["items"]] == ["p1", "p2", "p3"]
    window = (await client.get("/api/projects", params={"limit": 1, "offset": 1})).json()
    assert window == {"items": [first["items"][1]], "total": 3, "limit": 1, "offset": 1}
    past = (await client.get("/api/projects", params={"offset": 10})).json()
    assert past["items"] == [] and past["total"] == 3
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}):
        assert (await client.get("/api/projects", params=params)).status_code == 400, params
    assert (await client.get("/api/projects", params={"limit": 500})).status_code == 200
