"""The built-in market maker ([strategy.market_making]): fixed-spread or Avellaneda-Stoikov
quotes around the mid, inventory skew, several levels, post-only, rounded to each
venue's tick and lot, never crossing the book, within max_position counting open orders.

A requote touches as few orders as possible: an order within `requote_threshold_bps` of
its target stays, a young order (< `min_order_lifetime_ms`) stays, otherwise it is
amended (all three venues support it) or cancelled and replaced after the cancel is
acknowledged. Quotes are pulled when the book is stale, resyncing or risk is halted.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

from common.config import MarketMakingConfig
from common.enums import Exchange, OrderSide, OrderType, TimeInForce, TradingState
from strategy.api import MarketData, Strategy, StrategyContext, event_kind
from strategy.orders import OrderRequest, RequestKind
from strategy.state import N_VENUES

EMPTY = 0
PENDING_NEW = 1
LIVE = 2
PENDING_CANCEL = 3
PENDING_AMEND = 4

# common.enums.OrderState values
_ST_OPEN = frozenset({2, 3})  # NEW, PARTIALLY_FILLED
_ST_TERMINAL = frozenset({4, 6, 7, 8})  # FILLED, CANCELED, REJECTED, EXPIRED
_AMEND_DONE = frozenset({"AMENDED", "AMEND_REJECT", "REJECT", "RECONCILED", "ACK"})
_THROTTLE_CODES = frozenset({24, 50})  # rms Reason.RATE_LIMIT, Reason.OMS_REJECT
_EPS = 1e-12
_BUY = OrderSide.BUY
_HALTED = TradingState.HALTED
_REDUCING = TradingState.REDUCING
_SELL = OrderSide.SELL


def as_quotes(mid: float, q: float, gamma: float, sigma: float, tau_s: float, k: float) -> tuple[float, float]:
    """Avellaneda-Stoikov reservation price and total spread.

    r = s - q * gamma * sigma^2 * (T - t);  delta = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k)
    with s the mid, q the inventory (base units), sigma the mid volatility (price units per
    sqrt(second)), T - t = tau_s seconds, k the order-book intensity (per price unit).
    Quotes are r - delta/2 and r + delta/2.
    """
    g = gamma * sigma * sigma * tau_s
    return mid - q * g, g + (2.0 / gamma) * math.log1p(gamma / k)


def fixed_quotes(mid: float, q: float, spread_bps: float, skew_bps: float, max_position: float) -> tuple[float, float]:
    """Fixed mode: reservation price skewed by `skew_bps` per max_position of inventory
    (long inventory lowers both quotes), total spread `spread_bps` of the mid."""
    r = mid - skew_bps * 1e-4 * mid * (q / max_position)
    return r, spread_bps * 1e-4 * mid


class VolEstimator:
    """Mid volatility as a random walk: sigma^2 per second = sum(d mid^2) / sum(dt) over the
    last `window` changes. O(1) per update, preallocated."""

    __slots__ = ("n", "d2", "dt", "pos", "count", "sum_d2", "sum_dt", "last_mid", "last_ns")

    def __init__(self, window: int) -> None:
        self.n = max(2, window)
        self.d2 = array("d", bytes(8 * self.n))
        self.dt = array("d", bytes(8 * self.n))
        self.pos = 0
        self.count = 0
        self.sum_d2 = 0.0
        self.sum_dt = 0.0
        self.last_mid = 0.0
        self.last_ns = 0

    def update(self, mid: float, now_ns: int) -> None:
        if self.last_ns == 0:
            self.last_mid = mid
            self.last_ns = now_ns
            return
        dt = (now_ns - self.last_ns) * 1e-9
        if dt <= 0.0 or mid == self.last_mid:
            return
        d = mid - self.last_mid
        p = self.pos
        self.sum_d2 += d * d - self.d2[p]
        self.sum_dt += dt - self.dt[p]
        self.d2[p] = d * d
        self.dt[p] = dt
        self.pos = (p + 1) % self.n
        if self.count < self.n:
            self.count += 1
        self.last_mid = mid
        self.last_ns = now_ns

    def sigma(self) -> float:
        """Price units per sqrt(second); 0 until two changes were seen."""
        if self.count < 2 or self.sum_dt <= 0.0:
            return 0.0
        return math.sqrt(max(0.0, self.sum_d2) / self.sum_dt)


class MarketMaker(Strategy):
    """Quotes `levels` post-only orders per side on every configured (venue, symbol)."""

    # More than 30 instance attributes overflow CPython 3.11's shared-key instance layout: every
    # attribute load then becomes a dict lookup (LOAD_ATTR_WITH_HINT, ~20 ns more each on this
    # path). Slots keep the hot path's loads at LOAD_ATTR_SLOT speed. Subclasses
    # still get a __dict__ from Strategy.
    __slots__ = ("cfg", "levels", "per_pair", "stale_ns", "min_life_ns", "pending_timeout_ns", "throttle_ns", "thr",
                 "amend_venues", "replace_venues", "as_mode", "skew_per_pos", "half_spread", "spacing",
                 "max_position", "skip_thr", "pairs", "pair_of", "pair_at", "pconst", "ctx", "n_instr",
                 "quotes_sent", "amends_sent", "cancels_sent", "pulls", "stuck_nudges", "positions", "ready_flags",
                 "risk", "q", "state", "s_status", "s_cid", "s_px", "s_qty", "s_ns", "s_young", "s_pend_ns", "s_req",
                 "s_want_px", "s_want_qty", "cid_slot", "symbols", "r_new", "r_amend", "r_cancel", "specs",
                 "inv_tick", "inv_lot", "size", "vol", "last_mid", "last_pos", "dirty", "pulled", "hold_until")

    name = "market_making"
    # one level per side: requote() runs the ladder and the slot decisions straight-line.
    # False takes the general path (ladder() and the slot loop), which tests compare it with.
    inline_one_level = True

    def __init__(self, cfg: MarketMakingConfig, stale_ms: float = 2000.0,
                 amend_venues: tuple[int, ...] = (1, 2, 3), replace_venues: tuple[int, ...] = (1,),
                 pending_timeout_ms: float = 5000.0) -> None:
        self.cfg = cfg
        self.levels = cfg.levels
        self.per_pair = 2 * cfg.levels  # slots per pair: levels bids, then levels asks
        self.stale_ns = int(stale_ms * 1e6)
        self.min_life_ns = int(cfg.min_order_lifetime_ms * 1e6)
        self.pending_timeout_ns = int(pending_timeout_ms * 1e6)
        self.throttle_ns = 250_000_000  # hold after a rate-limit denial
        self.thr = cfg.requote_threshold_bps * 1e-4
        self.amend_venues = frozenset(amend_venues)
        self.replace_venues = frozenset(replace_venues)  # amends of a new price are cancel-replace (Binance)
        self.as_mode = cfg.mode == "avellaneda_stoikov"
        self.skew_per_pos = cfg.skew_bps * 1e-4 / cfg.max_position
        self.half_spread = cfg.spread_bps * 0.5e-4
        self.spacing = cfg.level_spacing_bps * 0.5e-4  # times (bid + ask)
        self.max_position = cfg.max_position
        self.skip_thr = 0.25 * self.thr  # a mid move below this cannot move a quote past the threshold
        self.pairs: list[tuple[int, int]] = []
        self.pair_of: dict[int, int] = {}  # state index (venue * n_instr + instr) -> pair
        self.pair_at: list[int] = []  # the same as a list over every state index (-1: not quoted)
        self.pconst: list[tuple | None] = []  # per pair: (venue, state index, slot bounds, rules)
        self.ctx: Any = None  # the StrategyContext, from on_start
        self.n_instr = 0
        self.quotes_sent = 0
        self.amends_sent = 0
        self.cancels_sent = 0
        self.pulls = 0
        self.stuck_nudges = 0
        self.positions = None
        self.ready_flags = None
        self.risk = None
        self.q = 0.0

    # ---- life cycle ----------------------------------------------------------
    def on_start(self, ctx: StrategyContext) -> list[OrderRequest] | None:
        self.ctx = ctx
        st = ctx.state
        self.state = st
        self.n_instr = st.n_instr
        venues = [Exchange.from_name(v) for v in self.cfg.venues]
        active = set(ctx.venues)
        for venue in venues:
            if int(venue) not in active:
                continue
            for name in self.cfg.symbols:
                i = ctx.instruments.id_for(name)
                if not st.in_range(int(venue), i):
                    continue
                self.pair_of[int(venue) * st.n_instr + i] = len(self.pairs)
                self.pairs.append((int(venue), i))
        self.pair_at = [-1] * (N_VENUES * st.n_instr)
        for k, p in self.pair_of.items():
            self.pair_at[k] = p
        n = len(self.pairs) * 2 * self.levels
        self.s_status = [EMPTY] * n
        self.s_cid = [""] * n
        self.s_px = [0.0] * n
        self.s_qty = [0.0] * n
        self.s_ns = [0] * n
        self.s_young = [0] * n  # s_ns + min_order_lifetime: the order may move from then on
        self.s_pend_ns = [0] * n  # when the slot's request in flight was sent
        self.s_req: list[OrderRequest | None] = [None] * n
        self.s_want_px = [0.0] * n
        self.s_want_qty = [0.0] * n
        self.cid_slot: dict[str, int] = {}
        self.symbols = [ctx.symbol(v, i) for v, i in self.pairs]
        # one request object per slot and kind, reused: nothing is built per decision
        self.r_new: list[OrderRequest] = []
        self.r_amend: list[OrderRequest] = []
        self.r_cancel: list[OrderRequest] = []
        for s in range(n):
            p = s // (2 * self.levels)
            v, i = self.pairs[p]
            side = _BUY if (s - p * 2 * self.levels) < self.levels else _SELL
            sym = self.symbols[p]
            self.r_new.append(OrderRequest(RequestKind.NEW, sym, side, 0.0, 0.0, OrderType.LIMIT,
                                           TimeInForce.POST_ONLY, strategy_id=self.strategy_id,
                                           venue=Exchange(v), instr_id=i))
            a = OrderRequest(RequestKind.AMEND, sym, side, venue=Exchange(v), instr_id=i,
                             strategy_id=self.strategy_id)
            self.r_amend.append(a)
            self.r_cancel.append(OrderRequest(RequestKind.CANCEL, sym, side, venue=Exchange(v), instr_id=i,
                                              strategy_id=self.strategy_id))
        self.positions = getattr(ctx, "positions", None)  # flat view indexed like the state, when given
        self.ready_flags = getattr(ctx, "ready_flags", None)  # indexable by venue id, when given
        self.risk = getattr(ctx, "risk", None)  # object with .state (TradingState), when given
        self.specs = [None] * len(self.pairs)
        self.pconst = [None] * len(self.pairs)
        self.inv_tick = [1.0] * len(self.pairs)
        self.inv_lot = [1.0] * len(self.pairs)
        self.size = [0.0] * len(self.pairs)
        for p, (v, i) in enumerate(self.pairs):
            self._set_spec(p, ctx.spec(v, i))
        self.vol = [VolEstimator(self.cfg.volatility_window) for _ in self.pairs]
        self.last_mid = [0.0] * len(self.pairs)
        self.last_pos = [0.0] * len(self.pairs)
        self.dirty = [True] * len(self.pairs)
        self.pulled = [False] * len(self.pairs)
        self.hold_until = [0] * len(self.pairs)
        return None

    def on_stop(self) -> None:
        return None

    def on_halt(self, reason: str) -> None:
        # the host cancels everything; forget pending intents so nothing is re-placed
        for p in range(len(self.pairs)):
            self.dirty[p] = True

    # ---- market data -----------------------------------------------------------
    def on_market_data(self, md: MarketData) -> list[OrderRequest] | None:
        k = md._k
        try:
            p = self.pair_at[k]
        except IndexError:
            return None
        if p < 0 or md._t[0] == 2:  # not ours, or a trade: nothing to requote
            return None
        as_mode = self.as_mode
        dirty = self.dirty[p]
        if as_mode or not dirty:  # (a dirty pair in fixed mode requotes without the mid)
            st = md.state
            b = st.bid_px_f[k]
            a = st.ask_px_f[k]
            mid = (a + b) * 0.5 if a > 0.0 and b > 0.0 else 0.0
            if as_mode and mid > 0.0:
                self.vol[p].update(mid, md.now_ns)
            if not dirty and st.valid_f[k] == 1:
                # skip the full requote while nothing can have changed enough
                last = self.last_mid[p]
                if abs(mid - last) < self.skip_thr * last:
                    return None
        return self.requote(p, md.now_ns)

    def on_timer(self, now_ns: int) -> list[OrderRequest] | None:
        out: list[OrderRequest] | None = None
        for p in range(len(self.pairs)):
            r = self.requote(p, now_ns)
            if r:
                if out is None:
                    out = r
                else:
                    out.extend(r)
        return out

    # ---- quote maths -------------------------------------------------------------
    def targets(self, p: int, now_ns: int) -> tuple[float, float, float, float] | None:
        """(reservation price, half spread, best bid, best ask) for pair p, or None to pull."""
        v, i = self.pairs[p]
        ctx = self.ctx
        st = self.state
        k = v * self.n_instr + i
        if st.valid_f[k] != 1 or st.resync_f[k] == 1:
            return None
        t = st.update_ns_f[k]
        if t == 0 or now_ns - t > self.stale_ns:
            return None
        ready = self.ready_flags
        if (ready[v] == 0) if ready is not None else not ctx.venue_ready(v):
            return None
        bid = st.bid_px_f[k]
        ask = st.ask_px_f[k]
        if not (0.0 < bid < ask):
            return None
        mid = (bid + ask) * 0.5
        q = self.positions[k] if self.positions is not None else ctx.position(v, i)
        self.q = q
        if self.as_mode:
            cfg = self.cfg
            sigma = self.vol[p].sigma()
            r, delta = as_quotes(mid, q, cfg.risk_aversion, sigma, cfg.horizon_s, cfg.intensity)
            half = max(delta * 0.5, cfg.spread_bps * 0.5e-4 * mid)
        else:  # fixed_quotes(), inlined
            r = mid - self.skew_per_pos * mid * q
            half = self.half_spread * mid
        return r, half, bid, ask

    def ladder(self, p: int, r: float, half: float, bid: float, ask: float,
               room_buy: float, room_sell: float) -> tuple[float, float]:
        """Fill s_want_px / s_want_qty of pair p: rounded, never crossing, within the rooms.
        Slots with a request in flight get no room (their quantity is already counted).
        (`requote` runs the same steps inline.)"""
        pc = self.pconst[p]
        if pc is None:
            return room_buy, room_sell
        _v, _k, base, mid_s, _slots, tick, inv, lot_inv, size, min_qty, min_notional, _one = pc
        floor = math.floor
        ceil = math.ceil
        spacing = self.spacing * (bid + ask)
        status = self.s_status
        want_px = self.s_want_px
        want_qty = self.s_want_qty
        max_bid = floor((ask - tick) * inv + 1e-9) / inv
        min_ask = ceil((bid + tick) * inv - 1e-9) / inv
        prev_bid = math.inf
        prev_ask = 0.0
        for lvl in range(self.levels):
            bpx = floor((r - half - lvl * spacing) * inv + 1e-9) / inv
            if bpx > max_bid:
                bpx = max_bid
            if bpx >= prev_bid:
                bpx = floor((prev_bid - tick) * inv + 1e-9) / inv
            prev_bid = bpx
            s = base + lvl
            qty = size if size <= room_buy else floor(room_buy * lot_inv + 1e-9) / lot_inv
            st = status[s]
            if qty < min_qty or qty <= 0.0 or qty * bpx < min_notional or bpx <= 0.0 or (st != EMPTY and st != LIVE):
                qty = 0.0
            room_buy -= qty
            want_px[s] = bpx
            want_qty[s] = qty
            apx = ceil((r + half + lvl * spacing) * inv - 1e-9) / inv
            if apx < min_ask:
                apx = min_ask
            if apx <= prev_ask:
                apx = ceil((prev_ask + tick) * inv - 1e-9) / inv
            prev_ask = apx
            s = mid_s + lvl
            qty = size if size <= room_sell else floor(room_sell * lot_inv + 1e-9) / lot_inv
            st = status[s]
            if qty < min_qty or qty <= 0.0 or qty * apx < min_notional or (st != EMPTY and st != LIVE):
                qty = 0.0
            room_sell -= qty
            want_px[s] = apx
            want_qty[s] = qty
        return room_buy, room_sell

    def _set_spec(self, p: int, spec) -> None:
        """Per-pair constants from the instrument's rules (tick and lot as exact inverses),
        gathered in one tuple `pconst[p]` that the requote path unpacks in one step."""
        self.specs[p] = spec
        if spec is None:
            self.pconst[p] = None
            return
        self.inv_tick[p] = _inverse(spec.tick_size)
        self.inv_lot[p] = _inverse(spec.lot_size)
        self.size[p] = spec.round_qty(self.cfg.order_size)
        v, i = self.pairs[p]
        L = self.levels
        base = p * 2 * L
        self.pconst[p] = (v, v * self.n_instr + i, base, base + L, tuple(range(base, base + 2 * L)), spec.tick_size,
                          self.inv_tick[p], self.inv_lot[p], self.size[p], spec.min_qty, spec.min_notional,
                          L == 1 and self.inline_one_level)

    def requote(self, p: int, now_ns: int) -> list[OrderRequest] | None:
        """Reconcile pair p's orders with its targets; returns the requests to send.

        One pass, locals only: requests in flight, targets (as `targets`), the ladder (as
        `ladder`), then keep / amend / cancel / new per slot. With one level per side the
        ladder and the slot decisions run straight-line (`inline_one_level`)."""
        pc = self.pconst[p]
        if pc is None:
            v, i = self.pairs[p]
            self._set_spec(p, self.ctx.spec(v, i))
            pc = self.pconst[p]
            if pc is None:
                return None
        v, k, base, mid_s, slots, tick, inv, lot_inv, size, min_qty, min_notional, one_level = pc
        status = self.s_status
        # requests in flight: their quantity counts as worst case (they may still fill);
        # a NEW the OMS refused frees its slot, one the venue never answered gets a cancel
        nudges = None
        pend_buy = 0.0
        pend_sell = 0.0
        for s in slots:
            st = status[s]
            if st == LIVE or st == EMPTY:
                continue
            if now_ns - self.s_pend_ns[s] > self.pending_timeout_ns or not self.s_cid[s]:
                n = self._expire_slot(s, p, now_ns)
                if n is not None:
                    if nudges is None:
                        nudges = n
                    else:
                        nudges.extend(n)
                if status[s] == EMPTY:
                    continue
            if s < mid_s:
                pend_buy += self.s_qty[s]
            else:
                pend_sell += self.s_qty[s]
        # targets(), inlined: pull on a stale, resyncing, crossed or not-ready book
        ms = self.state
        t = ms.update_ns_f[k]
        bid = ms.bid_px_f[k]
        ask = ms.ask_px_f[k]
        ready = self.ready_flags
        risk = self.risk
        tstate = risk.state if risk is not None else self.ctx.trading_state
        if (ms.valid_f[k] != 1 or ms.resync_f[k] == 1 or t == 0 or now_ns - t > self.stale_ns
                or not (0.0 < bid < ask) or tstate is _HALTED
                or ((ready[v] == 0) if ready is not None else not self.ctx.venue_ready(v))):
            self.dirty[p] = True
            out = self._pull(p)
            return out if nudges is None else _joined(nudges, out)
        if now_ns < self.hold_until[p]:
            self.dirty[p] = True  # throttled: requote when the hold ends
            return nudges
        mid = (bid + ask) * 0.5
        positions = self.positions
        q = positions[k] if positions is not None else self.ctx.position(v, k - v * self.n_instr)
        if self.as_mode:
            cfg = self.cfg
            r, delta = as_quotes(mid, q, cfg.risk_aversion, self.vol[p].sigma(), cfg.horizon_s, cfg.intensity)
            half = max(delta * 0.5, cfg.spread_bps * 0.5e-4 * mid)
        else:  # fixed_quotes(), inlined
            r = mid - self.skew_per_pos * mid * q
            half = self.half_spread * mid
        mp = self.max_position
        room_buy = mp - q - pend_buy
        room_sell = mp + q - pend_sell
        if tstate is _REDUCING:
            room_buy = min(room_buy, -q) if q < 0.0 else 0.0
            room_sell = min(room_sell, q) if q > 0.0 else 0.0
        # the ladder: buys round down, sells up (never more aggressive), as
        # InstrumentSpec.round_px; rounded, never crossing, within the rooms
        if one_level:
            # one level per side (the default): the steps of ladder() and of the slot loop
            # below, straight-line with the targets in locals (no want lists, no loop)
            floor = math.floor
            bpx = floor((r - half) * inv + 1e-9) / inv
            if bpx > ask - 3.0 * tick:
                # near the touch: at most the highest tick below the ask. Further away the
                # clamp cannot bind (that tick is above ask - 2 ticks), so it is skipped.
                max_bid = floor((ask - tick) * inv + 1e-9) / inv
                if bpx > max_bid:
                    bpx = max_bid
            apx = math.ceil((r + half) * inv - 1e-9) / inv
            if apx < bid + 3.0 * tick:
                min_ask = math.ceil((bid + tick) * inv - 1e-9) / inv
                if apx < min_ask:
                    apx = min_ask
            bqty = size if size <= room_buy else floor(room_buy * lot_inv + 1e-9) / lot_inv
            sb = status[base]
            if (bqty < min_qty or bqty <= 0.0 or bqty * bpx < min_notional or bpx <= 0.0
                    or (sb != EMPTY and sb != LIVE)):
                bqty = 0.0
            aqty = size if size <= room_sell else floor(room_sell * lot_inv + 1e-9) / lot_inv
            sa = status[mid_s]
            if aqty < min_qty or aqty <= 0.0 or aqty * apx < min_notional or (sa != EMPTY and sa != LIVE):
                aqty = 0.0
            self.last_mid[p] = mid
            self.dirty[p] = False
            self.pulled[p] = False
            thr = self.thr * mid
            nthr = -thr
            amends = v in self.amend_venues
            replaces = v in self.replace_venues
            s_qty = self.s_qty
            s_px = self.s_px
            rb = None
            if sb == LIVE:
                cur_qty = s_qty[base]
                if bqty <= 0.0 or cur_qty > bqty * (1.0 + 1e-9) + _EPS:
                    rb = self._cancel_slot(base, p)  # less room than the order holds: shrink now
                elif nthr <= s_px[base] - bpx <= thr or now_ns < self.s_young[base]:
                    pass  # close enough, or too young to move
                elif amends and (cur_qty == bqty or -(tol := 1e-9 + 1e-9 * bqty) <= cur_qty - bqty <= tol) and (
                        not replaces or cur_qty <= room_buy - bqty + _EPS):
                    rb = self.r_amend[base]
                    rb.qty = bqty
                    rb.px = bpx
                    rb.target_cl_ord_id = self.s_cid[base]
                    rb.cl_ord_id = ""
                    rb.ts_ns = now_ns
                    status[base] = PENDING_AMEND
                    self.s_pend_ns[base] = now_ns
                    self.s_req[base] = rb  # the host sets rb.cl_ord_id: a new id when the venue replaces
                    self.amends_sent += 1
                else:
                    rb = self._cancel_slot(base, p)
            elif sb == EMPTY and bqty > 0.0:
                rb = self._place_slot(base, bpx, bqty, now_ns)
            ra = None
            if sa == LIVE:
                cur_qty = s_qty[mid_s]
                if aqty <= 0.0 or cur_qty > aqty * (1.0 + 1e-9) + _EPS:
                    ra = self._cancel_slot(mid_s, p)
                elif nthr <= s_px[mid_s] - apx <= thr or now_ns < self.s_young[mid_s]:
                    pass
                elif amends and (cur_qty == aqty or -(tol := 1e-9 + 1e-9 * aqty) <= cur_qty - aqty <= tol) and (
                        not replaces or cur_qty <= room_sell - aqty + _EPS):
                    ra = self.r_amend[mid_s]
                    ra.qty = aqty
                    ra.px = apx
                    ra.target_cl_ord_id = self.s_cid[mid_s]
                    ra.cl_ord_id = ""
                    ra.ts_ns = now_ns
                    status[mid_s] = PENDING_AMEND
                    self.s_pend_ns[mid_s] = now_ns
                    self.s_req[mid_s] = ra
                    self.amends_sent += 1
                else:
                    ra = self._cancel_slot(mid_s, p)
            elif sa == EMPTY and aqty > 0.0:
                ra = self._place_slot(mid_s, apx, aqty, now_ns)
            if rb is None:
                out = None if ra is None else [ra]
            else:
                out = [rb] if ra is None else [rb, ra]
            return out if nudges is None else _joined(nudges, out)
        left_buy, left_sell = self.ladder(p, r, half, bid, ask, room_buy, room_sell)
        want_px = self.s_want_px
        want_qty = self.s_want_qty
        replaces = v in self.replace_venues
        amends = v in self.amend_venues
        self.last_mid[p] = mid
        self.dirty[p] = False
        self.pulled[p] = False
        out = None
        thr = self.thr * mid
        for s in slots:
            sst = status[s]
            wqty = want_qty[s]
            wpx = want_px[s]
            req = None
            if sst == EMPTY:
                if wqty > 0.0:
                    req = self._place_slot(s, wpx, wqty, now_ns)
            elif sst == LIVE:
                cur_qty = self.s_qty[s]
                if wqty <= 0.0 or cur_qty > wqty * (1.0 + 1e-9) + _EPS:
                    req = self._cancel_slot(s, p)  # less room than the order holds: shrink now
                elif -thr <= self.s_px[s] - wpx <= thr:
                    continue  # close enough (a partly filled order keeps its smaller size)
                elif now_ns < self.s_young[s]:
                    continue
                elif amends and -(tol := 1e-9 + 1e-9 * wqty) <= cur_qty - wqty <= tol and (
                        not replaces or cur_qty <= (left_buy if s < mid_s else left_sell) + _EPS):
                    if replaces:
                        # cancel-replace: the old order may fill before it is replaced, so the
                        # replacement needs room of its own until the old one is gone
                        if s < mid_s:
                            left_buy -= cur_qty
                        else:
                            left_sell -= cur_qty
                    req = self.r_amend[s]
                    req.qty = wqty
                    req.px = wpx
                    req.target_cl_ord_id = self.s_cid[s]
                    req.cl_ord_id = ""
                    req.ts_ns = now_ns
                    status[s] = PENDING_AMEND
                    self.s_pend_ns[s] = now_ns
                    self.s_req[s] = req  # the host sets req.cl_ord_id: a new id when the venue replaces
                    self.amends_sent += 1
                else:
                    req = self._cancel_slot(s, p)
            if req is not None:
                if out is None:
                    out = [req]
                else:
                    out.append(req)
        return out if nudges is None else _joined(nudges, out)

    def _place_slot(self, s: int, px: float, qty: float, now_ns: int) -> OrderRequest:
        """A new post-only order in empty slot s (one request object per slot, reused: the OMS
        copies it)."""
        req = self.r_new[s]
        req.qty = qty
        req.px = px
        req.cl_ord_id = ""
        req.ts_ns = now_ns
        self.s_status[s] = PENDING_NEW
        self.s_pend_ns[s] = now_ns
        self.s_req[s] = req
        self.s_px[s] = px
        self.s_qty[s] = qty
        self.s_ns[s] = now_ns
        self.s_young[s] = now_ns + self.min_life_ns
        self.quotes_sent += 1
        return req

    def _cancel_slot(self, s: int, p: int) -> OrderRequest:
        self.s_status[s] = PENDING_CANCEL
        self.s_pend_ns[s] = self.ctx.now_ns() if self.ctx is not None else 0
        self.cancels_sent += 1
        req = self.r_cancel[s]
        req.target_cl_ord_id = self.s_cid[s]
        req.cl_ord_id = ""
        return req

    def _pull(self, p: int) -> list[OrderRequest] | None:
        L = self.levels
        base = p * 2 * L
        out = None
        for s in range(base, base + 2 * L):
            if self.s_status[s] == LIVE or (self.s_status[s] == PENDING_AMEND and self.s_cid[s]):
                req = self._cancel_slot(s, p)
                if out is None:
                    out = [req]
                else:
                    out.append(req)
        if out:
            self.pulls += 1
            self.pulled[p] = True
        return out

    def _expire_slot(self, s: int, p: int, now_ns: int) -> list[OrderRequest] | None:
        """A slot with a request in flight: bind the OMS's id to it; free a NEW the OMS never
        took; send a cancel for a request unanswered after `pending_timeout_ms` (repeated each
        timeout) so that the OMS resolves the order with the venue and its final event frees it."""
        st = self.s_status[s]
        if st == PENDING_NEW and not self.s_cid[s]:
            req = self.s_req[s]
            if req is not None and req.cl_ord_id:
                self._rebind(s, req.cl_ord_id)
            elif now_ns - self.s_ns[s] > self.pending_timeout_ns:
                self._free(s)
            return None
        if now_ns - self.s_pend_ns[s] <= self.pending_timeout_ns or not self.s_cid[s]:
            return None
        v, i = self.pairs[p]
        ids = [self.s_cid[s]]
        req = self.s_req[s]
        if req is not None and req.kind == RequestKind.AMEND and req.cl_ord_id and req.cl_ord_id not in ids:
            ids.append(req.cl_ord_id)  # a cancel-replace's new order too
        out = [OrderRequest(RequestKind.CANCEL, self.symbols[p], target_cl_ord_id=cid, venue=Exchange(v),
                            instr_id=i) for cid in ids]
        self.s_pend_ns[s] = now_ns
        self.stuck_nudges += 1
        return out

    def _free(self, s: int) -> None:
        cid = self.s_cid[s]
        if cid:
            self.cid_slot.pop(cid, None)
        self.s_status[s] = EMPTY
        self.s_cid[s] = ""
        self.s_req[s] = None
        self.s_qty[s] = 0.0
        self.s_px[s] = 0.0

    # ---- order events ---------------------------------------------------------------
    def _slot_for(self, cid: str) -> int:
        s = self.cid_slot.get(cid, -1)
        if s >= 0:
            return s
        for s, req in enumerate(self.s_req):
            if req is not None and req.cl_ord_id == cid and self.s_status[s] != EMPTY:
                self._rebind(s, cid)
                return s
        return -1

    def _rebind(self, s: int, cid: str) -> None:
        """Slot s now tracks order `cid` (its first id, or a cancel-replace's new id)."""
        old = self.s_cid[s]
        if old and old != cid:
            self.cid_slot.pop(old, None)
        self.s_cid[s] = cid
        self.cid_slot[cid] = s

    def on_request_denied(self, req: OrderRequest, reason_code: int, reason: str) -> None:
        kind = req.kind
        if reason_code in _THROTTLE_CODES and self.ctx is not None:
            # rate limited (by risk or by the OMS's venue buckets): hold this venue's quotes
            now = self.ctx.now_ns()
            v = int(req.venue) if req.venue is not None else 0
            for p, (pv, _i) in enumerate(self.pairs):
                if pv == v:
                    self.hold_until[p] = now + self.throttle_ns
        if kind == RequestKind.NEW:
            for s, r in enumerate(self.s_req):
                if r is req and self.s_status[s] == PENDING_NEW:
                    self._free(s)
                    p = s // (2 * self.levels)
                    self.dirty[p] = True
                    return
        elif kind == RequestKind.AMEND or kind == RequestKind.CANCEL:
            s = self.cid_slot.get(req.target_cl_ord_id, -1)
            if s >= 0 and reason_code == 13:  # Reason.UNKNOWN_ORDER: the order is gone
                self._free(s)
                self.dirty[s // (2 * self.levels)] = True
            elif s >= 0 and self.s_status[s] in (PENDING_AMEND, PENDING_CANCEL):
                self.s_status[s] = LIVE
                self.dirty[s // (2 * self.levels)] = True

    def on_order_event(self, ev) -> list[OrderRequest] | None:
        order = ev.order
        cid = order.cl_ord_id
        try:
            s = self.cid_slot[cid]
        except KeyError:
            s = self._slot_for(cid)
            if s < 0:
                return None
        self.dirty[s // self.per_pair] = True
        state = order.state  # IntEnum (or int): compared and hashed as its int
        if state in _ST_TERMINAL:
            req = self.s_req[s]
            if (self.s_status[s] == PENDING_AMEND and req is not None and req.kind == RequestKind.AMEND
                    and req.cl_ord_id and req.cl_ord_id != cid):
                self._rebind(s, req.cl_ord_id)  # the old order of a cancel-replace is gone
                return None
            self._free(s)
            return None
        rem = order.qty - order.filled_qty
        if state in _ST_OPEN:
            st = self.s_status[s]
            kind = event_kind(ev)
            if st == PENDING_CANCEL and kind != "CANCEL_REJECT" and kind != "RECONCILED":
                # a fill while our cancel is in flight: keep waiting for the cancel
                self.s_qty[s] = rem
                return None
            if st == PENDING_AMEND and kind not in _AMEND_DONE:
                self.s_qty[s] = rem  # a fill while the amend is in flight
                return None
            if self.s_status[s] != LIVE:
                self.s_ns[s] = t = self.ctx.now_ns()
                self.s_young[s] = t + self.min_life_ns
            self.s_status[s] = LIVE
            self.s_px[s] = order.px
            self.s_qty[s] = rem
            return None
        # PENDING_* / UNKNOWN: the OMS is resolving it; keep the slot as it is
        return None

    # ---- introspection (tests, monitor) -----------------------------------------------
    def working(self, p: int = -1) -> list[tuple]:
        """(pair, side, level, status, cl_ord_id, px, qty) of every non-empty slot."""
        out = []
        L = self.levels
        for s, st in enumerate(self.s_status):
            pp = s // (2 * L)
            if st != EMPTY and (p < 0 or pp == p):
                side = 1 if (s - pp * 2 * L) < L else -1
                out.append((pp, side, (s - pp * 2 * L) % L, st, self.s_cid[s], self.s_px[s], self.s_qty[s]))
        return out


def _inverse(step: float) -> float:
    """1 / step, snapped to a whole number when it is one (0.01 -> 100.0): then
    floor(x * inv) / inv is the correctly rounded decimal price, with no round(x, ndigits)
    (which formats through a string and costs a microsecond). Other steps (0.3) stay within
    float error of the tick, which risk's tick check tolerates and the OMS formats away."""
    inv = 1.0 / step
    n = round(inv)
    if n >= 1 and abs(inv - n) < 1e-9 * n:
        return float(n)
    return inv


def _joined(first: list[OrderRequest], then: list[OrderRequest] | None) -> list[OrderRequest]:
    if then:
        first.extend(then)
    return first


def busy(status: int) -> bool:
    """A request is in flight for the slot (new, cancel or amend)."""
    return status != EMPTY and status != LIVE
