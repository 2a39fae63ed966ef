"""Fuzz: malformed, truncated and type-confused frames through the feed process's frame path.

No exception but FrameError leaves a parser, none at all leaves the connection listener, and
the handler's parse-error counter counts exactly the frames the parser rejected. Each
hypothesis example expands into every prefix of a mutated frame, so the whole module feeds
well over 100,000 frames (asserted) in a few seconds.
"""

from __future__ import annotations

import glob
import os

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.instruments import Instruments
from feeds.base import Collector
from feeds.errors import FrameError
from feeds.handler import FEEDS, VenueRunner, _listener_class

pytestmark = pytest.mark.unit

DATA = os.path.join(os.path.dirname(__file__), "data")
SYMS = ["BTC-USDT", "ETH-USDT"]
EXAMPLES = 250
TOTAL = {"frames": 0}


def base_frames(venue: str) -> list[bytes]:
    out = []
    for p in sorted(glob.glob(os.path.join(DATA, venue, "*.json"))):
        with open(p, "rb") as f:
            raw = f.read().strip()
        if b"channel" in raw or b'"e"' in raw or b'"arg"' in raw or b'"u"' in raw:
            out.append(raw)
    return out


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                      st.text(max_size=8), st.sampled_from(["", "0", "-1", "nan", "1e400", "buy", "BTC_USDT"]))
json_any = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                          st.dictionaries(st.text(max_size=3), c, max_size=3)),
                        max_leaves=6)


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, prefix + (i,))


def replace(obj, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        c = dict(obj)
    else:
        c = list(obj)
    c[head] = replace(obj[head], rest, value)
    return c


@st.composite
def mutated(draw, venue):
    base = draw(st.sampled_from(base_frames(venue)))
    kind = draw(st.integers(0, 2))
    if kind == 0:  # byte flips
        b = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    if kind == 1:  # a field replaced by any JSON value
        obj = orjson.loads(base)
        ps = list(paths(obj))
        p = draw(st.sampled_from(ps))
        return orjson.dumps(replace(obj, p, draw(json_any)))
    return base + draw(st.binary(max_size=6))  # trailing garbage


class Twin:
    """Runs frames through a feed directly (reference count of FrameErrors) and through the
    process's connection listener (what the feed process counts)."""

    def __init__(self, venue: str, prefix: str) -> None:
        from picows import WSMsgType
        from picows.picows import _make_test_ws_frame

        self.make = lambda b: _make_test_ws_frame(WSMsgType.TEXT, b, True, False)
        self.ref = FEEDS[venue](Instruments(SYMS))
        self.sink = Collector()
        self.runner = VenueRunner(venue, "ws://127.0.0.1:1/ws", "http://127.0.0.1:1", SYMS, Instruments(SYMS),
                                  prefix, ring_capacity=1024)
        self.listener = _listener_class()(self.runner, 1)
        self.expected_errors = 0
        self.frames = 0

    def feed(self, raw: bytes) -> None:
        try:
            self.ref.on_frame(raw, 1, self.sink.write)
        except FrameError:
            self.expected_errors += 1
        self.sink.parts.clear()
        self.listener.on_ws_frame(None, self.make(raw))  # must never raise
        self.frames += 1

    def close(self) -> None:
        self.runner.close()


@pytest.fixture(scope="module")
def prefix():
    import uuid

    from ringbuf import shm

    p = "tf" + uuid.uuid4().hex[:8]
    yield p
    for name in shm.list_segments(p):
        shm.unlink(name)


@pytest.mark.parametrize("venue", ["binance", "okx", "gate"])
def test_fuzz_frames_are_counted_never_raised(venue, prefix):
    twin = Twin(venue, f"{prefix}{venue[0]}")

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(venue))
    def run(raw):
        for n in range(len(raw) + 1):  # every truncation, and the whole mutated frame
            twin.feed(raw[:n])

    try:
        run()
        assert twin.runner.parse_errors == twin.expected_errors
        assert twin.expected_errors > 0.9 * twin.frames  # nearly all of them are malformed
        TOTAL["frames"] += twin.frames
    finally:
        twin.close()


def test_fuzz_total_is_at_least_100k():
    if TOTAL["frames"] == 0:
        pytest.skip("run with the per-venue fuzz tests")
    assert TOTAL["frames"] >= 100_000, TOTAL
