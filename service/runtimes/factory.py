"""Which environment a project gets: the one place that reads a project's runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.actors import messages as m
from service.actors.policy import RestartPolicy
from service.runtimes.base import ProjectRef, RuntimeKind
from service.runtimes.docker import AGENT_GID, AGENT_UID, DockerRuntime
from service.runtimes.docker_env import DockerEnvironment
from service.runtimes.environment import Environment
from service.runtimes.local import LocalEnvironment


class Environments:
    def __init__(self, docker: DockerRuntime, policy: RestartPolicy, *, allow_local: bool) -> None:
        self.docker = docker
        self.policy = policy
        self.allow_local = allow_local

    def make(
        self,
        project: ProjectRef,
        *,
        tell: Callable[[m.Message], Awaitable[None]],
        save: Callable[[str | None], Awaitable[None]],
    ) -> Environment:
        if project.runtime == "local":
            return LocalEnvironment(project, allowed=self.allow_local)
        return DockerEnvironment(project, runtime=self.docker, policy=self.policy, tell=tell, save=save)


def new_workspace_owner(runtime: RuntimeKind) -> tuple[int, int] | None:
    """Who a brand-new workspace should belong to: the container's ``agent`` for the docker
    runtime; for the local runtime the service's own user (it runs the commands)."""
    return (AGENT_UID, AGENT_GID) if runtime == "docker" else None
