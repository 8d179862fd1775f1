"""Settings, read once from the ``AGENTDOCK_*`` environment variables.

The table of variables and their defaults is in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from service.errors import ConfigurationError

Runtime = Literal["docker", "local"]
LogFormat = Literal["json", "console"]

_MEMORY_RE = re.compile(r"^(\d+)([bkmg]?)$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def parse_memory(value: str) -> int:
    """Parse a Docker-style memory size (``4g``, ``512m``, ``1048576``) into bytes."""
    match = _MEMORY_RE.match(value.strip())
    if not match:
        raise ConfigurationError(f"invalid memory size {value!r}: use a number with k, m or g")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()]


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    database_url: str = ""
    runtime: Runtime = "docker"
    image: str = "agentdock-base:latest"
    network: str | None = None
    container_memory: int = 4 * 1024**3
    container_cpus: float = 2.0
    container_pids: int = 1024
    api_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)  # GET /metrics only (a scraper's)
    allowed_origins: tuple[str, ...] = ()
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    github_timeout_s: float = 30.0
    log_format: LogFormat = "json"
    log_level: str = "info"
    git_author_name: str = "agentdock"
    git_author_email: str = "agentdock@localhost"
    git_timeout_s: float = 300.0
    workflow_min_idle_s: float = 60.0
    restart_max: int = 5
    restart_window_s: float = 60.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    # Powers over the host, granted by the operator only (see "Trust boundaries" in the docs).
    allow_local_runtime: bool = False
    allow_local_clone: bool = False
    # Limits on what API clients can make.
    max_projects: int = 1000
    max_queued_runs: int = 100
    max_viewers: int = 64
    # Sessions in the docker runtime run under agentdock-hold (they outlive the service) or not (a
    # little faster: docs/benchmarks.md; they end with the service).
    session_holder: Literal["agentdock-hold", "none"] = "agentdock-hold"
    # Environment variables (credentials) of every agent, session and gate run: a dotenv file.
    agent_env_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.database_url:
            url = f"sqlite+aiosqlite:///{self.data_dir / 'agentdock.db'}"
            object.__setattr__(self, "database_url", url)
        if self.runtime == "local":
            # An operator who makes `local` the default has allowed it.
            object.__setattr__(self, "allow_local_runtime", True)

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"

    @property
    def secret_key_file(self) -> Path:
        """The key that encrypts project secrets at rest (made at first start, mode 0600)."""
        return self.data_dir / "secret-key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment; a bad value raises ``ConfigurationError``."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"AGENTDOCK_{name}")
            return value if value not in (None, "") else None

        def get_int(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"AGENTDOCK_{name} must be an integer, not {raw!r}") from None
            if not low <= value <= high:
                raise ConfigurationError(f"AGENTDOCK_{name} must be between {low} and {high}")
            return value

        def get_bool(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            value = raw.strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ConfigurationError(f"AGENTDOCK_{name} must be 1, true or yes (or 0, false or no), not {raw!r}")

        runtime = get("RUNTIME") or "docker"
        if runtime not in ("docker", "local"):
            raise ConfigurationError(f"AGENTDOCK_RUNTIME must be 'docker' or 'local', not {runtime!r}")
        log_format = get("LOG_FORMAT") or ("console" if sys.stdout.isatty() else "json")
        if log_format not in ("json", "console"):
            raise ConfigurationError(f"AGENTDOCK_LOG_FORMAT must be 'json' or 'console', not {log_format!r}")

        def get_float(name: str, default: float, low: float, high: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(f"AGENTDOCK_{name} must be a number, not {raw!r}") from None
            if not low < value <= high:
                raise ConfigurationError(f"AGENTDOCK_{name} must be above {low:g} and at most {high:g}")
            return value

        holder = get("SESSION_HOLDER") or "agentdock-hold"
        if holder not in ("agentdock-hold", "none"):
            raise ConfigurationError(f"AGENTDOCK_SESSION_HOLDER must be 'agentdock-hold' or 'none', not {holder!r}")
        origins = tuple(o.strip().rstrip("/") for o in (get("ALLOWED_ORIGINS") or "").split(",") if o.strip())
        data_dir = Path(get("DATA_DIR") or "data").expanduser().resolve()
        agent_env_file = get("AGENT_ENV_FILE")
        return cls(
            host=get("HOST") or "127.0.0.1",
            port=get_int("PORT", 8000, 0, 65535),
            data_dir=data_dir,
            database_url=get("DATABASE_URL") or "",
            runtime=runtime,  # type: ignore[arg-type]
            image=get("IMAGE") or "agentdock-base:latest",
            network=get("NETWORK"),
            container_memory=parse_memory(get("CONTAINER_MEMORY") or "4g"),
            container_cpus=get_float("CONTAINER_CPUS", 2.0, 0, 1024),
            container_pids=get_int("CONTAINER_PIDS", 1024, 1, 4_194_304),
            api_token=get("API_TOKEN"),
            metrics_token=get("METRICS_TOKEN"),
            allowed_origins=origins,
            github_token=get("GITHUB_TOKEN"),
            github_api_url=(get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            github_timeout_s=get_float("GITHUB_TIMEOUT_S", 30.0, 0, 3600),
            log_format=log_format,  # type: ignore[arg-type]
            log_level=(get("LOG_LEVEL") or "info").lower(),
            git_author_name=get("GIT_AUTHOR_NAME") or "agentdock",
            git_author_email=get("GIT_AUTHOR_EMAIL") or "agentdock@localhost",
            git_timeout_s=get_float("GIT_TIMEOUT_S", 300.0, 0, 86400),
            workflow_min_idle_s=get_float("WORKFLOW_MIN_IDLE_S", 60.0, 0, 86400),
            restart_max=get_int("RESTART_MAX", 5, 0, 1000),
            restart_window_s=get_float("RESTART_WINDOW_S", 60.0, 0, 86400),
            restart_backoff_s=get_float("RESTART_BACKOFF_S", 0.5, 0, 3600),
            restart_backoff_max_s=get_float("RESTART_BACKOFF_MAX_S", 30.0, 0, 3600),
            allow_local_runtime=get_bool("ALLOW_LOCAL_RUNTIME", False) or runtime == "local",
            allow_local_clone=get_bool("ALLOW_LOCAL_CLONE", False),
            max_projects=get_int("MAX_PROJECTS", 1000, 1, 1_000_000),
            max_queued_runs=get_int("MAX_QUEUED_RUNS", 100, 1, 100_000),
            max_viewers=get_int("MAX_VIEWERS", 64, 1, 10_000),
            session_holder=holder,  # type: ignore[arg-type]
            agent_env_file=Path(agent_env_file).expanduser().resolve() if agent_env_file else None,
        )


def ensure_api_token(settings: Settings) -> tuple[str, bool]:
    """Return the API token and whether it came from the token file.

    Where ``AGENTDOCK_API_TOKEN`` is unset, a token is generated at first start and kept in
    ``<data>/api-token`` with mode 0600; later starts read it back.
    """
    if settings.api_token:
        return settings.api_token, False
    path = settings.token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
    path.chmod(0o600)
    return token, True
