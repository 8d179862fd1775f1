"""The Environment interface in both runtimes: commands, bounded output, deadlines, snapshots
that never follow or open what the agent planted, and the image check."""

from __future__ import annotations

import asyncio
import io
import os
import random
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.actors import messages as m
from service.actors.policy import RestartPolicy
from service.docker.engine import DockerEngine
from service.errors import Conflict, Invalid
from service.runtimes.base import ProjectRef
from service.runtimes.docker import DockerRuntime
from service.runtimes.docker_env import DockerEnvironment
from service.runtimes.environment import OUTPUT_LIMIT, BoundedSink, Environment, TailBuffer
from service.runtimes.local import LocalEnvironment
from service.runtimes.snapshot import parse_snapshot
from service.settings import Settings
from tests.conftest import BUSYBOX_IMAGE, make_settings, remove_project_containers

PATTERNS = ("tests/**", "test_*.py", "**/test_*.py")

# --- pure parts ---------------------------------------------------------------------------


def test_tail_buffer_keeps_only_the_last_bytes() -> None:
    tail = TailBuffer(limit=10)
    for chunk in (b"0123456789", b"abc", b"x" * 100, b"END"):
        tail.add(chunk)
    assert tail.value() == b"xxxxxxxEND"
    assert tail.total == 116 and tail.truncated


def test_bounded_sink_stops_at_its_limit() -> None:
    sink = BoundedSink(io.BytesIO(), limit=5)
    assert sink.write(b"abc") and not sink.write(b"def")
    assert sink.overflowed and sink.written == 3


def test_snapshot_lines_are_parsed_strictly() -> None:
    name = b"tests/a b\n.py".hex()
    parsed = parse_snapshot(f"file {'ab' * 32} {name}\nlink {b'/dev/zero'.hex()} {b'tests/z'.hex()}\nfifo - 7478\n")
    assert parsed == {"tests/a b\n.py": "sha256:" + "ab" * 32, "tests/z": "link:" + b"/dev/zero".hex(), "tx": "fifo"}
    for bad in ("file abc ../x", "rm -rf / 00", "file " + "ab" * 32 + " zz"):
        with pytest.raises(Invalid):
            parse_snapshot(bad)


# --- both runtimes ---------------------------------------------------------------------------


def plant(workspace: Path) -> None:
    """What a hostile agent leaves: a FIFO, a link to an endless device, a link out of the
    workspace, a file in a pruned directory, and a real test file."""
    tests = workspace / "tests"
    tests.mkdir(parents=True)
    (tests / "test_real.py").write_text("assert True\n")
    os.mkfifo(tests / "fifo_trap")
    (tests / "zero_trap").symlink_to("/dev/zero")
    (tests / "escape").symlink_to("/etc/shadow")
    (workspace / "node_modules" / "tests").mkdir(parents=True)
    (workspace / "node_modules" / "tests" / "test_x.py").write_text("x")
    odd = tests / "test_new\nline.py"
    odd.write_text("y")


@pytest.fixture(params=["local", "docker"])
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_available")
    return str(request.param)


@pytest.fixture
async def environment(runtime: str, tmp_path: Path) -> AsyncIterator[Environment]:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    plant(workspace)
    project = ProjectRef(id=uuid.uuid4(), name="env", path=str(workspace), image=BUSYBOX_IMAGE, runtime="local")
    if runtime == "local":
        yield LocalEnvironment(project)
        return
    engine = DockerEngine()
    settings = make_settings(tmp_path / "data", image=BUSYBOX_IMAGE)
    env = DockerEnvironment(
        ProjectRef(id=project.id, name="env", path=str(workspace), image=BUSYBOX_IMAGE, runtime="docker"),
        runtime=DockerRuntime(engine, settings),
        policy=RestartPolicy(),
        tell=_ignore,
        save=_ignore,
    )
    try:
        yield env
    finally:
        await remove_project_containers({str(project.id)})
        await engine.close()


async def _ignore(_: object) -> None:
    return None


async def test_snapshot_records_links_and_fifos_without_following_or_opening_them(environment: Environment) -> None:
    snapshot = await asyncio.wait_for(environment.snapshot(PATTERNS, timeout=30), 40)
    assert snapshot["tests/fifo_trap"] == "fifo"
    assert snapshot["tests/zero_trap"] == "link:" + (b"/dev/zero\n").hex()
    assert snapshot["tests/escape"] == "link:" + (b"/etc/shadow\n").hex()
    assert snapshot["tests/test_real.py"].startswith("sha256:")
    assert snapshot["tests/test_new\nline.py"].startswith("sha256:")
    assert not any(path.startswith("node_modules") for path in snapshot)
    (Path(environment.project.path) / "tests" / "test_real.py").write_text("assert False\n")
    after = await environment.snapshot(PATTERNS, timeout=30)
    assert after["tests/test_real.py"] != snapshot["tests/test_real.py"]


async def test_output_is_a_bounded_tail(environment: Environment) -> None:
    result = await environment.run(
        ["/bin/sh", "-c", "head -c 50000000 /dev/zero | tr '\\0' a; echo; echo the-end; exit 3"], timeout=60
    )
    assert result.exit_code == 3
    assert len(result.output) <= OUTPUT_LIMIT and result.truncated
    assert result.text.rstrip().endswith("the-end")


async def test_a_command_past_its_deadline_is_ended_with_its_children(environment: Environment) -> None:
    # Durations no other process on the machine sleeps for: the check below looks for them.
    first, second = (random.randint(300_000, 999_999) for _ in range(2))
    result = await environment.run(["/bin/sh", "-c", f"sleep {first} & sleep {second}; wait"], timeout=1)
    assert result.timed_out and result.exit_code is None
    check = await environment.run(["/bin/sh", "-c", "ps -o args 2>/dev/null || ps"], timeout=10)
    assert f"sleep {first}" not in check.text and f"sleep {second}" not in check.text


async def test_stdout_goes_to_a_bounded_sink(environment: Environment, tmp_path: Path) -> None:
    with (tmp_path / "out").open("wb") as file:
        sink = BoundedSink(file, limit=1000)
        result = await environment.run(["/bin/sh", "-c", "echo to-stderr >&2; echo to-stdout"], timeout=10, stdout=sink)
    assert (tmp_path / "out").read_bytes() == b"to-stdout\n"
    assert b"to-stderr" in result.output and b"to-stdout" not in result.output
    with (tmp_path / "big").open("wb") as file:
        sink = BoundedSink(file, limit=1000)
        result = await environment.run(["/bin/sh", "-c", "yes"], timeout=30, stdout=sink)
    assert sink.overflowed and result.exit_code is None
    assert (tmp_path / "big").stat().st_size <= 1000


# --- docker only ------------------------------------------------------------------------------


@pytest.fixture
async def docker_env(tmp_path: Path, docker_available: None) -> AsyncIterator[tuple[DockerEnvironment, Settings]]:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "root-owned").write_text("x")
    settings = make_settings(tmp_path / "data", image=BUSYBOX_IMAGE)
    engine = DockerEngine()
    project = ProjectRef(id=uuid.uuid4(), name="env", path=str(workspace), image=BUSYBOX_IMAGE, runtime="docker")
    env = DockerEnvironment(
        project, runtime=DockerRuntime(engine, settings), policy=RestartPolicy(), tell=_ignore, save=_ignore
    )
    try:
        yield env, settings
    finally:
        await remove_project_containers({str(project.id)})
        await engine.close()


async def test_commands_run_as_agent_and_the_workspace_is_handed_over_inside(
    docker_env: tuple[DockerEnvironment, Settings],
) -> None:
    env, _ = docker_env
    workspace = Path(env.project.path)
    assert workspace.stat().st_uid == 0
    result = await env.run(["/bin/sh", "-c", "id -u; pwd; touch made-by-agent"], timeout=30)
    assert result.text.split() == ["1000", "/workspace"]
    assert workspace.stat().st_uid == 1000 and (workspace / "root-owned").stat().st_uid == 1000
    assert (workspace / "made-by-agent").stat().st_uid == 1000


async def test_an_image_whose_agent_is_root_is_refused(docker_env: tuple[DockerEnvironment, Settings]) -> None:
    env, _ = docker_env
    tag = f"agentdock-rootagent:{uuid.uuid4().hex[:8]}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (
            ("Dockerfile", f"FROM {BUSYBOX_IMAGE}\nCOPY passwd /etc/passwd\n"),
            ("passwd", "root:x:0:0:root:/root:/bin/sh\nagent:x:0:0::/home/agent:/bin/sh\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = env.runtime.engine.client
    await client.images.build(fileobj=context, encoding="application/x-tar", tag=tag, rm=True)
    try:
        env.reload(ProjectRef(id=env.project.id, name="env", path=env.project.path, image=tag, runtime="docker"))
        with pytest.raises(Conflict, match="is root"):
            await env.run(["id"], timeout=30)
        with pytest.raises(Conflict, match="is root"):
            await env.spawn_pty(_spec(), key="x")
        assert (await env.container(m.GetContainer())) is not None  # the container itself is there
    finally:
        await remove_project_containers({str(env.project.id)})
        await client.images.delete(tag, force=True)


def _spec() -> object:
    from service.runtimes.pty import SpawnSpec

    return SpawnSpec(argv=["sh"], cols=80, rows=24, env={})


async def test_stdin_is_written_then_closed(environment: Environment, tmp_path: Path) -> None:
    data = bytes(range(256)) * 800  # 200 KiB, every byte value
    with (tmp_path / "copy").open("wb") as file:
        result = await environment.run(["cat"], timeout=30, stdin=data, stdout=BoundedSink(file, limit=1 << 20))
    assert result.exit_code == 0
    assert (tmp_path / "copy").read_bytes() == data


async def test_output_is_streamed_as_it_comes_from_a_directory(environment: Environment) -> None:
    seen: list[tuple[str, bytes]] = []

    async def on_output(stream: str, chunk: bytes) -> None:
        seen.append((stream, chunk))

    result = await environment.run(
        ["/bin/sh", "-c", "pwd; echo oops >&2; sleep 0.2; echo done"], timeout=30, on_output=on_output, cwd="tests"
    )
    assert result.exit_code == 0
    out = b"".join(chunk for stream, chunk in seen if stream == "stdout").decode()
    assert out.splitlines()[0].endswith("/tests") and out.splitlines()[-1] == "done"
    assert b"".join(chunk for stream, chunk in seen if stream == "stderr") == b"oops\n"


async def test_a_cancelled_run_ends_its_process_group(environment: Environment) -> None:
    duration = random.randint(300_000, 999_999)  # no other process on the machine sleeps for it
    task = asyncio.create_task(environment.run(["/bin/sh", "-c", f"sleep {duration}; wait"], timeout=60))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    check = await environment.run(["/bin/sh", "-c", "ps -o args 2>/dev/null || ps"], timeout=10)
    assert f"sleep {duration}" not in check.text
