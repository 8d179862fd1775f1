"""``/api/projects/{id}/secrets``: write-only values, listed by name and time."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from advanced_alchemy.extensions.litestar.providers import create_service_dependencies
from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from service.api.openapi import errors
from service.secrets.schemas import ENV_NAME_PATTERN, Secret, SecretPut
from service.secrets.services import SecretService, to_schema
from service.state import AppState

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]
SecretName = Annotated[
    str,
    PathParameter(
        description=f"the variable's name, matching {ENV_NAME_PATTERN}; names starting with AGENTDOCK_ are the "
        "service's"
    ),
]


class ProjectSecretsController(Controller):
    path = "/api/projects/{project_id:uuid}/secrets"
    tags = ["secrets"]
    dependencies = create_service_dependencies(SecretService, key="secrets")

    @get(
        "/",
        operation_id="listSecrets",
        summary="List a project's secrets: names and times, never values",
        responses=errors(404),
    )
    async def list_secrets(self, project_id: ProjectId, secrets: NamedDependency[SecretService]) -> list[Secret]:
        return [to_schema(row) for row in await secrets.list_secrets(project_id)]

    @put(
        "/{name:str}",
        operation_id="setSecret",
        status_code=204,
        summary="Set a secret (write-only)",
        responses=errors(404),
    )
    async def set_secret(
        self,
        project_id: ProjectId,
        name: SecretName,
        data: JSONBody[SecretPut],
        secrets: NamedDependency[SecretService],
        app_state: NamedDependency[AppState],
    ) -> None:
        """Encrypted with the service's key before it is stored; it reaches only the exec
        environment of the project's sessions, agent steps and gate runs."""
        await secrets.set_secret(project_id, name, data.value, app_state.secrets.box)

    @delete("/{name:str}", operation_id="deleteSecret", responses=errors(404), summary="Delete a secret")
    async def delete_secret(
        self, project_id: ProjectId, name: SecretName, secrets: NamedDependency[SecretService]
    ) -> None:
        await secrets.delete_secret(project_id, name)
