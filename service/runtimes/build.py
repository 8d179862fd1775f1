"""A project's own environment: its ``Dockerfile`` or ``.devcontainer/devcontainer.json``,
read as data and built into an image through the engine's build API.

The workspace is hostile input. The service on the host only ever:

- reads regular files through ``read_regular``, which opens every path component relative to
  a directory fd with ``O_NOFOLLOW`` (a link anywhere on the path is refused, never followed),
  checks ``S_ISREG`` with ``fstat`` before reading, and reads at most a cap;
- walks the build context with directory fds (``os.scandir(fd)``), taking directories and
  regular files only (links, FIFOs, sockets and devices are skipped, never opened), with a
  total size cap, an entry cap, a depth cap, a per-file cap and a deadline;
- parses the definition (JSONC) and lints the Dockerfile as text.

Nothing from the workspace runs on the host: ``RUN`` steps run in the engine's build
containers, with the operator's network mode (``AGENTDOCK_NETWORK``) and memory/CPU limits.
The engine itself would fetch ``ADD <url>`` sources and pull missing ``FROM`` images from the
host's network, so both are refused before a build starts: every base image must already be on
the engine.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Literal
from uuid import UUID, uuid4

import aiodocker
import aiohttp
import msgspec

from service.errors import AppError, Conflict, Invalid, NotFound, Unavailable
from service.logs import get_logger
from service.runtimes.base import ProjectRef
from service.runtimes.docker import MANAGED_LABEL, PROJECT_LABEL, DockerRuntime

log = get_logger(__name__)

DEVCONTAINER_JSON = ".devcontainer/devcontainer.json"
DOCKERFILE = "Dockerfile"
DEFINITION_LIMIT = 64 * 1024  # devcontainer.json, a Dockerfile
DOCKERIGNORE_LIMIT = 64 * 1024
DOCKERIGNORE_PATTERNS = 1000
CONTEXT_LIMIT = 256 * 1024 * 1024  # the build context's total file bytes
CONTEXT_ENTRIES = 100_000
CONTEXT_DEPTH = 64
CONTEXT_DEADLINE_S = 120.0
BUILD_TIMEOUT_S = 1800.0
JSON_DEPTH = 64
# The Dockerfile is always sent under this name (the one that was read and digested, wherever
# it lies); a context entry of the same name is left out.
SENT_DOCKERFILE = ".agentdock.Dockerfile"
SKIPPED_DIRS = frozenset({".git"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,255}$")
MAX_ENV = 128
MAX_VALUE = 4096
MAX_ARGV = 64
MAX_COMMAND = 8192
MAX_PORTS = 32
EVENT_TEXT_LIMIT = 4096
ERROR_LINES = 20

_ONE_LINE_LIMIT = 1024 * 1024  # an engine progress line longer than this is cut


class BuildDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """A project's environment as its workspace defines it (validated; paths relative to the
    workspace, normalized, never outside it)."""

    kind: Literal["dockerfile", "devcontainer"]
    image: str | None = None  # a prebuilt image (devcontainer ``image``); None: a Dockerfile is built
    dockerfile: str | None = None  # the Dockerfile's path in the workspace
    context: str = "."  # the build context's directory in the workspace
    args: dict[str, str] = msgspec.field(default_factory=dict)
    container_env: dict[str, str] = msgspec.field(default_factory=dict)
    remote_env: dict[str, str] = msgspec.field(default_factory=dict)
    remote_user: str | None = None
    post_create: list[str] | str | None = None  # an argv, or a string for ``sh -c``
    forward_ports: list[int | str] = msgspec.field(default_factory=list)  # recorded only
    # SHA-256 over the definition (the Dockerfile's bytes included) and, once the context was
    # read (``read_definition``, ``ensure_image``), the build context's tar: a change rebuilds.
    # ``parse_definition`` leaves the context out (``context_hashed`` False).
    digest: str = ""
    context_hashed: bool = False
    dockerfile_content: bytes | None = None  # exactly the bytes that are digested and sent


class BuildProgress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chunk of the engine's build progress (each text bounded)."""

    stream: str | None = None
    status: str | None = None
    error: str | None = None


OnProgress = Callable[[BuildProgress], Awaitable[None] | None]


class BuildResult(msgspec.Struct, frozen=True, kw_only=True):
    tag: str
    built: bool  # False: an image with that tag (so that digest) was already on the engine
    definition: BuildDefinition


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


# --- JSONC ------------------------------------------------------------------------------------


def strip_jsonc(text: str) -> str:
    """JSON with comments (``//``, ``/* */``) and trailing commas → JSON. Only outside strings;
    nesting deeper than ``JSON_DEPTH`` is refused."""
    out: list[str] = []
    i, n, depth = 0, len(text), 0
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            if end < 0:
                raise Invalid("devcontainer.json: a /* comment is not closed")
            out.append(" ")
            i = end + 2
            continue
        if c in "{[":
            depth += 1
            if depth > JSON_DEPTH:
                raise Invalid(f"devcontainer.json: nested deeper than {JSON_DEPTH} levels")
        elif c in "}]":
            depth -= 1
            k = len(out) - 1
            while k >= 0 and out[k].isspace():
                k -= 1
            if k >= 0 and out[k] == ",":
                del out[k]
        out.append(c)
        i += 1
    return "".join(out)


def parse_jsonc(data: bytes) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("devcontainer.json is not UTF-8") from None
    try:
        return msgspec.json.decode(strip_jsonc(text))
    except msgspec.DecodeError as exc:
        raise Invalid(f"devcontainer.json is not valid JSON (with comments): {exc}") from None


# --- the devcontainer subset --------------------------------------------------------------------


def _env_map(value: Any, key: str, *, allow_null: bool = False) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"devcontainer.json: {key} must be an object of names to strings")
    if len(value) > MAX_ENV:
        raise Invalid(f"devcontainer.json: {key} has more than {MAX_ENV} entries")
    result: dict[str, str] = {}
    for name, item in value.items():
        if not ENV_NAME.match(name) or len(name) > 128:
            raise Invalid(f"devcontainer.json: {key} has an invalid name {name[:64]!r} (use [A-Za-z_][A-Za-z0-9_]*)")
        if item is None and allow_null:
            continue
        if not isinstance(item, str) or len(item) > MAX_VALUE or "\x00" in item:
            raise Invalid(f"devcontainer.json: {key}.{name} must be a string of at most {MAX_VALUE} characters")
        result[name] = item
    return result


def _post_create(value: Any) -> list[str] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_COMMAND or "\x00" in value:
            raise Invalid(f"devcontainer.json: postCreateCommand is longer than {MAX_COMMAND} characters")
        return value or None
    if isinstance(value, list):
        if not value or len(value) > MAX_ARGV:
            raise Invalid(f"devcontainer.json: postCreateCommand must have 1 to {MAX_ARGV} elements")
        if not all(isinstance(a, str) and len(a) <= MAX_COMMAND and "\x00" not in a for a in value):
            raise Invalid("devcontainer.json: postCreateCommand's elements must be strings")
        return list(value)
    raise Invalid(
        "devcontainer.json: postCreateCommand must be a string or an array of strings "
        "(the object form is not supported)"
    )


def _ports(value: Any) -> list[int | str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_PORTS:
        raise Invalid(f"devcontainer.json: forwardPorts must be an array of at most {MAX_PORTS} ports")
    ports: list[int | str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise Invalid("devcontainer.json: forwardPorts holds numbers or 'host:port' strings")
        if isinstance(item, int) and not 0 < item < 65536:
            raise Invalid(f"devcontainer.json: forwardPorts has an invalid port {item}")
        if isinstance(item, str) and (len(item) > 64 or not re.fullmatch(r"[A-Za-z0-9._-]+:[0-9]{1,5}", item)):
            raise Invalid(f"devcontainer.json: forwardPorts has an invalid entry {item[:64]!r}")
        ports.append(item)
    return ports


def _remote_user(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not USER_NAME.match(value):
        raise Invalid("devcontainer.json: remoteUser must be a plain user name ([a-z_][a-z0-9_-]*)")
    if value == "root":
        raise Invalid("devcontainer.json: remoteUser may not be root: sessions and agents run as a non-root user")
    return value


def _relative_to(base: str, relative: Any, key: str) -> str:
    if not isinstance(relative, str) or len(relative) > 1024:
        raise Invalid(f"devcontainer.json: {key} must be a relative path")
    if relative.startswith("/"):
        raise Invalid(f"devcontainer.json: {key} must be relative (to .devcontainer/), not absolute")
    joined = posixpath.normpath(posixpath.join(base, relative))
    if joined == ".." or joined.startswith("../"):
        raise Invalid(f"devcontainer.json: {key} {relative!r} leaves the workspace")
    return joined


def definition_from_devcontainer(config: Any) -> BuildDefinition:
    """Validate the supported subset of a parsed devcontainer.json (unknown keys are ignored;
    ``features`` and Docker Compose are refused)."""
    if not isinstance(config, dict):
        raise Invalid("devcontainer.json must hold a JSON object")
    if config.get("features"):
        raise Invalid(
            "devcontainer.json: 'features' are not supported: devcontainer features are OCI artefacts "
            "fetched from a registry, and none is reachable here; install what you need in a Dockerfile "
            "(build.dockerfile) instead"
        )
    if "dockerComposeFile" in config:
        raise Invalid("devcontainer.json: 'dockerComposeFile' is not supported; use 'image' or 'build'")
    build = config.get("build")
    image = config.get("image")
    if build is not None and image is not None:
        raise Invalid("devcontainer.json: give either 'image' or 'build', not both")
    common: dict[str, Any] = {
        "container_env": _env_map(config.get("containerEnv"), "containerEnv"),
        "remote_env": _env_map(config.get("remoteEnv"), "remoteEnv", allow_null=True),
        "remote_user": _remote_user(config.get("remoteUser")),
        "post_create": _post_create(config.get("postCreateCommand")),
        "forward_ports": _ports(config.get("forwardPorts")),
    }
    if image is not None:
        if not isinstance(image, str) or not IMAGE_NAME.match(image):
            raise Invalid("devcontainer.json: 'image' must be an image name")
        return BuildDefinition(kind="devcontainer", image=image, context=".", **common)
    if not isinstance(build, dict) or not build.get("dockerfile"):
        raise Invalid("devcontainer.json: needs 'image' or 'build.dockerfile'")
    return BuildDefinition(
        kind="devcontainer",
        dockerfile=_relative_to(".devcontainer", build["dockerfile"], "build.dockerfile"),
        context=_relative_to(".devcontainer", build.get("context", "."), "build.context"),
        args=_env_map(build.get("args"), "build.args"),
        **common,
    )


def _spec_digest(definition: BuildDefinition) -> hashlib._Hash:
    spec = msgspec.structs.replace(definition, digest="", context_hashed=False, dockerfile_content=None)
    h = hashlib.sha256(b"agentdock-build-v1\0")
    h.update(msgspec.json.encode(spec, order="sorted"))
    h.update(b"\0dockerfile\0")
    h.update(definition.dockerfile_content or b"")
    return h


def combined_digest(definition: BuildDefinition, context_digest: str | None) -> str:
    h = _spec_digest(definition)
    h.update(b"\0context\0")
    h.update((context_digest or "").encode())
    return h.hexdigest()


def parse_definition(workspace: Path) -> BuildDefinition | None:
    """The workspace's definition (devcontainer.json, else a top-level Dockerfile), validated,
    the Dockerfile read and linted; the context is not read (``context_hashed`` is False: its
    ``digest`` covers the definition only). None where the workspace defines none."""
    raw = read_regular(workspace, DEVCONTAINER_JSON, cap=DEFINITION_LIMIT)
    if raw is not None:
        definition = definition_from_devcontainer(parse_jsonc(raw))
    elif (content := read_regular(workspace, DOCKERFILE, cap=DEFINITION_LIMIT)) is not None:
        definition = BuildDefinition(kind="dockerfile", dockerfile=DOCKERFILE, context=".", dockerfile_content=content)
    else:
        return None
    if definition.dockerfile is not None and definition.dockerfile_content is None:
        content = read_regular(workspace, definition.dockerfile, cap=DEFINITION_LIMIT)
        if content is None:
            raise Invalid(f"the Dockerfile {definition.dockerfile!r} named by devcontainer.json does not exist")
        definition = msgspec.structs.replace(definition, dockerfile_content=content)
    if definition.dockerfile_content is not None:
        lint_dockerfile(definition.dockerfile_content, definition.args)
    return msgspec.structs.replace(definition, digest=combined_digest(definition, None))


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


# --- linting the Dockerfile (as text): nothing the engine would fetch from the host's network --


_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s*(.*)$", re.DOTALL)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


def dockerfile_instructions(content: bytes) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    text = content.decode("utf-8", errors="replace")
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives come first
        directive = re.match(r"^\s*#\s*escape\s*=\s*(\S)\s*$", line, re.IGNORECASE)
        if directive:
            escape = directive.group(1)
        elif not re.match(r"^\s*#\s*\w+\s*=", line):
            break
    result: list[tuple[str, str]] = []
    pending = ""
    for line in lines:
        if not pending and line.lstrip().startswith("#"):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation are dropped
        stripped = line.rstrip()
        if stripped.endswith(escape):
            pending += stripped[: -len(escape)] + " "
            continue
        pending += line
        match = _INSTRUCTION.match(pending)
        if match and pending.strip():
            result.append((match.group(1).upper(), match.group(2).strip()))
        pending = ""
    if pending.strip() and (match := _INSTRUCTION.match(pending)):
        result.append((match.group(1).upper(), match.group(2).strip()))
    return result


def _substitute(value: str, known: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in known:
            raise Invalid(f"the Dockerfile uses {match.group(0)!r} in a base image, which has no value")
        return known[name]

    return _VARIABLE.sub(replace, value)


def base_images(content: bytes, args: dict[str, str]) -> list[str]:
    """The images the Dockerfile builds on (``FROM``, ``COPY --from=<image>``), variables
    substituted from ``ARG`` defaults and the build args; earlier stage names left out."""
    known: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for instruction, rest in dockerfile_instructions(content):
        words = rest.split()
        if instruction == "ARG" and not stages and words:
            name, _, default = words[0].partition("=")
            known[name] = args.get(name, default.strip("\"'"))
        elif instruction == "FROM":
            words = [w for w in words if not w.startswith("--")]
            if not words:
                raise Invalid("the Dockerfile has a FROM without an image")
            image = _substitute(words[0], known)
            if image.lower() not in stages and image != "scratch":
                images.append(image)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
            else:
                stages.add(f"#stage{len(stages)}")
        elif instruction == "COPY":
            for word in words:
                if word.startswith("--from="):
                    source = word.removeprefix("--from=")
                    if not source.isdigit() and source.lower() not in stages:
                        images.append(_substitute(source, known))
    return images


def lint_dockerfile(content: bytes, args: dict[str, str]) -> None:
    """Refuse what the engine would do on the host's behalf: ``ADD`` from a URL or a git
    repository (fetched by the engine itself, on the host's network)."""
    for instruction, rest in dockerfile_instructions(content):
        if instruction == "ADD":
            sources = [
                w for w in rest.strip("[]").replace('"', " ").replace(",", " ").split() if not w.startswith("--")
            ]
            for source in sources[:-1]:
                if "://" in source or source.startswith("git@"):
                    raise Invalid(
                        f"the Dockerfile's ADD {source[:100]!r} would be fetched by the Docker engine on the "
                        "host's network: refused. Download inside a RUN step instead (with network access)"
                    )
    base_images(content, args)  # its errors are the Dockerfile's


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


# --- builds as background tasks, one at a time per project ------------------------------------

BuildState = Literal["running", "succeeded", "failed"]
EVENT_QUEUE_LIMIT = 1000
LoadProject = Callable[[UUID], Awaitable[ProjectRef | None]]


class BuildEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of ``WS /api/projects/{id}/environment/events``."""

    type: Literal["build"] = "build"
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
