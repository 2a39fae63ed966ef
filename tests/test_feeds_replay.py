"""Replay: documented venue frames (tests/data/<venue>/) parsed field by field."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from common.instruments import Instruments
from feeds.binance import BinanceFeed
from feeds.errors import FrameError
from feeds.gate import GateFeed
from feeds.okx import OkxFeed
from ringbuf.records import (
    BOOK_LEVEL_DTYPE,
    F_SNAPSHOT_END,
    F_SNAPSHOT_START,
    F_UPDATE_END,
    KIND_BOOK_LEVEL,
    KIND_QUOTE,
    KIND_TRADE,
    MD_DTYPE,
    QUOTE_DTYPE,
    TRADE_DTYPE,
)

pytestmark = pytest.mark.replay

DATA = os.path.join(os.path.dirname(__file__), "data")
RECV = 1_700_000_000_123_456_789


def frame(venue: str, name: str) -> bytes:
    with open(os.path.join(DATA, venue, name), "rb") as f:
        return f.read().strip()


def parse(feed, venue, name):
    out = feed.parse(frame(venue, name), RECV)
    assert out.dtype == MD_DTYPE
    return out


@pytest.fixture
def ins():
    return Instruments(["BTC-USDT", "ETH-USDT"])


# ---- Binance -----------------------------------------------------------------------
def test_binance_book_ticker(ins):
    f = BinanceFeed(ins)
    q = parse(f, "binance", "book_ticker.json").view(QUOTE_DTYPE)
    assert len(q) == 1
    r = q[0]
    assert r["kind"] == KIND_QUOTE and r["venue_id"] == 1 and r["flags"] == 0
    assert r["instr_id"] == ins.id_for("BNB-USDT") == 3  # unknown symbol: next id on first sight
    assert r["exch_ts_ns"] == 0  # bookTicker carries no event time
    assert r["recv_ts_ns"] == RECV
    assert r["venue_seq"] == 400900217
    assert (r["bid_px"], r["bid_qty"], r["ask_px"], r["ask_qty"]) == (25.3519, 31.21, 25.3652, 40.66)


def test_binance_trade_buyer_maker_is_seller_aggressor(ins):
    f = BinanceFeed(ins)
    t = parse(f, "binance", "trade.json").view(TRADE_DTYPE)
    assert len(t) == 1
    r = t[0]
    assert r["kind"] == KIND_TRADE and r["venue_id"] == 1
    assert r["instr_id"] == ins.id_for("BNB-BTC")
    assert r["side"] == -1  # "m": true -> buyer is maker -> seller aggressed
    assert r["exch_ts_ns"] == 1672515782136 * 1_000_000
    assert r["recv_ts_ns"] == RECV
    assert r["venue_seq"] == 12345
    assert (r["px"], r["qty"]) == (0.001, 100.0)


def test_binance_agg_trade(ins):
    t = parse(BinanceFeed(ins), "binance", "agg_trade.json").view(TRADE_DTYPE)
    assert len(t) == 1 and t[0]["venue_seq"] == 12345 and t[0]["side"] == -1
    assert (t[0]["px"], t[0]["qty"]) == (0.001, 100.0)


def test_binance_depth_update(ins):
    b = parse(BinanceFeed(ins), "binance", "depth_update.json").view(BOOK_LEVEL_DTYPE)
    assert len(b) == 2
    assert list(b["kind"]) == [KIND_BOOK_LEVEL] * 2
    assert list(b["side"]) == [1, -1]
    assert list(b["px"]) == [0.0024, 0.0026]
    assert list(b["qty"]) == [10.0, 100.0]
    assert list(b["venue_seq"]) == [160, 160]  # u
    assert list(b["prev_seq"]) == [157, 157]  # U
    assert list(b["flags"]) == [0, F_UPDATE_END]
    assert list(b["exch_ts_ns"]) == [1672515782136 * 1_000_000] * 2
    assert list(b["recv_ts_ns"]) == [RECV] * 2


@pytest.mark.parametrize("name", ["subscribe_reply.json", "server_shutdown.json"])
def test_binance_control_frames_give_no_records(ins, name):
    assert len(parse(BinanceFeed(ins), "binance", name)) == 0


def test_binance_server_shutdown_asks_for_rotation(ins):
    from feeds.base import CTRL_ROTATE, Collector

    assert BinanceFeed(ins).on_frame(frame("binance", "server_shutdown.json"), RECV, Collector().write) == CTRL_ROTATE


def test_binance_rest_snapshot(ins):
    from feeds.base import Collector

    f = BinanceFeed(ins)
    iid = ins.id_for("BTC-USDT")
    c = Collector()
    assert f.on_snapshot(iid, frame("binance", "depth_snapshot_rest.json"), RECV, c.write) == 2
    b = c.array().view(BOOK_LEVEL_DTYPE)
    assert list(b["flags"]) == [F_SNAPSHOT_START, F_SNAPSHOT_END | F_UPDATE_END]
    assert list(b["px"]) == [4.0, 4.000002] and list(b["qty"]) == [431.0, 12.0]
    assert list(b["venue_seq"]) == [1027024, 1027024]
    assert f.states[iid].book.best_bid() == (4.0, 431.0)


# ---- OKX -----------------------------------------------------------------------------
def test_okx_bbo_tbt(ins):
    q = parse(OkxFeed(ins), "okx", "bbo_tbt.json").view(QUOTE_DTYPE)
    assert len(q) == 1
    r = q[0]
    assert r["kind"] == KIND_QUOTE and r["venue_id"] == 2 and r["instr_id"] == ins.id_for("BTC-USDT") == 1
    assert (r["bid_px"], r["bid_qty"], r["ask_px"], r["ask_qty"]) == (111.05, 57745.0, 111.06, 55154.0)
    assert r["exch_ts_ns"] == 1670324386802 * 1_000_000
    assert r["recv_ts_ns"] == RECV
    assert r["venue_seq"] == 363996337


def test_okx_trades(ins):
    t = parse(OkxFeed(ins), "okx", "trades.json").view(TRADE_DTYPE)
    assert len(t) == 1
    r = t[0]
    assert r["kind"] == KIND_TRADE and r["side"] == 1  # taker side "buy"
    assert r["venue_seq"] == 130639474
    assert (r["px"], r["qty"]) == (42219.9, 0.12060306)
    assert r["exch_ts_ns"] == 1630048897897 * 1_000_000


def test_okx_books_snapshot(ins):
    b = parse(OkxFeed(ins), "okx", "books_snapshot.json").view(BOOK_LEVEL_DTYPE)
    assert len(b) == 16
    assert b["flags"][0] == F_SNAPSHOT_START and b["flags"][-1] == F_SNAPSHOT_END | F_UPDATE_END
    assert list(b["side"]) == [1] * 8 + [-1] * 8
    assert b["px"][0] == 8476.97 and b["qty"][0] == 256.0
    assert b["px"][8] == 8476.98 and b["qty"][8] == 415.0
    assert b["px"][-1] == 8506.96 and b["qty"][-1] == 100.0
    assert set(b["venue_seq"]) == {123456} and set(b["prev_seq"]) == {-1}
    assert set(b["exch_ts_ns"]) == {1597026383085 * 1_000_000}


def test_okx_books_update(ins):
    b = parse(OkxFeed(ins), "okx", "books_update.json").view(BOOK_LEVEL_DTYPE)
    assert len(b) == 2
    assert list(b["side"]) == [1, -1] and list(b["px"]) == [8476.97, 8476.98]
    assert list(b["qty"]) == [256.0, 415.0]
    assert list(b["venue_seq"]) == [123457] * 2 and list(b["prev_seq"]) == [123456] * 2
    assert list(b["flags"]) == [0, F_UPDATE_END]


@pytest.mark.parametrize("name", ["subscribe_reply.json", "error.json", "notice.json"])
def test_okx_control_frames_give_no_records(ins, name):
    assert len(parse(OkxFeed(ins), "okx", name)) == 0


def test_okx_pong_and_notice(ins):
    from feeds.base import CTRL_ROTATE, Collector

    f = OkxFeed(ins)
    assert len(f.parse(b"pong", RECV)) == 0
    assert f.on_frame(frame("okx", "notice.json"), RECV, Collector().write) == CTRL_ROTATE


def test_okx_documented_snapshot_checksum_is_illustrative(ins):
    """The docs' example checksum does not match the example's own levels: the sync must not
    accept such a book; it resyncs (resubscribe, as the channel sends WS snapshots)."""
    from feeds.base import Collector

    f = OkxFeed(ins)
    c = Collector()
    f.on_frame(frame("okx", "books_snapshot.json"), RECV, c.write)
    assert f.checksum_failures == 1
    assert c.array()["kind"][-1] == 4  # KIND_BOOK_RESET after the snapshot
    assert ins.id_for("BTC-USDT") in f.resubscribe_requests


# ---- Gate ----------------------------------------------------------------------------
def test_gate_book_ticker(ins):
    q = parse(GateFeed(ins), "gate", "book_ticker.json").view(QUOTE_DTYPE)
    assert len(q) == 1
    r = q[0]
    assert r["kind"] == KIND_QUOTE and r["venue_id"] == 3 and r["instr_id"] == 1
    assert (r["bid_px"], r["bid_qty"], r["ask_px"], r["ask_qty"]) == (19177.79, 0.0003341504, 19179.38, 0.09)
    assert r["exch_ts_ns"] == 1606293275123 * 1_000_000
    assert r["venue_seq"] == 48733182


def test_gate_trades(ins):
    t = parse(GateFeed(ins), "gate", "trades.json").view(TRADE_DTYPE)
    assert len(t) == 1
    r = t[0]
    assert r["instr_id"] == ins.id_for("GT-USDT")
    assert r["side"] == -1
    assert (r["px"], r["qty"]) == (0.4705, 16.47)
    assert r["venue_seq"] == 309143071  # no id_market in this example: the trade id
    assert r["exch_ts_ns"] == 1606292218213457800  # "1606292218213.4578" ms, exact


def test_gate_order_book_update(ins):
    b = parse(GateFeed(ins), "gate", "order_book_update.json").view(BOOK_LEVEL_DTYPE)
    assert len(b) == 3
    assert list(b["side"]) == [1, 1, -1]
    assert list(b["px"]) == [19137.74, 19088.37, 19137.75]
    assert list(b["qty"]) == [0.0001, 0.0, 0.6135]  # "0" deletes
    assert list(b["venue_seq"]) == [48776306] * 3 and list(b["prev_seq"]) == [48776301] * 3
    assert list(b["flags"]) == [0, 0, F_UPDATE_END]
    assert set(b["exch_ts_ns"]) == {1606294781123 * 1_000_000}


def test_gate_full_snapshot_flags(ins):
    b = parse(GateFeed(ins), "gate", "order_book_update_full.json").view(BOOK_LEVEL_DTYPE)
    assert list(b["flags"]) == [F_SNAPSHOT_START, 0, F_SNAPSHOT_END | F_UPDATE_END]


@pytest.mark.parametrize("name", ["subscribe_reply.json", "pong.json"])
def test_gate_control_frames_give_no_records(ins, name):
    assert len(parse(GateFeed(ins), "gate", name)) == 0


def test_gate_rest_snapshot(ins):
    from feeds.base import Collector

    f = GateFeed(ins)
    c = Collector()
    iid = ins.id_for("BTC-USDT")
    assert f.on_snapshot(iid, frame("gate", "order_book_rest.json"), RECV, c.write) == 4
    book = f.states[iid].book
    assert book.best_bid() == (1.17, 201.863) and book.best_ask() == (1.52, 1.151)
    assert f.states[iid].last == 123456


# ---- every venue ------------------------------------------------------------------------
@pytest.mark.parametrize("feed_cls", [BinanceFeed, OkxFeed, GateFeed])
@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b"null", b'{"e":"trade"}', b"\xff\xfe", b'{"arg":1,"data":[]}',
                                 b'{"channel":"spot.book_ticker","event":"update","result":{"s":[]}}'])
def test_malformed_raises_frame_error_only(ins, feed_cls, bad):
    f = feed_cls(ins)
    try:
        out = f.parse(bad, RECV)
    except FrameError:
        return
    assert isinstance(out, np.ndarray) and len(out) == 0


def test_unknown_symbol_gets_an_id_and_is_looked_up_once(ins):
    f = BinanceFeed(ins)
    calls = []
    orig = ins.id_for_venue_symbol

    def spy(vsym, venue):
        calls.append(vsym)
        return orig(vsym, venue)

    ins.id_for_venue_symbol = spy
    for _ in range(3):
        f.parse(frame("binance", "book_ticker.json"), RECV)
    assert calls == ["BNBUSDT"]
    assert ins.name(f.parse(frame("binance", "book_ticker.json"), RECV)["instr_id"][0]) == "BNB-USDT"
    assert not math.isnan(f.parse(frame("binance", "book_ticker.json"), RECV)["f0"][0])
