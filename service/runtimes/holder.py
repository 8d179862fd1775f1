"""The session holder: ``agentdock-hold`` inside the container keeps a session's program
running when the service stops, and the next service attaches to it again.

The holder is our own small C program (``agentdock-hold.c`` beside this file), built static
by ``scripts/docker-up.sh`` and installed in the default images. ``run`` opens a PTY, starts
the program on it and relays between it and its own standard input and output, which are the
session's exec stream: an exec **without** a TTY, so that a held session's output passes one
PTY and one process more than an exec's, not two PTYs and dtach's two processes (the
difference is in docs/benchmarks.md). A resize travels in-band, as a frame on the input.

The holder keeps the latest 256 KiB of the program's output, and counts every byte: each of its
streams begins with the offset (8 bytes, big-endian) of the byte that follows. When the stream
ends (the service stopped or died), the program runs on; ``attach``, the exec of a later
service, lends the holder its own standard input and output over the holder's socket and asks
for the output from the offset its scrollback was saved at: what the previous service never
saved, and what the program printed while no service ran, come first, with no gap and no
repeat (as far as 256 KiB reach). A newer attach replaces an older one, whose exec then
ends. A program that ends while nobody is attached leaves its last output in ``.tail``, which
the next ``attach`` prints before it answers ``GONE``.

Its files, in the container's ``/tmp``, owned by the session's user and named after the
session's key: ``.sock``, ``.pid`` (the program: the leader of its own session and process
group, which ``DELETE`` ends), ``.exit`` (its exit status), ``.tail``. Everything in them is
the agent's to forge: they only ever steer that user's own session, and the service reads
only the exit status, by an exec as that user.
"""

from __future__ import annotations

import struct

from service.runtimes.pty import ExitStatus

HOLDER = "agentdock-hold"
# Answers 0 when the container has the holder; the service then always uses it.
PROBE = ["/bin/sh", "-c", f"command -v {HOLDER} >/dev/null 2>&1"]

GONE = 111  # ``attach`` found no session to attach to

# Input frames: a type, a big-endian 16-bit length, the payload.
KEYS = 0
RESIZE = 1
_MAX_PAYLOAD = 0xFFFF


def base(key: str) -> str:
    return f"/tmp/.agentdock-session-{key}"  # noqa: S108 - inside the container


def run_argv(at: str, rows: int, cols: int, argv: list[str]) -> list[str]:
    return [HOLDER, "run", at, str(rows), str(cols), *argv]


def attach_argv(at: str, rows: int, cols: int, since: int | None) -> list[str]:
    """``since``: the offset to hand on output from (None: whatever no client has had)."""
    return [HOLDER, "attach", at, str(rows), str(cols), *([str(since)] if since is not None else [])]


OFFSET_BYTES = 8  # a stream's first bytes: the offset of the output that follows


# After the stream ended: the exit status the holder wrote (empty when it was killed), then
# the session's files go.
COLLECT = r"""k=$1; cat "$k.exit" 2>/dev/null; rm -f "$k.exit" "$k.pid" "$k.sock" "$k.tail" """


def keys(data: bytes) -> bytes:
    """Bytes for the program's terminal, as the holder's input frames."""
    return b"".join(
        struct.pack(">BH", KEYS, len(part)) + part
        for part in (data[i : i + _MAX_PAYLOAD] for i in range(0, len(data), _MAX_PAYLOAD))
    )


def resize(cols: int, rows: int) -> bytes:
    return struct.pack(">BHHH", RESIZE, 4, rows, cols)


def parse_exit(text: str) -> int | None:
    """The holder's exit file: a number 0..255, or nothing (the holder was killed)."""
    value = text.strip()
    if value.isdigit() and int(value) <= 255:
        return int(value)
    return None


def ended(exit_code: int | None, ending_signal: int | None) -> ExitStatus:
    """The program's status: its exit status, or, when there is none (the holder itself was
    killed), the signal that ``DELETE`` ended the session with."""
    if exit_code is not None:
        return ExitStatus(exit_code=exit_code, signal=exit_code - 128 if exit_code > 128 else None)
    if ending_signal is not None:
        return ExitStatus(exit_code=128 + ending_signal, signal=ending_signal)
    return ExitStatus(exit_code=None)
