"""What a project's own environment is made of: limits, the definition, progress, results."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

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
