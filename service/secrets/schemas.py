"""API shapes of secrets, and the rules every environment variable name and value follows
(shared by a project's plain ``env``, its secrets and the operator's agent env file)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

import msgspec

ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"
ENV_NAME_RE = re.compile(ENV_NAME_PATTERN)
RESERVED_PREFIX = "AGENTDOCK_"
ENV_NAME_RULE = "1-64 characters of A-Z, 0-9 and _, not starting with a digit"
MAX_ENV_VALUE_BYTES = 8 * 1024
MAX_ENV_ENTRIES = 100
MAX_SECRET_BYTES = 64 * 1024
MAX_SECRETS = 100

EnvName = Annotated[
    str,
    msgspec.Meta(
        pattern=ENV_NAME_PATTERN,
        description=f"{ENV_NAME_RULE}; names starting with {RESERVED_PREFIX} are the service's",
    ),
]
EnvValue = Annotated[str, msgspec.Meta(max_length=MAX_ENV_VALUE_BYTES, description="at most 8 KiB (UTF-8)")]
EnvMapping = Annotated[
    dict[EnvName, EnvValue],
    msgspec.Meta(
        max_length=MAX_ENV_ENTRIES,
        description="plain, non-secret environment variables of the project's agents, sessions and gate runs "
        "(shown in responses; use the secrets API for credentials). At most 100 entries",
    ),
]
SecretValue = Annotated[str, msgspec.Meta(max_length=MAX_SECRET_BYTES, description="at most 64 KiB (UTF-8)")]


def check_env(env: Mapping[str, str]) -> None:
    """What a pattern cannot say about a project's ``env``: raises ``ValueError`` (a 400 when
    raised while decoding a request) naming the variable, never its value."""
    for name, value in env.items():
        if name.startswith(RESERVED_PREFIX):
            raise ValueError(f"env: {name} is reserved: the service sets the {RESERVED_PREFIX}* variables itself")
        if len(value.encode()) > MAX_ENV_VALUE_BYTES:
            raise ValueError(f"env: the value of {name} is over {MAX_ENV_VALUE_BYTES // 1024} KiB")


def env_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an environment variable's name, or None. Never echoes the name."""
    if not ENV_NAME_RE.match(name):
        return f"a name must be {ENV_NAME_RULE}"
    if name.startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX} are reserved: the service sets those variables itself"
    return None


class SecretPut(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``PUT /api/projects/{id}/secrets/{NAME}``. The value is never shown again."""

    value: SecretValue


class Secret(msgspec.Struct, kw_only=True):
    """A secret as the API shows it: its name and when it was last set, never its value."""

    name: str
    updated_at: datetime
