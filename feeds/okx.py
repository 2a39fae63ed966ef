"""OKX v5 spot market data: subscribe messages, the pure parser, seqId book sync and checksum.

Channels: `bbo-tbt` (quote), `trades`, `books` (400 levels, snapshot + updates). Sync follows
the seqId/prevSeqId chain (heartbeat `seqId == prevSeqId`, reset `seqId < prevSeqId`),
checks the CRC32 checksum when it is non-zero, and falls back to a REST `/api/v5/market/books`
snapshot when no WS snapshot arrives. Must not do I/O.
"""

from __future__ import annotations

import zlib

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
    REASON_CHECKSUM,
    REASON_GAP,
    TO_ARRAY,
    BookState,
    VenueFeed,
    float_levels,
    loads,
    numeric_sides,
)
from feeds.errors import FrameError
from ringbuf.records import KIND_QUOTE, KIND_TRADE

VENUE = Exchange.OKX
CHANNELS = ("bbo-tbt", "trades", "books")
BOOK_CHANNELS = ("books", "books-l2-tbt", "books50-l2-tbt")
SNAPSHOT_DEPTH = 400
CHECKSUM_LEVELS = 25
NAN = float("nan")
# bbo-tbt skeleton (digits and dots left out) for the quote fast path (`feeds.base.quote_skeleton`)
BBO_LAYOUT = (b'{"arg":{"channel":"bbo-tbt","instId":"%s"},"data":[{"asks":[["","","",""]],'
              b'"bids":[["","","",""]],"ts":"","seqId":}]}')


def _bbo_check(sym: int) -> tuple:
    # arg channel bbo-tbt instId <sym> data asks bids ts seqId, as runs of 1s (see `_decode`)
    return (111, 1111111, 1111111, 111111, sym, 1111, 1111, 1111, 11, 11111)


def checksum(bids: list, asks: list) -> int:
    """OKX CRC32 over the top 25 levels: `bid.px:bid.sz:ask.px:ask.sz` interleaved (the longer
    side continues alone), strings exactly as received, as a signed 32-bit int."""
    parts: list[str] = []
    nb, na = len(bids), len(asks)
    for i in range(min(CHECKSUM_LEVELS, max(nb, na))):
        if i < nb:
            parts.append(bids[i][0])
            parts.append(bids[i][1])
        if i < na:
            parts.append(asks[i][0])
            parts.append(asks[i][1])
    c = zlib.crc32(":".join(parts).encode())
    return c - 0x1_0000_0000 if c >= 0x8000_0000 else c


def subscribe_args(symbols: list[str], channels: tuple[str, ...] = CHANNELS) -> list[dict]:
    return [{"channel": ch, "instId": venue_symbol(s, VENUE)} for s in symbols for ch in channels]


def subscribe_message(symbols: list[str], channels: tuple[str, ...] = CHANNELS, req_id: str = "1") -> bytes:
    return orjson.dumps({"id": req_id, "op": "subscribe", "args": subscribe_args(symbols, channels)})


def unsubscribe_message(symbols: list[str], channels: tuple[str, ...] = CHANNELS, req_id: str = "2") -> bytes:
    return orjson.dumps({"id": req_id, "op": "unsubscribe", "args": subscribe_args(symbols, channels)})


def snapshot_path(symbol: str, depth: int = SNAPSHOT_DEPTH) -> str:
    return f"/api/v5/market/books?instId={venue_symbol(symbol, VENUE)}&sz={depth}"


def _ts_ns(ts) -> int:
    if ts.__class__ is str:
        return int(ts) * 1_000_000
    if ts.__class__ is int:
        return ts * 1_000_000
    raise FrameError("ts is not a millisecond string")


def split_books(frame: bytes) -> tuple[dict, list, list, dict] | None:
    """Fast path for a `books` frame in the documented layout (one data entry, asks, bids, then
    ts/checksum/prevSeqId/seqId): (outer object, asks, bids, data entry without levels) with
    the levels as numbers, or None (decode the ordinary way). Same guard as
    `base.split_levels`: every level entry must have been a string."""
    head, sep, rest = frame.partition(b',"data":[{"asks":')
    if not sep:
        return None
    lv, sep, tail = rest.rpartition(b'],"ts":')
    if not sep:
        return None
    sides = numeric_sides(lv + b"]", b",bids:")
    if sides is None:
        return None
    asks, bids = sides
    try:
        d = loads(b'{"ts":' + tail[:-2])
        o = loads(head + b"}")
    except DECODE_ERRORS:
        return None
    if d.__class__ is not dict or o.__class__ is not dict:
        return None
    return o, asks, bids, d


def _floats4(a, b, c, d) -> tuple:
    """Four number strings -> floats: one orjson call on `[-a,-b,-c,-d]` (negated so that only a
    plain number parses); anything else goes through float() and fails there as before."""
    try:
        w, x, y, z = loads(f"[-{a},-{b},-{c},-{d}]")
        return -w, -x, -y, -z
    except ValueError:
        return float(a), float(b), float(c), float(d)


class OkxFeed(VenueFeed):
    venue = VENUE
    keep_strings = True
    book_depth = SNAPSHOT_DEPTH

    def _decode(self, frame, recv_ns: int, sink, sync: bool) -> int:
        if frame == b"pong" or frame == "pong":
            return 0
        # {"arg":{"channel":"bbo-tbt" in a layout seen before: one translate + one orjson call
        if len(frame) > 80 and frame[20] == 98 and frame[19] == 98 and frame[9] == 99:
            if frame.__class__ is not bytes:
                frame = bytes(frame)
            e = self._quote_layouts.get(frame.translate(None, DIGITS))
            if e is not None and frame.find(EMPTY_STR) < 0:
                try:
                    (k0, (k1, ch, k2, s), k3, ((k4, ((ap, aq, _, _),), k5, ((bp, bq, _, _),), k6, ts, k7, seq),)
                     ) = loads(frame.translate(TO_ARRAY))
                    if (k0, k1, ch, k2, s, k3, k4, k5, k6, k7) == e[1]:
                        if sync:
                            self.last_recv_ns[e[0]] = recv_ns
                        sink.quote_h(e[2], ts * 1_000_000, recv_ns, seq, bp, bq, ap, aq)
                        return 1
                except FAST_ERRORS:
                    pass  # the ordinary decode below says what is wrong
        try:
            # {"arg":{"channel":"books...: the fast path when the checksum is 0 (no strings needed)
            if len(frame) > 80 and frame[19] == 98 and frame[20] == 111 and frame[9] == 99:
                if frame.__class__ is not bytes:
                    frame = bytes(frame)
                fast = split_books(frame)
                if fast is not None:
                    o, asks, bids, d = fast
                    if not d.get("checksum"):
                        arg = o["arg"]
                        if arg["channel"] in BOOK_CHANNELS:
                            s = arg["instId"]
                            iid = self._ids.get(s)
                            if iid is None:
                                iid = self.iid(s)
                            d["bids"] = bids
                            d["asks"] = asks
                            return self._books(o, (d,), iid, recv_ns, sink, sync, False)
            o = loads(frame)
            data = o.get("data")
            if data is None:
                if o.get("event") == "notice" and str(o.get("code")) == "64008":
                    return CTRL_ROTATE
                return 0  # subscribe / unsubscribe / error / login replies
            arg = o["arg"]
            ch = arg["channel"]
            s = arg["instId"]
            iid = self._ids.get(s)
            if iid is None:
                iid = self.iid(s)
            if ch == "bbo-tbt":
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                d = data[0]
                b = d["bids"]
                a = d["asks"]
                if b and a:
                    bp, bq, ap, aq = _floats4(b[0][0], b[0][1], a[0][0], a[0][1])
                else:
                    bp = float(b[0][0]) if b else NAN
                    bq = float(b[0][1]) if b else 0.0
                    ap = float(a[0][0]) if a else NAN
                    aq = float(a[0][1]) if a else 0.0
                sink.quote(KIND_QUOTE, 0, 2, 0, iid, 0, _ts_ns(d["ts"]), recv_ns, d.get("seqId", 0), bp, bq, ap, aq)
                if len(b) == 1 and len(a) == 1:
                    self._learn_quote(frame, s, iid, BBO_LAYOUT, _bbo_check)
                return 1
            if ch in BOOK_CHANNELS:
                return self._books(o, data, iid, recv_ns, sink, sync, True)
            if ch == "trades" or ch == "trades-all":
                if sync:
                    self.last_recv_ns[iid] = recv_ns
                recs = []
                for d in data:
                    side = d["side"]
                    if side != "buy" and side != "sell":
                        raise FrameError(f"trade side {side!r}"[:100])
                    recs.append((1 if side == "buy" else -1, _ts_ns(d["ts"]), int(d["tradeId"]), float(d["px"]),
                                 float(d["sz"])))
                if len(recs) == 1:
                    side, ts, tid, px, qty = recs[0]
                    sink.trade(KIND_TRADE, 0, 2, side, iid, 0, ts, recv_ns, tid, px, qty, 0, 0)
                    return 1
                sink.begin()
                try:
                    put = sink.level
                    for side, ts, tid, px, qty in recs:
                        put(KIND_TRADE, 0, 2, side, iid, 0, ts, recv_ns, tid, px, qty, 0, 0)
                finally:
                    sink.publish()
                return len(recs)
            return 0
        except FrameError:
            raise
        except DECODE_ERRORS as exc:
            raise FrameError(f"okx: {type(exc).__name__}: {exc}"[:300]) from None

    def _books(self, o: dict, data, iid: int, recv_ns: int, sink, sync: bool, strings: bool) -> int:
        snap = o.get("action") == "snapshot"
        n = 0
        if sync:
            self.last_book_ns[iid] = recv_ns
        sink.begin()
        try:
            for d in data:
                seq = d["seqId"]
                prev = d["prevSeqId"]
                if seq.__class__ is not int or prev.__class__ is not int:
                    raise FrameError("seqId/prevSeqId are not integers")
                if sync:
                    n += self._on_books(self.states.get(iid) or self.state(iid), snap, d, seq, prev, recv_ns, sink,
                                        strings)
                else:
                    n += self._emit_raw(iid, d["bids"], d["asks"], prev, seq, _ts_ns(d["ts"]), recv_ns, sink, snap)
        finally:
            sink.publish()
        return n

    # ---- book sync -----------------------------------------------------------
    def _on_books(self, st: BookState, snap: bool, d: dict, seq: int, prev: int, recv_ns: int, sink,
                  strings: bool = True) -> int:
        """`strings`: the levels are the venue's strings (else numbers already, fast path). The
        strings are kept in the book only when there is a checksum to verify."""
        ts = _ts_ns(d["ts"])
        cs = d.get("checksum", 0) or 0
        bids = d["bids"]
        asks = d["asks"]
        if bids.__class__ is not list or asks.__class__ is not list:
            raise FrameError("books bids/asks are not lists")
        keep = strings and bool(cs)
        numeric = not strings
        if snap:
            st.ws_snapshots += 1
            n = self._apply_snapshot(st, bids, asks, seq, ts, recv_ns, sink, prev, keep)
            return n + self._verify(st, cs, recv_ns, sink)
        if st.state != LIVE:
            if not numeric and not keep:
                bids, asks = float_levels(bids), float_levels(asks)
            st.buffer.append((bids, asks, prev, seq, ts, cs))  # numbers, or strings when cs
            if st.ws_snapshots == 0 and st.iid not in self.snapshot_requests:
                self.request_snapshot(st.iid, recv_ns)  # no WS snapshot on this channel: sync from REST
            return 0
        last = st.last
        if prev == last or seq < prev:  # in sequence (incl. heartbeat), or a venue sequence reset
            n = self._apply_update(st, bids, asks, prev, seq, ts, recv_ns, sink, keep, numeric)
            return n + self._verify(st, cs, recv_ns, sink)
        if seq <= last:
            self.duplicates += 1
            return 0
        n = self._resync(st, REASON_GAP, recv_ns, sink)
        if not numeric and not keep:
            bids, asks = float_levels(bids), float_levels(asks)
        st.buffer.append((bids, asks, prev, seq, ts, cs))
        return n

    def _verify(self, st: BookState, cs, recv_ns: int, sink) -> int:
        if not cs or st.state != LIVE:
            return 0
        book = st.book
        if checksum(book.bids.top_strings(CHECKSUM_LEVELS), book.asks.top_strings(CHECKSUM_LEVELS)) != cs:
            return self._resync(st, REASON_CHECKSUM, recv_ns, sink)
        return 0

    def _wants_rest_on_gap(self, st: BookState) -> bool:
        # a channel that sends WS snapshots gives a fresh one on resubscribe; otherwise use REST
        return st.ws_snapshots == 0

    def _rest_book(self, body: bytes) -> tuple[int, list, list, int]:
        o = loads(body)
        if str(o.get("code", "0")) != "0":
            raise FrameError(f"REST error {o.get('code')!r} {o.get('msg')!r}"[:200])
        d = o["data"][0]
        seq = d["seqId"]
        if seq.__class__ is not int:
            raise FrameError("REST book has no integer seqId")
        bids, asks = d["bids"], d["asks"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise FrameError("snapshot bids/asks are not lists")
        return seq, bids, asks, _ts_ns(d.get("ts", "0"))

    def _sync_from_rest(self, st: BookState, seq: int, bids: list, asks: list, exch_ns: int, recv_ns: int,
                        sink) -> int:
        """Drop buffered frames with `seqId <= snapshot seqId`; the first kept one must satisfy
        `prevSeqId <= snapshot seqId < seqId`; then follow the chain."""
        buf = st.buffer
        while buf and buf[0][3] <= seq:
            buf.popleft()
        if buf and buf[0][2] > seq:
            return -1
        pending = list(buf)
        n = self._apply_snapshot(st, bids, asks, seq, exch_ns, recv_ns, sink)
        first = True
        for b, a, prev, s, ts, cs in pending:
            if st.state != LIVE:
                st.buffer.append((b, a, prev, s, ts, cs))
                continue
            if first:
                n += self._apply_update(st, b, a, prev, s, ts, recv_ns, sink, bool(cs))
                n += self._verify(st, cs, recv_ns, sink)
                first = False
                continue
            n += self._on_books(st, False, {"bids": b, "asks": a, "ts": str(ts // 1_000_000), "checksum": cs},
                                s, prev, recv_ns, sink, bool(cs))
        return n
