"""Risk engine: each check and its reason code, exposure bookkeeping, account limits,
trading-state transitions, risk events and counters, and an allocation-free check path."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from common.config import RiskConfig
from common.enums import Exchange, OrderSide, TradingState
from common.instruments import Instruments
from ringbuf.counters import Counters, read_counters
from ringbuf.records import EVENT_RECORD_SIZE, KIND_RISK_EVENT, RISK_EVENT_DTYPE
from ringbuf.ring import Ring
from ringbuf.ringstat import counters_name, ring_name
from rms.engine import RiskEngine
from rms.reasons import Reason, reason_name
from strategy.orders import OrderRequest, RequestKind, Symbol
from strategy.state import MarketState

pytestmark = pytest.mark.unit

B = int(Exchange.BINANCE)
OX = int(Exchange.OKX)
NOW = 10_000_000_000
SYM = Symbol("BTC", "USDT", Exchange.BINANCE)
SYM_OKX = Symbol("BTC", "USDT", Exchange.OKX)


def make(**risk) -> tuple[RiskEngine, MarketState, Instruments]:
    ins = Instruments(["BTC-USDT", "ETH-USDT"])
    ins.add(Exchange.BINANCE, "BTC-USDT", tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)
    ins.add(Exchange.OKX, "BTC-USDT", tick_size=0.1, lot_size=0.00000001, min_qty=0.00001)
    ins.add(Exchange.BINANCE, "ETH-USDT", tick_size=0.01, lot_size=0.0001, min_qty=0.0001, min_notional=5.0)
    st = MarketState(8)
    st.set_quote(B, 1, 60000.0, 1.0, 60001.0, 1.0, NOW)
    st.set_quote(OX, 1, 60000.0, 1.0, 60001.0, 1.0, NOW)
    st.set_quote(B, 2, 3000.0, 1.0, 3000.5, 1.0, NOW)
    base = dict(max_orders_per_s=1000.0)
    base.update(risk)
    rms = RiskEngine(RiskConfig(**base), ins, st)
    return rms, st, ins


def buy(qty=0.001, px=59990.0, sym=SYM, instr=1, post_only=True, cid=""):
    r = OrderRequest.new_limit(sym, OrderSide.BUY, qty, px, post_only=post_only, cl_ord_id=cid)
    r.instr_id = instr
    return r


def sell(qty=0.001, px=60010.0, sym=SYM, instr=1, post_only=True, cid=""):
    r = OrderRequest.new_limit(sym, OrderSide.SELL, qty, px, post_only=post_only, cl_ord_id=cid)
    r.instr_id = instr
    return r


def opened(rms, req, cid):
    req.cl_ord_id = cid
    rms.on_order_open(req)


def test_plain_order_passes():
    rms, _, _ = make()
    assert rms.check(buy(), NOW) == 0
    assert rms.check(sell(), NOW) == 0


@pytest.mark.parametrize("req_fn,reason", [
    (lambda: buy(px=60000.0 * 0.97), Reason.PRICE_BAND),
    (lambda: buy(qty=2.0, px=59990.0), Reason.MAX_QTY),
    (lambda: buy(qty=0.9, px=59990.0), Reason.MAX_NOTIONAL),
    (lambda: buy(px=59990.005), Reason.BAD_TICK),
    (lambda: buy(qty=0.0010005), Reason.BAD_LOT),
    (lambda: buy(qty=0.00005, px=59990.0), Reason.MIN_NOTIONAL),
    (lambda: buy(px=60001.0), Reason.POST_ONLY_CROSS),
    (lambda: sell(px=60000.0), Reason.POST_ONLY_CROSS),
])
def test_per_order_reasons(req_fn, reason):
    rms, _, _ = make()
    assert rms.check(req_fn(), NOW) == reason
    assert rms.denied[reason] == 1


def test_min_qty_and_not_post_only_may_cross():
    rms, _, ins = make()
    ins.spec(B, 1).min_qty = 0.01
    rms.refresh_specs()
    assert rms.check(buy(qty=0.001), NOW) == Reason.MIN_QTY
    rms, _, _ = make()
    assert rms.check(buy(px=60001.0, post_only=False), NOW) == 0  # a taker order is allowed to cross


def test_bad_requests_and_unknown_instruments():
    rms, _, _ = make()
    r = OrderRequest(RequestKind.NEW, SYM, OrderSide.BUY, -1.0, 60000.0, instr_id=1)
    assert rms.check(r, NOW) == Reason.BAD_REQUEST
    r = OrderRequest(RequestKind.NEW, SYM, OrderSide.BUY, math.nan, 60000.0, instr_id=1)
    assert rms.check(r, NOW) == Reason.BAD_REQUEST
    r = OrderRequest(RequestKind.NEW, SYM, OrderSide.BUY, 0.001, math.inf, instr_id=1)
    assert rms.check(r, NOW) == Reason.BAD_REQUEST
    assert rms.check(buy(instr=0), NOW) == Reason.UNKNOWN_INSTRUMENT
    assert rms.check(buy(instr=7), NOW) == Reason.UNKNOWN_INSTRUMENT  # in range, no rules
    assert rms.check(buy(instr=999), NOW) == Reason.UNKNOWN_INSTRUMENT


def test_duplicate_client_id():
    rms, _, _ = make()
    first = buy(cid="abc1")
    assert rms.check(first, NOW) == 0
    rms.on_order_open(first)
    assert rms.check(buy(cid="abc1"), NOW) == Reason.DUPLICATE_ID
    rms.on_order_closed("abc1")
    assert rms.check(buy(cid="abc1"), NOW) == 0


def test_max_position_counts_open_orders_worst_case():
    rms, _, _ = make(max_position=0.003)
    for n in range(3):
        r = buy()
        assert rms.check(r, NOW) == 0
        opened(rms, r, f"b{n}")
    assert rms.check(buy(), NOW) == Reason.MAX_POSITION  # 3 open buys already reach the limit
    assert rms.check(sell(), NOW) == 0  # the other side is unaffected
    rms.on_fill("b0", B, 1, 1, 0.001, 59990.0)  # a fill moves quantity from open to position
    assert rms.position_of(B, 1) == pytest.approx(0.001)
    assert rms.open_qty(B, 1)[0] == pytest.approx(0.002)
    assert rms.check(buy(), NOW) == Reason.MAX_POSITION
    rms.on_order_closed("b1")  # cancelled: its quantity is released
    assert rms.check(buy(), NOW) == 0


def test_venue_and_total_notional():
    rms, _, _ = make(max_venue_notional=160.0, max_total_notional=250.0, max_position=1.0)
    r = buy(qty=0.002)  # ~120 USDT
    assert rms.check(r, NOW) == 0
    opened(rms, r, "v1")
    assert rms.check(buy(qty=0.001), NOW) == Reason.MAX_VENUE_NOTIONAL
    okx = buy(qty=0.002, px=59990.0, sym=SYM_OKX)
    assert rms.check(okx, NOW) == 0
    opened(rms, okx, "o1")
    assert rms.check(buy(qty=0.0005, px=59990.0, sym=SYM_OKX), NOW) == Reason.MAX_TOTAL_NOTIONAL
    rms.refresh(NOW)  # a full recomputation agrees with the incremental sums
    assert rms.total_exposure == pytest.approx(0.004 * 60000.5)


def test_max_open_orders():
    rms, _, _ = make(max_open_orders=2, max_position=1.0)
    for n in range(2):
        r = buy()
        assert rms.check(r, NOW) == 0
        opened(rms, r, f"x{n}")
    assert rms.check(sell(), NOW) == Reason.MAX_OPEN_ORDERS


def test_rate_limit_token_bucket_refills():
    rms, _, _ = make(max_orders_per_s=5.0, max_position=1.0)
    results = [rms.check(buy(), NOW) for _ in range(7)]
    assert results[:5] == [0] * 5
    assert results[5:] == [Reason.RATE_LIMIT] * 2
    assert rms.check(buy(), NOW + 200_000_000) == 0  # 0.2 s later: one token is back
    assert rms.check(buy(), NOW + 200_000_000) == Reason.RATE_LIMIT
    # cancels are never refused, even with an empty bucket
    assert rms.check(OrderRequest.cancel(SYM, "zz"), NOW + 200_000_000) == 0


def test_stale_and_resyncing_books():
    rms, st, _ = make(stale_md_ms=500.0)
    assert rms.check(buy(), NOW + 400_000_000) == 0
    assert rms.check(buy(), NOW + 600_000_000) == Reason.STALE_MD
    st.set_resync(B, 1, True)
    assert rms.check(buy(), NOW) == Reason.BOOK_RESYNC
    st.set_resync(B, 1, False)
    assert rms.check(buy(), NOW) == 0
    st2 = MarketState(8)
    rms2 = RiskEngine(RiskConfig(), make()[2], st2)
    assert rms2.check(buy(), NOW) == Reason.NO_REFERENCE


def test_stale_books_reports_each_episode_once():
    rms, st, _ = make(stale_md_ms=500.0, max_position=1.0)
    r = buy()
    rms.check(r, NOW)
    opened(rms, r, "s1")
    assert rms.stale_books(NOW + 100_000_000) == []
    assert rms.stale_books(NOW + 600_000_000) == [(B, 1)]
    assert rms.stale_books(NOW + 700_000_000) == []  # already pulled
    st.set_quote(B, 1, 60000.0, 1.0, 60001.0, 1.0, NOW + 800_000_000)
    assert rms.stale_books(NOW + 900_000_000) == []
    st.set_resync(B, 1, True)
    assert rms.stale_books(NOW + 900_000_000) == [(B, 1)]


def test_venue_not_ready():
    rms, _, _ = make()
    rms.set_venue_ready(B, False)
    assert rms.check(buy(), NOW) == Reason.VENUE_NOT_READY
    assert rms.check(buy(sym=SYM_OKX), NOW) == 0


def test_trading_state_transitions():
    rms, _, _ = make(max_position=1.0)
    assert rms.state is TradingState.ACTIVE
    rms.reduce_only("test")
    assert rms.state is TradingState.REDUCING
    assert rms.check(buy(), NOW) == Reason.REDUCING  # flat: nothing reduces
    assert rms.check(sell(), NOW) == Reason.REDUCING
    rms.on_fill("", B, 1, 1, 0.002, 60000.0)  # long 0.002
    assert rms.check(buy(), NOW) == Reason.REDUCING
    s1 = sell()
    assert rms.check(s1, NOW) == 0
    opened(rms, s1, "r1")
    assert rms.check(sell(), NOW) == 0
    assert rms.check(sell(qty=0.002), NOW) == Reason.REDUCING  # would flip short if all filled
    rms.halt("test halt")
    assert rms.state is TradingState.HALTED
    assert rms.take_kill_request() == "test halt"
    assert rms.take_kill_request() is None  # once
    assert rms.check(sell(), NOW) == Reason.HALTED
    assert rms.check(OrderRequest.cancel(SYM, "r1"), NOW) == 0
    assert rms.check(OrderRequest.cancel_all(Exchange.BINANCE), NOW) == 0
    rms.resume()
    assert rms.state is TradingState.ACTIVE
    assert rms.check(buy(), NOW) == 0


def test_amend_checks():
    rms, _, _ = make(max_position=0.002)
    r = buy()
    rms.check(r, NOW)
    opened(rms, r, "a1")
    ok = OrderRequest.amend(SYM, "a1", qty=0.001, price=59995.0)
    assert rms.check(ok, NOW) == 0
    assert rms.check(OrderRequest.amend(SYM, "nope", price=59995.0), NOW) == Reason.UNKNOWN_ORDER
    assert rms.check(OrderRequest.amend(SYM, "a1", price=60001.0), NOW) == Reason.POST_ONLY_CROSS
    assert rms.check(OrderRequest.amend(SYM, "a1", price=59995.001), NOW) == Reason.BAD_TICK
    assert rms.check(OrderRequest.amend(SYM, "a1", qty=0.003), NOW) == Reason.MAX_POSITION
    rms.halt("x")
    assert rms.check(ok, NOW) == Reason.HALTED


def test_fills_pnl_and_daily_loss_fires_kill_switch():
    rms, st, _ = make(max_position=1.0, daily_loss_limit=50.0, max_drawdown=1e9)
    rms.on_fill("", B, 1, 1, 0.01, 60000.0, fee=0.1)
    rms.on_fill("", B, 1, -1, 0.005, 60100.0)
    assert rms.position_of(B, 1) == pytest.approx(0.005)
    assert rms.realized_np.sum() == pytest.approx(0.5)
    assert rms.state is TradingState.ACTIVE
    st.set_quote(B, 1, 40000.0, 1.0, 40001.0, 1.0, NOW)  # marks down 20000 on 0.005: -100
    rms.refresh(NOW)
    assert rms.unrealized == pytest.approx(0.005 * (40000.5 - 60000.0))
    assert rms.state is TradingState.HALTED
    assert rms.take_kill_request().startswith("daily loss")


def test_drawdown_from_peak():
    rms, st, _ = make(max_position=1.0, daily_loss_limit=1e9, max_drawdown=30.0)
    rms.on_fill("", B, 1, 1, 0.01, 60000.0)
    st.set_quote(B, 1, 64000.0, 1.0, 64000.0, 1.0, NOW)
    rms.refresh(NOW)  # +40 equity: new peak
    assert rms.state is TradingState.ACTIVE
    st.set_quote(B, 1, 60500.0, 1.0, 60500.0, 1.0, NOW)
    rms.refresh(NOW)  # +5: 35 below the peak
    assert rms.state is TradingState.HALTED
    assert "drawdown" in rms.state_reason


def test_abnormal_reject_rate_halts():
    rms, _, _ = make(reject_window=10, max_reject_rate=0.5)
    for _ in range(10):
        rms.on_order_result(False)
    for _ in range(5):
        rms.on_order_result(True)
    assert rms.state is TradingState.ACTIVE  # 5/10 is not above 0.5
    rms.on_order_result(True)
    assert rms.state is TradingState.HALTED
    assert rms.reject_rate == pytest.approx(0.6)


def test_denials_counted_and_written_as_risk_events(shm_prefix, journal_dir):
    ring = Ring.create(ring_name(shm_prefix, "events"), 1024, EVENT_RECORD_SIZE, lossless=True)
    ring.claim_producer()
    cons = Ring.attach(ring_name(shm_prefix, "events"))
    cons.claim_consumer()
    ctr = Counters(counters_name(shm_prefix, "strategy"), "strategy")
    rms, st, ins = make()
    rms = RiskEngine(RiskConfig(), ins, st, counters=ctr, events_ring=ring)
    assert rms.check(buy(px=50000.0, cid="far1"), NOW) == Reason.PRICE_BAND
    assert rms.check(buy(px=50000.0), NOW) == Reason.PRICE_BAND
    assert rms.check(buy(px=60001.0), NOW) == Reason.POST_ONLY_CROSS
    snap = read_counters(counters_name(shm_prefix, "strategy"))["counters"]
    assert snap["rms.deny.price_band"] == 2
    assert snap["rms.deny.post_only_cross"] == 1
    assert snap["rms.checks"] == 0 or "rms.checks" in snap
    out = np.zeros(8, dtype=RISK_EVENT_DTYPE)
    n = cons.read_batch(out)
    assert n == 3
    assert (out["kind"][:3] == KIND_RISK_EVENT).all()
    assert out["reason"][0] == Reason.PRICE_BAND
    assert out["cl_ord_id"][0] == b"far1"
    assert out["limit_value"][0] == pytest.approx(200.0)
    assert out["text"][2] == b"post_only_cross"
    assert reason_name(int(out["reason"][2])) == "post_only_cross"
    rms.halt("limit breach test")
    n = cons.read_batch(out)
    assert n == 1 and out["reason"][0] == Reason.KILL_SWITCH and out["text"][0] == b"limit breach test"
    ctr.close()
    cons.close()
    ring.close()


def test_check_path_allocates_nothing():
    rms, _, _ = make(max_position=1e9, max_orders_per_s=1e12, max_venue_notional=1e12,
                     max_total_notional=1e12)
    ok = buy()
    denied = buy(px=50000.0)
    amend_base = buy()
    opened(rms, amend_base, "am1")
    amend = OrderRequest.amend(SYM, "am1", price=59991.0)
    for _ in range(1000):  # warm caches and free lists
        rms.check(ok, NOW)
        rms.check(denied, NOW)
        rms.check(amend, NOW)
    before = sys.getallocatedblocks()
    for _ in range(20_000):
        rms.check(ok, NOW)
        rms.check(denied, NOW)
        rms.check(amend, NOW)
    grown = sys.getallocatedblocks() - before
    assert grown < 50, f"check path keeps {grown} new blocks alive"


def test_cancel_replace_counts_both_until_the_old_closes():
    rms, _, _ = make(max_position=0.0025)
    r = buy()
    rms.check(r, NOW)
    opened(rms, r, "old1")
    rms.on_replaced("old1", "new1", 59995.0, 0.001)
    assert rms.open_qty(B, 1)[0] == pytest.approx(0.002)
    assert rms.check(buy(), NOW) == Reason.MAX_POSITION
    rms.on_order_closed("old1")
    assert rms.open_qty(B, 1)[0] == pytest.approx(0.001)
    assert rms.check(buy(), NOW) == 0
    rms.on_fill("new1", B, 1, 1, 0.001, 59995.0)
    rms.on_order_closed("new1")
    assert rms.open_qty(B, 1)[0] == 0.0 and rms.total_open == 0
