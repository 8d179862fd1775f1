"""Creating GitHub repositories through githubkit, against a local double of GitHub's API
(served under /api/v3, as GitHub Enterprise Server does) whose git remote is a real bare
repository behind git's smart HTTP and Basic auth, the way github.com's is."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db.migrate import upgrade
from service.errors import ConfigurationError
from service.git import host as git
from service.logs import configure_logging
from service.settings import Settings
from tests.conftest import TOKEN, CapturedLogs, make_settings
from tests.github_double import API_PREFIX, GitHubDouble

Client = AsyncTestClient[Litestar]


@pytest.fixture(autouse=True)
def _logging_configured() -> None:
    """structlog is configured once per process, by the first app: do it before ``logs``
    takes it over, so that an app made inside a test does not undo the capture."""
    configure_logging("json", "info")


GITHUB_TOKEN = "ghp_TestToken0123456789abcdefABCDEF01"


def secret_forms(token: str) -> list[str]:
    """The token, and the forms an HTTP client or git would put it in."""
    encoded = (token, f"x-access-token:{token}", f"octocat:{token}")
    return [token, *(base64.b64encode(plain.encode()).decode().rstrip("=") for plain in encoded)]


@pytest.fixture
def double(tmp_path: Path) -> Iterator[GitHubDouble]:
    github = GitHubDouble(root=tmp_path / "github", token=GITHUB_TOKEN).start()
    yield github
    github.stop()


def github_settings(tmp_path: Path, double: GitHubDouble, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"github_token": GITHUB_TOKEN, "github_api_url": double.api_url, "git_timeout_s": 30.0}
    values.update(overrides)
    settings = make_settings(tmp_path / "data", **values)
    upgrade(settings)
    return settings


@pytest.fixture
def gh_settings(tmp_path: Path, double: GitHubDouble) -> Settings:
    return github_settings(tmp_path, double)


@pytest.fixture
async def gh_client(gh_settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(gh_settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def git_out(path: Path, *args: str) -> str:
    """git in a workspace: it belongs to uid 1000 from its creation (docker runtime), so the
    test, as root and with no agent ever near it, names it safe; the service never does."""
    argv = ["git", "-c", f"safe.directory={path}", "-C", str(path), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


async def assert_nothing_left(client: Client, settings: Settings, name: str) -> None:
    assert (await client.get("/api/projects")).json()["items"] == []
    assert not (settings.workspaces_dir / name).exists()


def every_file_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


# -- success --------------------------------------------------------------------------------


async def test_create_under_the_users_account_pushes_and_stores_the_url(
    gh_client: Client, gh_settings: Settings, double: GitHubDouble, logs: CapturedLogs
) -> None:
    response = await gh_client.post(
        "/api/projects",
        json={
            "name": "hello",
            "template": "python",
            "description": "Says hello\nto everyone",
            "github": {"create": True},
        },
    )
    assert response.status_code == 201, response.text
    project = response.json()
    assert project["github_url"] == "https://github.example/octocat/hello"
    assert project["repo_url"] is None

    [created] = double.api_requests("POST")
    assert created.path == f"{API_PREFIX}/user/repos"
    assert created.headers["Authorization"] == f"token {GITHUB_TOKEN}"
    assert created.body == {"name": "hello", "private": True, "auto_init": False, "description": "Says hello"}

    path = Path(project["path"])
    bare = double.bare_path("octocat/hello")
    assert git_out(bare, "rev-parse", "main") == git_out(path, "rev-parse", "HEAD")
    assert git_out(path, "remote", "get-url", "origin") == double.repos["octocat/hello"]["clone_url"]
    assert git_out(path, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"
    # The push went through git's smart HTTP with the token as Basic credentials.
    pushes = [r for r in double.requests if r.path.endswith("/git-receive-pack") and r.method == "POST"]
    assert pushes and all(r.headers.get("Authorization", "").startswith("Basic ") for r in pushes)

    for file in every_file_under(path):
        content = file.read_bytes()
        for form in secret_forms(GITHUB_TOKEN):
            assert form.encode() not in content, file

    names = logs.names()
    assert names.index("project.scaffolded") < names.index("github.repo_created") < names.index("git.pushed")
    assert names.index("git.pushed") < names.index("project.created")
    [repo_created] = logs.events("github.repo_created")
    assert repo_created["project_id"] == project["id"]
    assert repo_created["full_name"] == "octocat/hello"
    assert repo_created["private"] is True
    [pushed] = logs.events("git.pushed")
    assert pushed["branch"] == "main" and pushed["project_id"] == project["id"]


async def test_create_in_an_organisation(gh_client: Client, double: GitHubDouble) -> None:
    response = await gh_client.post(
        "/api/projects", json={"name": "tool", "github": {"create": True, "private": False, "org": "acme"}}
    )
    assert response.status_code == 201, response.text
    assert response.json()["github_url"] == "https://github.example/acme/tool"
    [created] = double.api_requests("POST")
    assert created.path == f"{API_PREFIX}/orgs/acme/repos"
    assert created.body["private"] is False
    assert double.repos["acme/tool"]["private"] is False
    assert git_out(double.bare_path("acme/tool"), "log", "--format=%s", "main") == (
        "Initial commit from the agentdock template 'blank'"
    )


async def test_github_create_false_touches_no_github(gh_client: Client, double: GitHubDouble) -> None:
    response = await gh_client.post("/api/projects", json={"name": "local-only", "github": {"create": False}})
    assert response.status_code == 201
    assert response.json()["github_url"] is None
    assert double.requests == []


async def test_a_clone_published_to_github_keeps_its_source_as_upstream(
    gh_client: Client, double: GitHubDouble, tmp_path: Path
) -> None:
    work = tmp_path / "src"
    work.mkdir()
    (work / "a.txt").write_text("a\n")
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(work), "-c", "user.name=S", "-c", "user.email=s@x", "commit", "-qm", "first"], check=True
    )
    response = await gh_client.post(
        "/api/projects", json={"name": "imported", "repo_url": str(work), "github": {"create": True}}
    )
    assert response.status_code == 201, response.text
    path = Path(response.json()["path"])
    assert git_out(path, "remote", "get-url", "upstream") == str(work)
    assert git_out(path, "remote", "get-url", "origin") == double.repos["octocat/imported"]["clone_url"]
    assert git_out(double.bare_path("octocat/imported"), "rev-parse", "trunk") == git_out(work, "rev-parse", "HEAD")


# -- failures, each leaving nothing behind ------------------------------------------------


async def test_without_a_token_github_create_is_400(tmp_path: Path, double: GitHubDouble) -> None:
    settings = github_settings(tmp_path, double, github_token=None)
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = await client.post("/api/projects", json={"name": "x", "github": {"create": True}})
        assert response.status_code == 400
        assert "AGENTDOCK_GITHUB_TOKEN" in response.json()["detail"]
        await assert_nothing_left(client, settings, "x")
    assert double.requests == []


async def test_a_bad_token_is_502_and_leaves_nothing(tmp_path: Path, double: GitHubDouble, logs: CapturedLogs) -> None:
    settings = github_settings(tmp_path, double, github_token="ghp_WrongToken999")
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = await client.post("/api/projects", json={"name": "denied", "github": {"create": True}})
        assert response.status_code == 502, response.text
        detail = response.json()["detail"]
        assert "rejected the service's token" in detail and "401" in detail and "Bad credentials" in detail
        assert "ghp_WrongToken999" not in detail  # the double echoed it back; it was scrubbed
        await assert_nothing_left(client, settings, "denied")
    assert double.repos == {}
    [failed] = logs.events("project.create_failed")
    assert failed["step"] == "github" and failed["status"] == 502


async def test_a_name_taken_on_github_is_409_and_leaves_nothing(
    gh_client: Client, gh_settings: Settings, double: GitHubDouble
) -> None:
    double.add_repo("octocat", "taken")
    response = await gh_client.post("/api/projects", json={"name": "taken", "github": {"create": True}})
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "already exists on GitHub" in detail and "name already exists on this account" in detail
    await assert_nothing_left(gh_client, gh_settings, "taken")
    assert list(double.repos) == ["octocat/taken"]  # theirs, untouched
    assert double.api_requests("DELETE") == []


async def test_an_unknown_organisation_is_400(gh_client: Client, gh_settings: Settings) -> None:
    response = await gh_client.post("/api/projects", json={"name": "o", "github": {"create": True, "org": "nobody"}})
    assert response.status_code == 400, response.text
    assert "no organisation 'nobody'" in response.json()["detail"]
    await assert_nothing_left(gh_client, gh_settings, "o")


async def test_a_rate_limit_is_502_at_once_with_the_wait(
    gh_client: Client, gh_settings: Settings, double: GitHubDouble
) -> None:
    double.rate_limited = True
    started = time.monotonic()
    response = await gh_client.post("/api/projects", json={"name": "busy", "github": {"create": True}})
    assert time.monotonic() - started < 10, "githubkit must not sleep until the limit resets"
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert "rate limit is exhausted; retry in" in detail
    assert "API rate limit exceeded" in detail
    await assert_nothing_left(gh_client, gh_settings, "busy")
    assert len(double.api_requests("POST")) == 1


async def test_a_rejected_push_is_502_and_deletes_the_new_repository(
    gh_client: Client, gh_settings: Settings, double: GitHubDouble, logs: CapturedLogs
) -> None:
    double.reject_pushes = True
    response = await gh_client.post("/api/projects", json={"name": "refused", "github": {"create": True}})
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert detail.startswith("git push to origin failed:")
    assert "pre-receive hook declined" in detail
    assert "push declined by the repository policy" in detail  # the hook's own message
    await assert_nothing_left(gh_client, gh_settings, "refused")
    assert double.repos == {}
    [deleted] = double.api_requests("DELETE")
    assert deleted.path == f"{API_PREFIX}/repos/octocat/refused"
    assert [e["full_name"] for e in logs.events("github.repo_deleted")] == ["octocat/refused"]
    [failed] = logs.events("project.create_failed")
    assert failed["step"] == "push" and failed["status"] == 502


async def test_a_repository_that_cannot_be_deleted_is_named_in_the_error(
    gh_client: Client, gh_settings: Settings, double: GitHubDouble, logs: CapturedLogs
) -> None:
    double.reject_pushes = True
    double.forbid_delete = True
    response = await gh_client.post("/api/projects", json={"name": "stuck", "github": {"create": True}})
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert "pre-receive hook declined" in detail
    assert "https://github.example/octocat/stuck was created but could not be deleted" in detail
    assert "Must have admin rights" in detail
    await assert_nothing_left(gh_client, gh_settings, "stuck")
    [failure] = logs.events("github.repo_delete_failed")
    assert failure["full_name"] == "octocat/stuck"


async def test_a_failure_after_the_push_deletes_the_repository_too(
    gh_client: Client, gh_settings: Settings, double: GitHubDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.projects.services import ProjectService

    async def broken_insert(self: ProjectService, project: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(ProjectService, "_insert", broken_insert)
    response = await gh_client.post("/api/projects", json={"name": "late", "github": {"create": True}})
    assert response.status_code == 500
    assert response.json()["detail"] == "internal server error; see the service log"
    assert not (gh_settings.workspaces_dir / "late").exists()
    assert double.repos == {}


async def test_github_unreachable_is_502(tmp_path: Path, double: GitHubDouble) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = github_settings(tmp_path, double, github_api_url=f"http://127.0.0.1:{port}/api/v3")
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = await client.post("/api/projects", json={"name": "off", "github": {"create": True}})
        assert response.status_code == 502, response.text
        assert "could not reach GitHub" in response.json()["detail"]
        await assert_nothing_left(client, settings, "off")


async def test_a_github_that_does_not_answer_in_time_is_502(tmp_path: Path, double: GitHubDouble) -> None:
    double.delay_s = 3
    settings = github_settings(tmp_path, double, github_timeout_s=0.5)
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        started = time.monotonic()
        response = await client.post("/api/projects", json={"name": "sleepy", "github": {"create": True}})
        assert time.monotonic() - started < 2.5
        assert response.status_code == 502, response.text
        assert response.json()["detail"].startswith("GitHub did not answer within 0.5 s")
        await assert_nothing_left(client, settings, "sleepy")


def test_the_deadlines_are_settings() -> None:
    settings = Settings.from_env({"AGENTDOCK_GIT_TIMEOUT_S": "7.5", "AGENTDOCK_GITHUB_TIMEOUT_S": "5"})
    assert (settings.git_timeout_s, settings.github_timeout_s) == (7.5, 5.0)
    defaults = Settings.from_env({})
    assert (defaults.git_timeout_s, defaults.github_timeout_s) == (300.0, 30.0)
    for name in ("AGENTDOCK_GIT_TIMEOUT_S", "AGENTDOCK_GITHUB_TIMEOUT_S"):
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({name: "0"})


# -- secrets --------------------------------------------------------------------------------


async def test_no_token_in_any_log_line_error_body_or_argument(
    tmp_path: Path,
    double: GitHubDouble,
    logs: CapturedLogs,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    for noisy in ("httpx", "httpcore", "githubkit"):
        caplog.set_level(logging.DEBUG, logger=noisy)
    argv: list[list[str]] = []
    real_exec = asyncio.create_subprocess_exec

    async def recording_exec(program: str, *args: Any, **kwargs: Any) -> Any:
        argv.append([program, *map(str, args)])
        return await real_exec(program, *args, **kwargs)

    monkeypatch.setattr(git.asyncio, "create_subprocess_exec", recording_exec)
    settings = github_settings(tmp_path, double)
    bad_settings = github_settings(tmp_path / "bad", double, github_token="ghp_AlsoSecretWrongToken42")
    bodies: list[str] = []

    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"

        async def create(name: str, **github: Any) -> int:
            response = await client.post("/api/projects", json={"name": name, "github": {"create": True, **github}})
            bodies.append(response.text)
            return response.status_code

        assert await create("ok") == 201
        assert await create("org-ok", org="acme", private=False) == 201
        double.add_repo("octocat", "taken")
        assert await create("taken") == 409
        assert await create("no-org", org="ghost") == 400
        double.reject_pushes = True
        assert await create("refused") == 502
        double.forbid_delete = True
        assert await create("stuck") == 502
        double.reject_pushes = double.forbid_delete = False
        double.rate_limited = True
        assert await create("limited") == 502
        double.rate_limited = False
        bodies.append((await client.get("/api/projects")).text)

    async with AsyncTestClient(app=create_app(bad_settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = await client.post("/api/projects", json={"name": "bad-token", "github": {"create": True}})
        assert response.status_code == 502
        bodies.append(response.text)

    # The double saw the tokens (so they were really used) ...
    assert any(GITHUB_TOKEN in r.headers.get("Authorization", "") for r in double.requests)
    # ... and nothing the service produced contains either of them, in any form.
    captured = capfd.readouterr()
    haystacks = {
        "error and response bodies": "\n".join(bodies),
        "structlog events": "\n".join(repr(event) for event in logs),
        "standard library log records": "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records),
        "stdout/stderr": captured.out + captured.err,
        "git arguments": "\n".join(" ".join(a) for a in argv),
        "workspaces": "\n".join(p.read_text(errors="replace") for p in every_file_under(settings.workspaces_dir)),
    }
    assert len(logs) > 20 and argv
    assert {r.name for r in caplog.records} >= {"httpx", "httpcore.http11"}
    for token in (GITHUB_TOKEN, "ghp_AlsoSecretWrongToken42", TOKEN):
        for form in secret_forms(token):
            for where, text in haystacks.items():
                assert form not in text, f"{form!r} found in {where}"


async def test_the_credential_helper_answers_only_for_the_remotes_host(tmp_path: Path) -> None:
    remote = "https://github.example/octocat/x.git"
    env = {git.TOKEN_ENV: "ghp_HelperToken"}

    async def fill(url: str) -> str:
        host = url.split("/")[2]
        process = await asyncio.create_subprocess_exec(
            "git",
            *git.credential_args(remote),
            "credential",
            "fill",
            cwd=tmp_path,
            env=git._child_env(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(f"protocol=https\nhost={host}\n\n".encode())
        return out.decode()

    assert "password=ghp_HelperToken" in await fill(remote)
    assert "username=x-access-token" in await fill(remote)
    assert "ghp_HelperToken" not in await fill("https://elsewhere.example/x.git")
    assert "ghp_HelperToken" not in " ".join(git.credential_args(remote))
    assert git.credential_args("/srv/git/x.git") == []


async def test_a_real_server_writes_no_token_to_its_log(tmp_path: Path, double: GitHubDouble) -> None:
    """The whole stack (uvicorn, the production JSON renderer, stderr) against the double."""
    from tests.live import LiveServer

    server = LiveServer(
        tmp_path / "live",
        runtime="local",
        image="agentdock-busybox:latest",
        extra_env={
            "AGENTDOCK_GITHUB_TOKEN": GITHUB_TOKEN,
            "AGENTDOCK_GITHUB_API_URL": double.api_url,
            "AGENTDOCK_LOG_LEVEL": "debug",
        },
    )
    server.start()
    bodies: list[str] = []
    try:
        async with server.client() as client:

            async def create(name: str, status: int) -> None:
                response = await client.post("/api/projects", json={"name": name, "github": {"create": True}})
                assert response.status_code == status, response.text
                bodies.append(response.text)

            await create("live-ok", 201)
            double.add_repo("octocat", "live-taken")
            await create("live-taken", 409)
            double.reject_pushes = double.forbid_delete = True
            await create("live-refused", 502)
            double.reject_pushes = double.forbid_delete = False
            double.rate_limited = True
            await create("live-limited", 502)
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert [e["event"] for e in server.events() if e["event"].startswith("github.")] == [
        "github.repo_created",
        "github.repo_created",
        "github.repo_delete_failed",
    ]
    for form in secret_forms(GITHUB_TOKEN):
        assert form not in log
        assert form not in "\n".join(bodies)
