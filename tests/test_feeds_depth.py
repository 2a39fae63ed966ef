"""Gate books deeper than a snapshot: the feed's book must not silently lose levels the venue has.

The simulator (like Gate) keeps more levels than its depth-limited snapshots carry: its books hold
105-120 levels a side and send diffs for all of them, while a `full: true` frame carries the top
100 (`"l":"100"`) and REST as many as `limit` asks. A book rebuilt from a 100-level snapshot lacks
the venue's levels 101+; every diff after it is in sequence (no gap, no resync), but once the
price has moved through the levels we do hold, those missing levels are the top of the venue's
book and not of ours: the top bid or the first asks are simply absent. That is how
`test_feeds_integration.py::test_scheduled_rotation_misses_no_update` failed (a Gate book missing
its top bid or a few asks): it pauses the market at a random moment and never heals, since
rotating every 3 s keeps the stale watchdog (30 s) from ever reconnecting and re-fetching.

These tests drive the simulator's own generator and Gate encoder in-process (no sockets, no
timing): every frame it would send goes through `GateFeed.on_frame`, REST snapshots come from its
own `/api/v4/spot/order_book` handler with the path the feed process asks for."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from common.instruments import Instruments
from feeds import gate
from feeds.base import LIVE, Collector
from feeds.book import Book
from feeds.gate import GateFeed
from ringbuf.records import KIND_BOOK_RESET, MD_DTYPE
from sim import SimConfig, Simulator
from sim.server import Request
from sim.venues.gate import FULL_EVERY_STEPS

pytestmark = pytest.mark.unit

SYMS = ["BTC-USDT", "ETH-USDT"]


class Tap:
    """A subscribed Gate session as the simulator sees it: keeps the WebSocket payloads."""

    def __init__(self) -> None:
        self.subs: set[str] = set()
        self.conn = self
        self.frames: list[bytes] = []

    def send_md(self, frame: bytes, probe=None) -> None:
        n = frame[1] & 0x7F  # server frames are not masked
        self.frames.append(frame[2 + (2 if n == 126 else 8 if n == 127 else 0):])


def rest(app, sym: str) -> bytes:
    target = gate.snapshot_path(sym)
    resp = app.handle_http(Request("GET", target, {}, b"", None))
    assert resp.status == 200, resp.body
    return resp.body


def records(c: Collector) -> np.ndarray:
    a = c.array()
    c.parts.clear()
    return a


def top(app, sym: str, depth: int = 20) -> tuple[list, list]:
    v = app.book_view(sym, depth)
    return ([[float(p), float(q)] for p, q in v["bids"]], [[float(p), float(q)] for p, q in v["asks"]])


@pytest.mark.parametrize("rest_lag", [(0, 0), (3, 2)])
def test_gate_book_equals_the_venues_through_full_frames_and_deep_moves(rest_lag):
    """2 x 1300 simulator steps (two `full: true` frames per book). REST is fetched `lag[0]`
    steps after the feed asks and handed over `lag[1]` steps later (the stream runs ahead of it
    meanwhile). After every step the book a consumer rebuilds from the records equals the
    venue's top 20 on both symbols; nothing is ever reset."""
    fetch_lag, deliver_lag = rest_lag
    sim = Simulator(SimConfig(symbols=SYMS, seed=9, port_base=0))
    app = sim.venues["gate"]
    tap = Tap()
    feed = GateFeed(Instruments(SYMS))
    c = Collector()
    consumers = {s: Book(4096, instr_id=feed.instruments.id_for(s)) for s in SYMS}
    iids = {feed.instruments.id_for(s): s for s in SYMS}
    for s in SYMS:
        assert app.subscribe(tap, "spot.order_book_update:" + app.instruments[s].venue_symbol)
    pending: dict[int, list] = {}  # iid -> [steps until fetch, steps until delivery, body]
    fulls = 0
    checked = 0
    states = list(sim.market.symbols.values())
    for step in range(2 * 1300):
        sim._step_symbol(states[step % len(states)], None)
        for raw in tap.frames:
            fulls += b'"full":true' in raw
            feed.on_frame(raw, step, c.write)
        tap.frames.clear()
        for iid in list(feed.snapshot_requests):
            p = pending.setdefault(iid, [fetch_lag, deliver_lag, None])
            if p[2] is None:
                if p[0] <= 0:
                    p[2] = rest(app, iids[iid])
                p[0] -= 1
            if p[2] is not None:
                if p[1] <= 0:
                    del pending[iid]
                    feed.on_snapshot(iid, p[2], step, c.write)
                p[1] -= 1
        recs = records(c)
        assert KIND_BOOK_RESET not in recs.view(MD_DTYPE)["kind"].tolist()
        for s in SYMS:
            b = consumers[s]
            b.apply_records(recs)
            if feed.states.get(feed.instruments.id_for(s)) is None or not b.valid:
                continue
            bids, asks = b.top(20)
            want_b, want_a = top(app, s)
            assert bids.tolist() == want_b and asks.tolist() == want_a, (
                f"step {step} {s}: ours {bids[:3].tolist()} / {asks[:3].tolist()}, "
                f"venue {want_b[:3]} / {want_a[:3]}, our depth {b.depth()}")
            checked += 1
    assert fulls >= 2 * (1300 // FULL_EVERY_STEPS)
    assert checked > 2 * 1250
    assert feed.resyncs == 0 and feed.gaps == 0
    for iid in list(feed.snapshot_requests):  # a refresh still on its way: let it land
        assert feed.on_snapshot(iid, rest(app, iids[iid]), step, c.write) > 0
    for s in SYMS:  # every level the venue has, not just the top
        st = feed.states[feed.instruments.id_for(s)]
        assert st.state == LIVE and not st.refresh
        bids, asks = st.book.top(1000)
        want_b, want_a = top(app, s, 1000)
        assert bids.tolist() == want_b and asks.tolist() == want_a


def full(U, u, bids, asks, depth=None):
    r = {"t": 1, "s": "BTC_USDT", "U": U, "u": u, "b": bids, "a": asks, "full": True}
    if depth is not None:
        r["l"] = str(depth)
    return orjson.dumps({"time": 1, "channel": "spot.order_book_update", "event": "update", "result": r})


def diff(U, u, bids, asks):
    return orjson.dumps({"time": 1, "channel": "spot.order_book_update", "event": "update",
                         "result": {"t": 1, "s": "BTC_USDT", "U": U, "u": u, "b": bids, "a": asks}})


def test_gate_depth_limited_full_frame_keeps_deeper_levels_and_refreshes_without_reset():
    ins = Instruments(["BTC-USDT"])
    feed = GateFeed(ins)
    c = Collector()
    consumer = Book(64, instr_id=ins.id_for("BTC-USDT"))
    iid = ins.id_for("BTC-USDT")
    feed.on_frame(diff(11, 11, [], []), 1, c.write)  # buffered before the REST snapshot
    snap = {"id": 10, "bids": [["100", "1"], ["99", "1"], ["98", "1"]], "asks": [["101", "1"], ["102", "1"],
                                                                               ["103", "1"]]}
    assert feed.on_snapshot(iid, orjson.dumps(snap), 1, c.write) > 0
    assert gate.snapshot_path("BTC-USDT").count("limit=1000") == 1  # the whole book, not the top 100
    # in the chain, a 2-level full frame: the top two levels are exact, the rest stays
    feed.on_frame(full(12, 13, [["100.5", "2"], ["99", "3"]], [["101", "4"], ["103", "5"]], depth=2), 2, c.write)
    st = feed.states[iid]
    assert st.state == LIVE and st.last == 13 and st.refresh and iid in feed.snapshot_requests
    bids, asks = st.book.top(10)
    assert bids.tolist() == [[100.5, 2.0], [99.0, 3.0], [98.0, 1.0]]  # 100 left (inside the snapshot)
    assert asks.tolist() == [[101.0, 4.0], [103.0, 5.0]]  # 102 left; nothing deeper was held
    # the same frame again (a rotation replays the new connection's frames): not a rewind
    assert feed.on_frame(full(12, 13, [["100.5", "2"], ["99", "3"]], [["101", "4"], ["103", "5"]], 2), 3,
                         c.write) == 0
    # the stream goes on while the REST snapshot is on its way
    feed.on_frame(diff(14, 15, [["97", "6"]], [["103", "0"]]), 4, c.write)
    feed.on_frame(diff(16, 16, [["98", "0"]], []), 5, c.write)
    # a snapshot older than the book with nothing buffered that old: fetched again
    assert feed.on_snapshot(iid, orjson.dumps({"id": 12, "bids": [], "asks": []}), 6, c.write) == -1
    # the venue's book at u=15 (with a level 104 that the full frame could not show)
    snap = {"id": 15, "bids": [["100.5", "2"], ["99", "3"], ["98", "1"], ["97", "6"]],
            "asks": [["101", "4"], ["104", "7"]]}
    assert feed.on_snapshot(iid, orjson.dumps(snap), 6, c.write) > 0
    assert st.state == LIVE and st.last == 16 and not st.refresh and iid not in feed.snapshot_requests
    bids, asks = st.book.top(10)
    assert bids.tolist() == [[100.5, 2.0], [99.0, 3.0], [97.0, 6.0]]  # the buffered u=16 replayed
    assert asks.tolist() == [[101.0, 4.0], [104.0, 7.0]]
    recs = c.array()
    assert KIND_BOOK_RESET not in recs.view(MD_DTYPE)["kind"].tolist()
    assert feed.resyncs == 0 and feed.gaps == 0
    consumer.apply_records(recs)
    assert consumer.valid
    cb, ca = consumer.top(10)
    assert cb.tolist() == bids.tolist() and ca.tolist() == asks.tolist()


def test_gate_full_frame_with_fewer_levels_than_its_depth_is_the_whole_book():
    ins = Instruments(["BTC-USDT"])
    feed = GateFeed(ins)
    iid = ins.id_for("BTC-USDT")
    feed.on_frame(full(1, 1, [["100", "1"], ["99", "1"]], [["101", "1"]], depth=100), 1)
    feed.on_frame(diff(2, 2, [["98", "1"]], []), 2)
    feed.on_frame(full(3, 3, [["100", "2"]], [["101", "1"]], depth=100), 3)
    st = feed.states[iid]
    assert st.state == LIVE and not st.refresh and not feed.snapshot_requests
    assert st.book.top(10)[0].tolist() == [[100.0, 2.0]]
