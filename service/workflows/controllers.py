from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, PathParameter

from service.actors import messages as m
from service.api.openapi import errors
from service.api.pagination import DEFAULT_LIMIT, Limit, Offset
from service.auth import accept_websocket
from service.errors import AppError, Conflict, Invalid
from service.logs import get_logger
from service.state import AppState
from service.workflows.definitions import WORKFLOWS, get_workflow
from service.workflows.schemas import (
    FINISHED,
    MergeConflictBody,
    Run,
    RunCreate,
    RunDiff,
    RunEvent,
    RunPage,
    Workflow,
)

log = get_logger(__name__)

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]
RunId = Annotated[UUID, PathParameter(description="the run's id (a UUID)")]
_encode = msgspec.json.Encoder().encode


class WorkflowsController(Controller):
    path = "/api/workflows"
    tags = ["workflows"]

    @get("/", operation_id="listWorkflows", summary="The workflow definitions")
    async def list_workflows(self) -> list[Workflow]:
        return [Workflow(name=w.name, description=w.description, steps=list(w.steps)) for w in WORKFLOWS.values()]


class ProjectRunsController(Controller):
    path = "/api/projects/{project_id:uuid}/workflow-runs"
    tags = ["workflows"]

    @post(
        "/",
        operation_id="createWorkflowRun",
        summary="Queue a workflow run; one runs at a time per project",
        responses=errors(404, 409, 503),
    )
    async def create_run(
        self, project_id: ProjectId, data: JSONBody[RunCreate], app_state: NamedDependency[AppState]
    ) -> Run:
        workflow = get_workflow(data.workflow)
        floor = app_state.settings.workflow_min_idle_s
        if data.idle_timeout_s < floor:
            raise Invalid(f"idle_timeout_s must be at least {floor:g} s")
        await app_state.registry.ensure(project_id)  # 404 for an unknown project
        limit = app_state.settings.max_queued_runs
        if await app_state.runs.count_in_states(project_id, ("queued",)) >= limit:
            raise Conflict(
                f"the project already has {limit} queued runs, its limit (AGENTDOCK_MAX_QUEUED_RUNS): "
                "wait for them to start or cancel some"
            )
        run = await app_state.runs.create(project_id, data, workflow)
        log.info("workflow.run.queued", run_id=str(run.id), project_id=str(project_id), workflow=workflow.name)
        app_state.run_events.publish(run, "queued")
        app_state.registry.tell(project_id, m.StartRuns())
        return run

    @get(
        "/",
        operation_id="listWorkflowRuns",
        summary="The project's runs, oldest first",
        responses=errors(404, 503),
    )
    async def list_runs(
        self,
        project_id: ProjectId,
        app_state: NamedDependency[AppState],
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
    ) -> RunPage:
        """Each run as a summary: its steps' states without their gates (``getWorkflowRun`` has them)."""
        await app_state.registry.ensure(project_id)
        return await app_state.runs.page_for_project(project_id, limit=limit, offset=offset)


class RunsController(Controller):
    path = "/api/workflow-runs"
    tags = ["workflows"]

    @get("/{run_id:uuid}", operation_id="getWorkflowRun", summary="A run with its steps", responses=errors(404))
    async def get_run(self, run_id: RunId, app_state: NamedDependency[AppState]) -> Run:
        return await app_state.runs.get(run_id)

    @post(
        "/{run_id:uuid}/cancel",
        operation_id="cancelWorkflowRun",
        summary="Cancel a run (ends its running session)",
        status_code=200,
        responses=errors(404, 503),
    )
    async def cancel_run(self, run_id: RunId, app_state: NamedDependency[AppState]) -> Run:
        run = await app_state.runs.get(run_id)
        result: Run = await app_state.registry.ask(run.project_id, m.CancelRun(run_id=run_id), timeout=60)
        return result

    @get(
        "/{run_id:uuid}/diff",
        operation_id="getWorkflowRunDiff",
        summary="The run's branch against where it started: files changed and their unified diff",
        responses=errors(404, 409, 503),
    )
    async def diff_run(
        self, run_id: RunId, app_state: NamedDependency[AppState], limit: Limit = 100, offset: Offset = 0
    ) -> RunDiff:
        """One page of the files (``limit``, ``offset``) and the diff of those files, cut at 1 MiB."""
        run = await app_state.runs.get(run_id)
        message = m.DiffRun(run_id=run_id, limit=limit, offset=offset)
        result: RunDiff = await app_state.registry.ask(run.project_id, message, timeout=120)
        return result

    @post(
        "/{run_id:uuid}/merge",
        operation_id="mergeWorkflowRun",
        summary="Merge a succeeded run into the branch it started from",
        status_code=200,
        responses={
            **errors(404, 503),
            409: ResponseSpec(
                data_container=MergeConflictBody,
                generate_examples=False,
                description="the run is not mergeable, the workspace is elsewhere, or the merge conflicts "
                "(then `conflicts` lists the paths and nothing was changed)",
            ),
        },
    )
    async def merge_run(self, run_id: RunId, app_state: NamedDependency[AppState]) -> Run:
        """A fast-forward where possible, else a merge commit; the run's worktree is removed."""
        run = await app_state.runs.get(run_id)
        result: Run = await app_state.registry.ask(run.project_id, m.MergeRun(run_id=run_id), timeout=180)
        return result

    @post(
        "/{run_id:uuid}/discard",
        operation_id="discardWorkflowRun",
        summary="Throw a finished run's work away: its branch and worktree are deleted",
        status_code=200,
        responses=errors(404, 409, 503),
    )
    async def discard_run(self, run_id: RunId, app_state: NamedDependency[AppState]) -> Run:
        run = await app_state.runs.get(run_id)
        result: Run = await app_state.registry.ask(run.project_id, m.DiscardRun(run_id=run_id), timeout=120)
        return result


@websocket("/api/workflow-runs/{run_id:uuid}/events", opt={"public": True})  # the token is checked below
async def run_events(socket: WebSocket[Any, Any, Any], run_id: FromPath[UUID]) -> None:
    """The run as it is now, then one event per state change; closed (1000) once it is over."""
    state: AppState = socket.app.state.agentdock
    if not await accept_websocket(socket, state.api_token, state.settings.allowed_origins):
        return
    queue = state.run_events.subscribe(run_id)
    try:
        try:
            run = await state.runs.get(run_id)
        except AppError as exc:
            await socket.close(code=exc.close_code, reason=exc.detail[:120])
            return
        await socket.send_text(_encode(RunEvent(change="snapshot", run=run)).decode())
        while run.state not in FINISHED:
            receive: asyncio.Task[Any] = asyncio.create_task(_receive(socket))
            event = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({receive, event}, return_when=asyncio.FIRST_COMPLETED)
            for task in (receive, event):
                if task not in done:
                    task.cancel()
            if receive in done and receive.result()["type"] == "websocket.disconnect":
                return
            if event in done:
                item: RunEvent = event.result()
                run = item.run
                await socket.send_text(_encode(item).decode())
        await socket.close(code=1000, reason=f"the run is {run.state}")
    except (WebSocketDisconnect, OSError, RuntimeError):
        return
    finally:
        state.run_events.unsubscribe(run_id, queue)


async def _receive(socket: WebSocket[Any, Any, Any]) -> Any:
    return await socket.receive()
