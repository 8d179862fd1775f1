"""The terminal's figures (DESIGN, "Performance targets"), each against a baseline run in the
same invocation, the baseline and the service alternating round by round.

    .venv/bin/python -m bench.terminal [--only throughput,echo,idle,concurrent,flood]
    .venv/bin/python -m bench.terminal --only throughput --payloads cat   # 20 MB of `cat` alone

Every part starts the real service (``agentdock serve``) as a subprocess on a free loopback
port with a temporary data directory and ``AGENTDOCK_NETWORK=none`` (``ServiceProcess`` of
``bench._service``), runs its sessions in the container the service creates for a project
of its own (image ``agentdock-busybox:latest``), and at the end removes exactly the containers
of the projects it created. The baselines run their ``docker exec`` instances in that same
container, with the user, environment and working directory of a session, through an
aiodocker client of this process.

- ``throughput``: a session prints 50 MB (``yes <49 chars> | head -c 50000000``), 30 MB
  of random bytes in base64, and ``cat`` of a 20 MB file (base64 text written into the
  container first); bytes per second received by one WebSocket viewer (the ``websockets``
  client, with permessage-deflate and without) from "go" to the last line, against reading
  the same command's output straight from a ``docker exec`` PTY with aiodocker. Also the CPU
  time spent per MB by the service, the engine (dockerd, containerd, the container's shim)
  and this process. Target >= 0.9x.
- ``echo``: one keystroke at a time into ``cat`` on a raw PTY, time until it comes back,
  through the WebSocket against the exec stream's own echo; with a pause between keys
  (typing) and back to back. Targets: p50 <= 1.5x, p99 <= 1.25x.
- ``idle``: the service's RSS growth per idle ``sh`` session (100 after 10 warm-up ones),
  docker and local runtime, read after a garbage collection and ``malloc_trim`` in the
  service (the ``--serve`` hook of ``bench.memory_idle_projects``). Target <= 1 MiB.
- ``concurrent``: 100 sessions with a viewer each, every viewer typing at a modest rate at
  the same time: errors (target 0) and echo p99 (target <= 10 ms); then the same with 100
  exec streams, phase by phase in alternation.
- ``flood``: 50 MB to one fast viewer and one that never reads (a tiny receive buffer, no
  compression, a queue of one message): the service's peak RSS growth (sampled every 2 ms,
  and the kernel's VmHWM after resetting it), target <= 4 MiB; against the same 50 MB to the
  fast viewer alone.

A session that cannot be opened, a viewer that cannot attach and a keystroke whose echo does
not come back within 5 s are counted as errors and printed, and the run goes on with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from bench._service import ServiceProcess, free_port
from bench.containers import remove_mine
from bench.memory_idle_projects import COLLECTED  # what its --serve hook writes once it collected
from service.docker.engine import docker_host
from service.runtimes import holder

IMAGE = "agentdock-busybox:latest"
SERVICE_ENV: dict[str, str] = {}  # --holder none: AGENTDOCK_SESSION_HOLDER for every service started
USER = "agent"  # sessions in the docker runtime run as this user (service.sessions.children)
WORKDIR = "/workspace"
SESSION_ENV = {
    "TERM": "xterm-256color",
    "COLORTERM": "truecolor",
    "LANG": "C.UTF-8",
    "HOME": "/home/agent",
    "USER": USER,
}  # what the service gives a docker session (BASE_ENV and the home of `agent`)
LINE = "0123456789012345678901234567890123456789012345678"  # 49 characters + newline = 50 bytes
MARK = "END-OF-OUTPUT"
READY = "READY-FOR-KEYS"
# A raw terminal (no line discipline echo, no output processing): `cat` echoes each byte
# itself, as a shell's line editor does.
ECHO_COMMAND = f"stty raw -echo; echo {READY}; exec cat"
KEYS = "abcdefghijklmnopqrstuvwxyz0123456789"

# The `cat` payload prints this file, written into the container before the throughput rounds
# (--cat-megabytes of base64 text, 76 characters a line).
CAT_FILE = "/tmp/agentdock-bench-cat.txt"  # inside the container

THROUGHPUT_TARGET = 0.9
ECHO_P50_TARGET = 1.5
ECHO_P99_TARGET = 1.25
IDLE_TARGET_KIB = 1024
CONCURRENT_P99_TARGET_MS = 10.0
FLOOD_TARGET_KIB = 4 * 1024


# --- figures --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} for process {pid}")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def engine_pids(container_id: str | None) -> list[int]:
    """The engine's processes: dockerd, containerd, and the shim of this container."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in ("dockerd", "containerd") or (
                comm.startswith("containerd-shim")
                and container_id
                and container_id in (entry / "cmdline").read_bytes().decode(errors="replace")
            ):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its own, not its children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds spent by the service, the engine (dockerd, containerd, the container's shim)
    and this benchmark's own process (the client) between ``start`` and ``stop``."""

    service_pid: int | None
    engine: list[int]
    spent: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        now = {
            "engine": sum(cpu_seconds(pid) for pid in self.engine),
            "client": cpu_seconds(os.getpid()),
        }
        if self.service_pid is not None:
            now["service"] = cpu_seconds(self.service_pid)
        return now

    def start(self) -> None:
        self._at = self._now()

    def stop(self) -> dict[str, float]:
        self.spent = {key: value - self._at[key] for key, value in self._now().items()}
        return self.spent


# --- the stack: the service, its REST API, and the baseline's own aiodocker client --------


def service_process(*, collect_hook: bool = False, runtime: str = "docker") -> ServiceProcess:
    argv = [sys.executable, "-m", "bench.memory_idle_projects", "--serve"] if collect_hook else None
    ready = (200,) if runtime == "docker" else (200, 503)
    env = {"AGENTDOCK_RUNTIME": runtime, "AGENTDOCK_IMAGE": IMAGE, **SERVICE_ENV}
    return ServiceProcess(env, argv=argv, ready_statuses=ready)


@dataclass
class Stack:
    service: ServiceProcess
    api: httpx.AsyncClient
    docker: aiodocker.Docker  # the baseline's client: no connection limit (a stream holds one)
    mine: set[str]
    collected: int = 0

    def ws_url(self, session_id: str) -> str:
        return f"ws://127.0.0.1:{self.service.port}/api/terminal/{session_id}?token={self.service.token}"

    async def project(self, name: str) -> str:
        response = await self.api.post("/api/projects", json={"name": name})
        if response.status_code != 201:
            raise RuntimeError(f"creating a project answered {response.status_code}: {response.text}")
        project_id = str(response.json()["id"])
        self.mine.add(project_id)
        return project_id

    async def container(self, project_id: str) -> str:
        response = await self.api.post(f"/api/projects/{project_id}/container/start")
        if response.status_code != 200:
            raise RuntimeError(f"starting the container answered {response.status_code}: {response.text}")
        return str(response.json()["id"])

    async def session(self, project_id: str, command: list[str]) -> str:
        body = {"command": command, "cols": 120, "rows": 40}
        response = await self.api.post(f"/api/projects/{project_id}/sessions", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"opening a session answered {response.status_code}: {response.text}")
        return str(response.json()["id"])

    async def end(self, session_id: str) -> None:
        await self.api.delete(f"/api/sessions/{session_id}")

    async def settle(self) -> int:
        """Have the service collect garbage and trim its heap (the ``--serve`` hook); its RSS."""
        self.collected += 1
        os.kill(self.service.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while self.service.err_path.read_text().count(COLLECTED) < self.collected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not collect garbage:\n{self.service.tail()}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        return rss_kib(self.service.pid)


@contextlib.asynccontextmanager
async def serve(service: ServiceProcess, mine: set[str]) -> AsyncIterator[Stack]:
    """The service started, with the clients of a run; at the end the service stopped and every
    container of this run's projects removed (after the stop: nothing restarts them)."""
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    # aiohttp's default connector allows 100 connections, and every exec stream holds one.
    connector = aiohttp.UnixConnector(docker_host().removeprefix("unix://"), limit=0)
    try:
        with service:
            async with (
                httpx.AsyncClient(
                    base_url=service.base_url, headers=service.headers, timeout=120.0, limits=limits
                ) as api,
                aiodocker.Docker(url="unix://localhost", connector=connector) as docker,
            ):
                yield Stack(service, api, docker, mine)
    finally:
        await connector.close()  # a connector passed in is its owner's to close
        removed = await remove_mine(mine)
        if removed:
            print(f"  clean-up: {removed} container(s) of this run removed", flush=True)


# --- the two ends that type and read: an exec stream (baseline) and a WebSocket viewer ----


class ExecPty:
    """The baseline: a ``docker exec`` with ``Tty: true`` read and written with aiodocker, as
    the service's docker runtime does, with the user, environment and directory of a session."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    @classmethod
    async def open(cls, docker: aiodocker.Docker, container_id: str, command: str) -> ExecPty:
        exec_ = await docker.containers.container(container_id).exec(
            ["/bin/sh", "-c", command], stdin=True, tty=True, user=USER, environment=SESSION_ENV, workdir=WORKDIR
        )
        stream = exec_.start(detach=False)
        await stream.__aenter__()
        return cls(stream)

    async def write(self, text: str) -> None:
        await self.stream.write_in(text.encode())

    async def read(self) -> str | None:
        message = await self.stream.read_out()
        return None if message is None else message.data.decode("utf-8", "replace")

    async def read_bytes(self) -> bytes | None:
        message = await self.stream.read_out()
        return None if message is None else message.data

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.close()


class WsPty:
    """A viewer: the terminal WebSocket with the ``websockets`` client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.status: dict[str, Any] | None = None

    @classmethod
    async def open(cls, url: str, *, compression: str | None = "deflate", **kwargs: Any) -> WsPty:
        ws = await websockets.connect(url, compression=compression, max_size=None, **kwargs)
        return cls(ws)

    async def write(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "input", "data": text}))

    async def read(self) -> str | None:
        """The next output; None once the session reports it is no longer running."""
        while True:
            message = json.loads(await self.ws.recv())
            kind = message["type"]
            if kind == "output":
                return str(message["data"])
            if kind == "status":
                self.status = message
                if message["state"] != "running":
                    return None
            elif kind == "error":
                raise RuntimeError(f"the service answered an error: {message['message']}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


Pty = ExecPty | WsPty


async def read_until(pty: Pty, text: str, timeout: float = 30) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while text not in seen:
            chunk = await pty.read()
            if chunk is None:
                raise RuntimeError(f"the program ended before {text!r}; its output: {seen[-300:]!r}")
            seen = (seen + chunk)[-4096:]
    return seen


# --- 1. throughput -----------------------------------------------------------------------


@dataclass
class Transfer:
    payload: str
    kind: str  # "exec" | "ws deflate" | "ws none"
    round: int
    received: int  # bytes (characters: the output is ASCII) from "go" to the mark
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.received / self.seconds


def payloads(megabytes: float) -> dict[str, str]:
    yes_bytes = int(megabytes * 1_000_000)
    random_bytes = int(megabytes * 0.6 * 1_000_000)  # base64: 4/3 of it, plus newlines
    return {
        "yes": f"yes {LINE} | head -c {yes_bytes}",
        "base64": f"head -c {random_bytes} /dev/urandom | base64",
        "cat": f"cat {CAT_FILE}",  # the file written by make_cat_file
    }


async def held_by(docker: aiodocker.Docker, container_id: str) -> str:
    """Whether the service's sessions in this container run under the holder (what lets them
    outlive the service): it adds a PTY and a process to the session's path, not to the exec
    stream's, so the figures say which it was."""
    if SERVICE_ENV.get("AGENTDOCK_SESSION_HOLDER") == "none":
        return "sessions not held (AGENTDOCK_SESSION_HOLDER=none)"
    exec_ = await docker.containers.container(container_id).exec(holder.PROBE, stdout=True, stderr=True, user=USER)
    async with exec_.start(detach=False) as stream:
        while await stream.read_out() is not None:
            pass
    found = (await exec_.inspect()).get("ExitCode") == 0
    return f"sessions held by {holder.HOLDER}" if found else f"no {holder.HOLDER} in the image: sessions not held"


async def make_cat_file(docker: aiodocker.Docker, container_id: str, megabytes: float) -> None:
    """Write ``CAT_FILE`` in the container (as the session's user, no TTY): ``megabytes`` MB of
    base64 text, so that the `cat` payload measures the terminal path, not the file's making."""
    size = int(megabytes * 1_000_000)
    command = f"head -c {size} /dev/urandom | base64 | head -c {size} > {CAT_FILE}; wc -c < {CAT_FILE}"
    exec_ = await docker.containers.container(container_id).exec(
        ["/bin/sh", "-c", command], stdout=True, stderr=True, user=USER, workdir=WORKDIR
    )
    output = b""
    async with exec_.start(detach=False) as stream:
        while (message := await stream.read_out()) is not None:
            output += message.data
    if output.strip() != str(size).encode():
        raise RuntimeError(f"writing {CAT_FILE} in the container answered {output[-300:]!r}")


def flood_command(payload: str) -> str:
    # The reader is attached before "go" arrives, and the mark ends what is counted.
    return f"read go; {payload}; echo {MARK}"


async def transfer_exec(stack: Stack, container_id: str, payload: str, meter: CpuMeter) -> tuple[int, float]:
    pty = await ExecPty.open(stack.docker, container_id, flood_command(payload))
    try:
        received = 0
        tail = b""
        mark = MARK.encode()
        meter.start()
        await pty.write("go\n")
        started = time.perf_counter()
        async with asyncio.timeout(120):
            while True:
                data = await pty.read_bytes()
                if data is None:
                    raise RuntimeError("the exec ended before its mark")
                received += len(data)
                window = tail + data[-64:]
                if mark in window:
                    break
                tail = window[-64:]
        seconds = time.perf_counter() - started
        meter.stop()
        return received, seconds
    finally:
        await pty.close()


async def transfer_ws(
    stack: Stack, project_id: str, payload: str, compression: str | None, meter: CpuMeter
) -> tuple[int, float]:
    session_id = await stack.session(project_id, ["sh", "-c", flood_command(payload)])
    pty = await WsPty.open(stack.ws_url(session_id), compression=compression)
    try:
        async with asyncio.timeout(30):
            while pty.status is None:  # the first message: the viewer is attached
                message = json.loads(await pty.ws.recv())
                if message["type"] == "status":
                    pty.status = message
        received = 0
        tail = ""
        meter.start()
        await pty.write("go\n")
        started = time.perf_counter()
        async with asyncio.timeout(120):
            while True:
                data = await pty.read()
                if data is None:
                    raise RuntimeError("the session ended before its mark")
                received += len(data)
                window = tail + data[-64:]
                if MARK in window:
                    break
                tail = window[-64:]
        seconds = time.perf_counter() - started
        meter.stop()
        return received, seconds
    finally:
        await pty.close()
        await stack.end(session_id)


def cpu_summary(transfers: Sequence[Transfer]) -> str:
    """Median CPU milliseconds per MB received, by process."""
    keys = transfers[0].cpu.keys()
    per_mb = {key: statistics.median(t.cpu[key] / (t.received / 1e6) * 1000 for t in transfers) for key in keys}
    return "cpu ms/MB: " + "  ".join(f"{key} {value:.0f}" for key, value in per_mb.items())


async def throughput(args: argparse.Namespace, mine: set[str]) -> None:
    kinds = ["exec", "ws deflate", "ws none"]
    print(
        f"\n== 1. output throughput: session -> WebSocket viewer vs the exec stream (aiodocker), "
        f"{args.rounds} rounds, kinds rotating in order (target >= {THROUGHPUT_TARGET}x)"
    )
    chosen = {name: command for name, command in payloads(args.megabytes).items() if name in args.payloads}
    transfers: list[Transfer] = []
    async with serve(service_process(), mine) as st:
        project_id = await st.project("bench-throughput")
        container_id = await st.container(project_id)
        print(f"  {await held_by(st.docker, container_id)}", flush=True)
        if "cat" in chosen:
            await make_cat_file(st.docker, container_id, args.cat_megabytes)
        meter = CpuMeter(st.service.pid, engine_pids(container_id))
        await transfer_ws(st, project_id, "yes | head -c 1000000", "deflate", meter)  # warm-up, not counted
        await transfer_exec(st, container_id, "yes | head -c 1000000", meter)
        for round_no in range(1, args.rounds + 1):
            for payload_name, payload in chosen.items():
                shift = (round_no - 1) % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    if kind == "exec":
                        received, seconds = await transfer_exec(st, container_id, payload, meter)
                    else:
                        compression = "deflate" if kind == "ws deflate" else None
                        received, seconds = await transfer_ws(st, project_id, payload, compression, meter)
                    transfer = Transfer(payload_name, kind, round_no, received, seconds, meter.spent)
                    transfers.append(transfer)
                    print(
                        f"  round {round_no}  {payload_name:<7} {kind:<11} {received / 1e6:7.2f} MB in "
                        f"{seconds:6.2f} s = {transfer.rate / 1e6:7.1f} MB/s   cpu s: "
                        + "  ".join(f"{key} {value:5.2f}" for key, value in transfer.cpu.items()),
                        flush=True,
                    )
    print("\n  throughput, median of the rounds; ratio = WebSocket viewer / exec stream (per round, then median):")
    for payload_name in chosen:
        base = {t.round: t.rate for t in transfers if t.payload == payload_name and t.kind == "exec"}
        print(
            f"  {payload_name:<7} exec        {statistics.median(base.values()) / 1e6:7.1f} MB/s  "
            + cpu_summary([t for t in transfers if t.payload == payload_name and t.kind == "exec"])
        )
        for kind in kinds[1:]:
            rates = {t.round: t.rate for t in transfers if t.payload == payload_name and t.kind == kind}
            ratios = [rates[r] / base[r] for r in rates]
            ratio = statistics.median(ratios)
            print(
                f"  {payload_name:<7} {kind:<11} {statistics.median(rates.values()) / 1e6:7.1f} MB/s  "
                f"ratio {ratio:.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})  "
                f"{verdict(ratio >= THROUGHPUT_TARGET)} >= {THROUGHPUT_TARGET}x  "
                + cpu_summary([t for t in transfers if t.payload == payload_name and t.kind == kind])
            )


# --- 2. keystroke echo --------------------------------------------------------------------


async def echo_once(pty: Pty, key: str, timeout: float = 5) -> float:
    started = time.perf_counter()
    await pty.write(key)
    seen = ""
    async with asyncio.timeout(timeout):
        while key not in seen:
            chunk = await pty.read()
            if chunk is None:
                raise RuntimeError("the program ended")
            seen += chunk
    return time.perf_counter() - started


async def echo_block(pty: Pty, count: int, gap: float) -> list[float]:
    samples = []
    for index in range(count):
        samples.append(await echo_once(pty, KEYS[index % len(KEYS)]))
        await asyncio.sleep(gap)
    return samples


def run_echo_server(port: int) -> int:
    """The WebSocket hop alone: a bare Litestar handler under uvicorn, configured as the service
    runs it, that answers each input message with an output message carrying the same data."""
    import uvicorn  # noqa: PLC0415 - only this helper process needs the server side
    from litestar import Litestar, WebSocket, websocket  # noqa: PLC0415

    @websocket("/echo")
    async def echo_handler(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        while True:
            event = await socket.receive()
            if event["type"] == "websocket.disconnect":
                return
            message = json.loads(event["text"])
            await socket.send_text(json.dumps({"type": "output", "data": message["data"]}))

    app = Litestar([echo_handler])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ws_ping_interval=20.0,
        ws_per_message_deflate=False,  # as `agentdock serve` runs it (service/cli.py)
    )
    return 0


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """``run_echo_server`` as a subprocess on a free loopback port; its WebSocket URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.terminal",
        "--echo-server",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                break
        yield f"ws://127.0.0.1:{port}/echo"
    finally:
        process.terminate()
        await process.wait()


async def echo(args: argparse.Namespace, mine: set[str]) -> None:
    kinds = ["exec", "ws deflate", "ws none", "ws floor"]
    gaps = [float(g) for g in args.gap_ms.split(",")]
    per_block = max(1, args.samples // args.blocks)
    print(
        f"\n== 2. keystroke echo: `{ECHO_COMMAND}`, one key at a time, {args.blocks} blocks of {per_block} keys "
        f"per kind, kinds rotating; pause between keys: {', '.join(f'{g:g} ms' for g in gaps)} "
        f"(targets: p50 <= {ECHO_P50_TARGET}x, p99 <= {ECHO_P99_TARGET}x exec)"
    )
    samples: dict[tuple[float, str], list[float]] = {(gap, kind): [] for gap in gaps for kind in kinds}
    async with serve(service_process(), mine) as st, echo_server() as floor_url:
        project_id = await st.project("bench-echo")
        container_id = await st.container(project_id)
        print(f"  {await held_by(st.docker, container_id)}", flush=True)
        ptys: dict[str, Pty] = {"exec": await ExecPty.open(st.docker, container_id, ECHO_COMMAND)}
        for kind in kinds[1:3]:
            session_id = await st.session(project_id, ["sh", "-c", ECHO_COMMAND])
            ptys[kind] = await WsPty.open(
                st.ws_url(session_id), compression="deflate" if kind == "ws deflate" else None
            )
        ptys["ws floor"] = await WsPty.open(floor_url)
        try:
            for kind, pty in ptys.items():
                if kind != "ws floor":
                    await read_until(pty, READY)
                await echo_block(pty, 20, 0.02)  # warm-up, not counted
            for gap in gaps:
                for block in range(args.blocks):
                    shift = block % len(kinds)
                    for kind in kinds[shift:] + kinds[:shift]:
                        samples[gap, kind] += await echo_block(ptys[kind], per_block, gap / 1000)
        finally:
            for pty in ptys.values():
                await pty.close()
    for gap in gaps:
        base_p50 = percentile(samples[gap, "exec"], 50)
        base_p99 = percentile(samples[gap, "exec"], 99)
        print(f"  {gap:g} ms between keys:")
        print(f"  {'kind':<11} {'samples':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  p50 ratio, p99 ratio")
        for kind in kinds:
            values = samples[gap, kind]
            p50 = percentile(values, 50)
            p99 = percentile(values, 99)
            ratio50 = p50 / base_p50
            ratio = p99 / base_p99
            note = (
                f"p50 {ratio50:.2f}x {verdict(ratio50 <= ECHO_P50_TARGET)} <= {ECHO_P50_TARGET}x, "
                f"p99 {ratio:.2f}x {verdict(ratio <= ECHO_P99_TARGET)} <= {ECHO_P99_TARGET}x"
            )
            if kind == "exec":
                note = ""
            elif kind == "ws floor":
                note = "(no PTY, no session: the WebSocket hop alone)"
            print(
                f"  {kind:<11} {len(values):>7} {p50 * 1000:6.2f}ms "
                f"{percentile(values, 90) * 1000:6.2f}ms {p99 * 1000:6.2f}ms {max(values) * 1000:6.2f}ms  {note}"
            )
        least = percentile(samples[gap, "exec"], 50) + percentile(samples[gap, "ws floor"], 50)
        rest = percentile(samples[gap, "ws deflate"], 50) - least
        print(
            f"  exec p50 + floor p50 = {least * 1000:.2f} ms: about the least a viewer's echo can take here; "
            f"the rest of the ws deflate p50, the session's own part: {rest * 1000:.2f} ms"
        )


# --- 3. memory per idle session ---------------------------------------------------------------


def engine_rss_kib(container_id: str | None) -> int:
    """RSS of the engine's processes: dockerd, containerd, and the shim of this container."""
    total = 0
    for pid in engine_pids(container_id):
        with contextlib.suppress(OSError, RuntimeError):
            total += rss_kib(pid)
    return total


@dataclass
class IdleRun:
    runtime: str
    wanted: int
    opened: int  # sessions opened after "before" (fewer than wanted when one failed)
    before: int
    after: int
    engine_before: int = 0
    engine_after: int = 0
    error: str | None = None

    @property
    def per_session(self) -> float:
        return (self.after - self.before) / max(1, self.opened)

    @property
    def engine_per_session(self) -> float:
        return (self.engine_after - self.engine_before) / max(1, self.opened)


async def idle_run(st: Stack, runtime: str, sessions: int, warmup: int) -> IdleRun:
    project_id = await st.project(f"bench-idle-{runtime}")
    container_id = await st.container(project_id) if runtime == "docker" else None
    for _ in range(warmup):
        await st.session(project_id, ["sh"])
    await asyncio.sleep(1)
    before = await st.settle()
    engine_before = engine_rss_kib(container_id) if container_id else 0
    opened = 0
    error = None
    for _ in range(sessions):  # one after another: the first failure ends the run, and is reported
        try:
            await st.session(project_id, ["sh"])
        except RuntimeError as exc:
            error = f"session {warmup + opened + 1} of the service: {exc}"
            break
        opened += 1
    await asyncio.sleep(2)
    after = await st.settle()
    engine_after = engine_rss_kib(container_id) if container_id else 0
    return IdleRun(runtime, sessions, opened, before, after, engine_before, engine_after, error)


async def idle(args: argparse.Namespace, mine: set[str]) -> None:
    print(
        f"\n== 3. service memory per idle `sh` session: {args.idle_sessions} sessions after {args.idle_warmup} "
        f"warm-up ones, RSS after gc + malloc_trim in the service (target <= {IDLE_TARGET_KIB} KiB)"
    )
    runs: list[IdleRun] = []
    for _ in range(args.idle_repeats):
        for runtime in ("docker", "local"):
            async with serve(service_process(collect_hook=True, runtime=runtime), mine) as st:
                run = await idle_run(st, runtime, args.idle_sessions, args.idle_warmup)
            runs.append(run)
            engine = (
                f"  engine (dockerd, containerd, shim) {run.engine_after - run.engine_before:>6} KiB = "
                f"{run.engine_per_session:6.1f} KiB/session"
                if runtime == "docker"
                else ""
            )
            print(
                f"  {runtime:<7} before {run.before:>7} KiB  after {run.after:>7} KiB  growth "
                f"{run.after - run.before:>6} KiB / {run.opened} = {run.per_session:6.1f} KiB/session{engine}",
                flush=True,
            )
            if run.error:
                print(f"    ERROR: only {run.opened} of {run.wanted} opened: {run.error}", flush=True)
    for runtime in ("docker", "local"):
        mine_runs = [r for r in runs if r.runtime == runtime]
        per = statistics.median(r.per_session for r in mine_runs)
        failed = sum(1 for r in mine_runs if r.error)
        errors = f"  ({failed} of {len(mine_runs)} runs could not open every session)" if failed else ""
        print(f"  {runtime:<7} median {per:6.1f} KiB per idle session  {verdict(per <= IDLE_TARGET_KIB)}{errors}")


# --- 4. 100 sessions with a viewer each -----------------------------------------------------------


@dataclass
class Crowd:
    kind: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)


async def crowd_phase(
    kind: str, ptys: Sequence[Pty], duration: float, period: float, rng: random.Random, meter: CpuMeter
) -> Crowd:
    crowd = Crowd(kind)
    end = time.perf_counter() + duration
    meter.start()

    async def typist(index: int, pty: Pty, offset: float) -> None:
        await asyncio.sleep(offset)
        count = 0
        while time.perf_counter() < end:
            tick = time.perf_counter()
            try:
                crowd.latencies.append(await echo_once(pty, KEYS[(index + count) % len(KEYS)]))
            except Exception as exc:  # every failure is a figure: counted, and that typist stops
                crowd.errors.append(f"viewer {index}: {type(exc).__name__}: {exc}")
                return
            count += 1
            await asyncio.sleep(max(0.0, tick + period - time.perf_counter()))

    await asyncio.gather(*(typist(i, pty, rng.uniform(0, period)) for i, pty in enumerate(ptys)))
    crowd.cpu = meter.stop()
    return crowd


async def gather_limited(factories: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await factory()

    return list(await asyncio.gather(*(one(f) for f in factories), return_exceptions=True))


async def concurrent(args: argparse.Namespace, mine: set[str]) -> None:
    count = args.viewers
    period = 1 / args.rate
    print(
        f"\n== 4. {count} sessions with a viewer each (docker runtime, one project): every viewer types one key "
        f"every {period * 1000:.0f} ms (random phase) for {args.duration:g} s, {args.crowd_rounds} rounds alternating "
        f"with {count} exec streams (target: 0 errors, p99 <= {CONCURRENT_P99_TARGET_MS:g} ms)"
    )
    rng = random.Random(4)  # the typists' phases: repeatable
    phases: list[Crowd] = []
    setup_errors: list[str] = []
    async with serve(service_process(), mine) as st:
        project_id = await st.project("bench-crowd")
        container_id = await st.container(project_id)
        started = time.perf_counter()
        opened = await gather_limited(
            [lambda: st.session(project_id, ["sh", "-c", ECHO_COMMAND]) for _ in range(count)], 8
        )
        session_ids = [s for s in opened if isinstance(s, str)]
        setup_errors += [f"open session: {type(e).__name__}: {e}" for e in opened if isinstance(e, BaseException)]
        print(f"  {len(session_ids)} sessions opened in {time.perf_counter() - started:.1f} s", flush=True)

        async def viewer(session_id: str) -> WsPty:
            pty = await WsPty.open(st.ws_url(session_id))
            await read_until(pty, READY)
            return pty

        async def exec_pty() -> ExecPty:
            pty = await ExecPty.open(st.docker, container_id, ECHO_COMMAND)
            await read_until(pty, READY)
            return pty

        started = time.perf_counter()
        attached = await gather_limited([lambda s=s: viewer(s) for s in session_ids], 20)
        viewers = [v for v in attached if isinstance(v, WsPty)]
        setup_errors += [f"attach: {type(e).__name__}: {e}" for e in attached if isinstance(e, BaseException)]
        print(f"  {len(viewers)} viewers attached in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        made = await gather_limited([exec_pty for _ in range(count)], 8)
        execs = [e for e in made if isinstance(e, ExecPty)]
        print(f"  {len(execs)} exec streams (baseline) opened in {time.perf_counter() - started:.1f} s", flush=True)
        meter = CpuMeter(st.service.pid, engine_pids(container_id))
        try:
            for round_no in range(1, args.crowd_rounds + 1):
                order = [("ws", viewers), ("exec", execs)]
                if round_no % 2 == 0:
                    order.reverse()
                for kind, ptys in order:
                    phase = await crowd_phase(kind, ptys, args.duration, period, rng, meter)
                    phases.append(phase)
                    print(
                        f"  round {round_no}  {kind:<4} {len(phase.latencies):>6} echoes  "
                        f"p50 {percentile(phase.latencies, 50) * 1000:6.2f} ms  "
                        f"p99 {percentile(phase.latencies, 99) * 1000:6.2f} ms  "
                        f"max {max(phase.latencies, default=float('nan')) * 1000:7.2f} ms  "
                        f"errors {len(phase.errors)}  cpu % of a core: "
                        + "  ".join(f"{key} {value / args.duration * 100:3.0f}" for key, value in phase.cpu.items()),
                        flush=True,
                    )
        finally:
            await asyncio.gather(*(p.close() for p in [*viewers, *execs]))
    for error in (setup_errors + [e for p in phases for e in p.errors])[:10]:
        print(f"  error: {error}")
    for kind in ("ws", "exec"):
        latencies = [x for p in phases if p.kind == kind for x in p.latencies]
        errors = sum(len(p.errors) for p in phases if p.kind == kind) + (len(setup_errors) if kind == "ws" else 0)
        p99 = percentile(latencies, 99) * 1000
        note = (
            f"{verdict(errors == 0 and p99 <= CONCURRENT_P99_TARGET_MS)} (0 errors, p99 <= "
            f"{CONCURRENT_P99_TARGET_MS:g} ms)"
            if kind == "ws"
            else "(baseline)"
        )
        print(
            f"  {kind:<4} all rounds: {len(latencies)} echoes, errors {errors}, p50 "
            f"{percentile(latencies, 50) * 1000:.2f} ms, p99 {p99:.2f} ms  {note}"
        )


# --- 5. a fast viewer and one that never reads -----------------------------------------------------------


class PeakSampler:
    """Polls the service's RSS every few milliseconds in a thread, keeping the peak."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) of the process: ``5`` to ``clear_refs``."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class FloodRun:
    kind: str
    before: int
    peak: int  # the larger of the sampled peak and VmHWM
    sampled: int
    hwm: int
    after: int
    seconds: float
    received: int
    slow_close: int | None = None

    @property
    def growth(self) -> int:
        return self.peak - self.before


async def slow_viewer(url: str, port: int) -> ClientConnection:
    """A viewer that never reads: a tiny receive buffer, no compression, a queue of one frame,
    as in tests/test_terminal_flood.py, so TCP backpressure reaches the server at once."""
    tiny = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tiny.setblocking(False)
    await asyncio.get_running_loop().sock_connect(tiny, ("127.0.0.1", port))
    return await websockets.connect(url, sock=tiny, max_queue=1, max_size=None, compression=None)


async def close_code(ws: ClientConnection, timeout: float = 30) -> int | None:
    """Read what the server managed to send to the slow viewer, then its close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        return None


async def flood_round(st: Stack, project_id: str, kind: str, megabytes: float) -> FloodRun:
    payload = payloads(megabytes)["yes"]
    session_id = await st.session(project_id, ["sh", "-c", flood_command(payload)])
    url = st.ws_url(session_id)
    slow = await slow_viewer(url, st.service.port) if kind == "fast + never-reading" else None
    fast = await WsPty.open(url)
    try:
        if slow is not None:
            await asyncio.wait_for(slow.recv(), 10)  # its status: attached; then it never reads again
        async with asyncio.timeout(10):
            while fast.status is None:
                message = json.loads(await fast.ws.recv())
                if message["type"] == "status":
                    fast.status = message
        before = await st.settle()
        pid = st.service.pid
        hwm_reset = reset_peak(pid)
        received = 0
        tail = ""
        with PeakSampler(pid) as sampler:
            await fast.write("go\n")
            started = time.perf_counter()
            async with asyncio.timeout(120):
                while True:
                    data = await fast.read()
                    if data is None:
                        raise RuntimeError("the session ended before its mark")
                    received += len(data)
                    window = tail + data[-64:]
                    if MARK in window:
                        break
                    tail = window[-64:]
            seconds = time.perf_counter() - started
        hwm = rss_kib(pid, "VmHWM") if hwm_reset else 0
        peak = max(sampler.peak, hwm)
        slow_code = await close_code(slow) if slow is not None else None
    finally:
        await fast.close()
        if slow is not None:
            await slow.close()
    await st.end(session_id)
    after = await st.settle()
    return FloodRun(kind, before, peak, sampler.peak, hwm, after, seconds, received, slow_code)


async def flood(args: argparse.Namespace, mine: set[str]) -> None:
    kinds = ["fast + never-reading", "fast only"]
    print(
        f"\n== 5. service memory while {args.megabytes:g} MB go to one fast viewer and one that never reads "
        f"(docker runtime), against the fast viewer alone; {args.flood_rounds} rounds each, alternating "
        f"(target: peak growth <= {FLOOD_TARGET_KIB} KiB)"
    )
    runs: list[FloodRun] = []
    async with serve(service_process(collect_hook=True), mine) as st:
        project_id = await st.project("bench-flood")
        await st.container(project_id)
        await flood_round(st, project_id, "fast only", 1)  # warm-up, not counted
        for round_no in range(1, args.flood_rounds + 1):
            order = kinds if round_no % 2 else kinds[::-1]
            for kind in order:
                run = await flood_round(st, project_id, kind, args.megabytes)
                runs.append(run)
                closed = f"  slow viewer closed with {run.slow_close}" if run.slow_close is not None else ""
                if kind == "fast + never-reading" and run.slow_close is None:
                    closed = "  slow viewer NOT closed"
                print(
                    f"  round {round_no}  {kind:<21} before {run.before:>7} KiB  peak +{run.growth:>6} KiB "
                    f"(sampled +{run.sampled - run.before}, VmHWM +{run.hwm - run.before})  "
                    f"after +{run.after - run.before:>6} KiB  fast got {run.received / 1e6:.2f} MB in "
                    f"{run.seconds:5.2f} s{closed}",
                    flush=True,
                )
        dropped = sum(1 for e in st.service.events() if e.get("event") == "session.viewer.dropped")
    print(f"  session.viewer.dropped events: {dropped}")
    for kind in kinds:
        growth = statistics.median(r.growth for r in runs if r.kind == kind)
        target = f"  {verdict(growth <= FLOOD_TARGET_KIB)} <= {FLOOD_TARGET_KIB} KiB" if kind != "fast only" else ""
        print(f"  {kind:<21} median peak growth {growth:>6.0f} KiB{target}")


# --- main --------------------------------------------------------------------------------


PARTS: dict[str, Callable[[argparse.Namespace, set[str]], Awaitable[None]]] = {
    "throughput": throughput,
    "echo": echo,
    "idle": idle,
    "concurrent": concurrent,
    "flood": flood,
}


def raise_open_files_limit() -> tuple[int, int]:
    """The service inherits this process's limits: 100 sessions with viewers need descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine() -> str:
    async def version() -> dict[str, Any]:
        async with aiodocker.Docker() as docker:
            info: dict[str, Any] = await docker.version()
            return info

    info = asyncio.run(version())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}); Docker {info.get('Version')} "
        f"(API {info.get('ApiVersion')}); Python {sys.version.split()[0]}; websockets {websockets.__version__}; "
        f"load average {load}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.terminal", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--megabytes", type=float, default=50, help="throughput and flood: MB printed by `yes`")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument(
        "--payloads",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        default=["yes", "base64", "cat"],
        help="throughput: comma-separated payloads (yes, base64, cat)",
    )
    parser.add_argument("--cat-megabytes", type=float, default=20, help="throughput: size of the file `cat` prints")
    parser.add_argument("--samples", type=int, default=500, help="echo: samples per kind and pause")
    parser.add_argument("--blocks", type=int, default=5, help="echo: blocks per kind, alternating")
    parser.add_argument(
        "--gap-ms", default="20,0", help="echo: pauses between keys, comma-separated (20: typing; 0: back to back)"
    )
    parser.add_argument("--idle-sessions", type=int, default=100, help="idle: sessions measured")
    parser.add_argument("--idle-warmup", type=int, default=10, help="idle: sessions opened before 'before'")
    parser.add_argument("--idle-repeats", type=int, default=2, help="idle: runs of each runtime, alternating")
    parser.add_argument("--viewers", type=int, default=100, help="concurrent: sessions, one viewer each")
    parser.add_argument("--rate", type=float, default=5, help="concurrent: keys per second per viewer")
    parser.add_argument("--duration", type=float, default=10, help="concurrent: seconds per phase")
    parser.add_argument("--crowd-rounds", type=int, default=3, help="concurrent: rounds (service and exec each)")
    parser.add_argument("--flood-rounds", type=int, default=2, help="flood: rounds of each kind")
    parser.add_argument(
        "--holder",
        choices=("agentdock-hold", "none"),
        default="agentdock-hold",
        help="the service's AGENTDOCK_SESSION_HOLDER (none: docker sessions not held)",
    )
    parser.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the ws floor's process
    args = parser.parse_args(argv)
    if args.echo_server:
        return run_echo_server(args.echo_server)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not args.payloads or set(args.payloads) - set(payloads(1)):
        parser.error(f"--payloads: choose from {', '.join(payloads(1))}")

    SERVICE_ENV["AGENTDOCK_SESSION_HOLDER"] = args.holder
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill cleans up like Ctrl-C
    limits = raise_open_files_limit()
    print(machine() + f"; open files limit {limits[0]}; image {IMAGE}; network none", flush=True)
    mine: set[str] = set()
    for part in parts:
        started = time.perf_counter()
        try:
            asyncio.run(PARTS[part](args, mine))
        except KeyboardInterrupt:
            print(f"interrupted during {part}: its service stopped, its containers removed", flush=True)
            return 130
        print(f"  ({part}: {time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
