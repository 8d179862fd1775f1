"""The real service as a subprocess, for benchmarks: a free loopback port, a temporary data
directory, its log parsed as events."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """The real service on a free loopback port, with a temporary data directory and
    ``AGENTDOCK_NETWORK=none`` whatever the caller passes. Its JSON log goes to
    ``<data>/service.log``; the data directory is removed on exit."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        argv: Sequence[str] | None = None,
        ready_statuses: tuple[int, ...] = (200,),
    ) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="agentdock-bench-"))
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.argv = list(argv or [sys.executable, "-m", "service", "serve"])
        self.ready_statuses = ready_statuses
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDOCK_")}
        self.env = {
            **inherited,
            "AGENTDOCK_HOST": "127.0.0.1",
            "AGENTDOCK_PORT": str(self.port),
            "AGENTDOCK_DATA_DIR": str(self.data_dir),
            "AGENTDOCK_API_TOKEN": self.token,
            "AGENTDOCK_LOG_FORMAT": "json",
            "AGENTDOCK_LOG_LEVEL": "info",
            **(env or {}),
            "AGENTDOCK_NETWORK": "none",  # only loopback traffic on this machine: never overridden
        }
        self.log_path = self.data_dir / "service.log"
        self.err_path = self.data_dir / "service.err"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def settings(self) -> Settings:
        """The settings the service reads from the environment it was given."""
        return Settings.from_env(self.env)

    def __enter__(self) -> ServiceProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(f"{self.base_url}/api/health", timeout=2.0)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code in self.ready_statuses:
                return
            raise RuntimeError(f"the service is not healthy: {response.status_code} {response.text}")
        raise RuntimeError(f"the service did not answer within {timeout_s:g} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.log_path, self.err_path):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def events(self) -> list[dict[str, Any]]:
        """The service's structlog events so far (JSON lines on its stdout)."""
        found: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found
