"""A bounded mailbox: ``tell`` (fire and forget) and ``ask`` (a reply future with a deadline)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from service.errors import Unavailable
from service.logs import get_logger

log = get_logger(__name__)

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

    async def put(self, message: Any) -> None:
        """Deliver, waiting for room: for the actor's own timers and children, whose message
        must not be lost to a full mailbox (the wait is logged once)."""
        try:
            self._queue.put_nowait(Envelope(message))
        except asyncio.QueueFull:
            log.warning("supervisor.mailbox_full", mailbox=self.name, message=type(message).__name__)
            await self._queue.put(Envelope(message))

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

    def __len__(self) -> int:
        return self._queue.qsize()

    async def receive(self) -> Envelope:
        return await self._queue.get()

    def drain(self) -> list[Envelope]:
        items: list[Envelope] = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items
