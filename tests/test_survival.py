"""Sessions that outlive the service (docker runtime, the program held by agentdock-hold in
the container): a SIGKILL of the service and a new start on the same data leave the program
running; the new service re-adopts it with its id, state and scrollback; DELETE still ends it;
a workflow's agent step in flight is watched again, not run again."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_IMAGE, remove_project_containers
from tests.live import LiveServer
from tests.test_workflows import BASE_IMAGE, agent_project, start_run, step, wait_run

pytestmark = pytest.mark.usefixtures("docker_available")

TICKER = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'


def ticks(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"tick (\d+)", text)]


def container_ps(container_id: str) -> str:
    return subprocess.run(
        ["docker", "exec", container_id, "ps", "-o", "pid,args"], capture_output=True, text=True, check=True
    ).stdout


class Restarted:
    """A service, and the one started after it on the same data (``start_second``)."""

    def __init__(self, data: Path, image: str, extra_env: dict[str, str] | None) -> None:
        self.data, self.image, self.extra_env = data, image, extra_env
        self.first = LiveServer(data, runtime="docker", image=image, extra_env=extra_env)
        self.second: LiveServer | None = None

    def start_second(self) -> LiveServer:
        self.second = LiveServer(self.data, runtime="docker", image=self.image, extra_env=self.extra_env)
        self.second.start()
        return self.second


@contextlib.asynccontextmanager
async def restarted(data: Path, *, image: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[Restarted]:
    """Both services end, and the containers of the first one's projects go, however the test
    ends."""
    services = Restarted(data, image, extra_env)
    services.first.start()
    try:
        yield services
    finally:
        services.first.kill()
        if services.second is not None:
            services.second.stop()
        await remove_project_containers(services.first.project_ids)


async def test_a_session_survives_a_sigkill_of_the_service(tmp_path: Path) -> None:
    async with restarted(tmp_path / "data", image=BUSYBOX_IMAGE) as services:
        first = services.first
        async with first.client() as client:
            project = await first.project(client, f"s-{uuid.uuid4().hex[:8]}")
            session = await first.session(client, project, command=["sh", "-c", TICKER])
            exiting = await first.session(client, project, command=["sh", "-c", "read line; stty size; exit 7"])
            container = (await client.get(f"/api/projects/{project['id']}/container")).json()["id"]
        async with first.connect(exiting["id"]) as term:  # a size the next service must keep
            await term.send({"type": "resize", "cols": 101, "rows": 31})
            await asyncio.sleep(1.5)  # a new size is recorded within a second
        async with first.connect(session["id"]) as term:
            await term.until_output("tick 5\r\n")
            before = max(ticks(term.output))
            await asyncio.sleep(1.5)  # saved once (at its start); what came after, the holder keeps
            before = max(ticks(term.output))
            first.kill()
            killed_at = time.monotonic()

        # The program runs on with no service at all.
        await asyncio.sleep(1.0)
        assert "tick" in container_ps(container) and "agentdock-hold" in container_ps(container)

        second = services.start_second()
        async with second.client() as client:
            body = (await client.get(f"/api/sessions/{session['id']}")).json()
            assert body["state"] == "running" and body["id"] == session["id"]
            assert body["command"] == ["sh", "-c", TICKER]
        async with second.connect(session["id"]) as term:
            first_frame = await term.recv()
            assert first_frame == {"type": "status", "state": "running"}
            replay = await term.recv()
            assert replay["type"] == "output"
            replayed = ticks(replay["data"])
            # The replay begins where the program began: its saved scrollback, and as much of
            # what the holder handed on as had arrived when this viewer attached.
            assert replayed[0] == 1, replayed[:5]
            # ... and the same program goes on counting (no new program: it did not restart at 1).
            await term.until(lambda _m, t: max(ticks(t.output)) > before + 10, timeout=15)
            away = time.monotonic() - killed_at
            live = ticks(term.output[len(replay["data"]) :])
            assert live and 1 not in live
            # What the first service had not saved yet, and what the program printed while no
            # service ran, the holder kept: it comes after the saved scrollback, from where that
            # ends. Not a tick is missing, not one is shown twice.
            assert away * 5 > 10, away  # (the program printed on for a few seconds meanwhile)
            assert replayed + live == list(range(1, max(live) + 1)), (replayed[-3:], live[:3])

        # A session that ends while it is held reports its exit code through the new service.
        async with second.connect(exiting["id"]) as term:
            await term.until(lambda m, _t: m["type"] == "status")
            await term.type("bye\n")
            status = await term.until_status("exited")
            assert status.get("exit_code") == 7
            assert "31 101\r\n" in term.output  # the size it had, not the one it was opened with

        # DELETE still ends the program's process group, in the container.
        async with second.client() as client:
            assert (await client.delete(f"/api/sessions/{session['id']}")).status_code == 204
            assert (await client.get(f"/api/sessions/{session['id']}")).status_code == 404
        ps = container_ps(container)
        assert "tick" not in ps and TICKER[:10] not in ps, ps
        restored = [e for e in second.events("session.restored") if e["session_id"] == session["id"]]
        assert restored and restored[-1]["state"] == "running"


async def test_an_agent_step_in_flight_survives_a_sigkill_and_is_not_run_again(tmp_path: Path) -> None:
    env = {"AGENTDOCK_WORKFLOW_MIN_IDLE_S": "1"}
    async with restarted(tmp_path / "data", image=BASE_IMAGE, extra_env=env) as services:
        first = services.first
        async with first.client() as client:
            project = await agent_project(first, client, "honest", delay=6)
            run = await start_run(client, project)
            running = await wait_run(
                client, run["id"], lambda r: step(r, "green")["state"] == "running" and step(r, "green")["session_id"]
            )
            green_session = step(running, "green")["session_id"]
        await asyncio.sleep(1.0)
        first.kill()  # mid-step: the agent is thinking

        second = services.start_second()
        async with second.client() as client:
            done = await wait_run(client, run["id"])
        assert done["state"] == "succeeded", done
        green = step(done, "green")
        assert green["attempts"] == 1
        assert green["session_id"] == green_session  # the same session, watched again
        reattached = [e for e in second.events("workflow.step.reattached") if e["run_id"] == run["id"]]
        assert len(reattached) == 1 and reattached[0]["session_id"] == green_session
        # One agent session per step was ever opened (the log holds both services' lines):
        # green's agent was not started a second time.
        opened = [e["session_id"] for e in second.events("session.opened") if "fake_agent" in str(e.get("command"))]
        assert sorted(opened) == sorted(s["session_id"] for s in done["steps"] if s["session_id"])


LINES = 40_000
NUMBERED = (
    "read go; awk 'BEGIN{for(i=1;i<=40000;i++) printf \"%08d abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
    "abcdefghijklmnopqrstuvwxyzabcdefghijklm\\n\", i}'; echo END-OF-OUTPUT"
)


async def test_a_held_program_that_ends_in_full_flow_loses_no_output(tmp_path: Path) -> None:
    # The holder hands on the rest of the output before it reports the end, however slow the
    # service is to take it (dtach, the holder before it, lost about one session in ten here).
    live = LiveServer(tmp_path / "data", runtime="docker", image=BUSYBOX_IMAGE)
    live.start()
    try:
        async with live.client() as client:
            project = await live.project(client, f"flow-{uuid.uuid4().hex[:8]}")

            async def one() -> list[int]:
                session = await live.session(client, project, command=["sh", "-c", NUMBERED], cols=200, rows=50)
                async with live.connect(session["id"]) as term:
                    await term.recv()
                    await term.type("go\n")
                    await term.until_status("exited", timeout=120)
                    text = term.output.replace("\r", "")
                    assert "END-OF-OUTPUT" in text
                    return sorted(set(range(1, LINES + 1)) - {int(n) for n in re.findall(r"^(\d{8}) ", text, re.M)})

            for _ in range(6):
                for missing in await asyncio.gather(one(), one()):
                    assert not missing, f"{len(missing)} lines lost: {missing[:3]} … {missing[-3:]}"
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)


async def test_with_no_holder_a_session_is_the_program_itself(tmp_path: Path) -> None:
    live = LiveServer(
        tmp_path / "data", runtime="docker", image=BUSYBOX_IMAGE, extra_env={"AGENTDOCK_SESSION_HOLDER": "none"}
    )
    live.start()
    try:
        async with live.client() as client:
            project = await live.project(client, f"bare-{uuid.uuid4().hex[:8]}")
            session = await live.session(client, project, command=["sh", "-c", "echo up; sleep 654321"])
            container = (await client.get(f"/api/projects/{project['id']}/container")).json()["id"]
            async with live.connect(session["id"]) as term:
                await term.until_output("up")
            ps = container_ps(container)
            assert "sleep 654321" in ps and "agentdock-hold" not in ps
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)


async def test_what_the_agent_writes_to_the_holders_stderr_is_logged_briefly_never_shown(tmp_path: Path) -> None:
    # The holder is the program's parent, and the agent's: it can write to the holder's
    # standard error, which the service logs as the holder's complaint, a few lines at most.
    live = LiveServer(tmp_path / "data", runtime="docker", image=BUSYBOX_IMAGE)
    live.start()
    try:
        async with live.client() as client:
            project = await live.project(client, f"err-{uuid.uuid4().hex[:8]}")
            script = 'for i in 1 2 3 4 5 6 7 8; do echo "forged $i" > /proc/$PPID/fd/2; sleep 0.05; done; echo done'
            session = await live.session(client, project, command=["sh", "-c", script])
            async with live.connect(session["id"]) as term:
                await term.until_status("exited")
                assert "done" in term.output and "forged" not in term.output
        said = [e for e in live.events("session.holder_said") if "forged" in e["text"]]
        assert 1 <= len(said) <= 3, said
    finally:
        live.stop()
        await remove_project_containers(live.project_ids)


async def test_a_held_session_whose_container_has_no_holder_now_is_reported_not_garbled(tmp_path: Path) -> None:
    # As after the upgrade from dtach: the record says "held", the container's image has no
    # agentdock-hold to attach with. The session is reported ended (error), nothing is shown.
    async with restarted(tmp_path / "data", image=BUSYBOX_IMAGE) as services:
        first = services.first
        async with first.client() as client:
            project = await first.project(client, f"old-{uuid.uuid4().hex[:8]}")
            session = await first.session(client, project, command=["sh", "-c", "echo up; sleep 600"])
            container = (await client.get(f"/api/projects/{project['id']}/container")).json()["id"]
        async with first.connect(session["id"]) as term:
            await term.until_output("up\r\n")
            await asyncio.sleep(1.5)  # its scrollback is saved within a second of its start
        first.kill()
        subprocess.run(["docker", "exec", "-u", "0", container, "rm", "/bin/agentdock-hold"], check=True)

        second = services.start_second()
        async with second.client() as client:
            body = (await client.get(f"/api/sessions/{session['id']}")).json()
            assert body["state"] == "error", body
        async with second.connect(session["id"]) as term:
            assert (await term.recv()) == {"type": "status", "state": "error"}
            replay = await term.recv()
            assert "up" in replay["data"] and "OCI" not in replay["data"]
        assert [e for e in second.events("session.holder_missing") if e["container_id"] == container]
