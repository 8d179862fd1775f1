"""Templates, git and cloning, through the API with real git and real SQLite."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db.migrate import upgrade
from service.errors import Invalid
from service.git import host as git
from service.logs import configure_logging
from service.scaffolding.controllers import TemplateController
from service.scaffolding.templates import FILES_DIR, TEMPLATES, get_template, package_name
from service.settings import Settings
from tests.conftest import TOKEN, CapturedLogs, docker_required, make_settings

Client = AsyncTestClient[Litestar]


@pytest.fixture(autouse=True)
def _logging_configured() -> None:
    """structlog is configured once per process, by the first app: do it before ``logs``
    takes it over, so that an app made inside a test does not undo the capture."""
    configure_logging("json", "info")


def with_templates_route(app: Litestar) -> Litestar:
    """GET /api/templates, also before service/app.py registers the controller itself."""
    if not any(route.path == "/api/templates" for route in app.routes):
        app.register(TemplateController)
    return app


@pytest.fixture
async def tclient(migrated: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=with_templates_route(create_app(migrated))) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def sh(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=check)


def git_out(path: Path, *args: str) -> str:
    """git in a repository the test made or a workspace the service made. A docker-runtime
    workspace belongs to uid 1000 from its creation, so the test (as root, and with no agent
    ever near it) names it safe; the service itself never does that."""
    return sh("git", "-c", f"safe.directory={path}", "-C", str(path), *args).stdout.strip()


def make_bare_repo(root: Path, name: str = "source.git", files: dict[str, str] | None = None) -> Path:
    """A bare repository with one commit on main, made the way a user would make one."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    for relative, text in (files or {"hello.txt": "hello from the source\n"}).items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(text)
    sh("git", "init", "-q", "-b", "main", str(work))
    sh("git", "-C", str(work), "add", "-A")
    sh(
        "git",
        "-C",
        str(work),
        "-c",
        "user.name=Source Author",
        "-c",
        "user.email=source@example.org",
        "commit",
        "-qm",
        "source commit",
    )
    bare = root / name
    sh("git", "clone", "-q", "--bare", str(work), str(bare))
    return bare


async def assert_nothing_left(client: Client, settings: Settings, name: str) -> None:
    assert (await client.get("/api/projects")).json()["items"] == []
    assert not (settings.workspaces_dir / name).exists()


# -- the registry -------------------------------------------------------------------------


def test_every_template_has_its_files_and_a_readme() -> None:
    assert {"blank", "python"} <= set(TEMPLATES)
    for template in TEMPLATES.values():
        assert template.files_dir.is_dir(), template.name
        assert (template.files_dir / "README.md.tmpl").is_file(), template.name
        assert (template.files_dir / "dot-gitignore").is_file(), template.name
        assert template.test_command and template.test_patterns
    folders = {p.name for p in FILES_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(TEMPLATES), "a template folder without a registry entry, or the reverse"


def test_unknown_template_is_invalid() -> None:
    with pytest.raises(Invalid, match="known templates: blank, python"):
        get_template("nope")


@pytest.mark.parametrize(
    ("project", "package"),
    [
        ("demo", "demo"),
        ("My-App.2", "my_app_2"),
        ("2fast", "p2fast"),
        ("class", "class_pkg"),
        ("unittest", "unittest_pkg"),
        ("tests", "tests_pkg"),
        ("json", "json_pkg"),
        ("---", "project"),
    ],
)
def test_package_name(project: str, package: str) -> None:
    assert package_name(project) == package
    assert package.isidentifier()


async def test_get_templates_lists_the_registry(tclient: Client) -> None:
    response = await tclient.get("/api/templates")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [t["name"] for t in body] == sorted(TEMPLATES)
    python = next(t for t in body if t["name"] == "python")
    assert python == {
        "name": "python",
        "description": TEMPLATES["python"].description,
        "test_command": "python3 -m unittest discover -s tests -t .",
        "test_patterns": list(TEMPLATES["python"].test_patterns),
    }


async def test_get_templates_needs_the_token(migrated: Settings) -> None:
    async with AsyncTestClient(app=with_templates_route(create_app(migrated))) as anonymous:
        assert (await anonymous.get("/api/templates")).status_code == 401


# -- creating from a template ---------------------------------------------------------------


async def test_blank_template_is_a_committed_repository(tmp_path: Path, logs: CapturedLogs) -> None:
    settings = make_settings(tmp_path / "data", git_author_name="Ada Lovelace", git_author_email="ada@example.org")
    upgrade(settings)
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = await client.post("/api/projects", json={"name": "notes", "description": "My notes"})
    assert response.status_code == 201, response.text
    project = response.json()
    path = Path(project["path"])
    assert (path / "README.md").read_text() == "# notes\n\nMy notes\n"
    assert ".env" in (path / ".gitignore").read_text()
    assert git_out(path, "symbolic-ref", "--short", "HEAD") == "main"
    assert git_out(path, "log", "--format=%an <%ae>|%cn <%ce>|%s") == (
        "Ada Lovelace <ada@example.org>|Ada Lovelace <ada@example.org>|"
        "Initial commit from the agentdock template 'blank'"
    )
    assert git_out(path, "status", "--porcelain") == ""
    assert sorted(git_out(path, "ls-files").splitlines()) == [".gitignore", "README.md"]
    assert git_out(path, "remote") == ""

    scaffolded = logs.events("project.scaffolded")
    assert len(scaffolded) == 1
    assert scaffolded[0]["project_id"] == project["id"]
    assert scaffolded[0]["template"] == "blank"
    assert scaffolded[0]["commit"] == git_out(path, "rev-parse", "HEAD")
    assert logs.names().index("project.scaffolded") < logs.names().index("project.created")


async def test_python_template_passes_its_own_test_command(client: Client) -> None:
    response = await client.post("/api/projects", json={"name": "My-App.2", "template": "python"})
    assert response.status_code == 201, response.text
    project = response.json()
    path = Path(project["path"])
    assert project["template"] == "python"
    assert project["test_command"] == "python3 -m unittest discover -s tests -t ."
    assert sorted(git_out(path, "ls-files").splitlines()) == [
        ".gitignore",
        "README.md",
        "my_app_2/__init__.py",
        "pyproject.toml",
        "tests/__init__.py",
        "tests/test_my_app_2.py",
    ]
    assert "{{" not in "".join(p.read_text() for p in path.rglob("*") if p.is_file() and ".git" not in p.parts)

    passed = sh("sh", "-c", project["test_command"], cwd=path, check=False)
    assert passed.returncode == 0, passed.stderr
    assert "Ran 2 tests" in passed.stderr and "OK" in passed.stderr

    # The suite really runs the package: break it and the same command fails.
    init = path / "my_app_2" / "__init__.py"
    init.write_text(init.read_text().replace("Hello", "Goodbye"))
    failed = sh("sh", "-c", project["test_command"], cwd=path, check=False)
    assert failed.returncode != 0
    assert "FAILED" in failed.stderr


async def test_python_template_with_a_name_that_shadows_the_stdlib(client: Client) -> None:
    project = (await client.post("/api/projects", json={"name": "unittest", "template": "python"})).json()
    path = Path(project["path"])
    assert (path / "unittest_pkg" / "__init__.py").is_file()
    result = sh("sh", "-c", project["test_command"], cwd=path, check=False)
    assert result.returncode == 0, result.stderr


async def test_test_command_given_wins_over_the_template(client: Client) -> None:
    response = await client.post("/api/projects", json={"name": "p", "template": "python", "test_command": "make t"})
    assert response.json()["test_command"] == "make t"


# -- cloning --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "file-url"])
async def test_clone_from_a_local_bare_repository(
    client: Client, migrated: Settings, tmp_path: Path, logs: CapturedLogs, form: str
) -> None:
    bare = make_bare_repo(tmp_path / "remotes", files={"src/app.py": "print('hi')\n", "README.md": "# source\n"})
    url = str(bare) if form == "path" else bare.as_uri()
    response = await client.post("/api/projects", json={"name": "cloned", "repo_url": url, "template": "python"})
    assert response.status_code == 201, response.text
    project = response.json()
    path = Path(project["path"])
    assert project["repo_url"] == url
    assert project["github_url"] is None
    assert project["template"] == "python"
    assert project["test_command"].startswith("python3 -m unittest")  # the template's defaults only
    assert (path / "src" / "app.py").read_text() == "print('hi')\n"
    assert not (path / "tests").exists(), "a clone gets no template files"
    assert git_out(path, "log", "--format=%an|%s") == "Source Author|source commit"
    assert git_out(path, "remote", "get-url", "origin") == url
    assert git_out(path, "rev-parse", "HEAD") == git_out(bare, "rev-parse", "main")
    cloned = logs.events("project.cloned")
    assert [(e["project_id"], e["repo_url"]) for e in cloned] == [(project["id"], url)]
    assert not logs.events("project.scaffolded")


async def test_clone_of_a_missing_path_is_400_and_leaves_nothing(
    client: Client, migrated: Settings, tmp_path: Path, logs: CapturedLogs
) -> None:
    missing = tmp_path / "no-such-repo.git"
    response = await client.post("/api/projects", json={"name": "gone", "repo_url": str(missing)})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"could not clone {missing}:")
    assert "does not exist" in detail  # git's own words
    await assert_nothing_left(client, migrated, "gone")
    [failed] = logs.events("project.create_failed")
    assert failed["step"] == "clone" and failed["status"] == 400 and failed["name"] == "gone"


async def test_clone_of_a_directory_that_is_no_repository_is_400(
    client: Client, migrated: Settings, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file.txt").write_text("x")
    response = await client.post("/api/projects", json={"name": "plain", "repo_url": plain.as_uri()})
    assert response.status_code == 400, response.text
    assert "does not appear to be a git repository" in response.json()["detail"]
    await assert_nothing_left(client, migrated, "plain")
    assert (plain / "file.txt").read_text() == "x"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_clone_from_an_unreachable_server_is_502(client: Client, migrated: Settings) -> None:
    url = f"http://127.0.0.1:{closed_port()}/team/repo.git"
    response = await client.post("/api/projects", json={"name": "far", "repo_url": url})
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"could not clone {url}:")
    assert "connect" in detail.lower()
    await assert_nothing_left(client, migrated, "far")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An HTTP 'server' that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/slow/repo.git"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


async def test_a_clone_past_its_deadline_is_ended_and_leaves_nothing(tmp_path: Path, silent_server: str) -> None:
    settings = make_settings(tmp_path / "data", git_timeout_s=1.0)
    upgrade(settings)
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        started = time.monotonic()
        response = await client.post("/api/projects", json={"name": "slow", "repo_url": silent_server})
        elapsed = time.monotonic() - started
        assert response.status_code == 502, response.text
        assert "did not finish within 1 s" in response.json()["detail"]
        assert elapsed < 15
        await assert_nothing_left(client, settings, "slow")


async def test_clone_that_needs_credentials_is_400_without_a_prompt(
    client: Client, migrated: Settings, tmp_path: Path
) -> None:
    from tests.github_double import GitHubDouble

    double = GitHubDouble(root=tmp_path / "github", token="ghp_double").start()
    try:
        double.add_repo("octocat", "private")
        url = double.repos["octocat/private"]["clone_url"]
        response = await client.post("/api/projects", json={"name": "locked", "repo_url": url})
    finally:
        double.stop()
    assert response.status_code == 400, response.text
    assert "terminal prompts disabled" in response.json()["detail"]
    await assert_nothing_left(client, migrated, "locked")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("git@github.com:team/repo.git", "ssh and other transports"),
        ("ssh://git@github.com/team/repo.git", "ssh and other transports"),
        ("ext::sh -c touch% /tmp/pwned", "without spaces"),
        ("ext::sh", "ssh and other transports"),
        ("relative/path", "absolute path"),
        ("--upload-pack=touch /tmp/x", "without spaces"),
        ("-oProxyCommand=x", "absolute path"),
        ("https://user:secret-password@github.com/team/repo.git", "must not carry credentials"),
        ("https://ghp_abc@github.com/team/repo.git", "must not carry credentials"),
        ("https:///no-host", "has no host"),
        ("file://relative", "absolute path"),
        ("https://github.com/a\nb", "control characters"),
    ],
    ids=lambda value: str(value).replace(" ", "_")[:40],
)
async def test_bad_repo_urls_are_400_before_anything_is_made(
    client: Client, migrated: Settings, url: str, reason: str
) -> None:
    response = await client.post("/api/projects", json={"name": "bad", "repo_url": url})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert reason in detail
    assert "secret-password" not in detail and "ghp_abc" not in detail
    await assert_nothing_left(client, migrated, "bad")


# -- deleting -------------------------------------------------------------------------------


async def test_delete_keeps_the_repository_unless_purged(client: Client) -> None:
    kept = (await client.post("/api/projects", json={"name": "kept", "template": "python"})).json()
    assert (await client.delete(f"/api/projects/{kept['id']}")).status_code == 204
    assert git_out(Path(kept["path"]), "log", "--oneline").count("\n") == 0  # still a repository with its commit

    purged = (await client.post("/api/projects", json={"name": "purged", "template": "python"})).json()
    response = await client.delete(f"/api/projects/{purged['id']}", params={"purge": "true"})
    assert response.status_code == 204
    assert not Path(purged["path"]).exists()


# -- the git edge ---------------------------------------------------------------------------


async def test_git_runs_without_the_services_secrets_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDOCK_GITHUB_TOKEN", "ghp_inherited")
    monkeypatch.setenv("AGENTDOCK_API_TOKEN", "api-inherited")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    # An alias that runs a shell shows the environment git hands to its children.
    printed = await git.run(["-c", "alias.env=!env", "env"], cwd=tmp_path, timeout=10, what="git env")
    assert "ghp_inherited" not in printed and "api-inherited" not in printed
    assert "AGENTDOCK_" not in printed
    assert "GIT_DIR=" not in printed
    assert "GIT_TERMINAL_PROMPT=0" in printed


async def test_git_failure_quotes_git_and_a_timeout_names_the_deadline(tmp_path: Path, silent_server: str) -> None:
    with pytest.raises(git.GitError) as failed:
        await git.run(["rev-parse", "HEAD"], cwd=tmp_path, timeout=10, what="git rev-parse")
    assert failed.value.status_code == 502
    assert failed.value.detail.startswith("git rev-parse failed: fatal: not a git repository")

    with pytest.raises(git.GitError, match=r"the directory .* does not exist"):
        await git.run(["status"], cwd=tmp_path / "nowhere", timeout=10, what="git status")

    started = time.monotonic()
    with pytest.raises(git.GitError) as slow:
        await git.run(["ls-remote", silent_server], cwd=tmp_path, timeout=0.5, what="git ls-remote")
    assert slow.value.timed_out
    assert slow.value.detail == "git ls-remote did not finish within 0.5 s"
    assert time.monotonic() - started < 5


def test_clone_sources_are_parsed_strictly() -> None:
    assert git.parse_clone_source("/srv/git/x.git") == git.CloneSource("/srv/git/x.git", local=True)
    assert git.parse_clone_source("file:///srv/git/x.git").local
    remote = git.parse_clone_source("https://github.com/team/x.git")
    assert remote == git.CloneSource("https://github.com/team/x.git", local=False)
    assert not git.parse_clone_source("HTTP://example.org/x").local


async def test_a_slow_clone_does_not_hold_up_other_requests(tmp_path: Path, silent_server: str) -> None:
    """Through a real server (the test client serves one request at a time): while one
    creation waits on its clone, others are served."""
    from tests.live import LiveServer

    server = LiveServer(
        tmp_path / "live", runtime="local", image="agentdock-busybox:latest", extra_env={"AGENTDOCK_GIT_TIMEOUT_S": "4"}
    )
    server.start()
    try:
        async with server.client() as client:
            slow = asyncio.ensure_future(client.post("/api/projects", json={"name": "slow", "repo_url": silent_server}))
            await asyncio.sleep(0.5)
            started = time.monotonic()
            quick = await client.post("/api/projects", json={"name": "quick", "template": "python"})
            listed = await client.get("/api/projects")
            assert time.monotonic() - started < 3
            assert not slow.done()
            assert quick.status_code == 201, quick.text
            assert [p["name"] for p in listed.json()["items"]] == ["quick"]
            answer = await slow
            assert answer.status_code == 502, answer.text
            assert "did not finish within 4 s" in answer.json()["detail"]
            assert [p["name"] for p in (await client.get("/api/projects")).json()["items"]] == ["quick"]
        assert not (tmp_path / "live" / "workspaces" / "slow").exists()
        assert [e["step"] for e in server.events("project.create_failed")] == ["clone"]
    finally:
        server.stop()


BASE_IMAGE = "agentdock-base:latest"


@pytest.mark.docker
async def test_python_template_passes_in_the_base_image(client: Client, docker_available: None) -> None:
    """The suite needs nothing but the python3 of agentdock-base, run as its user ``agent``."""
    if sh("docker", "image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        reason = f"{BASE_IMAGE} is not built here; scripts/docker-up.sh builds it"
        if docker_required():
            pytest.fail(f"{reason} (AGENTDOCK_REQUIRE_DOCKER/CI is set: Docker tests must run)")
        pytest.skip(reason)
    project = (await client.post("/api/projects", json={"name": "in-image", "template": "python"})).json()
    result = sh(
        "docker",
        "run",
        "--rm",
        "--network=none",
        "--user=1000:1000",
        f"--volume={project['path']}:/workspace",
        "--workdir=/workspace",
        BASE_IMAGE,
        "sh",
        "-c",
        project["test_command"],
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 2 tests" in result.stderr and "OK" in result.stderr
