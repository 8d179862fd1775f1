"""The screen model (service/sessions/screen.py): what an attaching viewer is shown, tested
without a process. The replay, read by a fresh model (as a terminal reads it), must give the
same screens, cells, cursor, history and modes as the program's own output did."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pyte
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyte.screens import Char

from service.sessions.screen import IDLE_S, ScreenModel, _Screen
from service.sessions.scrollback import QUERIES, Scrollback
from service.sessions.session import PtySession


def model(cols: int = 80, rows: int = 24, *, limit: int = 256 * 1024, history: int = 1000) -> ScreenModel:
    return ScreenModel(Scrollback(limit), cols, rows, history=history)


def write(screen: ScreenModel, *texts: str) -> None:
    for text in texts:
        screen._ring.append(text)


def replayed(screen: ScreenModel) -> ScreenModel:
    """A fresh model (a terminal that just connected) fed the replay."""
    replay = screen.snapshot()
    assert not QUERIES.search(replay)
    again = model(screen._main.columns, screen._main.lines)
    write(again, replay)
    again.snapshot()
    return again


def cells(screen: pyte.Screen) -> list[list[Char]]:
    return [[screen.buffer[y][x] for x in range(screen.columns)] for y in range(screen.lines)]


def assert_same(shown: ScreenModel, original: ScreenModel) -> None:
    assert bool(shown._alt_via) == bool(original._alt_via)
    screens: list[tuple[pyte.Screen, pyte.Screen]] = [(shown._main, original._main)]
    if original._alt_via:
        screens.append((shown._alt, original._alt))
    for mine, theirs in screens:
        assert mine.display == theirs.display
        assert cells(mine) == cells(theirs)
        assert (mine.cursor.x, mine.cursor.y) == (theirs.cursor.x, theirs.cursor.y)
    assert shown._active.cursor.attrs == original._active.cursor.attrs  # the pen
    saved = [(c.x, c.y, c.attrs) for c in (point.cursor for point in original._active.savepoints)]
    assert [(c.x, c.y, c.attrs) for c in (point.cursor for point in shown._active.savepoints)] == saved
    assert list(shown._main.history) == list(original._main.history)
    assert shown._modes == original._modes
    assert shown._keypad == original._keypad


SHELL = "".join(f"$ echo {n}\r\n{n}\r\n" for n in range(30))
# A full-screen program: it takes the alternate screen, draws a box in colour, then redraws
# only parts of it, many times, and leaves the cursor inside the box with a pen set.
BOX = (
    "\x1b[?1049h\x1b[?1h\x1b=\x1b[?2004h\x1b[?1000;1006h\x1b[H\x1b[2J"
    "\x1b[3;10H\x1b[1;34m+------------------+\x1b[0m"
    + "".join(f"\x1b[{y};10H\x1b[1;34m|\x1b[0m\x1b[{y};29H\x1b[1;34m|\x1b[0m" for y in range(4, 8))
    + "\x1b[8;10H\x1b[1;34m+------------------+\x1b[0m"
    "\x1b[4;12H\x1b[3;4mitalic underline\x1b[0m"
    "\x1b[5;12H\x1b[7mreverse\x1b[0m \x1b[9mstrike\x1b[0m"
    "\x1b[6;12H\x1b[31mred\x1b[92mbright\x1b[38;5;208m256\x1b[48;2;10;20;30mtrue\x1b[0m"
)
REDRAWS = "".join(f"\x1b[7;12H\x1b[33mcount {n:05d}\x1b[0m\x1b[12;1Hstatus {n}\x1b[K" for n in range(500))


def test_a_full_screen_program_is_shown_as_it_stands() -> None:
    screen = model()
    write(screen, SHELL, "$ top\r\n", BOX, REDRAWS, "\x1b[6;20H\x1b[1;32m\x1b[?25l")
    shown = replayed(screen)
    assert_same(shown, screen)
    alt = shown._alt.display
    assert alt[2][9:29] == "+------------------+"
    assert alt[6][11:22] == "count 00499"
    assert alt[11].rstrip() == "status 499"
    assert shown._alt.buffer[5][11].fg == "red"
    assert shown._alt.buffer[5][14].fg == "brightgreen"
    assert shown._alt.buffer[5][20].fg == "ff8700"  # 256 colours: index 208
    assert shown._alt.buffer[5][23].bg == "0a141e"  # truecolor
    assert shown._alt.buffer[3][11].italics and shown._alt.buffer[3][11].underscore
    assert shown._alt.buffer[4][11].reverse and shown._alt.buffer[4][19].strikethrough
    assert {1, 1000, 1006, 2004} <= shown._modes and 25 not in shown._modes
    # The main screen underneath, as the shell left it, and its cursor for when the program ends.
    assert shown._main.display == screen._main.display
    replay = screen.snapshot()
    assert len(replay) < 8 * 1024  # the screen, not the redraws
    assert replay.index("$ echo 29") < replay.index("\x1b[?1049h") < replay.index("count 00499")


def test_leaving_the_alternate_screen_shows_the_shell_again() -> None:
    screen = model()
    write(screen, SHELL, "$ vi\r\n", BOX, REDRAWS, "\x1b[?1049l\x1b[?1l\x1b>$ ")
    shown = replayed(screen)
    assert_same(shown, screen)
    assert not shown._alt_via
    assert shown._main.display[-2:] == [f"{'$ vi':<80}", f"{'$':<80}"]
    assert (shown._main.cursor.x, shown._main.cursor.y) == (2, 23)


def test_history_lines_come_before_the_screen_and_are_bounded() -> None:
    screen = model(40, 10, history=50)
    write(screen, *(f"line-{n}\r\n" for n in range(200)), "$ ")
    replay = screen.snapshot()
    numbers = [int(part.split("\r")[0]) for part in replay.split("line-")[1:]]
    assert numbers == list(range(141, 200))  # 50 lines of history, then the screen's 9
    shown = replayed(screen)
    assert_same(shown, screen)
    terminal = pyte.Screen(40, 10)  # a terminal of the same size shows the screen
    pyte.Stream(terminal).feed(replay)
    assert terminal.display[-1].rstrip() == "$" and terminal.display[0].rstrip() == "line-191"
    assert (terminal.cursor.x, terminal.cursor.y) == (2, 9)


def test_the_replay_never_holds_a_query() -> None:
    screen = model()
    queries = "\x1b[6n\x1b[c\x1b[>c\x1b[5n\x1b[14t\x1b[?2026$p\x1bP$qm\x1b\\\x1b]11;?\x07\x1b[?u\x1bP+q436f\x1b\\"
    write(screen, f"before{queries}after\r\n", "\x1b[?1049h", f"x{queries}y")
    replay = screen.snapshot()
    assert not QUERIES.search(replay)
    assert "+q" not in replay and "436f" not in replay
    shown = replayed(screen)
    assert shown._main.display[0].rstrip() == "beforeafter"
    assert shown._alt.display[1].rstrip() == "xy"  # the cursor stays where it was


def test_wide_characters_and_utf8_survive() -> None:
    screen = model(20, 6)
    write(screen, "中文 ok é\u0301 😀!\r\n", "ab漢字cd\r\n")
    write(screen, "\x1b[3;1H全角全角\x1b[3;2Hx\x1b[3;5H\x1b[1m中\x1b[m")  # over halves of wide characters
    write(screen, "\x1b[4;20H中\x1b[6;20H\x1b[?7l字")  # in the last column: it wraps, or (no wrap) it moves left
    shown = replayed(screen)
    assert_same(shown, screen)
    display = shown._main.display
    assert display[0].startswith("中文 ok é\u0301 😀!")
    assert display[1].startswith("ab漢字cd")
    assert display[2].startswith(" x角中角")  # as xterm.js shows it: the halves left are blanks
    assert display[3] == " " * 20 and display[4].startswith("中")
    assert display[5].endswith("字")


def test_wide_characters_are_drawn_as_xterm_draws_them() -> None:
    screen = _Screen(6, 3, history=0)
    pyte.Stream(screen).feed("abcde中\r\nxy漢字\x1b[2;4Hz\x1b[3;1H漢字\x1b[3;1Hq")
    assert screen.display == ["abcde ", "中 z  ", "q 字字"]
    assert [screen.buffer[2][x].data for x in range(6)] == ["q", " ", "字", "", "字", ""]


def test_a_sequence_the_stream_is_in_the_middle_of_ends_the_replay() -> None:
    screen = model()
    write(screen, "hello\r\n\x1b[?104")
    replay = screen.snapshot()
    assert replay.endswith("\x1b[?104")
    terminal = model()
    write(terminal, replay, "9h\x1b[2;3Hon the alternate screen")  # the live frame that follows
    terminal.snapshot()
    assert terminal._alt_via == 1049
    assert terminal._alt.display[1].startswith("  on the alternate screen")
    assert terminal._main.display[0].startswith("hello")


def test_a_cursor_past_the_last_column_still_wraps() -> None:
    screen = model(10, 3)
    write(screen, "0123456789")  # the cursor waits past the last column
    replay = screen.snapshot()
    terminal = pyte.Screen(10, 3)
    pyte.Stream(terminal).feed(replay + "X")
    assert terminal.display[:2] == ["0123456789", "X         "]


def test_the_model_follows_the_size() -> None:
    screen = model(80, 24)
    write(screen, "wide " * 20 + "\r\n")
    screen.resize(30, 10)
    write(screen, "narrow " * 8 + "\r\n$ ")
    replay = screen.snapshot()
    assert (screen._main.columns, screen._main.lines) == (30, 10)
    shown = ScreenModel(Scrollback(), 30, 10)
    shown._ring.append(replay)
    shown.snapshot()
    assert_same(shown, screen)
    # Shrunk as xterm.js shrinks: the empty rows at the bottom went, the rows kept their place.
    assert shown._main.display[2:5] == [
        "narrow narrow narrow narrow na",
        "rrow narrow narrow narrow     ",
        f"{'$':<30}",
    ]


def test_misread_sequences_are_taken_as_xterm_takes_them() -> None:
    screen = model()
    write(screen, "\x1b[>4;2mplain \x1b[38:2::255:0:0mred \x1b[4:3mcurly\x1b[4:0m \x1bPq#0;2;0;0;0\x1b\\end")
    write(screen, "\x1b]0;my title\x07\x1b[2 q")
    main = screen._main
    screen.snapshot()
    assert main.display[0].startswith("plain red curly end")
    assert not main.buffer[0][0].underscore
    assert main.buffer[0][6].fg == "ff0000"
    assert main.buffer[0][10].underscore and not main.buffer[0][16].underscore
    replay = screen.snapshot()
    assert "\x1b]2;my title\x07" in replay and "\x1b[2 q" in replay


def test_a_full_screen_program_keeps_its_screen_when_the_ring_lets_go() -> None:
    """The box is drawn once; the redraws that follow are far more than the ring holds, and the
    model did not read them as they came: on the alternate screen it reads what the ring lets
    go of, so the box is still there. A replay of the raw bytes after the cut lacks it."""
    screen = model(limit=4096)
    write(screen, SHELL, BOX, *(REDRAWS[n : n + 700] for n in range(0, len(REDRAWS), 700)))
    assert screen.lag <= 4096
    raw = pyte.Screen(80, 24)
    pyte.Stream(raw).feed(screen._ring.replay())
    assert "+------------------+" not in raw.display[2]  # what today's replay showed
    shown = replayed(screen)
    assert shown._alt.display[2][9:29] == "+------------------+"
    assert shown._alt.display[6][11:22] == "count 00499"


def test_main_screen_output_beyond_the_ring_is_skipped() -> None:
    screen = model(40, 5, limit=4096)
    write(screen, "\x1b[?2004h\x1b]2;build\x07")
    write(screen, *(f"log line {n}\r\n" for n in range(5000)))  # 80 KiB the model never read
    assert screen.lag <= 4096
    write(screen, "$ ")
    shown = replayed(screen)
    assert shown._main.display[-2:] == [f"{'log line 4999':<40}", f"{'$':<40}"]
    assert 2004 in shown._modes and shown._title == "build"
    assert shown._main.history[0].startswith("log line")  # history begins at a line start


def test_a_long_unread_run_is_read_from_near_its_end() -> None:
    screen = model(40, 5)
    write(screen, *(f"line {n}\r\n" for n in range(20000)))  # about 200 KiB, all in the ring
    replay = screen.snapshot()
    assert "line 19999" in replay
    assert screen.lag == 0


async def test_the_model_catches_up_while_the_output_is_quiet() -> None:
    screen = model()
    write(screen, *(f"line {n}\r\n" for n in range(3000)))
    assert screen.lag > 0
    for _ in range(100):
        await asyncio.sleep(IDLE_S)
        if not screen.lag:
            break
    assert screen.lag == 0
    screen.close()


# --- the fast drawing path against pyte's own -------------------------------------------------

_PIECES = st.one_of(
    st.text(alphabet="abcXYZ 01é─", min_size=1, max_size=30),
    st.sampled_from(["\r", "\n", "\r\n", "\b", "\t", "\x1b[m", "\x1b[1;31m", "\x1b[44m", "\x1b[7m", "\x1b[0m"]),
    st.builds(lambda y, x: f"\x1b[{y};{x}H", st.integers(1, 8), st.integers(1, 14)),
    st.sampled_from(["\x1b[K", "\x1b[1K", "\x1b[2J", "\x1b[J", "\x1b[2L", "\x1b[M", "\x1b[3P", "\x1b[2@"]),
    st.sampled_from(["\x1b[?7l", "\x1b[?7h", "\x1b[4h", "\x1b[4l", "\x1b[2;5r", "\x1b[r", "\x1bM", "\x1b[2X"]),
)
# What only xterm.js does as the model does: wide characters (their halves), one saved cursor,
# the alternate screens, modes, charsets, resets, sequences pyte misreads.
_XTERM_PIECES = st.one_of(
    _PIECES,
    st.text(alphabet="ab中😀", min_size=1, max_size=9),
    st.sampled_from(["\x1b7", "\x1b8", "\x1b[s", "\x1b[u", "\x1b[2S", "\x1b[T", "\x1b[3J", "\x1b[!p", "\x1bc"]),
    st.sampled_from(
        ["\x1b[?1049h", "\x1b[?1049l", "\x1b[?47h", "\x1b[?47l", "\x1b[?1047h", "\x1b[?1048h", "\x1b[?1048l"]
    ),
    st.sampled_from(
        ["\x1b(0", "\x1b(B", "\x0e", "\x0f", "\x1b)0", "lqkx", "\x1b[?6h", "\x1b[?6l", "\x1b[20h", "\x1b[20l"]
    ),
    st.sampled_from(["\x1b[?25l", "\x1b[?1;2004h", "\x1b=", "\x1b>", "\x1b[2 q", "\x1b]0;t\x07", "\x1bD", "\x1bE"]),
    st.sampled_from(["\x1b[38;5;100m", "\x1b[38;2;1;2;3m", "\x1b[48;5;3m", "\x1b[3;4;5;9m", "\x1b[>4;2m", "\x1b[4:3m"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60))
def test_the_fast_screen_draws_as_pyte_does(pieces: list[str]) -> None:
    # Where the model erases, inserts and deletes as xterm.js does, and pyte does not (a pen's
    # background only, lines its buffer does not hold, cells past the edge), it is not compared.
    assume(not {"\x1b[3P", "\x1b[2@", "\x1b[4h", "\x1b[2L", "\x1b[M", "\x1b[2X"} & set(pieces))
    assume(not any(piece.endswith(("K", "J")) for piece in pieces))
    ours, theirs = _Screen(12, 8, history=10), pyte.Screen(12, 8)
    for screen in (ours, theirs):
        stream = pyte.Stream(screen)
        for piece in pieces:
            stream.feed(piece)
    assert cells(ours) == cells(theirs)
    assert (ours.cursor.x, ours.cursor.y, ours.cursor.attrs) == (theirs.cursor.x, theirs.cursor.y, theirs.cursor.attrs)


_SAVES = {"\x1b7", "\x1b[s", "\x1b[?1048h"}
_RESTORES = {"\x1b8", "\x1b[u", "\x1b[?1048l"}
_SWITCHES = {"\x1b[?1049h", "\x1b[?1049l", "\x1b[?47h", "\x1b[?47l", "\x1b[?1047h"}


@settings(max_examples=300, deadline=None)
@given(st.lists(_XTERM_PIECES, max_size=60), st.booleans(), st.integers(3, 14), st.integers(2, 9))
def test_any_screen_is_replayed_as_it_stands(pieces: list[str], alternate: bool, cols: int, rows: int) -> None:
    screen = model(cols, rows)
    write(screen, "before\r\n" * 10, "\x1b[?1049h" if alternate else "", "".join(pieces))
    shown = replayed(screen)
    assert_same(shown, screen)
    assert (shown._title, shown._cursor_style) == (screen._title, screen._cursor_style)


@settings(max_examples=300, deadline=None)
@given(st.lists(_XTERM_PIECES, max_size=50), st.lists(_XTERM_PIECES, max_size=30), st.integers(0, 6))
def test_the_replay_then_the_live_output_is_the_whole_output(before: list[str], after: list[str], cut: int) -> None:
    """A viewer attaches anywhere in the stream, even inside an escape sequence: the replay and
    the frames after it give the terminal the program's whole output gave. Not carried over:
    the character REP repeats, and a cursor saved on the alternate screen while the main one
    is shown (xterm.js keeps it for the next switch)."""
    assume(not (_SAVES & {*before, *after} and _SWITCHES & set(before)))
    first = "before\r\n" * 5 + "".join(before)
    first, rest = first[: len(first) - cut], first[len(first) - cut :] + "".join(after)
    whole = model(10, 6)
    write(whole, first + rest)
    whole.snapshot()
    screen = model(10, 6)
    write(screen, first)
    viewer = model(10, 6)
    write(viewer, screen.snapshot() + rest)
    viewer.snapshot()
    assert_same(viewer, whole)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_XTERM_PIECES, max_size=60), st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(16, 200)
)
def test_on_the_alternate_screen_a_small_ring_loses_nothing(pieces: list[str], cuts: list[int], limit: int) -> None:
    """What the ring lets go of, the model reads first (on the alternate screen), whatever the
    pieces the output comes in and however often a viewer attaches."""
    leaves = ("\x1b[?1049l", "\x1b[?47l", "\x1bc")
    text = "\x1b[?1049h" + "".join(piece for piece in pieces if piece not in leaves)
    whole = model(12, 6)
    write(whole, text)
    whole.snapshot()
    screen = model(12, 6, limit=limit)
    at = 0
    for n, size in enumerate(cuts * (len(text) // sum(cuts) + 1)):
        write(screen, text[at : at + size])
        at += size
        if n % 5 == 4:
            screen.snapshot()
    assert_same(replayed(screen), whole)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_XTERM_PIECES, max_size=60), st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(16, 300)
)
def test_the_modes_of_output_the_model_skips_are_kept(pieces: list[str], cuts: list[int], limit: int) -> None:
    """Main-screen output the ring let go of before the model read it is skipped, but the
    modes it set, the title, and which screen is in use still reach the replay. (Not a saved
    cursor: one restored after a skip may restore the origin mode it saved, or none.)"""
    assume(not _RESTORES & set(pieces))
    text = "".join(pieces)
    whole = model(12, 6)
    write(whole, text)
    whole.snapshot()
    screen = model(12, 6, limit=limit)
    at = 0
    for size in cuts * (len(text) // sum(cuts) + 1):
        write(screen, text[at : at + size])
        at += size
    shown = replayed(screen)
    assert (shown._modes, shown._keypad, shown._title) == (whole._modes, whole._keypad, whole._title)
    assert bool(shown._alt_via) == bool(whole._alt_via)


# --- several viewers, one size ----------------------------------------------------------------


def bare_session(**kwargs: Any) -> PtySession:
    return PtySession(
        project_id=uuid.uuid4(), command=["sh"], cols=80, rows=24, env={}, restart="never", on_exit=lambda *_: None
    )


async def test_the_size_is_the_smallest_over_the_writable_viewers() -> None:
    session = bare_session()
    a, _ = session.attach(read_only=False)
    b, _ = session.attach(read_only=False)
    watcher, _ = session.attach(read_only=True)
    assert session.fitted_size() is None
    await session.viewer_size(a, 100, 40)
    assert (session.cols, session.rows) == (100, 40)
    await session.viewer_size(b, 90, 50)
    assert (session.cols, session.rows) == (90, 40)  # the smallest columns, the smallest rows
    await session.viewer_size(watcher, 10, 10)  # a read-only viewer never resizes
    assert (session.cols, session.rows) == (90, 40)
    session.detach(b)
    await asyncio.sleep(0)  # the fit after a detach runs as a task of the session
    await asyncio.sleep(0)
    assert (session.cols, session.rows) == (100, 40)
    assert (session.screen._main.columns, session.screen._main.lines) == (100, 40)
    session.detach(a)
    await asyncio.sleep(0)
    assert (session.cols, session.rows) == (100, 40)  # none left that sent a size: it stays
