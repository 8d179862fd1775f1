"""Per-run subscriptions for ``WS /api/workflow-runs/{id}/events``: one event per state change."""

from __future__ import annotations

import asyncio
from uuid import UUID

from service.workflows.schemas import Run, RunEvent

QUEUE_LIMIT = 1000


class RunEvents:
    def __init__(self) -> None:
        self._subscribers: dict[UUID, set[asyncio.Queue[RunEvent]]] = {}

    def subscribe(self, run_id: UUID) -> asyncio.Queue[RunEvent]:
        queue: asyncio.Queue[RunEvent] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._subscribers.setdefault(run_id, set()).add(queue)
        return queue

    def unsubscribe(self, run_id: UUID, queue: asyncio.Queue[RunEvent]) -> None:
        subscribers = self._subscribers.get(run_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[run_id]

    def publish(self, run: Run, change: str) -> None:
        for queue in list(self._subscribers.get(run.id, ())):
            try:
                queue.put_nowait(RunEvent(change=change, run=run))
            except asyncio.QueueFull:  # a subscriber that reads nothing is let go
                self.unsubscribe(run.id, queue)
