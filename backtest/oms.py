"""The backtest's stand-in for the live OrderManager: the subset of its interface the strategy
host uses (submit, open_orders, order, venue_ready, listeners), with requests carried to the
simulated venue after the order latency and replies applied after the ack latency.

Orders and events are the OMS's own types (oms.state.Order / OrderEvent), so a strategy sees
in a backtest exactly the objects it sees live. Must not decide anything about trading.
"""

from __future__ import annotations

import heapq

from common.enums import Exchange, OrderSide, OrderState, OrderType, TimeInForce
from oms.state import EventKind, Order, OrderEvent
from oms.state import Reason as OmsReason
from strategy.orders import OrderRequest, RequestKind

S = OrderState
_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK", TimeInForce.POST_ONLY: "GTC"}
_REASON = {"post_only_would_take": OmsReason.POST_ONLY_CROSS, "unknown_order": OmsReason.UNKNOWN_ORDER,
           "invalid_tick_lot": OmsReason.INVALID_TICK_LOT, "insufficient_balance": OmsReason.INSUFFICIENT_BALANCE,
           "duplicate_client_id": OmsReason.DUPLICATE_ID, "fok_not_filled": OmsReason.IOC_UNFILLED,
           "ioc_remainder": OmsReason.IOC_UNFILLED, "no_liquidity": OmsReason.IOC_UNFILLED,
           "unknown_instrument": OmsReason.UNKNOWN_INSTRUMENT, "invalid_amend": OmsReason.BAD_REQUEST}
_EPS = 1e-12

# heap entry kinds
ARRIVE = 0  # a request reaches the venue
REPLY = 1  # a venue reply reaches us


class BacktestOMS:
    def __init__(self, clock, latency, venues: dict, instruments) -> None:
        self.clock = clock  # the run's virtual local clock (ns)
        self.latency = latency
        self.venues = venues  # venue id -> VenueSim
        self.instruments = instruments
        self.orders: dict[str, Order] = {}
        self.open: dict[str, Order] = {}
        self.listeners: list = []
        self.heap: list = []
        self._seq = 0
        self._ids = 0
        self._last_reply_ns = {v: 0 for v in venues}
        self._last_arrive_ns = {v: 0 for v in venues}
        self.last_reject_reason = ""
        self.stats = {"sent_new": 0, "sent_cancel": 0, "sent_amend": 0, "acks": 0, "rejects": 0, "fills": 0,
                      "cancels": 0, "cancel_rejects": 0, "amends": 0, "amend_rejects": 0, "expired": 0}
        self.rejects_by_reason: dict[str, int] = {}
        self.fills: list[tuple] = []  # (local ns, venue ns, venue, instr, side, qty, px, fee, liquidity, cl_ord_id)
        self.order_latency_ns: list[int] = []

    # ---- what the host calls ------------------------------------------------------
    def add_listener(self, fn) -> None:
        self.listeners.append(fn)

    def venue_ready(self, venue) -> bool:
        return int(venue) in self.venues

    def order(self, cl_ord_id: str) -> Order | None:
        return self.orders.get(cl_ord_id)

    def open_orders(self, venue=None, instr_id=None) -> list[Order]:
        v = int(venue) if venue is not None else None
        return [o for o in self.open.values()
                if (v is None or int(o.venue) == v) and (instr_id is None or o.instr_id == instr_id)]

    async def cancel_all(self) -> None:
        self.cancel_everything()

    def submit(self, req: OrderRequest) -> str:
        k = req.kind
        if k == RequestKind.NEW:
            return self._new(req)
        if k == RequestKind.CANCEL:
            return self._cancel(req.target_cl_ord_id)
        if k == RequestKind.AMEND:
            return self._amend(req)
        if k == RequestKind.CANCEL_ALL:
            n = self.cancel_everything(None if req.venue is None else int(req.venue))
            return "*" if n else ""
        return self._refuse(f"unknown request kind {k!r}")

    def cancel_everything(self, venue: int | None = None) -> int:
        n = 0
        for o in list(self.open.values()):
            if (venue is None or int(o.venue) == venue) and o.state in (S.NEW, S.PARTIALLY_FILLED, S.PENDING_NEW,
                                                                         S.PENDING_AMEND):
                if self._cancel(o.cl_ord_id):
                    n += 1
        return n

    # ---- requests -------------------------------------------------------------------
    def _refuse(self, why: str) -> str:
        self.last_reject_reason = why
        return ""

    def _push(self, when: int, kind: int, venue: int, payload) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (when, self._seq, kind, venue, payload))

    def _arrive_ns(self, v: int, now: int) -> int:
        # one connection per venue: requests arrive in the order they were sent
        t = max(now + self.latency.next_order_ns(), self._last_arrive_ns[v])
        self._last_arrive_ns[v] = t
        return t

    def _new(self, req: OrderRequest) -> str:
        v = int(req.venue) if req.venue is not None else 0
        if v not in self.venues:
            return self._refuse(f"venue {v} has no market data in this backtest")
        iid = req.instr_id
        if not iid and req.symbol is not None:
            iid = req.instr_id = self.instruments.id_for(req.symbol.canonical)
        self._ids += 1
        cid = req.cl_ord_id or f"bt{self._ids:08d}"
        if cid in self.orders:
            return self._refuse(f"duplicate client order id {cid}")
        now = self.clock()
        o = Order(cid, Exchange(v), iid, self.instruments.name(iid), OrderSide(req.side), req.px, req.qty,
                  TimeInForce(req.tif), OrderType(req.ord_type), req.strategy_id, now)
        o.sent_ns = now
        self.orders[cid] = o
        self.open[cid] = o
        self.stats["sent_new"] += 1
        self._push(self._arrive_ns(v, now), ARRIVE, v, ("new", cid, iid, int(req.side), req.px, req.qty,
                                                        _TIF.get(req.tif, "GTC"), req.tif == TimeInForce.POST_ONLY,
                                                        req.ord_type == OrderType.MARKET))
        return cid

    def _cancel(self, cid: str) -> str:
        o = self.orders.get(cid)
        if o is None:
            return self._refuse(f"unknown order {cid!r}")
        if o.state.is_terminal:
            return self._refuse(f"order {cid} is {o.state.name}")
        if o.state == S.PENDING_CANCEL:
            return cid  # already being cancelled
        o.prev_state = o.state
        o.state = S.PENDING_CANCEL
        v = int(o.venue)
        self.stats["sent_cancel"] += 1
        now = self.clock()
        self._push(self._arrive_ns(v, now), ARRIVE, v, ("cancel", cid))
        return cid

    def _amend(self, req: OrderRequest) -> str:
        cid = req.target_cl_ord_id
        o = self.orders.get(cid)
        if o is None:
            return self._refuse(f"unknown order {cid!r}")
        if o.state not in (S.NEW, S.PARTIALLY_FILLED):
            return self._refuse(f"order {cid} is {o.state.name}, cannot amend")
        new_qty = req.qty if req.qty > 0 else o.qty
        if new_qty <= o.filled_qty + _EPS:
            return self._refuse("amended quantity is not above the filled quantity")
        o.prev_state = o.state
        o.state = S.PENDING_AMEND
        o.pending_px = req.px if req.px > 0 else o.px
        o.pending_qty = new_qty
        v = int(o.venue)
        self.stats["sent_amend"] += 1
        now = self.clock()
        self._push(self._arrive_ns(v, now), ARRIVE, v, ("amend", cid, o.pending_px, new_qty))
        return cid

    # ---- venue side ----------------------------------------------------------------------
    def arrive(self, venue_ns: int, v: int, payload, upto: int) -> None:
        """A request reaches venue v at venue_ns (records before index `upto` have happened)."""
        vs = self.venues[v]
        out: list = []
        op = payload[0]
        if op == "new":
            _, cid, iid, side, px, qty, tif, post_only, market = payload
            vs.place(cid, iid, side, px, qty, tif, post_only, market, upto, venue_ns, out)
        elif op == "cancel":
            vs.cancel(payload[1], venue_ns, out)
        else:
            vs.amend(payload[1], payload[2], payload[3], upto, venue_ns, out)
        self.replies(v, out)

    def replies(self, v: int, out: list) -> None:
        for r in out:
            t = max(r.venue_ns + self.latency.next_ack_ns(), self._last_reply_ns[v])
            self._last_reply_ns[v] = t
            self._push(t, REPLY, v, r)

    # ---- our side: a reply arrives --------------------------------------------------------
    def deliver(self, r, local_ns: int) -> None:
        o = self.orders.get(r.cl_ord_id)
        if o is None:
            return
        k = r.kind
        ev = None
        st = self.stats
        if k == "ACK":
            st["acks"] += 1
            o.acked_ns = local_ns
            self.order_latency_ns.append(local_ns - o.sent_ns)
            if o.state == S.PENDING_NEW:
                o.state = S.NEW
            ev = OrderEvent(o, EventKind.ACK, ts_ns=local_ns)
        elif k == "REJECT":
            st["rejects"] += 1
            self.rejects_by_reason[r.reason] = self.rejects_by_reason.get(r.reason, 0) + 1
            o.state = S.REJECTED
            o.reason = _REASON.get(r.reason, OmsReason.OTHER)
            ev = OrderEvent(o, EventKind.REJECT, reason=o.reason, ts_ns=local_ns)
        elif k == "FILL":
            st["fills"] += 1
            q = r.fill_qty
            tot = o.filled_qty + q
            o.avg_px = (o.avg_px * o.filled_qty + r.fill_px * q) / tot if tot > 0 else 0.0
            o.filled_qty = tot
            o.cum_quote += q * r.fill_px
            o.fees += r.fee
            if o.filled_qty >= o.qty - 1e-9 * max(1.0, o.qty):
                o.state = S.FILLED
            elif o.state in (S.PENDING_NEW, S.NEW):
                o.state = S.PARTIALLY_FILLED
            self.fills.append((local_ns, r.venue_ns, int(o.venue), o.instr_id, int(o.side), q, r.fill_px, r.fee,
                               r.liquidity, o.cl_ord_id))
            ev = OrderEvent(o, EventKind.FILL, q, r.fill_px, r.fee, r.liquidity, r.trade_id, ts_ns=local_ns)
        elif k == "CANCELED":
            st["cancels"] += 1
            o.state = S.CANCELED
            ev = OrderEvent(o, EventKind.CANCELED, ts_ns=local_ns)
        elif k == "EXPIRED":
            st["expired"] += 1
            o.state = S.EXPIRED
            ev = OrderEvent(o, EventKind.EXPIRED, ts_ns=local_ns)
        elif k == "AMENDED":
            st["amends"] += 1
            o.px = r.px or o.pending_px or o.px
            o.qty = r.qty or o.pending_qty or o.qty
            if o.state == S.PENDING_AMEND:
                o.state = S.PARTIALLY_FILLED if o.filled_qty > 0 else S.NEW
            ev = OrderEvent(o, EventKind.AMENDED, ts_ns=local_ns)
        elif k == "CANCEL_REJECT":
            st["cancel_rejects"] += 1
            if o.state == S.PENDING_CANCEL:
                o.state = o.prev_state if o.prev_state in (S.NEW, S.PARTIALLY_FILLED) else S.NEW
            ev = OrderEvent(o, EventKind.CANCEL_REJECT, reason=OmsReason.UNKNOWN_ORDER, ts_ns=local_ns)
        elif k == "AMEND_REJECT":
            st["amend_rejects"] += 1
            self.rejects_by_reason[f"amend_{r.reason}"] = self.rejects_by_reason.get(f"amend_{r.reason}", 0) + 1
            if o.state == S.PENDING_AMEND:
                o.state = o.prev_state if o.prev_state in (S.NEW, S.PARTIALLY_FILLED) else S.NEW
            ev = OrderEvent(o, EventKind.AMEND_REJECT, reason=_REASON.get(r.reason, OmsReason.OTHER),
                            ts_ns=local_ns)
        if o.state.is_terminal:
            self.open.pop(o.cl_ord_id, None)
        if ev is not None:
            for fn in self.listeners:
                fn(ev)
