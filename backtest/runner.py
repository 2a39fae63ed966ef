"""The backtest event loop: market data, order requests and venue replies on one virtual
timeline, through the live strategy host (strategy.host.StrategyHost: same state updates,
same Strategy callbacks, same rms checks) and the simulator's matching engine.

Two clocks: a record happens at the venue at venue time V and reaches the strategy at local
time L = V + feed latency; a request sent at local time t reaches the venue at t + order
latency, and the venue's reply reaches us after the ack latency. Events are processed in
time order (venue before local on ties), so nothing is known before it could be.
When no order is working and the strategy takes no per-record callbacks, records are
applied to the market state in numpy batches (the fast path). Must not read the wall clock.
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np

from common.enums import Exchange, TradingState
from ringbuf import records as R
from rms.engine import RiskEngine
from strategy.api import Strategy
from strategy.host import StrategyHost
from strategy.state import N_VENUES, MarketState

from .data import VENUE_NAMES
from .oms import ARRIVE, BacktestOMS
from .venue import VenueSim, record_columns

INF = 1 << 62
FAST_CHUNK = 1 << 16
DEFAULT_FEES_BPS = (8.0, 10.0)  # maker, taker: what the simulator charges (sim.config maker_fee/taker_fee)


class VirtualClock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class ReplayRing:
    """Looks like a lossless md ring to the host; exposes the records of one frame at a time."""

    mode = 1
    lost = 0

    def __init__(self, recs: np.ndarray) -> None:
        self.buffer = memoryview(recs.view(np.uint8).reshape(-1))
        self.copy_buffer = self.buffer
        self.pos = 0
        self.end = 0

    @property
    def tail_position(self) -> int:
        return self.end

    @property
    def head_position(self) -> int:
        return self.pos

    def poll(self) -> int:
        p = self.pos
        if p < self.end:
            self.pos = p + 1
            return p * R.MD_RECORD_SIZE
        return -1

    def release(self) -> None:
        return None


class BacktestHost(StrategyHost):
    """The live host with the kill switch done synchronously (no event loop in a backtest)."""

    def start_kill(self, reason: str) -> None:
        try:
            self.strategy.on_halt(reason)
        except Exception:
            self._strategy_error("on_halt")
        self.oms.cancel_everything()
        self.kill_reasons.append(reason)


def overrides(cls: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(Strategy, name)


class Backtest:
    def __init__(self, cfg, instruments, strategy: Strategy, recs: np.ndarray, latency, generated: bool,
                 fees_bps: dict[int, tuple[float, float]] | None = None, timer_ms: float | None = None,
                 sample_ms: float = 100.0, progress=None) -> None:
        self.cfg = cfg
        self.instruments = instruments
        self.strategy = strategy
        self.recs = recs
        self.latency = latency
        self.progress = progress
        n = recs.shape[0]
        self.n = n
        venues_present = sorted({int(v) for v in np.unique(recs["venue_id"])}) if n else []
        self.venue_ids = [v for v in venues_present if 0 < v < N_VENUES]
        # the two timelines
        feed = latency.feed_ns_array(n) if n else np.zeros(0, dtype=np.int64)
        t = recs["recv_ts_ns"].astype(np.int64)
        if generated:  # generator times are venue times
            self.V = t.copy()
            self.L = np.maximum.accumulate(t + feed) if n else t
        else:  # recorded times are our receive times
            self.L = t.copy()
            self.V = np.maximum.accumulate(t - feed) if n else t
        self.clock = VirtualClock()
        symbols = {i: instruments.name(i) for i in np.unique(recs["instr_id"]).tolist() if instruments.name(i)}
        fees_bps = fees_bps or {}
        self.fees_bps = {v: fees_bps.get(v, DEFAULT_FEES_BPS) for v in self.venue_ids}
        over = {}
        for v in self.venue_ids:
            for i in symbols:
                spec = instruments.spec(v, i)
                if spec is not None:
                    over[(v, i)] = (spec.tick_size, spec.lot_size)
        t_setup = time.perf_counter()
        self.columns = record_columns(recs)
        self.venues = {v: VenueSim(v, VENUE_NAMES[v], recs, symbols, self.fees_bps[v][0] * 1e-4,
                                   self.fees_bps[v][1] * 1e-4, over, self.columns) for v in self.venue_ids}
        self.setup_s = time.perf_counter() - t_setup
        self.oms = BacktestOMS(self.clock, latency, self.venues, instruments)
        self.state = MarketState(max(64, len(instruments) + 1))
        self.rms = RiskEngine(cfg.risk, instruments, self.state, None, None, clock=self.clock)
        self.ring = ReplayRing(recs)
        self.host = BacktestHost(cfg, instruments, strategy, self.oms, [self.ring], rms=self.rms,
                                 state=self.state, venues=self.venue_ids, clock=self.clock, poll_limit=256)
        self.host.kill_reasons = []
        if timer_ms is not None:
            self.host.timer_ns = int(timer_ms * 1e6)
        cls = type(strategy)
        self.per_record = (overrides(cls, "on_market_data") and not strategy.batch_mode) or \
            overrides(cls, "on_end_of_batch")
        # results
        ni = self.state.n_instr
        self.ni = ni
        self.pos = np.zeros(N_VENUES * ni)
        self.cash = 0.0
        self.fees = 0.0
        self.max_abs_pos = np.zeros(N_VENUES * ni)
        span = int(self.L[-1] - self.L[0]) if n else 0
        self.sample_ns = max(int(sample_ms * 1e6), span // 4000, 1)
        self.samples: list[tuple] = []  # (local ns, equity, fees, pos vector of traded keys)
        self.quotes: list[tuple] = []  # (local ns, key, mid, our best bid, our best ask)
        self.keys = np.unique(recs["venue_id"].astype(np.int64) * ni + recs["instr_id"]).tolist() if n else []
        self.fast_records = 0
        self.slow_records = 0
        self.wall_s = 0.0
        self._fills_seen = 0

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> dict:
        t_wall = time.perf_counter()
        host = self.host
        oms = self.oms
        heap = oms.heap
        clock = self.clock
        n = self.n
        V = self.V
        L = self.L
        Vl = V.tolist()
        Ll = L.tolist()
        venue_l = self.recs["venue_id"].tolist()
        instr_l = self.columns["instr_id"]
        venues = self.venues
        ring = self.ring
        poll = host.poll_once
        per_record = self.per_record
        timer_hooks = overrides(type(self.strategy), "on_timer")
        timer_ns = host.timer_ns
        sample_ns = self.sample_ns
        out: list = []
        if n == 0:
            return self.finish(t_wall)
        clock.now = int(L[0])
        host.on_timer(clock.now)  # venue readiness into risk
        reqs = self.strategy.on_start(host.ctx)
        host.started = True
        if reqs:
            host.dispatch(reqs, clock.now)
        next_timer = int(L[0]) + timer_ns
        next_sample = int(L[0])
        vc = 0
        lc = 0
        prog_next = 0
        while lc < n:
            tl = Ll[lc]
            th = heap[0][0] if heap else INF
            tt = next_timer
            # venue side first: records that reached the venue before anything local happens
            tmin = tl if tl < th else th
            if tt < tmin:
                tmin = tt
            if vc < n and Vl[vc] <= tmin:
                if not oms.open:
                    vc = int(np.searchsorted(V, tmin, side="right"))
                else:
                    while vc < n and Vl[vc] <= tmin:
                        vs = venues.get(venue_l[vc])
                        if vs is not None and vs.engine.orders and vs.resting(instr_l[vc]):
                            vs.on_record(vc, Vl[vc], out)
                            if out:
                                oms.replies(venue_l[vc], out)
                                out.clear()
                                vc += 1
                                break  # a reply may now be the earliest event
                        vc += 1
                continue
            if th <= tl and th <= tt:
                when, _seq, kind, v, payload = heapq.heappop(heap)
                if kind == ARRIVE:
                    oms.arrive(when, v, payload, vc)
                else:
                    clock.now = when
                    oms.deliver(payload, when)
                    if payload.kind == "FILL":
                        self._on_fills()
                    if host._events:
                        host._drain_events()
                continue
            if tt <= tl:
                clock.now = tt
                host.on_timer(tt)
                next_timer = tt + timer_ns
                if tt >= next_sample:
                    self._sample(tt)
                    next_sample = tt + sample_ns
                continue
            # local: deliver the next frame (all records received at tl)
            clock.now = tl
            if not per_record and not heap and not oms.open:
                # nothing is working: when no timer can matter either, run whole chunks
                quiet = not timer_hooks and not self.pos.any()
                end = lc + FAST_CHUNK if quiet else min(int(np.searchsorted(L, tt, side="left")), lc + FAST_CHUNK)
                end = min(max(end, lc + 1), n)
                self._apply_fast(lc, end)
                clock.now = Ll[end - 1]
                lc = end
                if quiet and clock.now >= next_timer:
                    next_timer += ((clock.now - next_timer) // timer_ns + 1) * timer_ns
                    if clock.now >= next_sample:
                        self._sample(clock.now)
                        next_sample = clock.now + sample_ns
            else:
                end = lc + 1
                while end < n and Ll[end] == tl:
                    end += 1
                ring.pos = lc
                ring.end = end
                while ring.pos < end:
                    poll()
                self.slow_records += end - lc
                lc = end
            if self.progress is not None and lc >= prog_next:
                self.progress(lc, n)
                prog_next = lc + 200_000
        # end of data: stop quoting, cancel what rests, let the replies come back
        self._shutdown()
        return self.finish(t_wall)

    def _shutdown(self) -> None:
        host = self.host
        heap = self.oms.heap
        self.rms.halt("end of backtest data")
        self.rms.take_kill_request()
        host.start_kill("end of backtest data")
        while heap:
            when, _seq, kind, v, payload = heapq.heappop(heap)
            if kind == ARRIVE:
                self.oms.arrive(when, v, payload, self.n)
            else:
                self.clock.now = when
                self.oms.deliver(payload, when)
                if payload.kind == "FILL":
                    self._on_fills()
                if host._events:
                    host._drain_events()
        try:
            self.strategy.on_stop()
        except Exception:
            host._strategy_error("on_stop")
        self._sample(self.clock.now)

    # ---- fast path: market state from a batch of records ------------------------------------------
    def _apply_fast(self, a: int, b: int) -> None:
        r = self.recs[a:b]
        now = self.L[a:b]
        st = self.state
        ni = self.ni
        kind = r["kind"]
        v = r["venue_id"].astype(np.int64)
        i = r["instr_id"].astype(np.int64)
        ok = (v > 0) & (v < N_VENUES) & (i > 0) & (i < ni)
        nbad = int((~ok).sum())
        if nbad:
            self.host.malformed += nbad
        key = v * ni + i
        flags = r["flags"]
        q = ok & (kind == R.KIND_QUOTE)
        tr = ok & (kind == R.KIND_TRADE)
        bk = ok & (kind == R.KIND_BOOK_LEVEL)
        rs = ok & (kind == R.KIND_BOOK_RESET)
        upd = q | bk | rs
        bid_px = st.bid_px.reshape(-1)
        bid_qty = st.bid_qty.reshape(-1)
        ask_px = st.ask_px.reshape(-1)
        ask_qty = st.ask_qty.reshape(-1)
        if q.any():
            k, j = _last_per_key(key, q)
            bid_px[k] = r["f0"][j]
            bid_qty[k] = r["f1"][j]
            ask_px[k] = r["f2"][j]
            ask_qty[k] = r["f3"][j]
            st.exch_ts_ns.reshape(-1)[k] = r["exch_ts_ns"][j]
        if tr.any():
            k, j = _last_per_key(key, tr)
            st.last_trade_px.reshape(-1)[k] = r["f0"][j]
        if upd.any():
            k, j = _last_per_key(key, upd)
            st.update_ns.reshape(-1)[k] = now[j]
        # resync / valid: the last record that decides them wins (same rules as the host)
        has_depth = st.has_depth.reshape(-1)
        dep = bk | rs
        depth_before = has_depth[key].astype(bool)
        if dep.any():
            kd, jd = _first_per_key(key, dep)
            first = np.full(N_VENUES * ni, b - a + 1, dtype=np.int64)
            first[kd] = jd
            depth_before |= first[key] < np.arange(b - a)
            has_depth[kd] = 1
        resync1 = (q & ((flags & R.F_RESYNC) != 0)) | (bk & ((flags & R.F_RESYNC) != 0)) | rs
        resync0 = (bk & ((flags & R.F_RESYNC) == 0) & ((flags & R.F_SNAPSHOT_END) != 0)) | \
            (q & ((flags & R.F_RESYNC) == 0) & ~depth_before)
        touch = q | resync1 | resync0
        resync = st.resync.reshape(-1)
        valid = st.valid.reshape(-1)
        if (resync1 | resync0).any():
            k, j = _last_per_key(key, resync1 | resync0)
            resync[k] = resync1[j].astype(np.uint8)
        if touch.any():
            k, _ = _last_per_key(key, touch)
            valid[k] = ((resync[k] == 0) & (bid_px[k] > 0.0) & (bid_px[k] < ask_px[k])).astype(np.uint8)
        self.host.records += b - a
        self.host.batches += 1
        self.fast_records += b - a

    # ---- results ---------------------------------------------------------------------------------
    def _on_fills(self) -> None:
        fills = self.oms.fills
        ni = self.ni
        while self._fills_seen < len(fills):
            f = fills[self._fills_seen]
            self._fills_seen += 1
            _t, _tv, v, i, side, qty, px, fee, _liq, _cid = f
            k = v * ni + i
            self.pos[k] += qty if side > 0 else -qty
            self.cash -= (qty if side > 0 else -qty) * px
            self.cash -= fee
            self.fees += fee
            a = abs(self.pos[k])
            if a > self.max_abs_pos[k]:
                self.max_abs_pos[k] = a

    def mids(self) -> np.ndarray:
        b = self.state.bid_px.reshape(-1)
        a = self.state.ask_px.reshape(-1)
        m = np.where((b > 0) & (a > 0), (a + b) * 0.5, 0.0)
        return m

    def equity(self) -> float:
        m = self.mids()
        held = self.pos != 0.0
        if not held.any():
            return self.cash
        return self.cash + float((self.pos[held] * m[held]).sum())

    def _sample(self, t: int) -> None:
        m = self.mids()
        self.samples.append((t, self.equity(), self.fees, self.pos[self.keys].copy()))
        for k in self.keys:
            v, i = divmod(k, self.ni)
            bb = 0.0
            ba = 0.0
            for o in self.oms.open.values():
                if int(o.venue) == v and o.instr_id == i:
                    if o.side > 0:
                        bb = max(bb, o.px)
                    else:
                        ba = o.px if ba == 0.0 else min(ba, o.px)
            self.quotes.append((t, k, float(m[k]), bb, ba))

    def finish(self, t_wall: float) -> dict:
        self.wall_s = time.perf_counter() - t_wall
        return self.summary()

    def summary(self) -> dict:
        oms = self.oms
        fills = oms.fills
        n_fills = len(fills)
        vol_quote = float(sum(f[5] * f[6] for f in fills))
        vol_base = float(sum(f[5] for f in fills))
        filled_orders = len({f[9] for f in fills})
        sent = oms.stats["sent_new"]
        eq = np.array([s[1] for s in self.samples]) if self.samples else np.zeros(1)
        peak = np.maximum.accumulate(eq)
        max_dd = float((peak - eq).max()) if eq.size else 0.0
        t = np.array([s[0] for s in self.samples], dtype=np.int64) if self.samples else np.zeros(1, np.int64)
        per_min = _per_minute(t, eq)
        sharpe = float(per_min.mean() / per_min.std()) if per_min.size > 1 and per_min.std() > 0 else 0.0
        rejects = {f"rms_{k}": v for k, v in self.rms.denials().items()}
        for k, v in oms.rejects_by_reason.items():
            rejects[f"venue_{k}"] = v
        if self.host.oms_refused:
            rejects["oms_refused"] = self.host.oms_refused
        positions = {}
        for k in self.keys:
            v, i = divmod(k, self.ni)
            name = f"{Exchange(v).key}:{self.instruments.name(i)}" if 0 < v < N_VENUES else str(k)
            positions[name] = {"final": round(float(self.pos[k]), 12), "max_abs": round(float(self.max_abs_pos[k]), 12)}
        total_pos = {}
        for k in self.keys:
            v, i = divmod(k, self.ni)
            nm = self.instruments.name(i)
            total_pos[nm] = round(total_pos.get(nm, 0.0) + float(self.pos[k]), 12)
        span_ns = int(self.L[-1] - self.L[0]) if self.n else 0
        lat = np.array(oms.order_latency_ns, dtype=np.float64) / 1000.0
        return {
            "records": self.n,
            "span_s": span_ns / 1e9,
            "pnl": round(self.equity(), 10),
            "fees": round(self.fees, 10),
            "volume_quote": round(vol_quote, 10),
            "volume_base": round(vol_base, 12),
            "fills": n_fills,
            "filled_orders": filled_orders,
            "fill_ratio": round(filled_orders / sent, 6) if sent else 0.0,
            "maker_fills": int(sum(1 for f in fills if f[8] == 1)),
            "taker_fills": int(sum(1 for f in fills if f[8] == 2)),
            "max_position": round(float(self.max_abs_pos.max()) if self.max_abs_pos.size else 0.0, 12),
            "max_drawdown": round(max_dd, 10),
            "sharpe_per_minute": round(sharpe, 6),
            "sharpe_annualized": round(sharpe * math.sqrt(60 * 24 * 365), 4),
            "minutes": int(per_min.size),
            "orders_sent": sent,
            "cancels_sent": oms.stats["sent_cancel"],
            "amends_sent": oms.stats["sent_amend"],
            "rejects_by_reason": dict(sorted(rejects.items())),
            "positions": positions,
            "final_position_by_symbol": total_pos,
            "order_to_ack_us": {f"p{p}": round(float(np.percentile(lat, p)), 3) for p in (50, 90, 99)}
            if lat.size else {},
            "venue_stats": oms.stats,
            "trading_state": self.rms.state.name if isinstance(self.rms.state, TradingState) else str(self.rms.state),
            "kill_reasons": list(self.host.kill_reasons),
            "strategy_errors": self.host.strategy_errors,
            "malformed_records": self.host.malformed,
            "fast_path_records": self.fast_records,
            "callback_records": self.slow_records,
            "fees_bps": {Exchange(v).key: {"maker": m, "taker": tk} for v, (m, tk) in self.fees_bps.items()},
            "latency": self.latency.describe(),
        }


def _last_per_key(key: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, index of the last masked record per key)."""
    idx = np.flatnonzero(mask)
    k = key[idx]
    rev_k = k[::-1]
    uk, first_rev = np.unique(rev_k, return_index=True)
    return uk, idx[idx.size - 1 - first_rev]


def _first_per_key(key: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(mask)
    uk, first = np.unique(key[idx], return_index=True)
    return uk, idx[first]


def _per_minute(t: np.ndarray, eq: np.ndarray) -> np.ndarray:
    """PnL per whole minute of local time (equity at each minute boundary, differenced)."""
    if t.size < 2:
        return np.zeros(0)
    bounds = np.arange(t[0], t[-1] + 1, 60_000_000_000, dtype=np.int64)
    if bounds.size < 2:
        return np.zeros(0)
    j = np.searchsorted(t, bounds, side="right") - 1
    return np.diff(eq[j])
