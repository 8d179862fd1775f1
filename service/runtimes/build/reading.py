"""Bounded, no-follow reads of regular files in the workspace."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.errors import Invalid

# --- bounded, no-follow reads ---------------------------------------------------------------


def _components(relative: str) -> list[str]:
    """The normalized components of a workspace-relative path; ``Invalid`` for an absolute
    path or one that leaves the workspace."""
    if not relative or relative.startswith("/") or "\x00" in relative:
        raise Invalid(f"the path {relative!r} must be relative to the workspace")
    normal = posixpath.normpath(relative)
    if normal == ".":
        return []
    parts = normal.split("/")
    if parts[0] == "..":
        raise Invalid(f"the path {relative!r} leaves the workspace")
    return parts


def _open_root(workspace: Path) -> int:
    try:
        return os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Invalid(f"the workspace {str(workspace)!r} does not exist") from None
    except OSError as exc:
        raise Invalid(f"the workspace cannot be opened: {exc.strerror}") from None


def _open_dir(name: str, *, dir_fd: int, shown: str) -> int:
    """A subdirectory, never through a link (``O_NOFOLLOW``: a link is ``ELOOP``)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP (a link), ENOTDIR (a file, a FIFO, …)
        raise Invalid(f"{shown!r} is not a plain directory (links are never followed): {exc.strerror}") from None
    if not stat.S_ISDIR(os.fstat(fd).st_mode):  # pragma: no cover - O_DIRECTORY guarantees it
        os.close(fd)
        raise Invalid(f"{shown!r} is not a directory")
    return fd


@contextmanager
def _dir_path(workspace: Path, parts: list[str], shown: str) -> Iterator[int]:
    """A directory fd for ``parts`` under the workspace, each component opened no-follow."""
    fd = _open_root(workspace)
    try:
        for index, name in enumerate(parts):
            child = _open_dir(name, dir_fd=fd, shown="/".join(parts[: index + 1]) or shown)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _read_at(dir_fd: int, name: str, *, cap: int, shown: str) -> bytes:
    """A regular file's bytes (at most ``cap``): lstat first (a link, FIFO or device is refused
    without being opened), then ``O_NOFOLLOW|O_NONBLOCK`` and ``fstat`` (the entry may have
    been swapped in between)."""
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)  # FileNotFoundError propagates
    if not stat.S_ISREG(info.st_mode):
        raise Invalid(f"{shown!r} is not a regular file (links, FIFOs and devices are refused)")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise Invalid(f"{shown!r} cannot be opened as a regular file: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Invalid(f"{shown!r} is not a regular file (links, FIFOs and devices are refused)")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(fd, min(65536, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise Invalid(f"{shown!r} is larger than its limit of {cap} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular(workspace: Path, relative: str, *, cap: int) -> bytes | None:
    """The bytes of the regular file at ``relative`` in the workspace, or None where it does
    not exist. Every component is opened relative to its parent's fd with ``O_NOFOLLOW``: a
    link (or FIFO, device, socket) anywhere on the path is ``Invalid``, never followed or read.
    """
    parts = _components(relative)
    if not parts:
        raise Invalid(f"the path {relative!r} names the workspace itself")
    try:
        with _dir_path(workspace, parts[:-1], relative) as fd:
            return _read_at(fd, parts[-1], cap=cap, shown=relative)
    except FileNotFoundError:
        return None
