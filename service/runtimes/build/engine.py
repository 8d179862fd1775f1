"""Building images through the engine's build API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import aiodocker
import aiohttp
import msgspec

from service.errors import Conflict, Invalid, Unavailable
from service.runtimes.build.context import (
    context_tar,
)
from service.runtimes.build.definition import (
    base_images,
    combined_digest,
    parse_definition,
)
from service.runtimes.build.model import (
    _ONE_LINE_LIMIT,
    BUILD_TIMEOUT_S,
    CONTEXT_DEADLINE_S,
    CONTEXT_LIMIT,
    ERROR_LINES,
    EVENT_TEXT_LIMIT,
    IMAGE_NAME,
    SENT_DOCKERFILE,
    BuildDefinition,
    BuildProgress,
    BuildResult,
    OnProgress,
)
from service.runtimes.docker import MANAGED_LABEL, PROJECT_LABEL, DockerRuntime

# --- building ---------------------------------------------------------------------------------


def image_tag(project_id: UUID, digest: str) -> str:
    return f"agentdock-project-{project_id.hex}:{digest[:12]}"


async def image_exists(runtime: DockerRuntime, tag: str) -> bool:
    try:
        async with runtime.engine.call("an image inspect"):
            await runtime.engine.client.images.inspect(tag)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def _check_bases(runtime: DockerRuntime, definition: BuildDefinition) -> None:
    """Every base image must be on the engine already: a missing one would be pulled from a
    registry on the host's network."""
    for image in base_images(definition.dockerfile_content or b"", definition.args):
        if not IMAGE_NAME.match(image) or not await image_exists(runtime, image):
            raise Invalid(
                f"the Dockerfile builds on {image[:200]!r}, which is not on the Docker engine; images are "
                "never pulled for a project's build: ask the operator to provide it"
            )


async def _notify(on_event: OnProgress, progress: BuildProgress) -> None:
    result = on_event(progress)
    if result is not None:
        await result


def _cut(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text[-EVENT_TEXT_LIMIT:]


async def build_image(
    runtime: DockerRuntime,
    definition: BuildDefinition,
    tag: str,
    context: IO[bytes],
    *,
    project_id: UUID,
    on_event: OnProgress,
    timeout: float = BUILD_TIMEOUT_S,
) -> None:
    """Build ``context`` (a tar from ``context_tar``) into ``tag`` through the engine's build
    API, each progress chunk handed to ``on_event``. A failed build raises ``Conflict`` with
    the engine's last lines. ``RUN`` steps get the operator's network mode and the project
    containers' memory and CPU limits."""
    await _check_bases(runtime, definition)
    settings = runtime.settings
    params: dict[str, Any] = {
        "t": tag,
        "dockerfile": SENT_DOCKERFILE,
        "rm": "1",
        "forcerm": "1",
        "pull": "0",
        "labels": json.dumps({MANAGED_LABEL: "true", PROJECT_LABEL: str(project_id)}),
        "memory": str(settings.container_memory),
        "cpuperiod": "100000",
        "cpuquota": str(int(settings.container_cpus * 100000)),
    }
    if definition.args:
        params["buildargs"] = json.dumps(definition.args)
    if settings.network:
        params["networkmode"] = settings.network

    async def body() -> Any:
        while chunk := await asyncio.to_thread(context.read, 256 * 1024):
            yield chunk

    client = runtime.engine.client
    try:
        async with asyncio.timeout(timeout):
            # aiodocker's images.build() passes neither networkmode nor resource limits: the
            # same request, with them.
            async with client._query(
                "build",
                "POST",
                params=params,
                headers={"content-type": "application/x-tar"},
                data=body(),
                timeout=aiohttp.ClientTimeout(total=None),
            ) as response:
                error, last = await _follow_progress(response, on_event)
    except TimeoutError:
        raise Conflict(f"the build took longer than {timeout:g} s and was abandoned") from None
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
        raise Unavailable(f"the Docker engine is unreachable: {exc}") from None
    except aiodocker.DockerError as exc:
        raise Conflict(f"the engine refused the build: {exc.message}") from None
    if error is not None:
        tail = "\n".join(last)
        raise Conflict(f"the build failed: {error.strip()}" + (f"\n{tail}" if tail else ""))


async def _progress_lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The engine's progress, one JSON line at a time, in bounded memory (a line longer than
    ``_ONE_LINE_LIMIT`` is dropped)."""
    buffer = bytearray()
    skipping = False
    while chunk := await response.content.readany():
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if skipping:
                skipping = False
            elif line.strip():
                yield line
        if len(buffer) > _ONE_LINE_LIMIT:
            buffer.clear()
            skipping = True
    if buffer.strip() and not skipping:
        yield bytes(buffer)


async def _follow_progress(response: aiohttp.ClientResponse, on_event: OnProgress) -> tuple[str | None, list[str]]:
    """Hand each progress chunk to ``on_event``; answers the engine's error (None: success)
    and the last lines of output."""
    last: list[str] = []
    error: str | None = None
    async for line in _progress_lines(response):
        try:
            chunk = json.loads(line)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        detail = chunk.get("errorDetail")
        message = chunk.get("error") or (detail.get("message") if isinstance(detail, dict) else None)
        progress = BuildProgress(
            stream=_cut(chunk.get("stream")), status=_cut(chunk.get("status")), error=_cut(message)
        )
        if progress.stream:
            last.extend(progress.stream.splitlines()[-ERROR_LINES:])
            del last[:-ERROR_LINES]
        if progress.error:
            error = progress.error
        if progress.stream or progress.status or progress.error:
            await _notify(on_event, progress)
    return error, last


async def ensure_image(
    runtime: DockerRuntime,
    workspace: Path,
    project_id: UUID,
    *,
    on_event: OnProgress,
    timeout: float = BUILD_TIMEOUT_S,
    limit: int = CONTEXT_LIMIT,
) -> BuildResult | None:
    """The image of the workspace's own environment, built if its digest has no image yet.
    None where the workspace defines none. A devcontainer ``image`` is used as it is (it must
    be on the engine)."""
    definition = await asyncio.to_thread(parse_definition, workspace)
    if definition is None:
        return None
    if definition.image is not None:
        if not await image_exists(runtime, definition.image):
            raise Invalid(f"the image {definition.image!r} named by devcontainer.json is not on the Docker engine")
        return BuildResult(tag=definition.image, built=False, definition=definition)
    deadline = time.monotonic() + CONTEXT_DEADLINE_S
    file, context_digest = await asyncio.to_thread(context_tar, workspace, definition, limit=limit, deadline=deadline)
    with file:
        definition = msgspec.structs.replace(
            definition, digest=combined_digest(definition, context_digest), context_hashed=True
        )
        tag = image_tag(project_id, definition.digest)
        if await image_exists(runtime, tag):
            await _notify(on_event, BuildProgress(status=f"{tag} is up to date"))
            return BuildResult(tag=tag, built=False, definition=definition)
        await build_image(runtime, definition, tag, file, project_id=project_id, on_event=on_event, timeout=timeout)
    return BuildResult(tag=tag, built=True, definition=definition)


async def remove_image(runtime: DockerRuntime, tag: str) -> None:
    with suppress(aiodocker.DockerError):
        async with runtime.engine.call("an image remove", timeout=60):
            await runtime.engine.client.images.delete(tag, force=True)
