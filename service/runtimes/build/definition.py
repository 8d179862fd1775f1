"""The definition: JSONC, the devcontainer subset, digests, and the Dockerfile's lint."""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path
from typing import Any

import msgspec

from service.errors import Invalid
from service.runtimes.build.model import (
    DEFINITION_LIMIT,
    DEVCONTAINER_JSON,
    DOCKERFILE,
    ENV_NAME,
    IMAGE_NAME,
    JSON_DEPTH,
    MAX_ARGV,
    MAX_COMMAND,
    MAX_ENV,
    MAX_PORTS,
    MAX_VALUE,
    USER_NAME,
    BuildDefinition,
)
from service.runtimes.build.reading import (
    read_regular,
)

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
