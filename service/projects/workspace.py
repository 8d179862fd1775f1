"""The project's workspace directory on the host: ``<data>/workspaces/<name>``."""

from __future__ import annotations

import os
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


def hand_over(path: Path, uid: int, gid: int) -> int:
    """Give a brand-new workspace to the container's ``agent`` user, once; answers how many
    entries it re-owned (0 when the service does not run as root: only root may chown).

    Safe only because of when it runs: the tree is fresh, written by the service alone,
    before any container or agent exists, so nothing can swap a directory for a link while
    it walks. Links are never followed (``os.walk`` does not descend into them) and are
    re-owned themselves (``lchown``), never their targets. Never call it on a workspace an
    agent has had. A directory it cannot list raises: the creation fails and is undone.
    """
    if os.geteuid() != 0:
        return 0
    os.lchown(path, uid, gid)
    changed = 1
    for top, dirs, files in os.walk(path, onerror=_raise, followlinks=False):
        for name in (*dirs, *files):
            os.lchown(Path(top, name), uid, gid)
            changed += 1
    return changed


def _raise(error: OSError) -> None:
    """``os.walk`` skips what it cannot list; a hand-over must not leave part of the tree behind."""
    raise error
