"""OMS against the venue simulator (real wire protocols on loopback) on Binance, OKX and Gate:
place, amend, cancel, partial fill, post-only reject, IOC, cancel_all, connection drops with orders
in flight, and the dead-man switch after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.config import load
from common.enums import Exchange, OrderSide, OrderState
from common.instruments import Instruments
from oms import OrderManager, OrderRequest, Reason, Symbol, apply_sim_urls
from ringbuf.records import (
    EVENT_RECORD_SIZE,
    FILL_DTYPE,
    KIND_FILL,
    KIND_ORDER_EVENT,
    KIND_POSITION,
    ORDER_EVENT_DTYPE,
    POSITION_DTYPE,
)
from ringbuf.ring import Ring

pytestmark = pytest.mark.integration
S = OrderState
VENUES = [Exchange.BINANCE, Exchange.OKX, Exchange.GATE]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sim():
    from sim.testing import run_sim

    with run_sim(symbols=["BTC-USDT", "ETH-USDT"], seed=7, rate=200) as s:
        yield s


@pytest.fixture
def fresh(sim):
    sim.control.reset()
    sim.control.pause_md()  # a still book: partial fills and crosses are deterministic
    yield sim
    sim.control.clear_faults()
    sim.control.resume_md()


def make_cfg(sim):
    cfg = load(text="")
    apply_sim_urls(cfg, sim.urls)
    for v in ("binance", "okx", "gate"):
        cfg.venue(v).order_rate = 100_000.0
        cfg.venue(v).order_burst = 10_000
        cfg.venue(v).cancel_rate = 100_000.0
        cfg.venue(v).cancel_burst = 10_000
    return cfg


async def until(cond, timeout_s: float = 20.0, what: str = "condition", detail=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 240))


def sym(v: Exchange, base: str = "BTC") -> Symbol:
    return Symbol(base, "USDT", v)


def venue_open(sim, v: Exchange) -> dict[str, dict]:
    out = {}
    for o in sim.control.open_orders(v.key, api_key="sim-key"):
        cid = o["client_order_id"]
        out[cid[2:] if v == Exchange.GATE and cid.startswith("t-") else cid] = o
    return out


def top(sim, v: Exchange, symbol: str = "BTC-USDT"):
    b = sim.control.book(v.key, symbol, depth=5)
    return (float(b["bids"][0][0]), float(b["bids"][0][1]), float(b["asks"][0][0]), float(b["asks"][0][1]))


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.key)
def test_place_amend_cancel(fresh, venue, shm_prefix):
    async def main():
        ring = Ring.create(f"{shm_prefix}-ev", 4096, EVENT_RECORD_SIZE, lossless=True)
        ring.claim_producer()
        ring.claim_consumer()
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]), events_ring=ring)
        await om.start([venue])
        events = []
        om.add_listener(events.append)
        bid, _, ask, _ = top(fresh, venue)
        o = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.98))
        assert o.state == S.NEW and o.venue_ord_id and o.acked_ns > o.sent_ns > 0
        assert o.cl_ord_id in venue_open(fresh, venue)
        # amend price and quantity
        new_px = round(bid * 0.97, 1)
        cl = om.submit(OrderRequest.amend(sym(venue), o.cl_ord_id, qty=0.02, price=new_px))
        assert cl, om.last_reject_reason
        live = om.order(cl)
        await until(lambda: live.state == S.NEW and abs(live.px - new_px) < 1e-6 and abs(live.qty - 0.02) < 1e-9,
                    what="amend")
        vo = venue_open(fresh, venue)[cl]
        assert abs(float(vo["price"]) - new_px) < 1e-6 and abs(float(vo["qty"]) - 0.02) < 1e-9
        if venue == Exchange.BINANCE:  # cancelReplace: the old order is gone, the new one carries on
            await until(lambda: o.state == S.CANCELED, what="replaced order cancelled")
            assert len(venue_open(fresh, venue)) == 1
        # cancel
        assert om.submit(OrderRequest.cancel(sym(venue), cl)) == cl
        await until(lambda: live.state == S.CANCELED, what="cancel")
        assert venue_open(fresh, venue) == {}
        assert om.stats()["counts"].get("illegal", 0) == 0
        await om.stop(cancel_all=False)
        # the events ring got every state change with increasing event_seq per order
        recs = ring.peek_batch(4096).copy().view(ORDER_EVENT_DTYPE)
        ring.advance(len(recs))
        ours = recs[recs["kind"] == KIND_ORDER_EVENT]
        seqs = {}
        for r in ours:
            k = r["cl_ord_id"].decode()
            assert r["event_seq"] > seqs.get(k, 0)
            seqs[k] = r["event_seq"]
        assert cl.encode() in set(ours["cl_ord_id"]) and int(ours[-1]["state"]) == int(S.CANCELED)
        ring.close()
        ring.unlink()

    run(main())


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.key)
def test_partial_fill_ioc_post_only(fresh, venue, shm_prefix):
    async def main():
        ring = Ring.create(f"{shm_prefix}-ev", 4096, EVENT_RECORD_SIZE, lossless=True)
        ring.claim_producer()
        ring.claim_consumer()
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]), events_ring=ring)
        await om.start([venue])
        fills = []
        om.add_listener(lambda e: fills.append(e) if e.kind.name == "FILL" else None)
        spec = om.instruments.spec(venue, om.instruments.id_for("BTC-USDT"))
        # GTC buy at the best ask for more than the level: takes the level, rests the rest
        _, _, ask, ask_qty = top(fresh, venue)
        qty = spec.round_qty(ask_qty + 0.5)
        o = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, qty, ask))
        await until(lambda: o.state == S.PARTIALLY_FILLED and o.filled_qty >= ask_qty - 1e-9, what="partial fill")
        assert 0 < o.filled_qty < o.qty and o.avg_px <= ask + 1e-9
        pos = om.positions.get(venue, o.instr_id)
        assert pos.qty == pytest.approx(o.filled_qty) and pos.fees > 0
        vo = venue_open(fresh, venue)[o.cl_ord_id]
        assert float(vo["filled_qty"]) == pytest.approx(o.filled_qty)
        om.submit(OrderRequest.cancel(sym(venue), o.cl_ord_id))
        await until(lambda: o.state == S.CANCELED, what="cancel of the partial")
        # IOC for more than the top level: fills what it can, the rest expires
        _, _, ask, ask_qty = top(fresh, venue)
        i = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, spec.round_qty(ask_qty + 0.3),
                                                        ask, ioc=True))
        await until(lambda: i.state.is_terminal and i.filled_qty > 0, what="IOC done")
        assert i.state in (S.EXPIRED, S.CANCELED) and i.filled_qty < i.qty
        assert i.cl_ord_id not in venue_open(fresh, venue)
        # post-only at the ask would take: refused with the one normalised reason
        _, _, ask, _ = top(fresh, venue)
        p = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, ask, post_only=True))
        await until(lambda: p.state.is_terminal, what="post-only outcome")
        assert p.state in (S.REJECTED, S.CANCELED) and p.reason == Reason.POST_ONLY_CROSS and p.filled_qty == 0
        assert len({f.trade_id for f in fills}) == len(fills)  # no fill applied twice
        assert pos.qty == pytest.approx(o.filled_qty + i.filled_qty)
        await om.stop(cancel_all=True)
        # every fill is one FILL record (unique trade id: the persistence key) and a POSITION snapshot
        raw = ring.peek_batch(4096).copy()
        ring.advance(len(raw))
        kinds = raw[:, 0]
        fill_recs = raw[kinds == KIND_FILL].view(FILL_DTYPE).ravel()
        pos_recs = raw[kinds == KIND_POSITION].view(POSITION_DTYPE).ravel()
        assert len(fill_recs) == len(fills) == len(pos_recs) > 0
        assert len(set(fill_recs["trade_id"])) == len(fill_recs)
        assert fill_recs["qty"].sum() == pytest.approx(o.filled_qty + i.filled_qty)
        assert pos_recs[-1]["position"] == pytest.approx(pos.qty)
        ring.close()
        ring.unlink()

    run(main())


def test_cancel_all_leaves_nothing_open(fresh):
    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start(VENUES)
        for v in VENUES:
            bid, _, ask, _ = top(fresh, v)
            for k in range(4):
                assert om.submit(OrderRequest.new_limit(sym(v), OrderSide.BUY, 0.01, bid * (0.95 - k * 0.01)))
                assert om.submit(OrderRequest.new_limit(sym(v), OrderSide.SELL, 0.01, ask * (1.05 + k * 0.01)))
        await until(lambda: all(len(venue_open(fresh, v)) == 8 for v in VENUES), what="orders resting")
        await om.cancel_all(Exchange.GATE)
        assert venue_open(fresh, Exchange.GATE) == {} and len(venue_open(fresh, Exchange.OKX)) == 8
        await om.cancel_all()
        for v in VENUES:
            assert venue_open(fresh, v) == {}
            assert om.open_orders(v) == []
        await om.stop(cancel_all=False)

    run(main())


@pytest.mark.slow
def test_order_connection_dropped_with_orders_in_flight(fresh):
    """Twenty drops of every order connection right after a burst of requests: afterwards every
    order is resolved, our open set equals the venue's, and filled quantities agree."""

    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start(VENUES)
        fresh.control.resume_md()
        for round_ in range(20):
            for v in VENUES:
                bid, _, ask, _ = top(fresh, v)
                om.submit(OrderRequest.new_limit(sym(v), OrderSide.BUY, 0.01, bid * 0.99))
                om.submit(OrderRequest.new_limit(sym(v), OrderSide.SELL, 0.01, ask * 1.01))
                om.submit(OrderRequest.new_limit(sym(v), OrderSide.BUY, 0.01, ask, ioc=True))
                resting = [o for o in om.open_orders(v) if o.state == S.NEW]
                if resting:
                    om.submit(OrderRequest.cancel(sym(v), resting[0].cl_ord_id))
            before = {k: st["reconnects"] for k, st in om.venue_status().items()}
            fresh.control.fault("all", "drop", scope="orders")
            await until(lambda b=before: all(st["reconnects"] > b[k] for k, st in om.venue_status().items()),
                        timeout_s=20, what="drop noticed on every venue", detail=om.venue_status)
            await until(lambda: all(om.venue_ready(v) for v in VENUES), timeout_s=60, what="reconnect + reconcile",
                        detail=om.venue_status)
            await asyncio.sleep(0.05)
            await check_consistent(om, fresh)
            if round_ % 5 == 4:
                await om.cancel_all()
        st = om.stats()
        assert st["counts"].get("illegal", 0) == 0
        assert sum(s["reconnects"] for s in om.venue_status().values()) >= 20 * 3
        await om.stop()

    async def check_consistent(om, sim):
        # pushes may still be arriving for the last requests: poll until consistent
        deadline = time.monotonic() + 20
        last = ""
        while time.monotonic() < deadline:
            last = mismatch(om, sim)
            if not last:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(last)

    def mismatch(om, sim) -> str:
        for v in VENUES:
            pend = [o for o in om.orders.values() if o.venue == v and o.state in
                    (S.UNKNOWN, S.PENDING_NEW, S.PENDING_CANCEL, S.PENDING_AMEND)]
            if pend:
                return f"{v.key}: unresolved {pend[:3]}"
            venue = venue_open(sim, v)
            ours = {o.cl_ord_id: o for o in om.open_orders(v)}
            if set(venue) != set(ours):
                return f"{v.key}: open sets differ: venue-only {set(venue) - set(ours)} ours-only {set(ours) - set(venue)}"
            for cl, vo in venue.items():
                if abs(float(vo["filled_qty"]) - ours[cl].filled_qty) > 1e-9:
                    return f"{v.key}: {cl} filled {ours[cl].filled_qty} vs venue {vo['filled_qty']}"
        return ""

    run(main())


DEADMAN_CHILD = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
from common.config import load
from common.enums import Exchange, OrderSide
from common.instruments import Instruments
from oms import OrderManager, OrderRequest, Symbol, apply_sim_urls

async def main():
    cfg = load(text="")
    apply_sim_urls(cfg, json.loads(sys.argv[2]))
    om = OrderManager(cfg, Instruments(["BTC-USDT"]), deadman_timeout_s=10, deadman_refresh_s=1)
    await om.start([Exchange.OKX, Exchange.GATE])
    for v, px in json.loads(sys.argv[3]).items():
        for k in range(3):
            o = await om.place_order(OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange[v]), OrderSide.BUY, 0.01,
                                                            px * (0.95 - 0.01 * k)))
            assert o.state.name == "NEW", o
    print("READY", flush=True)
    while True:
        await asyncio.sleep(1)

asyncio.run(main())
"""


@pytest.mark.slow
def test_deadman_switch_cancels_after_sigkill(fresh, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(DEADMAN_CHILD)
    pxs = {v.name: top(fresh, v)[0] for v in (Exchange.OKX, Exchange.GATE)}
    proc = subprocess.Popen([sys.executable, str(script), ROOT, json.dumps(fresh.urls), json.dumps(pxs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "READY" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"child failed: {proc.stderr.read()[-2000:]}")
        assert "READY" in line
        for v in (Exchange.OKX, Exchange.GATE):
            assert len(venue_open(fresh, v)) == 3
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 60  # OKX timeOut 10 s (its minimum), refreshed every second
        while time.monotonic() < deadline:
            if all(not venue_open(fresh, v) for v in (Exchange.OKX, Exchange.GATE)):
                break
            time.sleep(0.2)
        for v in (Exchange.OKX, Exchange.GATE):
            assert venue_open(fresh, v) == {}, f"{v.key} still has open orders after the dead-man timeout"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.key)
def test_rate_limit_reject_backs_off(fresh, venue):
    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start([venue])
        bid = top(fresh, venue)[0]
        fresh.control.fault(venue.key, "rate_limit", count=1)
        o = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.9))
        assert o.state == S.REJECTED and o.reason == Reason.RATE_LIMIT
        # the bucket now blocks new orders for the back-off, and says why
        assert om.submit(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.9)) == ""
        assert "rate limited" in om.last_reject_reason
        await asyncio.sleep(0.3)  # past the first back-off step (50 ms, doubling from there)
        o2 = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.9))
        assert o2.state == S.NEW
        await om.stop()

    run(main())


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.key)
def test_lost_ack_becomes_unknown_then_reconciled(fresh, venue):
    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start([venue])
        bid = top(fresh, venue)[0]
        fresh.control.fault(venue.key, "drop_ack", count=1)
        o = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.9), timeout=0.5)
        # Binance and Gate also push the order on their private streams, which may answer first
        assert o.state in (S.UNKNOWN, S.NEW)
        await until(lambda: o.state == S.NEW, what="UNKNOWN resolved by querying the venue")
        assert o.cl_ord_id in venue_open(fresh, venue)
        await om.stop()
        assert venue_open(fresh, venue) == {}

    run(main())


def test_binance_ed25519_session_logon(fresh, caplog):
    from sim.auth import TEST_ED25519_PRIVATE_KEY_B64

    async def main():
        cfg = make_cfg(fresh)
        b = cfg.venue("binance")
        b.key_type, b.api_key, b.secret_key = "ed25519", "sim-ed25519-key", TEST_ED25519_PRIVATE_KEY_B64
        om = OrderManager(cfg, Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start([Exchange.BINANCE])
        assert om.gateway(Exchange.BINANCE).session  # logged on: requests go unsigned
        bid = top(fresh, Exchange.BINANCE)[0]
        o = await om.place_order(OrderRequest.new_limit(sym(Exchange.BINANCE), OrderSide.BUY, 0.01, bid * 0.9))
        assert o.state == S.NEW
        om.submit(OrderRequest.cancel(sym(Exchange.BINANCE), o.cl_ord_id))
        await until(lambda: o.state == S.CANCELED, what="cancel")
        await om.stop()
        text = caplog.text + repr(om.venue_status()) + repr(om.stats())
        assert TEST_ED25519_PRIVATE_KEY_B64 not in text and "sim-secret" not in text

    run(main())


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.key)
def test_server_shutdown_notice_rotates_the_connection(fresh, venue):
    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start([venue])
        bid = top(fresh, venue)[0]
        o = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.9))
        fresh.control.fault(venue.key, "server_shutdown")
        await until(lambda: om.venue_status()[venue.key]["reconnects"] >= 1 and om.venue_ready(venue),
                    what="reconnected after the notice", detail=om.venue_status)
        assert o.state == S.NEW  # reconciliation kept the resting order
        o2 = await om.place_order(OrderRequest.new_limit(sym(venue), OrderSide.BUY, 0.01, bid * 0.9))
        assert o2.state == S.NEW
        await om.stop()

    run(main())


def test_restart_adopts_the_previous_session_orders(fresh):
    async def main():
        om1 = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om1.start(VENUES)
        placed = {}
        for v in VENUES:
            bid = top(fresh, v)[0]
            o = await om1.place_order(OrderRequest.new_limit(sym(v), OrderSide.BUY, 0.01, bid * 0.9))
            assert o.state == S.NEW
            placed[v] = o.cl_ord_id
        await om1.stop(cancel_all=False)  # a crash, as far as the venue can tell
        om2 = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om2.start(VENUES)
        for v in VENUES:
            o = om2.order(placed[v])
            assert o is not None and o.state == S.NEW and o.venue_ord_id and o.qty == pytest.approx(0.01)
        await om2.cancel_all()
        for v in VENUES:
            assert venue_open(fresh, v) == {} and om2.order(placed[v]).state == S.CANCELED
        await om2.stop()

    run(main())


def test_okx_batch_orders(fresh):
    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start([Exchange.OKX])
        bid = top(fresh, Exchange.OKX)[0]
        reqs = [OrderRequest.new_limit(sym(Exchange.OKX), OrderSide.BUY, 0.01, bid * (0.9 - 0.001 * k))
                for k in range(25)]
        cls = om.submit_many(reqs)
        assert all(cls) and len(set(cls)) == 25
        await until(lambda: all(om.order(c).state == S.NEW for c in cls), what="25 acks from 2 batches")
        assert set(cls) <= set(venue_open(fresh, Exchange.OKX))
        # a refused batch: every order in it is rejected, none left pending
        fresh.control.fault("okx", "rate_limit", count=1)
        cls2 = om.submit_many([OrderRequest.new_limit(sym(Exchange.OKX), OrderSide.BUY, 0.01, bid * 0.8)
                               for _ in range(3)])
        await until(lambda: all(om.order(c).state.is_terminal for c in cls2), what="batch answered")
        assert all(om.order(c).state == S.REJECTED and om.order(c).reason == Reason.RATE_LIMIT for c in cls2)
        gw = om.gateway(Exchange.OKX)
        assert gw.batched_requests == 28
        # cancels coalesced the same way; a refused batch of cancels leaves its orders working
        fresh.control.fault("okx", "rate_limit", count=1)
        assert all(om.submit_many([OrderRequest.cancel(sym(Exchange.OKX), c) for c in cls[:5]]))
        await until(lambda: all(om.order(c).state == S.NEW for c in cls[:5]), what="batch cancel refused")
        assert set(cls[:5]) <= set(venue_open(fresh, Exchange.OKX))
        # the refusal emptied the cancel bucket (client-side back-off): cancel what it lets through
        sent = 0
        for _ in range(100):
            todo = [c for c in cls if om.order(c).state == S.NEW]
            if not todo:
                break
            sent += sum(1 for c in om.submit_many([OrderRequest.cancel(sym(Exchange.OKX), c) for c in todo]) if c)
            await asyncio.sleep(0.2)  # 6 tokens at OKX's 30 cancels/s: batches of several
        await until(lambda: all(om.order(c).state == S.CANCELED for c in cls), what="25 cancels in batches")
        assert venue_open(fresh, Exchange.OKX) == {} and sent == 25
        assert 28 + 5 < gw.batched_requests <= 28 + 5 + 25
        await om.stop()
        assert venue_open(fresh, Exchange.OKX) == {}

    run(main())


def test_gate_cancels_coalesced_into_cancel_ids(fresh):
    async def main():
        om = OrderManager(make_cfg(fresh), Instruments(["BTC-USDT", "ETH-USDT"]))
        await om.start([Exchange.GATE])
        bid = top(fresh, Exchange.GATE)[0]
        cls = om.submit_many([OrderRequest.new_limit(sym(Exchange.GATE), OrderSide.BUY, 0.01, bid * (0.9 - 0.001 * k))
                              for k in range(6)])
        assert all(cls)
        await until(lambda: all(om.order(c).state == S.NEW for c in cls), what="6 acks")
        gw = om.gateway(Exchange.GATE)
        assert gw.batched_requests == 0  # Gate places one by one
        assert all(om.submit_many([OrderRequest.cancel(sym(Exchange.GATE), c) for c in cls]))
        await until(lambda: all(om.order(c).state == S.CANCELED for c in cls), what="6 cancels in one request")
        assert venue_open(fresh, Exchange.GATE) == {} and gw.batched_requests == 6
        await om.stop()

    run(main())


def _crash(om: OrderManager) -> None:
    """A SIGKILL as far as the venue and the events ring can tell: the connections vanish, no
    cancel, no dead-man disarm, nothing more written; the object is never used again."""
    om._stopping = True
    om.reconnect = False
    for t in [om._housekeeping, *(st.task for st in om._venues.values()), *om._bg]:
        if t is not None and not t.done():
            t.cancel()
    for st in om._venues.values():
        st.gw.drop()


def _drain(ring: Ring) -> tuple[np.ndarray, np.ndarray]:
    """Every unread record (raw, as the persist process gets them) and the FILL records among them."""
    out = []
    while True:
        raw = ring.peek_batch(4096)
        if not len(raw):
            break
        out.append(raw.copy())
        ring.advance(len(raw))
    raw = np.concatenate(out) if out else np.zeros((0, EVENT_RECORD_SIZE), np.uint8)
    return raw, raw[raw[:, 0] == KIND_FILL].view(FILL_DTYPE).ravel()


@pytest.mark.parametrize("with_db", [False, True], ids=["venue-fills-only", "postgres-snapshots"])
def test_fills_made_while_no_process_ran_are_recovered_after_a_kill(fresh, shm_prefix, with_db, request):
    """om1 trades (one taker fill it sees), leaves orders resting at the touch and dies; the sim
    fills them; om2 starts on the same events ring: every venue fill is in the ring (recovered
    ones flagged F_REPLAY), the resting orders are adopted as FILLED, and om2's positions equal
    the sum of all fills. With PostgreSQL (om1's records persisted as the persist process does),
    om2 continues from the stored snapshots, sends only the missing fills, and the database ends
    with every venue fill exactly once and om2's positions."""
    from ringbuf.records import F_REPLAY

    db_url = request.getfixturevalue("fresh_database") if with_db else None

    async def main():
        ring = Ring.create(f"{shm_prefix}-ev", 1 << 14, EVENT_RECORD_SIZE, lossless=True)
        ring.claim_producer()
        ring.claim_consumer()
        cfg = make_cfg(fresh)
        om1 = OrderManager(cfg, Instruments(["BTC-USDT", "ETH-USDT"]), events_ring=ring)
        await om1.start(VENUES)
        resting: dict[Exchange, list[str]] = {}
        for v in VENUES:
            bid, _, ask, ask_qty = top(fresh, v)
            spec = om1.instruments.spec(v, om1.instruments.id_for("BTC-USDT"))
            t = await om1.place_order(OrderRequest.new_limit(sym(v), OrderSide.BUY, spec.round_qty(min(ask_qty, 0.02)),
                                                             ask, ioc=True))
            await until(lambda t=t: t.state.is_terminal and t.filled_qty > 0, what=f"{v.key} taker fill")
            resting[v] = []
            for side, px in ((OrderSide.BUY, bid), (OrderSide.SELL, ask)):
                o = await om1.place_order(OrderRequest.new_limit(sym(v), side, 0.01, px))
                assert o.state == S.NEW, o
                resting[v].append(o.cl_ord_id)
        seen_by_om1 = {(int(v), tid) for v in VENUES for o in om1.orders.values() if o.venue == v
                       for tid in (o.trade_ids or ())}
        crash_ns = time.time_ns()
        snaps = {(int(p.venue), p.instr_id): (p.qty, p.avg_px, p.realized_pnl, p.fees, crash_ns)
                 for p in om1.positions.all()}
        _crash(om1)
        old_raw, old = _drain(ring)  # what the persist process would have stored by now
        writer = None
        if db_url:
            from persist.db import EventWriter

            writer = EventWriter(db_url, nice_backend=False)
            writer.write(old_raw)
        assert {(int(r["venue_id"]), r["trade_id"].decode()) for r in old} == seen_by_om1
        assert not (old["flags"] & F_REPLAY).any()
        # nobody is connected: the market moves up through the resting sells, then down through the bids
        fresh.control.trigger(True, interval_ms=300, jump_bps=60, symbol="BTC-USDT")
        fresh.control.resume_md()
        try:
            await until(lambda: any(not venue_open(fresh, v) for v in VENUES) or
                        all(len(venue_open(fresh, v)) < 2 for v in VENUES), 15, "the first jump")
            fresh.control.trigger(True, interval_ms=300, jump_bps=180, symbol="BTC-USDT")
            await until(lambda: all(not venue_open(fresh, v) for v in VENUES), 15, "the resting orders to fill",
                        detail=lambda: {v.key: list(venue_open(fresh, v)) for v in VENUES})
        finally:
            fresh.control.trigger(False)
            fresh.control.pause_md()
        venue_fills = {v: fresh.control.fills(v.key) for v in VENUES}
        for v in VENUES:
            assert len(venue_fills[v]) >= 3, venue_fills[v]
        all_ids = {(int(v), str(f["trade_id"])) for v in VENUES for f in venue_fills[v]}
        missing = all_ids - seen_by_om1
        assert missing  # fills om1 never saw

        source = None
        if db_url:
            from persist.queries import position_source

            source = position_source(db_url)
            stored, persisted = source(crash_ns - 3_600_000_000_000)
            assert set(stored) == set(snaps) and set(persisted) == seen_by_om1
            for k, (q, *_rest) in snaps.items():
                assert stored[k][0] == pytest.approx(q)

        ring.claim_producer()
        om2 = OrderManager(cfg, Instruments(["BTC-USDT", "ETH-USDT"]), events_ring=ring, position_source=source)
        heard = []
        om2.add_listener(heard.append)
        await om2.start(VENUES)
        new_raw, new = _drain(ring)
        assert (new["flags"] & F_REPLAY).all()
        new_ids = [(int(r["venue_id"]), r["trade_id"].decode()) for r in new]
        assert len(new_ids) == len(set(new_ids))  # om2 writes each trade once
        recovered = set(new_ids)
        if db_url:
            assert recovered == missing  # what was stored already is not sent again
        else:
            assert recovered == all_ids
        # every venue fill is in the ring exactly once per trade id after dedup (what persist keeps)
        assert seen_by_om1 | recovered == all_ids
        assert not any(e.kind.name == "FILL" for e in heard)  # start-up recovery: positions carry them
        for v in VENUES:
            for cl in resting[v]:
                o = om2.order(cl)
                assert o is not None and o.state == S.FILLED and o.filled_qty == pytest.approx(0.01), o
            want = sum(float(f["qty"]) * (1 if f["side"] == "buy" else -1) for f in venue_fills[v])
            pos = om2.positions.get(v, om2.instruments.id_for("BTC-USDT"))
            assert pos.qty == pytest.approx(want, abs=1e-9), (v, pos)
            assert pos.fees > 0
        assert om2.open_orders() == []
        st = om2.stats()
        assert st["by_state"].get("UNKNOWN", 0) == 0
        if writer is not None:
            import psycopg

            writer.write(new_raw)
            writer.write(new_raw)  # a replay after a persist restart: harmless
            writer.close()
            with psycopg.connect(db_url) as conn:
                rows = conn.execute("SELECT venue, trade_id FROM fills").fetchall()
                assert len(rows) == len(set(rows)) and set(rows) == all_ids
                for (v, iid), (q, *_rest) in position_source(db_url)(0)[0].items():
                    assert q == pytest.approx(om2.positions.get(v, iid).qty, abs=1e-9)
        await om2.stop()
        ring.close()
        ring.unlink()

    run(main())
