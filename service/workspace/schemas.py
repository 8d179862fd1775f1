"""API shapes of the files and exec APIs, and the NDJSON lines an exec streams."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

EntryType = Literal["file", "dir", "link", "other"]
Argument = Annotated[str, msgspec.Meta(max_length=32768)]
EnvValue = Annotated[str, msgspec.Meta(max_length=32768)]
MAX_EXEC_TIMEOUT_S = 3600.0
DEFAULT_EXEC_TIMEOUT_S = 60.0


class FileEntry(msgspec.Struct, kw_only=True):
    """One entry of a directory, as ``lstat`` sees it: a link is never followed."""

    name: str
    type: EntryType
    size: int  # bytes (a link: the length of its target text)
    mtime: int  # seconds since the epoch


class DirectoryListing(msgspec.Struct, kw_only=True):
    """A directory's entries, sorted by name; ``truncated`` when more than the cap were there
    (then which entries are left out is not defined)."""

    path: str
    entries: list[FileEntry]
    truncated: bool = False


class ExecRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A one-off command: an argv (no shell) or a string run by ``sh -c``."""

    command: Annotated[list[Argument], msgspec.Meta(min_length=1, max_length=1024)] | Argument
    cwd: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    env: Annotated[dict[str, EnvValue], msgspec.Meta(max_length=128)] | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_EXEC_TIMEOUT_S)] = DEFAULT_EXEC_TIMEOUT_S


class ExecOutput(msgspec.Struct, kw_only=True):
    """An NDJSON line: a piece of the command's output, as it came."""

    stream: Literal["stdout", "stderr"]
    data: str


class ExecEnd(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The last NDJSON line. ``exit_code`` is null when the command did not finish by itself
    (timed out, output cut, or the run broke: then ``error`` says why)."""

    exit_code: int | None
    timed_out: bool
    truncated: bool = False  # the output passed the limit: the rest was not sent, the command ended
    error: str | None = None


class ExecLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """For the OpenAPI document: one NDJSON line of an exec, either an ``ExecOutput``
    (``stream``, ``data``) or, last, an ``ExecEnd`` (``exit_code``, ``timed_out``, …)."""

    stream: Literal["stdout", "stderr"] | None = None
    data: str | None = None
    exit_code: int | None = None
    timed_out: bool | None = None
    truncated: bool | None = None
    error: str | None = None
