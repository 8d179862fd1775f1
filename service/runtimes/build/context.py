"""The build context as a deterministic, bounded tar of regular files and directories."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import msgspec

from service.errors import Invalid
from service.runtimes.build.definition import combined_digest, parse_definition
from service.runtimes.build.model import (
    CONTEXT_DEPTH,
    CONTEXT_ENTRIES,
    CONTEXT_LIMIT,
    DOCKERIGNORE_LIMIT,
    DOCKERIGNORE_PATTERNS,
    SENT_DOCKERFILE,
    SKIPPED_DIRS,
    BuildDefinition,
)
from service.runtimes.build.reading import (
    _components,
    _dir_path,
    _open_dir,
    _read_at,
)

# --- the build context as a deterministic, bounded tar -------------------------------------------


class _HashSink:
    """A write-only file that hashes, and optionally keeps, what is written."""

    def __init__(self, keep: IO[bytes] | None = None) -> None:
        self._hash = hashlib.sha256()
        self.keep = keep

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        if self.keep is not None:
            self.keep.write(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> _HashSink:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _BoundedFile:
    """Reads at most ``size`` bytes of an fd (what ``fstat`` said), checking the deadline."""

    def __init__(self, fd: int, size: int, deadline: float | None) -> None:
        self.fd = fd
        self.left = size
        self.deadline = deadline

    def read(self, n: int = -1) -> bytes:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Invalid("reading the build context took too long")
        if self.left <= 0:
            return b""
        want = self.left if n < 0 else min(n, self.left)
        chunk = os.read(self.fd, min(want, 1024 * 1024))
        self.left -= len(chunk)
        return chunk


class _Ignore:
    """A simple ``.dockerignore``: exact paths and ``*``/``?``/``[...]`` globs against the path
    relative to the context (a matched directory takes its subtree); ``!`` exceptions are not
    supported and are ignored."""

    def __init__(self, content: bytes | None) -> None:
        self.patterns: list[str] = []
        if not content:
            return
        for line in content.decode("utf-8", errors="replace").splitlines():
            pattern = line.strip()
            if not pattern or pattern.startswith(("#", "!")):
                continue
            pattern = posixpath.normpath(pattern.lstrip("/")).removeprefix("./")
            if pattern in (".", ""):
                continue
            self.patterns.append(pattern.replace("**/", "*").replace("/**", "/*"))
            if len(self.patterns) > DOCKERIGNORE_PATTERNS:
                raise Invalid(f".dockerignore has more than {DOCKERIGNORE_PATTERNS} patterns")

    def __call__(self, relative: str) -> bool:
        return any(relative == p or fnmatch.fnmatchcase(relative, p) for p in self.patterns)


def _tarinfo(name: str, *, directory: bool, mode: int = 0o644, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else (0o755 if mode & 0o111 else 0o644)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


class _ContextWriter:
    """Writes a context directory as a tar: directories and regular files only, each
    directory's entries sorted, depth first, mtimes and owners zeroed (the same tree gives the
    same bytes); bounded in total bytes, entries, depth and time."""

    def __init__(self, tar: tarfile.TarFile, *, limit: int, deadline: float | None) -> None:
        self.tar = tar
        self.limit = limit
        self.deadline = deadline
        self.total = 0
        self.entries = 0
        self.ignore = _Ignore(None)

    def _check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Invalid("reading the build context took too long")

    def _names(self, fd: int) -> list[str]:
        names: list[str] = []
        with os.scandir(fd) as listing:
            for entry in listing:
                self.entries += 1
                if self.entries > CONTEXT_ENTRIES:
                    raise Invalid(f"the build context has more than {CONTEXT_ENTRIES} entries")
                names.append(entry.name)
        return sorted(names)

    def walk(self, root: int) -> None:
        stack: list[tuple[int, str, int]] = [(os.dup(root), "", 0)]
        try:
            while stack:
                fd, prefix, depth = stack.pop()
                try:
                    subdirs: list[tuple[int, str, int]] = []
                    try:
                        for name in self._names(fd):
                            child = self._entry(fd, name, prefix, depth)
                            if child is not None:
                                subdirs.append(child)
                    except BaseException:
                        for child_fd, _, _ in subdirs:
                            os.close(child_fd)
                        raise
                    stack.extend(reversed(subdirs))
                finally:
                    os.close(fd)
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def _entry(self, fd: int, name: str, prefix: str, depth: int) -> tuple[int, str, int] | None:
        """Add one entry; answers a subdirectory to descend into."""
        self._check_time()
        relative = f"{prefix}{name}"
        if (name in SKIPPED_DIRS and not prefix) or relative == SENT_DOCKERFILE or self.ignore(relative):
            return None
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(info.st_mode):
            if depth + 1 > CONTEXT_DEPTH:
                raise Invalid(f"the build context is nested deeper than {CONTEXT_DEPTH} levels")
            try:
                child = _open_dir(name, dir_fd=fd, shown=relative)
            except (FileNotFoundError, Invalid):
                return None  # swapped for something else meanwhile: skipped
            self.tar.addfile(_tarinfo(relative, directory=True))
            return child, f"{relative}/", depth + 1
        if stat.S_ISREG(info.st_mode):
            self._file(fd, name, relative)
        return None  # links, FIFOs, sockets, devices: skipped, never opened

    def _file(self, dir_fd: int, name: str, relative: str) -> None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return  # gone, or swapped for a link: skipped
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return
            if self.total + info.st_size > self.limit:
                raise Invalid(
                    f"the build context is larger than its limit of {self.limit // (1024 * 1024)} MiB "
                    f"(at {relative!r}); list what the image does not need in .dockerignore"
                )
            header = _tarinfo(relative, directory=False, mode=info.st_mode, size=info.st_size)
            try:
                self.tar.addfile(header, _BoundedFile(fd, info.st_size, self.deadline))
            except OSError as exc:  # the file shrank while it was read
                raise Invalid(f"{relative!r} changed while the build context was read; try again") from exc
            self.total += info.st_size
        finally:
            os.close(fd)


def _write_context(
    workspace: Path, definition: BuildDefinition, out: Any, *, limit: int, deadline: float | None
) -> None:
    """Write the context of ``definition`` to ``out`` as a tar, the Dockerfile first as
    ``SENT_DOCKERFILE`` (exactly the bytes that were read and digested)."""
    parts = _components(definition.context) if definition.context != "." else []
    try:
        with (
            _dir_path(workspace, parts, definition.context) as root,
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            writer = _ContextWriter(tar, limit=limit, deadline=deadline)
            with suppress(FileNotFoundError):
                writer.ignore = _Ignore(_read_at(root, ".dockerignore", cap=DOCKERIGNORE_LIMIT, shown=".dockerignore"))
            dockerfile = definition.dockerfile_content or b""
            tar.addfile(_tarinfo(SENT_DOCKERFILE, directory=False, size=len(dockerfile)), _BytesReader(dockerfile))
            writer.walk(root)
    except FileNotFoundError:
        raise Invalid(f"the build context {definition.context!r} does not exist") from None


def context_tar(
    workspace: Path, definition: BuildDefinition, *, limit: int = CONTEXT_LIMIT, deadline: float | None = None
) -> tuple[IO[bytes], str]:
    """The build context of ``definition`` as a tar in a temporary file (rewound; the caller
    closes it), and the tar's SHA-256. Synchronous and bounded: run it in a thread."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller
    try:
        sink = _HashSink(file)
        _write_context(workspace, definition, sink, limit=limit, deadline=deadline)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file, sink.hexdigest()


def read_definition(
    workspace: Path, *, limit: int = CONTEXT_LIMIT, deadline: float | None = None
) -> BuildDefinition | None:
    """``parse_definition`` plus the build context, so that ``digest`` covers both. Reads up
    to ``limit`` bytes: run it in a thread (``asyncio.to_thread``)."""
    definition = parse_definition(workspace)
    if definition is None or definition.dockerfile_content is None:
        return definition
    with _HashSink() as sink:
        _write_context(workspace, definition, sink, limit=limit, deadline=deadline)
        context = sink.hexdigest()
    return msgspec.structs.replace(definition, digest=combined_digest(definition, context), context_hashed=True)
