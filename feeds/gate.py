"""Gate (API v4) spot market data: subscribe messages, the pure parser and U/u book sync.

Channels: `spot.book_ticker` (quote), `spot.trades`, `spot.order_book_update` (100 ms diffs of
every level, synced with a REST `/api/v4/spot/order_book?with_id=true&limit=1000` snapshot).
A `full: true` frame is a snapshot of the top `l` (100) levels only: the book is exact down to
its last level and no further. In the update-id chain it replaces those levels and keeps the
deeper ones we hold; either way a REST snapshot is then fetched (without a reset) to restore the
depth, or levels the venue still has would surface as holes once the price moves through the
top 100. Must not do I/O.
"""

from __future__ import annotations

import time
from bisect import bisect_left

import orjson

from common.enums import Exchange
from common.instruments import venue_symbol
from feeds.base import (
    CTRL_ROTATE,
    DECODE_ERRORS,
    DIGITS,
    EMPTY_STR,
    FAST_ERRORS,
    LIVE,
    TO_ARRAY,
    BookState,
    VenueFeed,
    float_levels,
    loads,
    split_levels,
)
from feeds.errors import FrameError
from ringbuf.records import KIND_QUOTE, KIND_TRADE

VENUE = Exchange.GATE
CHANNELS = ("spot.book_ticker", "spot.trades", "spot.order_book_update")
BOOK_INTERVAL = "100ms"
BOOK_DEPTH = 1000  # levels kept per side: the REST snapshot's maximum `limit`
WS_FULL_DEPTH = 100  # levels of a `full: true` frame when it does not say (`l`)
# book_ticker skeleton (digits and dots left out) for the quote fast path (`feeds.base.quote_skeleton`)
BOOK_TICKER_LAYOUT = (b'{"time":,"time_ms":,"channel":"spotbook_ticker","event":"update","result":'
                      b'{"t":,"u":,"s":"%s","b":"","B":"","a":"","A":""}}')
# the channel string holds a dot, so it reads back as a float that a digit appended after the dot
# may leave unchanged: the fast path finds it whole instead
BOOK_TICKER_CHANNEL = b',"channel":"spot.book_ticker",'


def _book_ticker_check(sym: int) -> tuple:
    # time time_ms channel event update result t u s <sym> b B a A, as runs of 1s (see `_decode`)
    return (1111, 1111111, 1111111, 11111, 111111, 111111, 1, 1, 1, sym, 1, 1, 1, 1)


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
        # {"time":..,"time_ms":..,"channel":"spot.book_ticker" in a layout seen before: one
        # translate + one orjson call (see feeds.base)
        if len(frame) > 100 and frame[59] == 98 and frame[58] == 46 and frame[53] == 34:
            if frame.__class__ is not bytes:
                frame = bytes(frame)
            e = self._quote_layouts.get(frame.translate(None, DIGITS))
            if e is not None and frame.find(BOOK_TICKER_CHANNEL) >= 0 and frame.find(EMPTY_STR) < 0:
                try:
                    (k0, _, k1, _, k2, _, k3, ev, k4, (k5, t, k6, u, k7, s, k8, b, k9, B, k10, a, k11, A)
                     ) = loads(frame.translate(TO_ARRAY))
                    if (k0, k1, k2, k3, ev, k4, k5, k6, k7, s, k8, k9, k10, k11) == e[1]:
                        if sync:
                            self.last_recv_ns[e[0]] = recv_ns
                        sink.quote_h(e[2], t * 1_000_000, recv_ns, u, b, B, a, A)
                        return 1
                except FAST_ERRORS:
                    pass  # the ordinary decode below says what is wrong
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
                if len(r) == 7 and len(o) == 5:
                    self._learn_quote(frame, s, iid, BOOK_TICKER_LAYOUT, _book_ticker_check)
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
                    return self._full(st, bids, asks, U, u, ts, recv_ns, sink, r.get("l"))
                return self._emit_raw(iid, bids, asks, U, u, ts, recv_ns, sink, True)
            finally:
                sink.publish()
        return self._book_frame(iid, bids, asks, U, u, ts, recv_ns, sink, sync, numeric)

    def _full(self, st: BookState, bids: list, asks: list, U: int, u: int, ts: int, recv_ns: int, sink,
              depth) -> int:
        """A `full: true` frame (numbers): a snapshot of the top `depth` levels per side."""
        try:
            depth = int(depth) if depth is not None else WS_FULL_DEPTH
        except (TypeError, ValueError):
            depth = WS_FULL_DEPTH
        live = st.state == LIVE
        if live and u <= st.last:
            self.duplicates += 1  # e.g. replayed from a rotation's new connection: already applied
            return 0
        cut_b = len(bids) >= depth > 0  # a full side: the venue may have more levels than it sent
        cut_a = len(asks) >= depth > 0
        if live and U <= st.last + 1:
            # in the update-id chain: exact down to its last level; deeper levels are the ones we hold
            book = st.book
            if cut_b:
                bids = list(bids) + _deeper(book.bids, float(bids[-1][0]))
            if cut_a:
                asks = list(asks) + _deeper(book.asks, float(asks[-1][0]))
        n = self._apply_snapshot(st, bids, asks, u, ts, recv_ns, sink, U)
        if (cut_b or cut_a) and st.state == LIVE:
            self.request_refresh(st.iid, recv_ns)
        return n

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


def _deeper(side, worst_px: float) -> list:
    """[[px, qty], ..] of the levels of `side` worse than `worst_px`, best first."""
    keys = side.keys  # ascending, best last; asks keyed by -px
    neg = side.neg
    cut = bisect_left(keys, -worst_px if neg else worst_px)
    qty = side.qty
    index = side.index
    out = []
    for k in reversed(keys[:cut]):
        px = -k if neg else k
        out.append([px, float(qty[index[px]])])
    return out
