"""A bounded mailbox: ``tell`` (fire and forget) and ``ask`` (a reply future with a deadline)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from service.errors import Unavailable

DEFAULT_CAPACITY = 1024
DEFAULT_ASK_TIMEOUT_S = 60.0


@dataclass
class Envelope:
    message: Any
    reply: asyncio.Future[Any] | None = field(default=None)


class Mailbox:
    def __init__(self, name: str, capacity: int = DEFAULT_CAPACITY) -> None:
        self.name = name
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=capacity)

    def tell(self, message: Any) -> None:
        """Deliver without waiting. A full mailbox means the actor is stuck: refuse loudly."""
        try:
            self._queue.put_nowait(Envelope(message))
        except asyncio.QueueFull:
            raise Unavailable(f"{self.name} is overloaded (mailbox full); try again later") from None

    async def ask(self, message: Any, timeout: float = DEFAULT_ASK_TIMEOUT_S) -> Any:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(Envelope(message, reply))
        except asyncio.QueueFull:
            raise Unavailable(f"{self.name} is overloaded (mailbox full); try again later") from None
        try:
            async with asyncio.timeout(timeout):
                return await reply
        except TimeoutError:
            reply.cancel()
            raise Unavailable(f"{self.name} did not answer {type(message).__name__} within {timeout:g} s") from None

    async def receive(self) -> Envelope:
        return await self._queue.get()

    def drain(self) -> list[Envelope]:
        items: list[Envelope] = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items
