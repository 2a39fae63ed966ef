"""Strategy host benchmarks, each beside a baseline measured in the same run:

- host loop cost per market-data record (quote records in a real shared-memory ring, state
  arrays updated, the strategy called) vs two naive loops: ready-made dict messages from a
  deque (no transport at all: a lower bound) and the same dicts through a
  multiprocessing.Queue (the usual multi-process shape), each into a dict-of-dicts state;
- record read -> market-maker decision -> request handed to the OMS (risk included), p50,
  vs a naive single-process bot (JSON frame -> json.loads -> Decimal quote maths -> order
  dicts -> a naive dict-based risk check per order), timed from the frame to the last order;
  beside it, the poll that handles the venue's answers (two AMENDED events: risk bookkeeping
  and the market maker's slots), the order-event path that bounds order throughput.

    .venv/bin/pytest benches/bench_strategy.py --benchmark-only --benchmark-group-by=group
    .venv/bin/python -m benches.bench_strategy [--records 20000]     # percentiles table
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest

from benches.bench_rms import NaiveRisk
from common.config import load
from common.enums import Exchange, OrderSide, OrderState
from common.instruments import Instruments
from ringbuf import shm
from ringbuf.records import KIND_QUOTE, MD_RECORD_SIZE, QUOTE_STRUCT
from ringbuf.ring import Ring
from strategy.api import Strategy
from strategy.host import AsyncIdle, StrategyHost
from strategy.market_making import MarketMaker
from strategy.orders import OrderRequest, Symbol

BATCH = 4096
OKX = int(Exchange.OKX)
CFG = """
[strategy.market_making]
spread_bps = 4.0
order_size = 0.001
max_position = 1.0
symbols = ["BTC-USDT"]
venues = ["okx"]
requote_threshold_bps = 0.5
min_order_lifetime_ms = 0.0
[risk]
max_orders_per_s = 1e12
max_position = 10.0
max_venue_notional = 1e15
max_total_notional = 1e15
max_open_orders = 1000000000
"""


def instruments() -> Instruments:
    ins = Instruments(["BTC-USDT"])
    ins.add(Exchange.OKX, "BTC-USDT", tick_size=0.1, lot_size=0.00000001, min_qty=0.00001)
    return ins


class _Order:
    __slots__ = ("cl_ord_id", "venue", "instr_id", "side", "px", "qty", "filled_qty", "state")
    cl_ord_id: str
    venue: Any
    instr_id: int
    side: Any
    px: float
    qty: float
    filled_qty: float
    state: OrderState


class _Event:
    __slots__ = ("order", "kind", "fill_qty", "fill_px", "fee")
    order: _Order
    kind: str
    fill_qty: float
    fill_px: float
    fee: float


class StubOMS:
    """The OMS contract's synchronous surface: `submit` returns an id at once (the real OMS
    encodes, signs and sends there; that cost is the OMS's benchmark, not this one) and the
    venue 'acknowledges' each request on the next poll."""

    def __init__(self) -> None:
        self.n = 0
        self.orders: dict[str, _Order] = {}
        self.listeners: list[Callable[[Any], None]] = []
        self.submitted = 0

    def add_listener(self, fn) -> None:
        self.listeners.append(fn)

    def venue_ready(self, venue) -> bool:
        return True

    def open_orders(self, venue=None, instr_id=None):
        return []

    def order(self, cid):
        return self.orders.get(cid)

    def submit(self, req) -> str:
        self.submitted += 1
        k = req.kind
        if k == 1:
            self.n += 1
            cid = f"b{self.n}"
            o = _Order()
            o.cl_ord_id, o.venue, o.instr_id, o.side = cid, req.venue, req.instr_id, req.side
            o.px, o.qty, o.filled_qty, o.state = req.px, req.qty, 0.0, OrderState.NEW
            self.orders[cid] = o
            self._emit(o, "ACK")
            return cid
        o = self.orders[req.target_cl_ord_id]
        if k == 3:
            o.px = req.px
            self._emit(o, "AMENDED")
        elif k == 2:
            o.state = OrderState.CANCELED
            self._emit(o, "CANCELED")
        return o.cl_ord_id

    def _emit(self, o, kind) -> None:
        ev = _Event()
        ev.order, ev.kind, ev.fill_qty, ev.fill_px, ev.fee = o, kind, 0.0, 0.0, 0.0
        for fn in self.listeners:
            fn(ev)


class Null(Strategy):
    def __init__(self) -> None:
        self.n = 0

    def on_market_data(self, md):
        self.n += 1
        return None


def make_ring():
    name = f"bs{uuid.uuid4().hex[:8]}-ring-md-okx"
    prod = Ring.create(name, 1 << 14, MD_RECORD_SIZE, replace=True)
    prod.claim_producer()
    cons = Ring.attach(name)
    cons.claim_consumer()
    return name, prod, cons


def fill(prod: Ring, n: int, start: int = 0, jump_bps: float = 0.0) -> None:
    now = time.monotonic_ns()
    for j in range(start, start + n):
        mid = 60000.0 * (1.0 + (jump_bps * 1e-4 if j % 2 else 0.0))
        prod.write(QUOTE_STRUCT, KIND_QUOTE, 0, OKX, 0, 1, 0, now, now, j, mid - 0.05, 1.0, mid + 0.05, 1.0)


def make_host(strategy, cons) -> StrategyHost:
    cfg = load(text=CFG)
    host = StrategyHost(cfg, instruments(), strategy, StubOMS(), [cons], venues=[OKX], idle=AsyncIdle("busy_spin"))
    host.poll_limit = 1 << 16
    host.on_timer(time.monotonic_ns())
    strategy.on_start(host.ctx)
    host.started = True
    return host


# ---- baseline: the naive loop ------------------------------------------------------------------
def naive_messages(n: int) -> deque:
    now = time.monotonic_ns()
    return deque({"type": "quote", "venue": "okx", "symbol": "BTC-USDT", "bid": 59999.95, "bid_qty": 1.0,
                  "ask": 60000.05, "ask_qty": 1.0, "ts": now, "seq": j} for j in range(n))


def naive_loop(q: deque, state: dict, on_md) -> int:
    n = 0
    while q:
        m = q.popleft()
        book = state.setdefault((m["venue"], m["symbol"]), {})
        book["bid"], book["ask"], book["ts"] = m["bid"], m["ask"], time.monotonic_ns()
        book["valid"] = m["bid"] < m["ask"]
        on_md(m, book)
        n += 1
    return n


def naive_decision(frame: bytes, state: dict) -> list[dict]:
    """JSON bookTicker frame -> Decimal quote maths -> order dicts (what a naive bot hands its sender)."""
    m = json.loads(frame)
    bid, ask = Decimal(m["b"]), Decimal(m["a"])
    mid = (bid + ask) / 2
    half = mid * Decimal("0.0002")
    tick = Decimal("0.1")
    q = state.get("position", Decimal(0))
    r = mid - Decimal("0.0005") * mid * q
    bpx = min(((r - half) / tick).to_integral_value(ROUND_FLOOR) * tick, ask - tick)
    apx = max(((r + half) / tick).to_integral_value(ROUND_CEILING) * tick, bid + tick)
    out = []
    last = state.get("quotes")
    if last is None or abs(last[0] - bpx) / mid > Decimal("0.00005"):
        out.append({"symbol": m["s"], "side": "BUY", "price": str(bpx), "qty": "0.001", "type": "LIMIT_MAKER"})
        out.append({"symbol": m["s"], "side": "SELL", "price": str(apx), "qty": "0.001", "type": "LIMIT_MAKER"})
        state["quotes"] = (bpx, apx)
    return out


def naive_frames(n: int, jump_bps: float) -> list[bytes]:
    out = []
    for j in range(n):
        mid = 60000.0 * (1.0 + (jump_bps * 1e-4 if j % 2 else 0.0))
        out.append(json.dumps({"u": j, "s": "BTCUSDT", "b": f"{mid - 0.05:.2f}", "B": "1.0",
                               "a": f"{mid + 0.05:.2f}", "A": "1.0"}).encode())
    return out


# ---- the end-to-end measurement ------------------------------------------------------------------
def decision_latency(n: int = 20_000, jump_bps: float = 2.0) -> dict:
    """Every quote moves the mid by `jump_bps`: each record makes the market maker amend both
    quotes (two requests through risk to the OMS). Returns percentiles in microseconds."""
    name, prod, cons = make_ring()
    try:
        host = make_host(MarketMaker(load(text=CFG).market_making, amend_venues=(1, 2, 3), replace_venues=()), cons)
        first = []
        events = []
        mask = len(host.lat) - 1
        pc = time.perf_counter_ns
        for j in range(n):
            fill(prod, 1, j, jump_bps)
            before = host.lat_n
            host.poll_once()  # the record: decision, risk, hand-off (timed inside the host)
            if host.lat_n > before:
                first.append(host.lat[before & mask])  # the record's first request
            t0 = pc()
            host.poll_once()  # the venue's answers to the record's requests
            events.append(pc() - t0)
        ours = host.latency_ns()
        per_record = ours
        first.sort()
        events.sort()
    finally:
        cons.close()
        prod.close()
        shm.unlink(name)
    frames = naive_frames(n, jump_bps)
    state: dict = {}
    base = []
    risk = NaiveRisk()
    risk.books[("okx", "BTC-USDT")] = {"bid": 60000.0, "ask": 60000.1, "ts": time.monotonic_ns() + 10**12}
    risk.specs[("okx", "BTC-USDT")] = {"tick": 0.1, "lot": 0.00000001, "min_notional": 0.0}
    risk.positions[("okx", "BTC-USDT")] = 0.0
    probe = OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange.OKX), OrderSide.BUY, 0.001, 59990.0,
                                   post_only=True)
    for f in frames:
        t0 = pc()
        orders = naive_decision(f, state)
        if orders:
            for o in orders:  # the same scope as ours: each order through a (naive) risk check
                probe.px = float(o["price"])
                risk.check(probe, t0)
            base.append(pc() - t0)
    base.sort()

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(len(xs) * p / 100))] / 1000.0 if xs else float("nan")

    return {"ours_orders": len(per_record), "ours_p50_us": pct(ours, 50), "ours_p90_us": pct(ours, 90),
            "ours_p99_us": pct(ours, 99), "ours_first_p50_us": pct(first, 50), "ours_first_p90_us": pct(first, 90),
            "ours_events_p50_us": pct(events, 50), "ours_events_p90_us": pct(events, 90),
            "baseline_decisions": len(base), "baseline_p50_us": pct(base, 50),
            "baseline_p90_us": pct(base, 90), "baseline_p99_us": pct(base, 99)}


# ---- pytest-benchmark ------------------------------------------------------------------------------
@pytest.fixture
def ring():
    name, prod, cons = make_ring()
    yield prod, cons
    cons.close()
    prod.close()
    shm.unlink(name)


@pytest.mark.benchmark(group="host loop: 4096 quote records")
def test_ours_host_loop(benchmark, ring):
    prod, cons = ring
    s = Null()
    host = make_host(s, cons)

    def drain():
        while host.poll_once():
            pass

    benchmark.pedantic(drain, setup=lambda: fill(prod, BATCH), rounds=60, iterations=1)
    assert s.n == 60 * BATCH and host.malformed == 0
    benchmark.extra_info["records_per_round"] = BATCH


@pytest.mark.benchmark(group="host loop: 4096 quote records")
def test_baseline_host_loop(benchmark):
    state: dict = {}
    seen = []

    def on_md(m, book):
        if not seen:
            seen.append(m)

    holder = {}

    def setup():
        holder["q"] = naive_messages(BATCH)

    benchmark.pedantic(lambda: naive_loop(holder["q"], state, on_md), setup=setup, rounds=60, iterations=1)
    benchmark.extra_info["records_per_round"] = BATCH


@pytest.mark.benchmark(group="host loop: 4096 quote records")
def test_baseline_mp_queue_loop(benchmark):
    """The naive multi-process shape: the same dicts arrive through a multiprocessing.Queue."""
    import multiprocessing as mp
    import queue as queue_mod

    q = mp.Queue()
    state: dict = {}
    msgs = list(naive_messages(BATCH))

    def setup():
        for m in msgs:
            q.put(m)
        while q.empty():  # the feeder thread has started flushing
            time.sleep(0.001)

    def drain():
        n = 0
        while n < BATCH:
            try:
                m = q.get(timeout=5)
            except queue_mod.Empty:
                break
            book = state.setdefault((m["venue"], m["symbol"]), {})
            book["bid"], book["ask"], book["ts"] = m["bid"], m["ask"], time.monotonic_ns()
            n += 1
        return n

    benchmark.pedantic(drain, setup=setup, rounds=20, iterations=1)
    q.close()
    benchmark.extra_info["records_per_round"] = BATCH


@pytest.mark.benchmark(group="host loop + market maker: 4096 quote records (mostly no requote)")
def test_ours_host_loop_market_maker(benchmark, ring):
    prod, cons = ring
    host = make_host(MarketMaker(load(text=CFG).market_making, replace_venues=()), cons)

    def drain():
        while host.poll_once():
            pass

    benchmark.pedantic(drain, setup=lambda: fill(prod, BATCH, jump_bps=0.1), rounds=60, iterations=1)
    benchmark.extra_info["records_per_round"] = BATCH


def test_decision_latency_p50(benchmark):
    """One end-to-end run; percentiles land in extra_info (pytest-benchmark times the whole run)."""
    res = benchmark.pedantic(decision_latency, kwargs={"n": 10_000}, rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    assert res["ours_orders"] > 0 and res["baseline_decisions"] > 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.bench_strategy")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)  # as the strategy process does
    for r in range(args.repeat):
        res = decision_latency(args.records)
        print(f"run {r + 1}: record -> decision -> OMS (ours, {res['ours_orders']} orders): "
              f"p50 {res['ours_p50_us']:.2f} us  p90 {res['ours_p90_us']:.2f}  p99 {res['ours_p99_us']:.2f} "
              f"(first request of each record: p50 {res['ours_first_p50_us']:.2f} p90 {res['ours_first_p90_us']:.2f}; "
              f"answers poll p50 {res['ours_events_p50_us']:.2f}) | "
              f"baseline frame -> json/Decimal -> order dicts -> naive risk ({res['baseline_decisions']}): "
              f"p50 {res['baseline_p50_us']:.2f} us  p90 {res['baseline_p90_us']:.2f}  p99 {res['baseline_p99_us']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
