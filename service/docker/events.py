"""One Docker events subscription for the whole app, filtered on the ``agentdock.managed``
label. Each event is handed to a dispatch function; when the stream ends (the engine
restarted) it resubscribes with backoff and asks for reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiodocker.events import DockerEvents

from service.docker.engine import DockerEngine
from service.logs import get_logger
from service.metrics import instruments

log = get_logger(__name__)

ACTIONS = ("start", "die", "oom", "destroy", "stop", "kill")


class DockerEventsListener:
    def __init__(
        self,
        engine: DockerEngine,
        *,
        label: str,
        dispatch: Callable[[dict[str, Any]], None],
        on_subscribed: Callable[[], None],
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.label = label
        self.dispatch = dispatch
        self.on_subscribed = on_subscribed
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="docker-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self.backoff_initial_s
        while True:
            try:
                await self._consume_once()
                delay = self.backoff_initial_s  # the stream ran, then ended: start the backoff over
                log.warning("docker.events.lost", reason="the event stream ended", retry_in_s=delay)
            except Exception as exc:
                log.warning("docker.events.lost", reason=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
            self.subscribed.clear()
            instruments.DOCKER_EVENT_STREAM_LOSSES.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def _consume_once(self) -> None:
        events = DockerEvents(self.engine.client)  # type: ignore[no-untyped-call]
        subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        filters = json.dumps({"type": ["container"], "label": [self.label], "event": list(ACTIONS)})
        runner = asyncio.create_task(events.run(filters=filters), name="docker-events-stream")
        try:
            # The stream is open once the engine answered the request: wait for that, then
            # reconcile, so that nothing which happened before the subscription is missed.
            while events.json_stream is None and not runner.done():
                await asyncio.sleep(0.01)
            if runner.done():
                runner.result()
                return
            self.subscribed.set()
            log.info("docker.events.subscribed")
            self.on_subscribed()
            while True:
                event = await subscriber.get()
                if event is None:
                    break
                instruments.DOCKER_EVENTS.labels(action=str(event.get("Action") or event.get("status") or "")).inc()
                self.dispatch(event)
            await runner  # the stream ended: surface how
        finally:
            if not runner.done():
                runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
