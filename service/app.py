"""The Litestar application, assembled from small ``_configure_*`` steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from service import __version__
from service.agents.controllers import AgentsController
from service.api.asyncapi import asyncapi_schema
from service.api.openapi import ContractOpenAPIConfig, operation_id_from_name
from service.auth import LOCALHOST_ORIGIN, require_token
from service.containers.controllers import ContainersController, ProjectContainerController
from service.db.config import database_config
from service.docker.engine import DockerEngine
from service.health.controllers import HealthController
from service.logs import configure_logging, get_logger
from service.metrics.controllers import metrics
from service.projects.controllers import ProjectController
from service.runtimes.build_controllers import EnvironmentController, environment_events
from service.scaffolding.controllers import TemplateController
from service.secrets.controllers import ProjectSecretsController
from service.sessions.controllers import ProjectSessionsController, SessionsController
from service.settings import Settings, ensure_api_token
from service.state import AppState, provide_app_state
from service.terminal.websocket import terminal
from service.web import EXCEPTION_HANDLERS, RequestContextMiddleware
from service.workflows.controllers import ProjectRunsController, RunsController, WorkflowsController, run_events
from service.workspace.controllers import ProjectExecController, ProjectFilesController

log = get_logger("service.app")


TAGS = [
    Tag(name="health", description="Whether the service, its database and the Docker engine answer."),
    Tag(name="projects", description="Projects: a workspace, its settings and its environment."),
    Tag(name="containers", description="Each project's persistent Docker container, read from Docker."),
    Tag(name="environment", description="Building a project's own environment image."),
    Tag(
        name="sessions",
        description="Programs under a pseudo-terminal, watched and typed into over WS /api/terminal/{id}.",
    ),
    Tag(name="workflows", description="Test-gated workflow runs (tdd: red, green, refactor, commit)."),
    Tag(name="secrets", description="Write-only per-project secrets, given to the project's processes only."),
    Tag(name="templates", description="The templates a project is created from."),
    Tag(name="agents", description="The agent presets a project may choose."),
    Tag(name="workspace", description="A project's files and one-off commands, done inside its environment."),
]


def _openapi_config() -> OpenAPIConfig:
    """Finished by ``ContractOpenAPIConfig``: shared error responses, 401/413 by rule."""
    return ContractOpenAPIConfig(
        title="agentdock",
        version=__version__,
        description="Persistent development containers, PTY sessions and test-gated agent workflows.",
        use_handler_docstrings=True,
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", description="the API token"),
            }
        ),
        security=[{"BearerToken": []}],
        tags=TAGS,
        operation_id_creator=operation_id_from_name,
        render_plugins=[],
    )


def _cors_config(settings: Settings) -> CORSConfig:
    """The configured origins, or by default any localhost origin (a front end's dev server)."""
    if settings.allowed_origins:
        return CORSConfig(allow_origins=list(settings.allowed_origins), allow_headers=["*"], allow_methods=["*"])
    return CORSConfig(
        allow_origins=[], allow_origin_regex=LOCALHOST_ORIGIN.pattern, allow_headers=["*"], allow_methods=["*"]
    )


def _lifespan(app_state: AppState) -> Any:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        log.info(
            "service.started",
            runtime=app_state.settings.runtime,
            data_dir=str(app_state.settings.data_dir),
        )
        app_state.secrets.start()  # the secret key is made at first start
        await app_state.startup()
        try:
            yield
        finally:
            await app_state.shutdown()
            log.info("service.stopped")

    return lifespan


def create_app(settings: Settings | None = None, *, api_token: str | None = None) -> Litestar:
    """Build the app. Migrations are not applied here: ``agentdock serve`` applies them first.

    ``api_token`` overrides the settings' token (``agentdock openapi`` passes one so that
    writing the schema creates no token file).
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    token = api_token
    if token is None:
        token, from_file = ensure_api_token(settings)
        if from_file:
            log.info("auth.token_file", token_path=str(settings.token_file))
    db = database_config(settings)
    app_state = AppState(settings=settings, api_token=token, db=db, docker=DockerEngine())
    return Litestar(
        route_handlers=[
            HealthController,
            asyncapi_schema,
            AgentsController,
            ProjectController,
            ProjectSecretsController,
            ProjectContainerController,
            EnvironmentController,
            environment_events,
            ContainersController,
            TemplateController,
            ProjectSessionsController,
            SessionsController,
            terminal,
            WorkflowsController,
            ProjectRunsController,
            RunsController,
            run_events,
            ProjectFilesController,
            ProjectExecController,
            metrics,
        ],
        plugins=[SQLAlchemyPlugin(config=db)],
        dependencies={"app_state": Provide(provide_app_state, sync_to_thread=False)},
        guards=[require_token],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestContextMiddleware],
        cors_config=_cors_config(settings),
        openapi_config=_openapi_config(),
        lifespan=[_lifespan(app_state)],
        state=State(
            {"agentdock": app_state, "api_token": app_state.api_token, "metrics_token": settings.metrics_token}
        ),
        debug=False,
        logging_config=None,  # structlog is configured once in service.logs
    )
