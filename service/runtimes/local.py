"""The local runtime: the project's workspace directory on the host. Sessions run there,
unsandboxed, so it is chosen explicitly (``AGENTDOCK_RUNTIME=local`` or per project)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from service.errors import Conflict
from service.runtimes.base import ProjectRef


class LocalRuntime:
    kind: Literal["local"] = "local"

    async def prepare(self, project: ProjectRef) -> None:
        if not await asyncio.to_thread(Path(project.path).is_dir):
            raise Conflict(f"the workspace {project.path} of project {project.name!r} does not exist")
