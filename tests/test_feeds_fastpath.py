"""The depth fast paths (quotes deleted, numbers converted by orjson) against the ordinary decode
(`float()` per string): the same records, books and errors for valid and malformed frames.

A leading space moves a frame off the fast path (its layout check is positional), so every
frame is decoded both ways by the same feed code."""

from __future__ import annotations

import random

import orjson
import pytest

from common.instruments import Instruments
from feeds.base import LIVE, Collector
from feeds.binance import BinanceFeed
from feeds.errors import FrameError
from feeds.gate import GateFeed
from feeds.okx import OkxFeed

pytestmark = pytest.mark.unit

BAD_VALUES = ["1,2", "[1]", "true", "null", "", "1e400", "-1", "abc", "1]", "0x1", " 1", "1_0", "-0", "nan",
              "1.", ".5", "+1", 5, 2.5, None, True, ["1"], '1"2', "1],[2", "1e5", "0.000001", "123456789.123456789"]


def levels(rng: random.Random, n: int, bad: float, width: int = 2):
    out = []
    for _ in range(n):
        px = f"{rng.randint(9000, 9999) / 100:.{rng.choice([0, 1, 2, 4, 8])}f}"
        qty = "0" if rng.random() < 0.2 else f"{rng.randint(1, 10**6) / 1000}"
        lv = [px, qty] + ["0", "1"][: width - 2]
        if rng.random() < bad:
            lv[rng.randrange(len(lv))] = rng.choice(BAD_VALUES)
        if rng.random() < bad / 4:
            lv = lv[:1] if rng.random() < 0.5 else lv + ["7"]
        out.append(lv)
    return out


def frames(venue: str, seed: int, count: int, bad: float):
    rng = random.Random(seed)
    out = []
    for i in range(count):
        b = levels(rng, rng.randint(0, 6), bad, 4 if venue == "okx" else 2)
        a = [[str(float(lv[0]) + 100) if isinstance(lv[0], str) and lv[0].replace(".", "").isdigit() else lv[0]]
             + lv[1:] for lv in levels(rng, rng.randint(0, 6), bad, 4 if venue == "okx" else 2)]
        if venue == "binance":
            out.append(orjson.dumps({"e": "depthUpdate", "E": 1672515782136, "s": "BTCUSDT", "U": 100 + i,
                                     "u": 100 + i, "b": b, "a": a}))
        elif venue == "gate":
            out.append(orjson.dumps({"time": 1606294781, "time_ms": 1606294781236,
                                     "channel": "spot.order_book_update", "event": "update",
                                     "result": {"t": 1606294781123, "e": "depthUpdate", "E": 1606294781,
                                                "s": "BTC_USDT", "U": 100 + i, "u": 100 + i, "b": b, "a": a}}))
        else:
            out.append(orjson.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
                                     "data": [{"asks": a, "bids": b, "ts": "1597026383085", "checksum": 0,
                                               "prevSeqId": 99 + i, "seqId": 100 + i}]}))
    return out


FEEDS = {"binance": BinanceFeed, "okx": OkxFeed, "gate": GateFeed}


def outcome(fn):
    try:
        return fn().tobytes()
    except FrameError:
        return "FrameError"


@pytest.mark.parametrize("venue", list(FEEDS))
def test_parse_fast_path_equals_ordinary_decode(venue):
    f = FEEDS[venue](Instruments(["BTC-USDT"]))
    fast_taken = 0
    for raw in frames(venue, 1, 3000, bad=0.15):
        fast = outcome(lambda raw=raw: f.parse(raw, 1))
        slow = outcome(lambda raw=raw: f.parse(b" " + raw, 1))
        assert fast == slow, raw
        fast_taken += fast != "FrameError"
    assert fast_taken > 300


@pytest.mark.parametrize("venue", list(FEEDS))
def test_book_sync_fast_path_equals_ordinary_decode(venue):
    """Two live books fed the same diffs, one through each path: same records, same book."""
    feeds = []
    for _ in range(2):
        f = FEEDS[venue](Instruments(["BTC-USDT"]))
        st = f.state(1)
        st.state = LIVE
        st.last = 99
        st.book.valid = True
        feeds.append((f, Collector()))
    for raw in frames(venue, 2, 3000, bad=0.02):
        res = []
        for (f, c), r in zip(feeds, (raw, b" " + raw), strict=True):
            st = f.states[1]
            if st.state != LIVE:  # a bad frame resynced it: start again from an empty snapshot-like state
                st.state = LIVE
                st.book.valid = True
            st.last = orjson.loads(raw).get("u") or orjson.loads(raw).get("result", {}).get("u") or 0
            st.last = st.last - 1 if venue != "okx" else orjson.loads(raw)["data"][0]["prevSeqId"]
            try:
                res.append(f.on_frame(r, 1, c.write))
            except FrameError:
                res.append("FrameError")
        assert res[0] == res[1], raw
        assert feeds[0][1].array().tobytes() == feeds[1][1].array().tobytes(), raw
        b0, b1 = feeds[0][0].states[1].book, feeds[1][0].states[1].book
        assert [x.tolist() for x in b0.top(50)] == [x.tolist() for x in b1.top(50)], raw


def byte_mutations(raw: bytes, rng: random.Random, count: int):
    """Malformed copies of a well-formed frame, made at the byte level: a quote moved elsewhere,
    a quote swapped with its neighbour, a digit moved across a quote, a quote doubled."""
    quotes = [i for i, c in enumerate(raw) if c == 0x22]
    digits = [i for i, c in enumerate(raw) if 0x30 <= c <= 0x39]
    for _ in range(count):
        b = bytearray(raw)
        kind = rng.randrange(4)
        q = rng.choice(quotes)
        if kind == 0:  # a quote moved a few bytes away
            del b[q]
            b.insert(max(0, min(len(b), q + rng.choice([-3, -2, -1, 1, 2, 3]))), 0x22)
        elif kind == 1 and 0 < q < len(b) - 1:  # swapped with a neighbour
            j = q + rng.choice([-1, 1])
            b[q], b[j] = b[j], b[q]
        elif kind == 2 and digits:  # a digit moved next to the other side of a quote
            d = rng.choice(digits)
            c = b[d]
            del b[d]
            near = [i for i in quotes if abs(i - d) <= 6] or [q]
            t = rng.choice(near)
            b.insert(min(len(b), t + rng.choice([0, 1])), c)
        else:  # a quote doubled
            b.insert(q, 0x22)
        yield bytes(b)


@pytest.mark.parametrize("venue", list(FEEDS))
def test_depth_fast_path_refuses_what_the_ordinary_decode_refuses_byte_mutations(venue):
    """Quotes and digits moved at the byte level (not through a JSON encoder): the fast path gives
    exactly what the ordinary decode gives, records or FrameError, frame by frame."""
    f = FEEDS[venue](Instruments(["BTC-USDT"]))
    rng = random.Random(7)
    refused = 0
    for raw in frames(venue, 3, 300, bad=0.0):
        for bad in byte_mutations(raw, rng, 8):
            fast = outcome(lambda bad=bad: f.parse(bad, 1))
            slow = outcome(lambda bad=bad: f.parse(b" " + bad, 1))
            assert fast == slow, bad
            refused += slow == "FrameError"
    assert refused > 500  # most mutations break the JSON: the test is about those
