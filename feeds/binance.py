"""Binance spot market data: subscribe messages, the pure frame parser and U/u book sync.

Streams: `<s>@bookTicker` (quote), `<s>@trade` / `<s>@aggTrade` (trades), `<s>@depth@100ms`
(diffs, synced with a REST `/api/v3/depth` snapshot as the venue documents). Must not do I/O:
the feed process (`feeds.handler`) owns sockets and HTTP.
"""

from __future__ import annotations

import orjson

from common.enums import Exchange
from common.instruments import venue_symbol
from feeds.base import CTRL_ROTATE, DECODE_ERRORS, VenueFeed, loads
from feeds.errors import FrameError
from ringbuf.records import KIND_QUOTE, KIND_TRADE, QUOTE_STRUCT, TRADE_STRUCT

VENUE = Exchange.BINANCE
STREAM_KINDS = ("bookTicker", "trade", "depth@100ms")
SNAPSHOT_LIMIT = 1000


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

    def _decode(self, frame, recv_ns: int, write, sync: bool) -> int:
        try:
            o = loads(frame)
            e = o.get("e")
            if e is None:
                s = o.get("s")
                if s is None:
                    data = o.get("data")
                    if data is not None and "stream" in o:  # combined stream wrapper
                        return self._decode(orjson.dumps(data), recv_ns, write, sync)
                    return 0  # {"result":null,"id":1} and other replies
                iid = self._ids.get(s)
                if iid is None:
                    iid = self.iid(s)
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                write(QUOTE_STRUCT, KIND_QUOTE, 0, 1, 0, iid, 0, 0, recv_ns, o["u"], float(o["b"]),
                      float(o["B"]), float(o["a"]), float(o["A"]))
                return 1
            if e == "depthUpdate":
                s = o["s"]
                iid = self._ids.get(s)
                if iid is None:
                    iid = self.iid(s)
                ev = o["E"]
                if ev.__class__ is not int:
                    raise FrameError("depthUpdate E is not an integer")
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                    st = self.states.get(iid) or self.state(iid)
                    return self._on_diff(st, o["b"], o["a"], o["U"], o["u"], ev * 1_000_000, recv_ns, write)
                return self._emit_raw(iid, o["b"], o["a"], o["U"], o["u"], ev * 1_000_000, recv_ns, write, False)
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
                write(TRADE_STRUCT, KIND_TRADE, 0, 1, -1 if o["m"] else 1, iid, 0, t * 1_000_000, recv_ns,
                      o["t"] if e == "trade" else o["a"], float(o["p"]), float(o["q"]), 0, 0)
                return 1
            if e == "serverShutdown":
                return CTRL_ROTATE
            return 0
        except FrameError:
            raise
        except DECODE_ERRORS as exc:
            raise FrameError(f"binance: {type(exc).__name__}: {exc}"[:300]) from None

    def _rest_book(self, body: bytes) -> tuple[int, list, list, int]:
        o = loads(body)
        seq = o["lastUpdateId"]
        if seq.__class__ is not int:
            raise FrameError("lastUpdateId is not an integer")
        bids, asks = o["bids"], o["asks"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise FrameError("snapshot bids/asks are not lists")
        return seq, bids, asks, 0
