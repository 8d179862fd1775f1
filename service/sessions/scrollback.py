"""A scrollback ring bounded in bytes, and its replay: cut at a safe point, queries removed.

The ring holds exactly the text that was sent to viewers (already decoded), so a snapshot
followed by the live frames is the stream with nothing lost or doubled at the seam.
"""

from __future__ import annotations

import re
from collections import deque

DEFAULT_LIMIT = 256 * 1024
# How far past the cut to look for a line start before settling for a character boundary.
_RESYNC_WINDOW = 4096

# Terminal *queries*: replayed, xterm.js would answer them again and the answers would
# arrive as input. Device status / cursor position (CSI n), device attributes (CSI c),
# window reports (CSI t), mode requests (DECRQM), DECRQSS, and OSC colour queries.
QUERIES = re.compile(
    r"\x1b\[[?>=]?[0-9;]*n"  # DSR, CPR: ESC[5n ESC[6n ESC[?6n
    r"|\x1b\[[?>=]?[0-9;]*c"  # DA1/DA2/DA3: ESC[c ESC[0c ESC[>c ESC[=c
    r"|\x1b\[(?:1[0-9]|2[0-2]|[0-9])(?:;[0-9]*)*t"  # XTWINOPS reports: ESC[14t ESC[18t …
    r"|\x1b\[\??[0-9;]*\$p"  # DECRQM
    r"|\x1bP\$q.*?(?:\x1b\\|\x07)"  # DECRQSS
    r"|\x1b\][0-9]+;(?:[0-9]+;)?\?(?:\x07|\x1b\\)",  # OSC 4/10/11/12 … colour queries
    re.DOTALL,
)


class Scrollback:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._trimmed = False
        self.version = 0  # moves with every append: the saved copy is stale when it differs

    def __len__(self) -> int:
        return self._size

    def append(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        self.version += 1
        while self._size > self.limit:
            head = self._chunks[0]
            excess = self._size - self.limit
            if len(head) <= excess:
                self._chunks.popleft()
                self._size -= len(head)
            else:
                self._chunks[0] = head[excess:]
                self._size -= excess
            self._trimmed = True

    def data(self) -> bytes:
        """What the ring holds, from a safe start (to save it)."""
        data = b"".join(self._chunks)
        return _safe_start(data) if self._trimmed else data

    def restore(self, data: bytes) -> None:
        """Start from a saved ring (a session re-adopted by a new service)."""
        self._chunks.clear()
        self._size = 0
        self._trimmed = False
        self.append(data.decode("utf-8", errors="replace"))

    def replay(self) -> str:
        """The text to send a viewer on attach."""
        data = b"".join(self._chunks)
        if self._trimmed:
            data = _safe_start(data)
        return QUERIES.sub("", data.decode("utf-8", errors="replace"))


def _safe_start(data: bytes) -> bytes:
    """Begin at a line start near the cut (no escape sequence spans a newline); failing
    that, at least at a whole UTF-8 character."""
    newline = data.find(b"\n", 0, _RESYNC_WINDOW)
    if newline != -1:
        return data[newline + 1 :]
    start = 0
    while start < len(data) and 0x80 <= data[start] <= 0xBF:  # UTF-8 continuation bytes
        start += 1
    return data[start:]
