from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigurationError
from service.settings import Settings, parse_memory


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'agentdock.db'}"
    assert settings.runtime == "docker"
    assert settings.image == "agentdock-base:latest"
    assert settings.network is None
    assert settings.container_memory == 4 * 1024**3
    assert settings.container_cpus == 2
    assert settings.container_pids == 1024
    assert settings.api_token is None
    assert settings.github_api_url == "https://api.github.com"
    assert settings.workspaces_dir == tmp_path / "data" / "workspaces"
    assert settings.log_format == "json"  # stdout is not a TTY under pytest
    assert (settings.allow_local_runtime, settings.allow_local_clone) == (False, False)
    assert (settings.max_projects, settings.max_queued_runs, settings.max_viewers) == (1000, 100, 64)


def test_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "AGENTDOCK_HOST": "0.0.0.0",
            "AGENTDOCK_PORT": "9000",
            "AGENTDOCK_DATA_DIR": str(tmp_path),
            "AGENTDOCK_DATABASE_URL": "sqlite+aiosqlite:///:memory:",
            "AGENTDOCK_RUNTIME": "local",
            "AGENTDOCK_IMAGE": "busybox:1",
            "AGENTDOCK_NETWORK": "none",
            "AGENTDOCK_CONTAINER_MEMORY": "512m",
            "AGENTDOCK_CONTAINER_CPUS": "0.5",
            "AGENTDOCK_CONTAINER_PIDS": "64",
            "AGENTDOCK_API_TOKEN": "secret-token",
            "AGENTDOCK_ALLOWED_ORIGINS": "http://a.example, https://b.example/",
            "AGENTDOCK_GITHUB_API_URL": "https://ghe.example/api/v3/",
            "AGENTDOCK_LOG_FORMAT": "console",
        }
    )
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.database_url == "sqlite+aiosqlite:///:memory:"
    assert settings.runtime == "local"
    assert settings.network == "none"
    assert settings.container_memory == 512 * 1024**2
    assert settings.container_cpus == 0.5
    assert settings.container_pids == 64
    assert settings.allowed_origins == ("http://a.example", "https://b.example")
    assert settings.github_api_url == "https://ghe.example/api/v3"
    assert settings.log_format == "console"
    assert "secret-token" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("RUNTIME", "vm"),
        ("CONTAINER_MEMORY", "lots"),
        ("CONTAINER_CPUS", "-1"),
        ("CONTAINER_CPUS", "x"),
        ("CONTAINER_PIDS", "0"),
        ("LOG_FORMAT", "xml"),
        ("ALLOW_LOCAL_RUNTIME", "maybe"),
        ("ALLOW_LOCAL_RUNTIME", "2"),
        ("ALLOW_LOCAL_CLONE", "on"),
        ("MAX_PROJECTS", "0"),
        ("MAX_QUEUED_RUNS", "many"),
        ("MAX_VIEWERS", "-1"),
        ("SESSION_HOLDER", "tmux"),
    ],
)
def test_bad_values_are_clear_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"AGENTDOCK_{name}|memory size"):
        Settings.from_env({f"AGENTDOCK_{name}": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), (" True ", True), ("0", False), ("false", False), ("No", False)],
)
def test_operator_powers_are_yes_or_no(value: str, expected: bool) -> None:
    settings = Settings.from_env({"AGENTDOCK_ALLOW_LOCAL_RUNTIME": value, "AGENTDOCK_ALLOW_LOCAL_CLONE": value})
    assert (settings.allow_local_runtime, settings.allow_local_clone) == (expected, expected)


def test_the_session_holder_is_agentdock_hold_unless_the_operator_says_none() -> None:
    assert Settings.from_env({}).session_holder == "agentdock-hold"
    with pytest.raises(ConfigurationError, match="SESSION_HOLDER"):
        Settings.from_env({"AGENTDOCK_SESSION_HOLDER": "dtach"})
    assert Settings.from_env({"AGENTDOCK_SESSION_HOLDER": "none"}).session_holder == "none"


def test_local_as_the_default_runtime_allows_the_local_runtime() -> None:
    assert Settings.from_env({"AGENTDOCK_RUNTIME": "local"}).allow_local_runtime
    assert Settings.from_env({"AGENTDOCK_RUNTIME": "local", "AGENTDOCK_ALLOW_LOCAL_RUNTIME": "0"}).allow_local_runtime
    assert Settings(runtime="local").allow_local_runtime  # however the settings are built
    assert not Settings(runtime="docker").allow_local_runtime
    assert not Settings.from_env({"AGENTDOCK_RUNTIME": "local"}).allow_local_clone  # a separate power


@pytest.mark.parametrize(
    ("text", "expected"), [("1024", 1024), ("4g", 4 * 1024**3), ("512M", 512 * 1024**2), ("8k", 8192)]
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected
