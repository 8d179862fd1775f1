"""What a viewer sees on attach: a model of the terminal's screen, kept lazily.

A reconnecting viewer of a full-screen program (vim, htop, Claude Code's own interface)
would get half a redraw from a replay of the raw bytes after a cut. Instead the session
keeps a model of the terminal (pyte screens, with xterm's alternate screen and the modes a
front end must know tracked here) and sends the screen: the line history that scrolled off
the top, then the screen itself, the cursor, the pen and the modes.

pyte is pure Python and far slower than the output path, so the model is never fed there.
It reads the scrollback ring (which holds exactly what was sent) from its own place in the
stream: when a viewer attaches (what arrived since it was last fed), and in the session's
quiet spells, a slice at a time. Should the ring let go of bytes the model has not read:

- on the alternate screen (or with a switch to it ahead), where a full-screen program may
  have drawn the parts it never redraws, the model reads them then: pyte work on the output
  path, but for a full-screen program's output only, never for a bulk stream's;
- on the main screen (`cat`, a build log) it skips them: it only searches them for mode
  changes (a C-speed search, which finds no escape at all in plain text), and starts again
  from blank screens at the next line start. Its line history then begins there, as the
  raw replay's did. Of a long run of main-screen output not yet read, it reads only the end.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import copy
import re
import time
import unicodedata
from collections import defaultdict, deque
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import pyte
from pyte import charsets, graphics
from pyte import modes as mo
from pyte.screens import Char, Margins, StaticDefaultDict, wcwidth

from service.sessions.scrollback import Scrollback

DEFAULT_HISTORY_LINES = 1000  # lines that scrolled off the top, kept for the replay
IDLE_S = 0.05  # output quiet this long: the model catches up
SKIP_AHEAD = 64 * 1024  # of more main-screen output than this not yet read, only the end is read
SLICE_BYTES = 16 * 1024  # read per step when catching up in a quiet spell
DUTY = 4  # after a step of t seconds, wait DUTY * t before the next (at most 1/5 of a core)
_HOLD_LIMIT = 4096  # an unfinished escape sequence longer than this is not held back

# Private modes a front end must know, restored on attach (set ones only; the reset
# before the screen turns them all off). 25 (cursor), 6 and 7 (origin, autowrap) and the
# alternate screens are rendered on their own.
_TRACKED = (1, 5, 9, 12, 45, 66, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 1016, 2004)
_DEFAULT_MODES = frozenset({7, 25})
_ALTERNATE = (1049, 1047, 47)
_TO_PYTE = {6: mo.DECOM, 7: mo.DECAWM, 25: mo.DECTCEM}

# Everything the model handles itself, before pyte (which ignores the alternate screen and
# misreads some sequences: ``CSI > 4;2 m`` as underline, DCS strings as text, colon SGR).
_SCAN = re.compile(
    r"\x1b\[\?(?P<modes>[0-9;]*)(?P<set>[hl])"  # DECSET / DECRST
    r"|\x1b\[\?[0-9;]*(?P<erase>[JK])"  # selective erase: pyte's
    r"|\x1b(?P<keypad>[=>])"  # DECKPAM / DECKPNM
    r"|(?P<ris>\x1bc)"  # RIS
    r"|\x1b\[(?P<style>[0-9]*) q"  # DECSCUSR: the cursor's shape
    r"|(?P<decstr>\x1b\[!p)"  # DECSTR: soft reset
    r"|\x1b\[(?P<count>[0-9]*)(?P<scroll>[ST])"  # SU / SD
    r"|\x1b\[(?P<rep>[0-9]*)b"  # REP: repeat the last character
    r"|\x1b\[(?P<save>[su])"  # SCOSC / SCORC
    r"|\x1b\[(?P<sgr>[0-9;]*:[0-9;:]*)m"  # SGR with colon sub-parameters
    r"|\x1b\][02];(?P<title>[^\x07\x1b]*)(?:\x07|\x1b\\)"  # the window title
    r"|(?P<drop>\x1b\[[<=>?][0-9;:]*[ -/]*[@-~]"  # other prefixed CSI (queries, key modes)
    r"|\x1b\[[0-9;:]*[ -/]+[@-~]"  # CSI with intermediates
    r"|\x1b[P_^X][^\x1b]*\x1b\\)"  # DCS, APC, PM, SOS strings
)
# An escape sequence that the text ends in the middle of (matched from its last ESC).
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07]*|[P_^X][^\x1b]*|[ -/]*)\Z")
# A string (OSC, DCS, APC, PM, SOS) not yet terminated, maybe up to the ESC of its ST.
_UNTERMINATED = re.compile(r"\x1b[]P_^X][^\x07\x1b]*\x1b?\Z")
_RESYNC = re.compile(r"\n|\x1b")
# What output the model skips is still searched for (the first, a quick test for any of it;
# not for the cursor's shape, whose sequence has no rare prefix).
_MODE_HINT = re.compile(rb"\x1b(?:\[[?!]|[=>c\]])")
_UNFINISHED_BYTES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07]*|[P_^X][^\x1b]*|[ -/]*)\Z")
_MODES = re.compile(
    r"\x1b\[\?(?P<modes>[0-9;]*)(?P<set>[hl])"
    r"|\x1b(?P<keypad>[=>])"
    r"|(?P<ris>\x1bc)"
    r"|\x1b\[(?P<style>[0-9]*) q"
    r"|(?P<decstr>\x1b\[!p)"
    r"|\x1b\][02];(?P<title>[^\x07\x1b]*)(?:\x07|\x1b\\)"
)
_ALT_ON = re.compile(rb"\x1b\[\?(?:[0-9;]*;)?(?:1049|1047|47)(?:;[0-9;]*)?h")

# Set before the screen: a front end may reuse its terminal (on the alternate screen, in
# some mode the last program left). No queries, no RIS (which would also reset the palette).
_RESET = (
    "\x1b[?1049l\x1b[0m\x1b[r\x1b[4l\x1b[20l"
    "\x1b[?" + ";".join(str(mode) for mode in (6, *_TRACKED)) + "l\x1b[?7;25h\x1b>"
    "\x1b(B\x1b)B\x0f\x1b[0 q\x1b[H\x1b[2J\x1b[3J"
)

_BLANK = Char(" ")
_PLAIN = tuple(_BLANK[1:])
_EMPTY: Mapping[int, Char] = {}
_FG = {name: code for code, name in {**graphics.FG_ANSI, **graphics.FG_AIXTERM}.items() if name != "default"}
_BG = {name: code for code, name in {**graphics.BG_ANSI, **graphics.BG_AIXTERM}.items() if name != "default"}
_INDEX = {hex_: index for index, hex_ in enumerate(graphics.FG_BG_256)}  # the later (16+) wins a tie


class _Untracked(set[int]):
    """pyte's set of changed lines: nobody reads it here, so nothing is kept."""

    def add(self, _line: int) -> None:
        pass

    def update(self, *_lines: Any) -> None:
        pass


class _Cells(dict[str, Char]):
    """The cells of one pen, by character: a cell is built once, then shared."""

    def __init__(self, pen: Char) -> None:
        super().__init__()
        self.pen = pen

    def __missing__(self, char: str) -> Char:
        cell = self[char] = self.pen._replace(data=char)
        return cell


class _Screen(pyte.Screen):
    """A pyte screen, faster where output is plain text, closer to xterm.js where it counts:
    lines that scroll off the top go to a bounded history (``history`` lines; none for the
    alternate screen), ED 3 clears only that history, one saved cursor, SU / SD, REP, and
    rows given up at the bottom (empty ones) before the top when the screen shrinks."""

    def __init__(self, columns: int, lines: int, *, history: int) -> None:
        self.keeps_history = history > 0
        self.fresh: deque[tuple[Mapping[int, Char], int]] = deque(maxlen=max(history, 1))  # (line, width)
        self.history: deque[str] = deque(maxlen=max(history, 1))
        self.last_char = " "
        self._cells: dict[Char, _Cells] = {}
        self._scrolling = True
        super().__init__(columns, lines)
        self.dirty = _Untracked()
        self.buffer = defaultdict(self._new_line)

    def _new_line(self) -> StaticDefaultDict[int, Char]:
        return StaticDefaultDict(self.default_char)

    def reset(self) -> None:
        super().reset()
        self.g1_charset = charsets.LAT1_MAP  # xterm.js designates no G1: ASCII, not pyte's line drawing
        self.savepoints.clear()
        self.fresh.clear()
        self.history.clear()

    def flush_history(self) -> None:
        for line, width in self.fresh:
            self.history.append(render_row(line, width)[0])
        self.fresh.clear()

    def draw(self, data: str) -> None:
        if (
            self.charset
            or self.g0_charset is not charsets.LAT1_MAP
            or mo.IRM in self.mode
            or not (data.isprintable() if data.isascii() else all(wcwidth(char) == 1 for char in data))
        ):
            self._draw_each(data)
        else:  # only narrow characters, as they are: a line's worth at a time
            cursor, columns = self.cursor, self.columns
            cells = self._cells.get(cursor.attrs)
            if cells is None or len(cells) > 4096:  # bounded: 256 pens of 4096 characters
                if len(self._cells) > 256:
                    self._cells.clear()
                cells = self._cells[cursor.attrs] = _Cells(cursor.attrs)
            at, size = 0, len(data)
            while at < size:
                if cursor.x >= columns:
                    if mo.DECAWM not in self.mode:  # each character overwrites the last column
                        self._put(self.buffer[cursor.y], columns - 1, cells[data[-1]], 1)
                        break
                    self.carriage_return()
                    self.linefeed()
                take = min(size - at, columns - cursor.x)
                line, x = self.buffer[cursor.y], cursor.x
                split = x and line.get(x, _BLANK).data == ""  # the right half of a wide character
                line.update(zip(range(x, x + take), map(cells.__getitem__, data[at : at + take]), strict=True))
                self._mend(line, x if split else -1, x + take)
                cursor.x += take
                at += take
        if data:
            self.last_char = data[-1]

    def _draw_each(self, data: str) -> None:
        """pyte's drawing, a character at a time, but as xterm.js draws: a wide character that
        does not fit in the line wraps, overwriting half of one blanks its other half, and a
        character of no width that does not combine is skipped (pyte stops drawing there)."""
        data = data.translate(self.g1_charset if self.charset else self.g0_charset)
        cursor, columns = self.cursor, self.columns
        for char in data:
            width = wcwidth(char)
            if width <= 0:
                if width == 0 and unicodedata.combining(char):
                    super().draw(char)
                continue
            width = min(width, columns)
            if cursor.x + width > columns:
                if mo.DECAWM in self.mode:
                    self.carriage_return()
                    self.linefeed()
                else:
                    cursor.x = columns - width
            if mo.IRM in self.mode:
                self.insert_characters(width)
            self._put(self.buffer[cursor.y], cursor.x, cursor.attrs._replace(data=char), width)
            cursor.x += width

    def _put(self, line: dict[int, Char], x: int, cell: Char, width: int) -> None:
        split = x and line.get(x, _BLANK).data == ""
        line[x] = cell
        if width == 2:
            line[x + 1] = cell._replace(data="")
        self._mend(line, x if split else -1, x + width)

    def _mend(self, line: dict[int, Char], left: int, right: int) -> None:
        """Cells ``left - 1`` and ``right`` lost their other half to what was drawn: blanks."""
        if left > 0:
            line[left - 1] = line[left - 1]._replace(data=" ")
        if right < self.columns and line.get(right, _BLANK).data == "":
            line[right] = line[right]._replace(data=" ")

    # Erasing, deleting or inserting over half of a wide character blanks its other half.

    def _split(self, line: Mapping[int, Char], x: int) -> bool:
        return 0 < x < self.columns and line.get(x, _BLANK).data == ""

    # Erasing, as xterm.js erases: every cell of the range, blank with only the pen's background.

    def _erase(self, line: dict[int, Char], start: int, end: int) -> None:
        bg = self.cursor.attrs.bg
        if bg == "default":
            for x in range(start, end):
                line.pop(x, None)
        else:
            line.update(dict.fromkeys(range(start, end), Char(" ", bg=bg)))

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        line, x = self.buffer[self.cursor.y], self.cursor.x
        start, end = {0: (x, self.columns), 1: (0, min(x + 1, self.columns))}.get(how, (0, self.columns))
        split = self._split(line, start)
        self._erase(line, start, end)
        self._mend(line, start if split else -1, end)

    # pyte moves only the lines its buffer holds, so a blank (absent) line leaves a stale one.

    def insert_lines(self, count: int | None = None) -> None:
        count, y = count or 1, self.cursor.y
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if top <= y <= bottom:
            for row in range(bottom, y - 1, -1):
                self._move_line(row - count if row - count >= y else None, row)
            self.carriage_return()

    def delete_lines(self, count: int | None = None) -> None:
        count, y = count or 1, self.cursor.y
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if top <= y <= bottom:
            for row in range(y, bottom + 1):
                self._move_line(row + count if row + count <= bottom else None, row)
            self.carriage_return()

    def _move_line(self, source: int | None, target: int) -> None:
        line = None if source is None else self.buffer.pop(source, None)
        if line is None:
            self.buffer.pop(target, None)
        else:
            self.buffer[target] = line

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        if how == 3:  # xterm: the scrollback only
            self.fresh.clear()
            self.history.clear()
            return
        rows = {0: range(self.cursor.y + 1, self.lines), 1: range(self.cursor.y)}.get(how, range(self.lines))
        for y in rows:
            if self.cursor.attrs.bg == "default":
                self.buffer.pop(y, None)
            else:
                self._erase(self.buffer[y], 0, self.columns)
        if how in (0, 1):
            self.erase_in_line(how)

    def erase_characters(self, count: int | None = None) -> None:
        line, x = self.buffer[self.cursor.y], self.cursor.x
        end = min(x + (count or 1), self.columns)
        split = self._split(line, x)
        self._erase(line, x, end)
        self._mend(line, x if split else -1, end)

    def delete_characters(self, count: int | None = None) -> None:
        line, x = self.buffer[self.cursor.y], self.cursor.x
        split = self._split(line, x)
        super().delete_characters(count)
        self._mend(line, x if split else -1, x)

    def insert_characters(self, count: int | None = None) -> None:
        line, x = self.buffer[self.cursor.y], self.cursor.x
        split = self._split(line, x)
        super().insert_characters(count)
        line.pop(self.columns, None)  # pyte moves a cell past the edge
        self._mend(line, x if split else -1, x + (count or 1))
        last = line.get(self.columns - 1, _BLANK)
        if last.data and wcwidth(last.data[0]) == 2:  # its right half went past the edge
            line[self.columns - 1] = last._replace(data=" ")

    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y != bottom:
            self.cursor_down()
            return
        buffer = self.buffer
        if top == 0 and self.keeps_history and self._scrolling:
            self.fresh.append((buffer.get(0, _EMPTY), self.columns))
        for y in range(top, bottom):
            line = buffer.pop(y + 1, None)
            if line is None:
                buffer.pop(y, None)
            else:
                buffer[y] = line
        buffer.pop(bottom, None)

    def save_cursor(self) -> None:
        super().save_cursor()
        del self.savepoints[:-1]

    def restore_cursor(self) -> None:
        kept, wrap = self.savepoints[-1:], mo.DECAWM in self.mode
        super().restore_cursor()
        if not wrap:  # xterm.js saves no autowrap mode with the cursor
            self.mode.discard(mo.DECAWM)
        self.savepoints[:] = kept
        self.cursor = copy.copy(self.cursor)  # not the saved one itself: it may be restored again

    def scroll_up(self, count: int) -> None:
        """SU: the scroll region moves up ``count`` lines; the cursor stays (no history)."""
        top, bottom = self.margins or Margins(0, self.lines - 1)
        x, y = self.cursor.x, self.cursor.y
        self._scrolling = False
        self.cursor.y = bottom
        for _ in range(min(count, bottom - top + 1)):
            self.index()
        self._scrolling = True
        self.cursor.x, self.cursor.y = x, y

    def scroll_down(self, count: int) -> None:
        """SD: the scroll region moves down ``count`` lines; the cursor stays."""
        top, bottom = self.margins or Margins(0, self.lines - 1)
        x, y = self.cursor.x, self.cursor.y
        self.cursor.y = top
        for _ in range(min(count, bottom - top + 1)):
            self.reverse_index()
        self.cursor.x, self.cursor.y = x, y

    def repeat(self, count: int) -> None:
        self.draw(self.last_char * min(count, self.columns * self.lines))

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        lines, columns = lines or self.lines, columns or self.columns
        if lines < self.lines:
            buffer, excess = self.buffer, self.lines - lines
            bottom = self.lines - 1
            while excess and bottom > self.cursor.y and _blank(buffer.get(bottom, _EMPTY)):
                buffer.pop(bottom, None)
                bottom, excess = bottom - 1, excess - 1
            if excess:  # then from the top, into the history
                for y in range(excess):
                    if self.keeps_history:
                        self.fresh.append((buffer.get(y, _EMPTY), self.columns))
                for y in range(self.lines):
                    line = buffer.pop(y, None)
                    if line is not None and y >= excess:
                        buffer[y - excess] = line
                self.cursor.y = max(0, self.cursor.y - excess)
            self.lines = lines
            self.margins = None
        if columns > self.columns:  # pyte keeps the tab stops of the first width
            self.tabstops |= set(range(8, columns, 8))
        super().resize(lines, columns)


def _blank(line: Mapping[int, Char]) -> bool:
    return all(cell == _BLANK for cell in line.values())


@lru_cache(maxsize=1024)
def _sgr(attrs: tuple[Any, ...]) -> str:
    """The SGR sequence that sets a pen from scratch (``attrs``: a cell's fields but its data)."""
    fg, bg, bold, italics, underscore, strikethrough, reverse, blink = attrs
    codes = ["0"]
    for on, code in ((bold, "1"), (italics, "3"), (underscore, "4"), (blink, "5"), (reverse, "7")):
        if on:
            codes.append(code)
    if strikethrough:
        codes.append("9")
    codes += _colour(fg, _FG, "38") + _colour(bg, _BG, "48")
    return "\x1b[" + ";".join(codes) + "m"


def _colour(colour: str, names: dict[str, int], extended: str) -> list[str]:
    if colour in names:
        return [str(names[colour])]
    if colour in _INDEX:
        return [extended, "5", str(_INDEX[colour])]
    if len(colour) == 6:
        try:
            rgb = bytes.fromhex(colour)
        except ValueError:
            return []
        return [extended, "2", *(str(part) for part in rgb)]
    return []  # "default", or what pyte does not know


def render_row(line: Mapping[int, Char], columns: int, upto: int = 0) -> tuple[str, int]:
    """The text and SGR sequences that draw ``line`` on a cleared row from its first column,
    up to its last cell that is not blank (at least to column ``upto``), and the column the
    cursor is left in. A wide character takes two columns; half of one is drawn as a blank."""
    end = upto
    for x, cell in line.items():
        if end <= x < columns and cell != _BLANK:
            end = x + 1
    out: list[str] = []
    pen = _PLAIN
    x = 0
    while x < end:
        cell = line.get(x, _BLANK)
        char, width = cell.data, 1
        if not char:  # the right half of a wide character whose left half is gone
            char = " "
        elif wcwidth(char[0]) == 2:
            if x + 1 < columns and line.get(x + 1, _BLANK).data == "":
                width = 2
            else:
                char = " "
        attrs = tuple(cell[1:])
        if attrs != pen:
            out.append(_sgr(attrs))
            pen = attrs
        out.append(char)
        x += width
    if pen != _PLAIN:
        out.append("\x1b[0m")
    return "".join(out), x


class ScreenModel:
    """The terminal as a session's viewers see it, read lazily from its scrollback ring."""

    def __init__(self, ring: Scrollback, cols: int, rows: int, *, history: int = DEFAULT_HISTORY_LINES) -> None:
        self._ring = ring
        self._main = _Screen(cols, rows, history=history)
        self._alt = _Screen(cols, rows, history=0)
        self._streams = {id(screen): pyte.Stream(screen) for screen in (self._main, self._alt)}
        for stream in self._streams.values():
            stream.use_utf8 = False  # so that ESC ( 0 and SI / SO draw lines, as in xterm.js
        self._active = self._main
        self._alt_via = 0  # the mode (1049, 1047, 47) that switched to the alternate screen
        self._modes = set(_DEFAULT_MODES)
        self._keypad = False
        self._cursor_style = 0
        self._title = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # an unfinished escape sequence at the end of what was read
        self._fed = ring.start  # the model's place in the stream
        self._resync = ring.start > 0  # begin at a line start (or an escape)
        self._blank = True
        self._searched = 0  # the output up to here was searched for a switch to the alternate screen
        self._alternate_at = -1  # where the last switch found begins
        self._sizes: deque[tuple[int, int, int]] = deque()  # (offset, cols, rows) ahead of the model
        self._timer: asyncio.TimerHandle | None = None
        self._seen = 0
        self._not_before = 0.0
        ring.on_append = self._appended
        ring.on_evict = self._evicted

    # --- what the session calls -------------------------------------------------------------

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's size from this point of the stream on."""
        self._sizes.append((self._ring.total, cols, rows))
        if self._fed == self._ring.total or len(self._sizes) > 64:
            self._catch_up(self._ring.total)

    def snapshot(self) -> str:
        """Catch up with the ring and render the terminal; empty while nothing was written."""
        if not self._ring.total:
            return ""
        self._skip_ahead()
        self._catch_up(self._ring.total)
        return self.render()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def lag(self) -> int:
        """Bytes of the ring the model has not read yet."""
        return self._ring.total - self._fed

    # --- reading the stream -----------------------------------------------------------------

    def _catch_up(self, end: int) -> None:
        self._advance(self._ring.read(self._fed, end))
        self._main.flush_history()

    def _advance(self, data: bytes) -> None:
        """Apply ``data``, the bytes at the model's place, and the sizes where they fall."""
        while True:
            while self._sizes and self._sizes[0][0] <= self._fed:
                _, cols, rows = self._sizes.popleft()
                self._apply_size(cols, rows)
            if not data:
                return
            cut = min(len(data), self._sizes[0][0] - self._fed) if self._sizes else len(data)
            self._feed(self._decoder.decode(data[:cut]))
            self._fed += cut
            data = data[cut:]

    def _evicted(self, piece: bytes, offset: int) -> None:
        """The ring lets ``piece`` go (O(1) unless the model has not read it)."""
        end = offset + len(piece)
        if end <= self._fed:
            return
        piece = piece[max(0, self._fed - offset) :]
        if self._alt_via or self._alternate_ahead(piece):
            self._advance(piece)  # a full-screen program: what it drew may never be redrawn
        else:
            self._skip(piece)

    def _alternate_ahead(self, piece: bytes = b"") -> bool:
        """Whether the output not yet read (``piece``, which the ring let go of, and the ring
        from there) switches to the alternate screen: then the main screen under it is kept
        whole, and the model reads on. Each byte of the ring is searched once."""
        total = self._ring.total
        if piece:  # unread output the ring let go of: a switch may begin there
            if self._searched < self._fed + len(piece):  # not searched while in the ring
                edge = self._ring.read(self._ring.start, min(total, self._ring.start + 16))
                if b"\x1b" in piece and _ALT_ON.search(piece + edge):
                    return True
            if self._partial and _ALT_ON.search(self._partial.encode() + piece[:16]):
                return True
        start = max(self._searched - 16, self._fed, self._ring.start)  # a switch split at the seam
        if start < total:
            data = self._ring.read(start, total)
            if b"\x1b" in data:
                for found in _ALT_ON.finditer(data):
                    self._alternate_at = start + found.start()
            self._searched = total
        return self._alternate_at >= self._fed

    def _skip_ahead(self) -> None:
        """Of a long run of main-screen output not yet read, read only the end: the screen and
        the history the replay has room for come from there."""
        end = self._ring.total - SKIP_AHEAD
        if self._alt_via or end <= self._fed:
            return
        if not self._alternate_ahead():
            self._skip(self._ring.read(self._fed, end))

    def _skip(self, piece: bytes) -> None:
        """Main-screen output the model will not read: keep its modes, then start afresh from
        blank screens at the next line start (or escape sequence)."""
        end = self._fed + len(piece)
        if self._partial or (b"\x1b" in piece and (_MODE_HINT.search(piece) or _unfinished_bytes(piece))):
            self._track(self._decoder.decode(piece))
        self._decoder.reset()
        while self._sizes and self._sizes[0][0] <= end:
            _, cols, rows = self._sizes.popleft()
            self._apply_size(cols, rows)
        self._fed, self._resync = end, True
        self._blank_screens()

    def _track(self, text: str) -> None:
        """Keep the modes (and the screen in use) that output the model skips sets."""
        if self._partial:
            text, self._partial = self._partial + text, ""
        cut = _unfinished(text)
        if cut != -1:
            text, self._partial = text[:cut], text[cut:]
        for match in _MODES.finditer(text):
            self._control(match, draw=False)

    def _feed(self, text: str) -> None:
        if self._partial:
            text, self._partial = self._partial + text, ""
        if self._resync:
            found = _RESYNC.search(text)
            if found is None:
                return
            text = text[found.end() if found.group() == "\n" else found.start() :]
            self._resync = False
        cut = _unfinished(text)
        if cut != -1:
            text, self._partial = text[:cut], text[cut:]
        if not text:
            return
        self._blank = False
        at = 0
        for match in _SCAN.finditer(text):
            if match.start() > at:
                self._write(text[at : match.start()])
            self._control(match, draw=True)
            at = match.end()
        if at < len(text):
            self._write(text[at:])
        # pyte changes these itself too (DECRC): it has the last word
        self._modes = (self._modes - {6, 7}) | {mode for mode in (6, 7) if _TO_PYTE[mode] in self._active.mode}

    def _write(self, text: str) -> None:
        # A sequence pyte cannot take (it starts its parser afresh) must not end the session.
        with contextlib.suppress(Exception):
            self._streams[id(self._active)].feed(text)

    def _control(self, match: re.Match[str], *, draw: bool) -> None:
        kind = match.lastgroup
        if kind == "set":
            on = match["set"] == "h"
            for mode in (int(part) for part in match["modes"].split(";") if part):
                self._mode(mode, on=on, draw=draw)
        elif kind == "keypad":
            self._keypad = match["keypad"] == "="
        elif kind == "style":
            self._cursor_style = int(match["style"] or 0)
        elif kind == "title":
            self._title = "".join(char for char in match["title"] if char.isprintable())[:256]
        elif kind == "ris":
            self._hard_reset(draw=draw)
        elif kind == "decstr":
            self._soft_reset(draw=draw)
        elif draw and kind != "drop":
            self._draw_control(kind, match)

    def _draw_control(self, kind: str | None, match: re.Match[str]) -> None:
        screen = self._active
        if kind == "erase":
            self._write(match.group())
        elif kind == "scroll":
            count = int(match["count"] or 1)
            if match["scroll"] == "S":
                screen.scroll_up(count)
            else:
                screen.scroll_down(count)
        elif kind == "rep":
            screen.repeat(int(match["rep"] or 1))
        elif kind == "save" and match["save"] == "s":
            screen.save_cursor()
        elif kind == "save":
            screen.restore_cursor()
        elif kind == "sgr":
            screen.select_graphic_rendition(*_colon_sgr(match["sgr"]))

    def _hard_reset(self, *, draw: bool) -> None:
        """RIS: everything as at the start, the history too (as xterm.js does)."""
        self._modes, self._keypad, self._cursor_style, self._title = set(_DEFAULT_MODES), False, 0, ""
        self._alt_via = 0
        self._active = self._main
        if draw:
            self._main.reset()
            self._alt.reset()

    def _soft_reset(self, *, draw: bool) -> None:
        """DECSTR: modes, scroll region and pen back to their defaults; the screen stays."""
        self._modes -= {1, 6, 66}
        self._modes |= {7, 25}
        self._keypad = False
        if draw:
            screen = self._active
            screen.mode -= {mo.DECOM, mo.IRM}
            screen.mode |= {mo.DECAWM, mo.DECTCEM}
            screen.margins = None
            screen.cursor.attrs = screen.default_char

    def _mode(self, mode: int, *, on: bool, draw: bool) -> None:
        if mode in _ALTERNATE:
            self._switch(mode, on=on, draw=draw)
        elif mode == 1048:  # save / restore the cursor
            if draw and on:
                self._active.save_cursor()
            elif draw:
                self._active.restore_cursor()
        else:
            if on:
                self._modes.add(mode)
            else:
                self._modes.discard(mode)
            if draw and mode in _TO_PYTE:
                (self._active.set_mode if on else self._active.reset_mode)(mode, private=True)

    def _switch(self, mode: int, *, on: bool, draw: bool) -> None:
        """To the alternate screen and back, as xterm.js does: the cursor and the pen go along,
        1049 saves the main screen's cursor (as DECSC does) and restores it, the alternate
        screen starts empty."""
        main, alt = self._main, self._alt
        if on == bool(self._alt_via):
            return
        source, target = (main, alt) if on else (alt, main)
        if draw:
            if on:
                if mode == 1049:
                    main.save_cursor()
                alt.buffer.clear()
                alt.margins = None
            target.mode = set(source.mode)
            target.g0_charset, target.g1_charset, target.charset = source.g0_charset, source.g1_charset, source.charset
            target.cursor.x, target.cursor.y = source.cursor.x, source.cursor.y
            target.cursor.attrs = source.cursor.attrs
            if not on and mode == 1049:
                main.restore_cursor()
            target.cursor.x = min(target.cursor.x, target.columns)
            target.ensure_vbounds()
        self._alt_via = mode if on else 0
        self._active = target

    def _apply_size(self, cols: int, rows: int) -> None:
        for screen in (self._main, self._alt):
            screen.resize(rows, cols)
            screen.cursor.x = min(screen.cursor.x, cols)
            screen.ensure_vbounds()

    def _blank_screens(self) -> None:
        """Empty screens in the modes tracked (the model skipped what drew on them)."""
        for screen in (self._main, self._alt):
            if not self._blank:
                screen.reset()
            for mode, flag in _TO_PYTE.items():
                if mode in self._modes:
                    screen.mode.add(flag)
                else:
                    screen.mode.discard(flag)
        self._active = self._alt if self._alt_via else self._main
        self._blank = True

    # --- catching up while the session is quiet ------------------------------------------

    def _appended(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._seen = self._ring.total
            self._timer = loop.call_later(IDLE_S, self._idle)

    def _idle(self) -> None:
        self._timer = None
        total = self._ring.total
        if self._fed >= total:
            return  # the next append arms the timer again
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if total != self._seen or now < self._not_before:  # output goes on, or a step just ran
            self._seen = total
            self._timer = loop.call_later(max(IDLE_S, self._not_before - now), self._idle)
            return
        self._skip_ahead()
        self._catch_up(min(total, self._fed + SLICE_BYTES))
        spent = time.monotonic() - now
        self._not_before = now + spent * (1 + DUTY)
        if self._fed < total:
            self._timer = loop.call_later(spent * DUTY, self._idle)

    # --- rendering --------------------------------------------------------------------------

    def render(self) -> str:
        """Escape sequences that make a terminal (xterm.js) show the model: a reset, the modes,
        the history and the main screen, then (for a program on it) the alternate screen; the
        cursor, the pen, and an escape sequence the stream is in the middle of. No queries."""
        out = [_RESET, *self._render_modes(), *self._render_main()]
        if self._alt_via:
            out += self._render_alternate()
        screen = self._active
        pen = tuple(screen.cursor.attrs[1:])
        if pen != _PLAIN:
            out.append(_sgr(pen))
        if 7 not in self._modes:
            out.append("\x1b[?7l")
        if mo.IRM in screen.mode:
            out.append("\x1b[4h")
        if mo.LNM in screen.mode:
            out.append("\x1b[20h")
        out.append(_charsets(screen.g0_charset, screen.g1_charset, screen.charset))
        out.append(self._partial)
        return "".join(out)

    def _render_modes(self) -> list[str]:
        out = [f"\x1b]2;{self._title}\x07"] if self._title else []
        tracked = [str(mode) for mode in _TRACKED if mode in self._modes]
        if tracked:
            out.append(f"\x1b[?{';'.join(tracked)}h")
        if 25 not in self._modes:
            out.append("\x1b[?25l")
        if self._keypad:
            out.append("\x1b=")
        if self._cursor_style:
            out.append(f"\x1b[{self._cursor_style} q")
        return out

    def _render_main(self) -> list[str]:
        """The history lines, then the main screen's rows (a line each: the history scrolls
        into the viewer's own scrollback), then its cursor."""
        main, on_main = self._main, not self._alt_via
        cursor = main.cursor
        rows = [
            render_row(main.buffer.get(y, _EMPTY), main.columns, cursor.x if on_main and y == cursor.y else 0)
            for y in range(main.lines)
        ]
        budget = max(self._ring.limit, 64 * 1024) - sum(len(text.encode()) + 2 for text, _ in rows)
        history: list[str] = []
        for line in reversed(main.history):
            budget -= len(line.encode()) + 2
            if budget < 0:
                break
            history.append(line)
        history.reverse()
        out = ["\r\n".join([*history, *(text for text, _ in rows)])]
        if main.savepoints or main.margins is not None or (on_main and mo.DECOM in main.mode):
            out.append(self._saved_cursor(main) + self._place(main))
            return out
        up, column = main.lines - 1 - cursor.y, rows[-1][1]  # relative: right whatever the viewer's height
        if up:
            out.append(f"\x1b[{up}A")
        if cursor.x >= main.columns:
            out.append(self._wrap_pending(main))
        elif up or cursor.x != column:
            out.append(f"\x1b[{cursor.x + 1}G")
        return out

    def _render_alternate(self) -> list[str]:
        alt, main = self._alt, self._main
        # 1049 saves the cursor with its pen and character sets, as DECSC does: set them first.
        saved = main.savepoints[-1] if main.savepoints else None
        pen = _sgr(tuple((saved.cursor if saved else main.cursor).attrs[1:]))
        charset = _charsets(saved.g0_charset, saved.g1_charset, saved.charset) if saved else ""
        out = [pen, charset, f"\x1b[?{self._alt_via}h\x1b[0m", "\x1b(B\x1b)B\x0f" if charset else ""]
        for y in range(alt.lines):
            text, _ = render_row(alt.buffer.get(y, _EMPTY), alt.columns)
            if text:
                out.append(f"\x1b[{y + 1}H{text}")
        out.append(self._saved_cursor(alt) + self._place(alt))
        return out

    @staticmethod
    def _saved_cursor(screen: _Screen) -> str:
        """The cursor DECSC saved: there, with its pen, saved again (then the pen is reset)."""
        if not screen.savepoints:
            return ""
        point = screen.savepoints[-1]
        saved, y = point.cursor, min(point.cursor.y, screen.lines - 1)
        if saved.x >= screen.columns:
            there = f"\x1b[{y + 1}H{ScreenModel._wrap_pending(screen, y)}"
        else:
            there = f"\x1b[{y + 1};{saved.x + 1}H"
        charset = _charsets(point.g0_charset, point.g1_charset, point.charset)
        back = "\x1b(B\x1b)B\x0f" if charset else ""
        return f"{there}{_sgr(tuple(saved.attrs[1:]))}{charset}\x1b7\x1b[0m{back}"

    def _place(self, screen: _Screen) -> str:
        """The scroll region, origin mode and the cursor, absolutely."""
        out = []
        y, x = screen.cursor.y, screen.cursor.x
        if screen.margins is not None:
            out.append(f"\x1b[{screen.margins.top + 1};{screen.margins.bottom + 1}r")
        if mo.DECOM in self._active.mode:  # one origin mode for both screens, as in xterm.js
            out.append("\x1b[?6h")
            y -= screen.margins.top if screen.margins is not None else 0
        if x >= screen.columns:
            out.append(f"\x1b[{y + 1}H{self._wrap_pending(screen)}")
        else:
            out.append(f"\x1b[{y + 1};{x + 1}H")
        return "".join(out)

    @staticmethod
    def _wrap_pending(screen: _Screen, y: int | None = None) -> str:
        """The cursor past the last column of row ``y`` (the cursor's), so that the next
        character wraps: the last cell drawn again."""
        line = screen.buffer.get(screen.cursor.y if y is None else y, _EMPTY)
        column = screen.columns - 1
        if column > 0 and line.get(column, _BLANK).data == "":
            column -= 1  # the right half of a wide character
        cell = line.get(column, _BLANK)
        pair = {0: cell, 1: line.get(column + 1, _BLANK)} if column < screen.columns - 1 else {0: cell}
        text, _ = render_row(pair, len(pair))
        return f"\x1b[{column + 1}G{text or ' '}"


def _unfinished_bytes(data: bytes) -> bool:
    """Whether ``data`` ends inside an escape sequence (of the kinds ``_track`` looks for)."""
    last = data.rfind(b"\x1b", max(0, len(data) - _HOLD_LIMIT))
    return last != -1 and _UNFINISHED_BYTES.match(data, last) is not None


def _charsets(g0: str, g1: str, shifted: int) -> str:
    """Designations (line drawing or ASCII, as after the reset) and the shift, as sequences."""
    out = "\x1b(0" if g0 is charsets.VT100_MAP else ""
    out += "\x1b)0" if g1 is charsets.VT100_MAP else ""
    return out + ("\x0e" if shifted else "")


def _unfinished(text: str) -> int:
    """Where the escape sequence that ``text`` ends inside begins (-1: it ends outside any)."""
    tail = max(0, len(text) - _HOLD_LIMIT)
    found = _UNTERMINATED.search(text, tail)
    if found is not None:
        return found.start()
    last = text.rfind("\x1b", tail)
    return last if last != -1 and _UNFINISHED.match(text, last) else -1


def _colon_sgr(params: str) -> list[int]:
    """SGR parameters with colon sub-parameters as pyte reads them: ``38:2::r:g:b`` (and
    ``38:2:r:g:b``, ``38:5:n``) as ``38;2;r;g;b``, an underline style as underline on or off."""
    out: list[int] = []
    for group in params.split(";"):
        parts = [int(part) if part.isdigit() else 0 for part in group.split(":")]
        if len(parts) == 1:
            out.append(parts[0])
        elif parts[0] in (38, 48) and len(parts) >= 3:
            if parts[1] == 5:
                out += parts[:3]
            elif parts[1] == 2:
                out += [parts[0], 2, *parts[-3:]]
        elif parts[0] == 4:
            out.append(4 if parts[1] else 24)
    return out
