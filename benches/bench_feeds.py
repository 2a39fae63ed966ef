"""Feed parsing micro benchmarks: our parse (+ book sync + ring write) vs a json + Decimal baseline.

    .venv/bin/pytest benches/bench_feeds.py --benchmark-only --benchmark-group-by=group

Groups pair, per venue and frame kind, `ours` (frame -> records in a real shared-memory ring
through the feed process's sink: `Ring.writer` / `Ring.batch_writer`, one publish per frame;
books applied in the feed's book) with `baseline` (json.loads, then a dict of Decimals per
message; depth levels applied to a dict-of-Decimal book) measured in the same run.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from decimal import Decimal

import orjson
import pytest

from common.instruments import Instruments
from feeds.base import LIVE, ring_sink
from feeds.binance import BinanceFeed
from feeds.gate import GateFeed
from feeds.okx import OkxFeed
from ringbuf.ring import Ring

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data")
N_FRAMES = 20_000


def load(venue: str, name: str) -> bytes:
    with open(os.path.join(DATA, venue, name), "rb") as f:
        return f.read().strip()


@pytest.fixture(scope="module")
def ring():
    r = Ring.create(f"bf{uuid.uuid4().hex[:8]}-ring-md", 1 << 16, 64, replace=True)
    r.claim_producer()
    yield r
    r.close()
    r.unlink()


# ---- depth frames with consecutive ids: 10 bid + 10 ask levels, inserts, changes and deletes ----
def depth_levels(i: int, rng_seed: int = 0):
    bids, asks = [], []
    for k in range(10):
        j = (i * 7 + k * 13 + rng_seed) % 40
        q = "0" if (i + k) % 5 == 0 else f"{1 + (i * 31 + k) % 97}.{(i + k) % 1000:03d}"
        bids.append([f"{30000 - j * 0.5:.2f}", q])
        asks.append([f"{30001 + j * 0.5:.2f}", q])
    return bids, asks


def binance_depth_frames():
    out = []
    for i in range(N_FRAMES):
        b, a = depth_levels(i)
        out.append(orjson.dumps({"e": "depthUpdate", "E": 1672515782136, "s": "BTCUSDT", "U": 1000 + i,
                                 "u": 1000 + i, "b": b, "a": a}))
    return out


def okx_books_frames():
    out = []
    for i in range(N_FRAMES):
        b, a = depth_levels(i)
        out.append(orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
                                 "data": [{"asks": [[p, q, "0", "1"] for p, q in a],
                                           "bids": [[p, q, "0", "1"] for p, q in b], "ts": "1597026383085",
                                           "checksum": 0, "prevSeqId": 1000 + i, "seqId": 1001 + i}]}))
    return out


def gate_depth_frames():
    out = []
    for i in range(N_FRAMES):
        b, a = depth_levels(i)
        out.append(orjson.dumps({"time": 1606294781, "time_ms": 1606294781236, "channel": "spot.order_book_update",
                                 "event": "update", "result": {"t": 1606294781123, "e": "depthUpdate",
                                                               "E": 1606294781, "s": "BTC_USDT", "U": 1000 + i,
                                                               "u": 1000 + i, "b": b, "a": a}}))
    return out


def live_feed(cls, last: int, ring):
    f = cls(Instruments(["BTC-USDT"])).bind(ring_sink(ring))
    st = f.state(1)
    st.state = LIVE
    st.last = last
    st.book.valid = True
    return f


# ---- baselines: json + a dict of Decimals per message --------------------------------------
def baseline_quote(frame: bytes, recv_ns: int, getter):
    o = json.loads(frame)
    d = getter(o)
    return {"symbol": d[0], "bid": Decimal(d[1]), "bid_qty": Decimal(d[2]), "ask": Decimal(d[3]),
            "ask_qty": Decimal(d[4]), "recv_ns": recv_ns}


def baseline_trade(frame: bytes, recv_ns: int, getter):
    o = json.loads(frame)
    d = getter(o)
    return {"symbol": d[0], "price": Decimal(d[1]), "qty": Decimal(d[2]), "side": d[3], "recv_ns": recv_ns}


class DecimalBook:
    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, msg: dict) -> None:
        for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
            for p, q in levels:
                if q == 0:
                    side.pop(p, None)
                else:
                    side[p] = q


def baseline_depth(frame: bytes, recv_ns: int, getter, book: DecimalBook):
    o = json.loads(frame)
    sym, b, a = getter(o)
    msg = {"symbol": sym, "bids": [(Decimal(p), Decimal(q)) for p, q, *_ in b],
           "asks": [(Decimal(p), Decimal(q)) for p, q, *_ in a], "recv_ns": recv_ns}
    book.apply(msg)
    return msg


# ---- quotes -----------------------------------------------------------------------------------
QUOTES = {
    "binance": (BinanceFeed, load("binance", "book_ticker.json"), lambda o: (o["s"], o["b"], o["B"], o["a"], o["A"])),
    "okx": (OkxFeed, load("okx", "bbo_tbt.json"),
            lambda o: (o["arg"]["instId"], o["data"][0]["bids"][0][0], o["data"][0]["bids"][0][1],
                       o["data"][0]["asks"][0][0], o["data"][0]["asks"][0][1])),
    "gate": (GateFeed, load("gate", "book_ticker.json"),
             lambda o: (o["result"]["s"], o["result"]["b"], o["result"]["B"], o["result"]["a"], o["result"]["A"])),
}
TRADES = {
    "binance": (BinanceFeed, load("binance", "trade.json"), lambda o: (o["s"], o["p"], o["q"], o["m"])),
    "okx": (OkxFeed, load("okx", "trades.json"),
            lambda o: (o["arg"]["instId"], o["data"][0]["px"], o["data"][0]["sz"], o["data"][0]["side"])),
    "gate": (GateFeed, load("gate", "trades.json"),
             lambda o: (o["result"]["currency_pair"], o["result"]["price"], o["result"]["amount"],
                        o["result"]["side"])),
}
DEPTHS = {
    "binance": (BinanceFeed, binance_depth_frames, lambda o: (o["s"], o["b"], o["a"]), 999),
    "okx": (OkxFeed, okx_books_frames,
            lambda o: (o["arg"]["instId"], o["data"][0]["bids"], o["data"][0]["asks"]), 1000),
    "gate": (GateFeed, gate_depth_frames, lambda o: (o["result"]["s"], o["result"]["b"], o["result"]["a"]), 999),
}


@pytest.mark.parametrize("venue", list(QUOTES))
def test_quote_ours(benchmark, venue, ring):
    cls, frame, _ = QUOTES[venue]
    f = cls(Instruments(["BTC-USDT"])).bind(ring_sink(ring))
    benchmark.group = f"{venue}-quote"
    t0 = ring.tail_position
    assert f.on_frame(frame, 1) == 1 and ring.tail_position == t0 + 1
    benchmark(f.on_frame, frame, 1)


@pytest.mark.parametrize("venue", list(QUOTES))
def test_quote_baseline(benchmark, venue):
    _, frame, getter = QUOTES[venue]
    benchmark.group = f"{venue}-quote"
    benchmark(baseline_quote, frame, 1, getter)


@pytest.mark.parametrize("venue", list(TRADES))
def test_trade_ours(benchmark, venue, ring):
    cls, frame, _ = TRADES[venue]
    f = cls(Instruments(["BTC-USDT"])).bind(ring_sink(ring))
    benchmark.group = f"{venue}-trade"
    t0 = ring.tail_position
    assert f.on_frame(frame, 1) == 1 and ring.tail_position == t0 + 1
    benchmark(f.on_frame, frame, 1)


@pytest.mark.parametrize("venue", list(TRADES))
def test_trade_baseline(benchmark, venue):
    _, frame, getter = TRADES[venue]
    benchmark.group = f"{venue}-trade"
    benchmark(baseline_trade, frame, 1, getter)


@pytest.mark.parametrize("venue", list(DEPTHS))
def test_depth_ours(benchmark, venue, ring):
    """10+10-level diff: parse, sequence check, apply to the feed's book, records into the ring."""
    cls, make, _, last = DEPTHS[venue]
    frames = make()
    benchmark.group = f"{venue}-depth10+10"
    state = {"f": live_feed(cls, last, ring), "it": iter(frames)}

    def one():
        try:
            fr = next(state["it"])
        except StopIteration:  # start the id sequence again on a fresh book
            state["f"] = live_feed(cls, last, ring)
            state["it"] = iter(frames)
            fr = next(state["it"])
        return state["f"].on_frame(fr, 1)

    t0 = ring.tail_position
    assert one() >= 20 and ring.tail_position >= t0 + 20
    benchmark(one)
    assert state["f"].gaps == 0 and state["f"].states[1].state == LIVE


@pytest.mark.parametrize("venue", list(DEPTHS))
def test_depth_baseline(benchmark, venue):
    _, make, getter, _ = DEPTHS[venue]
    frames = make()
    benchmark.group = f"{venue}-depth10+10"
    book = DecimalBook()
    it = itertools.cycle(frames)
    benchmark(lambda: baseline_depth(next(it), 1, getter, book))


@pytest.mark.parametrize("venue", list(DEPTHS))
def test_depth_parse_only(benchmark, venue):
    """The pure `parse` (records into a fresh numpy array, no book): what replay tests exercise."""
    cls, make, _, _ = DEPTHS[venue]
    frames = make()
    f = cls(Instruments(["BTC-USDT"]))
    benchmark.group = f"{venue}-depth10+10"
    it = itertools.cycle(frames)
    benchmark(lambda: f.parse(next(it), 1))


def test_orjson_loads_book_ticker_reference(benchmark):
    """orjson.loads alone on a bookTicker frame: the floor under any JSON parser."""
    frame = QUOTES["binance"][1]
    benchmark.group = "binance-quote"
    benchmark(orjson.loads, frame)


def test_depth_book_apply_only(benchmark):
    """Just the book: 10 bid + 10 ask levels (already floats) applied to the feed's numpy book."""
    from feeds.book import Book

    frames = []
    for i in range(2000):
        b, a = depth_levels(i)
        frames.append(([(float(p), float(q)) for p, q in b], [(float(p), float(q)) for p, q in a]))
    book = Book(512)
    it = itertools.cycle(frames)
    benchmark.group = "book-apply10+10"

    def one():
        b, a = next(it)
        bs, as_ = book.bids.set, book.asks.set
        for p, q in b:
            bs(p, q)
        for p, q in a:
            as_(p, q)

    benchmark(one)
