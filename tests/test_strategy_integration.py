"""The market maker against the simulator on all three venues: real feed process, real
rings, real OMS and order connections, the strategy host in this process.

Checked while it runs: max_position at every fill, no request ever crossing the book the
strategy saw, a stale book (md stall) and a resyncing book (sequence gap) pulling quotes.
At the end: our open orders equal the venue's, and the kill switch leaves none open.
A second test runs `python -m strategy.host` as a process and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from common.config import load
from common.enums import Exchange, OrderSide
from ringbuf.records import MD_RECORD_SIZE
from ringbuf.ring import Ring
from ringbuf.ringstat import ring_name
from ringbuf.shm import ShmError
from strategy.host import AsyncIdle, StrategyHost, apply_urls, build_instruments
from strategy.market_making import MarketMaker
from strategy.orders import RequestKind

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENUES = ("binance", "okx", "gate")
SYMBOLS = ["BTC-USDT", "ETH-USDT"]
MAX_POS = 0.003
RUN_S = float(os.environ.get("STRATEGY_IT_SECONDS", "60"))
CFG = f"""
[strategy.market_making]
spread_bps = 3.0
order_size = 0.001
max_position = {MAX_POS}
symbols = ["BTC-USDT", "ETH-USDT"]
venues = ["binance", "okx", "gate"]
levels = 1
requote_threshold_bps = 1.5
min_order_lifetime_ms = 20.0
[risk]
stale_md_ms = 1000.0
max_position = 0.01
"""


class CheckedMarketMaker(MarketMaker):
    """The built-in market maker, with every request it makes checked against the book it saw."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.crossing = []
        self.checked = 0
        self.resync_seen = set()
        self.pull_log = []

    def on_market_data(self, md):
        if md.book_resyncing:
            self.resync_seen.add(md.venue_id)
        return super().on_market_data(md)

    def requote(self, p, now_ns):
        reqs = super().requote(p, now_ns)
        v, i = self.pairs[p]
        st = self.state
        bid, ask = st.best_bid(v, i), st.best_ask(v, i)
        for r in reqs or ():
            if r.kind in (RequestKind.NEW, RequestKind.AMEND):
                self.checked += 1
                crosses = r.px >= ask if r.side == OrderSide.BUY else r.px <= bid
                if crosses or not st.is_valid(v, i):
                    self.crossing.append((v, i, int(r.side), r.px, bid, ask))
        if reqs and all(r.kind == RequestKind.CANCEL for r in reqs) and self.pulled[p]:
            self.pull_log.append((v, i, time.monotonic()))
        return reqs


def _attach(name):
    try:
        return Ring.attach(name, MD_RECORD_SIZE)
    except (ShmError, ValueError):  # not there yet, or created but not sized yet
        return None


async def _poll(cond, timeout_s, what, interval_s=0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def _call(fn, *a, **kw):
    return await asyncio.to_thread(fn, *a, **kw)


def _start_feeds(prefix, urls):
    return subprocess.Popen([sys.executable, "-m", "feeds.handler", *sum((["--venue", v] for v in VENUES), []),
                             "--prefix", prefix, "--urls", json.dumps(urls), "--symbols", ",".join(SYMBOLS),
                             "--log-level", "WARNING"], cwd=ROOT)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _venue_open(control, venue):
    return {o["client_order_id"] for o in control.open_orders(venue)}


def _ours_on_wire(oms, venue):
    from oms.ids import to_wire

    v = Exchange.from_name(venue)
    return {to_wire(v, o.cl_ord_id) for o in oms.open_orders(v)}


def test_market_maker_on_three_venues(shm_prefix, journal_dir):
    from sim.testing import run_sim, wait_until

    with run_sim(symbols=SYMBOLS, seed=11, rate=600) as sim:
        feeds = _start_feeds(shm_prefix, sim.urls)
        try:
            rings = []
            for v in VENUES:
                r = wait_until(lambda v=v: _attach(ring_name(shm_prefix, f"md-{v}")), 60, what=f"md ring {v}")
                r.claim_consumer()
                rings.append(r)
            result = asyncio.run(_scenario(sim, rings))
        finally:
            _stop(feeds)
    print(json.dumps(result))


async def _scenario(sim, rings):
    from oms.manager import OrderManager

    cfg = load(text=CFG)
    apply_urls(cfg, sim.urls)
    ins = build_instruments(cfg)
    oms = OrderManager(cfg, ins)
    mm = CheckedMarketMaker(cfg.market_making, stale_ms=cfg.risk.stale_md_ms)
    host = StrategyHost(cfg, ins, mm, oms, rings, venues=[1, 2, 3], idle=AsyncIdle("backoff"))
    fills = []
    worst = {}

    def on_event(ev):
        if ev.kind.name == "FILL":
            o = ev.order
            q = oms.positions.get(int(o.venue), o.instr_id).qty
            key = (int(o.venue), o.instr_id)
            worst[key] = max(worst.get(key, 0.0), abs(q))
            fills.append((key, q))

    oms.add_listener(on_event)
    ctl = sim.control
    task = asyncio.ensure_future(host.run(ready_timeout_s=60.0))
    try:
        await _poll(lambda: host.started, 90, "the OMS to be ready and the strategy started")
        await _poll(lambda: all(oms.open_orders(Exchange(v)) for v in (1, 2, 3)), 60,
                    "quotes on every venue")
        t_end = time.monotonic() + RUN_S
        # a stale book: gate market data stalls longer than stale_md_ms; its quotes are pulled
        await asyncio.sleep(min(10.0, RUN_S / 6))
        await _call(ctl.fault, "gate", "stall", duration_s=4)
        stale_ns = int(cfg.risk.stale_md_ms * 1e6)

        def gate_stale_and_pulled():
            now = time.monotonic_ns()
            stale = all(host.state.age_ns(3, i, now) > stale_ns for i in (1, 2))
            return stale and not oms.open_orders(Exchange.GATE)

        await _poll(gate_stale_and_pulled, 6.0, "gate quotes pulled on a stale book", interval_s=0.02)
        await _poll(lambda: oms.open_orders(Exchange.GATE), 30, "gate quotes back after the stall")
        # a resyncing book: a sequence gap on Binance depth; its quotes are pulled at once
        pulls_before = sum(1 for x in mm.pull_log if x[0] == 1)
        mm.resync_seen.discard(1)  # the start-up sync counts as one: wait for this fault's
        await _call(ctl.fault, "binance", "skip_seq")
        await _poll(lambda: 1 in mm.resync_seen, 20, "a Binance book resync", interval_s=0.005)
        # hold the resync open for less than stale_md_ms (no diffs, no sync): quotes that were in
        # flight when it began are acked meanwhile and must be pulled too, not only the resting ones
        await _call(ctl.fault, "binance", "stall", duration_s=0.8)
        await _poll(lambda: sum(1 for x in mm.pull_log if x[0] == 1) > pulls_before, 10,
                    "Binance quotes pulled on the resync")
        await _poll(lambda: oms.open_orders(Exchange.BINANCE), 30, "Binance quotes back after the resync")
        while time.monotonic() < t_end:
            await asyncio.sleep(0.25)
            assert not task.done(), task.exception() if task.done() else ""
        # quiesce: no more market data, books may age, then compare our orders with the venues'
        mm.stale_ns = host.rms.stale_ns = 600 * 10**9
        await _call(ctl.pause_md)
        mismatch = {}
        for v in VENUES:
            try:
                await _poll(lambda v=v: _ours_on_wire(oms, v) == _venue_open(ctl, v), 15,
                            f"{v}: our open orders to equal the venue's", interval_s=0.2)
            except AssertionError:
                ours, theirs = _ours_on_wire(oms, v), _venue_open(ctl, v)
                mismatch[v] = {"ours_only": [repr(o) for o in oms.open_orders(Exchange.from_name(v))
                                             if o.cl_ord_id in ours - theirs or
                                             ("t-" + o.cl_ord_id) in ours - theirs],
                               "venue_only": sorted(theirs - ours)}
        n_open_before_kill = sum(len(_venue_open(ctl, v)) for v in VENUES)
        # kill switch: halt, cancel everything, wait for the acks
        host.halt("integration test kill switch")
        await host._kill_task
        venue_left = {v: len(_venue_open(ctl, v)) for v in VENUES}
        result = {"fills": len(fills), "worst_abs_position": {f"{k[0]}:{k[1]}": q for k, q in worst.items()},
                  "requests_checked": mm.checked, "crossing": len(mm.crossing), "orders_sent": host.orders_sent,
                  "denied": host.rms.denials(), "kill_ms": host.last_kill_ms, "open_before_kill": n_open_before_kill,
                  "venue_open_after_kill": venue_left, "records": host.records, "pulls": len(mm.pull_log),
                  "oms_open_after_kill": len(oms.open_orders()), "mismatch": mismatch}
        assert mm.checked > 50, result
        assert mm.crossing == [], result
        assert fills, result
        for (key, q) in fills:
            assert abs(q) <= MAX_POS + 1e-9, (key, q, result)
        assert not mismatch, result
        assert n_open_before_kill > 0, result
        assert venue_left == {v: 0 for v in VENUES}, result
        assert oms.open_orders() == [], result
        return result
    finally:
        host.request_stop("end of test")
        try:
            await asyncio.wait_for(task, 60)
        finally:
            await _call(ctl.resume_md)


def test_strategy_process_stops_flat_on_sigterm(shm_prefix, journal_dir, tmp_path):
    """`python -m strategy.host` with the feeds as another process: it quotes, and SIGTERM
    runs the kill switch (no order left at any venue) and exits 0."""
    from sim.testing import run_sim, wait_until

    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(CFG)
    with run_sim(symbols=SYMBOLS, seed=5, rate=400) as sim:
        feeds = _start_feeds(shm_prefix, sim.urls)
        host = None
        try:
            for v in VENUES:
                wait_until(lambda v=v: _attach(ring_name(shm_prefix, f"md-{v}")), 60, what=f"md ring {v}")
            log_path = tmp_path / "strategy.log"
            log_f = open(log_path, "w")  # closed in the finally below
            host = subprocess.Popen([sys.executable, "-m", "strategy.host", "--config", str(cfg_path),
                                     "--prefix", shm_prefix, "--urls", json.dumps(sim.urls)], cwd=ROOT,
                                    stdout=log_f, stderr=subprocess.STDOUT)

            def tail():
                log_f.flush()
                return log_path.read_text()[-3000:]

            try:
                wait_until(lambda: all(sim.control.open_orders(v) for v in VENUES) or host.poll() is not None,
                           120, interval_s=0.2, what="quotes on every venue")
            except TimeoutError as e:
                raise AssertionError(f"{e}; strategy log:\n{tail()}") from None
            assert host.poll() is None, f"strategy process exited with {host.returncode}:\n{tail()}"
            host.send_signal(signal.SIGTERM)
            rc = host.wait(timeout=60)
            assert rc == 0, tail()
            assert {v: sim.control.open_orders(v) for v in VENUES} == {v: [] for v in VENUES}, tail()
        finally:
            if host is not None and host.poll() is None:
                host.kill()
                host.wait()
            if host is not None:
                log_f.close()
            _stop(feeds)
