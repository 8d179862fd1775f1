"""The session holder: ``dtach`` inside the container keeps a session's program running when
the service stops, and the next service attaches to it again.

A session of the docker runtime is a TTY exec of ``dtach``'s client, attached to a dtach
master that owns the program's own PTY. The service going away ends the exec's stream and
nothing else; the program, its PTY and the master stay. A new service kills the stale client
and attaches a new one (``dtach -a``), which also sends the program a SIGWINCH so that a
full-screen program redraws.

dtach keeps no output of its own: what the program prints while no service is attached is
lost, except what the service had already kept (its scrollback, saved to disk). Its files,
all in the container's ``/tmp`` and owned by the session's user, named after the session's
key: ``.sock`` (the master's socket), ``.pid`` (the wrapper that runs the program: the
session's leader, whose process group and session ``DELETE`` ends), ``.exit`` (the program's
exit code, written by that wrapper), ``.client`` (the attached client's pid). Everything in
them is the agent's to forge: they only ever steer that same user's own session.

The wrapper catches (does not ignore) INT and QUIT, so that a Ctrl-C ends the program but not
the wrapper: a caught signal is reset to its default in the program, an ignored one would not be.
When the program has ended, the wrapper lets go of the terminal and lingers until dtach's
master is gone: the master drops the chunk of output in hand when its child's exit interrupts
it while it waits for a slow client, so its child must not exit while output is still in flow.
"""

from __future__ import annotations

import asyncio
import re

from service.runtimes.pty import ExitStatus, OnData, OnEof

HOLDER = "dtach"
# Answers 0 when the container has the holder; the service then always uses it.
PROBE = ["/bin/sh", "-c", "command -v dtach >/dev/null 2>&1"]


def base(key: str) -> str:
    return f"/tmp/.agentdock-session-{key}"  # noqa: S108 - inside the container


# $1 key base, $2 rows, $3 cols, then the program. The outer part runs in the exec's TTY (the
# client's terminal, sized first so that the client passes that size on); the inner part in
# the master's PTY, which is 0x0 until the client has attached and sent its size (a resize
# already made included; dtach passes a client's size on attach only with a redraw method, so
# `-r winch`): the program starts only then (or after 2 s, at the size asked for).
SPAWN = r"""k=$1 r=$2 c=$3; shift 3
stty rows "$r" cols "$c" 2>/dev/null
rm -f "$k.exit" "$k.sock"
echo $$ > "$k.client"
exec dtach -c "$k.sock" -E -z -r winch /bin/sh -c '
k=$1 r=$2 c=$3; shift 3
trap : INT QUIT
echo $$ > "$k.pid"
sized() { case "$(stty size 2>/dev/null)" in [1-9]*\ [1-9]*) return 0;; esac; return 1; }
i=0; while ! sized && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done
sized || stty rows "$r" cols "$c" 2>/dev/null
"$@"; s=$?
echo $s > "$k.exit"
exec 0<&- 1>&- 2>&-
i=0; while [ -S "$k.sock" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
exit $s' agentdock-held "$k" "$r" "$c" "$@"
"""

GONE = 111  # the re-attach found no session to attach to
# $1 key base, $2 rows, $3 cols. Ends a client left behind by a service that went away.
REATTACH = rf"""k=$1; stty rows "$2" cols "$3" 2>/dev/null
[ -S "$k.sock" ] || exit {GONE}
old=$(cat "$k.client" 2>/dev/null)
case "$old" in ''|0|1|*[!0-9]*) ;; *) kill "$old" 2>/dev/null;; esac
echo $$ > "$k.client"
exec dtach -a "$k.sock" -E -z -r winch
"""

# After the stream ended: the exit code the wrapper wrote (empty when it was killed), then the
# session's files go.
COLLECT = r"""k=$1; cat "$k.exit" 2>/dev/null; rm -f "$k.exit" "$k.pid" "$k.client" "$k.sock" """

# What dtach's client writes of its own: a screen clear when it attaches, and a line when it
# ends (at the bottom of the screen), then it shows the cursor again.
PREAMBLE = b"\x1b[H\x1b[J"
_EOS = b"\x1b[999H"
_ENDINGS = tuple(
    _EOS + b"\r\n[" + what + b"]\r\n"
    for what in (b"EOF - dtach terminating", b"detached", b"read returned an error", b"poll failed")
)
_RESTORE = b"\x1b[?25h\x1b[?0c"
_TRAILER = re.compile(
    rb"\x1b\[999H\r\n\[(?:EOF - dtach terminating|detached|read returned an error|poll failed|got signal \d+ - dying)\]"
    rb"\r\n(?:\x1b\[\?25h(?:\x1b\[\?0c)?)?"
)
HOLD_S = 0.1  # bytes that may begin the client's last line wait at most this long for the rest


def parse_exit(text: str) -> int | None:
    """The wrapper's exit file: a number 0..255, or nothing (the wrapper was killed)."""
    value = text.strip()
    if value.isdigit() and int(value) <= 255:
        return int(value)
    return None


def ended(exit_code: int | None, ending_signal: int | None) -> ExitStatus:
    """The program's status: its exit code, or, when the wrapper itself was killed (``DELETE``
    ended the whole session), the signal that ended it."""
    if exit_code is not None:
        return ExitStatus(exit_code=exit_code, signal=exit_code - 128 if exit_code > 128 else None)
    if ending_signal is not None:
        return ExitStatus(exit_code=128 + ending_signal, signal=ending_signal)
    return ExitStatus(exit_code=None)


def _may_become_trailer(tail: bytes) -> bool:
    for ending in _ENDINGS:
        if ending.startswith(tail):
            return True
        if tail.startswith(ending) and _RESTORE.startswith(tail[len(ending) :]):
            return True
    return _TRAILER.fullmatch(tail) is not None


def _trailer_start(chunk: bytes) -> int | None:
    """Where the client's last line may begin in ``chunk``: at its last ``ESC[999H`` that may
    become that line, or at a start of ``ESC[999H`` cut by the chunk's end."""
    mark = chunk.rfind(_EOS)
    if mark != -1:
        return mark if _may_become_trailer(chunk[mark:]) else None
    for size in range(min(len(_EOS) - 1, len(chunk)), 0, -1):
        if chunk.endswith(_EOS[:size]):
            return len(chunk) - size
    return None


class ClientFilter:
    """Removes what dtach's client adds to the program's output: the screen clear at the start
    and its last line at the end. Bytes that may begin that last line are held back until the
    next chunk shows they are the program's (or for ``HOLD_S`` at most)."""

    def __init__(self, on_data: OnData, on_eof: OnEof) -> None:
        self._on_data = on_data
        self._on_eof = on_eof
        self._started = False
        self._head = b""
        self._held = b""
        self._timer: asyncio.TimerHandle | None = None

    def data(self, chunk: bytes) -> None:
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < len(PREAMBLE) and PREAMBLE.startswith(chunk):
                self._head = chunk
                return
            self._started = True
            self._head = b""
            if chunk.startswith(PREAMBLE):
                chunk = chunk[len(PREAMBLE) :]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        chunk = self._held + chunk
        self._held = b""
        mark = _trailer_start(chunk)
        if mark is not None:
            self._held = chunk[mark:]
            chunk = chunk[:mark]
            self._timer = asyncio.get_running_loop().call_later(HOLD_S, self._release)
        if chunk:
            self._on_data(chunk)

    def _release(self) -> None:
        self._timer = None
        held, self._held = self._held, b""
        if held:
            self._on_data(held)

    def eof(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._head + self._held, b""
        if held and _TRAILER.fullmatch(held) is None and not _may_become_trailer(held):
            self._on_data(held)
        self._on_eof()
