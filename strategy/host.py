"""The pinned strategy process: one asyncio (uvloop) loop polls the market-data rings,
keeps per-instrument state in preallocated arrays, calls the strategy, passes every
request through risk to the OMS, and feeds order events back. The OMS's order
connections run on the same loop: the poll yields to it regularly and, when the rings
are quiet, sleeps with a back-off so the core is given away and socket I/O still runs.

    python -m strategy.host [--config config.toml] [--prefix hft] [--cpu N]
                            [--venues binance,okx,gate] [--urls JSON|@file] [--strategy mod:Class]

SIGTERM / SIGINT run the kill switch (halt, cancel everything, wait for the acks) and
exit 0. The monitor halts / resumes through the control segment `<prefix>-ctl`
(rms.control). Never talks to sockets itself: the OMS does.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from array import array
from collections import deque
from typing import Any

import numpy as np

from common.config import Config, ConfigError
from common.enums import Exchange, TradingState
from common.instruments import Instruments
from ringbuf.records import (
    F_RESYNC,
    F_SNAPSHOT_END,
    KIND_BOOK_LEVEL,
    KIND_BOOK_RESET,
    KIND_QUOTE,
    KIND_TRADE,
    MD_RECORD_SIZE,
    MD_STRUCT,
)
from rms.engine import RiskEngine
from rms.reasons import REASON_NAMES, Reason
from strategy.api import MarketData, Strategy, StrategyContext, event_kind
from strategy.orders import OrderRequest, RequestKind
from strategy.state import N_VENUES, MarketState

log = logging.getLogger("strategy.host")

_NEW = RequestKind.NEW
_AMEND = RequestKind.AMEND
_CANCEL = RequestKind.CANCEL
_UNPACK = MD_STRUCT.unpack_from
_ITER = MD_STRUCT.iter_unpack
BULK_RECORDS = 1024
_TERMINAL = frozenset({4, 6, 7, 8})  # OrderState FILLED, CANCELED, REJECTED, EXPIRED
LAT_SAMPLES = 1 << 16
_LAT_MASK = LAT_SAMPLES - 1
_INF = math.inf
MAX_STRATEGY_ERRORS = 20  # a strategy that keeps raising is halted (kill switch)
POLL_CORK_RECORDS = 4  # records of one ring whose orders may wait for the end of the poll


class AsyncIdle:
    """Idle strategy for an asyncio poll loop (the ringbuf.idle vocabulary, awaitable):
    busy_spin never sleeps but yields to the loop every `io_every` empty polls; yielding
    yields to the loop (and the OS) on every empty poll; backoff spins, then yields, then
    sleeps with a doubling period up to `max_sleep_ns` so a quiet process gives its core away."""

    def __init__(self, name: str = "backoff", max_spins: int = 200, max_yields: int = 50,
                 min_sleep_ns: int = 50_000, max_sleep_ns: int = 1_000_000, io_every: int = 32) -> None:
        if name not in ("busy_spin", "yielding", "backoff"):
            raise ValueError(f"unknown idle strategy {name!r}; choose busy_spin, yielding or backoff")
        self.name = name
        self.max_spins = max_spins
        self.max_yields = max_yields
        self.min_sleep_ns = min_sleep_ns
        self.max_sleep_ns = max_sleep_ns
        self.io_every = io_every
        self.sleeps = 0
        self.waker: RingWaker | None = None  # set by the host once its loop runs
        self.wake_max_sleep_ns = 20_000_000  # with wake-ups the sleep length no longer adds latency
        self.reset()

    def reset(self) -> None:
        self._spins = 0
        self._yields = 0
        self._sleep_ns = self.min_sleep_ns

    async def idle(self) -> None:
        """Called after a poll that found nothing."""
        if self.name == "busy_spin":
            self._spins += 1
            if self._spins >= self.io_every:
                self._spins = 0
                await asyncio.sleep(0)
            return
        if self.name == "yielding":
            await asyncio.sleep(0)
            os.sched_yield()
            return
        if self._spins < self.max_spins:
            self._spins += 1
            if self._spins % self.io_every == 0:
                await asyncio.sleep(0)
            return
        if self._yields < self.max_yields:
            self._yields += 1
            await asyncio.sleep(0)
            return
        self.sleeps += 1
        if self.waker is not None and self.waker.rings:
            await self.waker.sleep(self._sleep_ns / 1e9)
            self._sleep_ns = min(self._sleep_ns * 2, self.wake_max_sleep_ns)
            return
        await asyncio.sleep(self._sleep_ns / 1e9)
        self._sleep_ns = min(self._sleep_ns * 2, self.max_sleep_ns)


class RingWaker:
    """Sleeps until a producer publishes into one of the rings (one datagram from the ring's
    producer, see Ring.arm_sleep) or the timeout passes, whichever is first. Replaces timed
    sleeps whose 1 ms timer granularity made a quiet market's first record wait up to 1 ms."""

    def __init__(self, rings) -> None:
        self.loop = asyncio.get_running_loop()
        self.rings = []
        self.socks = []
        self._fut: asyncio.Future | None = None
        self.wakes = 0
        for r in rings:
            sock = r.wake_listener() if hasattr(r, "wake_listener") else None
            if sock is None:
                continue
            self.rings.append(r)
            self.socks.append(sock)
            self.loop.add_reader(sock.fileno(), self._on_wake, sock)

    def _on_wake(self, sock) -> None:
        try:
            while True:
                sock.recv(64)
        except OSError:
            pass
        fut = self._fut
        if fut is not None and not fut.done():
            self.wakes += 1
            fut.set_result(None)

    async def sleep(self, timeout_s: float) -> None:
        armed: list = []
        for r in self.rings:
            if not r.arm_sleep():
                for a in armed:
                    a.disarm_sleep()
                return
            armed.append(r)
        fut = self._fut = self.loop.create_future()
        handle = self.loop.call_later(timeout_s, _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._fut = None
            for r in armed:
                r.disarm_sleep()

    def poke(self) -> None:
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def close(self) -> None:
        for sock in self.socks:
            try:
                self.loop.remove_reader(sock.fileno())
            except Exception:
                pass
            sock.close()
        self.socks = []
        self.rings = []


def _resolve(fut) -> None:
    if not fut.done():
        fut.set_result(None)


class StrategyHost:
    """Rings -> state -> strategy -> risk -> OMS, and OMS events -> risk -> strategy."""

    # More than 30 instance attributes overflow CPython 3.11's shared-key instance layout: every
    # attribute load then becomes a dict lookup (LOAD_ATTR_WITH_HINT, ~20 ns more each on this
    # path). Slots keep the hot path's loads at LOAD_ATTR_SLOT speed. `__dict__` keeps
    # other attributes settable (backtests add their own).
    __slots__ = ("cfg", "instruments", "strategy", "oms", "rings", "clock", "state", "n_instr", "counters",
                 "events_ring", "control", "rms", "venues", "idle", "poll_limit", "bulk_min", "_bulk", "_bulk_mv",
                 "batch_mode", "books", "l2_capacity", "md", "ctx", "_events", "timer_ns", "_next_timer",
                 "_stop_reason", "_kill_task", "started", "cancel_orphans", "records", "malformed", "orders_sent",
                 "denied", "oms_refused", "events", "strategy_errors", "batches", "last_kill_ms", "lat", "lat_n",
                 "_t0", "_ctr", "status_writer", "_cork_depth", "_can_cork", "_waker", "_poll_corked", "__dict__")

    def __init__(self, cfg: Config, instruments: Instruments, strategy: Strategy, oms, md_rings: list,
                 rms: RiskEngine | None = None, state: MarketState | None = None, counters=None,
                 events_ring=None, control=None, venues: list[int] | None = None,
                 idle: AsyncIdle | None = None, clock=time.monotonic_ns, poll_limit: int = 256) -> None:
        self.cfg = cfg
        self.instruments = instruments
        self.strategy = strategy
        self.oms = oms
        self.rings = list(md_rings)
        self.clock = clock
        self.state = state if state is not None else MarketState(max(64, len(instruments) + 1))
        self.n_instr = self.state.n_instr
        self.counters = counters
        self.events_ring = events_ring
        self.control = control
        self.rms = rms if rms is not None else RiskEngine(cfg.risk, instruments, self.state, counters,
                                                          events_ring, clock=clock)
        self.venues = venues if venues is not None else [int(v) for v in cfg.enabled_venues()]
        self.idle = idle if idle is not None else AsyncIdle(cfg.system.idle_strategy)
        self.poll_limit = poll_limit
        self.bulk_min = 16  # records waiting before a ring is read in one batch
        self._bulk = np.zeros((BULK_RECORDS, MD_RECORD_SIZE), dtype=np.uint8)
        self._bulk_mv = self._bulk.data.cast("B")
        self.batch_mode = bool(getattr(strategy, "batch_mode", False))
        # L2 books from BOOK_LEVEL records (feeds.book.Book), only for strategies that ask
        self.books: dict | None = {} if getattr(strategy, "wants_l2", False) else None
        self.l2_capacity = 1024
        self.md = MarketData(self.state, instruments)
        self.ctx = StrategyContext(instruments, self.state, cfg, clock=clock,
                                   position_fn=self.rms.position_of, open_orders_fn=self._open_orders,
                                   trading_state_fn=self._trading_state, venue_ready_fn=self._venue_ready,
                                   venues=self.venues)
        self.ctx.positions = self.rms.position  # same indexing as the state: venue * n_instr + instr
        self.ctx.ready_flags = self.rms.venue_ready
        self.ctx.risk = self.rms
        self.ctx.book = self.book  # type: ignore[method-assign]
        self._events: deque = deque()
        self.timer_ns = int(getattr(strategy, "timer_ms", 100.0) * 1e6)
        self._next_timer = 0
        self._stop_reason: str | None = None
        self._kill_task: asyncio.Task | None = None
        self.started = False
        self.cancel_orphans = True  # cancel orders an earlier run left open before the strategy starts
        # statistics (plain ints; copied to the counters block on the timer)
        self.records = 0
        self.malformed = 0
        self.orders_sent = 0
        self.denied = 0
        self.oms_refused = 0
        self.events = 0
        self.strategy_errors = 0
        self.batches = 0
        self.last_kill_ms = -1.0
        self.lat = array("q", bytes(8 * LAT_SAMPLES))  # record read -> request handed to the OMS, ns
        self.lat_n = 0
        self._t0 = 0
        self._ctr = {}
        self.status_writer: Any = None  # strategy.status.StatusWriter, set by run_strategy_process
        self._cork_depth = 0
        self._poll_corked = False  # a poll found records: its orders leave together at its end
        self._can_cork = hasattr(oms, "cork") and hasattr(oms, "uncork")
        self._waker: RingWaker | None = None  # the idle strategy's, while the loop runs
        if counters is not None:
            for name in ("records", "malformed", "lost", "orders_sent", "denied", "oms_refused", "events",
                         "strategy_errors", "batches", "kill_ms", "trading_state"):
                self._ctr[name] = counters.add(f"host.{name}")
        if hasattr(oms, "add_listener"):
            oms.add_listener(self._on_oms_event)

    # ---- context callables ----------------------------------------------------
    def _open_orders(self, venue=None, instr_id=None) -> list:
        if venue is not None and not isinstance(venue, Exchange):
            venue = Exchange(int(venue))
        return self.oms.open_orders(venue, instr_id)

    def _trading_state(self) -> TradingState:
        return self.rms.state

    def _venue_ready(self, venue_id: int) -> bool:
        return self.rms.venue_ready[venue_id] == 1

    # ---- the hot path ------------------------------------------------------------
    def poll_once(self) -> int:
        """Drain order events, then up to `poll_limit` records per ring. Returns work done.
        The orders decided on the first few records of every ring leave together when the poll
        ends (the OMS is corked from the first record found): a jump that reaches several venues
        at once is decided on all of them before the first order's socket write, which on a VM
        can take hundreds of µs. Past POLL_CORK_RECORDS records of one ring the orders go at once."""
        work = 0
        if self._events:
            work += self._drain_events()
        try:
            for ring in self.rings:
                n = self._poll_ring(ring)
                if n:
                    work += n
                    self.records += n
                    self.batches += 1
                    self._t0 = self.clock()
                    try:
                        reqs = self.strategy.on_end_of_batch()
                    except Exception:
                        self._strategy_error("on_end_of_batch")
                        reqs = None
                    if reqs:
                        self.dispatch(reqs, self._t0)
        finally:
            if self._poll_corked:
                self._poll_corked = False
                self._uncork()
        return work

    def _poll_ring(self, ring) -> int:
        """Records of one ring: the first at once (lowest latency), then, when many are
        waiting, the rest copied out in one validated batch and unpacked by `iter_unpack`."""
        off = ring.poll()
        if off < 0:
            return 0
        if self._can_cork and not self._poll_corked:
            self._poll_corked = True
            self._cork()
        clock = self.clock
        handle = self._handle
        lossless = ring.mode == 1
        n = 0
        while True:
            now = clock()
            self._t0 = now
            if lossless:
                t = _UNPACK(ring.buffer, off)
                ring.release()
            else:
                t = _UNPACK(ring.copy_buffer, off)
            n += 1
            handle(t, now)
            if n == POLL_CORK_RECORDS and self._poll_corked:  # a burst: send what is decided
                self._poll_corked = False
                self._uncork()
            if n >= self.poll_limit:
                return n
            if not lossless and ring.tail_position - ring.head_position >= self.bulk_min:
                break
            off = ring.poll()
            if off < 0:
                return n
        if self._poll_corked:  # many records waiting: no holding back behind a batch
            self._poll_corked = False
            self._uncork()
        for _ in range(64):  # bounded even if a lapping producer leaves only lost records
            avail = ring.tail_position - ring.head_position
            if avail <= 0 or n >= self.poll_limit:
                break
            got = ring.read_batch(self._bulk, min(avail, self.poll_limit - n, self._bulk.shape[0]))
            now = clock()
            self._t0 = now
            for t in _ITER(self._bulk_mv[: got * MD_RECORD_SIZE]):
                handle(t, now)
            n += got
        return n

    def _handle(self, t: tuple, now: int) -> None:
        """One unpacked MD record: update the state arrays, then call the strategy."""
        kind = t[0]
        v = t[2]
        i = t[4]
        ni = self.n_instr
        if not (0 < v < N_VENUES and 0 < i < ni):
            self.malformed += 1
            return
        k = v * ni + i
        state = self.state
        if kind == KIND_QUOTE:
            bid = t[9]
            ask = t[11]
            if not (0.0 <= bid < _INF and 0.0 <= ask < _INF):  # also NaN
                self.malformed += 1
                return
            state.bid_px_f[k] = bid
            state.bid_qty_f[k] = t[10]
            state.ask_px_f[k] = ask
            state.ask_qty_f[k] = t[12]
            state.update_ns_f[k] = now
            state.exch_ts_ns_f[k] = t[6]
            if t[1] & F_RESYNC:
                state.resync_f[k] = 1
                state.valid_f[k] = 0
            elif state.has_depth_f[k] == 0:
                state.resync_f[k] = 0
                state.valid_f[k] = 1 if 0.0 < bid < ask else 0
            else:
                state.valid_f[k] = 1 if (0.0 < bid < ask and state.resync_f[k] == 0) else 0
        elif kind == KIND_TRADE:
            state.last_trade_px_f[k] = t[9]
        elif kind == KIND_BOOK_LEVEL:
            state.has_depth_f[k] = 1
            state.update_ns_f[k] = now
            f = t[1]
            if self.books is not None:
                self._book(k, v, i).apply_record(kind, f, t[3], t[9], t[10], t[8])
            if f & F_RESYNC:
                state.resync_f[k] = 1
                state.valid_f[k] = 0
            elif f & F_SNAPSHOT_END:
                state.resync_f[k] = 0
                state.valid_f[k] = 1 if 0.0 < state.bid_px_f[k] < state.ask_px_f[k] else 0
        elif kind == KIND_BOOK_RESET:
            state.has_depth_f[k] = 1
            state.resync_f[k] = 1
            state.valid_f[k] = 0
            state.update_ns_f[k] = now
            if self.books is not None:
                self._book(k, v, i).apply_record(kind, t[1], 0, 0.0, 0.0, t[8])
        else:
            self.malformed += 1
            return
        if self.batch_mode:
            return
        md = self.md
        md._t = t
        md._k = k
        md.now_ns = now
        try:
            reqs = self.strategy.on_market_data(md)
        except Exception:
            self._strategy_error("on_market_data")
            return
        if reqs:
            self.dispatch(reqs, now)

    def _book(self, k: int, venue_id: int, instr_id: int):
        books = self.books
        assert books is not None  # only called for strategies with wants_l2
        b = books.get(k)
        if b is None:
            from feeds.book import Book

            b = books[k] = Book(capacity=self.l2_capacity, instr_id=instr_id, venue_id=venue_id)
        return b

    def book(self, venue_id: int, instr_id: int):
        """The L2 book rebuilt from BOOK_LEVEL records (strategies with `wants_l2 = True`), or None."""
        if self.books is None:
            return None
        return self.books.get(venue_id * self.n_instr + instr_id)

    def _cork(self) -> None:
        if self._cork_depth == 0 and self._can_cork:
            self.oms.cork()
        self._cork_depth += 1

    def _uncork(self) -> None:
        self._cork_depth -= 1
        if self._cork_depth == 0 and self._can_cork:
            self.oms.uncork()

    def dispatch(self, reqs: list[OrderRequest], now_ns: int) -> None:
        """Each request through risk, then to the OMS. Denials go back to the strategy.
        Several requests leave in one socket write per venue (corked)."""
        corked = self._can_cork and len(reqs) > 1
        if corked:
            self._cork()
        try:
            rms = self.rms
            oms = self.oms
            for req in reqs:
                code = rms.check(req, now_ns)
                if code:
                    self.denied += 1
                    self._deny(req, code, REASON_NAMES[code])
                    continue
                try:
                    cid = oms.submit(req)
                except Exception as e:  # an OMS bug must not take the loop down
                    log.error("oms.submit raised for %r: %s", req, e)
                    cid = ""
                if not cid:
                    self.oms_refused += 1
                    self._oms_refused(req)
                    continue
                kind = req.kind
                if kind is _NEW:
                    req.cl_ord_id = cid
                    rms.on_order_open(req)
                elif kind is _AMEND:
                    req.cl_ord_id = cid
                    if cid != req.target_cl_ord_id:
                        # the venue amends by cancel-replace (Binance): a new order id. Risk counts
                        # both until the old one is reported closed (worst case).
                        rms.on_replaced(req.target_cl_ord_id, cid, req.px, req.qty)
                    elif rms.amend_grows:  # set by the amend's check: it raises the open quantity
                        rms.on_amend_sent(req)
                self.orders_sent += 1
                t0 = self._t0
                if t0:
                    n = self.lat_n
                    self.lat[n & _LAT_MASK] = self.clock() - t0
                    self.lat_n = n + 1
        finally:
            if corked:
                self._uncork()

    def _deny(self, req: OrderRequest, code: int, reason: str) -> None:
        try:
            self.strategy.on_request_denied(req, code, reason)
        except Exception:
            self._strategy_error("on_request_denied")

    def _oms_refused(self, req: OrderRequest) -> None:
        reason = str(getattr(self.oms, "last_reject_reason", "") or "oms refused")
        code = int(Reason.OMS_REJECT)
        if req.kind is _CANCEL or req.kind is _AMEND:
            o = self.oms.order(req.target_cl_ord_id) if hasattr(self.oms, "order") else None
            if o is None or int(o.state) in _TERMINAL:
                code = int(Reason.UNKNOWN_ORDER)  # already gone: the strategy frees its slot
                self.rms.on_order_closed(req.target_cl_ord_id)
        self.rms.write_event(code, int(req.venue or 0), req.instr_id, int(req.side), req.px, req.qty,
                             cl_ord_id=req.cl_ord_id or req.target_cl_ord_id, text=reason)
        self._deny(req, code, reason)

    # ---- order events ----------------------------------------------------------------
    def _on_oms_event(self, ev) -> None:
        """OMS listener: queue only (the OMS calls us from its socket callbacks), and end an
        idle sleep so the strategy hears of it now."""
        self._events.append(ev)
        w = self._waker
        if w is not None and w._fut is not None:
            w.poke()

    def _drain_events(self) -> int:
        events = self._events
        if self._can_cork and len(events) > 1:  # the strategy's answers to a burst leave together
            self._cork()
            try:
                return self._drain(events)
            finally:
                self._uncork()
        return self._drain(events)

    def _drain(self, events) -> int:
        n = 0
        rms = self.rms
        while events:
            ev = events.popleft()
            n += 1
            order = ev.order
            cid = order.cl_ord_id
            kind = event_kind(ev)
            if kind == "FILL":
                rms.on_fill(cid, int(order.venue), order.instr_id, int(order.side), ev.fill_qty, ev.fill_px,
                            ev.fee)
            elif kind == "ACK":
                rms.on_order_result(False)
            elif kind == "REJECT":
                rms.on_order_result(True)
            elif kind == "AMENDED":
                rms.on_amended(cid, order.px, order.qty - order.filled_qty)
            if order.state in _TERMINAL:  # IntEnum or int: same hash, no int() call
                rms.on_order_closed(cid)
            self._t0 = self.clock()
            try:
                reqs = self.strategy.on_order_event(ev)
            except Exception:
                self._strategy_error("on_order_event")
                reqs = None
            if reqs:
                self.dispatch(reqs, self._t0)
        self.events += n
        return n

    def _strategy_error(self, where: str) -> None:
        self.strategy_errors += 1
        if self.strategy_errors <= 5:
            log.error("strategy %s raised:\n%s", where, traceback.format_exc())
        if self.strategy_errors == MAX_STRATEGY_ERRORS and self.rms.state is not TradingState.HALTED:
            self.rms.halt(f"strategy raised {MAX_STRATEGY_ERRORS} times", Reason.KILL_SWITCH)

    # ---- timer: risk refresh, stale pulls, control segment, counters --------------------
    def on_timer(self, now_ns: int) -> None:
        rms = self.rms
        oms = self.oms
        for v in self.venues:
            try:
                rms.set_venue_ready(v, bool(oms.venue_ready(Exchange(v))))
            except Exception:
                rms.set_venue_ready(v, False)
        rms.refresh(now_ns)
        for v, i in rms.stale_books(now_ns):
            self.pull_orders(v, i)
        if self.control is not None:
            cmd = self.control.poll()
            if cmd is not None:
                self.apply_command(*cmd)
        reason = rms.take_kill_request()
        if reason is not None:
            self.start_kill(reason)
        if self.status_writer is not None:
            self.status_writer.maybe_write(self, self.started)
        if self.started:
            self._t0 = 0
            try:
                reqs = self.strategy.on_timer(now_ns)
            except Exception:
                self._strategy_error("on_timer")
                reqs = None
            if reqs:
                self.dispatch(reqs, now_ns)
        self.publish()

    def pull_orders(self, venue_id: int, instr_id: int) -> int:
        """Cancel our resting orders on a stale or resyncing book (rms layer 4)."""
        n = 0
        for o in self._open_orders(venue_id, instr_id):
            req = OrderRequest.cancel(self.ctx.symbol(venue_id, instr_id), o.cl_ord_id)
            req.instr_id = instr_id
            self.dispatch([req], 0)
            n += 1
        return n

    def apply_command(self, cmd: int, reason: str) -> None:
        from rms.control import CMD_HALT, CMD_REDUCE, CMD_RESUME

        log.warning("control request %d: %s", cmd, reason)
        if cmd == CMD_HALT:
            self.halt(reason or "monitor halt", Reason.MANUAL_HALT)
        elif cmd == CMD_RESUME:
            self.resume(reason or "monitor resume")
        elif cmd == CMD_REDUCE:
            self.rms.reduce_only(reason or "monitor reduce")

    def publish(self) -> None:
        c = self.counters
        if c is not None:
            ctr = self._ctr
            c.set(ctr["records"], self.records)
            c.set(ctr["malformed"], self.malformed)
            c.set(ctr["lost"], sum(r.lost for r in self.rings))
            c.set(ctr["orders_sent"], self.orders_sent)
            c.set(ctr["denied"], self.denied)
            c.set(ctr["oms_refused"], self.oms_refused)
            c.set(ctr["events"], self.events)
            c.set(ctr["strategy_errors"], self.strategy_errors)
            c.set(ctr["batches"], self.batches)
            c.set(ctr["kill_ms"], int(self.last_kill_ms * 1000) if self.last_kill_ms >= 0 else -1)
            c.set(ctr["trading_state"], int(self.rms.state))
            c.touch()
        if self.control is not None:
            self.control.publish(int(self.rms.state), self.rms.state_reason, self.rms.kills)

    # ---- kill switch -----------------------------------------------------------------------
    def halt(self, reason: str, code: int = Reason.KILL_SWITCH) -> None:
        """Kill switch from anywhere on the loop (signal handler, monitor, breach)."""
        if self.rms.state is not TradingState.HALTED or not self.rms.kill_requested:
            self.rms.halt(reason, code)
        reason = self.rms.take_kill_request() or reason
        self.start_kill(reason)

    def resume(self, reason: str = "resumed") -> None:
        self.rms.resume(reason)
        self.publish()

    def start_kill(self, reason: str) -> None:
        try:
            self.strategy.on_halt(reason)
        except Exception:
            self._strategy_error("on_halt")
        if self._kill_task is None or self._kill_task.done():
            self._kill_task = asyncio.ensure_future(self.kill(reason))

    async def kill(self, reason: str, timeout_s: float = 5.0) -> bool:
        """Cancel everything and wait until the OMS has no open order. True when flat."""
        t0 = time.perf_counter()
        log.warning("kill switch: %s", reason)
        if self.rms.state is not TradingState.HALTED:
            self.rms.halt(reason)
            self.rms.take_kill_request()
        try:
            await self.oms.cancel_all()
        except Exception as e:
            log.error("cancel_all failed: %s", e)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._events:
                self._drain_events()
            try:
                left = len(self.oms.open_orders())
            except Exception:
                left = -1
            if left == 0:
                break
            if time.monotonic() > deadline:
                log.error("kill switch: %d orders still open after %.1fs", left, timeout_s)
                break
            await asyncio.sleep(0.002)
        self.last_kill_ms = (time.perf_counter() - t0) * 1e3
        self.publish()
        log.warning("kill switch done in %.1f ms (%s)", self.last_kill_ms, "flat" if left == 0 else "NOT flat")
        return left == 0

    # ---- life cycle -------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop") -> None:
        """Signal handlers call this: the loop finishes its iteration, then runs the kill switch."""
        if self._stop_reason is None:
            self._stop_reason = reason

    async def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Wait until the OMS reports every venue ready (connected, authenticated, reconciled)."""
        deadline = time.monotonic() + timeout_s
        while self._stop_reason is None:
            ready = [bool(self.oms.venue_ready(Exchange(v))) for v in self.venues]
            if all(ready):
                return True
            if time.monotonic() > deadline:
                log.error("venues not ready after %.0fs: %s", timeout_s,
                          [Exchange(v).key for v, r in zip(self.venues, ready, strict=True) if not r])
                return False
            self.poll_market_only()
            await asyncio.sleep(0.02)
        return False

    def poll_market_only(self) -> None:
        """Keep the state fresh (and the rings drained) before the strategy starts."""
        saved = self.strategy
        self.strategy = _NULL_STRATEGY
        try:
            self.poll_once()
        finally:
            self.strategy = saved

    def seed_from_oms(self) -> None:
        """Reconciled positions and open orders into risk before the first quote."""
        positions = getattr(self.oms, "positions", None)
        if positions is not None and hasattr(positions, "all"):
            for p in positions.all():
                if 0 < int(p.venue) < N_VENUES and 0 < p.instr_id < self.n_instr:
                    self.rms.set_position(int(p.venue), p.instr_id, p.qty, p.avg_px)
        for o in self.oms.open_orders():
            req = OrderRequest(_NEW, None, o.side, max(o.qty - o.filled_qty, 0.0), o.px,
                               venue=Exchange(int(o.venue)), instr_id=o.instr_id, cl_ord_id=o.cl_ord_id)
            self.rms.on_order_open(req)

    def cancel_open_orders(self) -> int:
        """Cancel orders left by an earlier run (reconciled by the OMS at start-up): the
        strategy starts with a clean slate instead of inheriting quotes it does not track."""
        n = 0
        for o in self.oms.open_orders():
            v, i = int(o.venue), o.instr_id
            if not (0 < v < N_VENUES and 0 < i < self.n_instr):
                continue
            req = OrderRequest.cancel(self.ctx.symbol(v, i), o.cl_ord_id)
            req.instr_id = i
            self.dispatch([req], 0)
            n += 1
        if n:
            log.warning("cancelled %d order(s) left open by an earlier run", n)
        return n

    async def run(self, ready_timeout_s: float = 60.0) -> int:
        """Start the OMS, wait until it is ready, trade until stopped, then kill and stop."""
        await self.oms.start([Exchange(v) for v in self.venues])
        self.rms.refresh_specs()
        await self.wait_ready(ready_timeout_s)
        self.on_timer(self.clock())  # venue readiness into risk before the first request
        self.seed_from_oms()
        self.rms.refresh_specs()
        if self.cancel_orphans:
            self.cancel_open_orders()
        reqs = self.strategy.on_start(self.ctx)
        self.started = True
        if reqs:
            self.dispatch(reqs, self.clock())
        await self.loop()
        await self.shutdown(self._stop_reason or "stop")
        return 0

    async def loop(self) -> None:
        poll = self.poll_once
        clock = self.clock
        idle = self.idle
        io_every = idle.io_every
        busy = 0
        waker = None
        if getattr(idle, "name", "") == "backoff" and hasattr(idle, "waker") and idle.waker is None:
            waker = idle.waker = RingWaker(self.rings)
        self._waker = getattr(idle, "waker", None)
        self._next_timer = clock() + self.timer_ns
        try:
            await self._loop_body(poll, clock, idle, io_every, busy)
        finally:
            self._waker = None
            if waker is not None:
                waker.close()
                idle.waker = None

    async def _loop_body(self, poll, clock, idle, io_every: int, busy: int) -> None:
        while self._stop_reason is None:
            if poll():
                idle.reset()
                busy += 1
                if busy >= io_every:
                    busy = 0
                    await asyncio.sleep(0)  # let the order connections run
            else:
                busy = 0
                await idle.idle()
            now = clock()
            if now >= self._next_timer:
                self._next_timer = now + self.timer_ns
                self.on_timer(now)

    async def shutdown(self, reason: str) -> None:
        self.rms.halt(reason, Reason.SIGNAL)
        self.rms.take_kill_request()
        try:
            self.strategy.on_halt(reason)
        except Exception:
            self._strategy_error("on_halt")
        if self._kill_task is not None and not self._kill_task.done():
            await self._kill_task
        await self.kill(reason)
        try:
            self.strategy.on_stop()
        except Exception:
            self._strategy_error("on_stop")
        try:
            await self.oms.stop(cancel_all=True)
        except Exception as e:
            log.error("oms.stop failed: %s", e)
        self.publish()
        if self.status_writer is not None:
            self.status_writer.maybe_write(self, False, force=True)  # final figures for --summary

    def latency_ns(self) -> list[int]:
        n = min(self.lat_n, LAT_SAMPLES)
        return sorted(self.lat[:n])


class _NullStrategy(Strategy):
    pass


_NULL_STRATEGY = _NullStrategy()


# ---- process entry point ---------------------------------------------------------------------
def apply_urls(cfg: Config, urls: dict | None) -> None:
    """Point venues at given URLs: either the simulator's map (rest / ws / ws_api / ws_private)
    or config names (rest_url / ws_url / ws_api_url)."""
    if not urls:
        return
    for name, u in urls.items():
        if name not in cfg.exchanges or not isinstance(u, dict):
            continue
        vc = cfg.exchanges[name]
        vc.rest_url = u.get("rest_url") or u.get("rest") or vc.rest_url
        vc.ws_url = u.get("ws_url") or u.get("ws_public") or u.get("ws") or vc.ws_url
        vc.ws_api_url = u.get("ws_api_url") or u.get("ws_api") or u.get("ws_private") or u.get("ws") or vc.ws_api_url


def load_strategy(spec: str | None, cfg: Config) -> Strategy:
    """`module:Class` (constructed with the Config when it accepts an argument) or the
    built-in market maker."""
    if not spec:
        from strategy.market_making import MarketMaker

        return MarketMaker(cfg.market_making, stale_ms=cfg.risk.stale_md_ms)
    mod_name, _, cls_name = spec.partition(":")
    if not cls_name:
        raise ConfigError(f"--strategy must be module:Class, got {spec!r}")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load strategy {spec!r}: {e}") from None
    try:
        return cls(cfg)
    except TypeError:
        return cls()


def _attach_ring(name: str, record_size: int, timeout_s: float):
    from ringbuf.ring import Ring
    from ringbuf.shm import ShmError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return Ring.attach(name, record_size)
        except (ShmError, ValueError):  # absent, or created by the producer and not yet sized
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def build_instruments(cfg: Config) -> Instruments:
    """Ids in config order (every process agrees); the OMS fills in tick/lot rules."""
    syms = list(cfg.market_making.symbols)
    for v in cfg.exchanges.values():
        for s in v.symbols:
            if s not in syms:
                syms.append(s)
    return Instruments(syms)


def run_strategy_process(config_path: str | None, prefix: str, cpu: int | None, venues: list[str],
                         urls: dict | None = None, strategy: str | Strategy | None = None,
                         md_ring_timeout_s: float = 30.0, database_url: str | None = None) -> int:
    """The strategy process: pin, attach rings, start the OMS, trade, and on SIGTERM/SIGINT
    run the kill switch and return 0. Bad config: one-line error, return 2.

    `database_url` (else `DATABASE_URL`, else `[database].url`): read once at start-up for the
    last persisted positions, so that a restarted OMS continues from the true inventory; without
    one (or when it is unreachable) positions are rebuilt from the venues' recent fills."""
    from common.config import load
    from ringbuf.counters import Counters
    from ringbuf.records import EVENT_RECORD_SIZE, MD_RECORD_SIZE
    from ringbuf.ring import Ring, RingError
    from ringbuf.ringstat import counters_name, ring_name
    from ringbuf.shm import ShmError
    from rms.control import ControlBlock

    try:
        cfg = load(config_path)
        apply_urls(cfg, urls)
        venue_ids = [int(Exchange.from_name(v)) for v in venues] if venues else \
            [int(v) for v in cfg.enabled_venues()]
        strat = strategy if isinstance(strategy, Strategy) else load_strategy(strategy, cfg)
    except (ConfigError, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from common.logs import setup_logging

    setup_logging(cfg)
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except (OSError, ValueError) as e:
            print(f"strategy: cannot pin to cpu {cpu}: {e}", file=sys.stderr)
            return 2
    instruments = build_instruments(cfg)
    try:
        md_rings = []
        for v in venue_ids:
            r = _attach_ring(ring_name(prefix, f"md-{Exchange(v).key}"), MD_RECORD_SIZE, md_ring_timeout_s)
            r.claim_consumer()
            md_rings.append(r)
        ev_name = ring_name(prefix, "events")
        try:
            events = Ring.attach(ev_name, EVENT_RECORD_SIZE)
        except ShmError:
            try:
                events = Ring.create(ev_name, 1 << 16, EVENT_RECORD_SIZE, lossless=True)
            except ShmError:
                events = Ring.attach(ev_name, EVENT_RECORD_SIZE)
        events.claim_producer(journal_path=os.path.join(cfg.system.data_dir, "journal", f"{ev_name}.jnl"))
    except (ShmError, RingError) as e:
        print(f"strategy: {e}", file=sys.stderr)
        return 1
    counters = Counters(counters_name(prefix, "strategy"), "strategy")
    control = ControlBlock.create(prefix)
    try:
        from oms.manager import OrderManager
    except ImportError as e:
        print(f"strategy: the OMS is not available ({e})", file=sys.stderr)
        return 1
    db_url = database_url or os.environ.get("DATABASE_URL") or cfg.database.url
    position_source = None
    if db_url:
        from persist.queries import position_source as _position_source

        # the launcher sets where a run's books start: a restarted process resumes this run's
        # positions; a new simulator run starts flat, a live run carries the inventory over (0)
        since = int(os.environ.get("HFT_POSITIONS_SINCE_NS", "0") or 0)
        position_source = _position_source(db_url, run_start_ns=since)
    else:
        log.info("no database URL given: positions are rebuilt from the venues' recent fills at start")
    oms = OrderManager(cfg, instruments, events_ring=events, counters=counters, position_source=position_source)
    state = MarketState(max(64, len(instruments) + 1))
    rms = RiskEngine(cfg.risk, instruments, state, counters, events)
    host = StrategyHost(cfg, instruments, strat, oms, md_rings, rms=rms, state=state, counters=counters,
                        events_ring=events, control=control, venues=venue_ids)

    from strategy.status import StatusWriter

    host.status_writer = StatusWriter(cfg.system.data_dir, prefix)
    host.status_writer.attach(oms)  # counts every order event from the first one

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, host.request_stop, sig.name)
        return await host.run()

    runner: Any
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if cfg.system.gc_freeze:
        gc.collect()
        gc.freeze()  # start-up objects never move again
        gc.set_threshold(50_000, 50, 100)  # the hot path makes little cyclic garbage
    try:
        rc = runner(main())
    except Exception as e:  # e.g. a venue that cannot start: one line, not a traceback
        log.debug("strategy host failed", exc_info=True)
        print(f"strategy: {type(e).__name__}: {e}", file=sys.stderr)
        rc = 1
    finally:
        control.close()
        control.unlink()
        counters.close()
    log.info("strategy host stopped: %s", json.dumps(rms.summary()))
    return rc


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m strategy.host", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="config.toml (default: built-in simulator setup)")
    ap.add_argument("--prefix", default=None, help="shared-memory prefix (default: system.shm_prefix)")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this core")
    ap.add_argument("--venues", default="", help="comma-separated venues (default: enabled venues)")
    ap.add_argument("--urls", default=None, help="venue URL map as JSON, or @file holding it")
    ap.add_argument("--strategy", default=None, help="module:Class (default: the built-in market maker)")
    args = ap.parse_args(argv)
    urls = None
    if args.urls:
        try:
            text = open(args.urls[1:]).read() if args.urls.startswith("@") else args.urls
            urls = json.loads(text)
        except (OSError, ValueError) as e:
            print(f"strategy: --urls is not a JSON map or readable file: {e}", file=sys.stderr)
            return 2
    prefix = args.prefix
    if prefix is None:
        from common.config import load

        try:
            prefix = load(args.config).system.shm_prefix
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
    venues = [v for v in args.venues.split(",") if v]
    return run_strategy_process(args.config, prefix, args.cpu, venues, urls, strategy=args.strategy)


if __name__ == "__main__":
    sys.exit(main())
