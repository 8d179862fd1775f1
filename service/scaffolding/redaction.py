"""Scrubbing secrets out of text that came from outside (git's stderr, GitHub's answers)
before it reaches a log line or an error body."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
# ``scheme://user[:password]@host``: whatever sits before the ``@`` may be a credential.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
# Authorization headers echoed back in a message.
_AUTH_HEADER = re.compile(r"(?i)\b(authorization:\s*(?:basic|bearer|token)\s+)\S+")
MAX_DETAIL = 2000


class Redactor:
    """Replaces each secret, the base64 forms git and HTTP clients put in headers, and any
    ``user:password@`` part of a URL by ``[redacted]``."""

    __slots__ = ("_needles",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            needles.add(secret)
            for plain in (secret, f"x-access-token:{secret}", f"{secret}:x-oauth-basic"):
                needles.add(base64.b64encode(plain.encode()).decode().rstrip("="))
        # Longest first, so that a secret containing another is replaced whole.
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    def __call__(self, text: str, *, limit: int = MAX_DETAIL) -> str:
        for needle in self._needles:
            text = text.replace(needle, REDACTED)
        text = _USERINFO.sub(rf"\1{REDACTED}@", text)
        text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text
