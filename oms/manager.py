"""OrderManager: the one object strategies, run.py and manual tools use to trade.

Contract (the strategy host and run.py code against exactly this):

    om = OrderManager(cfg, instruments, events_ring=None, counters=None, *,
                      recovery_lookback_s=900.0, position_source=None)
                                     # position_source(since_ns) -> ({(venue, instr_id): (qty, avg_px,
                                     # realized, fees, snapshot_ts_ns)}, {(venue, trade_id): event_ts_ns}):
                                     # read once in start() (a restart continues from the persisted
                                     # positions); see "Restart recovery" in oms/README.md
    await om.start(venues=None)      # open + authenticate each venue's order connection, subscribe
                                     # its private streams, load tick/lot/min-notional (and OKX
                                     # instIdCode) from REST, reconcile, arm dead-man switches;
                                     # returns when every venue is ready (raises GatewayError if one
                                     # cannot start)
    await om.stop(cancel_all=True)   # cancel everything (optional), disarm dead-man, close
    cl = om.submit(req)              # synchronous fast path, call from inside the running loop:
                                     # NEW / CANCEL / AMEND / CANCEL_ALL. Assigns cl_ord_id when
                                     # empty, creates the Order (PENDING_NEW), encodes + signs + sends
                                     # on the pre-opened connection at once, writes the event record.
                                     # Returns the cl_ord_id acted on (AMEND on Binance with a new
                                     # price: the replacement's new id; CANCEL_ALL: "*"), or "" when
                                     # not accepted; then `om.last_reject_reason` says why
                                     # ("okx: reconciling", "binance: rate limited", ...).
    cls = om.submit_many(reqs)       # extra: corked, one socket write per venue; OKX new orders and
                                     # cancels in batch requests of up to 20; ids in order ("" = not
                                     # accepted). Any corked burst (a requote, answers to a read's
                                     # acks) is coalesced the same way.
    order = await om.place_order(req, timeout=5.0)   # manual orders: submit, then await the first
                                     # venue answer (ack / reject); UNKNOWN on timeout (reconciled)
    await om.cancel_all(venue=None)  # per venue or all; returns when the venue lists none open
    om.venue_ready(venue) -> bool; om.venue_status() -> {venue: {connected, authenticated,
                                     reconciling, ready, reason}}
    om.add_listener(fn)              # fn(OrderEvent) for every state change and fill, synchronously
    om.order(cl) -> Order | None;    om.open_orders(venue=None, instr_id=None) -> list[Order]
    om.positions                     # PositionBook: get(venue, instr_id) -> Position(qty, avg_px,
                                     # realized_pnl, fees, unrealized_pnl(mark))
    om.stats()                       # counts by state and venue, acks, rejects by reason,
                                     # order-to-ack latency percentiles (send -> ack, perf_counter_ns)

Order (oms.state, slotted): cl_ord_id, venue, instr_id, symbol, side, px, qty, filled_qty, avg_px,
state, venue_ord_id, tif, created_ns, sent_ns, acked_ns, reason, event_seq.
OrderEvent: order, kind (ACK, REJECT, FILL, CANCELED, EXPIRED, AMENDED, UNKNOWN, ...), fill_qty,
fill_px, fee, liquidity, trade_id, reason.

Every state change is written to the events ring as an ORDER_EVENT record (event_seq increases per
order), every fill as a FILL record followed by a POSITION snapshot. Illegal transitions are
logged and counted, never applied. A connection lost with requests in flight makes those orders
UNKNOWN; reconciliation (recent fills, then open orders, then each unresolved order, over REST)
runs after every (re)connect before the venue accepts orders again; the first one also recovers
the fills the venue made for an earlier (killed) session's orders, back `recovery_lookback_s`. Decides nothing about what to
trade; never blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable

from common.config import Config, ConfigError
from common.enums import Exchange, OrderSide, OrderState, OrderType, TimeInForce
from common.instruments import Instruments, split_canonical, venue_symbol
from oms.ids import ClOrdIdGen, from_wire, to_wire, valid_client_id
from oms.positions import PositionBook
from oms.ratelimit import VENUE_LIMITS, TokenBucket
from oms.state import LEGAL_M, PENDING_M, TERMINAL_M, EventKind, Order, OrderEvent, Reason
from oms.venues.base import (
    B_CANCEL,
    B_NEW,
    U_ACK,
    U_AMEND_ACK,
    U_AMEND_REJECT,
    U_CANCEL_ACK,
    U_CANCEL_ALL_ACK,
    U_CANCEL_REJECT,
    U_ERROR,
    U_ORDER,
    U_REJECT,
    Gateway,
    GatewayError,
    Update,
    VenueOrder,
)
from ringbuf.records import (
    F_REPLAY,
    FILL_STRUCT,
    KIND_FILL,
    KIND_ORDER_EVENT,
    KIND_POSITION,
    ORDER_EVENT_STRUCT,
    POSITION_STRUCT,
)
from strategy.orders import OrderRequest, RequestKind

log = logging.getLogger("oms")

S = OrderState
_PENDING = (S.PENDING_NEW, S.PENDING_CANCEL, S.PENDING_AMEND)
_LAT_SLOTS = 1 << 17
_EPS = 1e-9
# states that remember where the order was (a cancel / amend refused, an UNKNOWN resolved)
_HOLD_M = tuple(st in (S.PENDING_CANCEL, S.PENDING_AMEND, S.UNKNOWN) for st in range(len(TERMINAL_M)))
_perf_ns = time.perf_counter_ns
_mono_ns = time.monotonic_ns
_time_ns = time.time_ns
_dict_set = dict.__setitem__
_NEW = RequestKind.NEW
_CANCEL = RequestKind.CANCEL
_LIMIT = OrderType.LIMIT
_K_PENDING = EventKind.PENDING
_PUSH_KIND = {S.CANCELED: EventKind.CANCELED, S.EXPIRED: EventKind.EXPIRED, S.REJECTED: EventKind.REJECT}


def gateway_class(venue: Exchange) -> type[Gateway]:
    if venue == Exchange.BINANCE:
        from oms.venues.binance import BinanceGateway
        return BinanceGateway
    if venue == Exchange.OKX:
        from oms.venues.okx import OkxGateway
        return OkxGateway
    from oms.venues.gate import GateGateway
    return GateGateway


def apply_sim_urls(cfg: Config, urls: dict) -> None:
    """Point each venue's REST / order WebSocket at a running simulator (its `urls` map)."""
    b, o, g = urls["binance"], urls["okx"], urls["gate"]
    cfg.venue("binance").rest_url, cfg.venue("binance").ws_api_url = b["rest"], b["ws_api"]
    cfg.venue("binance").ws_url = b.get("ws", "")
    cfg.venue("okx").rest_url, cfg.venue("okx").ws_api_url = o["rest"], o["ws_private"]
    cfg.venue("okx").ws_url = o.get("ws_public", "")
    cfg.venue("gate").rest_url, cfg.venue("gate").ws_api_url = g["rest"], g["ws"]
    cfg.venue("gate").ws_url = g["ws"]


class OrderTable(dict):
    """cl_ord_id -> Order, with the open (non-terminal) orders also in `open`: open-order views
    (status, housekeeping, cancel-all) read those instead of walking every order of the last
    minute (hundreds of thousands at full rate)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        super().__init__()
        self.open: dict[str, Order] = {}

    def __setitem__(self, cl: str, o: Order) -> None:
        _dict_set(self, cl, o)
        if TERMINAL_M[o.state]:
            self.open.pop(cl, None)
        else:
            self.open[cl] = o

    def __delitem__(self, cl: str) -> None:
        dict.__delitem__(self, cl)
        self.open.pop(cl, None)

    def pop(self, cl, *default):  # type: ignore[override]
        self.open.pop(cl, None)
        return dict.pop(self, cl, *default)

    def clear(self) -> None:
        dict.clear(self)
        self.open.clear()


class _VenueState:
    __slots__ = ("gw", "ready", "reconciling", "reason", "order_bucket", "cancel_bucket", "task", "deadman_armed",
                 "deadman_at", "reconnects", "reconciles", "last_reconcile_ms", "started_ms", "recover_syms",
                 "recover_since_ms", "recover_until_ms", "fills_ok_ms", "fill_passes")

    def __init__(self, gw: Gateway, order_bucket: TokenBucket, cancel_bucket: TokenBucket) -> None:
        self.gw = gw
        self.ready = False
        self.reconciling = False
        self.reason = "not started"
        self.order_bucket = order_bucket
        self.cancel_bucket = cancel_bucket
        self.task: asyncio.Task | None = None
        self.deadman_armed = False
        self.deadman_at = 0.0
        self.reconnects = 0
        self.reconciles = 0
        self.last_reconcile_ms = 0
        self.started_ms = 0
        self.recover_syms: set[str] = set()  # venue symbols whose start-up fills recovery is still to do
        self.recover_since_ms = 0  # venue time: start-up recovery looks back to here
        self.recover_until_ms = 0  # venue time of the start: later unknown orders are ours (purged) or foreign
        self.fills_ok_ms = 0  # venue time of the last fills reconciliation that reached every symbol
        self.fill_passes = 0


class OrderManager:
    """See the module docstring for the contract."""

    # past 30 instance attributes CPython 3.11 gives up the shared-key layout and every attribute
    # load on the order path becomes a dict lookup; slots keep them fixed offsets (__dict__ stays
    # for anything a test or a subclass adds)
    __slots__ = ("_adopt_seq", "_bg", "_by_vid", "_ctr", "_housekeeping", "_lat", "_lat_n",
                 "_open", "_persisted", "_px_cache", "_qty_cache", "_recovery_done", "_replacements",
                 "_restore_done", "_ring", "_snap_ts", "_starting", "_stopping", "_terminal_q", "_venues",
                 "_vsym", "_w_order", "cfg", "counters", "deadman_refresh_s", "deadman_timeout_s", "ids",
                 "instruments", "last_reject_reason", "listeners", "n", "not_accepted_by_reason", "orders",
                 "position_source", "positions", "reconnect", "recovery_lookback_s", "rejects_by_reason",
                 "retain_terminal_s", "max_terminal_orders", "__dict__")

    def __init__(self, cfg: Config, instruments: Instruments, events_ring=None, counters=None, *,
                 deadman_timeout_s: float = 10.0, deadman_refresh_s: float = 2.0, reconnect: bool = True,
                 id_gen: ClOrdIdGen | None = None, retain_terminal_s: float = 60.0,
                 max_terminal_orders: int = 100_000,
                 recovery_lookback_s: float = 900.0,
                 position_source: Callable[[int], tuple[dict, dict]] | None = None) -> None:
        self.cfg = cfg
        self.instruments = instruments
        self._w_order: Callable[..., bool] | None = None
        self.ring = events_ring
        self.counters = counters
        self.ids = id_gen or ClOrdIdGen()
        self.orders = OrderTable()
        self._open = self.orders.open
        self.positions = PositionBook()
        self.listeners: list[Callable[[OrderEvent], None]] = []
        self.last_reject_reason = ""
        self.deadman_timeout_s = deadman_timeout_s
        self.deadman_refresh_s = deadman_refresh_s
        self.reconnect = reconnect
        self._venues: dict[Exchange, _VenueState] = {}
        self._vsym: dict[tuple[int, int], str] = {}
        self._px_cache: dict[tuple, tuple] = {}  # (id(spec), px, side) -> (spec, rounded px, wire string)
        self._qty_cache: dict[tuple, tuple] = {}
        self._replacements: dict[str, str] = {}  # Binance cancelReplace: old id -> new id
        self._by_vid: dict[tuple[int, str], Order] = {}
        self._terminal_q: deque[tuple[int, str]] = deque()
        self.retain_terminal_s = retain_terminal_s
        self.max_terminal_orders = max_terminal_orders
        if recovery_lookback_s < 0:
            raise ConfigError("recovery_lookback_s must be 0 or more")
        self.recovery_lookback_s = recovery_lookback_s
        self.position_source = position_source
        self._snap_ts: dict[tuple[int, int], int] = {}  # restored positions: snapshot time (epoch ns)
        self._persisted: dict[tuple[int, str], int] = {}  # (venue, trade id) -> event_ts_ns already stored
        self._starting = False
        self._restore_done = False
        self._recovery_done: set[Exchange] = set()  # venues whose start-up recovery was set up
        # orders of an earlier session continue their event_seq above anything that session wrote
        self._adopt_seq = (time.time_ns() // 1_000_000) << 16
        self._stopping = False
        self._housekeeping: asyncio.Task | None = None
        self._bg: set[asyncio.Task] = set()
        self._lat = array("q", bytes(8 * _LAT_SLOTS))
        self._lat_n = 0
        self.n: Counter[str] = Counter()  # event counts: sent, acks, rejects, fills, illegal, stale, late_fills, ...
        self.rejects_by_reason: Counter = Counter()
        self.not_accepted_by_reason: Counter = Counter()
        self._ctr = {}
        if counters is not None:
            for k in ("oms_sent", "oms_acks", "oms_rejects", "oms_fills", "oms_illegal", "oms_unknown",
                      "oms_not_accepted", "oms_reconciles", "oms_open_orders", "oms_ack_p50_us"):
                self._ctr[k] = counters.add(k)

    @property
    def ring(self):
        return self._ring

    @ring.setter
    def ring(self, ring) -> None:
        """The events ring, and its ORDER_EVENT writer (generated for the layout when the ring
        offers one: half the cost of `write`)."""
        self._ring = ring
        if ring is None:
            self._w_order = None
        elif hasattr(ring, "writer"):
            self._w_order = ring.writer(ORDER_EVENT_STRUCT)
        else:
            self._w_order = lambda *values: ring.write(ORDER_EVENT_STRUCT, *values)

    # ---------------------------------------------------------------- lifecycle
    async def start(self, venues: list[Exchange] | None = None) -> None:
        venues = venues if venues is not None else self.cfg.enabled_venues()
        self._stopping = False
        self._starting = True
        try:
            await self._start(venues)
        finally:
            self._starting = False

    async def _start(self, venues: list[Exchange]) -> None:
        if self.position_source is not None and not self._restore_done:
            self._restore_done = True  # once per manager: later positions are live, not stored ones
            await self._restore_positions(venues)
        syms = self._symbols()
        for v in venues:
            vcfg = self.cfg.venue(v)
            gw = gateway_class(v)(vcfg, self.instruments, self, vcfg.symbols or syms)
            lim = VENUE_LIMITS[v.key]
            try:
                ob = TokenBucket(getattr(vcfg, "order_rate", 0.0) or lim["order_rate"],
                                 getattr(vcfg, "order_burst", 0) or lim["order_burst"])
                cb = TokenBucket(getattr(vcfg, "cancel_rate", 0.0) or lim["cancel_rate"],
                                 getattr(vcfg, "cancel_burst", 0) or lim["cancel_burst"])
            except ValueError:
                raise ConfigError(f"exchanges.{v.key}: order_rate/cancel_rate must be positive and "
                                  "order_burst/cancel_burst at least 1 (or 0 for the venue's published limit)") from None
            self._venues[v] = _VenueState(gw, ob, cb)
        await asyncio.gather(*(self._start_venue(v) for v in venues))
        if self._housekeeping is None:
            self._housekeeping = asyncio.get_running_loop().create_task(self._housekeeping_loop())

    def _lookback_s(self, v: Exchange) -> float:
        """How far back start-up reconciliation fetches fills: `[exchanges.<venue>]
        recovery_lookback_s` when the config has it, else the constructor's (default 15 min)."""
        lb = getattr(self.cfg.venue(v), "recovery_lookback_s", None)
        return float(lb) if lb is not None and lb >= 0 else self.recovery_lookback_s

    async def _restore_positions(self, venues: list[Exchange]) -> None:
        """Positions from the last persisted snapshots (`position_source`, read once at start-up,
        off the loop). Recovered fills already reflected in a snapshot are then not applied again;
        the others are. Unreachable source: positions are rebuilt from the venues' fills alone."""
        lb = max((self._lookback_s(v) for v in venues), default=self.recovery_lookback_s)
        since_ns = time.time_ns() - int((lb + 600.0) * 1e9)  # 10 min margin for venue/local clock skew
        try:
            snaps, persisted = await asyncio.to_thread(self.position_source, since_ns)  # type: ignore[arg-type]
        except Exception as e:
            self.n["position_source_errors"] += 1
            log.warning("persisted positions unavailable (%s); rebuilding positions from the venues' recent fills "
                        "(last %.0f s) only", str(e).splitlines()[0][:200] if str(e) else type(e).__name__, lb)
            return
        for (venue, iid), (qty, avg_px, realized, fees, ts_ns) in (snaps or {}).items():
            self.positions.restore(int(venue), int(iid), qty, avg_px, realized, fees)
            self._snap_ts[(int(venue), int(iid))] = int(ts_ns)
        self._persisted = {(int(venue), str(tid)): int(ts) for (venue, tid), ts in (persisted or {}).items()}
        self.n["positions_restored"] += len(self._snap_ts)
        if self._snap_ts:
            log.info("restored %d position(s) from persisted snapshots (%d recent fills already stored)",
                     len(self._snap_ts), len(self._persisted))

    def _symbols(self) -> list[str]:
        """The instruments registry's symbols (the strategy's), else the configured strategy symbols."""
        return list(self.instruments.symbols()) or list(self.cfg.market_making.symbols)

    async def _start_venue(self, v: Exchange) -> None:
        st = self._venues[v]
        gw = st.gw
        st.reason = "loading instruments"
        try:
            await gw.sync_clock()
            n = await gw.load_instruments()
        except Exception as e:
            st.reason = f"instrument rules unavailable: {e}"
            raise GatewayError(f"{v.key}: cannot load instrument rules: {e}") from None
        if n == 0:
            raise GatewayError(f"{v.key}: the venue lists none of the symbols {gw.symbols}")
        st.started_ms = int(time.time() * 1000)
        st.recover_until_ms = gw.now_ms()
        st.recover_since_ms = st.recover_until_ms - int(self._lookback_s(v) * 1000)
        if v not in self._recovery_done:  # the first start only: a restarted manager knows its own fills
            self._recovery_done.add(v)
            st.recover_syms = {self._venue_sym(v, self.instruments.id_for(s)) for s in gw.symbols
                               if self.instruments.spec(v, self.instruments.id_for(s)) is not None}
        await self._connect_and_reconcile(v)

    async def _connect_and_reconcile(self, v: Exchange) -> None:
        st = self._venues[v]
        st.ready = False
        st.reason = "connecting"
        await st.gw.connect()
        st.reason = "reconciling"
        await self.reconcile(v)
        if st.gw.venue in (Exchange.OKX, Exchange.GATE) and self.deadman_timeout_s > 0:
            try:
                await st.gw.arm_deadman(int(self.deadman_timeout_s))
                st.deadman_armed = True
                st.deadman_at = time.monotonic()
            except Exception as e:
                log.warning("%s: dead-man switch not armed: %s", v.key, e)
        if st.gw.transport is None or not st.gw.authenticated:
            # dropped again while reconciling: the reconnect loop tries again
            raise GatewayError(f"{v.key}: connection lost during reconciliation")
        st.ready = True
        st.reason = ""

    async def stop(self, cancel_all: bool = True) -> None:
        if cancel_all:
            try:
                await asyncio.wait_for(self.cancel_all(), 15.0)
            except Exception as e:
                log.warning("cancel_all at stop failed: %s", e)
        self._stopping = True
        for st in self._venues.values():
            if st.deadman_armed:
                try:
                    await asyncio.wait_for(st.gw.arm_deadman(0), 3.0)
                except Exception:
                    pass
                st.deadman_armed = False
        for t in [self._housekeeping, *(st.task for st in self._venues.values()), *self._bg]:
            if t is not None and not t.done():
                t.cancel()
        self._housekeeping = None
        for st in self._venues.values():
            st.ready = False
            st.reason = "stopped"
            await st.gw.close()

    # ---------------------------------------------------------------- status
    def cork(self) -> None:
        """Hold requests in each gateway's outbox until `uncork()`: a burst of requests (a
        requote, answers to a batch of acks) leaves in one socket write per venue."""
        for st in self._venues.values():
            gw = getattr(st, "gw", None)
            if gw is not None:
                gw._corked = True

    def uncork(self) -> None:
        for st in self._venues.values():
            gw = getattr(st, "gw", None)
            if gw is not None:
                gw._corked = False
                if gw._outbox or gw._run:
                    gw.flush()

    def venue_ready(self, venue: Exchange) -> bool:
        st = self._venues.get(venue)
        return bool(st and st.ready and st.gw.authenticated)

    def venue_status(self) -> dict:
        out = {}
        for v, st in self._venues.items():
            out[v.key] = {"connected": st.gw.connected, "authenticated": st.gw.authenticated,
                          "reconciling": st.reconciling, "ready": self.venue_ready(v),
                          "reason": st.reason or st.gw.reason, "reconnects": st.reconnects,
                          "deadman_armed": st.deadman_armed}
        return out

    def gateway(self, venue: Exchange) -> Gateway:
        return self._venues[venue].gw

    def add_listener(self, fn: Callable[[OrderEvent], None]) -> None:
        self.listeners.append(fn)

    def order(self, cl_ord_id: str) -> Order | None:
        return self.orders.get(cl_ord_id)

    def open_orders(self, venue: Exchange | None = None, instr_id: int | None = None) -> list[Order]:
        return [o for o in self._open.values()
                if not TERMINAL_M[o.state] and (venue is None or o.venue == venue)
                and (instr_id is None or o.instr_id == instr_id)]

    # ---------------------------------------------------------------- submit (hot path)
    def _refuse(self, venue: Exchange | None, reason: str, code: Reason) -> str:
        self.last_reject_reason = f"{venue.key if venue else '?'}: {reason}"
        self.not_accepted_by_reason[code.name] += 1
        self.n["not_accepted"] += 1
        if self._ctr:
            self.counters.inc(self._ctr["oms_not_accepted"])
        return ""

    def _accepting(self, venue: Exchange | None) -> _VenueState | None:
        st = self._venues.get(venue) if venue is not None else None
        if st is None:
            self._refuse(venue, "venue not started", Reason.VENUE_DOWN)
            return None
        if not st.ready or st.gw.transport is None:
            if st.reconciling:
                self._refuse(venue, "reconciling", Reason.RECONCILING)
            else:
                self._refuse(venue, f"not connected ({st.reason or st.gw.reason})", Reason.VENUE_DOWN)
            return None
        return st

    def submit(self, req: OrderRequest) -> str:
        k = req.kind
        if k is _NEW:
            return self._submit_new(req)
        if k is _CANCEL:
            return self._submit_cancel(req.target_cl_ord_id, req.venue)
        if k == RequestKind.AMEND:
            return self._submit_amend(req)
        if k == RequestKind.CANCEL_ALL:
            venues = [req.venue] if req.venue is not None else list(self._venues)
            sent = False
            for v in venues:
                if self._accepting(v) is not None:
                    self._send_cancel_all(v)
                    sent = True
            return "*" if sent else ""
        return self._refuse(req.venue, f"unknown request kind {k!r}", Reason.BAD_REQUEST)

    def submit_many(self, reqs: list[OrderRequest]) -> list[str]:
        """Several requests at once, corked: they leave in one socket write per venue, and on
        venues with batch requests (OKX) consecutive new orders, and consecutive cancels, go as
        batch requests of up to 20 (one message, one venue round trip each). Returns the client
        order ids in order ("" where a request was not accepted)."""
        opened = [st.gw for st in self._venues.values() if not st.gw._corked]  # a caller's cork stays
        for gw in opened:
            gw._corked = True
        try:
            return [self.submit(r) for r in reqs]
        finally:
            for gw in opened:
                gw._corked = False
                if gw._outbox or gw._run:
                    gw.flush()

    def _instr(self, req: OrderRequest) -> int:
        if req.instr_id:
            return req.instr_id
        if req.symbol is None:
            return 0
        iid = self.instruments.id_for(req.symbol.canonical)
        req.instr_id = iid
        return iid

    def _venue_sym(self, venue: Exchange, iid: int) -> str:
        key = (venue, iid)  # an IntEnum hashes and compares as its int
        vs = self._vsym.get(key)
        if vs is None:
            vs = self._vsym[key] = venue_symbol(self.instruments.name(iid), venue)
        return vs

    def _submit_new(self, req: OrderRequest) -> str:
        venue = req.venue
        st = self._venues.get(venue) if venue is not None else None
        if st is None or venue is None or not st.ready or st.gw.transport is None:
            self._accepting(venue)  # says why
            return ""
        iid = req.instr_id or self._instr(req)
        spec = self.instruments.spec(venue, iid)
        if spec is None:
            return self._refuse(venue, f"no instrument rules for {req.symbol}", Reason.UNKNOWN_INSTRUMENT)
        if req.ord_type is not _LIMIT and req.ord_type != _LIMIT:
            return self._refuse(venue, "only limit orders are supported", Reason.BAD_REQUEST)
        side = req.side
        px, px_s = self._px(spec, req.px, side)
        qty, qty_s = self._qty(spec, req.qty)
        if qty <= 0 or qty < spec.min_qty - _EPS:
            return self._refuse(venue, f"quantity {req.qty} below the lot/min size of {spec.symbol}",
                                Reason.INVALID_TICK_LOT)
        if px <= 0:
            return self._refuse(venue, f"price {req.px} rounds to zero", Reason.INVALID_TICK_LOT)
        if spec.min_notional and px * qty < spec.min_notional - _EPS:
            return self._refuse(venue, f"notional {px * qty:.4f} below {spec.min_notional}", Reason.MIN_NOTIONAL)
        cl = req.cl_ord_id
        if cl:
            if cl in self.orders or not valid_client_id(venue, to_wire(venue, cl)):
                return self._refuse(venue, f"client order id {cl!r} is invalid or already used", Reason.DUPLICATE_ID)
        if not st.order_bucket.try_acquire(_mono_ns()):
            return self._refuse(venue, "rate limited (client-side bucket)", Reason.RATE_LIMIT)
        if not cl:
            cl = self.ids.next()
            req.cl_ord_id = cl
        gw = st.gw
        tif = req.tif
        o = Order(cl, venue, iid, spec.symbol, side, px, qty, tif, req.ord_type, req.strategy_id, _perf_ns())
        _dict_set(self.orders, cl, o)
        self._open[cl] = o
        if gw._corked and gw.batch_new:  # leaves with the other orders of this burst, in a batch request
            o.sent_ns = _perf_ns()
            sent = gw.queue(B_NEW, (cl, self._venue_sym(venue, iid), side, px_s, qty_s, tif))
        else:
            data = gw.encode_new(cl, self._venue_sym(venue, iid), side, px_s, qty_s, tif, gw.now_ms())
            o.sent_ns = _perf_ns()
            sent = gw.send(data)
        self.n["sent"] += 1
        self._record(o, _K_PENDING)
        if not sent:  # the socket failed under us: the venue may or may not have it
            self._set_state(o, S.UNKNOWN, EventKind.UNKNOWN, Reason.TRANSPORT)
        return cl

    def _px(self, spec, px: float, side: int) -> tuple[float, str]:
        """`spec.round_px(px, side)` and its wire string, remembered per spec: quotes come back
        to the same few prices, and rounding + formatting is a good part of a submit."""
        key = (id(spec), px, side)
        hit = self._px_cache.get(key)
        if hit is not None and hit[0] is spec:
            return hit[1], hit[2]
        r = spec.round_px(px, side)
        s = spec.fmt_px(r)
        if len(self._px_cache) >= 8192:
            self._px_cache.clear()
        self._px_cache[key] = (spec, r, s)
        return r, s

    def _qty(self, spec, qty: float) -> tuple[float, str]:
        key = (id(spec), qty)
        hit = self._qty_cache.get(key)
        if hit is not None and hit[0] is spec:
            return hit[1], hit[2]
        r = spec.round_qty(qty)
        s = spec.fmt_qty(r)
        if len(self._qty_cache) >= 8192:
            self._qty_cache.clear()
        self._qty_cache[key] = (spec, r, s)
        return r, s

    def _submit_cancel(self, cl: str, venue: Exchange | None) -> str:
        o = self.orders.get(cl)
        if o is None:
            return self._refuse(venue, f"unknown order {cl!r}", Reason.UNKNOWN_ORDER)
        if TERMINAL_M[o.state]:
            return self._refuse(o.venue, f"order {cl} is already {o.state.name}", Reason.UNKNOWN_ORDER)
        v = o.venue
        st = self._venues.get(v)
        if st is None or not st.ready or st.gw.transport is None:
            self._accepting(v)  # says why
            return ""
        if not st.cancel_bucket.try_acquire(_mono_ns()):
            return self._refuse(v, "rate limited (cancel bucket)", Reason.RATE_LIMIT)
        gw = st.gw
        if gw._corked and gw.batch_max:
            gw.queue(B_CANCEL, (cl, self._venue_sym(v, o.instr_id)))
        else:
            gw.send(gw.encode_cancel(cl, self._venue_sym(v, o.instr_id), o.venue_ord_id, gw.now_ms()))
        if o.state != S.PENDING_CANCEL:
            self._set_state(o, S.PENDING_CANCEL, _K_PENDING)
        self.n["cancels_sent"] += 1
        return cl

    def _submit_amend(self, req: OrderRequest) -> str:
        cl = req.target_cl_ord_id
        o = self.orders.get(cl)
        if o is None:
            return self._refuse(req.venue, f"unknown order {cl!r}", Reason.UNKNOWN_ORDER)
        if o.state not in (S.NEW, S.PARTIALLY_FILLED):
            return self._refuse(o.venue, f"order {cl} is {o.state.name}, cannot amend", Reason.BAD_REQUEST)
        st = self._accepting(o.venue)
        if st is None:
            return ""
        spec = self.instruments.spec(o.venue, o.instr_id)
        if spec is None:
            return self._refuse(o.venue, f"no instrument rules for {o.symbol}", Reason.UNKNOWN_INSTRUMENT)
        new_px = spec.round_px(req.px, o.side) if req.px else o.px
        new_qty = spec.round_qty(req.qty) if req.qty else o.qty
        if new_qty <= o.filled_qty + _EPS:
            return self._refuse(o.venue, "amended quantity is not above the filled quantity", Reason.INVALID_TICK_LOT)
        if not st.order_bucket.try_acquire(time.monotonic_ns()):
            return self._refuse(o.venue, "rate limited (client-side bucket)", Reason.RATE_LIMIT)
        gw = st.gw
        vsym = self._venue_sym(o.venue, o.instr_id)
        px_changed = abs(new_px - o.px) > _EPS
        qty_s = spec.fmt_qty(new_qty)
        px_s = spec.fmt_px(new_px) if px_changed else ""
        if o.venue == Exchange.BINANCE and (px_changed or new_qty > o.qty + _EPS):
            # Binance spot cannot reprice in place: cancelReplace onto a new client id
            # the replacement is a new order for what is left to do (amend quantities include fills)
            rest_qty = spec.round_qty(new_qty - o.filled_qty)
            new_cl = self.ids.next()
            n = Order(new_cl, o.venue, o.instr_id, o.symbol, o.side, new_px, rest_qty, o.tif, o.ord_type,
                      o.strategy_id, time.perf_counter_ns())
            self.orders[new_cl] = n
            self._replacements[cl] = new_cl
            data = gw.encode_amend(cl, vsym, o.venue_ord_id, o.side, spec.fmt_qty(rest_qty), spec.fmt_px(new_px),
                                   o.tif, new_cl, gw.now_ms())
            self._set_state(o, S.PENDING_CANCEL, EventKind.PENDING)
            n.sent_ns = time.perf_counter_ns()
            gw.send(data)
            self._record(n, EventKind.PENDING)
            self.n["amends_sent"] += 1
            return new_cl
        o.pending_px = new_px
        o.pending_qty = new_qty
        data = gw.encode_amend(cl, vsym, o.venue_ord_id, o.side, qty_s if abs(new_qty - o.qty) > _EPS else "",
                               px_s, o.tif, "", gw.now_ms())
        self._set_state(o, S.PENDING_AMEND, EventKind.PENDING)
        gw.send(data)
        self.n["amends_sent"] += 1
        return cl

    def _send_cancel_all(self, v: Exchange) -> None:
        st = self._venues[v]
        gw = st.gw
        mine = [o for o in self.open_orders(v)]
        if v == Exchange.OKX:
            items = [(o.cl_ord_id, self._venue_sym(v, o.instr_id)) for o in mine if o.state != S.PENDING_NEW]
            for i in range(0, len(items), 20):
                gw.send(gw.encode_batch_cancel(items[i:i + 20])[1])
        else:
            for vsym in {self._venue_sym(v, self.instruments.id_for(s)) for s in gw.symbols}:
                gw.send(gw.encode_cancel_all(vsym, gw.now_ms()))
        for o in mine:
            if o.state in (S.NEW, S.PARTIALLY_FILLED, S.PENDING_AMEND):
                self._set_state(o, S.PENDING_CANCEL, EventKind.PENDING)

    async def place_order(self, req: OrderRequest, timeout: float = 5.0) -> Order:
        cl = self.submit(req)
        if not cl:
            o = Order("", req.venue or Exchange.BINANCE, req.instr_id, req.symbol.canonical if req.symbol else "",
                      req.side, req.px, req.qty, req.tif)
            o.state = S.REJECTED
            o.reason = Reason.RECONCILING if "reconciling" in self.last_reject_reason else (
                Reason.RATE_LIMIT if "rate limited" in self.last_reject_reason else Reason.VENUE_DOWN)
            return o
        o = self.orders[cl]
        if not PENDING_M[o.state]:
            return o
        fut = asyncio.get_running_loop().create_future()
        if o.waiters is None:
            o.waiters = []
        o.waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            if PENDING_M[o.state]:
                self._set_state(o, S.UNKNOWN, EventKind.UNKNOWN, Reason.TIMEOUT)
                self._spawn(self._resolve_unknown(o.venue))
        return o

    async def cancel_all(self, venue: Exchange | None = None, timeout_s: float = 10.0) -> None:
        venues = [venue] if venue is not None else list(self._venues)
        await asyncio.gather(*(self._cancel_all_venue(v, timeout_s) for v in venues))

    async def _cancel_all_venue(self, v: Exchange, timeout_s: float) -> None:
        st = self._venues.get(v)
        if st is None:
            return
        deadline = time.monotonic() + timeout_s
        while not self.venue_ready(v) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.venue_ready(v):
            raise GatewayError(f"{v.key}: cannot cancel all: {st.reason or st.gw.reason}")
        self._send_cancel_all(v)
        gw = st.gw
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if any(o.state == S.PENDING_CANCEL for o in self.open_orders(v)):
                continue
            left = await gw.open_orders()
            if not left:
                break
            # orders we do not track (another session) or whose cancel raced: adopt, cancel again
            await self.reconcile(v, quiet=True)
            if self.venue_ready(v):
                self._send_cancel_all(v)
        else:
            raise GatewayError(f"{v.key}: orders still open after cancel_all ({timeout_s:.0f} s)")
        await self.reconcile(v, quiet=True)

    # ---------------------------------------------------------------- state changes
    def _set_state(self, o: Order, st: OrderState, kind: EventKind, reason: Reason = Reason.NONE,
                   latency_us: float = 0.0, notify: bool = True) -> bool:
        cur = o.state
        if cur == st:
            return False
        if not LEGAL_M[cur][st]:
            self.n["illegal"] += 1
            if self._ctr:
                self.counters.inc(self._ctr["oms_illegal"])
            log.warning("illegal transition %s -> %s for %s (%s) ignored", cur.name, st.name, o.cl_ord_id, kind.name)
            return False
        if _HOLD_M[st]:
            if not PENDING_M[cur]:
                o.prev_state = cur
            elif cur == S.PENDING_NEW:
                o.prev_state = S.NEW if o.acked_ns else S.PENDING_NEW
        o.state = st
        if reason:
            o.reason = reason
        if TERMINAL_M[st]:
            self._terminal_q.append((_mono_ns(), o.cl_ord_id))
            self._open.pop(o.cl_ord_id, None)
        elif st == S.UNKNOWN:
            self.n["unknown"] += 1
            if self._ctr:
                self.counters.inc(self._ctr["oms_unknown"])
        self._record(o, kind, reason, latency_us, notify=notify)
        if o.waiters and not PENDING_M[st]:
            for f in o.waiters:
                if not f.done():
                    f.set_result(o)
            o.waiters = None
        return True

    def _record(self, o: Order, kind: EventKind, reason: Reason = Reason.NONE, latency_us: float = 0.0,
                flags: int = 0, notify: bool = True) -> None:
        o.event_seq += 1
        now = o.last_update_ns = _perf_ns()
        w = self._w_order
        if w is not None:
            if o._cl_s is not o.cl_ord_id:
                o._cl_s = o.cl_ord_id
                o._cl_b = o.cl_ord_id.encode()[:32]
            if o._vid_s is not o.venue_ord_id:
                o._vid_s = o.venue_ord_id
                o._vid_b = o.venue_ord_id.encode()[:24]
            # IntEnum fields pack as the ints they are (struct takes __index__)
            w(KIND_ORDER_EVENT, flags, o.venue, o.side, o.instr_id, o.state, (reason or o.reason) & 0xFF, _time_ns(),
              0, o.event_seq, o.px, o.qty, o.filled_qty, o.avg_px, o._cl_b, o._vid_b, o.ord_type, o.tif,
              o.strategy_id & 0xFF, kind & 0xFF, latency_us)
        if notify and self.listeners:
            ev = OrderEvent(o, kind, 0.0, 0.0, 0.0, 0, "", reason or o.reason, now)
            for fn in self.listeners:
                try:
                    fn(ev)
                except Exception:
                    log.exception("order listener failed")

    def _apply_fill(self, o: Order, u: Update, replay: bool = False, position: bool = True) -> bool:
        """One trade, once per trade id: the order's filled quantity, the position and the FILL +
        POSITION records. `position=False`: already in the restored positions and in the database
        (a recovered fill that a persisted snapshot reflects): only the order learns it. While
        `start()` runs, listeners are not told (the positions carry the fill; the strategy host
        seeds risk from them)."""
        tid = u.trade_id
        if o.trade_ids is None:
            o.trade_ids = set()
        elif tid in o.trade_ids:
            self.n["duplicate_fills"] += 1
            return False
        o.trade_ids.add(tid)
        q, px = u.fill_qty, u.fill_px
        o.filled_qty += q
        o.cum_quote += q * px
        o.avg_px = o.cum_quote / o.filled_qty if o.filled_qty > 0 else 0.0
        base, _quote = split_canonical(o.symbol)
        fee_quote = u.fee * px if u.fee_asset and u.fee_asset.upper() == base else u.fee
        o.fees += fee_quote
        pos = self.positions.get(o.venue, o.instr_id)
        realized = pos.apply_fill(int(o.side), q, px, fee_quote) if position else 0.0
        self.n["fills"] += 1
        if self._ctr:
            self.counters.inc(self._ctr["oms_fills"])
        now = time.time_ns()
        ring = self.ring if position else None
        flags = F_REPLAY if replay else 0
        if ring is not None:
            ring.write(FILL_STRUCT, KIND_FILL, flags, int(o.venue), int(o.side), o.instr_id, u.liquidity, 0, now,
                       u.ts_ms * 1_000_000, px, q, fee_quote, (u.fee_asset or "").encode()[:8], tid.encode()[:24],
                       o.cl_ord_id.encode()[:32], realized, 0)
            ring.write(POSITION_STRUCT, KIND_POSITION, flags, int(o.venue), 0, o.instr_id, 0, now, pos.qty,
                       pos.avg_px, pos.realized_pnl, pos.unrealized_pnl(), pos.fees, pos.mark_px)
        if TERMINAL_M[o.state]:
            self.n["late_fills"] += 1
        # the fill moves the state unless a cancel/amend is pending (then only a full fill does);
        # that change is recorded, and listeners get exactly one FILL event per trade, after it
        full = o.filled_qty >= o.qty - _EPS
        cur = o.state
        if full and not TERMINAL_M[cur]:
            self._set_state(o, S.FILLED, EventKind.FILL, notify=False)
        elif not full and cur in (S.NEW, S.PENDING_NEW):
            self._set_state(o, S.PARTIALLY_FILLED, EventKind.FILL, notify=False)
        elif cur in (S.PENDING_CANCEL, S.PENDING_AMEND, S.UNKNOWN) and o.prev_state in (S.NEW, S.PENDING_NEW):
            o.prev_state = S.PARTIALLY_FILLED
        elif cur == S.PARTIALLY_FILLED:
            self._record(o, EventKind.FILL, notify=False)  # filled_qty / avg_px moved: persist it
        if self.listeners and not self._starting:
            ev = OrderEvent(o, EventKind.FILL, q, px, fee_quote, u.liquidity, tid, ts_ns=now)
            for fn in self.listeners:
                try:
                    fn(ev)
                except Exception:
                    log.exception("order listener failed")
        return True

    def _apply_venue_state(self, o: Order, st: OrderState, kind: EventKind, reason: Reason,
                           cum_qty: float = -1.0) -> None:
        """A state the venue reports (push or ack). Stale reports (an older NEW after a fill, a live
        report while our cancel is pending) are counted and skipped; real regressions are illegal."""
        cur = o.state
        if st == cur:
            return
        if st == S.PENDING_NEW:
            return
        if cur == S.PENDING_CANCEL and st in (S.NEW, S.PARTIALLY_FILLED):
            o.prev_state = st  # the cancel is still in flight
            return
        if cur == S.PENDING_AMEND and st in (S.NEW, S.PARTIALLY_FILLED):
            o.prev_state = st
            return
        if st == S.NEW and cur == S.PARTIALLY_FILLED:
            self.n["stale_reports"] += 1
            return
        if st == S.PARTIALLY_FILLED and cur == S.FILLED:
            self.n["stale_reports"] += 1
            return
        if TERMINAL_M[cur]:
            # a report older than what we know (an ack overtaken by the final push, CANCELED after
            # FILLED on two channels): the order's life is over; fills are applied separately
            self.n["stale_reports"] += 1
            return
        if st == S.FILLED and o.filled_qty < o.qty - _EPS and cum_qty >= 0:
            # fills not seen yet: they follow on the private stream (or reconciliation brings them)
            pass
        self._set_state(o, st, kind, reason)

    # ---------------------------------------------------------------- gateway callbacks
    def on_update(self, gw: Gateway, u: Update) -> None:
        cl = u.cl_ord_id
        o = self.orders.get(cl) if cl else None  # decoders hand over our id (Gate's t- stripped)
        if o is None and u.venue_ord_id:
            o = self._by_venue_id(gw.venue, u.venue_ord_id)
        k = u.kind
        if o is None:
            if k == U_CANCEL_ALL_ACK or k == U_ERROR:
                if not u.ok and u.reason != Reason.UNKNOWN_ORDER:  # "no open orders" is fine
                    log.warning("%s: %s failed: %s %s", gw.venue.key, "cancel-all" if k == U_CANCEL_ALL_ACK else
                                "request", u.code, u.msg)
                    if u.reason == Reason.RATE_LIMIT:
                        self._venues[gw.venue].cancel_bucket.on_rate_limited(time.monotonic_ns(), u.retry_after_s)
                return
            self.n["foreign_updates"] += 1
            return
        if u.venue_ord_id and not o.venue_ord_id:
            self._set_vid(o, u.venue_ord_id)
        if k == U_ORDER and u.state is o.state and not u.trade_id:
            return  # a push that repeats what the ack said (the common case): nothing to do
        if k == U_ACK:
            now = time.perf_counter_ns()
            lat_us = 0.0
            if not o.acked_ns:
                o.acked_ns = now
                lat = now - o.sent_ns
                self._lat[self._lat_n & (_LAT_SLOTS - 1)] = lat
                self._lat_n += 1
                lat_us = lat / 1000.0
                self.n["acks"] += 1
                if self._ctr:
                    self.counters.inc(self._ctr["oms_acks"])
            self._venues[gw.venue].order_bucket.on_success()
            st = u.state or S.NEW
            if u.fill_qty and u.trade_id:
                self._apply_fill(o, u)
            if o.state == S.PENDING_NEW:
                if st in (S.PARTIALLY_FILLED, S.FILLED) and o.filled_qty <= _EPS:
                    self._set_state(o, S.NEW, EventKind.ACK, latency_us=lat_us)
                    if st == S.FILLED or st == S.PARTIALLY_FILLED:
                        return  # fills on the private stream move the state
                self._set_state(o, st, EventKind.ACK if st in (S.NEW, S.PARTIALLY_FILLED, S.FILLED) else
                                (EventKind.EXPIRED if st == S.EXPIRED else EventKind.CANCELED), u.reason,
                                latency_us=lat_us)
            else:
                self._apply_venue_state(o, st, EventKind.ACK, u.reason, u.cum_qty)
        elif k == U_REJECT:
            if u.reason == Reason.RATE_LIMIT:
                self._venues[gw.venue].order_bucket.on_rate_limited(time.monotonic_ns(), u.retry_after_s)
            self.n["rejects"] += 1
            self.rejects_by_reason[u.reason.name] += 1
            if self._ctr:
                self.counters.inc(self._ctr["oms_rejects"])
            if o.state in (S.PENDING_NEW, S.UNKNOWN):
                if not o.acked_ns:
                    o.acked_ns = time.perf_counter_ns()
                self._set_state(o, S.REJECTED, EventKind.REJECT, u.reason)
            else:
                self.n["stale_reports"] += 1
        elif k == U_ORDER:
            if u.fill_qty > 0 and u.trade_id:
                self._apply_fill(o, u)
            if u.state is not None:
                if u.state == S.UNKNOWN:
                    if PENDING_M[o.state]:
                        self._set_state(o, S.UNKNOWN, EventKind.UNKNOWN, u.reason or Reason.VENUE_ERROR)
                        self._spawn(self._resolve_unknown(gw.venue))
                    return
                kind = _PUSH_KIND.get(u.state, EventKind.ACK)
                if o.state == S.PENDING_NEW and not o.acked_ns:
                    o.acked_ns = time.perf_counter_ns()
                if u.state in (S.PARTIALLY_FILLED, S.FILLED) and not u.trade_id:
                    # a state push without the trade (Gate spot.orders): trades come separately
                    if o.state in (S.PENDING_NEW, S.UNKNOWN):
                        self._set_state(o, S.NEW, EventKind.ACK)
                    if u.state == S.PARTIALLY_FILLED or o.filled_qty < o.qty - _EPS:
                        return
                self._apply_venue_state(o, u.state, kind, u.reason, u.cum_qty)
        elif k == U_CANCEL_ACK:
            self._venues[gw.venue].cancel_bucket.on_success()
            if u.state is not None and TERMINAL_M[u.state]:
                self._apply_venue_state(o, u.state, EventKind.CANCELED if u.state == S.CANCELED else
                                        EventKind.EXPIRED, u.reason or Reason.USER_CANCEL, u.cum_qty)
        elif k == U_CANCEL_REJECT:
            if u.reason == Reason.RATE_LIMIT:
                self._venues[gw.venue].cancel_bucket.on_rate_limited(time.monotonic_ns(), u.retry_after_s)
            self.n["cancel_rejects"] += 1
            if o.state == S.PENDING_CANCEL:
                if u.reason == Reason.UNKNOWN_ORDER:
                    # already gone at the venue (filled or cancelled): ask it which
                    self._set_state(o, S.UNKNOWN, EventKind.CANCEL_REJECT, u.reason)
                    self._spawn(self._resolve_unknown(gw.venue))
                else:
                    self._set_state(o, o.prev_state if o.prev_state in (S.NEW, S.PARTIALLY_FILLED) else S.NEW,
                                    EventKind.CANCEL_REJECT, u.reason)
            self._fail_replacement(o, u.reason)
        elif k == U_AMEND_ACK:
            if o.state == S.PENDING_AMEND:
                o.px = u.px or o.pending_px or o.px
                o.qty = u.qty or o.pending_qty or o.qty
                back = o.prev_state if o.prev_state in (S.NEW, S.PARTIALLY_FILLED) else S.NEW
                if u.state in (S.NEW, S.PARTIALLY_FILLED):
                    back = u.state
                self._set_state(o, back, EventKind.AMENDED)
            elif not TERMINAL_M[o.state]:
                if u.px:
                    o.px = u.px
                if u.qty:
                    o.qty = u.qty
        elif k == U_AMEND_REJECT:
            if u.reason == Reason.RATE_LIMIT:
                self._venues[gw.venue].order_bucket.on_rate_limited(time.monotonic_ns(), u.retry_after_s)
            self.n["amend_rejects"] += 1
            if o.state in (S.PENDING_AMEND, S.PENDING_CANCEL):
                if u.reason == Reason.UNKNOWN_ORDER:
                    self._set_state(o, S.UNKNOWN, EventKind.AMEND_REJECT, u.reason)
                    self._spawn(self._resolve_unknown(gw.venue))
                else:
                    self._set_state(o, o.prev_state if o.prev_state in (S.NEW, S.PARTIALLY_FILLED) else S.NEW,
                                    EventKind.AMEND_REJECT, u.reason)
            self._fail_replacement(o, u.reason)

    def known_state(self, cl: str, st: OrderState) -> bool:
        """For the gateways' pre-parse filter: is `cl` already in state `st` with its venue id known?"""
        o = self.orders.get(cl)
        return o is not None and o.state is st and bool(o.venue_ord_id)

    def _fail_replacement(self, o: Order, reason: Reason) -> None:
        new_cl = self._replacements.pop(o.cl_ord_id, None)
        if new_cl:
            n = self.orders.get(new_cl)
            if n is not None and n.state == S.PENDING_NEW:
                self._set_state(n, S.REJECTED, EventKind.REJECT, reason or Reason.OTHER)

    def _by_venue_id(self, venue: Exchange, venue_ord_id: str) -> Order | None:
        return self._by_vid.get((int(venue), venue_ord_id))

    def _set_vid(self, o: Order, vid: str) -> None:
        o.venue_ord_id = vid
        if vid:
            self._by_vid[(int(o.venue), vid)] = o

    def _purge_terminal(self, now_ns: int) -> int:
        """Forget orders that ended more than `retain_terminal_s` ago (60 s: late fills come within
        seconds), and the oldest ended ones beyond `max_terminal_orders` (100,000: memory stays
        bounded, about 100 MB, whatever the order rate; at 20,000 orders/s that is still 5 s of
        history for late fills)."""
        q = self._terminal_q
        cutoff = now_ns - int(self.retain_terminal_s * 1e9)
        cap = self.max_terminal_orders
        n = 0
        while q and (q[0][0] < cutoff or len(q) > cap):
            _, cl = q.popleft()
            o = self.orders.get(cl)
            if o is not None and TERMINAL_M[o.state]:
                del self.orders[cl]
                if o.venue_ord_id:
                    self._by_vid.pop((int(o.venue), o.venue_ord_id), None)
                self._replacements.pop(cl, None)
                n += 1
        return n

    def on_notice(self, gw: Gateway, u: Update) -> None:
        """The venue announced a shutdown/upgrade: rotate the connection now (reconcile follows)."""
        log.info("%s: %s; reconnecting", gw.venue.key, u.msg)
        gw.drop()

    def on_gateway_down(self, gw: Gateway, reason: str, was_authenticated: bool) -> None:
        v = gw.venue
        st = self._venues.get(v)
        if st is None:
            return
        st.ready = False
        st.reason = reason
        for o in list(self._open.values()):
            if o.venue == v and PENDING_M[o.state]:
                self._set_state(o, S.UNKNOWN, EventKind.UNKNOWN, Reason.TRANSPORT)
        if self._stopping or not self.reconnect or not was_authenticated:
            return
        if st.task is None or st.task.done():
            st.task = asyncio.get_running_loop().create_task(self._reconnect_loop(v))

    async def _reconnect_loop(self, v: Exchange) -> None:
        st = self._venues[v]
        delay = 0.1
        while not self._stopping:
            st.reconnects += 1
            try:
                await self._connect_and_reconcile(v)
                log.info("%s: reconnected and reconciled", v.key)
                return
            except (GatewayError, Exception) as e:
                st.reason = f"reconnecting: {e}"[:200]
                st.gw.drop()
                st.reconciling = False
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    # ---------------------------------------------------------------- reconciliation
    async def reconcile(self, v: Exchange, quiet: bool = False) -> None:
        """Bring every order of venue `v` in line with the venue: open orders (adopting ones we do
        not know), every unresolved order queried by id, then recent fills. Resolves UNKNOWN."""
        st = self._venues[v]
        gw = st.gw
        if not quiet:
            st.reconciling = True
            st.ready = False
        try:
            await self._reconcile_fills(v)  # fills first: then open/closed states agree with filled qty
            venue_open = await gw.open_orders()
            seen = set()
            for vo in venue_open:
                cl = from_wire(v, vo.cl_ord_id)
                seen.add(cl)
                o = self.orders.get(cl)
                if o is None and vo.venue_ord_id:
                    o = self._by_venue_id(v, vo.venue_ord_id)  # adopted from its fills under another id
                if o is None:
                    o = self._adopt(v, cl, vo)
                    if o is None:
                        continue
                seen.add(o.cl_ord_id)
                self._reconcile_order(o, vo)
            mine = [o for o in self._open.values() if o.venue == v and not TERMINAL_M[o.state]
                    and o.cl_ord_id not in seen]
            for o in mine:
                vq: VenueOrder | None
                try:
                    vq = await gw.query_order(to_wire(v, o.cl_ord_id), self._venue_sym(v, o.instr_id))
                except GatewayError as e:
                    log.warning("%s: order query for %s failed (%s); resolving from open orders and fills",
                                v.key, o.cl_ord_id, e)
                    vq = None
                if vq is None:
                    self._resolve_closed(o)
                else:
                    self._reconcile_order(o, vq)
            st.reconciles += 1
            st.last_reconcile_ms = int(time.time() * 1000)
            self.n["reconciles"] += 1
            if self._ctr:
                self.counters.inc(self._ctr["oms_reconciles"])
        finally:
            if not quiet:
                st.reconciling = False

    def _resolve_closed(self, o: Order) -> None:
        """Not open at the venue and not queryable: closed, or never arrived. Fills are already in."""
        if o.filled_qty >= o.qty - _EPS:
            self._set_state(o, S.FILLED, EventKind.RECONCILED)
        elif o.venue_ord_id or o.filled_qty > 0:
            self._set_state(o, S.CANCELED, EventKind.RECONCILED, Reason.NOT_FOUND)
        else:
            self._set_state(o, S.REJECTED, EventKind.RECONCILED, Reason.NOT_FOUND)

    def _adopt(self, v: Exchange, cl: str, vo: VenueOrder) -> Order | None:
        try:
            iid = self.instruments.id_for_venue_symbol(vo.vsym, v)
        except ValueError:
            return None
        o = Order(cl or f"venue{vo.venue_ord_id}", v, iid, self.instruments.name(iid), OrderSide(vo.side or 1),
                  vo.px, vo.qty, TimeInForce.GTC, OrderType.LIMIT, 0, time.perf_counter_ns())
        self._set_vid(o, vo.venue_ord_id)
        # its fills in the lookback window were recovered (and applied) by `_reconcile_fills` before
        # this, under its venue id; older ones are in the restored positions (or before our time)
        o.filled_qty = max(vo.cum_qty, 0.0)
        o.cum_quote = o.filled_qty * vo.avg_px
        o.avg_px = vo.avg_px
        o.acked_ns = o.created_ns
        o.state = S.UNKNOWN
        o.event_seq = self._adopt_seq
        self.orders[o.cl_ord_id] = o
        self.n["adopted"] += 1
        return o

    def _reconcile_order(self, o: Order, vo: VenueOrder) -> None:
        if vo.venue_ord_id and not o.venue_ord_id:
            self._set_vid(o, vo.venue_ord_id)
        if vo.px and o.state != S.PENDING_AMEND:
            o.px = vo.px
        if vo.qty and o.state != S.PENDING_AMEND:
            o.qty = vo.qty
        target = vo.state
        if target == S.UNKNOWN or o.state == target:
            return
        if o.state in (S.UNKNOWN, S.PENDING_NEW):
            if not o.acked_ns:
                o.acked_ns = time.perf_counter_ns()
            self._set_state(o, target, EventKind.RECONCILED, o.reason if TERMINAL_M[target] else Reason.NONE)
            return
        self._apply_venue_state(o, target, EventKind.RECONCILED, Reason.NONE, vo.cum_qty)

    async def _reconcile_fills(self, v: Exchange) -> None:
        """Recent fills over REST, applied once per trade id (FILL records flagged F_REPLAY).

        Start-up (and until it succeeds, per symbol): every symbol the venue trades, back
        `recovery_lookback_s`, so that fills the venue made for an earlier (killed) session's orders
        while nothing was running are recovered: their orders are adopted (queried by venue id,
        else built from the fills) and the fills reach the events ring and the positions, unless
        the restored snapshots already hold them. Later passes: the symbols of known orders, from
        shortly before the last pass that reached every symbol."""
        st = self._venues[v]
        gw = st.gw
        now_ms = gw.now_ms()
        floor = st.recover_since_ms
        recent_since = max(floor, (st.fills_ok_ms or st.started_ms) - 120_000)
        known = {self._venue_sym(v, o.instr_id) for o in self.orders.values() if o.venue == v}
        todo = sorted(set(st.recover_syms) | known)
        first = st.fill_passes == 0
        got: list[Update] = []
        adoptable: set[str] = set()  # trade ids whose unknown order may be adopted
        ok = True
        for vsym in todo:
            recovering = vsym in st.recover_syms
            try:
                fills = await gw.recent_fills(vsym, floor if recovering else recent_since)
            except GatewayError as e:
                log.warning("%s: recent fills for %s unavailable: %s", v.key, vsym, e)
                ok = False
                continue
            if recovering:
                st.recover_syms.discard(vsym)
            for f in fills:
                if f.trade_id and f.fill_qty > 0 and not (f.ts_ms and f.ts_ms < floor):
                    if not f.vsym:
                        f.vsym = vsym
                    got.append(f)
                    # an unknown order is an earlier session's only in the start-up recovery (a
                    # retried one: up to the start); later it is one of ours already purged, or foreign
                    if recovering and (first or f.ts_ms <= st.recover_until_ms):
                        adoptable.add(f.trade_id)
        st.fill_passes += 1
        # orders nobody here knows (an earlier session's): adopt each once, by its venue id
        unknown: dict[str, list[Update]] = {}
        for f in got:
            if f.trade_id in adoptable and self._fill_order(v, f) is None:
                unknown.setdefault(f.venue_ord_id or "c" + f.cl_ord_id, []).append(f)
        adopted: list[tuple[Order, VenueOrder | None]] = []
        for fl in unknown.values():
            if self._fill_order(v, fl[0]) is not None:
                continue  # arrived meanwhile (a push)
            item = await self._adopt_from_fills(v, fl)
            if item is not None:
                adopted.append(item)
        got.sort(key=lambda f: f.ts_ms)  # positions move in the venue's order
        for f in got:
            o = self._fill_order(v, f)
            if o is None or (o.trade_ids and f.trade_id in o.trade_ids):
                continue
            self.n["reconciled_fills"] += 1
            ts = self._persisted.get((int(v), f.trade_id))
            stored = ts is not None and ts <= self._snap_ts.get((int(v), o.instr_id), -1)
            if stored:
                self.n["fills_in_snapshot"] += 1
            self._apply_fill(o, f, replay=True, position=not stored)
        for o, vo in adopted:
            if vo is not None and o.state == S.UNKNOWN:
                self._reconcile_order(o, vo)
            # not queryable: stays UNKNOWN; the open-orders pass (or the next query) settles it
        if ok:
            st.fills_ok_ms = now_ms

    def _fill_order(self, v: Exchange, f: Update) -> Order | None:
        o = self.orders.get(from_wire(v, f.cl_ord_id)) if f.cl_ord_id else None
        if o is not None and f.venue_ord_id and o.venue_ord_id and o.venue_ord_id != f.venue_ord_id:
            o = None  # a reused (foreign) client id: the venue id decides
        if o is None and f.venue_ord_id:
            o = self._by_venue_id(v, f.venue_ord_id)
        return o

    async def _adopt_from_fills(self, v: Exchange, fills: list[Update]) -> tuple[Order, VenueOrder | None] | None:
        """An order of an earlier session known only from its recovered fills: ask the venue for it
        (by venue id, else client id) and track it in the state the venue gives, or, when it cannot
        be queried, as UNKNOWN built from the fills. Its fills are applied by the caller."""
        gw = self._venues[v].gw
        f0 = fills[0]
        try:
            iid = self.instruments.id_for_venue_symbol(f0.vsym, v)
        except ValueError:
            return None
        vo: VenueOrder | None = None
        try:
            if f0.venue_ord_id:
                vo = await gw.query_order_by_id(f0.venue_ord_id, f0.vsym)
            elif f0.cl_ord_id:
                vo = await gw.query_order(to_wire(v, from_wire(v, f0.cl_ord_id)), f0.vsym)
        except Exception as e:
            log.info("%s: order %s of recovered fills not queryable (%s); adopting it from its fills",
                     v.key, f0.venue_ord_id or f0.cl_ord_id, str(e)[:120] or type(e).__name__)
            vo = None
        cl = from_wire(v, (vo.cl_ord_id if vo is not None else "") or f0.cl_ord_id)
        vid = (vo.venue_ord_id if vo is not None else "") or f0.venue_ord_id
        if not cl or cl in self.orders:
            cl = f"venue{vid}"
            if cl in self.orders:
                return None
        q = sum(f.fill_qty for f in fills)
        vwap = sum(f.fill_qty * f.fill_px for f in fills) / q if q > 0 else 0.0
        side = (vo.side if vo is not None else 0) or f0.side or 1
        o = Order(cl, v, iid, self.instruments.name(iid), OrderSide(side),
                  (vo.px if vo is not None else 0.0) or vwap, (vo.qty if vo is not None else 0.0) or q,
                  TimeInForce.GTC, OrderType.LIMIT, 0, time.perf_counter_ns())
        self._set_vid(o, vid)
        if vo is not None and vo.cum_qty > q + _EPS:
            # fills before the lookback window: in the restored positions (or before our time)
            o.filled_qty = vo.cum_qty - q
            o.cum_quote = max(vo.cum_qty * vo.avg_px - q * vwap, 0.0)
            o.avg_px = o.cum_quote / o.filled_qty
        o.acked_ns = o.created_ns
        o.state = S.UNKNOWN
        o.prev_state = S.NEW
        o.event_seq = self._adopt_seq
        self.orders[cl] = o
        self.n["adopted"] += 1
        self.n["adopted_from_fills"] += 1
        return o, vo

    async def _resolve_unknown(self, v: Exchange) -> None:
        """Query each UNKNOWN order of a connected venue (after a timeout or an unknown-outcome reply)."""
        await asyncio.sleep(0.05)
        st = self._venues.get(v)
        if st is None or not st.ready:
            return  # the reconnect path reconciles everything
        try:
            await self._reconcile_fills(v)
        except Exception as e:
            log.warning("%s: fills reconciliation failed: %s", v.key, e)
        for o in [o for o in self._open.values() if o.venue == v and o.state == S.UNKNOWN]:
            try:
                vo = await st.gw.query_order(to_wire(v, o.cl_ord_id), self._venue_sym(v, o.instr_id))
            except Exception as e:
                log.warning("%s: cannot query %s (%s); resolving from open orders and fills", v.key, o.cl_ord_id, e)
                vo = None
                try:
                    if any(from_wire(v, x.cl_ord_id) == o.cl_ord_id for x in await st.gw.open_orders()):
                        continue  # still open: the next push or reconciliation settles it
                except Exception:
                    continue
            if o.state != S.UNKNOWN:
                continue
            if vo is None:
                self._resolve_closed(o)
            else:
                self._reconcile_order(o, vo)

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    # ---------------------------------------------------------------- housekeeping
    async def _housekeeping_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for v, st in self._venues.items():
                try:
                    await st.gw.keepalive_tick()
                except Exception:
                    pass
                if st.deadman_armed and st.ready and now - st.deadman_at >= self.deadman_refresh_s:
                    st.deadman_at = now
                    self._spawn(self._refresh_deadman(v))
            if self._terminal_q:
                self.n["purged"] += self._purge_terminal(time.monotonic_ns())
            if self._ctr:
                self.counters.set(self._ctr["oms_open_orders"], len(self.open_orders()))
                p = self.latency_percentiles((50,))
                self.counters.set(self._ctr["oms_ack_p50_us"], int(p.get("p50", 0)))
                self.counters.touch()

    async def _refresh_deadman(self, v: Exchange) -> None:
        st = self._venues[v]
        try:
            await st.gw.arm_deadman(int(self.deadman_timeout_s))
        except Exception as e:
            log.warning("%s: dead-man refresh failed: %s", v.key, e)

    # ---------------------------------------------------------------- stats
    def latency_percentiles(self, ps=(50, 90, 99, 99.9)) -> dict:
        import numpy as np

        n = min(self._lat_n, _LAT_SLOTS)
        if n == 0:
            return {}
        a = np.frombuffer(self._lat, dtype=np.int64)[:n] / 1000.0
        return {f"p{p:g}": float(np.percentile(a, p)) for p in ps} | {"n": n, "max": float(a.max())}

    LAT_BUCKETS_US = (25, 50, 100, 150, 250, 500, 1000, 2500, 5000, 10000)

    def latency_histogram(self) -> dict:
        """Order-to-ack counts per bucket (upper bounds in us; "inf" for the rest)."""
        import numpy as np

        n = min(self._lat_n, _LAT_SLOTS)
        a = np.frombuffer(self._lat, dtype=np.int64)[:n] / 1000.0
        edges = np.array((0, *self.LAT_BUCKETS_US, np.inf))
        counts, _ = np.histogram(a, bins=edges)
        return {(f"le_{int(b)}" if b != np.inf else "inf"): int(c) for b, c in zip(edges[1:], counts, strict=True)}

    def reset_latency(self) -> None:
        self._lat_n = 0

    def stats(self) -> dict:
        by_state: Counter = Counter()
        by_venue: dict[str, Counter] = {}
        for o in self.orders.values():
            by_state[o.state.name] += 1
            by_venue.setdefault(o.venue.key, Counter())[o.state.name] += 1
        return {"orders": len(self.orders), "by_state": dict(by_state),
                "by_venue": {k: dict(v) for k, v in by_venue.items()}, "counts": dict(self.n),
                "rejects_by_reason": dict(self.rejects_by_reason),
                "not_accepted_by_reason": dict(self.not_accepted_by_reason),
                "ack_latency_us": self.latency_percentiles(), "ack_latency_hist": self.latency_histogram(),
                "venues": self.venue_status(),
                "positions": self.positions.totals()}
