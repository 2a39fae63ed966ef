"""The best bid/ask fast path (skeleton lookup + one translated orjson call) against the ordinary
decode: the same records or the same FrameError for valid, mutated and malformed frames.

A leading space moves a frame off the fast path (its skeleton changes; orjson ignores it), so
every frame is decoded both ways by the same feed, after the feed has learned the layout."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.instruments import Instruments
from feeds.base import QUOTE_H_STRUCT, Collector
from feeds.binance import BinanceFeed
from feeds.errors import FrameError
from feeds.gate import GateFeed
from feeds.okx import OkxFeed

pytestmark = pytest.mark.unit

SYMBOLS = {"binance": ["BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT"], "okx": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
           "gate": ["BTC_USDT", "ETH_USDT", "DOGE_USDT"]}
FEEDS = {"binance": BinanceFeed, "okx": OkxFeed, "gate": GateFeed}


def frame(venue: str, sym: str, seq: int, ts_ms: int, nums: list[str]) -> bytes:
    b, bq, a, aq = nums
    if venue == "binance":
        return (f'{{"u":{seq},"s":"{sym}","b":"{b}","B":"{bq}","a":"{a}","A":"{aq}"}}').encode()
    if venue == "okx":
        return (f'{{"arg":{{"channel":"bbo-tbt","instId":"{sym}"}},"data":[{{"asks":[["{a}","{aq}","0","2"]],'
                f'"bids":[["{b}","{bq}","0","1"]],"ts":"{ts_ms}","seqId":{seq}}}]}}').encode()
    return (f'{{"time":{ts_ms // 1000},"time_ms":{ts_ms},"channel":"spot.book_ticker","event":"update",'
            f'"result":{{"t":{ts_ms},"u":{seq},"s":"{sym}","b":"{b}","B":"{bq}","a":"{a}","A":"{aq}"}}}}').encode()


class Counting(Collector):
    """A Collector that counts the records written through the packed-header (fast) writer."""

    __slots__ = ("fast",)

    def __init__(self) -> None:
        super().__init__()
        self.fast = 0

    def write(self, packer: struct.Struct, *values) -> bool:
        self.fast += packer is QUOTE_H_STRUCT
        return super().write(packer, *values)


def outcome(feed, raw: bytes, c: Counting):
    c.parts.clear()
    try:
        feed.on_frame(raw, 7, c.write)
    except FrameError:
        return "FrameError"
    return c.array().tobytes()


def learned_feed(venue: str):
    f = FEEDS[venue](Instruments(["BTC-USDT", "ETH-USDT"]))
    c = Counting()
    for sym in SYMBOLS[venue]:
        for nums in (["25.35190000", "31.21000000", "25.36520000", "40.66000000"], ["25", "31", "26", "40"],
                     ["0.1", "2.0", "0.2", "3.5"]):
            assert outcome(f, frame(venue, sym, 5, 1606293275123, nums), c) != "FrameError"
    return f, c


NUM = st.from_regex(r"\A(0|[1-9][0-9]{0,7})(\.[0-9]{1,10})?\Z", fullmatch=True)
CHARS = st.sampled_from(list("0123456789.0019-e\" ,:{}[]\\\tEabsuA_") + ["\n", "\x01", "\u00e9"])


@st.composite
def mutated(draw, venue: str):
    sym = draw(st.sampled_from(SYMBOLS[venue]))
    raw = frame(venue, sym, draw(st.integers(0, 2**64)), draw(st.integers(0, 10**14)), draw(st.lists(NUM, min_size=4,
                                                                                                      max_size=4)))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "digits"]))
        i = draw(st.integers(0, len(raw)))
        if op == "insert":
            raw = raw[:i] + draw(CHARS).encode() + raw[i:]
        elif op == "digits":  # digits slipped in anywhere keep the skeleton: the case to get right
            raw = raw[:i] + draw(st.from_regex(r"\A[0-9.]{1,4}\Z", fullmatch=True)).encode() + raw[i:]
        elif op == "delete":
            raw = raw[:i] + raw[i + 1:]
        else:
            raw = raw[:i] + draw(CHARS).encode() + raw[i + 1:]
    return raw


@pytest.mark.parametrize("venue", list(FEEDS))
def test_fast_path_is_taken_and_equals_ordinary_decode(venue):
    f, c = learned_feed(venue)
    c.fast = 0
    raw = frame(venue, SYMBOLS[venue][0], 400900217, 1670324386802, ["111.06", "55154", "111.07", "0.001"])
    first = outcome(f, raw, c)  # a size without a dot: a layout not seen yet, learned now
    assert c.fast == 0
    fast = outcome(f, raw, c)
    assert c.fast == 1 and fast == first
    assert fast == outcome(f, b" " + raw, c)
    assert c.fast == 1  # the spaced frame went the ordinary way
    rec = f.parse(raw, 7)[0]
    assert (rec["venue_seq"], rec["f0"], rec["f1"], rec["f2"], rec["f3"], rec["recv_ts_ns"]) == (
        400900217, 111.06, 55154.0, 111.07, 0.001, 7)


@pytest.mark.parametrize("venue", list(FEEDS))
def test_memoryview_frames_take_the_fast_path(venue):
    f, c = learned_feed(venue)
    c.fast = 0
    raw = frame(venue, SYMBOLS[venue][1], 9, 1670324386802, ["1.5", "2.5", "3.5", "4.5"])
    assert outcome(f, memoryview(raw), c) == outcome(f, b" " + raw, c)
    assert c.fast == 1


TRICKY = {
    "binance": [b'{"u":1,"s":"BTC1USDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}',  # digit in the symbol
                b'{"u":1,"s":"BTCUSDT","b1":"1.5","B":"2.5","a":"3.5","A":"4.5"}',  # digit in a key
                b'{"u":1,"s":"BTCUSDT","b":5"1.5","B":"2.5","a":"3.5","A":"4.5"}',  # digit beside a string
                b'{"u":1,"s":"BTCUSDT","b":"1.5"5,"B":"2.5","a":"3.5","A":"4.5"}',
                b'{"u":1,"s":"BTCUSDT","b":"01.5","B":"2.5","a":"3.5","A":"4.5"}',  # leading zero in a string
                b'{"u":01,"s":"BTCUSDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}',  # leading zero in a number
                b'{"u":1,"s":"BTCUSDT","b":"1.5","B":"2.5","a":"3.5","A":""}',  # empty size
                b'{"u":1,"s":"BTCUSDT.0","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}',
                b'{"u":99999999999999999999,"s":"BTCUSDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}',
                b'{"u":9223372036854775808,"s":"BTCUSDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}'],
    "okx": [b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT1"},"data":[{"asks":[["1.5","2","0","2"]],'
            b'"bids":[["1.4","2","0","1"]],"ts":"1670324386802","seqId":3}]}',
            b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1.5","2","0","2"]],'
            b'"bids":[["1.4","2","","1"]],"ts":"1670324386802","seqId":3}]}',
            b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1.5","2","0","2"]],'
            b'"bids":[["1.4","2","0","1"]],"ts":"01670324386802","seqId":3}]}',
            b'{"arg":{"channel":"bbo-tbt0","instId":"BTC-USDT"},"data":[{"asks":[["1.5","2","0","2"]],'
            b'"bids":[["1.4","2","0","1"]],"ts":"1670324386802","seqId":3}]}'],
    "gate": [b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker0","event":"update",'
             b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}}',
             b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker000000000","event":"update",'
             b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}}',
             b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update1",'
             b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}}',
             b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update",'
             b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"1.5","B":"2.5","a":"3.5","A":"4.5"}}x'],
}


# a dot-less quoted value whose digits hop out of its quotes keeps the skeleton ("0" -> ""0):
# (a valid frame that teaches the feed that layout, the same frame with one value emptied)
EMPTIED = {
    "binance": [(b'{"u":1000000,"s":"BTCUSDT","b":"0","B":"0.0000","a":"1000","A":"0"}',
                 b'{"u":1000000,"s":"BTCUSDT","b":"0","B":"0.0000","a":"1000","A":""0}')],
    "okx": [(b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1.4","2","0","1"]],'
             b'"bids":[["1.4","2","0","1"]],"ts":"1670324386802","seqId":3}]}',
             b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["1.4","2",""0,"1"]],'
             b'"bids":[["1.4","2","0","1"]],"ts":"1670324386802","seqId":3}]}')],
    "gate": [(b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update",'
              b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"1","B":"2.5","a":"3.5","A":"4.5"}}',
              b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update",'
              b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":""1,"B":"2.5","a":"3.5","A":"4.5"}}')],
}


@pytest.mark.parametrize("venue", list(FEEDS))
def test_a_quoted_value_emptied_of_its_digits_is_refused_as_the_ordinary_path_refuses_it(venue):
    f, c = learned_feed(venue)
    for teacher, raw in EMPTIED[venue]:
        assert outcome(f, teacher, c) != "FrameError"  # a valid frame: its layout is learned
        c.fast = 0
        assert outcome(f, teacher, c) != "FrameError" and c.fast == 1  # and now taken fast
        assert outcome(f, raw, c) == "FrameError", raw
        assert outcome(f, raw, c) == outcome(f, b" " + raw, c), raw


@pytest.mark.parametrize("venue", list(FEEDS))
def test_tricky_frames_decode_as_the_ordinary_path(venue):
    f, c = learned_feed(venue)
    for raw in TRICKY[venue]:
        assert outcome(f, raw, c) == outcome(f, b" " + raw, c), raw


@pytest.mark.parametrize("venue", list(FEEDS))
def test_digits_slipped_in_anywhere(venue):
    """Seeded: digit runs inserted at every kind of position keep the skeleton, so these frames do
    reach the fast path's checks; each must decode exactly as the ordinary path decodes it."""
    f, c = learned_feed(venue)
    rng = random.Random(5)
    c.fast = 0
    for _ in range(3000):
        raw = frame(venue, rng.choice(SYMBOLS[venue]), rng.randrange(10**12), rng.randrange(10**13),
                    [f"{rng.randrange(1, 10**6) / 100:.2f}" for _ in range(4)])
        for _ in range(rng.choice([0, 1, 1, 2])):
            i = rng.randrange(len(raw) + 1)
            raw = raw[:i] + rng.choice([b"0", b"1", b"5", b"00", b".", b"1.", b"9"]) + raw[i:]
        assert outcome(f, raw, c) == outcome(f, b" " + raw, c), raw
    assert c.fast > 500  # the valid ones went the fast way


def _check_mutated(venue, raw):
    f, c = FEEDS_LEARNED[venue]
    assert outcome(f, raw, c) == outcome(f, b" " + raw, c), raw


FEEDS_LEARNED = {v: learned_feed(v) for v in FEEDS}
SETTINGS = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@SETTINGS
@given(raw=mutated("binance"))
def test_binance_mutated_frames(raw):
    _check_mutated("binance", raw)


@SETTINGS
@given(raw=mutated("okx"))
def test_okx_mutated_frames(raw):
    _check_mutated("okx", raw)


@SETTINGS
@given(raw=mutated("gate"))
def test_gate_mutated_frames(raw):
    _check_mutated("gate", raw)
