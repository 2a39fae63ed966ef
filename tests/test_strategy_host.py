"""Strategy host with real shared-memory rings written by the test and a fake OMS: state
arrays, the strategy's callbacks, risk on the way out, order events on the way back,
malformed records, resync pulls, the kill switch and the control segment."""

from __future__ import annotations

import asyncio
import time

import pytest

from common.config import load
from common.enums import Exchange, OrderSide, TradingState
from ringbuf.counters import Counters, read_counters
from ringbuf.records import (
    EVENT_RECORD_SIZE,
    F_SNAPSHOT_END,
    F_SNAPSHOT_START,
    MD_RECORD_SIZE,
    RISK_EVENT_DTYPE,
)
from ringbuf.ring import Ring
from ringbuf.ringstat import counters_name, ring_name
from rms.control import ControlBlock
from rms.reasons import Reason
from strategy.api import Strategy
from strategy.host import AsyncIdle, StrategyHost, apply_urls, run_strategy_process
from strategy.market_making import MarketMaker
from strategy.orders import OrderRequest, RequestKind, Symbol
from tests.test_strategy_fakes import (
    OX,
    B,
    FakeOMS,
    instruments,
    write_level,
    write_quote,
    write_reset,
    write_trade,
)

pytestmark = pytest.mark.unit

CFG_TEXT = """
[strategy.market_making]
spread_bps = 10.0
order_size = 0.001
max_position = 0.003
symbols = ["BTC-USDT"]
venues = ["binance", "okx"]
requote_threshold_bps = 2.0
min_order_lifetime_ms = 0.0
[risk]
max_orders_per_s = 1000.0
"""


class Recorder(Strategy):
    """Records what the host hands it; optionally returns a request per quote."""

    def __init__(self, order_on_quote=False, batch_mode=False):
        self.seen = []
        self.batches = 0
        self.events = []
        self.denied = []
        self.started = False
        self.order_on_quote = order_on_quote
        self.batch_mode = batch_mode

    def on_start(self, ctx):
        self.ctx = ctx
        self.started = True

    def on_market_data(self, md):
        self.seen.append((md.kind, md.venue_id, md.instr_id, md.symbol, md.bid_px, md.ask_px, md.px,
                          md.book_valid, md.book_resyncing))
        if self.order_on_quote and md.is_quote:
            r = OrderRequest.new_limit(self.ctx.symbol(md.venue_id, md.instr_id), OrderSide.BUY, 0.001,
                                       round(md.bid_px - 10.0, 2), post_only=True)
            r.instr_id = md.instr_id
            return [r]
        return None

    def on_end_of_batch(self):
        self.batches += 1

    def on_order_event(self, ev):
        self.events.append((ev.kind, ev.order.cl_ord_id))

    def on_request_denied(self, req, code, reason):
        self.denied.append((code, reason))


@pytest.fixture
def rings(shm_prefix, journal_dir):
    md = {v: Ring.create(ring_name(shm_prefix, f"md-{Exchange(v).key}"), 1024, MD_RECORD_SIZE) for v in (B, OX)}
    for r in md.values():
        r.claim_producer()
    cons = [Ring.attach(r.name) for r in md.values()]
    for c in cons:
        c.claim_consumer()
    ev = Ring.create(ring_name(shm_prefix, "events"), 1024, EVENT_RECORD_SIZE, lossless=True)
    ev.claim_producer()
    yield md, cons, ev
    for r in [*md.values(), *cons, ev]:
        r.close()


def make_host(rings, strategy, oms=None, control=None, counters=None):
    md, cons, ev = rings
    cfg = load(text=CFG_TEXT)
    oms = oms or FakeOMS()
    host = StrategyHost(cfg, instruments(), strategy, oms, cons, events_ring=ev, control=control,
                        counters=counters, venues=[B, OX])
    host.on_timer(time.monotonic_ns())
    strategy.on_start(host.ctx)
    host.started = True
    return host, md, oms


def test_quotes_update_state_and_reach_the_strategy(rings):
    s = Recorder()
    host, md, _ = make_host(rings, s)
    write_quote(md[B], B, 1, 60000.0, 60001.0, bid_qty=2.0)
    write_trade(md[B], B, 1, 60000.5, 0.1)
    write_quote(md[OX], OX, 2, 3000.0, 3000.5)
    assert host.poll_once() == 3
    st = host.state
    assert st.bid_px[B, 1] == 60000.0 and st.ask_px[B, 1] == 60001.0 and st.bid_qty[B, 1] == 2.0
    assert st.valid[B, 1] == 1 and st.valid[OX, 2] == 1 and st.valid[OX, 1] == 0
    assert st.last_trade_px[B, 1] == 60000.5
    assert s.seen[0][:6] == (1, B, 1, "BTC-USDT", 60000.0, 60001.0)
    assert s.seen[1][0] == 2 and s.seen[1][6] == 60000.5  # trade price, book from state
    assert s.seen[2][3] == "ETH-USDT"
    assert s.batches == 2  # one per ring that had work
    assert host.poll_once() == 0


def test_malformed_records_are_counted_and_skipped(rings):
    s = Recorder()
    host, md, _ = make_host(rings, s)
    write_quote(md[B], 9, 1, 1.0, 2.0)  # unknown venue id
    write_quote(md[B], B, 60000, 1.0, 2.0)  # instrument id out of range
    write_quote(md[B], B, 1, float("nan"), 2.0)
    md[B].write_bytes(bytes([77]) + bytes(63))  # unknown kind
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    host.poll_once()
    assert host.malformed == 4
    assert len(s.seen) == 1 and host.state.valid[B, 1] == 1


def test_resync_and_snapshot_flags(rings):
    s = Recorder()
    host, md, _ = make_host(rings, s)
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    write_reset(md[B], B, 1)
    host.poll_once()
    assert host.state.resync[B, 1] == 1 and host.state.valid[B, 1] == 0
    write_quote(md[B], B, 1, 60000.0, 60001.0)  # quotes do not end a depth resync
    host.poll_once()
    assert host.state.valid[B, 1] == 0 and s.seen[-1][8] is True
    write_level(md[B], B, 1, 1, 60000.0, 1.0, flags=F_SNAPSHOT_START)
    write_level(md[B], B, 1, -1, 60001.0, 1.0, flags=F_SNAPSHOT_END)
    host.poll_once()
    assert host.state.resync[B, 1] == 0 and host.state.valid[B, 1] == 1


def test_batch_mode_calls_end_of_batch_only(rings):
    s = Recorder(batch_mode=True)
    host, md, _ = make_host(rings, s)
    for n in range(5):
        write_quote(md[B], B, 1, 60000.0 + n, 60001.0 + n)
    host.poll_once()
    assert s.seen == [] and s.batches == 1
    assert host.state.bid_px[B, 1] == 60004.0


def test_requests_pass_risk_then_reach_the_oms(rings):
    s = Recorder(order_on_quote=True)
    host, md, oms = make_host(rings, s)
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    host.poll_once()
    assert len(oms.orders) == 1 and host.orders_sent == 1
    cid = next(iter(oms.orders))
    assert host.rms.open_qty(B, 1)[0] == pytest.approx(0.001)
    assert host.lat_n == 1 and host.lat[0] > 0
    oms.ack(cid)
    oms.fill(cid, 0.001, 59990.0)
    host.poll_once()
    assert [k for k, _ in s.events] == ["ACK", "FILL"]
    assert host.rms.position_of(B, 1) == pytest.approx(0.001)
    assert host.rms.open_qty(B, 1)[0] == 0.0
    # a request risk denies goes back to the strategy with its reason
    write_quote(md[B], B, 1, 60000.0, 60001.0, flags=0)
    host.rms.halt("test")
    host.poll_once()
    assert s.denied[-1] == (Reason.HALTED, "halted")
    assert len(oms.orders) == 1


class CorkingOMS(FakeOMS):
    """A FakeOMS that logs cork / submit / uncork in order (a real OMS holds socket writes
    between cork and uncork)."""

    def __init__(self):
        super().__init__()
        self.log = []

    def cork(self):
        self.log.append("cork")

    def uncork(self):
        self.log.append("uncork")

    def submit(self, req):
        self.log.append("submit")
        return super().submit(req)


def test_orders_decided_on_several_venues_in_one_poll_leave_together(rings):
    """A jump reaching two venues: both decisions are made before either order is written."""
    from strategy.host import POLL_CORK_RECORDS

    s = Recorder(order_on_quote=True)
    oms = CorkingOMS()
    host, md, _ = make_host(rings, s, oms=oms)
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    write_quote(md[OX], OX, 1, 60000.0, 60001.0)
    host.poll_once()
    assert oms.log == ["cork", "submit", "submit", "uncork"]
    assert len(oms.orders) == 2
    oms.log.clear()
    assert host.poll_once() == 0 and oms.log == []  # nothing found: no cork at all
    # a burst on one ring: past POLL_CORK_RECORDS records the decided orders go out at once
    for i in range(POLL_CORK_RECORDS + 2):
        write_quote(md[B], B, 1, 60000.0 + i, 60001.0 + i)
    host.poll_once()
    assert oms.log[:POLL_CORK_RECORDS + 2] == ["cork"] + ["submit"] * POLL_CORK_RECORDS + ["uncork"]
    assert oms.log.count("cork") == oms.log.count("uncork") == 1


def test_oms_refusal_reaches_the_strategy(rings):
    s = Recorder(order_on_quote=True)
    host, md, oms = make_host(rings, s)
    oms.refuse_next = True
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    host.poll_once()
    assert s.denied == [(Reason.OMS_REJECT, "refused by test")]
    assert host.oms_refused == 1 and host.rms.total_open == 0


def test_strategy_exceptions_are_contained(rings):
    class Boom(Strategy):
        def on_market_data(self, md):
            raise RuntimeError("bug in user code")

    host, md, _ = make_host(rings, Boom())
    for _ in range(25):
        write_quote(md[B], B, 1, 60000.0, 60001.0)
    host.poll_once()
    assert host.strategy_errors == 25
    assert host.rms.state is TradingState.HALTED  # a strategy that keeps failing is stopped


def test_market_maker_end_to_end_with_resync_pull(rings):
    cfg = load(text=CFG_TEXT)
    mm = MarketMaker(cfg.market_making)
    host, md, oms = make_host(rings, mm)
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    write_quote(md[OX], OX, 1, 60000.0, 60000.1)
    host.poll_once()
    news = oms.new_requests(RequestKind.NEW)
    assert len(news) == 4  # bid + ask on two venues
    for r in news:
        best_bid = host.state.bid_px[int(r.venue), 1]
        best_ask = host.state.ask_px[int(r.venue), 1]
        assert (r.px < best_ask) if r.side == OrderSide.BUY else (r.px > best_bid)
    for cid in list(oms.orders):
        oms.ack(cid)
    host.poll_once()
    assert len(oms.open_orders()) == 4
    write_reset(md[OX], OX, 1)  # the OKX book resyncs: its quotes are pulled
    host.poll_once()
    cancels = oms.new_requests(RequestKind.CANCEL)
    assert sorted(c.target_cl_ord_id for c in cancels) == sorted(o.cl_ord_id for o in oms.open_orders(Exchange.OKX))
    for o in oms.open_orders(Exchange.OKX):
        oms.cancel_ack(o.cl_ord_id)
    host.poll_once()
    assert len(oms.open_orders()) == 2 and host.rms.total_open == 2


def test_rms_pulls_resting_orders_on_stale_book(rings):
    s = Recorder(order_on_quote=True)
    host, md, oms = make_host(rings, s)
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    host.poll_once()
    oms.ack(next(iter(oms.orders)))
    host.poll_once()
    host.on_timer(time.monotonic_ns() + 5_000_000_000)  # 5 s without an update
    assert len(oms.new_requests(RequestKind.CANCEL)) == 1


def test_kill_switch_and_control_segment(rings, shm_prefix):
    ctl = ControlBlock.create(shm_prefix)
    monitor = ControlBlock.attach(shm_prefix)
    ctr = Counters(counters_name(shm_prefix, "strategy"), "strategy")
    s = Recorder(order_on_quote=True)
    host, md, oms = make_host(rings, s, oms=FakeOMS(auto_ack=True), control=ctl, counters=ctr)
    _, _, ev = rings
    ev_cons = Ring.attach(ev.name)
    ev_cons.claim_consumer()

    async def scenario():
        for n in range(3):
            write_quote(md[B], B, 1, 60000.0 + n, 60001.0 + n)
            host.poll_once()
        assert len(oms.open_orders()) == 3
        monitor.request_halt("operator says stop")
        host.on_timer(time.monotonic_ns())
        assert host.rms.state is TradingState.HALTED
        await host._kill_task
        assert oms.open_orders() == []
        assert host.last_kill_ms >= 0
        st = monitor.status()
        assert st["state"] == "HALTED" and st["reason"] == "operator says stop" and st["kills"] == 1
        write_quote(md[B], B, 1, 60010.0, 60011.0)
        host.poll_once()
        assert len(oms.orders) == 3  # halted: nothing new
        monitor.request_resume("go")
        host.on_timer(time.monotonic_ns())
        assert monitor.status()["state"] == "ACTIVE"
        write_quote(md[B], B, 1, 60010.0, 60011.0)
        host.poll_once()
        assert len(oms.orders) == 4

    asyncio.run(scenario())
    host.publish()
    out = ev_cons.read_batch(__import__("numpy").zeros(16, dtype=RISK_EVENT_DTYPE))
    assert out >= 2  # the halt and the resume are on the events ring
    c = read_counters(counters_name(shm_prefix, "strategy"))["counters"]
    assert c["rms.kill_switch"] == 1 and c["host.orders_sent"] == 4
    for x in (monitor, ctl, ev_cons):
        x.close()
    ctr.close()


def test_run_waits_for_oms_ready_then_stops_flat(rings):
    s = Recorder(order_on_quote=True)
    md, cons, ev = rings
    cfg = load(text=CFG_TEXT)
    oms = FakeOMS(auto_ack=True, ready=False)
    host = StrategyHost(cfg, instruments(), s, oms, cons, events_ring=ev, venues=[B, OX],
                        idle=AsyncIdle("backoff"))

    async def scenario():
        task = asyncio.ensure_future(host.run(ready_timeout_s=60.0))
        write_quote(md[B], B, 1, 60000.0, 60001.0)
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert oms.started and not s.started and not oms.orders  # not ready: no quoting
        oms.ready = {1: True, 2: True, 3: True}
        deadline = time.monotonic() + 30
        while not oms.orders and time.monotonic() < deadline:
            write_quote(md[B], B, 1, 60000.0, 60001.0)
            await asyncio.sleep(0.01)
        assert s.started and oms.orders
        deadline = time.monotonic() + 30
        while host.idle.sleeps == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert host.idle.sleeps > 0  # a quiet loop sleeps (gives the core away)
        host.request_stop("SIGTERM")
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(scenario()) == 0
    assert oms.open_orders() == [] and oms.stopped
    assert host.rms.state is TradingState.HALTED


def test_apply_urls_and_bad_config(tmp_path, capsys):
    cfg = load(text=CFG_TEXT)
    apply_urls(cfg, {"binance": {"rest": "http://127.0.0.1:1", "ws": "ws://127.0.0.1:1/ws",
                                 "ws_api": "ws://127.0.0.1:1/ws-api/v3"},
                     "okx": {"rest": "http://127.0.0.1:2", "ws_public": "ws://127.0.0.1:2/pub",
                             "ws_private": "ws://127.0.0.1:2/priv"}})
    assert cfg.exchanges["binance"].ws_api_url == "ws://127.0.0.1:1/ws-api/v3"
    assert cfg.exchanges["okx"].ws_url == "ws://127.0.0.1:2/pub"
    assert cfg.exchanges["okx"].ws_api_url == "ws://127.0.0.1:2/priv"
    bad = tmp_path / "bad.toml"
    bad.write_text("[strategy.market_making]\nspread_bps = -1\n")
    assert run_strategy_process(str(bad), "tbad", None, ["binance"]) == 2
    assert "spread_bps" in capsys.readouterr().err
    assert run_strategy_process(None, "tbad", None, ["nasdaq"]) == 2


def test_symbol_cache():
    cfg = load(text=CFG_TEXT)
    host = StrategyHost(cfg, instruments(), Strategy(), FakeOMS(), [], venues=[B])
    assert host.ctx.symbol(B, 1) == Symbol("BTC", "USDT", Exchange.BINANCE)
    assert host.ctx.symbol(B, 1) is host.ctx.symbol(B, 1)


def test_orders_left_by_an_earlier_run_are_cancelled_before_the_strategy_starts(rings):
    md, cons, ev = rings
    oms = FakeOMS(auto_ack=False)
    old = OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange.BINANCE), OrderSide.BUY, 0.001, 59000.0)
    old.instr_id = 1
    cid = oms.submit(old)
    oms.ack(cid)
    oms.requests.clear()
    s = Recorder()
    host = StrategyHost(load(text=CFG_TEXT), instruments(), s, oms, cons, events_ring=ev, venues=[B, OX])

    async def scenario():
        task = asyncio.ensure_future(host.run(ready_timeout_s=10))
        deadline = time.monotonic() + 30
        while not s.started and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        host.request_stop("test")
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(scenario()) == 0
    first = oms.requests[0]
    assert first.kind == RequestKind.CANCEL and first.target_cl_ord_id == cid
    assert host.rms.total_open == 0


def test_bursts_are_read_in_bulk_and_a_lapped_reader_counts_its_losses(rings):
    s = Recorder()
    host, md, _ = make_host(rings, s)
    for n in range(200):
        write_quote(md[B], B, 1, 60000.0 + n, 60001.0 + n)
    write_quote(md[B], 9, 1, 1.0, 2.0)  # malformed inside the burst
    host.poll_once()
    assert len(s.seen) == 200 and host.malformed == 1
    assert [x[4] for x in s.seen] == [60000.0 + n for n in range(200)]  # in order, state per record
    assert host.state.bid_px[B, 1] == 60199.0
    for n in range(3000):  # the ring holds 1024: the reader is lapped
        write_quote(md[B], B, 1, 70000.0 + n, 70001.0 + n)
    while host.poll_once():
        pass
    assert host.rings[0].lost >= 3000 - 1024
    assert s.seen[-1][4] == 72999.0
    assert 200 + 1024 - 1 <= len(s.seen) <= 200 + 1024


def test_l2_books_for_strategies_that_want_them(rings):
    class L2(Recorder):
        wants_l2 = True

    s = L2()
    host, md, _ = make_host(rings, s)
    write_level(md[B], B, 1, 1, 60000.0, 1.0, flags=F_SNAPSHOT_START)
    write_level(md[B], B, 1, 1, 59999.0, 2.0)
    write_level(md[B], B, 1, -1, 60001.0, 3.0, flags=F_SNAPSHOT_END)
    host.poll_once()
    book = host.ctx.book(B, 1)
    assert book.valid and book.best_bid() == (60000.0, 1.0) and book.best_ask() == (60001.0, 3.0)
    write_level(md[B], B, 1, 1, 60000.0, 0.0)  # delete the best bid
    host.poll_once()
    assert book.best_bid() == (59999.0, 2.0)
    write_reset(md[B], B, 1)
    host.poll_once()
    assert not book.valid
    plain, _, _ = make_host(rings, Recorder())
    assert plain.ctx.book(B, 1) is None


def test_event_kind_names_enums_strings_and_named_objects():
    from enum import Enum, IntEnum

    from oms.state import EventKind
    from strategy.api import event_kind

    class Ev:
        def __init__(self, kind):
            self.kind = kind

    class Plain(Enum):
        FILL = "f"

    class Named:
        name = "AMENDED"

    class Other(IntEnum):
        ACK = 3  # same value as EventKind.FILL: the name, not the value, decides

    assert [event_kind(Ev(k)) for k in EventKind] == [k.name for k in EventKind]
    assert event_kind(Ev("ack")) == "ACK" and event_kind(Ev("FILL")) == "FILL"
    assert event_kind(Ev(Plain.FILL)) == "FILL"
    assert event_kind(Ev(Named())) == "AMENDED"
    assert event_kind(Ev(Other.ACK)) == "ACK" and event_kind(Ev(EventKind.FILL)) == "FILL"
    assert event_kind(Ev(7)) == "7"
