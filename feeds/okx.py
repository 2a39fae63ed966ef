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
    LIVE,
    REASON_CHECKSUM,
    REASON_GAP,
    BookState,
    VenueFeed,
    loads,
)
from feeds.errors import FrameError
from ringbuf.records import KIND_QUOTE, KIND_TRADE, QUOTE_STRUCT, TRADE_STRUCT

VENUE = Exchange.OKX
CHANNELS = ("bbo-tbt", "trades", "books")
BOOK_CHANNELS = ("books", "books-l2-tbt", "books50-l2-tbt")
SNAPSHOT_DEPTH = 400
CHECKSUM_LEVELS = 25
NAN = float("nan")


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


class OkxFeed(VenueFeed):
    venue = VENUE
    keep_strings = True
    book_depth = SNAPSHOT_DEPTH

    def _decode(self, frame, recv_ns: int, write, sync: bool) -> int:
        if frame == b"pong" or frame == "pong":
            return 0
        try:
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
            if sync:
                self.last_recv_ns[iid] = recv_ns
            if ch == "bbo-tbt":
                d = data[0]
                b = d["bids"]
                a = d["asks"]
                write(QUOTE_STRUCT, KIND_QUOTE, 0, 2, 0, iid, 0, _ts_ns(d["ts"]), recv_ns, d.get("seqId", 0),
                      float(b[0][0]) if b else NAN, float(b[0][1]) if b else 0.0,
                      float(a[0][0]) if a else NAN, float(a[0][1]) if a else 0.0)
                return 1
            if ch in BOOK_CHANNELS:
                snap = o.get("action") == "snapshot"
                n = 0
                for d in data:
                    seq = d["seqId"]
                    prev = d["prevSeqId"]
                    if seq.__class__ is not int or prev.__class__ is not int:
                        raise FrameError("seqId/prevSeqId are not integers")
                    if sync:
                        n += self._on_books(self.states.get(iid) or self.state(iid), snap, d, seq, prev,
                                            recv_ns, write)
                    else:
                        n += self._emit_raw(iid, d["bids"], d["asks"], prev, seq, _ts_ns(d["ts"]), recv_ns,
                                            write, snap)
                return n
            if ch == "trades" or ch == "trades-all":
                recs = []
                for d in data:
                    side = d["side"]
                    if side != "buy" and side != "sell":
                        raise FrameError(f"trade side {side!r}"[:100])
                    recs.append((1 if side == "buy" else -1, _ts_ns(d["ts"]), int(d["tradeId"]), float(d["px"]),
                                 float(d["sz"])))
                for side, ts, tid, px, qty in recs:
                    write(TRADE_STRUCT, KIND_TRADE, 0, 2, side, iid, 0, ts, recv_ns, tid, px, qty, 0, 0)
                return len(recs)
            return 0
        except FrameError:
            raise
        except DECODE_ERRORS as exc:
            raise FrameError(f"okx: {type(exc).__name__}: {exc}"[:300]) from None

    # ---- book sync -----------------------------------------------------------
    def _on_books(self, st: BookState, snap: bool, d: dict, seq: int, prev: int, recv_ns: int, write) -> int:
        ts = _ts_ns(d["ts"])
        cs = d.get("checksum", 0) or 0
        if snap:
            st.ws_snapshots += 1
            n = self._apply_snapshot(st, d["bids"], d["asks"], seq, ts, recv_ns, write, prev)
            return n + self._verify(st, cs, recv_ns, write)
        if st.state != LIVE:
            st.buffer.append((d["bids"], d["asks"], prev, seq, ts, cs))
            if st.ws_snapshots == 0 and st.iid not in self.snapshot_requests:
                self.request_snapshot(st.iid, recv_ns)  # no WS snapshot on this channel: sync from REST
            return 0
        last = st.last
        if prev == last or seq < prev:  # in sequence (incl. heartbeat), or a venue sequence reset
            n = self._apply_update(st, d["bids"], d["asks"], prev, seq, ts, recv_ns, write)
            return n + self._verify(st, cs, recv_ns, write)
        if seq <= last:
            self.duplicates += 1
            return 0
        n = self._resync(st, REASON_GAP, recv_ns, write)
        st.buffer.append((d["bids"], d["asks"], prev, seq, ts, cs))
        return n

    def _verify(self, st: BookState, cs, recv_ns: int, write) -> int:
        if not cs or st.state != LIVE:
            return 0
        book = st.book
        if checksum(book.bids.top_strings(CHECKSUM_LEVELS), book.asks.top_strings(CHECKSUM_LEVELS)) != cs:
            return self._resync(st, REASON_CHECKSUM, recv_ns, write)
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
                        write) -> int:
        """Drop buffered frames with `seqId <= snapshot seqId`; the first kept one must satisfy
        `prevSeqId <= snapshot seqId < seqId`; then follow the chain."""
        buf = st.buffer
        while buf and buf[0][3] <= seq:
            buf.popleft()
        if buf and buf[0][2] > seq:
            return -1
        pending = list(buf)
        n = self._apply_snapshot(st, bids, asks, seq, exch_ns, recv_ns, write)
        first = True
        for b, a, prev, s, ts, cs in pending:
            if st.state != LIVE:
                st.buffer.append((b, a, prev, s, ts, cs))
                continue
            if first:
                n += self._apply_update(st, b, a, prev, s, ts, recv_ns, write)
                n += self._verify(st, cs, recv_ns, write)
                first = False
                continue
            n += self._on_books(st, False, {"bids": b, "asks": a, "ts": str(ts // 1_000_000), "checksum": cs},
                                s, prev, recv_ns, write)
        return n
