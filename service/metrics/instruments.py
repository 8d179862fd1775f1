"""Every Prometheus metric of the service, defined in this one module (and documented in
``docs/metrics.md``; a test checks that each one is).

Two kinds:

- **Instruments** (counters and histograms) move where something happens: a request ends, a
  frame goes to viewers, a container is restarted, a gate is judged. They are module-level
  objects, created in *no* registry; each app registers them in a registry of its own
  (``AppMetrics``), never in ``prometheus_client``'s global default one. One service runs per
  process, so their values are the process's; tests that build several apps in one process
  read differences.
- **Gauges read at scrape time** (``GAUGES``): what the app holds now (supervisors, sessions,
  projects by container status, runs by state, whether the engine answers), produced by the
  app's collector from its own state. They are the app's alone.

Instrumentation is cheap: one ``inc()`` or ``observe()`` per event, never per byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

PREFIX: Final = "agentdock_"

# --- HTTP ---------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "agentdock_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=None,
)
HTTP_REQUEST_DURATION = Histogram(
    "agentdock_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=None,
)

# --- actors and containers ----------------------------------------------------------------

SUPERVISOR_CRASHES = Counter(
    "agentdock_supervisor_crashes",
    "Project supervisors that crashed (each is restarted by the registry, within its limit).",
    registry=None,
)
SUPERVISOR_GAVE_UP = Counter(
    "agentdock_supervisor_gave_up",
    "Project supervisors that crashed too often and were not restarted.",
    registry=None,
)
CONTAINER_FAILURES = Counter(
    "agentdock_container_failures",
    "Failures of containers the service wanted running (a die, an OOM kill, a failed restart).",
    registry=None,
)
CONTAINER_RESTARTS = Counter(
    "agentdock_container_restarts",
    "Container restarts, by reason: failure (the restart policy) or requested (the API).",
    ["reason"],
    registry=None,
)
CONTAINER_GAVE_UP = Counter(
    "agentdock_container_gave_up",
    "Containers the service stopped restarting: more failures than the restart policy allows.",
    registry=None,
)
DOCKER_EVENTS = Counter(
    "agentdock_docker_events",
    "Docker container events received on the subscription, by action.",
    ["action"],
    registry=None,
)
DOCKER_EVENT_STREAM_LOSSES = Counter(
    "agentdock_docker_event_stream_losses",
    "Times the Docker event stream ended or failed (it is resubscribed with backoff).",
    registry=None,
)

# --- sessions and viewers (the terminal hot path: one inc per frame) ----------------------

SESSION_OUTPUT_BYTES = Counter(
    "agentdock_session_output_bytes",
    "Bytes the sessions' programs wrote to their terminals.",
    registry=None,
)
VIEWER_BYTES = Counter(
    "agentdock_viewer_bytes",
    "Bytes of frames (encoded JSON) queued to viewers: a frame counts once per viewer.",
    registry=None,
)
VIEWER_FRAMES = Counter(
    "agentdock_viewer_frames",
    "Frames broadcast to the viewers of a session (counted once per frame, however many viewers).",
    registry=None,
)
VIEWERS_DROPPED = Counter(
    "agentdock_viewers_dropped",
    "Viewers dropped (closed with 4008) for falling too far behind their session's output.",
    registry=None,
)

# --- workflows ----------------------------------------------------------------------------

WORKFLOW_RUNS_FINISHED = Counter(
    "agentdock_workflow_runs_finished",
    "Workflow runs that ended, by final state: succeeded, failed, blocked or cancelled.",
    ["state"],
    registry=None,
)
GATE_RESULTS = Counter(
    "agentdock_workflow_gate_results",
    "Test gates judged by the service after an agent's attempt, by gate and outcome (passed, failed).",
    ["gate", "outcome"],
    registry=None,
)
STEP_DURATION = Histogram(
    "agentdock_workflow_step_duration_seconds",
    "Time from a step's start to its end (all its attempts), by step and final step state.",
    ["step", "state"],
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0),
    registry=None,
)
AGENT_TOKENS = Counter(
    "agentdock_agent_tokens",
    "Tokens the agents reported using in workflow steps, by step and kind (input, output).",
    ["step", "kind"],
    registry=None,
)
AGENT_COST = Counter(
    "agentdock_agent_cost_usd",
    "Cost in US dollars the agents reported for workflow steps, by step.",
    ["step"],
    registry=None,
)

INSTRUMENTS: tuple[MetricWrapperBase, ...] = (
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    SUPERVISOR_CRASHES,
    SUPERVISOR_GAVE_UP,
    CONTAINER_FAILURES,
    CONTAINER_RESTARTS,
    CONTAINER_GAVE_UP,
    DOCKER_EVENTS,
    DOCKER_EVENT_STREAM_LOSSES,
    SESSION_OUTPUT_BYTES,
    VIEWER_BYTES,
    VIEWER_FRAMES,
    VIEWERS_DROPPED,
    WORKFLOW_RUNS_FINISHED,
    GATE_RESULTS,
    STEP_DURATION,
    AGENT_TOKENS,
    AGENT_COST,
)

# --- gauges, produced by the app's collector at scrape time: name → (help, labels) ---------

GAUGES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "agentdock_info": ("The service: its version and default runtime (always 1).", ("version", "runtime")),
    "agentdock_docker_engine_up": ("1 when the Docker engine answered the last probe (cached briefly), else 0.", ()),
    "agentdock_docker_events_up": ("1 while the Docker event subscription is open, else 0.", ()),
    "agentdock_supervisors": ("Project supervisors, by state: running or failed (gave up).", ("state",)),
    "agentdock_supervisor_mailbox_messages": ("Messages waiting in all the supervisors' mailboxes.", ()),
    "agentdock_supervisor_mailbox_depth_max": ("Messages waiting in the fullest supervisor mailbox.", ()),
    "agentdock_projects": (
        "Projects by the status of their container: created, running, exited, error (given up), missing "
        "(none), local (local runtime) or unknown (the engine did not answer).",
        ("status",),
    ),
    "agentdock_sessions": ("PTY sessions the service holds, by state: running, exited or error.", ("state",)),
    "agentdock_session_viewers": ("Viewers attached to sessions (terminal WebSockets).", ()),
    "agentdock_workflow_runs": ("Workflow runs in the database, by state.", ("state",)),
}

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FINAL_RUN_STATES = frozenset({"succeeded", "failed", "blocked", "cancelled"})
FINAL_STEP_STATES = frozenset({"passed", "failed", "cancelled"})


def all_metric_names() -> list[str]:
    """Every metric's name as documented (counters without their ``_total`` suffix)."""
    return [next(iter(instrument.describe())).name for instrument in INSTRUMENTS] + list(GAUGES)


# --- small helpers for the workflow runner (one call per persisted change) ----------------


def http_request(method: str, route: str, status: int, duration_s: float) -> None:
    """One answered request, by its route template (any other method is counted as ``other``)."""
    method = method if method in HTTP_METHODS else "other"
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(duration_s)


def run_saved(values: Mapping[str, Any]) -> None:
    """A run's row was written: count it when it reached a final state."""
    state = values.get("state")
    if state in FINAL_RUN_STATES:
        WORKFLOW_RUNS_FINISHED.labels(state=state).inc()


def step_saved(step: str, started_at: datetime | None, values: Mapping[str, Any]) -> None:
    """A step's row was written: its duration when it ended, its agent's tokens and cost
    when the agent reported them."""
    state = values.get("state")
    finished_at = values.get("finished_at")
    if state in FINAL_STEP_STATES and isinstance(finished_at, datetime) and started_at is not None:
        STEP_DURATION.labels(step=step, state=state).observe(max(0.0, (finished_at - started_at).total_seconds()))
    report = values.get("agent_report")
    if isinstance(report, Mapping):
        for kind in ("input", "output"):
            tokens = report.get(f"{kind}_tokens")
            if isinstance(tokens, int) and tokens > 0:
                AGENT_TOKENS.labels(step=step, kind=kind).inc(tokens)
        cost = report.get("cost_usd")
        if isinstance(cost, int | float) and cost > 0:
            AGENT_COST.labels(step=step).inc(cost)


def gate_judged(gate: str, *, passed: bool) -> None:
    GATE_RESULTS.labels(gate=gate, outcome="passed" if passed else "failed").inc()


# Every final state exists from the start, at 0: Prometheus cannot see a labelled counter's
# first step (from no series to 1), so the first failures after a restart would not count in
# rate() or increase() (the runs-failing alert would wait for one more).
for _state in sorted(FINAL_RUN_STATES):
    WORKFLOW_RUNS_FINISHED.labels(state=_state)
