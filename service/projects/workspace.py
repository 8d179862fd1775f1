"""The project's workspace directory on the host: ``<data>/workspaces/<name>``."""

from __future__ import annotations

import shutil
from pathlib import Path

from service.errors import Conflict, Invalid


def workspace_path(workspaces_dir: Path, name: str) -> Path:
    path = (workspaces_dir / name).resolve()
    if path.parent != workspaces_dir.resolve():
        raise Invalid(f"project name {name!r} does not make a workspace directory name")
    return path


def create_workspace(workspaces_dir: Path, name: str) -> Path:
    """Create an empty workspace; an existing one (kept by a deleted project) is a conflict."""
    path = workspace_path(workspaces_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise Conflict(
            f"the workspace directory {path} already exists (kept from a deleted project?); "
            "move it away or choose another name"
        ) from None
    return path


def purge_workspace(workspaces_dir: Path, path: Path) -> None:
    """Remove a workspace, but only one that lies inside the workspaces directory."""
    resolved = path.resolve()
    if resolved.parent != workspaces_dir.resolve():
        raise Invalid(f"refusing to purge {resolved}: it is not inside {workspaces_dir}")
    if resolved.exists():
        shutil.rmtree(resolved)
