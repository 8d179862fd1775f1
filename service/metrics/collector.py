"""The app's own metrics registry (``AppMetrics``, owned by ``AppState``) and the collector that
reads what the app holds at scrape time.

What the collector reads is in memory (supervisors, mailboxes, sessions, viewers, the event
subscription), except two things refreshed by ``AppMetrics.refresh`` before each scrape:

- the containers' statuses and whether the engine answers: one list of the managed containers,
  cached for ``probe_ttl_s`` (so scrapes, however frequent, cost the engine at most one list
  per interval), with a deadline;
- workflow runs by state: one ``GROUP BY`` count on the runs table.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from service import __version__
from service.db.models import WorkflowRunModel
from service.errors import AppError
from service.metrics.instruments import GAUGES, INSTRUMENTS

if TYPE_CHECKING:
    from service.state import AppState

PROBE_TTL_S = 15.0
PROBE_TIMEOUT_S = 5.0
RUN_STATES = ("queued", "running", "succeeded", "failed", "blocked", "cancelled")


class AppMetrics:
    """A registry of the app's own: the shared instruments and the app's collector."""

    def __init__(
        self, app: AppState, *, probe_ttl_s: float = PROBE_TTL_S, probe_timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        self.app = app
        self.probe_ttl_s = probe_ttl_s
        self.probe_timeout_s = probe_timeout_s
        self.registry = CollectorRegistry(auto_describe=False)
        for instrument in INSTRUMENTS:
            self.registry.register(instrument)
        self.registry.register(StateCollector(self))
        self.engine_up = False
        self.container_status: dict[str, str] = {}  # container id → API status, as last listed
        self.runs_by_state: dict[str, int] | None = None  # None: the database did not answer
        self._probed_at: float | None = None
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        """The text exposition, after refreshing what is read from the engine and the database."""
        await self.refresh()
        return generate_latest(self.registry)

    async def refresh(self) -> None:
        async with self._lock:
            await self._probe_containers()
            await self._count_runs()

    async def _probe_containers(self) -> None:
        now = time.monotonic()
        if self._probed_at is not None and now - self._probed_at < self.probe_ttl_s:
            return
        self._probed_at = now
        registry = self.app.registry
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                states = await self.app.docker_runtime.list_managed()
        except (AppError, TimeoutError, OSError):
            # Not logged: the gauge says it, and the engine's own failures are logged where they matter.
            self.engine_up = False
            self.container_status = {}
            return
        self.engine_up = True
        self.container_status = {state.id: registry.container_view(state).status for state in states}

    async def _count_runs(self) -> None:
        try:
            async with self.app.db.get_session() as session:
                rows = await session.execute(
                    select(WorkflowRunModel.state, func.count()).group_by(WorkflowRunModel.state)
                )
                self.runs_by_state = {str(state): int(count) for state, count in rows.all()}
        except SQLAlchemyError:
            self.runs_by_state = None  # the series are left out, not shown stale (health reports the database)


class StateCollector(Collector):
    """The gauges of ``GAUGES``, read from the app's state (no I/O: see ``AppMetrics.refresh``)."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [_family(name) for name in GAUGES]

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())

    def _collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        app = metrics.app
        registry = app.registry

        info = _family("agentdock_info")
        info.add_metric([__version__, app.settings.runtime], 1)
        yield info
        yield _single("agentdock_docker_engine_up", 1 if metrics.engine_up else 0)
        yield _single("agentdock_docker_events_up", 1 if app.events.subscribed.is_set() else 0)

        supervisors = registry.snapshot()
        states = Counter("failed" if s.failed else "running" for s in supervisors)
        yield _by_label("agentdock_supervisors", states, ("running", "failed"))
        depths = [s.mailbox_depth for s in supervisors]
        yield _single("agentdock_supervisor_mailbox_messages", sum(depths))
        yield _single("agentdock_supervisor_mailbox_depth_max", max(depths, default=0))

        statuses: Counter[str] = Counter()
        for s in supervisors:
            if s.runtime == "local":
                statuses["local"] += 1
            elif s.container_id is None:
                statuses["missing"] += 1
            elif not metrics.engine_up:
                statuses["unknown"] += 1
            else:
                statuses[metrics.container_status.get(s.container_id, "missing")] += 1
        yield _by_label(
            "agentdock_projects", statuses, ("created", "running", "exited", "error", "missing", "local", "unknown")
        )

        sessions = registry.index.sessions()
        yield _by_label("agentdock_sessions", Counter(s.state for s in sessions), ("running", "exited", "error"))
        yield _single("agentdock_session_viewers", sum(s.viewer_count for s in sessions))
        if metrics.runs_by_state is not None:
            yield _by_label("agentdock_workflow_runs", Counter(metrics.runs_by_state), RUN_STATES)


def _family(name: str) -> GaugeMetricFamily:
    help_text, labels = GAUGES[name]
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def _single(name: str, value: float) -> GaugeMetricFamily:
    family = _family(name)
    family.add_metric([], value)
    return family


def _by_label(name: str, counts: Counter[str], always: tuple[str, ...]) -> GaugeMetricFamily:
    """One series per label value; the usual values are always present (0 when none), so that
    a dashboard or an alert never sees a series vanish."""
    family = _family(name)
    for value in sorted(set(always) | set(counts)):
        family.add_metric([value], counts.get(value, 0))
    return family
