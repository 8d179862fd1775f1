"""What dtach's client adds of its own never reaches a viewer; the program's bytes always do."""

from __future__ import annotations

import asyncio

from service.runtimes import holder
from service.runtimes.holder import ClientFilter

TRAILER = b"\x1b[999H\r\n[EOF - dtach terminating]\r\n\x1b[?25h\x1b[?0c"


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.ended = False

    def on_data(self, chunk: bytes) -> None:
        self.data += chunk

    def on_eof(self) -> None:
        self.ended = True


def feed(chunks: list[bytes]) -> Sink:
    sink = Sink()
    client = ClientFilter(sink.on_data, sink.on_eof)
    for chunk in chunks:
        client.data(chunk)
    client.eof()
    return sink


async def test_the_preamble_and_the_trailer_go_however_the_stream_is_cut() -> None:
    stream = holder.PREAMBLE + b"hello\r\n\x1b[31mred\x1b[0m\r\n" + TRAILER
    for cut in range(1, len(stream)):
        for second in range(cut, len(stream), 7):
            sink = feed([stream[:cut], stream[cut:second], stream[second:]])
            assert sink.data == b"hello\r\n\x1b[31mred\x1b[0m\r\n", (cut, second)
            assert sink.ended


async def test_the_programs_own_cursor_move_to_row_999_is_kept() -> None:
    # A program that moves to the bottom row itself: held back only until it is clear.
    sink = feed([holder.PREAMBLE + b"a\x1b[999H", b"b"])
    assert sink.data == b"a\x1b[999Hb"
    sink = feed([b"x\x1b[999H\r\n[not dtach]\r\n"])
    assert sink.data == b"x\x1b[999H\r\n[not dtach]\r\n"


async def test_held_bytes_go_out_after_a_moment_when_nothing_follows() -> None:
    sink = Sink()
    client = ClientFilter(sink.on_data, sink.on_eof)
    client.data(b"prompt\x1b[999H")
    assert sink.data == b"prompt"
    await asyncio.sleep(holder.HOLD_S * 2)
    assert sink.data == b"prompt\x1b[999H"
    assert not sink.ended


def test_an_output_that_starts_like_a_screen_clear_but_is_not_one_is_kept() -> None:
    sink = feed([b"\x1b[H", b"ello"])
    assert sink.data == b"\x1b[Hello"


def test_exit_files_and_statuses() -> None:
    assert holder.parse_exit("7\n") == 7
    assert holder.parse_exit("") is None
    assert holder.parse_exit("300") is None
    assert holder.parse_exit("-1") is None
    assert holder.parse_exit("1; rm -rf /") is None
    assert holder.ended(137, None).signal == 9
    assert holder.ended(None, 9).exit_code == 137
    assert holder.ended(None, None).exit_code is None
