"""Test-file snapshots, taken inside the environment and parsed on the host as plain data.

The command is ``find`` (never following links) plus a small POSIX ``sh`` loop: a regular file
is recorded by the SHA-256 of its content, a link by its target text, a FIFO, socket or device
by its kind alone; none of those is opened. Names and link targets travel hex-encoded, one
record a line, so any byte in a name the agent chose is only data to the service. The output
is bounded; the whole snapshot has a deadline.
"""

from __future__ import annotations

import re

from service.errors import Conflict, Invalid
from service.runtimes.environment import RunResult

SKIP_DIRS = (".git", "__pycache__", "node_modules", ".venv", ".mypy_cache", ".pytest_cache", ".agentdock")
SNAPSHOT_OUTPUT_LIMIT = 8 * 1024 * 1024  # about 50 000 test files
_HEX = "od -A n -v -t x1 | tr -d ' \\n'"
RECORD = f"""
for f do
  name=$(printf '%s' "${{f#./}}" | {_HEX})
  if [ -L "$f" ]; then kind=link; digest=$(readlink -- "$f" | {_HEX})
  elif [ -d "$f" ]; then continue
  elif [ -f "$f" ]; then kind=file; digest=$(sha256sum < "$f" 2>/dev/null) || digest=unreadable; digest=${{digest%% *}}
  elif [ -p "$f" ]; then kind=fifo; digest=-
  elif [ -S "$f" ]; then kind=socket; digest=-
  elif [ -b "$f" ] || [ -c "$f" ]; then kind=device; digest=-
  else kind=other; digest=-
  fi
  echo "$kind $digest $name"
done
"""
_LINE = re.compile(r"^(file|link|fifo|socket|device|other) ([0-9a-f]*|-|unreadable) ([0-9a-f]+)$")


def snapshot_argv(patterns: tuple[str, ...]) -> list[str]:
    """``find`` over the workspace (the working directory), pruning SKIP_DIRS, matching the
    patterns as Python's ``fnmatchcase`` does on the relative path (``*`` matches ``/``)."""
    prune: list[str] = []
    for name in SKIP_DIRS:
        prune += [*(["-o"] if prune else []), "-name", name]
    match: list[str] = []
    for pattern in patterns:
        match += [*(["-o"] if match else []), "-path", f"./{pattern}"]
    if not match:
        match = ["-false"]
    return [
        "/bin/sh",
        "-c",
        'exec "$@" 2>/dev/null',  # find's complaints (an unreadable directory) are not records
        "agentdock-snapshot",
        "find",
        ".",
        "(",
        "-type",
        "d",
        "(",
        *prune,
        ")",
        ")",
        "-prune",
        "-o",
        "(",
        *match,
        ")",
        "-exec",
        "/bin/sh",
        "-c",
        RECORD,
        "agentdock-snapshot",
        "{}",
        "+",
    ]


def parse_snapshot(output: str) -> dict[str, str]:
    """Path → ``sha256:<hex>`` (a file), ``link:<hex of its target>``, or the kind of entry."""
    snapshot: dict[str, str] = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            raise Invalid(f"the test-file snapshot printed a line it should not: {line[:200]!r}")
        kind, digest, name_hex = match.groups()
        try:
            name = bytes.fromhex(name_hex).decode("utf-8", errors="replace")
        except ValueError:
            raise Invalid("the test-file snapshot printed a malformed name") from None
        if kind == "file":
            snapshot[name] = f"sha256:{digest}" if digest != "unreadable" else "file:unreadable"
        elif kind == "link":
            snapshot[name] = f"link:{digest}"
        else:
            snapshot[name] = kind
    return snapshot


def snapshot_result(result: RunResult, timeout: float) -> dict[str, str]:
    """The parsed snapshot, or a clear error where it could not be taken whole."""
    if result.timed_out:
        raise Conflict(f"the test-file snapshot did not finish within {timeout:g} s")
    if result.truncated:
        raise Conflict("the test-file snapshot is too large (too many test files)")
    return parse_snapshot(result.text)
