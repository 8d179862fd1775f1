"""One aiodocker client per app, with deadlines on every call and engine errors mapped
into the service's error tree (``Unavailable`` when the engine does not answer)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiodocker
import aiohttp

from service.errors import Unavailable

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT_S = 10.0
CONNECTION_FAILED = 900  # aiodocker's status for "could not connect to the engine"


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


class DockerEngine:
    """Owns the app's single ``aiodocker.Docker`` client. Create it inside the event loop."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or docker_host()
        self._client: aiodocker.Docker | None = None
        self._connector: aiohttp.UnixConnector | None = None

    @property
    def client(self) -> aiodocker.Docker:
        if self._client is None:
            if self.url.startswith("unix://"):
                # Every session's attach stream and the events subscription hold a connection:
                # aiohttp's default limit of 100 would starve the engine calls at 99 sessions.
                self._connector = aiohttp.UnixConnector(self.url.removeprefix("unix://"), limit=0)
                self._client = aiodocker.Docker(url="unix://localhost", connector=self._connector)
            else:
                self._client = aiodocker.Docker(url=self.url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._connector is not None:
            await self._connector.close()  # aiodocker leaves a connector it was given open
            self._connector = None

    @asynccontextmanager
    async def call(self, what: str, timeout: float = DEFAULT_TIMEOUT_S) -> AsyncIterator[None]:
        """Deadline and error mapping for one engine call: unreachable engine → ``Unavailable``."""
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError:
            raise Unavailable(f"the Docker engine at {self.url} did not answer {what} within {timeout:g} s") from None
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
            raise Unavailable(f"the Docker engine at {self.url} is unreachable: {exc}") from None
        except aiodocker.DockerError as exc:
            if exc.status == CONNECTION_FAILED:
                raise Unavailable(f"the Docker engine at {self.url} is unreachable: {exc.message}") from None
            raise

    async def version(self, timeout: float = 3.0) -> str:
        async with self.call("a version request", timeout):
            info: dict[str, Any] = await self.client.version()
        return str(info.get("Version", "unknown"))
