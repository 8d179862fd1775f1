"""Service memory per idle project (DESIGN: at most 1 MiB each).

    .venv/bin/python -m bench.memory_idle_projects [--projects 200] [--repeats 2]

Starts the real service (``agentdock serve``) as a subprocess with the local runtime
(``AGENTDOCK_RUNTIME=local``), a temporary data directory and a free loopback port, and reads
its resident set size (``VmRSS`` in ``/proc/<pid>/status``):

1. after start-up;
2. after a warm-up (``--warmup`` projects created, and their supervisors started), so that
   first-use costs (imports, compiled queries, caches) are not counted per project: *before*;
3. after ``--projects`` more projects were created through the API and, in the
   ``supervisors`` run, each one's supervisor started by ``GET /api/projects/{id}/container``
   (409 on the local runtime, but the request starts the supervisor; the run checks that the
   log has one ``supervisor.started`` per project): *after*.

The ``rows only`` run does the same on a fresh service without the GETs, so the growth of the
database and of the workspace bookkeeping is separated from the supervisors' own cost. The
two runs alternate, ``--repeats`` times each.

Before each reading the service collects garbage and returns freed heap to the system: the
benchmark starts it through this module (``--serve``), which installs a ``SIGUSR1`` handler
doing ``gc.collect()`` and glibc's ``malloc_trim(0)``, then runs ``agentdock serve``
unchanged. The readings show what the service keeps, not what awaits collection.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Only the standard library at the top: the service's own process imports this module too
# (``--serve``), and the benchmark's client libraries must not count in its memory.

TARGET_KIB = 1024
COLLECTED = "bench.collected"


def serve_with_collect_hook() -> int:
    """``agentdock serve`` with a ``SIGUSR1`` handler: collect garbage, trim the heap, say so."""
    libc = ctypes.CDLL("libc.so.6")

    def collect(_signum: int, _frame: Any) -> None:
        gc.collect()
        libc.malloc_trim(0)
        sys.stderr.write(f'{{"event": "{COLLECTED}"}}\n')
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, collect)
    from service.cli import main  # noqa: PLC0415 - after the hook, as `agentdock serve` would import it

    return main(["serve"])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Run:
    kind: str  # "supervisors" | "rows only"
    at_start: int
    before: int
    after: int
    projects: int
    supervisors_started: int

    @property
    def per_project_kib(self) -> float:
        return (self.after - self.before) / self.projects


def measure(*, supervisors: bool, projects: int, warmup: int) -> Run:
    import httpx  # noqa: PLC0415 - the parent's client, kept out of the service's process

    from bench._service import ServiceProcess  # noqa: PLC0415 - imports httpx

    argv = [sys.executable, "-m", "bench.memory_idle_projects", "--serve"]
    # Health answers 503 where no Docker engine runs; the local runtime does not need one.
    service = ServiceProcess({"AGENTDOCK_RUNTIME": "local"}, argv=argv, ready_statuses=(200, 503))
    with service, httpx.Client(base_url=service.base_url, headers=service.headers, timeout=30.0) as api:
        collected = 0

        def settle() -> int:
            nonlocal collected
            collected += 1
            os.kill(service.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while service.err_path.read_text().count(COLLECTED) < collected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not collect garbage:\n{service.tail()}")
                time.sleep(0.05)
            time.sleep(0.2)
            return rss_kib(service.pid)

        def create(count: int, prefix: str) -> list[str]:
            ids = []
            for index in range(count):
                response = api.post("/api/projects", json={"name": f"{prefix}-{index}"})
                if response.status_code != 201:
                    raise RuntimeError(f"creating a project answered {response.status_code}: {response.text}")
                ids.append(str(response.json()["id"]))
            return ids

        def start_supervisors(ids: list[str]) -> None:
            for project_id in ids:
                response = api.get(f"/api/projects/{project_id}/container")
                if response.status_code != 409:  # the local runtime has no container
                    raise RuntimeError(f"GET container answered {response.status_code}: {response.text}")

        at_start = settle()
        start_supervisors(create(warmup, "warmup"))
        before = settle()
        ids = create(projects, "idle")
        if supervisors:
            start_supervisors(ids)
        after = settle()
        wanted = set(ids)
        started = sum(
            1
            for event in service.events()
            if event.get("event") == "supervisor.started" and event.get("project_id") in wanted
        )
    expected = projects if supervisors else 0
    if started != expected:
        raise RuntimeError(f"{started} supervisor.started events for the {projects} projects, not {expected}")
    kind = "supervisors" if supervisors else "rows only"
    return Run(kind, at_start, before, after, projects, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_idle_projects", description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, default=200, help="idle projects measured")
    parser.add_argument("--warmup", type=int, default=20, help="projects created (and supervised) before 'before'")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the service's own process
    args = parser.parse_args(argv)
    if args.serve:
        return serve_with_collect_hook()

    print(
        f"service memory per idle project: {args.projects} projects after {args.warmup} warm-up ones, "
        f"local runtime, {os.cpu_count()} cores"
    )
    print(
        f"  {'run':<14} {'at start':>11} {'before':>10} {'after':>10} {'growth':>10} {'per project':>13}  supervisors"
    )
    runs: list[Run] = []
    for _ in range(args.repeats):
        for supervisors in (True, False):
            run = measure(supervisors=supervisors, projects=args.projects, warmup=args.warmup)
            runs.append(run)
            print(
                f"  {run.kind:<14} {run.at_start:>7} KiB {run.before:>6} KiB {run.after:>6} KiB "
                f"{run.after - run.before:>6} KiB {run.per_project_kib:>9.1f} KiB  {run.supervisors_started} started",
                flush=True,
            )
    with_supervisors = statistics.median(r.per_project_kib for r in runs if r.kind == "supervisors")
    rows_only = statistics.median(r.per_project_kib for r in runs if r.kind == "rows only")
    verdict = "meets" if with_supervisors <= TARGET_KIB else "MISSES"
    print(f"\nRSS growth per idle project (median of {args.repeats}):")
    print(f"  rows + supervisor  {with_supervisors:7.1f} KiB  ({verdict} <= {TARGET_KIB} KiB)")
    print(f"  rows only          {rows_only:7.1f} KiB")
    print(f"  the supervisor     {with_supervisors - rows_only:7.1f} KiB (the difference)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
