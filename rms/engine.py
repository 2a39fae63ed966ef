"""The risk engine: pre-trade checks (per order, exposure, account, system), trading state
(ACTIVE / REDUCING / HALTED) and the kill switch.

`check(req, now_ns)` returns a reason code (0 = allowed) and allocates nothing: every
limit, position and open quantity lives in preallocated arrays indexed
`venue_id * n_instr + instr_id`. Exposure is fed by the host (`on_order_open`,
`on_fill`, `on_order_closed`, marks from the shared MarketState), never read from
the OMS. Must not talk to sockets; the host performs the cancellations it asks for.
"""

from __future__ import annotations

import math
import time
from array import array
from typing import Any

import numpy as np

from common.config import RiskConfig
from common.enums import TradingState
from common.instruments import Instruments
from ringbuf.records import KIND_RISK_EVENT, RISK_EVENT_STRUCT
from rms.reasons import N_REASONS, REASON_NAMES, REASON_TEXT, Reason
from strategy.orders import OrderRequest, RequestKind
from strategy.state import N_VENUES, MarketState

_EPS = 1e-12
_INF = math.inf
_ACTIVE = TradingState.ACTIVE
_REDUCING = TradingState.REDUCING
_HALTED = TradingState.HALTED
_NEW = RequestKind.NEW
_CANCEL = RequestKind.CANCEL
_AMEND = RequestKind.AMEND
_CANCEL_ALL = RequestKind.CANCEL_ALL
_POST_ONLY = 4  # TimeInForce.POST_ONLY
_DAY_NS = 86_400 * 1_000_000_000
_ONE_LESS_EPS6 = 1.0 - 1e-6  # tick/lot checks: a remainder within 1e-6 of a whole step is on it

R_OK = 0
R_BAD_REQUEST = int(Reason.BAD_REQUEST)
R_UNKNOWN_INSTRUMENT = int(Reason.UNKNOWN_INSTRUMENT)
R_NO_REFERENCE = int(Reason.NO_REFERENCE)
R_PRICE_BAND = int(Reason.PRICE_BAND)
R_MAX_QTY = int(Reason.MAX_QTY)
R_MAX_NOTIONAL = int(Reason.MAX_NOTIONAL)
R_BAD_TICK = int(Reason.BAD_TICK)
R_BAD_LOT = int(Reason.BAD_LOT)
R_MIN_QTY = int(Reason.MIN_QTY)
R_MIN_NOTIONAL = int(Reason.MIN_NOTIONAL)
R_POST_ONLY_CROSS = int(Reason.POST_ONLY_CROSS)
R_DUPLICATE_ID = int(Reason.DUPLICATE_ID)
R_UNKNOWN_ORDER = int(Reason.UNKNOWN_ORDER)
R_MAX_POSITION = int(Reason.MAX_POSITION)
R_MAX_VENUE_NOTIONAL = int(Reason.MAX_VENUE_NOTIONAL)
R_MAX_TOTAL_NOTIONAL = int(Reason.MAX_TOTAL_NOTIONAL)
R_MAX_OPEN_ORDERS = int(Reason.MAX_OPEN_ORDERS)
R_RATE_LIMIT = int(Reason.RATE_LIMIT)
R_STALE_MD = int(Reason.STALE_MD)
R_BOOK_RESYNC = int(Reason.BOOK_RESYNC)
R_HALTED = int(Reason.HALTED)
R_REDUCING = int(Reason.REDUCING)
R_VENUE_NOT_READY = int(Reason.VENUE_NOT_READY)


class RiskEngine:
    """Pre-trade risk for one strategy process. Single-threaded (the host's loop)."""

    # More than 30 instance attributes overflow CPython 3.11's shared-key instance layout: every
    # attribute load then becomes a dict lookup (LOAD_ATTR_WITH_HINT, ~20 ns more each on this
    # path). Slots keep the hot path's loads at LOAD_ATTR_SLOT speed. `__dict__` keeps
    # other attributes settable.
    __slots__ = ("cfg", "instruments", "md", "n_instr", "counters", "events_ring", "clock", "n_slots", "band",
                 "max_qty", "max_notional", "max_position", "max_venue_notional", "max_total_notional",
                 "max_open_orders", "rate_per_ns", "bucket_size", "stale_ns", "tick", "lot", "min_qty",
                 "min_notional", "inv_tick", "inv_lot", "_bid", "_ask", "_upd", "_resync", "position_np",
                 "avg_px_np", "realized_np", "fees_np", "mark_np", "open_buy_np", "open_sell_np", "open_count_np",
                 "exposure_np", "position", "avg_px", "realized", "fees", "mark", "open_buy", "open_sell",
                 "open_count", "exposure", "venue_exposure", "venue_open", "venue_ready", "replace_venue",
                 "total_exposure", "total_open", "tokens", "token_ns", "max_orders", "ord_k", "ord_v", "ord_side",
                 "ord_rem", "ord_px", "_ord_slot", "_free", "reject_window", "_rej", "_rej_pos", "_rej_n",
                 "_rej_count", "equity", "peak_equity", "day_start_equity", "_day", "unrealized", "state",
                 "state_reason", "kill_requested", "kill_reason", "kills", "amend_grows", "_pulled", "denied",
                 "checks", "_ctr_deny", "_ctr_checks", "_ctr_state", "_ctr_kills", "__dict__")

    def __init__(self, cfg: RiskConfig, instruments: Instruments, state: MarketState,
                 counters=None, events_ring=None, max_orders: int = 4096,
                 clock=time.monotonic_ns, replace_venues: tuple[int, ...] = (1,)) -> None:
        self.cfg = cfg
        self.instruments = instruments
        self.md = state
        self.n_instr = ni = state.n_instr
        self.counters = counters
        self.events_ring = events_ring
        self.clock = clock
        n = N_VENUES * ni
        self.n_slots = n
        # limits as plain floats (attribute loads are cheaper than dataclass lookups)
        self.band = cfg.price_band_bps * 1e-4
        self.max_qty = cfg.max_order_qty
        self.max_notional = cfg.max_order_notional
        self.max_position = cfg.max_position
        self.max_venue_notional = cfg.max_venue_notional
        self.max_total_notional = cfg.max_total_notional
        self.max_open_orders = cfg.max_open_orders
        self.rate_per_ns = cfg.max_orders_per_s / 1e9
        self.bucket_size = max(1.0, cfg.max_orders_per_s)
        self.stale_ns = int(cfg.stale_md_ms * 1e6)
        # instrument rules per slot (0 tick = no rules known). The check path's own scalars
        # live in preallocated lists: an item load from a list is a specialised bytecode, two to
        # three times cheaper than from an array.array or a memoryview (numpy-backed state stays
        # in memoryviews, which the vectorised refresh shares)
        self.tick = [0.0] * n
        self.lot = [0.0] * n
        self.min_qty = [0.0] * n
        self.min_notional = [0.0] * n
        self.inv_tick = [0.0] * n  # 1 / tick (0: no rules known)
        self.inv_lot = [0.0] * n
        # the market state's flat views, bound once (one attribute load on the check path)
        self._bid = state.bid_px_f
        self._ask = state.ask_px_f
        self._upd = state.update_ns_f
        self._resync = state.resync_f
        # exposure per (venue, instrument)
        self.position_np = np.zeros((N_VENUES, ni))
        self.avg_px_np = np.zeros((N_VENUES, ni))
        self.realized_np = np.zeros((N_VENUES, ni))
        self.fees_np = np.zeros((N_VENUES, ni))
        self.mark_np = np.zeros((N_VENUES, ni))
        self.open_buy_np = np.zeros((N_VENUES, ni))
        self.open_sell_np = np.zeros((N_VENUES, ni))
        self.open_count_np = np.zeros((N_VENUES, ni), dtype=np.int64)
        self.exposure_np = np.zeros((N_VENUES, ni))
        self.position: Any = memoryview(self.position_np.reshape(-1))  # type: ignore[arg-type]
        self.avg_px: Any = memoryview(self.avg_px_np.reshape(-1))  # type: ignore[arg-type]
        self.realized: Any = memoryview(self.realized_np.reshape(-1))  # type: ignore[arg-type]
        self.fees: Any = memoryview(self.fees_np.reshape(-1))  # type: ignore[arg-type]
        self.mark: Any = memoryview(self.mark_np.reshape(-1))  # type: ignore[arg-type]
        self.open_buy: Any = memoryview(self.open_buy_np.reshape(-1))  # type: ignore[arg-type]
        self.open_sell: Any = memoryview(self.open_sell_np.reshape(-1))  # type: ignore[arg-type]
        self.open_count: Any = memoryview(self.open_count_np.reshape(-1))  # type: ignore[arg-type]
        self.exposure: Any = memoryview(self.exposure_np.reshape(-1))  # type: ignore[arg-type]
        self.venue_exposure = [0.0] * N_VENUES
        self.venue_open = [0] * N_VENUES
        self.venue_ready = [1] * N_VENUES
        self.replace_venue = [1 if v in replace_venues else 0 for v in range(N_VENUES)]
        self.total_exposure = 0.0
        self.total_open = 0
        # token buckets per venue
        self.tokens = [self.bucket_size] * N_VENUES
        self.token_ns = [0] * N_VENUES
        # open orders known to risk: cl_ord_id -> slot in these arrays
        self.max_orders = max_orders
        self.ord_k = [0] * max_orders
        self.ord_v = [0] * max_orders
        self.ord_side = [0] * max_orders
        self.ord_rem = [0.0] * max_orders
        self.ord_px = [0.0] * max_orders
        self._ord_slot: dict[str, int] = {}
        self._free = list(range(max_orders - 1, -1, -1))
        # account
        self.reject_window = max(1, cfg.reject_window)
        self._rej = array("b", bytes(self.reject_window))
        self._rej_pos = 0
        self._rej_n = 0
        self._rej_count = 0
        self.equity = 0.0
        self.peak_equity = 0.0
        self.day_start_equity = 0.0
        self._day = time.time_ns() // _DAY_NS
        self.unrealized = 0.0
        # trading state and kill switch
        self.state = TradingState[cfg.initial_state.upper()]
        self.state_reason = ""
        self.kill_requested = False
        self.kill_reason = ""
        self.kills = 0
        self.amend_grows = False  # set by each amend check: its quantity exceeds the order's open quantity
        self._pulled = np.zeros((N_VENUES, ni), dtype=np.uint8)
        # counters: one per reason
        self.denied = array("q", bytes(8 * N_REASONS))
        self.checks = 0
        self._ctr_deny = [-1] * N_REASONS
        self._ctr_checks = self._ctr_state = self._ctr_kills = -1
        if counters is not None:
            for r in Reason:
                if r.value and r.value < 50:
                    self._ctr_deny[r.value] = counters.add(f"rms.deny.{REASON_NAMES[r.value]}")
            self._ctr_checks = counters.add("rms.checks")
            self._ctr_state = counters.add("rms.trading_state")
            self._ctr_kills = counters.add("rms.kill_switch")
            counters.set(self._ctr_state, int(self.state))
        self.refresh_specs()

    # ---- set-up ------------------------------------------------------------
    def refresh_specs(self) -> int:
        """Copy tick/lot/minimums of every known instrument into the check arrays."""
        n = 0
        for spec in self.instruments.specs():
            v, i = int(spec.venue), spec.instr_id
            if 0 < v < N_VENUES and 0 < i < self.n_instr:
                k = v * self.n_instr + i
                self.tick[k] = spec.tick_size
                self.lot[k] = spec.lot_size
                self.min_qty[k] = spec.min_qty
                self.min_notional[k] = spec.min_notional
                self.inv_tick[k] = 1.0 / spec.tick_size
                self.inv_lot[k] = 1.0 / spec.lot_size
                n += 1
        return n

    def set_venue_ready(self, venue_id: int, ready: bool) -> None:
        self.venue_ready[venue_id] = 1 if ready else 0

    def set_position(self, venue_id: int, instr_id: int, qty: float, avg_px: float = 0.0) -> None:
        """Seed a reconciled position (start-up)."""
        k = venue_id * self.n_instr + instr_id
        self.position[k] = qty
        self.avg_px[k] = avg_px
        self._update_exposure(k)

    # ---- the check path ------------------------------------------------------
    def check(self, req: OrderRequest, now_ns: int) -> int:
        """Reason code for `req` (0: allowed). Consumes a rate-limit token when allowed.

        New orders and amends share one body (one call per request, no nested check
        function): each has its own preamble, then the book, price, size and exposure checks
        run once with `new` choosing the few steps that differ, then the token bucket."""
        self.checks += 1
        kind = req.kind
        st = self.state
        v: int
        if kind is _NEW:
            if st is _HALTED:
                return self._denied(R_HALTED, req)
            venue = req.venue
            i = req.instr_id
            if venue is None or not 0 < venue < N_VENUES or not 0 < i < self.n_instr:
                return self._denied(R_UNKNOWN_INSTRUMENT, req)
            v = venue
            qty = req.qty
            if not 0.0 < qty < _INF:
                return self._denied(R_BAD_REQUEST, req)
            k = v * self.n_instr + i
            if self.inv_tick[k] == 0.0:
                return self._denied(R_UNKNOWN_INSTRUMENT, req)
            if self.venue_ready[v] == 0:
                return self._denied(R_VENUE_NOT_READY, req)
            new = True
            s = -1
            rem = 0.0
        elif kind is _AMEND:
            if st is _HALTED:
                return self._denied(R_HALTED, req)
            try:
                s = self._ord_slot[req.target_cl_ord_id]
            except KeyError:
                return self._denied(R_UNKNOWN_ORDER, req)
            k = self.ord_k[s]
            v = self.ord_v[s]
            new = False
            qty = req.qty
            rem = self.ord_rem[s]
        elif kind is _CANCEL or kind is _CANCEL_ALL:
            venue = req.venue
            if venue is not None and 0 < venue < N_VENUES:
                self._take_token(venue, now_ns, True)  # cancels are never refused
            return 0
        elif kind in (1, 2, 3, 4):  # a plain int kind: same request, slower path
            req.kind = RequestKind(kind)
            return self.check(req, now_ns)
        else:
            return self._denied(R_BAD_REQUEST, req)
        # layer 4 and the reference price: the book must be live
        if self._resync[k]:
            return self._denied(R_BOOK_RESYNC, req)
        bid = self._bid[k]
        ask = self._ask[k]
        if not (bid > 0.0 and ask > 0.0):
            return self._denied(R_NO_REFERENCE, req)
        t = self._upd[k]
        if t == 0 or now_ns - t > self.stale_ns:
            return self._denied(R_STALE_MD, req)
        mid = (bid + ask) * 0.5
        # layer 1: price
        px = req.px
        if new:
            limit = req.ord_type == 1
            if not limit and req.ord_type == 2:  # market: worst case priced at the mid
                px = mid
                check_px = False
            elif not 0.0 < px < _INF:
                return self._denied(R_BAD_REQUEST, req)
            else:
                check_px = True
        else:
            # an amend keeps what it does not change
            if not px > 0.0:
                px = self.ord_px[s]
            if not qty > 0.0:
                qty = rem
            if px == _INF or qty == _INF:
                return self._denied(R_BAD_REQUEST, req)
            check_px = True
            self.amend_grows = qty > rem  # (equivalently req.qty - rem > 0.0): see on_amend_sent
        if check_px:
            d = px - mid
            band = self.band * mid
            if d > band or -d > band:
                return self._denied(R_PRICE_BAND, req)
            # off the tick by more than 1e-6 of a tick (a float remainder: no round() call)
            if 1e-6 < px * self.inv_tick[k] % 1.0 < _ONE_LESS_EPS6:
                return self._denied(R_BAD_TICK, req)
        # layer 1: size
        if qty > self.max_qty:
            return self._denied(R_MAX_QTY, req)
        notional = qty * px
        if notional > self.max_notional:
            return self._denied(R_MAX_NOTIONAL, req)
        if 1e-6 < qty * self.inv_lot[k] % 1.0 < _ONE_LESS_EPS6:
            return self._denied(R_BAD_LOT, req)
        if new:
            pos = self.position[k]
            if qty < self.min_qty[k] - _EPS:
                return self._denied(R_MIN_QTY, req)
            if notional < self.min_notional[k] - _EPS:
                return self._denied(R_MIN_NOTIONAL, req)
            buy = req.side > 0
            if limit and req.tif == _POST_ONLY and (px >= ask if buy else px <= bid):
                return self._denied(R_POST_ONLY_CROSS, req)
            cid = req.cl_ord_id
            if cid and cid in self._ord_slot:
                return self._denied(R_DUPLICATE_ID, req)
            # layer 2: exposure, every open order of the instrument filling
            if buy:
                worst = pos + self.open_buy[k] + qty
                other = pos - self.open_sell[k]
            else:
                worst = pos - self.open_sell[k] - qty
                other = pos + self.open_buy[k]
            if st is _REDUCING:
                # only orders that bring the position towards zero, even if every order fills
                if (buy and not (pos < 0.0 and worst <= _EPS)) or (not buy and not (pos > 0.0 and worst >= -_EPS)):
                    return self._denied(R_REDUCING, req)
            aw = worst if worst >= 0.0 else -worst
            if aw > self.max_position + _EPS:
                return self._denied(R_MAX_POSITION, req)
            ao = other if other >= 0.0 else -other
            delta = (aw if aw > ao else ao) * mid - self.exposure[k]
            if self.venue_exposure[v] + delta > self.max_venue_notional:
                return self._denied(R_MAX_VENUE_NOTIONAL, req)
            if self.total_exposure + delta > self.max_total_notional:
                return self._denied(R_MAX_TOTAL_NOTIONAL, req)
            if self.total_open >= self.max_open_orders:
                return self._denied(R_MAX_OPEN_ORDERS, req)
        else:
            # post-only orders stay post-only: a price that crosses would be rejected or taken
            buy = self.ord_side[s] > 0
            if px >= ask if buy else px <= bid:
                return self._denied(R_POST_ONLY_CROSS, req)
            # layer 2: the amend's extra quantity. A cancel-replace venue (Binance) keeps the old
            # order live until the replace lands: the replacement's whole quantity is extra.
            extra = qty if self.replace_venue[v] else qty - rem
            if extra > 0.0:
                pos = self.position[k]
                if buy:
                    worst = pos + self.open_buy[k] + extra
                else:
                    worst = pos - self.open_sell[k] - extra
                if st is _REDUCING and (worst > _EPS if buy else worst < -_EPS):
                    return self._denied(R_REDUCING, req)
                if (worst if worst >= 0.0 else -worst) > self.max_position + _EPS:
                    return self._denied(R_MAX_POSITION, req)
        # layer 2: order rate, a token bucket per venue (as _take_token)
        tokens = self.tokens
        tok = tokens[v] + (now_ns - self.token_ns[v]) * self.rate_per_ns
        if tok > self.bucket_size:
            tok = self.bucket_size
        self.token_ns[v] = now_ns
        if tok < 1.0:
            tokens[v] = tok
            return self._denied(R_RATE_LIMIT, req)
        tokens[v] = tok - 1.0
        return 0

    def _denied(self, code: int, req: OrderRequest) -> int:
        self._deny(code, req)
        return code

    def _take_token(self, v: int, now_ns: int, force: bool) -> bool:
        tokens = self.tokens[v] + (now_ns - self.token_ns[v]) * self.rate_per_ns
        if tokens > self.bucket_size:
            tokens = self.bucket_size
        self.token_ns[v] = now_ns
        if tokens >= 1.0:
            self.tokens[v] = tokens - 1.0
            return True
        self.tokens[v] = tokens if not force else max(0.0, tokens - 1.0)
        return force

    def _deny(self, code: int, req: OrderRequest) -> None:
        self.denied[code] += 1
        c = self.counters
        if c is not None:
            idx = self._ctr_deny[code]
            if idx >= 0:
                c.inc(idx)
        if self.events_ring is not None:
            v = req.venue if req.venue is not None else 0
            self.write_event(code, v, req.instr_id, int(req.side), req.px, req.qty,
                             self._limit_for(code), 0.0, req.cl_ord_id or req.target_cl_ord_id)

    def _limit_for(self, code: int) -> float:
        if code == R_PRICE_BAND:
            return self.band * 1e4
        if code == R_MAX_QTY:
            return self.max_qty
        if code == R_MAX_NOTIONAL:
            return self.max_notional
        if code == R_MAX_POSITION:
            return self.max_position
        if code == R_MAX_VENUE_NOTIONAL:
            return self.max_venue_notional
        if code == R_MAX_TOTAL_NOTIONAL:
            return self.max_total_notional
        if code == R_MAX_OPEN_ORDERS:
            return float(self.max_open_orders)
        if code == R_RATE_LIMIT:
            return self.bucket_size
        if code == R_STALE_MD:
            return self.stale_ns / 1e6
        return 0.0

    def write_event(self, code: int, venue_id: int = 0, instr_id: int = 0, side: int = 0, px: float = 0.0,
                    qty: float = 0.0, limit_value: float = 0.0, observed: float = 0.0,
                    cl_ord_id: str = "", text: bytes | str = b"") -> None:
        """One RISK_EVENT record on the events ring (lossless; never drops)."""
        ring = self.events_ring
        if ring is None:
            return
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")[:48]
        ring.write(RISK_EVENT_STRUCT, KIND_RISK_EVENT, 0, venue_id, side, instr_id, code, time.time_ns(),
                   px, qty, limit_value, observed, cl_ord_id.encode("ascii", "replace")[:32],
                   text or REASON_TEXT[code] if code < N_REASONS else text)

    # ---- exposure feed (host) ------------------------------------------------
    def _update_exposure(self, k: int) -> None:
        b = self._bid[k]
        a = self._ask[k]
        if b > 0.0 and a > 0.0:
            m = self.mark[k] = (a + b) * 0.5
        else:
            m = self.mark[k]
        pos = self.position[k]
        w = pos + self.open_buy[k]  # max(|pos + open_buy|, |pos - open_sell|), without calls
        if w < 0.0:
            w = -w
        o = pos - self.open_sell[k]
        if o < 0.0:
            o = -o
        e = (w if w >= o else o) * m
        d = e - self.exposure[k]
        self.exposure[k] = e
        self.venue_exposure[k // self.n_instr] += d
        self.total_exposure += d

    def on_order_open(self, req: OrderRequest) -> None:
        """A NEW request was handed to the OMS (it counts as open from now on)."""
        v = req.venue
        k = v * self.n_instr + req.instr_id  # type: ignore[operator]  # a checked NEW: venue set
        if not self._free:
            return
        s = self._free.pop()
        self._ord_slot[req.cl_ord_id] = s
        self.ord_k[s] = k
        self.ord_v[s] = k // self.n_instr
        buy = req.side > 0
        self.ord_side[s] = 1 if buy else -1
        self.ord_rem[s] = req.qty
        self.ord_px[s] = req.px
        if buy:
            self.open_buy[k] += req.qty
        else:
            self.open_sell[k] += req.qty
        self.open_count[k] += 1
        self.venue_open[v] += 1  # type: ignore[index]
        self.total_open += 1
        self._update_exposure(k)

    def on_amend_sent(self, req: OrderRequest) -> None:
        """An amend was handed to the OMS: count the larger of old and new quantity until acked.
        Only an amend that raises the quantity changes anything: `amend_grows`, set by the
        amend's check, lets the host skip the call for the others."""
        s = self._ord_slot.get(req.target_cl_ord_id, -1)
        if s < 0 or not req.qty > 0.0:
            return
        extra = req.qty - self.ord_rem[s]
        if extra > 0.0:
            self._set_remaining(s, req.qty)

    def on_replaced(self, old_cl_ord_id: str, new_cl_ord_id: str, px: float, qty: float) -> None:
        """An amend became a cancel-replace with a new client id: the replacement is open
        (same side and instrument) while the old order is still counted until it closes."""
        s = self._ord_slot.get(old_cl_ord_id, -1)
        if s < 0 or not self._free:
            return
        k = self.ord_k[s]
        v = k // self.n_instr
        side = self.ord_side[s]
        qty = qty if qty > 0.0 else self.ord_rem[s]
        px = px if px > 0.0 else self.ord_px[s]
        n = self._free.pop()
        self._ord_slot[new_cl_ord_id] = n
        self.ord_k[n] = k
        self.ord_v[n] = v
        self.ord_side[n] = side
        self.ord_rem[n] = qty
        self.ord_px[n] = px
        if side > 0:
            self.open_buy[k] += qty
        else:
            self.open_sell[k] += qty
        self.open_count[k] += 1
        self.venue_open[v] += 1
        self.total_open += 1
        self._update_exposure(k)

    def on_amended(self, cl_ord_id: str, px: float, remaining_qty: float) -> None:
        try:
            s = self._ord_slot[cl_ord_id]
        except KeyError:
            return
        if px > 0.0:
            self.ord_px[s] = px
        # _set_remaining(s, max(0.0, remaining_qty)), inlined: one call per amend event
        rem = remaining_qty if remaining_qty > 0.0 else 0.0
        k = self.ord_k[s]
        d = rem - self.ord_rem[s]
        self.ord_rem[s] = rem
        if self.ord_side[s] > 0:
            x = self.open_buy[k] + d
            self.open_buy[k] = x if x > 0.0 else 0.0
        else:
            x = self.open_sell[k] + d
            self.open_sell[k] = x if x > 0.0 else 0.0
        self._update_exposure(k)

    def _set_remaining(self, s: int, rem: float) -> None:
        k = self.ord_k[s]
        d = rem - self.ord_rem[s]
        self.ord_rem[s] = rem
        if self.ord_side[s] > 0:
            self.open_buy[k] = max(0.0, self.open_buy[k] + d)
        else:
            self.open_sell[k] = max(0.0, self.open_sell[k] + d)
        self._update_exposure(k)

    def on_order_closed(self, cl_ord_id: str) -> None:
        """The order is done (filled, cancelled, rejected, expired): release what it held."""
        s = self._ord_slot.pop(cl_ord_id, -1)
        if s < 0:
            return
        k = self.ord_k[s]
        rem = self.ord_rem[s]
        if self.ord_side[s] > 0:
            self.open_buy[k] = max(0.0, self.open_buy[k] - rem)
        else:
            self.open_sell[k] = max(0.0, self.open_sell[k] - rem)
        self.ord_rem[s] = 0.0
        self.open_count[k] -= 1
        self.venue_open[k // self.n_instr] -= 1
        self.total_open -= 1
        self._free.append(s)
        self._update_exposure(k)

    def on_fill(self, cl_ord_id: str, venue_id: int, instr_id: int, side: int, qty: float, px: float,
                fee: float = 0.0) -> None:
        """A fill: position, average price, realized PnL, and the order's open quantity."""
        k = venue_id * self.n_instr + instr_id
        s = self._ord_slot.get(cl_ord_id, -1)
        if s >= 0:
            rem = self.ord_rem[s]
            take = qty if qty < rem else rem
            self.ord_rem[s] = rem - take
            if self.ord_side[s] > 0:
                self.open_buy[k] = max(0.0, self.open_buy[k] - take)
            else:
                self.open_sell[k] = max(0.0, self.open_sell[k] - take)
        pos = self.position[k]
        avg = self.avg_px[k]
        dq = qty if side > 0 else -qty
        if pos == 0.0 or (pos > 0.0) == (dq > 0.0):
            tot = abs(pos) + qty
            self.avg_px[k] = (avg * abs(pos) + px * qty) / tot if tot > 0.0 else 0.0
            pos += dq
        else:
            closing = qty if qty < abs(pos) else abs(pos)
            self.realized[k] += closing * (px - avg) * (1.0 if pos > 0.0 else -1.0)
            pos += dq
            if abs(pos) < _EPS:
                pos = 0.0
                self.avg_px[k] = 0.0
            elif (pos > 0.0) == (dq > 0.0):  # flipped through zero
                self.avg_px[k] = px
        self.position[k] = pos
        self.fees[k] += fee
        self._update_exposure(k)
        self._account_check()

    def on_order_result(self, rejected: bool) -> None:
        """Feed the reject-rate window: one call per order the venue acked or rejected."""
        w = self.reject_window
        p = self._rej_pos
        old = self._rej[p]
        new = 1 if rejected else 0
        self._rej[p] = new
        self._rej_pos = (p + 1) % w
        self._rej_count += new - old
        if self._rej_n < w:
            self._rej_n += 1
        if (rejected and self._rej_n >= w and self._rej_count > self.cfg.max_reject_rate * w
                and self.state is not _HALTED):
            self.halt(f"reject rate {self._rej_count}/{w} above {self.cfg.max_reject_rate}", Reason.REJECT_RATE,
                      observed=self._rej_count / w, limit=self.cfg.max_reject_rate)

    @property
    def reject_rate(self) -> float:
        return self._rej_count / self._rej_n if self._rej_n else 0.0

    # ---- periodic (host timer) -------------------------------------------------
    def refresh(self, now_ns: int | None = None) -> None:
        """Marks, unrealized PnL, exposure sums and account limits (every host timer tick)."""
        md = self.md
        mid_ok = (md.bid_px > 0.0) & (md.ask_px > 0.0)
        np.copyto(self.mark_np, (md.bid_px + md.ask_px) * 0.5, where=mid_ok)
        pos = self.position_np
        worst = np.maximum(np.abs(pos + self.open_buy_np), np.abs(pos - self.open_sell_np))
        np.multiply(worst, self.mark_np, out=self.exposure_np)
        ve = self.exposure_np.sum(axis=1)
        for v in range(N_VENUES):
            self.venue_exposure[v] = float(ve[v])
        self.total_exposure = float(ve.sum())
        self.total_open = int(self.open_count_np.sum())
        self._account_check()

    def _account_check(self) -> None:
        held = self.position_np != 0.0
        self.unrealized = float((self.position_np * (self.mark_np - self.avg_px_np))[held].sum())
        self.equity = float(self.realized_np.sum()) - float(self.fees_np.sum()) + self.unrealized
        day = time.time_ns() // _DAY_NS
        if day != self._day:
            self._day = day
            self.day_start_equity = self.equity
            self.peak_equity = self.equity
        if self.equity > self.peak_equity:
            self.peak_equity = self.equity
        if self.state is _HALTED:
            return
        loss = self.day_start_equity - self.equity
        if self.cfg.daily_loss_limit > 0 and loss > self.cfg.daily_loss_limit:
            self.halt(f"daily loss {loss:.2f} above {self.cfg.daily_loss_limit}", Reason.DAILY_LOSS,
                      observed=loss, limit=self.cfg.daily_loss_limit)
            return
        dd = self.peak_equity - self.equity
        if self.cfg.max_drawdown > 0 and dd > self.cfg.max_drawdown:
            self.halt(f"drawdown {dd:.2f} above {self.cfg.max_drawdown}", Reason.DRAWDOWN,
                      observed=dd, limit=self.cfg.max_drawdown)

    def stale_books(self, now_ns: int) -> list[tuple[int, int]]:
        """(venue, instr) pairs where we have open orders and the book is stale or resyncing,
        reported once per episode: the host cancels the resting orders there."""
        md = self.md
        bad = (md.valid == 0) | (md.resync == 1) | ((now_ns - md.update_ns) > self.stale_ns)
        self._pulled[~bad] = 0
        hit = bad & (self.open_count_np > 0) & (self._pulled == 0)
        if not hit.any():
            return []
        self._pulled[hit] = 1
        out = []
        for v, i in zip(*np.nonzero(hit), strict=True):
            out.append((int(v), int(i)))
            self.write_event(int(Reason.STALE_PULL), int(v), int(i))
        return out

    # ---- trading state and kill switch -------------------------------------------
    def _set_state(self, st: TradingState, code: int, text: str) -> None:
        self.state = st
        self.state_reason = text
        if self.counters is not None:
            self.counters.set(self._ctr_state, int(st))
        self.write_event(code, text=text)

    def halt(self, reason: str = "manual halt", code: int = Reason.KILL_SWITCH, observed: float = 0.0,
             limit: float = 0.0) -> None:
        """Kill switch: HALTED (no new orders or amends, cancels still pass) and ask the host
        to cancel everything (`kill_requested`)."""
        self.kill_requested = True
        self.kill_reason = reason
        self.kills += 1
        if self.counters is not None:
            self.counters.inc(self._ctr_kills)
        self.state = _HALTED
        self.state_reason = reason
        if self.counters is not None:
            self.counters.set(self._ctr_state, int(_HALTED))
        self.write_event(int(code), limit_value=limit, observed=observed, text=reason)

    def take_kill_request(self) -> str | None:
        """The host: reason of a pending kill switch (once), else None."""
        if not self.kill_requested:
            return None
        self.kill_requested = False
        return self.kill_reason

    def reduce_only(self, reason: str = "reducing") -> None:
        """REDUCING: only orders that bring a position towards zero."""
        self._set_state(_REDUCING, int(Reason.STATE_CHANGE), reason)

    def resume(self, reason: str = "resumed") -> None:
        """Back to ACTIVE. Account limits are re-evaluated at once: a breach that persists
        halts again, so raise the limit (or flatten) before resuming."""
        self.kill_requested = False
        self._set_state(_ACTIVE, int(Reason.RESUMED), reason)
        self.peak_equity = self.equity  # drawdown is measured from the resumption

    # ---- reporting (edges) ----------------------------------------------------
    def position_of(self, venue_id: int, instr_id: int) -> float:
        return self.position[venue_id * self.n_instr + instr_id]

    def open_qty(self, venue_id: int, instr_id: int) -> tuple[float, float]:
        k = venue_id * self.n_instr + instr_id
        return self.open_buy[k], self.open_sell[k]

    def denials(self) -> dict[str, int]:
        return {REASON_NAMES[c]: int(self.denied[c]) for c in range(N_REASONS) if self.denied[c]}

    def summary(self) -> dict:
        return {"state": self.state.name, "state_reason": self.state_reason, "checks": self.checks,
                "denied": self.denials(), "open_orders": self.total_open,
                "total_exposure": self.total_exposure, "equity": self.equity,
                "unrealized": self.unrealized, "reject_rate": self.reject_rate, "kills": self.kills}

