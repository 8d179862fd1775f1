"""The OpenAPI document as a client generator wants it.

Handlers say which errors they can answer with ``responses=errors(404, 503)``; Litestar puts
those inline. ``ContractOpenAPIConfig`` then finishes the document in one place: every error
response becomes a ``$ref`` into ``components/responses`` (one per status, all with the one
``ErrorBody`` schema), Litestar's own 400 is replaced by the shared one, and by rule every operation that needs
the token documents 401, every one with parameters 400, with a path parameter 404, and with
a request body 400 and 413.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPI, Operation
from litestar.types import Method

ERROR_SCHEMA = "ErrorBody"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")

# Status → (name in components/responses, what it means here).
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is invalid: a malformed body, parameter or value; `detail` says which."),
    401: ("Unauthorized", "The API token is missing or wrong."),
    404: ("NotFound", "The resource (or the project it belongs to) does not exist."),
    409: ("Conflict", "The request conflicts with the current state (a duplicate name, a limit reached, …)."),
    413: ("PayloadTooLarge", "The request body is larger than the service accepts."),
    502: ("BadGateway", "Something outside the service (a git remote, GitHub) failed."),
    503: ("ServiceUnavailable", "A dependency the service needs (the Docker engine) does not answer."),
}


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: the status again and a human-readable ``detail`` (never a secret).
    ``extra`` carries the failing fields of a validation error."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers an operation can give besides 400/401/413 (which are added by rule)."""
    unknown = set(statuses) - set(ERROR_RESPONSES)
    if unknown:
        raise ValueError(f"no shared error response for {sorted(unknown)}")
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERROR_RESPONSES[status][1], generate_examples=False)
        for status in statuses
    }


@dataclass
class PublicOperation(Operation):
    """An operation that needs no token: ``security: []`` overrides the global requirement
    (Litestar itself writes nothing for an empty list)."""

    def __post_init__(self) -> None:
        self.security = []


def operation_id_from_name(route_handler: HTTPRouteHandler, http_method: Method, path_components: list[Any]) -> str:
    """The fallback for a handler without ``operation_id=``: its function name in camelCase
    (``list_projects`` → ``listProjects``). Handlers should still name their id explicitly."""
    head, *rest = route_handler.handler_name.split("_")
    return head + "".join(word.title() for word in rest)


@dataclass
class ContractOpenAPI(OpenAPI):
    def to_schema(self) -> dict[str, Any]:
        return finish(super().to_schema())


@dataclass
class ContractOpenAPIConfig(OpenAPIConfig):
    def to_openapi_schema(self) -> OpenAPI:
        base = super().to_openapi_schema()
        return ContractOpenAPI(**{f.name: getattr(base, f.name) for f in fields(base)})


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """Share the error responses through ``components/responses`` (see the module's docstring)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    if ERROR_SCHEMA not in schemas:
        _, found = msgspec.json.schema_components([ErrorBody], ref_template="#/components/schemas/{name}")
        schemas.update(found)
    used: set[int] = set()
    secured_globally = bool(schema.get("security"))
    for path_item in schema.get("paths", {}).values():
        for method in HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            # A handler's own error answers (``errors()``) and Litestar's 400 become shared refs;
            # a documented answer with a body of its own (health's 503) stays as it is.
            statuses = {int(code) for code, response in responses.items() if _is_error(response)}
            if operation.get("requestBody"):
                statuses |= {400, 413}
            parameters = operation.get("parameters", [])
            if parameters:
                statuses.add(400)
            if any(parameter.get("in") == "path" for parameter in parameters):
                statuses.add(404)  # the resource the path names may not exist
            if secured_globally and operation.get("security") != []:
                statuses.add(401)
            for status in sorted(statuses):
                if str(status) in responses and not _is_error(responses[str(status)]):
                    continue
                responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
                used.add(status)
            operation["responses"] = dict(sorted(responses.items()))
    shared = components.setdefault("responses", {})
    for status in sorted(used):
        name, description = ERROR_RESPONSES[status]
        shared[name] = {
            "description": f"{HTTPStatus(status).phrase}. {description}",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}},
        }
    return schema


def _is_error(response: dict[str, Any]) -> bool:
    """An error answer to share: the ``ErrorBody`` schema, or Litestar's generated 400."""
    body = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(
        body.get("$ref") == f"#/components/schemas/{ERROR_SCHEMA}" or body.get("description") == "Validation Exception"
    )
