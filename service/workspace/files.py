"""The files API's work, done inside the project's environment.

One small POSIX ``sh`` script (``FILES_SCRIPT``) does every operation in the environment
(docker: in the container, as ``agent``), with the path as argv, never as shell text. It walks
the path one component at a time from the workspace's real path: every component that exists
is resolved with ``realpath`` and must stay inside the workspace, so neither ``..`` nor a link
the agent made leads out (the host refuses ``..``, absolute paths and NUL before that). A
FIFO, socket or device is never opened; a listing never follows links (``lstat``: a link is
``link``). Its answer is plain data, parsed strictly on the host: an exit code for the outcome,
and on stdout a header line then the file's bytes, or NUL-terminated listing records.

What the host does not do: read, follow or interpret anything in the workspace itself.
"""

from __future__ import annotations

import io
import re

from service.errors import AppError, Conflict, Invalid, NotFound
from service.logs import get_logger
from service.runtimes.environment import BoundedSink, Environment, RunResult
from service.workspace.schemas import DirectoryListing, EntryType, FileEntry

log = get_logger(__name__)

FILE_LIMIT = 16 * 1024 * 1024  # the largest file read or written through the API
ENTRY_LIMIT = 10_000  # a listing's cap
FILES_TIMEOUT_S = 60.0
_LISTING_LIMIT = ENTRY_LIMIT * 320 + 4096  # a record: type, size, mtime and a name ≤ 255 bytes
_MAX_PATH = 4096


class TooLarge(AppError):
    status_code = 413
    close_code = 4413


# Exit codes: 0 done, 10 missing, 11 outside the workspace, 12 not a regular file or directory,
# 13 a directory, 14 too large, 15 an unresolvable link, 16 a parent not a directory.
# argv: op (get|put|delete), the parent's components joined by "/", the last name ("" for
# get), the size cap, the entry cap. Works in busybox ash and in dash/bash.
FILES_SCRIPT = r"""
set -f
op=$1; rel=$2; name=$3; cap=$4; entries=$5
root=$(realpath .) || exit 20
inside() { case $1 in "$root"|"$root"/*) return 0;; esac; return 1; }
p=$root; missing=
IFS=/
for c in $rel; do
  if [ -n "$missing" ]; then missing="$missing/$c"; continue; fi
  if [ -e "$p/$c" ] || [ -L "$p/$c" ]; then
    q=$(realpath "$p/$c" 2>/dev/null) || exit 15
    inside "$q" || exit 11
    p=$q
  else
    missing=$c
  fi
done
unset IFS
if [ -n "$missing" ]; then
  [ "$op" = put ] || exit 10
  [ -d "$p" ] || exit 16
  mkdir -p -- "$p/$missing" || exit 16
  q=$(realpath "$p/$missing") || exit 16
  inside "$q" || exit 11
  p=$q
fi
[ -d "$p" ] || { [ "$op" = get ] || exit 16; }

list() {
  set +f
  printf 'dir\n'
  n=0
  for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    if [ -L "$f" ]; then k=link
    elif [ -d "$f" ]; then k=dir
    elif [ -f "$f" ]; then k=file
    elif [ -e "$f" ]; then k=other
    else continue
    fi
    n=$((n + 1))
    if [ "$n" -gt "$entries" ]; then printf 'more\0'; return 0; fi
    s=$(stat -c '%s %Y' -- "$f" 2>/dev/null) || continue
    printf '%s %s %s\0' "$k" "$s" "${f##*/}"
  done
  printf 'end\0'
}

case $op in
get)
  if [ -d "$p" ]; then list "$p"; exit 0; fi
  [ -f "$p" ] || exit 12
  size=$(stat -c %s -- "$p") || exit 21
  if [ "$size" -gt "$cap" ]; then echo "$size" >&2; exit 14; fi
  printf 'file %s\n' "$size"
  exec cat -- "$p"
  ;;
put)
  t=$p/$name
  if [ -L "$t" ]; then
    q=$(realpath "$t" 2>/dev/null) || exit 15
    inside "$q" || exit 11
    t=$q
  fi
  if [ -d "$t" ]; then exit 13; fi
  if [ -e "$t" ] && [ ! -f "$t" ]; then exit 12; fi
  cat > "$t" || exit 21
  ;;
delete)
  t=$p/$name
  if [ -L "$t" ]; then rm -f -- "$t" || exit 21  # the link itself, never its target
  elif [ -d "$t" ]; then exit 13
  elif [ -e "$t" ]; then rm -f -- "$t" || exit 21
  else exit 10
  fi
  ;;
*) exit 2 ;;
esac
"""

_RECORD = re.compile(rb"\A(file|dir|link|other) ([0-9]+) (-?[0-9]+) ([^/\x00]+)\Z")
_FILE_HEADER = re.compile(rb"\Afile ([0-9]+)\n")


def clean_path(path: str) -> list[str]:
    """The components of a workspace-relative path; ``""`` and ``.`` are the workspace itself.
    Refuses absolute paths, ``..``, NUL and over-long paths (400)."""
    if len(path) > _MAX_PATH:
        raise Invalid(f"the path is longer than {_MAX_PATH} characters")
    if "\x00" in path:
        raise Invalid("the path contains a NUL character")
    if path.startswith("/"):
        raise Invalid(f"the path {path!r} is absolute: paths are relative to the workspace")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Invalid(f"the path {path!r} contains '..': it may not leave the workspace")
    return parts


def _argv(op: str, parent: list[str], name: str) -> list[str]:
    return [
        "/bin/sh",
        "-c",
        FILES_SCRIPT,
        "agentdock-files",
        op,
        "/".join(parent),
        name,
        str(FILE_LIMIT),
        str(ENTRY_LIMIT),
    ]


def _check(result: RunResult, path: str, what: str) -> None:
    """Turn the script's exit code into the API's answer."""
    shown = path or "."
    if result.timed_out:
        raise Conflict(f"{what} {shown!r} did not finish within {FILES_TIMEOUT_S:g} s")
    match result.exit_code:
        case 0:
            return
        case 10:
            raise NotFound(f"no file or directory {shown!r} in the workspace")
        case 11:
            raise Invalid(f"the path {shown!r} leads outside the workspace (through a link)")
        case 12:
            raise Invalid(f"{shown!r} is not a regular file or directory (a FIFO, socket or device is never opened)")
        case 13:
            raise Conflict(f"{shown!r} is a directory: only files are written or deleted")
        case 14:
            size = result.text.strip()
            raise TooLarge(f"{shown!r} is {size} bytes; files larger than {FILE_LIMIT} bytes are not read")
        case 15:
            raise Invalid(f"the path {shown!r} goes through a link that cannot be resolved")
        case 16:
            raise Conflict(f"a parent of {shown!r} is not a directory")
    detail = result.text.strip()[-300:]
    raise Conflict(f"{what} {shown!r} failed (exit code {result.exit_code}){': ' + detail if detail else ''}")


async def read_path(environment: Environment, path: str) -> DirectoryListing | bytes:
    """A directory's listing, or a file's bytes (at most ``FILE_LIMIT``)."""
    parts = clean_path(path)
    buffer = io.BytesIO()
    sink = BoundedSink(buffer, FILE_LIMIT + _LISTING_LIMIT)
    result = await environment.run(_argv("get", parts, ""), timeout=FILES_TIMEOUT_S, stdout=sink, output_limit=4096)
    if sink.overflowed:
        raise TooLarge(f"{path or '.'!r} grew past {FILE_LIMIT} bytes while it was read")
    _check(result, path, "reading")
    return parse_read("/".join(parts), buffer.getvalue())


def parse_read(path: str, output: bytes) -> DirectoryListing | bytes:
    """The script's answer to ``get``: ``file N\\n`` and the bytes, or ``dir\\n`` and records."""
    header = _FILE_HEADER.match(output)
    if header is not None:
        data = output[header.end() :]
        if len(data) > FILE_LIMIT:
            raise TooLarge(f"{path or '.'!r} grew past {FILE_LIMIT} bytes while it was read")
        return data
    if not output.startswith(b"dir\n"):
        raise Conflict("reading the workspace printed something it should not")
    return parse_listing(path, output[4:])


def parse_listing(path: str, output: bytes) -> DirectoryListing:
    """NUL-terminated records ``type size mtime name``, ended by ``end`` or ``more``."""
    records = output.split(b"\x00")
    if len(records) < 2 or records[-1] != b"" or records[-2] not in (b"end", b"more"):
        raise Conflict("the directory listing was cut short")
    entries: list[FileEntry] = []
    for record in records[:-2]:
        match = _RECORD.match(record)
        if match is None or match.group(4) in (b".", b".."):
            raise Conflict(f"the directory listing printed a record it should not: {record[:100]!r}")
        kind, size, mtime, name = match.groups()
        entry_type: EntryType = kind.decode()  # type: ignore[assignment]  # the pattern allows only these
        entries.append(
            FileEntry(name=name.decode("utf-8", errors="replace"), type=entry_type, size=int(size), mtime=int(mtime))
        )
    if len(entries) > ENTRY_LIMIT:
        raise Conflict("the directory listing has more entries than it should")
    entries.sort(key=lambda entry: entry.name)
    return DirectoryListing(path=path, entries=entries, truncated=records[-2] == b"more")


def _file_path(path: str) -> tuple[list[str], str]:
    parts = clean_path(path)
    if not parts:
        raise Invalid("the path names the workspace itself, not a file")
    return parts[:-1], parts[-1]


async def write_file(environment: Environment, path: str, data: bytes) -> None:
    """Write ``data`` to the file (created with its parents; a link inside is written through)."""
    if len(data) > FILE_LIMIT:
        raise TooLarge(f"the body is {len(data)} bytes; files larger than {FILE_LIMIT} bytes are not written")
    parent, name = _file_path(path)
    result = await environment.run(_argv("put", parent, name), timeout=FILES_TIMEOUT_S, stdin=data, output_limit=4096)
    _check(result, path, "writing")
    log.info(
        "workspace.file.written", project_id=str(environment.project.id), path="/".join([*parent, name]), size=len(data)
    )


async def delete_file(environment: Environment, path: str) -> None:
    """Remove a file (a link: the link itself). A directory is refused (409)."""
    parent, name = _file_path(path)
    result = await environment.run(_argv("delete", parent, name), timeout=FILES_TIMEOUT_S, output_limit=4096)
    _check(result, path, "deleting")
    log.info("workspace.file.deleted", project_id=str(environment.project.id), path="/".join([*parent, name]))
