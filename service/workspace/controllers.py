"""``/api/projects/{id}/files`` and ``/api/projects/{id}/exec``: thin, each a message to the
project's supervisor, whose deferred work does it inside the environment."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Stream

from service.actors import messages as m
from service.api.openapi import errors
from service.errors import Conflict
from service.state import AppState
from service.workspace import schemas
from service.workspace.commands import START_TIMEOUT_S, ExecChannel, exec_message
from service.workspace.files import FILE_LIMIT, FILES_TIMEOUT_S

ProjectId = Annotated[UUID, PathParameter(description="the project's id (a UUID)")]
FilePath = Annotated[
    str,
    QueryParameter(
        description="a path relative to the workspace (`` or `.`: the workspace itself); no `..`, not absolute",
        max_length=4096,
    ),
]
FILES_ASK_TIMEOUT_S = START_TIMEOUT_S + FILES_TIMEOUT_S


class ProjectFilesController(Controller):
    path = "/api/projects/{project_id:uuid}/files"
    tags = ["workspace"]

    @get(
        "/",
        operation_id="readFile",
        summary="List a directory of the workspace, or download a file (at most 16 MiB)",
        description=(
            "A directory answers a `DirectoryListing` (JSON; links are listed, never followed); a "
            "regular file answers its bytes as `application/octet-stream`. A path that leaves the "
            "workspace (through `..` or a link) or names a FIFO, socket or device is 400; a file "
            "over 16 MiB is 413."
        ),
        responses={
            200: ResponseSpec(
                data_container=schemas.DirectoryListing,
                description="a directory's listing (JSON), or a file's bytes (application/octet-stream)",
                generate_examples=False,
            ),
            **errors(404, 409, 413, 503),
        },
    )
    async def read_file(
        self, project_id: ProjectId, app_state: NamedDependency[AppState], path: FilePath = ""
    ) -> Response[Any]:
        found = await app_state.registry.ask(project_id, m.ReadPath(path=path), timeout=FILES_ASK_TIMEOUT_S)
        if isinstance(found, schemas.DirectoryListing):
            return Response(found)
        name = path.rstrip("/").rsplit("/", 1)[-1] or "file"
        return Response(
            found,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @get(
        "/listing",
        operation_id="listFiles",
        summary="List a directory of the workspace (links are listed, never followed)",
        responses=errors(404, 409, 503),
    )
    async def list_files(
        self, project_id: ProjectId, app_state: NamedDependency[AppState], path: FilePath = ""
    ) -> schemas.DirectoryListing:
        found = await app_state.registry.ask(project_id, m.ReadPath(path=path), timeout=FILES_ASK_TIMEOUT_S)
        if not isinstance(found, schemas.DirectoryListing):
            raise Conflict(f"{path!r} is a file, not a directory: GET …/files?path= reads it")
        return found

    @put(
        "/",
        operation_id="writeFile",
        summary="Write a file of the workspace from the raw body (at most 16 MiB), creating its parents",
        status_code=204,
        request_max_body_size=FILE_LIMIT,
        responses=errors(404, 409, 413, 503),
    )
    async def write_file(
        self,
        project_id: ProjectId,
        app_state: NamedDependency[AppState],
        request: Request[Any, Any, Any],
        path: FilePath = "",
    ) -> None:
        data = await request.body()  # raw bytes; past request_max_body_size Litestar answers 413
        await app_state.registry.ask(project_id, m.WriteFile(path=path, data=data), timeout=FILES_ASK_TIMEOUT_S)

    @delete(
        "/",
        operation_id="deleteFile",
        summary="Delete a file of the workspace (a link: the link itself; a directory is 409)",
        responses=errors(404, 409, 503),
    )
    async def delete_file(
        self, project_id: ProjectId, app_state: NamedDependency[AppState], path: FilePath = ""
    ) -> None:
        await app_state.registry.ask(project_id, m.DeleteFile(path=path), timeout=FILES_ASK_TIMEOUT_S)


class ProjectExecController(Controller):
    path = "/api/projects/{project_id:uuid}/exec"
    tags = ["workspace"]

    @post(
        "/",
        operation_id="execCommand",
        summary="Run a command in the project's environment (no PTY), streaming NDJSON",
        description=(
            'Answers `application/x-ndjson`: lines `{"stream": "stdout"|"stderr", "data": str}` as '
            'the output comes, then a last line `{"exit_code": int|null, "timed_out": bool}` '
            "(`truncated: true` when the output passed 16 MiB and the command was ended; `error` "
            "when the run broke). Closing the connection ends the command's process group."
        ),
        status_code=200,
        media_type="application/x-ndjson",
        responses={
            200: ResponseSpec(
                data_container=schemas.ExecLine,
                media_type="application/x-ndjson",
                description="one JSON object a line: output lines, then the last line with the exit code",
                generate_examples=False,
            ),
            **errors(404, 503),
        },
    )
    async def exec_command(
        self, project_id: ProjectId, data: JSONBody[schemas.ExecRequest], app_state: NamedDependency[AppState]
    ) -> Stream:
        channel = ExecChannel()
        message = exec_message(data, channel)
        ask = asyncio.create_task(
            app_state.registry.ask(project_id, message, timeout=data.timeout_s + START_TIMEOUT_S + 30)
        )
        try:
            await channel.wait_started(ask)
        except BaseException:
            channel.gone.set()
            ask.cancel()
            raise
        return Stream(channel.stream(ask), media_type="application/x-ndjson")
