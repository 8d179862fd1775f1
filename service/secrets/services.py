"""Project secrets in the database (encrypted with the service's key), and the one place
that assembles what an agent's exec environment receives: ``AgentSecrets.agent_environment``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from advanced_alchemy.exceptions import IntegrityError
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import select

from service.db.models import ProjectModel, ProjectSecretModel
from service.errors import Conflict, Invalid, NotFound
from service.logs import get_logger
from service.scaffolding.redaction import Redactor
from service.secrets.crypto import SecretBox, UndecryptableSecret
from service.secrets.envfile import load_env_file
from service.secrets.schemas import MAX_SECRET_BYTES, MAX_SECRETS, Secret, env_name_problem
from service.settings import Settings

log = get_logger(__name__)

# Shorter values are left in the text: they are no credential, and scrubbing every "1" or
# "true" of an env file would make output unreadable.
MIN_REDACTED_LENGTH = 6


def check_secret_name(name: str) -> None:
    problem = env_name_problem(name)
    if problem is not None:
        raise Invalid(f"invalid secret name: {problem}")


class SecretRepository(SQLAlchemyAsyncRepository[ProjectSecretModel]):
    model_type = ProjectSecretModel


class SecretService(SQLAlchemyAsyncRepositoryService[ProjectSecretModel, SecretRepository]):
    """The rows of one request (or of one ``agent_environment`` call). Values go in encrypted
    and come out only through ``AgentSecrets``; nothing here returns or logs one."""

    repository_type = SecretRepository

    async def get_project(self, project_id: UUID) -> ProjectModel:
        project = await self.repository.session.get(ProjectModel, project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        return project

    async def list_secrets(self, project_id: UUID) -> list[ProjectSecretModel]:
        await self.get_project(project_id)
        return await self.rows_of(project_id)

    async def rows_of(self, project_id: UUID) -> list[ProjectSecretModel]:
        rows = await self.repository.session.scalars(
            select(ProjectSecretModel)
            .where(ProjectSecretModel.project_id == project_id)
            .order_by(ProjectSecretModel.name)
        )
        return list(rows)

    async def set_secret(self, project_id: UUID, name: str, value: str, box: SecretBox) -> None:
        """Create or overwrite (its ``updated_at`` moves) the secret ``name``."""
        check_secret_name(name)
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise Invalid(f"the value of a secret is at most {MAX_SECRET_BYTES // 1024} KiB")
        await self.get_project(project_id)
        ciphertext = box.encrypt(value)
        existing = await self.get_one_or_none(project_id=project_id, name=name)
        try:
            if existing is None:
                if await self.count(project_id=project_id) >= MAX_SECRETS:
                    raise Conflict(f"a project holds at most {MAX_SECRETS} secrets: delete one first")
                await self.create(
                    ProjectSecretModel(project_id=project_id, name=name, ciphertext=ciphertext), auto_commit=True
                )
            else:
                existing.ciphertext = ciphertext
                await self.update(existing, auto_commit=True)
        except IntegrityError:  # set at the same moment by another request, or the project went
            raise Conflict(f"the secret {name} changed while it was set; try again") from None
        log.info("secret.set", project_id=str(project_id), name=name)

    async def delete_secret(self, project_id: UUID, name: str) -> None:
        check_secret_name(name)
        await self.get_project(project_id)
        existing = await self.get_one_or_none(project_id=project_id, name=name)
        if existing is None:
            raise NotFound(f"project {project_id} has no secret named {name}")
        await self.delete(existing.id, auto_commit=True)
        log.info("secret.deleted", project_id=str(project_id), name=name)


def to_schema(row: ProjectSecretModel) -> Secret:
    return Secret(name=row.name, updated_at=row.updated_at)


def secret_redactor(values: Iterable[str]) -> Redactor:
    """A ``Redactor`` of these values (and their base64 forms); values shorter than
    ``MIN_REDACTED_LENGTH`` are left alone."""
    return Redactor(value for value in values if len(value) >= MIN_REDACTED_LENGTH)


@dataclass(frozen=True, slots=True, repr=False)
class AgentEnvironment:
    """What one exec (a session, an agent step, a gate run) receives.

    ``env`` is the merged mapping: the operator's env file, then the project's ``env``, then
    its secrets (later wins). The service's own ``AGENTDOCK_*`` variables are not in it (no
    source may hold such a name): add them after. ``secret_values`` are the values to keep
    out of everything else (the env file's and the project's secrets; the project's plain
    ``env`` is not secret). ``redact`` scrubs them from text. ``repr`` shows names only."""

    env: dict[str, str]
    secret_values: frozenset[str]
    redactor: Redactor = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "redactor", secret_redactor(self.secret_values))

    def __repr__(self) -> str:
        return f"AgentEnvironment(names={sorted(self.env)!r}, secrets={len(self.secret_values)})"

    def redact(self, text: str) -> str:
        """``text`` with every secret value (and its base64 forms) replaced by ``[redacted]``."""
        if not self.secret_values:
            return text
        return self.redactor(text, limit=sys.maxsize)


class AgentSecrets:
    """One per service (``AppState.secrets``): the key, the operator's env file (read at
    start-up) and the database. Each ``agent_environment`` call opens its own short session,
    so that it serves the workflow runner and the session opener, outside any request."""

    __slots__ = ("box", "db", "env_file", "file_env")

    def __init__(
        self, db: SQLAlchemyAsyncConfig, box: SecretBox, file_env: Mapping[str, str], env_file: Path | None = None
    ) -> None:
        self.db = db
        self.box = box
        self.file_env = dict(file_env)
        self.env_file = env_file

    def __repr__(self) -> str:
        return f"AgentSecrets(box={self.box!r}, file_env={sorted(self.file_env)!r})"

    @classmethod
    def from_settings(cls, db: SQLAlchemyAsyncConfig, settings: Settings) -> AgentSecrets:
        """Check the key file if there is one (``start`` makes it where there is none) and read
        the env file; a problem with either is a ``ConfigurationError``. Logs nothing: building
        the app for ``agentdock openapi`` writes only the schema to stdout."""
        box = SecretBox(settings.secret_key_file)
        box.load(create=False)
        env_file = settings.agent_env_file
        return cls(db, box, load_env_file(env_file) if env_file is not None else {}, env_file)

    def start(self) -> None:
        """At the service's start: make the key where there is none, and say what was read."""
        self.box.load()
        if self.env_file is not None:
            log.info("agent_env.loaded", path=str(self.env_file), names=sorted(self.file_env))

    async def agent_environment(self, project_id: UUID) -> AgentEnvironment:
        """The environment of an exec for the project: ``NotFound`` for an unknown project,
        ``Conflict`` for a secret the key cannot decrypt (naming it, never a value)."""
        async with self.db.get_session() as session:
            secrets = SecretService(session=session)
            project = await secrets.get_project(project_id)
            project_env = dict(project.env or {})
            rows = await secrets.rows_of(project_id)
        project_secrets = {row.name: self._decrypt(project_id, row) for row in rows}
        env = {**self.file_env, **project_env, **project_secrets}
        return AgentEnvironment(env=env, secret_values=frozenset([*self.file_env.values(), *project_secrets.values()]))

    def _decrypt(self, project_id: UUID, row: ProjectSecretModel) -> str:
        try:
            return self.box.decrypt(row.ciphertext)
        except UndecryptableSecret:
            log.warning("secret.undecryptable", project_id=str(project_id), name=row.name)
            raise Conflict(
                f"the secret {row.name} of project {project_id} cannot be decrypted with the service's key "
                f"({self.box.path}): the key was replaced after the secret was stored. Set the secret again "
                f"(PUT /api/projects/{project_id}/secrets/{row.name}), or put the old key back"
            ) from None
