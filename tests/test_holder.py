"""The session holder, ``agentdock-hold``, compiled here and run on this machine's own PTYs
(the images carry the same source, built the same way by scripts/docker-up.sh): its frames,
its sizes, detaching and attaching again, and the output it must never lose."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.runtimes import holder

SOURCE = Path(__file__).parent.parent / "service" / "runtimes" / "agentdock-hold.c"


@pytest.fixture(scope="module")
def hold(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is missing (scripts/docker-up.sh installs it to build the holder)")
        pytest.skip("gcc is missing: the holder cannot be built here (scripts/docker-up.sh installs it)")
    binary = tmp_path_factory.mktemp("holder") / "agentdock-hold"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)], check=True)
    return str(binary)


class Client:
    """One side of a holder's stream, as the service has it: frames in; the offset of the
    output that follows, then the program's bytes, out."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.raw = b""
        assert process.stdin is not None and process.stdout is not None
        self.stdin = process.stdin
        self.stdout = process.stdout

    def send(self, frame: bytes) -> None:
        self.stdin.write(frame)
        self.stdin.flush()

    @property
    def offset(self) -> int:
        """The offset of the stream's first byte of output."""
        assert len(self.raw) >= 8, self.raw
        return int.from_bytes(self.raw[:8], "big")

    def read_offset(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while len(self.raw) < 8:
            left = deadline - time.monotonic()
            assert left > 0, self.raw
            ready, _, _ = select.select([self.stdout], [], [], left)
            if ready:
                chunk = os.read(self.stdout.fileno(), 8 - len(self.raw))
                assert chunk, self.raw
                self.raw += chunk
        return self.offset

    @property
    def output(self) -> bytes:
        return self.raw[8:]

    def read_until(self, needle: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not in {self.output[-300:]!r}"
            ready, _, _ = select.select([self.stdout], [], [], left)
            if ready:
                chunk = os.read(self.stdout.fileno(), 65536)
                assert chunk, f"the stream ended before {needle!r}: {self.output[-300:]!r}"
                self.raw += chunk
        return self.output

    def read_to_end(self, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.stdout.fileno(), 1 << 20)
                if not chunk:
                    return self.output
                self.raw += chunk
        raise AssertionError("the stream did not end")

    def detach(self) -> None:
        self.stdin.close()
        self.stdout.close()


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    at = str(tmp_path / "s")
    yield at
    pid = Path(f"{at}.pid")
    if pid.exists() and pid.read_text().strip().isdigit():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid.read_text()), signal.SIGKILL)


def run(hold: str, at: str, *argv: str, rows: int = 24, cols: int = 80) -> Client:
    process = subprocess.Popen(
        [hold, "run", at, str(rows), str(cols), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    return Client(process)


def attach(hold: str, at: str, rows: int = 24, cols: int = 80, since: int | None = None) -> Client:
    argv = [hold, "attach", at, str(rows), str(cols), *([str(since)] if since is not None else [])]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return Client(process)


def test_frames_say_keys_and_sizes() -> None:
    assert holder.keys(b"ab") == b"\x00\x00\x02ab"
    assert holder.resize(cols=100, rows=30) == b"\x01\x00\x04\x00\x1e\x00\x64"
    big = holder.keys(b"x" * 70000)
    assert big[:3] == b"\x00\xff\xff" and big[3 + 0xFFFF : 3 + 0xFFFF + 3] == b"\x00\x11\x71"
    assert holder.run_argv("/tmp/k", 24, 80, ["sh"]) == ["agentdock-hold", "run", "/tmp/k", "24", "80", "sh"]
    assert holder.attach_argv("/tmp/k", 24, 80, 5)[-1] == "5" and len(holder.attach_argv("/tmp/k", 24, 80, None)) == 5


def test_the_program_gets_its_size_keys_and_resizes_and_its_exit_status_is_kept(hold: str, base: str) -> None:
    client = run(hold, base, "/bin/sh", "-c", "stty size; read line; echo got:$line; stty size; exit 7", rows=30)
    client.read_until(b"30 80\r\n")
    client.send(holder.resize(cols=120, rows=40) + holder.keys(b"hel") + holder.keys(b"lo\n"))
    client.read_until(b"got:hello\r\n40 120\r\n")
    assert client.read_to_end().endswith(b"40 120\r\n")
    assert client.process.wait(5) == 7
    assert Path(f"{base}.exit").read_text() == "7\n"
    assert not Path(f"{base}.sock").exists()


def test_output_while_detached_is_kept_and_handed_to_the_next_client_with_a_redraw(hold: str, base: str) -> None:
    script = (
        "trap 'echo winch' WINCH; i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo tick$i; sleep 0.05; done;"
        " until read x; do :; done; echo bye:$x"
    )
    first = run(hold, base, "/bin/sh", "-c", script)
    first.read_until(b"tick2\r\n")
    first.detach()  # the service went away
    time.sleep(2.5)  # the program printed on meanwhile, to nobody
    second = attach(hold, base, rows=50, cols=132)
    output = second.read_until(b"tick40\r\n")
    assert first.offset == 0 and 0 < second.offset <= len(b"tick1\r\ntick2\r\ntick3\r\ntick4\r\n")
    numbers = [int(n) for n in re.findall(rb"tick(\d+)\r\n", output)]
    assert numbers == list(range(numbers[0], 41)) and numbers[0] <= 4, output[:200]
    assert b"winch" in second.read_until(b"winch")  # the program was told to redraw
    second.send(holder.keys(b"again\n"))
    second.read_until(b"bye:again\r\n")
    assert second.read_to_end().endswith(b"bye:again\r\n")
    assert second.process.wait(5) == 0  # the attach process ends when the holder lets go
    assert first.process.wait(5) == 0
    assert Path(f"{base}.exit").read_text() == "0\n"


def test_a_newer_client_replaces_an_older_one_whose_stream_then_ends(hold: str, base: str) -> None:
    first = run(hold, base, "/bin/sh", "-c", "echo ready; read a; echo one:$a; read b; echo two:$b")
    first.send(holder.keys(b""))  # an empty frame is nothing
    first.read_until(b"ready")
    second = attach(hold, base)
    third = attach(hold, base)
    assert second.read_to_end(timeout=5) == b""  # let go of at once, without a byte
    assert second.process.wait(5) == 0
    third.send(holder.keys(b"x\n"))
    third.read_until(b"one:x\r\n")
    assert first.read_to_end(timeout=5) == b"ready\r\n"  # the first stream was let go of too
    third.send(holder.keys(b"y\n"))
    assert third.read_to_end().endswith(b"two:y\r\n")


def test_a_program_that_ends_unattended_leaves_its_last_output_for_the_next_attach(hold: str, base: str) -> None:
    client = run(hold, base, "/bin/sh", "-c", "sleep 0.5; echo the-end; exit 3")
    client.detach()
    assert client.process.wait(10) == 3
    assert Path(f"{base}.exit").read_text() == "3\n"
    late = attach(hold, base)
    assert late.read_to_end() == b"the-end\r\n" and late.offset == 0
    assert late.process.wait(5) == holder.GONE
    later = attach(hold, base, since=4)  # from a given offset on, as a restored session asks
    assert (later.read_to_end(), later.offset) == (b"end\r\n", 4)


def test_a_later_client_gets_the_output_from_the_offset_it_asks_for(hold: str, base: str) -> None:
    first = run(hold, base, "/bin/sh", "-c", "echo one; echo two; until read x; do :; done; echo three")
    first.read_until(b"two\r\n")
    first.detach()
    again = attach(hold, base, since=len(b"one\r\n"))  # the scrollback had the first line only
    assert again.read_until(b"two\r\n") == b"two\r\n" and again.offset == 5
    newer = attach(hold, base, since=10**15)  # past the end: from what comes next
    assert newer.read_offset() == len(b"one\r\ntwo\r\n")
    oldest = attach(hold, base, since=0)
    assert newer.read_to_end(timeout=5) == b""
    assert oldest.read_until(b"two\r\n") == b"one\r\ntwo\r\n" and oldest.offset == 0
    oldest.send(holder.keys(b"go\n"))
    assert oldest.read_to_end().endswith(b"three\r\n")


def test_a_client_that_asks_for_more_than_is_kept_gets_what_is(hold: str, base: str) -> None:
    first = run(hold, base, "/bin/sh", "-c", "head -c 400000 /dev/zero | tr '\\0' x; echo; until read x; do :; done")
    first.detach()
    time.sleep(1.0)
    again = attach(hold, base, since=0)
    again.read_until(b"\r\n")
    assert again.offset == 400002 - 256 * 1024 and again.output == b"x" * (256 * 1024 - 2) + b"\r\n"
    again.send(holder.keys(b"\n"))
    again.read_to_end()


def test_attach_without_a_session_answers_gone(hold: str, base: str) -> None:
    result = subprocess.run([hold, "attach", base, "24", "80"], check=False, capture_output=True, timeout=10)
    assert (result.returncode, result.stdout) == (holder.GONE, b"")


def test_frames_it_does_not_know_are_skipped(hold: str, base: str) -> None:
    client = run(hold, base, "/bin/sh", "-c", "read a; echo got:$a; stty size")
    junk = (
        b"\x07\x00\x05hello"  # an unknown type, skipped with its payload
        + b"\x01\x00\x02\x00\x05"  # a resize too short to be one
        + b"\x01\x00\x04\x00\x00\x00\x00"  # a resize to 0x0
        + b"\x00\x00\x00"  # empty keys
    )
    client.send(junk + holder.keys(b"ok\n"))
    assert client.read_to_end().endswith(b"got:ok\r\n24 80\r\n")


def test_a_slow_reader_gets_every_byte_of_a_program_that_ends(hold: str, base: str) -> None:
    lines = 60_000
    script = f"i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo line$i; done; exit 0"
    client = run(hold, base, "/bin/sh", "-c", script)
    time.sleep(1.0)  # the program is long done writing what the PTY takes; the holder waits for us
    output = client.read_to_end(timeout=60)
    assert output.count(b"\r\n") == lines and output.endswith(f"line{lines}\r\n".encode())
    assert client.process.wait(5) == 0


def test_ending_the_programs_group_reports_the_signal(hold: str, base: str) -> None:
    client = run(hold, base, "/bin/sh", "-c", "echo up; sleep 600")
    client.read_until(b"up\r\n")
    group = int(Path(f"{base}.pid").read_text())
    assert os.getpgid(group) == group and os.getsid(group) == group  # the program leads its own
    os.killpg(group, signal.SIGKILL)
    client.read_to_end()
    assert client.process.wait(5) == 137
    assert Path(f"{base}.exit").read_text() == "137\n"


def test_a_program_that_cannot_start_says_so_on_its_terminal(hold: str, base: str) -> None:
    client = run(hold, base, "/no/such/program")
    assert b"cannot run /no/such/program" in client.read_to_end()
    assert client.process.wait(5) == 127


def test_its_usage_is_what_the_images_check(hold: str) -> None:
    result = subprocess.run([hold], check=False, capture_output=True, text=True, timeout=5)
    assert result.returncode == 125 and result.stderr.startswith("usage: agentdock-hold")
    assert struct.calcsize(">BHHH") == len(holder.resize(1, 1))


def test_a_long_paste_reaches_the_program_whole_and_in_order(hold: str, base: str) -> None:
    client = run(hold, base, "/bin/sh", "-c", "stty raw -echo; echo ready; head -c 300000 | md5sum")
    client.read_until(b"ready")
    paste = bytes(range(32, 127)) * (300000 // 95) + b"x" * (300000 % 95)
    client.send(holder.keys(paste))  # more than the holder's input buffer and the PTY's
    digest = hashlib.md5(paste).hexdigest().encode()  # a checksum of what was typed
    assert digest in client.read_to_end(timeout=30)
