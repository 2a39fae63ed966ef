"""Binance spot market data: subscribe messages, the pure frame parser and U/u book sync.

Streams: `<s>@bookTicker` (quote), `<s>@trade` / `<s>@aggTrade` (trades), `<s>@depth@100ms`
(diffs, synced with a REST `/api/v3/depth` snapshot as the venue documents). Must not do I/O:
the feed process (`feeds.handler`) owns sockets and HTTP.
"""

from __future__ import annotations

import orjson

from common.enums import Exchange
from common.instruments import venue_symbol
from feeds.base import (
    CTRL_ROTATE,
    DECODE_ERRORS,
    DIGITS,
    EMPTY_STR,
    FAST_ERRORS,
    TO_ARRAY,
    VenueFeed,
    loads,
    split_levels,
)
from feeds.errors import FrameError
from ringbuf.records import KIND_QUOTE, KIND_TRADE

VENUE = Exchange.BINANCE
STREAM_KINDS = ("bookTicker", "trade", "depth@100ms")
SNAPSHOT_LIMIT = 1000
# bookTicker skeleton (digits and dots left out) for the quote fast path (`feeds.base.quote_skeleton`)
BOOK_TICKER_LAYOUT = b'{"u":,"s":"%s","b":"","B":"","a":"","A":""}'


def _book_ticker_check(sym: int) -> tuple:
    # keys u s b B a A read back as 1, the symbol as its run of 1s (order of the unpacking below)
    return (1, 1, sym, 1, 1, 1, 1)


def stream_names(symbols: list[str], kinds: tuple[str, ...] = STREAM_KINDS) -> list[str]:
    """Canonical symbols -> stream names such as `btcusdt@bookTicker`."""
    return [f"{venue_symbol(s, VENUE).lower()}@{k}" for s in symbols for k in kinds]


def subscribe_message(symbols: list[str], kinds: tuple[str, ...] = STREAM_KINDS, req_id: int = 1) -> bytes:
    return orjson.dumps({"method": "SUBSCRIBE", "params": stream_names(symbols, kinds), "id": req_id})


def unsubscribe_message(symbols: list[str], kinds: tuple[str, ...] = STREAM_KINDS, req_id: int = 2) -> bytes:
    return orjson.dumps({"method": "UNSUBSCRIBE", "params": stream_names(symbols, kinds), "id": req_id})


def snapshot_path(symbol: str, limit: int = SNAPSHOT_LIMIT) -> str:
    """REST path (append to the venue's rest_url) of the depth snapshot of a canonical symbol."""
    return f"/api/v3/depth?symbol={venue_symbol(symbol, VENUE)}&limit={limit}"


class BinanceFeed(VenueFeed):
    venue = VENUE
    book_depth = 5000

    def _decode(self, frame, recv_ns: int, sink, sync: bool) -> int:
        # {"u": a bookTicker in a layout seen before: one translate + one orjson call (see feeds.base)
        if len(frame) > 40 and frame[2] == 117:
            if frame.__class__ is not bytes:
                frame = bytes(frame)
            e = self._quote_layouts.get(frame.translate(None, DIGITS))
            if e is not None and frame.find(EMPTY_STR) < 0:
                iid, check, h = e
                try:
                    ku, u, ks, s, kb, b, kB, B, ka, a, kA, A = loads(frame.translate(TO_ARRAY))
                    if (ku, ks, s, kb, kB, ka, kA) == check:
                        if sync:
                            self.last_recv_ns[iid] = recv_ns
                        sink.quote_h(h, 0, recv_ns, u, b, B, a, A)
                        return 1
                except FAST_ERRORS:
                    pass  # the ordinary decode below says what is wrong
        try:
            # a depthUpdate in the documented layout ({"e":"depthUpdate",...) takes the fast path
            if len(frame) > 40 and frame[6] == 100 and frame[2] == 101:
                if frame.__class__ is not bytes:
                    frame = bytes(frame)
                fast = split_levels(frame, 1)
                if fast is not None:
                    o = loads(fast[0] + b"}")
                    if o.get("e") == "depthUpdate":
                        return self._depth(o, fast[1], fast[2], recv_ns, sink, sync, True)
            o = loads(frame)
            e = o.get("e")
            if e is None:
                s = o.get("s")
                if s is None:
                    data = o.get("data")
                    if data is not None and "stream" in o:  # combined stream wrapper
                        return self._decode(orjson.dumps(data), recv_ns, sink, sync)
                    return 0  # {"result":null,"id":1} and other replies
                iid = self._ids.get(s)
                if iid is None:
                    iid = self.iid(s)
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                b = o["b"]
                B = o["B"]
                a = o["a"]
                A = o["A"]
                try:
                    # the four strings as one JSON array, each negated so that only a plain
                    # number parses (orjson converts in C; float() on each costs 2x more)
                    b, B, a, A = loads(f"[-{b},-{B},-{a},-{A}]")
                    b = -b
                    B = -B
                    a = -a
                    A = -A
                except ValueError:
                    b = float(b)
                    B = float(B)
                    a = float(a)
                    A = float(A)
                sink.quote(KIND_QUOTE, 0, 1, 0, iid, 0, 0, recv_ns, o["u"], b, B, a, A)
                if frame[2] == 117 and len(o) == 6:
                    self._learn_quote(frame, s, iid, BOOK_TICKER_LAYOUT, _book_ticker_check)
                return 1
            if e == "depthUpdate":
                return self._depth(o, o["b"], o["a"], recv_ns, sink, sync, False)
            if e == "trade" or e == "aggTrade":
                s = o["s"]
                iid = self._ids.get(s)
                if iid is None:
                    iid = self.iid(s)
                t = o["T"]
                if t.__class__ is not int:
                    raise FrameError("trade T is not an integer")
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                sink.trade(KIND_TRADE, 0, 1, -1 if o["m"] else 1, iid, 0, t * 1_000_000, recv_ns,
                           o["t"] if e == "trade" else o["a"], float(o["p"]), float(o["q"]), 0, 0)
                return 1
            if e == "serverShutdown":
                return CTRL_ROTATE
            return 0
        except FrameError:
            raise
        except DECODE_ERRORS as exc:
            raise FrameError(f"binance: {type(exc).__name__}: {exc}"[:300]) from None

    def _depth(self, o: dict, bids, asks, recv_ns: int, sink, sync: bool, numeric: bool) -> int:
        s = o["s"]
        iid = self._ids.get(s)
        if iid is None:
            iid = self.iid(s)
        ev = o["E"]
        U = o["U"]
        u = o["u"]
        if ev.__class__ is not int or U.__class__ is not int or u.__class__ is not int:
            raise FrameError("depthUpdate E/U/u are not integers")
        return self._book_frame(iid, bids, asks, U, u, ev * 1_000_000, recv_ns, sink, sync, numeric)

    def _rest_book(self, body: bytes) -> tuple[int, list, list, int]:
        o = loads(body)
        seq = o["lastUpdateId"]
        if seq.__class__ is not int:
            raise FrameError("lastUpdateId is not an integer")
        bids, asks = o["bids"], o["asks"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise FrameError("snapshot bids/asks are not lists")
        return seq, bids, asks, 0
