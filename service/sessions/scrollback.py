"""A scrollback ring bounded in bytes, and its replay: cut at a safe point, queries removed.

The ring holds exactly the text that was sent to viewers (already decoded), so a snapshot
followed by the live frames is the stream with nothing lost or doubled at the seam.

Offsets are absolute: ``total`` counts every byte ever appended, the ring holds
``start..total``. A reader that keeps its own place in the stream (the screen model,
``screen.py``) reads from there with ``read`` and hears, through two O(1) hooks, of each
append and of each piece the ring lets go of.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

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
        self.total = 0  # bytes ever appended: the offset of the ring's end
        self.on_append: Callable[[], None] | None = None
        self.on_evict: Callable[[bytes, int], None] | None = None  # (piece, its offset)

    def __len__(self) -> int:
        return self._size

    @property
    def start(self) -> int:
        """The offset of the oldest byte the ring still holds."""
        return self.total - self._size

    def append(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        self.total += len(data)
        self.version += 1
        if self._size > self.limit:
            self._evict(self._size - self.limit)
        if self.on_append is not None:
            self.on_append()

    def _evict(self, excess: int) -> None:
        while excess > 0:
            head = self._chunks[0]
            offset = self.total - self._size
            if len(head) <= excess:
                piece = self._chunks.popleft()
            else:
                piece, self._chunks[0] = head[:excess], head[excess:]
            self._size -= len(piece)
            excess -= len(piece)
            self._trimmed = True
            if self.on_evict is not None:
                self.on_evict(piece, offset)

    def read(self, start: int, end: int) -> bytes:
        """The bytes at offsets ``start..end`` (within the ring)."""
        if not self.start <= start <= end <= self.total:
            raise ValueError(f"{start}..{end} is not within the ring ({self.start}..{self.total})")
        parts: list[bytes] = []
        skip = self.total - end  # bytes after ``end``, in the newest chunks
        need = end - start
        for chunk in reversed(self._chunks):
            if need <= 0:
                break
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            piece = chunk[: len(chunk) - skip] if skip else chunk
            skip = 0
            if len(piece) > need:
                piece = piece[len(piece) - need :]
            parts.append(piece)
            need -= len(piece)
        return b"".join(reversed(parts))

    def data(self) -> bytes:
        """What the ring holds, from a safe start (to save it)."""
        data = b"".join(self._chunks)
        return _safe_start(data) if self._trimmed else data

    def restore(self, data: bytes) -> None:
        """Start from a saved ring (a session re-adopted by a new service)."""
        if self._size:
            self._evict(self._size)
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
