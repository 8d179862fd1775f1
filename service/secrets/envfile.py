"""The operator's agent env file (``AGENTDOCK_AGENT_ENV_FILE``), in dotenv format.

One ``NAME=value`` per line; blank lines and lines starting with ``#`` are skipped; a line
may start with ``export ``. A value is taken as written (surrounding blanks stripped, and an
unquoted value ends at `` #``), or quoted: ``'…'`` literally, ``"…"`` with the escapes
``\\n``, ``\\t``, ``\\"`` and ``\\\\``. A later line wins over an earlier one with the same name.
A line that is none of these is a ``ConfigurationError`` naming the file and the line number,
never what the line holds: it may be a credential.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.errors import ConfigurationError
from service.secrets.schemas import env_name_problem

MAX_FILE_BYTES = 1024 * 1024
_EXPORT = re.compile(r"^export\s+")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


class _LineError(Exception):
    """What is wrong with one line; the caller adds the file and the line number."""


def load_env_file(path: Path) -> dict[str, str]:
    """Read and parse the file; any problem is a ``ConfigurationError``."""
    where = f"AGENTDOCK_AGENT_ENV_FILE ({path})"
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {where}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigurationError(f"{where} is over {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{where} is not UTF-8 (at byte {exc.start})") from None
    try:
        return parse_env(text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def parse_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            name, value = _parse_line(stripped)
        except _LineError as exc:
            raise ConfigurationError(f"line {number}: {exc}") from None
        env[name] = value
    return env


def _parse_line(line: str) -> tuple[str, str]:
    line = _EXPORT.sub("", line, count=1)
    name, equals, rest = line.partition("=")
    if not equals:
        raise _LineError("expected NAME=value")
    name = name.strip()
    problem = env_name_problem(name)
    if problem is not None:
        raise _LineError(f"not a valid variable name: {problem}")
    return name, _parse_value(rest.strip())


def _parse_value(text: str) -> str:
    if not text:
        return ""
    quote = text[0]
    if quote == "'":
        end = text.find("'", 1)
        if end < 0:
            raise _LineError("the single quote is not closed (values span one line)")
        value, after = text[1:end], text[end + 1 :]
    elif quote == '"':
        value, after = _double_quoted(text)
    else:
        comment = re.search(r"\s#", text)
        return (text[: comment.start()] if comment else text).strip()
    after = after.strip()
    if after and not after.startswith("#"):
        raise _LineError("unexpected text after the closing quote")
    return value


def _double_quoted(text: str) -> tuple[str, str]:
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(out), text[index + 1 :]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPES:
            out.append(_ESCAPES[text[index + 1]])
            index += 2
            continue
        out.append(char)
        index += 1
    raise _LineError("the double quote is not closed (values span one line)")
