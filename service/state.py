"""What the app owns for its lifetime, in one typed place (``app.state.agentdock``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.datastructures import State

from service.actors.messages import ContainerEvent, Reconcile
from service.actors.policy import RestartPolicy
from service.actors.registry import SupervisorRegistry
from service.actors.store import ProjectStore
from service.docker.engine import DockerEngine
from service.docker.events import DockerEventsListener
from service.errors import AppError
from service.git.host import Author
from service.logs import get_logger
from service.metrics.collector import AppMetrics
from service.runtimes.build import BuildManager
from service.runtimes.docker import MANAGED_LABEL, PROJECT_LABEL, DockerRuntime
from service.secrets.services import AgentSecrets
from service.sessions.store import SessionStore
from service.settings import Settings
from service.workflows.engine import WorkflowServices
from service.workflows.events import RunEvents
from service.workflows.publish import GitHubPublisher
from service.workflows.store import RunStore

log = get_logger(__name__)


class AppState:
    """A plain class, not a dataclass: Litestar passes it to handlers as an opaque value."""

    __slots__ = (
        "api_token",
        "builds",
        "db",
        "docker",
        "docker_runtime",
        "events",
        "metrics",
        "registry",
        "run_events",
        "runs",
        "secrets",
        "settings",
    )

    def __init__(self, *, settings: Settings, api_token: str, db: SQLAlchemyAsyncConfig, docker: DockerEngine) -> None:
        self.settings = settings
        self.api_token = api_token
        self.db = db
        self.secrets = AgentSecrets.from_settings(db, settings)  # agent_environment(project_id)
        self.docker = docker
        self.docker_runtime = DockerRuntime(docker, settings)
        self.runs = RunStore(db)
        self.run_events = RunEvents()
        self.registry = SupervisorRegistry(
            docker=self.docker_runtime,
            agent_environment=self.secrets.agent_environment,
            store=ProjectStore(db, settings.runtime),
            policy=RestartPolicy(
                max_restarts=settings.restart_max,
                window_s=settings.restart_window_s,
                backoff_initial_s=settings.restart_backoff_s,
                backoff_max_s=settings.restart_backoff_max_s,
            ),
            session_store=SessionStore(db, settings.data_dir / "sessions", self.secrets.box),
            workflow_services=WorkflowServices(
                store=self.runs,
                events=self.run_events,
                author=Author(name=settings.git_author_name, email=settings.git_author_email),
                publish=GitHubPublisher(settings),
                agent_environment=self.secrets.agent_environment,
            ),
        )
        self.builds = BuildManager(self.docker_runtime, self.registry.store.load)
        self.events = DockerEventsListener(
            docker,
            label=f"{MANAGED_LABEL}=true",
            dispatch=self.dispatch_docker_event,
            on_subscribed=lambda: self.registry.tell_all(Reconcile()),
        )
        self.metrics = AppMetrics(self)  # a registry of the app's own (GET /metrics)

    def dispatch_docker_event(self, event: dict[str, Any]) -> None:
        """Hand a Docker event to the supervisor of the project named in its labels."""
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        try:
            project_id = UUID(attributes.get(PROJECT_LABEL, ""))
        except ValueError:
            return
        exit_code = attributes.get("exitCode")
        message = ContainerEvent(
            action=str(event.get("Action") or event.get("status") or ""),
            container_id=str(actor.get("ID") or event.get("id") or ""),
            exit_code=int(exit_code) if exit_code is not None and str(exit_code).lstrip("-").isdigit() else None,
        )
        try:
            self.registry.tell(project_id, message)
        except AppError as exc:
            detail = exc.detail
            log.error("docker.event_dropped", project_id=str(project_id), action=message.action, detail=detail)  # noqa: TRY400

    async def startup(self) -> None:
        await self.registry.start()
        self.events.start()

    async def shutdown(self) -> None:
        try:
            await self.builds.stop()
            await self.events.stop()
            await self.registry.stop_all()
        finally:
            await self.docker.close()


def provide_app_state(state: State) -> AppState:
    app_state: AppState = state.agentdock
    return app_state
