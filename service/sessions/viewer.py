"""A viewer of a session: a bounded queue of encoded frames. The program and the other
viewers never wait for it; one that falls more than its limit behind is dropped."""

from __future__ import annotations

import asyncio
from collections import deque

DEFAULT_VIEWER_LIMIT = 1024 * 1024


class Frame:
    """A message encoded once for every viewer: its text and its size in bytes."""

    __slots__ = ("size", "text")

    def __init__(self, data: bytes) -> None:
        self.text = data.decode("utf-8")
        self.size = len(data)


class Viewer:
    def __init__(self, *, read_only: bool, limit: int = DEFAULT_VIEWER_LIMIT) -> None:
        self.read_only = read_only
        self.limit = limit
        self.dropped = False
        self.queued_bytes = 0
        self._frames: deque[Frame] = deque()
        self._wake = asyncio.Event()

    def push(self, frame: Frame) -> bool:
        """Queue a frame; answers False when this viewer is (now) dropped for being too slow."""
        if self.dropped:
            return False
        self._frames.append(frame)
        self.queued_bytes += frame.size
        if self.queued_bytes > self.limit:
            self.dropped = True
            self._frames.clear()
            self.queued_bytes = 0
        self._wake.set()
        return not self.dropped

    async def take(self) -> list[Frame]:
        """Wait for frames and take them all; empty once dropped."""
        while not self._frames and not self.dropped:
            self._wake.clear()
            await self._wake.wait()
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def sent(self, frame: Frame) -> None:
        """A frame taken by ``take`` has gone out: it no longer counts against the limit."""
        self.queued_bytes = max(0, self.queued_bytes - frame.size)
