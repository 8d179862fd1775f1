"""Builds as background tasks, one at a time per project, with their events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Literal
from uuid import UUID, uuid4

import msgspec

from service.errors import AppError, Conflict, Invalid, NotFound, Unavailable
from service.logs import get_logger
from service.runtimes.base import ProjectRef
from service.runtimes.build.definition import (
    parse_definition,
)
from service.runtimes.build.engine import (
    ensure_image,
)
from service.runtimes.build.model import (
    EVENT_TEXT_LIMIT,
    BuildProgress,
    BuildResult,
)
from service.runtimes.docker import DockerRuntime

log = get_logger(__name__)

# --- builds as background tasks, one at a time per project ------------------------------------

BuildState = Literal["running", "succeeded", "failed"]
EVENT_QUEUE_LIMIT = 1000
LoadProject = Callable[[UUID], Awaitable[ProjectRef | None]]


class BuildEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="build", tag_field="type"):
    """One line of ``WS /api/projects/{id}/environment/events`` (``"type": "build"`` always)."""

    build_id: UUID
    state: BuildState
    stream: str | None = None
    status: str | None = None
    error: str | None = None
    tag: str | None = None  # with ``succeeded``: the image


class BuildManager:
    """Owns the builds' tasks (awaited at shutdown) and their subscribers; one build at a time
    per project."""

    def __init__(self, runtime: DockerRuntime, load: LoadProject) -> None:
        self.runtime = runtime
        self.load = load
        self._running: dict[UUID, tuple[UUID, asyncio.Task[None]]] = {}
        self._last: dict[UUID, BuildEvent] = {}  # each project's last finished build
        self._subscribers: dict[UUID, set[asyncio.Queue[BuildEvent | None]]] = {}
        self._closing = False

    async def start(self, project_id: UUID) -> UUID:
        """Start building the project's environment; answers the build's id. ``NotFound`` for
        an unknown project, ``Invalid`` where the workspace defines no environment (or an
        invalid one), ``Conflict`` while a build of the project runs."""
        if self._closing:
            raise Unavailable("the service is shutting down")
        project = await self.load(project_id)
        if project is None:
            raise NotFound(f"no project with id {project_id}")
        self._refuse_running(project_id)
        workspace = Path(project.path)
        definition = await asyncio.to_thread(parse_definition, workspace)
        if definition is None:
            raise Invalid(
                f"project {project.name!r} defines no environment: add a Dockerfile or "
                ".devcontainer/devcontainer.json to its workspace"
            )
        self._refuse_running(project_id)  # the definition was read meanwhile
        build_id = uuid4()
        task = asyncio.create_task(self._build(project_id, build_id, workspace), name=f"build-{build_id}")
        self._running[project_id] = (build_id, task)
        task.add_done_callback(lambda _: self._forget(project_id, build_id))
        return build_id

    def _refuse_running(self, project_id: UUID) -> None:
        if project_id in self._running:
            raise Conflict(f"a build of project {project_id} is running; wait for it to end")

    def _forget(self, project_id: UUID, build_id: UUID) -> None:
        running = self._running.get(project_id)
        if running is not None and running[0] == build_id:
            del self._running[project_id]

    def running(self, project_id: UUID) -> UUID | None:
        running = self._running.get(project_id)
        return running[0] if running else None

    async def _build(self, project_id: UUID, build_id: UUID, workspace: Path) -> None:
        fields = {"project_id": str(project_id), "build_id": str(build_id)}
        log.info("environment.build.started", **fields)
        self.publish(project_id, BuildEvent(build_id=build_id, state="running"))

        def progress(chunk: BuildProgress) -> None:
            self.publish(
                project_id,
                BuildEvent(
                    build_id=build_id, state="running", stream=chunk.stream, status=chunk.status, error=chunk.error
                ),
            )

        result: BuildResult | AppError | None
        try:
            result = await ensure_image(self.runtime, workspace, project_id, on_event=progress)
        except AppError as exc:
            result = exc
        except Exception as exc:
            log.exception("environment.build.failed", reason=f"{type(exc).__name__}: {exc}", **fields)
            self._finish(
                project_id, BuildEvent(build_id=build_id, state="failed", error="the build broke; see the logs")
            )
            return
        if result is None:
            result = Invalid("the workspace no longer defines an environment")
        if isinstance(result, AppError):
            log.info("environment.build.failed", reason=result.detail[-2000:], **fields)
            self._finish(
                project_id, BuildEvent(build_id=build_id, state="failed", error=result.detail[-EVENT_TEXT_LIMIT:])
            )
            return
        log.info(
            "environment.build.succeeded", tag=result.tag, built=result.built, kind=result.definition.kind, **fields
        )
        self._finish(project_id, BuildEvent(build_id=build_id, state="succeeded", tag=result.tag))

    def _finish(self, project_id: UUID, event: BuildEvent) -> None:
        self._last[project_id] = event
        self.publish(project_id, event)

    # --- subscribers ---------------------------------------------------------------------

    def subscribe(self, project_id: UUID) -> tuple[asyncio.Queue[BuildEvent | None], list[BuildEvent]]:
        """A queue of the project's build events (None: the subscriber fell too far behind and
        was let go), and what to send first: the running build, or the last one's outcome."""
        queue: asyncio.Queue[BuildEvent | None] = asyncio.Queue(maxsize=EVENT_QUEUE_LIMIT + 1)
        self._subscribers.setdefault(project_id, set()).add(queue)
        running = self._running.get(project_id)
        if running is not None:
            first = [BuildEvent(build_id=running[0], state="running")]
        else:
            first = [self._last[project_id]] if project_id in self._last else []
        return queue, first

    def unsubscribe(self, project_id: UUID, queue: asyncio.Queue[BuildEvent | None]) -> None:
        subscribers = self._subscribers.get(project_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[project_id]

    def publish(self, project_id: UUID, event: BuildEvent) -> None:
        for queue in list(self._subscribers.get(project_id, ())):
            if queue.qsize() >= EVENT_QUEUE_LIMIT:
                self.unsubscribe(project_id, queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    async def stop(self) -> None:
        """At shutdown: cancel the running builds (the engine abandons a build whose client
        went away) and await them."""
        self._closing = True
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
