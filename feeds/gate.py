"""Gate (API v4) spot market data: subscribe messages, the pure parser and U/u book sync.

Channels: `spot.book_ticker` (quote), `spot.trades`, `spot.order_book_update` (100 ms, 100
levels; `full: true` frames replace the book, otherwise synced with a REST
`/api/v4/spot/order_book?with_id=true` snapshot). Must not do I/O.
"""

from __future__ import annotations

import time

import orjson

from common.enums import Exchange
from common.instruments import venue_symbol
from feeds.base import CTRL_ROTATE, DECODE_ERRORS, VenueFeed, float_levels, loads, split_levels
from feeds.errors import FrameError
from ringbuf.records import KIND_QUOTE, KIND_TRADE

VENUE = Exchange.GATE
CHANNELS = ("spot.book_ticker", "spot.trades", "spot.order_book_update")
BOOK_INTERVAL = "100ms"
BOOK_DEPTH = 100


def subscribe_messages(symbols: list[str], channels: tuple[str, ...] = CHANNELS, now_s: int | None = None,
                       event: str = "subscribe") -> list[bytes]:
    """One request per channel (Gate takes a payload list per channel)."""
    t = int(time.time()) if now_s is None else now_s
    pairs = [venue_symbol(s, VENUE) for s in symbols]
    out = []
    for i, ch in enumerate(channels):
        if ch == "spot.order_book_update":
            for j, p in enumerate(pairs):
                out.append(orjson.dumps({"time": t, "id": 100 + i * 1000 + j, "channel": ch, "event": event,
                                         "payload": [p, BOOK_INTERVAL]}))
        else:
            out.append(orjson.dumps({"time": t, "id": 100 + i * 1000, "channel": ch, "event": event,
                                     "payload": pairs}))
    return out


def ping_message(now_s: int | None = None) -> bytes:
    return orjson.dumps({"time": int(time.time()) if now_s is None else now_s, "channel": "spot.ping"})


def snapshot_path(symbol: str, limit: int = BOOK_DEPTH) -> str:
    return f"/api/v4/spot/order_book?currency_pair={venue_symbol(symbol, VENUE)}&limit={limit}&with_id=true"


def _ms_ns(t) -> int:
    c = t.__class__
    if c is int:
        return t * 1_000_000
    if c is str:
        ip, _, fp = t.partition(".")  # "1606292218213.4578": exact, no float rounding
        return int(ip) * 1_000_000 + (int((fp + "000000")[:6]) if fp else 0)
    if c is float:
        return int(t * 1_000_000)
    raise FrameError("timestamp is not a number")


def _floats4(a, b, c, d) -> tuple:
    """Four number strings -> floats in one orjson call (see `feeds.okx._floats4`)."""
    try:
        w, x, y, z = loads(f"[-{a},-{b},-{c},-{d}]")
        return -w, -x, -y, -z
    except ValueError:
        return float(a), float(b), float(c), float(d)


class GateFeed(VenueFeed):
    venue = VENUE
    book_depth = BOOK_DEPTH

    def _decode(self, frame, recv_ns: int, sink, sync: bool) -> int:
        try:
            # {"time":<10 digits>,"time_ms":<13 digits>,"channel":"spot.order_book_update": fast path
            if len(frame) > 100 and frame[59] == 111 and frame[58] == 46 and frame[53] == 34:
                if frame.__class__ is not bytes:
                    frame = bytes(frame)
                fast = split_levels(frame, 2)
                if fast is not None:
                    o = loads(fast[0] + b"}}")
                    if o.get("channel") == "spot.order_book_update" and o.get("event") == "update":
                        return self._depth(o["result"], fast[1], fast[2], recv_ns, sink, sync, True)
            o = loads(frame)
            ch = o["channel"]
            if o.get("event") != "update":
                if o.get("event") == "upgrade" or ch == "spot.upgrade":
                    return CTRL_ROTATE
                return 0  # subscribe replies, spot.pong, errors
            r = o["result"]
            if ch == "spot.book_ticker":
                s = r["s"]
                iid = self._ids.get(s)
                if iid is None:
                    iid = self.iid(s)
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                t = r["t"]
                if t.__class__ is not int:
                    raise FrameError("book_ticker t is not an integer")
                b, B, a, A = _floats4(r["b"], r["B"], r["a"], r["A"])
                sink.quote(KIND_QUOTE, 0, 3, 0, iid, 0, t * 1_000_000, recv_ns, r["u"], b, B, a, A)
                return 1
            if ch == "spot.order_book_update":
                return self._depth(r, r["b"], r["a"], recv_ns, sink, sync, False)
            if ch == "spot.trades":
                items = r if isinstance(r, list) else (r,)
                recs = []
                iid = 0
                for d in items:
                    s = d["currency_pair"]
                    iid = self._ids.get(s)
                    if iid is None:
                        iid = self.iid(s)
                    side = d["side"]
                    if side != "buy" and side != "sell":
                        raise FrameError(f"trade side {side!r}"[:100])
                    tid = d.get("id_market")
                    if tid is None:
                        tid = d["id"]
                    recs.append((iid, 1 if side == "buy" else -1, _ms_ns(d["create_time_ms"]), int(tid),
                                 float(d["price"]), float(d["amount"])))
                if sync:
                    last = self.last_recv_ns
                    for rec in recs:
                        last[rec[0]] = recv_ns
                if len(recs) == 1:
                    iid, side, ts, tid, px, qty = recs[0]
                    sink.trade(KIND_TRADE, 0, 3, side, iid, 0, ts, recv_ns, tid, px, qty, 0, 0)
                    return 1
                sink.begin()
                try:
                    put = sink.level
                    for iid, side, ts, tid, px, qty in recs:
                        put(KIND_TRADE, 0, 3, side, iid, 0, ts, recv_ns, tid, px, qty, 0, 0)
                finally:
                    sink.publish()
                return len(recs)
            return 0
        except FrameError:
            raise
        except DECODE_ERRORS as exc:
            raise FrameError(f"gate: {type(exc).__name__}: {exc}"[:300]) from None

    def _depth(self, r: dict, bids, asks, recv_ns: int, sink, sync: bool, numeric: bool) -> int:
        s = r["s"]
        iid = self._ids.get(s)
        if iid is None:
            iid = self.iid(s)
        U = r["U"]
        u = r["u"]
        if U.__class__ is not int or u.__class__ is not int:
            raise FrameError("U/u are not integers")
        ts = _ms_ns(r["t"])
        if r.get("full") is True:
            if not numeric:
                bids = float_levels(bids)
                asks = float_levels(asks)
            sink.begin()
            try:
                if sync:
                    self.last_book_ns[iid] = recv_ns
                    st = self.states.get(iid) or self.state(iid)
                    st.ws_snapshots += 1
                    return self._apply_snapshot(st, bids, asks, u, ts, recv_ns, sink, U)
                return self._emit_raw(iid, bids, asks, U, u, ts, recv_ns, sink, True)
            finally:
                sink.publish()
        return self._book_frame(iid, bids, asks, U, u, ts, recv_ns, sink, sync, numeric)

    def _rest_book(self, body: bytes) -> tuple[int, list, list, int]:
        o = loads(body)
        seq = o["id"]
        if seq.__class__ is not int:
            raise FrameError("order_book id is not an integer (with_id=true missing?)")
        bids, asks = o["bids"], o["asks"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise FrameError("snapshot bids/asks are not lists")
        upd = o.get("update", 0)
        return seq, bids, asks, upd * 1_000_000 if upd.__class__ is int else 0
