"""Simulator WebSocket server: a read carrying many frames is unmasked in one pass and handled
exactly like the same frames read one by one. No sockets: a recording transport."""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest

from sim.server import (
    MAX_WS_MESSAGE_BYTES,
    SCAN_MIN_FRAMES,
    App,
    Conn,
    Server,
    WsSession,
    scan_frames,
    unmask,
)

pytestmark = pytest.mark.unit


def client_frame(
    payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bytes | None = None, rsv: int = 0
) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    if mask is None:
        mask = os.urandom(4)
    if n < 126:
        hdr = bytes((b0, 0x80 | n))
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return hdr + mask + unmask(payload, mask)


def test_scan_frames_unmasks_like_unmask_for_every_length():
    rng = random.Random(3)
    payloads = [os.urandom(k) for k in (0, 1, 3, 4, 5, 125, 126, 127, 300, 65535, 65536, 70001)]
    rng.shuffle(payloads)
    masks = [os.urandom(4) for _ in payloads]
    masks[2] = b"\0\0\0\0"
    buf = bytearray(
        b"junk" + b"".join(client_frame(p, 0x2, mask=m) for p, m in zip(payloads, masks, strict=True))
    )
    run = scan_frames(buf, 4)
    assert [r[1] for r in run] == payloads
    assert run[-1][2] == len(buf)
    assert all(r[0] == 0x82 for r in run)


def test_scan_frames_stops_before_a_partial_or_bad_frame():
    frames = [client_frame(b'{"n":%d}' % i) for i in range(6)]
    whole = b"".join(frames)
    # the last frame cut short: the run ends before it
    buf = bytearray(whole[:-3])
    run = scan_frames(buf, 0)
    assert len(run) == 5 and run[-1][2] == len(whole) - len(frames[-1])
    # an unmasked frame, reserved bits, an oversize length: the run ends before each
    for bad in (
        b"\x81\x02{}",
        client_frame(b"{}", rsv=0x40),
        struct.pack("!BBQ", 0x81, 0xFF, MAX_WS_MESSAGE_BYTES + 1) + b"\0" * 4,
    ):
        buf = bytearray(b"".join(frames[:4]) + bad + b"".join(frames[4:]))
        run = scan_frames(buf, 0)
        assert [r[1] for r in run] == [b'{"n":%d}' % i for i in range(4)]
    # too few frames for one pass: the caller parses them one by one
    assert scan_frames(bytearray(b"".join(frames[: SCAN_MIN_FRAMES - 1])), 0) == []


class _Transport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.out += data

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


class _Echo(WsSession):
    def on_text(self, data: bytes) -> None:
        self.conn.send_text(b"T" + data)

    def on_binary(self, data: bytes) -> None:
        self.conn.send_text(b"B" + data)


class _EchoApp(App):
    def open_ws(self, req: object) -> WsSession:
        return _Echo()


def _run(chunks: list[bytes]) -> tuple[bytes, bool]:
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        srv = Server(_EchoApp(), "127.0.0.1", 0)
        c = Conn(srv)
        t = _Transport()
        c.connection_made(t)  # type: ignore[arg-type]
        c.data_received(
            b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        for ch in chunks:
            c.data_received(ch)
        return bytes(t.out), c.close_sent
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.parametrize(
    "tail", ["none", "bad_utf8", "unmasked", "continuation", "text_in_fragment", "close"]
)
def test_one_read_of_many_frames_answers_like_frames_read_one_by_one(tail):
    frames = [client_frame(b'{"i":%d}' % i) for i in range(5)]
    frames.append(client_frame(b"ping!", 0x9))  # answered with a pong in order
    frames.append(client_frame(b"part1-", 0x1, fin=False))  # a fragmented message around a ping
    frames.append(client_frame(b"p", 0x9))
    frames.append(client_frame(b"part2", 0x0))
    frames.append(client_frame(b"\x00\x01bin", 0x2))
    frames.append(client_frame("caf\u00e9".encode()))
    frames += [client_frame(b"x" * 200 + b"%d" % i) for i in range(6)]
    frames.append(
        {
            "none": b"",
            "bad_utf8": client_frame(b"\xff\xfe"),
            "unmasked": b"\x81\x02{}",
            "continuation": client_frame(b"orphan", 0x0),
            "text_in_fragment": client_frame(b"a", fin=False) + client_frame(b'{"x":1}'),
            "close": client_frame(b"\x03\xe8", 0x8),
        }[tail]
    )
    frames.append(client_frame(b'{"after":1}'))  # answered unless the tail closed the connection
    one_read = _run([b"".join(frames)])
    one_by_one = _run(frames)
    byte_by_byte = _run([bytes((b,)) for b in b"".join(frames)])
    assert one_read == one_by_one == byte_by_byte
    assert one_read[0].count(b'T{"i":') == 5 and b"Tpart1-part2" in one_read[0]
    assert (b'T{"after":1}' in one_read[0]) == (tail == "none")
