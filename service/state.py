"""What the app owns for its lifetime, in one typed place (``app.state.agentdock``)."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.datastructures import State

from service.docker.engine import DockerEngine
from service.settings import Settings


class AppState:
    """A plain class, not a dataclass: Litestar passes it to handlers as an opaque value."""

    __slots__ = ("api_token", "db", "docker", "settings")

    def __init__(self, *, settings: Settings, api_token: str, db: SQLAlchemyAsyncConfig, docker: DockerEngine) -> None:
        self.settings = settings
        self.api_token = api_token
        self.db = db
        self.docker = docker


def provide_app_state(state: State) -> AppState:
    app_state: AppState = state.agentdock
    return app_state
