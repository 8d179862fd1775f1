"""GET /metrics: who may read it, that it parses, and that its series move with what happens
(requests, a session's output, a workflow run with a stream-json agent, a slow viewer)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.metrics import instruments
from service.sessions.session import PtySession
from service.sessions.viewer import Frame
from service.settings import Settings
from tests.conftest import TOKEN, create_project
from tests.live import LiveServer
from tests.test_agents import fake_claude_server
from tests.test_workflows import start_run, wait_run

HERE = Path(__file__).parent
DOCS = HERE.parent / "docs" / "metrics.md"
METRICS_TOKEN = "metrics-token-0123456789"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 where none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# --- who may read it (in process) -----------------------------------------------------------


@pytest.mark.settings(metrics_token=METRICS_TOKEN)
async def test_metrics_need_the_api_token_or_the_metrics_token(client: AsyncTestClient[Litestar]) -> None:
    anonymous = {"Authorization": ""}
    assert (await client.get("/metrics", headers=anonymous)).status_code == 401
    for wrong in ("Bearer nope", f"Bearer {METRICS_TOKEN}x", f"Basic {TOKEN}", METRICS_TOKEN):
        refused = await client.get("/metrics", headers={"Authorization": wrong})
        assert refused.status_code == 401, wrong
        assert refused.headers["www-authenticate"] == "Bearer"
    for token in (TOKEN, METRICS_TOKEN):
        answered = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answered.status_code == 200, answered.text
        assert answered.headers["content-type"].startswith("text/plain")
        assert value(parse(answered.text), "agentdock_info") == 1
    # The metrics token opens /metrics only, never the API.
    api = await client.get("/api/projects", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert api.status_code == 401


async def test_without_a_metrics_token_only_the_api_token_opens_metrics(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/metrics", headers={"Authorization": "Bearer "})).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).status_code == 401
    assert (await client.get("/metrics")).status_code == 200


async def test_metrics_are_not_in_the_openapi_schema(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


# --- what it says (in process) --------------------------------------------------------------


async def test_every_final_run_state_is_exposed_from_the_start(client: AsyncTestClient[Litestar]) -> None:
    # A series that appears only at its first run would hide that run from rate()/increase().
    samples = parse((await client.get("/metrics")).text)
    states = {dict(labels)["state"] for (name, labels) in samples if name == "agentdock_workflow_runs_finished_total"}
    assert states == {"succeeded", "failed", "blocked", "cancelled"}


async def test_requests_are_counted_by_route_template_and_status(client: AsyncTestClient[Litestar]) -> None:
    before = parse((await client.get("/metrics")).text)
    missing = uuid4()
    assert (await client.get(f"/api/projects/{missing}")).status_code == 404
    assert (await client.get("/api/projects")).status_code == 200
    text = (await client.get("/metrics")).text
    after = parse(text)
    route = "/api/projects/{project_id}"
    name = "agentdock_http_requests_total"
    assert (
        value(after, name, route=route, status="404", method="GET")
        - value(before, name, route=route, status="404", method="GET")
        == 1
    )
    assert (
        value(after, name, route="/api/projects", status="200")
        - value(before, name, route="/api/projects", status="200")
        == 1
    )
    assert str(missing) not in text  # a template, never a path with its ids
    buckets = value(after, "agentdock_http_request_duration_seconds_count", route=route, method="GET")
    assert buckets >= 1
    # What the app holds, at scrape time.
    assert value(after, "agentdock_info", runtime="docker") == 1
    assert ("agentdock_supervisors", frozenset({("state", "running")})) in after
    assert ("agentdock_sessions", frozenset({("state", "running")})) in after
    assert ("agentdock_workflow_runs", frozenset({("state", "failed")})) in after
    assert value(after, "agentdock_docker_events_up") in (0, 1)
    assert value(after, "agentdock_docker_engine_up") in (0, 1)


async def test_two_apps_in_one_process_each_have_their_own_registry(app: Litestar, migrated: object) -> None:
    other = create_app(app.state.agentdock.settings)
    assert other.state.agentdock.metrics.registry is not app.state.agentdock.metrics.registry
    for each in (app, other):
        async with AsyncTestClient(app=each) as test_client:
            answered = await test_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert answered.status_code == 200
            assert parse(answered.text)


def test_a_slow_viewer_dropped_is_counted_and_bytes_are_counted_per_frame() -> None:
    session = PtySession(
        project_id=uuid4(),
        command=["sh"],
        cols=80,
        rows=24,
        env={},
        restart="never",
        on_exit=lambda *_: None,
        viewer_limit=100,
    )
    fast, _ = session.attach(read_only=False)
    session.attach(read_only=True)  # a viewer that never takes its frames
    dropped = instruments.VIEWERS_DROPPED._value.get()
    sent = instruments.VIEWER_BYTES._value.get()
    frame = Frame(b"x" * 60)
    session._broadcast(frame)  # both take it
    assert instruments.VIEWER_BYTES._value.get() - sent == 120
    fast.sent(frame)  # the fast one keeps up; the slow one passes its limit with the next frame
    session._broadcast(frame)
    assert instruments.VIEWERS_DROPPED._value.get() - dropped == 1
    assert instruments.VIEWER_BYTES._value.get() - sent == 180
    assert session.viewers == {fast}


# --- documentation --------------------------------------------------------------------------


def test_every_metric_is_documented() -> None:
    documented = set(re.findall(r"^\| `(agentdock_[a-z_]+)` \|", DOCS.read_text(), re.MULTILINE))
    defined = set(instruments.all_metric_names())
    assert defined - documented == set(), "metrics missing from docs/metrics.md"
    assert documented - defined == set(), "docs/metrics.md documents metrics that do not exist"


def test_alerts_and_dashboard_use_only_metrics_that_exist() -> None:
    defined = set(instruments.all_metric_names())
    suffixes = ("_total", "_bucket", "_count", "_sum", "_created")
    for path in (HERE.parent / "docs" / "prometheus-alerts.yml", HERE.parent / "docs" / "grafana-dashboard.json"):
        used = set(re.findall(r"agentdock_[a-z_]+", path.read_text()))
        assert used, path
        for name in used:
            base = next((name.removesuffix(s) for s in suffixes if name.endswith(s)), name)
            assert name in defined or base in defined, f"{path.name}: {name} is no metric of the service"


# --- a real server: a session's output and a workflow run move the series -------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Local runtime, a fake ``claude`` (stream-json, with usage and cost) first on the PATH."""
    live = fake_claude_server(tmp_path_factory.mktemp("metrics"), AGENTDOCK_METRICS_TOKEN=METRICS_TOKEN)
    try:
        yield live
    finally:
        live.stop()


async def scrape(server: LiveServer) -> Samples:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as scraper:
        response = await scraper.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    return parse(response.text)


async def test_a_session_moves_sessions_viewers_and_bytes(server: LiveServer) -> None:
    before = await scrape(server)
    async with server.client() as client:
        project = await server.project(client, f"m-{uuid4().hex[:6]}")
        session = await server.session(client, project, command=["sh"])
        async with server.connect(session["id"]) as term:
            await term.type("echo hello-$((6*7))\n")
            await term.until_output("hello-42")
            during = await scrape(server)
        await asyncio.sleep(0.2)  # the socket's end reaches the session
        after = await scrape(server)
    assert value(during, "agentdock_sessions", state="running") >= value(before, "agentdock_sessions", state="running")
    assert value(during, "agentdock_sessions", state="running") >= 1
    assert value(during, "agentdock_session_viewers") >= 1
    assert value(after, "agentdock_session_viewers") == value(during, "agentdock_session_viewers") - 1
    assert value(during, "agentdock_viewer_bytes_total") > value(before, "agentdock_viewer_bytes_total")
    assert value(during, "agentdock_viewer_frames_total") > value(before, "agentdock_viewer_frames_total")
    assert value(during, "agentdock_session_output_bytes_total") >= len("hello-42")
    assert value(after, "agentdock_projects", status="local") >= 1
    assert value(after, "agentdock_supervisors", state="running") >= 1
    assert value(after, "agentdock_supervisor_mailbox_depth_max") >= 0
    assert value(after, "agentdock_info", runtime="local") == 1
    assert value(after, "agentdock_http_requests_total", route="/api/projects/{project_id}/sessions", status="201") >= 1


async def test_a_workflow_run_moves_gates_steps_tokens_cost_and_runs(server: LiveServer) -> None:
    before = await scrape(server)
    async with server.client() as client:
        project = await server.project(client, f"wf-{uuid4().hex[:6]}", template="python", agent="claude")
        (Path(project["path"]) / ".git" / "info" / "exclude").open("a").write(".agent-prompts/\n")
        run = await start_run(client, project)
        done = await wait_run(client, run["id"])
    assert done["state"] == "succeeded", done
    after = await scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("agentdock_workflow_runs_finished_total", state="succeeded") == 1
    assert moved("agentdock_workflow_runs", state="succeeded") == 1
    for gate in ("red", "green", "refactor"):
        assert moved("agentdock_workflow_gate_results_total", gate=gate, outcome="passed") == 1, gate
    for name in ("red", "green", "refactor", "commit"):
        assert moved("agentdock_workflow_step_duration_seconds_count", step=name, state="passed") == 1, name
    assert moved("agentdock_agent_tokens_total", step="red", kind="input") == 1200
    assert moved("agentdock_agent_tokens_total", step="red", kind="output") == 340
    assert moved("agentdock_agent_cost_usd_total", step="red") == pytest.approx(0.0123)


# --- the real engine: containers by status, restarts, the engine and its events --------------


@pytest.mark.usefixtures("docker_available")
async def test_containers_by_status_and_restarts_on_the_engine(
    docker_client: AsyncTestClient[Litestar], docker_settings: Settings
) -> None:
    docker_client.app.state.agentdock.metrics.probe_ttl_s = 0  # every scrape lists the containers

    async def scrape_here() -> Samples:
        response = await docker_client.get("/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)

    before = await scrape_here()
    project = await create_project(docker_client, docker_settings, name="metered")
    pid = project["id"]
    assert (await docker_client.post(f"/api/projects/{pid}/container/start")).status_code == 200
    assert (await docker_client.post(f"/api/projects/{pid}/container/restart")).status_code == 200
    running = await scrape_here()
    assert value(running, "agentdock_docker_engine_up") == 1
    assert value(running, "agentdock_projects", status="running") == 1
    requested = "agentdock_container_restarts_total"
    assert value(running, requested, reason="requested") - value(before, requested, reason="requested") == 1
    assert (await docker_client.post(f"/api/projects/{pid}/container/stop")).status_code == 200
    stopped = await scrape_here()
    assert value(stopped, "agentdock_projects", status="exited") == 1
    assert value(stopped, "agentdock_projects", status="running") == 0
    deadline = asyncio.get_running_loop().time() + 10
    while value(stopped, "agentdock_docker_events_total", action="die") <= value(
        before, "agentdock_docker_events_total", action="die"
    ):
        assert asyncio.get_running_loop().time() < deadline, "no die event counted"
        await asyncio.sleep(0.2)
        stopped = await scrape_here()
    assert value(stopped, "agentdock_docker_events_up") == 1
