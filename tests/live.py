"""A real agentdock server (``python -m service serve``) on a loopback port, for tests that
need the whole stack: uvicorn, real WebSockets, real close codes, real memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

TOKEN = "live-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(self, data_dir: Path, *, runtime: str, image: str, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.runtime = runtime
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.env = {
            **os.environ,
            "AGENTDOCK_DATA_DIR": str(data_dir),
            "AGENTDOCK_PORT": str(self.port),
            "AGENTDOCK_API_TOKEN": TOKEN,
            "AGENTDOCK_RUNTIME": runtime,
            "AGENTDOCK_IMAGE": image,
            "AGENTDOCK_NETWORK": "none",
            "AGENTDOCK_LOG_FORMAT": "json",
            "AGENTDOCK_RESTART_BACKOFF_S": "0.05",
            "AGENTDOCK_RESTART_BACKOFF_MAX_S": "0.5",
            # The tests clone repositories they make on this host; AGENTDOCK_RUNTIME=local
            # already allows the local runtime where a test serves that.
            "AGENTDOCK_ALLOW_LOCAL_CLONE": "1",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.project_ids: set[str] = set()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/api/health", timeout=1).status_code in (200, 503):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the service ends without a word (no shutdown, no last save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if name is None or entry.get("event") == name:
                    found.append(entry)
        return found

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)

    async def project(self, client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
        response = await client.post("/api/projects", json={"name": name, **body})
        assert response.status_code == 201, response.text
        project: dict[str, Any] = response.json()
        self.project_ids.add(project["id"])
        return project

    async def session(self, client: httpx.AsyncClient, project: dict[str, Any], **body: Any) -> dict[str, Any]:
        response = await client.post(f"/api/projects/{project['id']}/sessions", json=body)
        assert response.status_code == 201, response.text
        session: dict[str, Any] = response.json()
        return session

    @contextlib.asynccontextmanager
    async def connect(self, target: str, *, token: str | None = TOKEN, **kwargs: Any) -> AsyncIterator[Terminal]:
        query = f"?token={token}" if token is not None else "?"
        if kwargs.get("mode"):
            query += f"&mode={kwargs.pop('mode')}"
        async with websockets.connect(f"{self.ws_base}/api/terminal/{target}{query}", **kwargs) as ws:
            yield Terminal(ws)


class Terminal:
    """A test's side of a terminal socket: sends messages, gathers output until a condition."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = ""
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def type(self, text: str) -> None:
        await self.send({"type": "input", "data": text})

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.messages.append(message)
        if message["type"] == "output":
            self.output += message["data"]
        return message

    async def until(self, predicate: Any, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; output so far: {self.output[-1000:]!r}; last: {self.messages[-3:]}")
            message = await self.recv(remaining)
            if predicate(message, self):
                return message

    async def until_output(self, text: str, timeout: float = 15) -> None:
        if text in self.output:
            return
        await self.until(lambda _m, t: text in t.output, timeout)

    async def until_status(self, state: str, timeout: float = 15) -> dict[str, Any]:
        return await self.until(lambda m, _t: m["type"] == "status" and m["state"] == state, timeout)


def serve_per_runtime(request: Any, tmp_path_factory: Any, label: str, image: str) -> Iterator[LiveServer]:
    """Body of a module-scoped fixture parametrized by runtime: a live server of that runtime,
    stopped afterwards, its projects' containers removed (docker)."""
    runtime = request.param
    if runtime == "docker":
        request.getfixturevalue("docker_available")
    live = LiveServer(tmp_path_factory.mktemp(f"{label}-{runtime}"), runtime=runtime, image=image)
    live.start()
    try:
        yield live
    finally:
        live.stop()
        if runtime == "docker":
            from tests.conftest import remove_project_containers

            asyncio.run(remove_project_containers(live.project_ids))
