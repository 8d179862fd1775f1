"""Container create + start through the API, against aiodocker directly (DESIGN: at most 1.1x).

    .venv/bin/python -m bench.containers [--image agentdock-base:latest] [--count 20] [--rounds 3]

Starts the real service (``agentdock serve``: migrations, then uvicorn) on a free loopback
port with a temporary data directory and ``AGENTDOCK_NETWORK=none``, creates projects through
the REST API (not timed), then times ``POST /api/projects/{id}/container/start`` with httpx.
The baseline creates and starts containers with aiodocker, with the very configuration the
service uses (``DockerRuntime.container_config``).

Three kinds of start, ``--count`` of each per round, interleaved container by container in a
rotating order (so that drift of the machine falls on all three alike):

- ``api cold``: a fresh project, so the request also starts the project's supervisor, which
  first looks for a container to adopt. This is what the issue asks for: the headline.
- ``api warm``: the supervisor already runs (an untimed ``GET .../container`` started it),
  as for every project after a service restart.
- ``aiodocker``: ``containers.create(config, name=...)`` then ``container.start()``.

Then, unless ``--no-concurrent``, ``api cold`` and ``aiodocker`` once more with all ``--count``
starts at once, one phase after the other (the order alternates from round to round). Each
round's containers are removed (untimed) before the next phase.

Every container this benchmark creates carries the ``agentdock.project`` label of a project
id it created; exactly those are removed at the end, even on failure. Other labelled
containers on the engine are left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import httpx

from bench._service import ServiceProcess
from service.docker.engine import DockerEngine
from service.runtimes.base import ProjectRef
from service.runtimes.docker import MANAGED_LABEL, PROJECT_LABEL, DockerRuntime, container_name

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.1
SETTLE_S = 1.0  # after a phase's containers are removed, let the engine finish its clean-up


# --- phases ----------------------------------------------------------------------------


@dataclass
class Phase:
    kind: str  # "api cold" | "api warm" | "aiodocker"
    mode: str  # "sequential" | "concurrent"
    round: int
    latencies: list[float] = field(default_factory=list)
    total: float = 0.0  # sequential: the sum of the latencies; concurrent: the wall time
    project_ids: list[str] = field(default_factory=list)  # API phases, in the order started
    split: list[tuple[float, float]] = field(default_factory=list)  # aiodocker: (create, start)


class Bench:
    def __init__(
        self, service: ServiceProcess, api: httpx.AsyncClient, docker: aiodocker.Docker, mine: set[str]
    ) -> None:
        self.service = service
        self.api = api
        self.docker = docker
        self.mine = mine  # every project id whose containers this run may remove
        self.settings = service.settings()
        if self.settings.network != "none":  # only loopback traffic on this machine
            raise RuntimeError(f"refusing to create containers with network {self.settings.network!r}")
        self.runtime = DockerRuntime(DockerEngine(), self.settings)
        self.baseline_dir = service.data_dir / "baseline"
        self._baseline_containers: list[aiodocker.containers.DockerContainer] = []
        self._serial = 0
        self.scans: list[tuple[int, float]] = []  # (managed containers on the engine, find() median ms)
        self.phases: list[Phase] = []

    def _name(self, kind: str, round_no: int, index: int) -> str:
        self._serial += 1
        return f"bench-{kind}-r{round_no}-{index}-{self._serial}"

    # --- through the API

    async def create_projects(self, count: int, kind: str, round_no: int) -> list[str]:
        ids = []
        for index in range(count):
            response = await self.api.post("/api/projects", json={"name": self._name(kind, round_no, index)})
            if response.status_code != 201:
                raise RuntimeError(f"creating a project answered {response.status_code}: {response.text}")
            project_id = str(response.json()["id"])
            self.mine.add(project_id)
            ids.append(project_id)
        return ids

    async def warm(self, project_ids: Sequence[str]) -> None:
        """Start each project's supervisor (no container yet: 404)."""
        for project_id in project_ids:
            response = await self.api.get(f"/api/projects/{project_id}/container")
            if response.status_code != 404:
                raise RuntimeError(f"GET container answered {response.status_code}: {response.text}")

    async def api_start(self, project_id: str) -> float:
        started = time.perf_counter()
        response = await self.api.post(f"/api/projects/{project_id}/container/start")
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or response.json().get("status") != "running":
            raise RuntimeError(f"start answered {response.status_code}: {response.text}")
        return elapsed

    async def api_remove(self, project_ids: Sequence[str]) -> None:
        """Remove the projects' containers through the API (404: none was created)."""

        async def remove(project_id: str) -> None:
            response = await self.api.delete(f"/api/projects/{project_id}/container")
            if response.status_code not in (204, 404):
                raise RuntimeError(f"removing a container answered {response.status_code}: {response.text}")

        await asyncio.gather(*(remove(p) for p in project_ids))

    # --- aiodocker directly

    def baseline_refs(self, count: int, round_no: int) -> list[ProjectRef]:
        refs = []
        for index in range(count):
            path = self.baseline_dir / self._name("aiodocker", round_no, index)
            path.mkdir(parents=True)
            ref = ProjectRef(
                id=uuid.uuid4(), name=path.name, path=str(path), image=self.settings.image, runtime="docker"
            )
            self.mine.add(str(ref.id))
            refs.append(ref)
        return refs

    async def baseline_start(self, ref: ProjectRef, phase: Phase) -> float:
        started = time.perf_counter()
        container = await self.docker.containers.create(self.runtime.container_config(ref), name=container_name(ref))
        self._baseline_containers.append(container)
        between = time.perf_counter()
        await container.start()
        ended = time.perf_counter()
        phase.split.append((between - started, ended - between))
        return ended - started

    async def baseline_remove(self) -> None:
        containers, self._baseline_containers = self._baseline_containers, []
        await asyncio.gather(*(c.delete(force=True) for c in containers))

    async def adoption_scan(self) -> None:
        """Time the service's own adoption look-up (``DockerRuntime.find``) for a project that has
        no container yet, as a cold supervisor does first, at the engine's current population."""
        managed = await self.docker.containers.list(all=True, filters=json.dumps({"label": [f"{MANAGED_LABEL}=true"]}))
        probe = ProjectRef(
            id=uuid.uuid4(), name="probe", path="/nonexistent", image=self.settings.image, runtime="docker"
        )
        times = []
        for _ in range(5):
            started = time.perf_counter()
            await self.runtime.find(probe)
            times.append(time.perf_counter() - started)
        self.scans.append((len(managed), statistics.median(times) * 1000))

    # --- the plan

    async def sequential_round(self, round_no: int, count: int) -> list[Phase]:
        """The three kinds interleaved container by container, in a rotating order, so that the
        machine's drift and the engine's growing container count fall on all three alike."""
        cold = Phase(
            "api cold", "sequential", round_no, project_ids=await self.create_projects(count, "cold", round_no)
        )
        warm = Phase(
            "api warm", "sequential", round_no, project_ids=await self.create_projects(count, "warm", round_no)
        )
        await self.warm(warm.project_ids)
        base = Phase("aiodocker", "sequential", round_no)
        refs = self.baseline_refs(count, round_no)
        phases = [cold, warm, base]
        try:
            for index in range(count):
                shift = (index + round_no) % len(phases)
                for phase in phases[shift:] + phases[:shift]:
                    if phase is base:
                        latency = await self.baseline_start(refs[index], base)
                    else:
                        latency = await self.api_start(phase.project_ids[index])
                    phase.latencies.append(latency)
            await self.adoption_scan()
        finally:
            await self.api_remove(cold.project_ids + warm.project_ids)
            await self.baseline_remove()
        for phase in phases:
            phase.total = sum(phase.latencies)
        return phases

    async def concurrent_phase(self, kind: str, round_no: int, count: int) -> Phase:
        """All ``count`` starts at once: through the API (fresh projects), or aiodocker."""
        phase = Phase(kind, "concurrent", round_no)
        if kind == "aiodocker":
            refs = self.baseline_refs(count, round_no)
            starts = [self.baseline_start(ref, phase) for ref in refs]
        else:
            phase.project_ids = await self.create_projects(count, "concurrent", round_no)
            starts = [self.api_start(project_id) for project_id in phase.project_ids]
        started = time.perf_counter()
        try:
            phase.latencies = list(await asyncio.gather(*starts))
            phase.total = time.perf_counter() - started
        finally:
            await self.api_remove(phase.project_ids)
            await self.baseline_remove()
        return phase

    async def run(self, *, count: int, rounds: int, concurrent: bool) -> list[Phase]:
        phases: list[Phase] = []

        def show(phase: Phase) -> None:
            print(
                f"  round {phase.round}  {phase.kind:<9} {phase.mode:<10}  total {phase.total:6.2f} s  "
                f"median {statistics.median(phase.latencies) * 1000:6.1f} ms",
                flush=True,
            )

        await self.adoption_scan()
        for round_no in range(1, rounds + 1):
            for phase in await self.sequential_round(round_no, count):
                phases.append(phase)
                show(phase)
            await asyncio.sleep(SETTLE_S)
            if not concurrent:
                continue
            kinds = ["api cold", "aiodocker"] if round_no % 2 else ["aiodocker", "api cold"]
            for kind in kinds:
                phase = await self.concurrent_phase(kind, round_no, count)
                phases.append(phase)
                show(phase)
                await asyncio.sleep(SETTLE_S)
        return phases

    async def compare_configs(self) -> list[str]:
        """Create one container each way (not timed) and list differences in the settings that
        matter for the comparison (names, labels' project ids and bind paths differ by design)."""
        [project_id] = await self.create_projects(1, "config", 0)
        [ref] = self.baseline_refs(1, 0)
        baseline = await self.docker.containers.create(self.runtime.container_config(ref), name=container_name(ref))
        try:
            response = await self.api.post(f"/api/projects/{project_id}/container/start")
            response.raise_for_status()
            ours = await self.docker.containers.container(response.json()["id"]).show()
            theirs = await baseline.show()
        finally:
            await baseline.delete(force=True)
            await self.api_remove([project_id])
        keys = {
            "Config": ["Image", "Cmd", "WorkingDir", "Env", "Tty", "OpenStdin", "User"],
            "HostConfig": [
                "NetworkMode", "Init", "Privileged", "CapDrop", "CapAdd", "SecurityOpt",
                "PidsLimit", "Memory", "NanoCpus", "RestartPolicy",
            ],
        }  # fmt: skip
        differences = [
            f"{section}.{key}: {ours[section].get(key)!r} vs {theirs[section].get(key)!r}"
            for section, names in keys.items()
            for key in names
            if ours[section].get(key) != theirs[section].get(key)
        ]
        for info in (ours, theirs):
            if info["HostConfig"].get("NetworkMode") != "none":
                raise RuntimeError(f"a container was created with network {info['HostConfig'].get('NetworkMode')!r}")
        return differences


async def remove_mine(mine: set[str]) -> int:
    """Remove every container labelled with one of this run's project ids, and no other."""
    if not mine:
        return 0
    async with aiodocker.Docker() as docker:
        containers = await docker.containers.list(all=True, filters=json.dumps({"label": [f"{MANAGED_LABEL}=true"]}))
        ours = [c for c in containers if (c._container.get("Labels") or {}).get(PROJECT_LABEL) in mine]
        await asyncio.gather(*(c.delete(force=True) for c in ours))
        return len(ours)


# --- where the service's time goes, from its own log ----------------------------------


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def service_breakdown(phases: Sequence[Phase], events: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median milliseconds of each stretch of a start request, per API phase kind (sequential):

    - ``to supervisor``: request in → the supervisor exists (cold: ``supervisor.started``)
    - ``to created``: → ``container.created`` (cold: adoption first; then create, inspect, save id)
    - ``to started``: → ``container.started`` (engine start, inspect)
    - ``to response``: → the response is sent (``http.request``)
    - ``http``: the client's latency minus the server's ``duration_ms`` (httpx, loopback, uvicorn)
    """
    starts: dict[str, dict[str, Any]] = {}
    firsts: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        name = event.get("event")
        if (
            name == "http.request"
            and event.get("method") == "POST"
            and str(event.get("path", "")).endswith("/container/start")
        ):
            starts[str(event["path"]).split("/")[3]] = event
        elif name in ("supervisor.started", "container.created", "container.started") and "project_id" in event:
            firsts.setdefault((str(name), str(event["project_id"])), event)
    result: dict[str, dict[str, float]] = {}
    for kind in ("api cold", "api warm"):
        stretches: dict[str, list[float]] = {}
        for phase in phases:
            if phase.kind != kind or phase.mode != "sequential":
                continue
            for project_id, latency in zip(phase.project_ids, phase.latencies, strict=True):
                request = starts.get(project_id)
                created = firsts.get(("container.created", project_id))
                running = firsts.get(("container.started", project_id))
                if request is None or created is None or running is None:
                    continue
                end = _ts(request)
                begin = end - float(request["duration_ms"]) / 1000
                points = [("to created", _ts(created)), ("to started", _ts(running)), ("to response", end)]
                supervisor = firsts.get(("supervisor.started", project_id))
                if kind == "api cold" and supervisor is not None:
                    points.insert(0, ("to supervisor", _ts(supervisor)))
                previous = begin
                for label, moment in points:
                    stretches.setdefault(label, []).append((moment - previous) * 1000)
                    previous = moment
                stretches.setdefault("server total", []).append(float(request["duration_ms"]))
                stretches.setdefault("http", []).append(latency * 1000 - float(request["duration_ms"]))
        result[kind] = {label: statistics.median(values) for label, values in stretches.items()}
    return result


# --- the report ------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms"


def report(phases: Sequence[Phase], events: Sequence[dict[str, Any]], *, count: int) -> None:
    for mode in ("sequential", "concurrent"):
        selected = [p for p in phases if p.mode == mode]
        if not selected:
            continue
        kinds = [k for k in ("api cold", "api warm", "aiodocker") if any(p.kind == k for p in selected)]
        rounds = sorted({p.round for p in selected})
        print(f"\n{mode}: {count} containers per phase, per-container median / phase total")
        print("  round  " + "".join(f"{k:>26}" for k in kinds) + "".join(f"{k + ' / base':>18}" for k in kinds[:-1]))
        pooled: dict[str, list[float]] = {k: [] for k in kinds}
        totals: dict[str, float] = dict.fromkeys(kinds, 0.0)
        paired: dict[str, list[float]] = {k: [] for k in kinds}  # sequential: i-th start / i-th baseline start
        for round_no in rounds:
            row: dict[str, Phase] = {p.kind: p for p in selected if p.round == round_no}
            cells = "".join(f"{_ms(row[k].latencies)} / {row[k].total:6.2f} s" for k in kinds)
            ratios = "".join(f"{row[k].total / row['aiodocker'].total:17.3f}x" for k in kinds[:-1])
            print(f"  {round_no:>5}  {cells}{ratios}")
            for k in kinds:
                pooled[k] += row[k].latencies
                totals[k] += row[k].total
                if mode == "sequential":
                    paired[k] += [a / b for a, b in zip(row[k].latencies, row["aiodocker"].latencies, strict=True)]
        base_median = statistics.median(pooled["aiodocker"])
        print(f"  all rounds ({len(rounds)} x {count} containers each):")
        for k in kinds:
            median = statistics.median(pooled[k])
            line = f"    {k:<9}  median {median * 1000:7.1f} ms  total {totals[k]:6.2f} s"
            if k != "aiodocker":
                ratio = totals[k] / totals["aiodocker"]
                verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
                line += (
                    f"  ratio of totals {ratio:.3f}x ({verdict} <= {TARGET_RATIO}x)"
                    f"  ratio of medians {median / base_median:.3f}x"
                )
                if paired[k]:
                    line += f"  median paired ratio {statistics.median(paired[k]):.3f}x"
            print(line)

    baseline = [s for p in phases if p.kind == "aiodocker" and p.mode == "sequential" for s in p.split]
    if baseline:
        create = statistics.median(s[0] for s in baseline) * 1000
        start = statistics.median(s[1] for s in baseline) * 1000
        print(f"\naiodocker directly, sequential medians: create {create:.1f} ms, start {start:.1f} ms")
    breakdown = service_breakdown(phases, events)
    print("service, sequential, median ms per stretch of a start request (from its log):")
    for kind, stretches in breakdown.items():
        print(f"  {kind:<9} " + "  ".join(f"{label} {value:.1f}" for label, value in stretches.items()))


# --- main ------------------------------------------------------------------------------


async def bench(service: ServiceProcess, args: argparse.Namespace, mine: set[str]) -> Bench:
    limits = httpx.Limits(max_connections=args.count + 10, max_keepalive_connections=args.count + 10)
    async with (
        httpx.AsyncClient(base_url=service.base_url, headers=service.headers, timeout=120.0, limits=limits) as api,
        aiodocker.Docker() as docker,
    ):
        version = await docker.version()
        print(
            f"machine: {os.cpu_count()} cores; Docker {version.get('Version')} (API {version.get('ApiVersion')}); "
            f"image {args.image}; {args.count} containers x {args.rounds} rounds; network none"
        )
        bench = Bench(service, api, docker, mine)
        try:
            differences = await bench.compare_configs()
            same = "identical" if not differences else "; ".join(differences)
            print(f"container settings, service vs baseline: {same}")
            bench.phases = await bench.run(count=args.count, rounds=args.rounds, concurrent=args.concurrent)
        finally:
            await bench.runtime.engine.close()
        return bench


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.containers", description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="agentdock-busybox:latest", help="the containers' image")
    parser.add_argument("--count", type=int, default=20, help="containers per phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each alternates the order of the phases")
    parser.add_argument("--no-concurrent", dest="concurrent", action="store_false", help="skip the concurrent phases")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill cleans up like Ctrl-C
    mine: set[str] = set()
    service = ServiceProcess({"AGENTDOCK_RUNTIME": "docker", "AGENTDOCK_IMAGE": args.image})
    try:
        with service:
            result = asyncio.run(bench(service, args, mine))
            events = service.events()
    finally:
        removed = asyncio.run(remove_mine(mine))  # after the service stopped: nothing restarts them
        print(f"clean-up: {removed} leftover container(s) of this run removed")
    report(result.phases, events, count=args.count)
    print("adoption look-up (DockerRuntime.find) of a project without a container, median of 5 each:")
    by_count: dict[int, list[float]] = {}
    for managed, milliseconds in result.scans:
        by_count.setdefault(managed, []).append(milliseconds)
    for managed, values in sorted(by_count.items()):
        print(f"  {managed:>4} managed containers on the engine: " + ", ".join(f"{v:.1f} ms" for v in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
