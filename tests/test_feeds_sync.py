"""Book: unit behaviour; sync: gap, duplicate, out-of-order and bad-checksum sequences per venue
each end in a correct book, in the feed and in a consumer rebuilding it from the records."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from common.instruments import Instruments
from feeds.base import LIVE, WAIT, Collector
from feeds.binance import BinanceFeed
from feeds.book import Book
from feeds.gate import GateFeed
from feeds.okx import OkxFeed, checksum
from ringbuf.records import (
    BOOK_LEVEL_DTYPE,
    F_RESYNC,
    F_SNAPSHOT_END,
    F_SNAPSHOT_START,
    KIND_BOOK_LEVEL,
    KIND_BOOK_RESET,
    MD_DTYPE,
)

pytestmark = pytest.mark.unit


# ---- book ---------------------------------------------------------------------------------
def test_book_levels_best_top_and_delete():
    b = Book(8)
    for px, q in ((100.0, 1.0), (99.0, 2.0), (101.0, 3.0)):
        b.set_level(1, px, q)
    for px, q in ((102.0, 4.0), (103.0, 5.0)):
        b.set_level(-1, px, q)
    assert b.best_bid() == (101.0, 3.0) and b.best_ask() == (102.0, 4.0)
    bids, asks = b.top(2)
    assert bids.tolist() == [[101.0, 3.0], [100.0, 1.0]] and asks.tolist() == [[102.0, 4.0], [103.0, 5.0]]
    b.set_level(1, 101.0, 0.0)
    b.set_level(1, 55.0, 0.0)  # deleting an unknown level is normal
    assert b.best_bid() == (100.0, 1.0) and b.depth() == (2, 2)
    b.set_level(1, 100.0, 7.0)
    assert b.best_bid() == (100.0, 7.0)
    assert not b.crossed()
    b.set_level(1, 102.5, 1.0)
    assert b.crossed()


def test_book_capacity_keeps_the_best_levels():
    b = Book(4)
    for i in range(10):
        b.set_level(-1, 100.0 + i, 1.0)
    assert b.top(10)[1][:, 0].tolist() == [100.0, 101.0, 102.0, 103.0]
    b.set_level(-1, 99.0, 1.0)
    assert b.top(10)[1][:, 0].tolist() == [99.0, 100.0, 101.0, 102.0]


def test_book_apply_records_reset_and_snapshot():
    recs = np.zeros(5, dtype=BOOK_LEVEL_DTYPE)
    recs["kind"] = KIND_BOOK_LEVEL
    recs["instr_id"] = 1
    recs["side"] = [1, -1, 1, 0, 1]
    recs["px"] = [10.0, 11.0, 9.0, 0.0, 9.5]
    recs["qty"] = [1.0, 2.0, 3.0, 0.0, 4.0]
    recs["flags"][0] = F_SNAPSHOT_START
    recs["flags"][2] = F_SNAPSHOT_END
    recs["kind"][3] = KIND_BOOK_RESET
    recs["flags"][3] = F_RESYNC
    b = Book(16, instr_id=1)
    b.apply_records(recs[:3])
    assert b.valid and b.best_bid() == (10.0, 1.0) and b.best_ask() == (11.0, 2.0)
    b.apply_records(recs[3:])
    assert not b.valid  # a reset invalidates until the next snapshot end
    other = Book(16, instr_id=2)
    other.apply_records(recs)
    assert other.depth() == (0, 0)


def test_okx_checksum_documented_examples():
    # PROTOCOLS.md §2.4, verified with zlib.crc32
    assert checksum([["3366.1", "7"], ["3366", "6"]], [["3366.8", "9"], ["3368", "8"]]) == -1881014294
    assert checksum([["3366.1", "7"]], [["3366.8", "9"], ["3368", "8"], ["3372", "8"]]) == 831078360


def test_okx_checksum_uses_top_25_and_strings_as_received():
    bids = [[f"{100 - i}.0", "1"] for i in range(30)]
    asks = [[f"{101 + i}.0", "1"] for i in range(30)]
    assert checksum(bids, asks) == checksum(bids[:25], asks[:25])
    assert checksum([["1.10", "1"]], []) != checksum([["1.1", "1"]], [])


# ---- reference model and frame builders --------------------------------------------------
class Truth:
    """The venue's book as dict px_str -> qty_str per side."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def apply(self, bids, asks):
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(p, None)
                else:
                    side[p] = q

    def sorted(self):
        b = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))
        a = sorted(self.asks.items(), key=lambda kv: float(kv[0]))
        return [list(x) for x in b], [list(x) for x in a]

    def top(self, n=1000):
        b, a = self.sorted()
        return ([[float(p), float(q)] for p, q in b[:n]], [[float(p), float(q)] for p, q in a[:n]])

    def checksum(self):
        b, a = self.sorted()
        return checksum(b, a)


def random_levels(rng: random.Random, truth: Truth, n: int = 4):
    bids, asks = [], []
    for _ in range(n):
        p = f"{rng.randint(9000, 9999) / 100:.2f}"  # bids below 100, asks above: never crossed
        bids.append([p, "0" if (p in truth.bids and rng.random() < 0.3) else f"{rng.randint(1, 999) / 10:.1f}"])
        p = f"{rng.randint(10001, 11000) / 100:.2f}"
        asks.append([p, "0" if (p in truth.asks and rng.random() < 0.3) else f"{rng.randint(1, 999) / 10:.1f}"])
    return bids, asks


def dedup(levels):
    seen = {}
    for p, q in levels:
        seen[p] = q
    return [[p, q] for p, q in seen.items()]


class Harness:
    """Feeds frames to a venue feed, collects records, rebuilds a consumer book from them."""

    def __init__(self, feed, iid):
        self.feed = feed
        self.iid = iid
        self.out = Collector()
        self.consumer = Book(4096, instr_id=iid)

    def frame(self, raw: bytes):
        return self.feed.on_frame(raw, 1, self.out.write)

    def snapshot(self, body: bytes):
        return self.feed.on_snapshot(self.iid, body, 1, self.out.write)

    def records(self):
        return self.out.array()

    def check(self, truth: Truth):
        st = self.feed.states[self.iid]
        assert st.state == LIVE
        b, a = truth.top()
        fb, fa = st.book.top(1000)
        assert fb.tolist() == b and fa.tolist() == a
        self.consumer.apply_records(self.records())
        assert self.consumer.valid
        cb, ca = self.consumer.top(1000)
        assert cb.tolist() == b and ca.tolist() == a


def kinds(recs):
    return recs.view(MD_DTYPE)["kind"].tolist()


# ---- Binance ---------------------------------------------------------------------------------
def bn_diff(U, u, bids, asks):
    return orjson.dumps({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": U, "u": u, "b": bids, "a": asks})


def bn_snap(last, truth):
    b, a = truth.sorted()
    return orjson.dumps({"lastUpdateId": last, "bids": b, "asks": a})


def binance_run(scenario: str, seed: int = 1):
    ins = Instruments(["BTC-USDT"])
    h = Harness(BinanceFeed(ins), 1)
    rng = random.Random(seed)
    truth = Truth()
    truth.apply(*random_levels(rng, truth, 20))
    history = {}  # update id -> Truth after it
    frames = []
    u = 100
    history[u] = (bn_snap(u, truth))
    for _ in range(12):
        bids, asks = (dedup(x) for x in random_levels(rng, truth))
        U, u = u + 1, u + 2
        truth.apply(bids, asks)
        frames.append((U, u, bn_diff(U, u, bids, asks)))
        history[u] = bn_snap(u, truth)
    # stream opened and buffered before the snapshot, as documented
    h.frame(frames[0][2])
    assert h.feed.states[1].state == WAIT and 1 in h.feed.snapshot_requests
    assert h.snapshot(history[100]) > 0
    seq = [f[2] for f in frames[1:]]
    if scenario == "gap":
        lost = seq.pop(4)
        del lost
    elif scenario == "duplicate":
        seq.insert(5, seq[4])
    elif scenario == "out_of_order":
        seq[4], seq[5] = seq[5], seq[4]
    for raw in seq:
        h.frame(raw)
        if h.feed.snapshot_requests:  # the handler would fetch the REST snapshot now: the venue's current one
            current = max(k for k in history if k <= max(f[1] for f in frames if f[2] in seq[: seq.index(raw) + 1]))
            assert h.snapshot(history[current]) >= 0
    return h, truth


@pytest.mark.parametrize("scenario", ["clean", "gap", "duplicate", "out_of_order"])
def test_binance_sync_sequences(scenario):
    h, truth = binance_run(scenario)
    h.check(truth)
    recs = h.records()
    if scenario in ("gap", "out_of_order"):
        assert h.feed.gaps >= 1 and KIND_BOOK_RESET in kinds(recs)
        i = kinds(recs).index(KIND_BOOK_RESET)
        after = recs.view(BOOK_LEVEL_DTYPE)[i + 1 :]
        assert after["flags"][0] & F_SNAPSHOT_START  # the consumer is told to rebuild
        assert any(after["flags"] & F_SNAPSHOT_END)
    else:
        assert h.feed.gaps == 0 and KIND_BOOK_RESET not in kinds(recs)
    if scenario == "duplicate":
        assert h.feed.duplicates == 1


def test_binance_stale_snapshot_is_refetched():
    ins = Instruments(["BTC-USDT"])
    h = Harness(BinanceFeed(ins), 1)
    h.frame(bn_diff(110, 112, [["99.00", "1"]], []))
    t = Truth()
    assert h.snapshot(orjson.dumps({"lastUpdateId": 100, "bids": [], "asks": []})) == -1  # older than U - 1
    assert h.feed.states[1].state == WAIT
    t.apply([["98.00", "2"]], [])
    assert h.snapshot(orjson.dumps({"lastUpdateId": 111, "bids": [["98.00", "2"]], "asks": []})) > 0
    t.apply([["99.00", "1"]], [])
    h.check(t)


# ---- Gate -----------------------------------------------------------------------------------
def gt_diff(U, u, bids, asks, full=False):
    r = {"t": 1, "s": "BTC_USDT", "U": U, "u": u, "b": bids, "a": asks}
    if full:
        r["full"] = True
    return orjson.dumps({"time": 1, "channel": "spot.order_book_update", "event": "update", "result": r})


@pytest.mark.parametrize("scenario", ["clean", "gap", "duplicate", "out_of_order", "full_reset"])
def test_gate_sync_sequences(scenario):
    ins = Instruments(["BTC-USDT"])
    h = Harness(GateFeed(ins), 1)
    rng = random.Random(7)
    truth = Truth()
    truth.apply(*random_levels(rng, truth, 20))
    b, a = truth.sorted()
    h.frame(gt_diff(101, 101, [], []))  # buffered before the REST snapshot
    assert h.snapshot(orjson.dumps({"id": 100, "bids": b, "asks": a})) >= 0
    u = 101
    frames = []
    snaps = {}
    for _ in range(10):
        bids, asks = (dedup(x) for x in random_levels(rng, truth))
        U, u = u + 1, u + 3
        truth.apply(bids, asks)
        frames.append(gt_diff(U, u, bids, asks))
        b, a = truth.sorted()
        snaps[len(frames)] = orjson.dumps({"id": u, "bids": b, "asks": a})
    seq = list(range(len(frames)))
    if scenario == "gap":
        seq.remove(3)
    elif scenario == "duplicate":
        seq.insert(4, 3)
    elif scenario == "out_of_order":
        seq[3], seq[4] = seq[4], seq[3]
    for k, i in enumerate(seq):
        h.frame(frames[i])
        if h.feed.snapshot_requests:
            assert h.snapshot(snaps[max(seq[: k + 1]) + 1]) >= 0
        if scenario == "full_reset" and i == 5:
            b, a = truth.sorted() if False else (None, None)
    if scenario == "full_reset":
        b, a = truth.sorted()
        h.frame(gt_diff(u + 1, u + 1, b, a, full=True))
        assert h.feed.states[1].ws_snapshots == 1
    h.check(truth)
    if scenario in ("gap", "out_of_order"):
        assert h.feed.gaps == 1 and KIND_BOOK_RESET in kinds(h.records())
    else:
        assert h.feed.gaps == 0


def test_gate_crossed_book_triggers_resync():
    ins = Instruments(["BTC-USDT"])
    h = Harness(GateFeed(ins), 1)
    h.frame(gt_diff(1, 1, [["100", "1"]], [["101", "1"]], full=True))
    h.frame(gt_diff(2, 2, [["102", "1"]], []))
    assert h.feed.crossed == 1 and h.feed.states[1].state == WAIT
    assert kinds(h.records())[-1] == KIND_BOOK_RESET


# ---- OKX ----------------------------------------------------------------------------------------
def ok_frame(action, bids, asks, prev, seq, cs=0):
    return orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action,
                         "data": [{"asks": [[p, q, "0", "1"] for p, q in asks],
                                   "bids": [[p, q, "0", "1"] for p, q in bids],
                                   "ts": "1597026383085", "checksum": cs, "prevSeqId": prev, "seqId": seq}]})


@pytest.mark.parametrize("scenario", ["clean", "gap", "duplicate", "out_of_order", "bad_checksum",
                                      "heartbeat_and_reset"])
@pytest.mark.parametrize("with_checksum", [True, False])
def test_okx_sync_sequences(scenario, with_checksum):
    ins = Instruments(["BTC-USDT"])
    h = Harness(OkxFeed(ins), 1)
    rng = random.Random(3)
    truth = Truth()
    truth.apply(*random_levels(rng, truth, 30))
    b, a = truth.sorted()
    seq_id = 1000
    h.frame(ok_frame("snapshot", b, a, -1, seq_id, truth.checksum() if with_checksum else 0))
    frames = []
    states = []
    for _ in range(10):
        bids, asks = (dedup(x) for x in random_levels(rng, truth))
        truth.apply(bids, asks)
        prev, seq_id = seq_id, seq_id + rng.randint(1, 9)  # ids jump
        frames.append(ok_frame("update", bids, asks, prev, seq_id, truth.checksum() if with_checksum else 0))
        b, a = truth.sorted()
        states.append((seq_id, b, a, truth.checksum() if with_checksum else 0))
    order = list(range(len(frames)))
    if scenario == "gap":
        order.remove(3)
    elif scenario == "duplicate":
        order.insert(4, 3)
    elif scenario == "out_of_order":
        order[3], order[4] = order[4], order[3]
    elif scenario == "bad_checksum" and with_checksum:
        d = orjson.loads(frames[3])
        d["data"][0]["checksum"] ^= 0x5A5A
        frames[3] = orjson.dumps(d)
    for k, i in enumerate(order):
        h.frame(frames[i])
        if h.feed.resubscribe_requests:  # the handler resubscribes: a fresh WS snapshot follows
            s, b, a, cs = states[max(order[: k + 1])]
            h.frame(ok_frame("snapshot", b, a, -1, s, cs))
    if scenario == "heartbeat_and_reset":
        last = states[-1][0]
        h.frame(ok_frame("update", [], [], last, last, states[-1][3]))  # heartbeat
        bids, asks = (dedup(x) for x in random_levels(rng, truth))
        truth.apply(bids, asks)
        h.frame(ok_frame("update", bids, asks, last, 5, truth.checksum() if with_checksum else 0))  # reset
        assert h.feed.states[1].last == 5
    h.check(truth)
    if scenario in ("gap", "out_of_order"):
        assert h.feed.gaps == 1
    elif scenario == "bad_checksum" and with_checksum:
        assert h.feed.checksum_failures == 1 and h.feed.gaps == 0
    else:
        assert h.feed.gaps == 0 and h.feed.checksum_failures == 0 and h.feed.resyncs == 0


def test_okx_rest_sync_when_no_ws_snapshot():
    """Channel without an initial snapshot: buffer, REST snapshot with seqId, follow the chain."""
    ins = Instruments(["BTC-USDT"])
    h = Harness(OkxFeed(ins), 1)
    truth = Truth()
    truth.apply([["99.00", "1"], ["98.00", "2"]], [["101.00", "1"]])
    h.frame(ok_frame("update", [["99.00", "1"]], [], 10, 20))
    h.frame(ok_frame("update", [["98.00", "2"]], [], 20, 25))
    assert 1 in h.feed.snapshot_requests
    # snapshot at seqId 22 (between the buffered frames): the first kept frame has prev 20 <= 22 < 25
    snap_bids = [["99.00", "1", "0", "1"]]
    body = orjson.dumps({"code": "0", "msg": "", "data": [{"asks": [["101.00", "1", "0", "1"]], "bids": snap_bids,
                                                          "ts": "1", "seqId": 22}]})
    assert h.snapshot(body) > 0
    truth_after = Truth()
    truth_after.apply([["99.00", "1"], ["98.00", "2"]], [["101.00", "1"]])
    h.frame(ok_frame("update", [["97.00", "3"]], [], 25, 31))
    truth_after.apply([["97.00", "3"]], [])
    h.check(truth_after)
    # an older REST snapshot than the buffered stream is refused (refetch)
    h2 = Harness(OkxFeed(Instruments(["BTC-USDT"])), 1)
    h2.frame(ok_frame("update", [["99.00", "1"]], [], 40, 50))
    old = orjson.dumps({"code": "0", "data": [{"asks": [], "bids": [], "ts": "1", "seqId": 30}]})
    assert h2.snapshot(old) == -1


def test_bad_level_mid_frame_resyncs_the_book():
    ins = Instruments(["BTC-USDT"])
    h = Harness(GateFeed(ins), 1)
    h.frame(gt_diff(1, 1, [["100", "1"]], [["101", "1"]], full=True))
    from feeds.errors import FrameError

    with pytest.raises(FrameError):
        h.frame(gt_diff(2, 2, [["99", "1"], ["oops", "1"]], []))
    assert h.feed.states[1].state == WAIT
    assert kinds(h.records())[-1] == KIND_BOOK_RESET  # consumer drops the half-applied book
