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

from service.runtimes.build.context import (
    context_tar,
    read_definition,
)
from service.runtimes.build.definition import (
    base_images,
    combined_digest,
    definition_from_devcontainer,
    dockerfile_instructions,
    lint_dockerfile,
    parse_definition,
    parse_jsonc,
    strip_jsonc,
)
from service.runtimes.build.engine import (
    build_image,
    ensure_image,
    image_exists,
    image_tag,
    remove_image,
)
from service.runtimes.build.manager import (
    EVENT_QUEUE_LIMIT,
    BuildEvent,
    BuildManager,
    BuildState,
    LoadProject,
)
from service.runtimes.build.model import (
    BUILD_TIMEOUT_S,
    CONTEXT_DEADLINE_S,
    CONTEXT_DEPTH,
    CONTEXT_ENTRIES,
    CONTEXT_LIMIT,
    DEFINITION_LIMIT,
    DEVCONTAINER_JSON,
    DOCKERFILE,
    DOCKERIGNORE_LIMIT,
    DOCKERIGNORE_PATTERNS,
    ENV_NAME,
    ERROR_LINES,
    EVENT_TEXT_LIMIT,
    IMAGE_NAME,
    JSON_DEPTH,
    MAX_ARGV,
    MAX_COMMAND,
    MAX_ENV,
    MAX_PORTS,
    MAX_VALUE,
    SENT_DOCKERFILE,
    SKIPPED_DIRS,
    USER_NAME,
    BuildDefinition,
    BuildProgress,
    BuildResult,
    OnProgress,
)
from service.runtimes.build.reading import (
    read_regular,
)

__all__ = [
    "BUILD_TIMEOUT_S",
    "CONTEXT_DEADLINE_S",
    "CONTEXT_DEPTH",
    "CONTEXT_ENTRIES",
    "CONTEXT_LIMIT",
    "DEFINITION_LIMIT",
    "DEVCONTAINER_JSON",
    "DOCKERFILE",
    "DOCKERIGNORE_LIMIT",
    "DOCKERIGNORE_PATTERNS",
    "ENV_NAME",
    "ERROR_LINES",
    "EVENT_QUEUE_LIMIT",
    "EVENT_TEXT_LIMIT",
    "IMAGE_NAME",
    "JSON_DEPTH",
    "MAX_ARGV",
    "MAX_COMMAND",
    "MAX_ENV",
    "MAX_PORTS",
    "MAX_VALUE",
    "SENT_DOCKERFILE",
    "SKIPPED_DIRS",
    "USER_NAME",
    "BuildDefinition",
    "BuildEvent",
    "BuildManager",
    "BuildProgress",
    "BuildResult",
    "BuildState",
    "LoadProject",
    "OnProgress",
    "base_images",
    "build_image",
    "combined_digest",
    "context_tar",
    "definition_from_devcontainer",
    "dockerfile_instructions",
    "ensure_image",
    "image_exists",
    "image_tag",
    "lint_dockerfile",
    "parse_definition",
    "parse_jsonc",
    "read_definition",
    "read_regular",
    "remove_image",
    "strip_jsonc",
]
