"""Test doubles for the strategy tests (no tests here): a fake OMS with the OrderManager
contract's methods, market-data writers and a context builder. Never a stand-in for the
simulator: integration tests use the real one."""

from __future__ import annotations

import time

from common.enums import Exchange, OrderSide, OrderState, TimeInForce
from common.instruments import Instruments
from ringbuf.records import (
    BOOK_LEVEL_STRUCT,
    KIND_BOOK_LEVEL,
    KIND_BOOK_RESET,
    KIND_QUOTE,
    KIND_TRADE,
    QUOTE_STRUCT,
    TRADE_STRUCT,
)
from strategy.orders import RequestKind

B, OX, G = int(Exchange.BINANCE), int(Exchange.OKX), int(Exchange.GATE)


def instruments() -> Instruments:
    ins = Instruments(["BTC-USDT", "ETH-USDT"])
    ins.add(Exchange.BINANCE, "BTC-USDT", tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)
    ins.add(Exchange.OKX, "BTC-USDT", tick_size=0.1, lot_size=0.00000001, min_qty=0.00001)
    ins.add(Exchange.GATE, "BTC-USDT", tick_size=0.1, lot_size=0.000001, min_qty=0.00001, min_notional=3.0)
    ins.add(Exchange.BINANCE, "ETH-USDT", tick_size=0.01, lot_size=0.0001, min_qty=0.0001, min_notional=5.0)
    ins.add(Exchange.OKX, "ETH-USDT", tick_size=0.01, lot_size=0.000001, min_qty=0.001)
    ins.add(Exchange.GATE, "ETH-USDT", tick_size=0.01, lot_size=0.0001, min_qty=0.001, min_notional=3.0)
    return ins


class FakeOrder:
    def __init__(self, cid, venue, instr_id, side, px, qty, tif):
        self.cl_ord_id = cid
        self.venue = Exchange(int(venue))
        self.instr_id = instr_id
        self.symbol = ""
        self.side = OrderSide(side)
        self.px = px
        self.qty = qty
        self.filled_qty = 0.0
        self.avg_px = 0.0
        self.state = OrderState.PENDING_NEW
        self.tif = tif
        self.pending_px = 0.0
        self.pending_qty = 0.0


class FakeEvent:
    def __init__(self, order, kind, fill_qty=0.0, fill_px=0.0, fee=0.0):
        self.order = order
        self.kind = kind
        self.fill_qty = fill_qty
        self.fill_px = fill_px
        self.fee = fee
        self.liquidity = 1
        self.trade_id = ""
        self.reason = 0


class FakePositions:
    def __init__(self):
        self._p = []

    def all(self):
        return self._p


class FakeOMS:
    """OrderManager contract: submit / cancel_all / open_orders / order / venue_ready /
    add_listener / start / stop. Venue answers are driven by the test (or `auto_ack`)."""

    def __init__(self, auto_ack: bool = False, ready: bool = True):
        self.auto_ack = auto_ack
        self.ready = {B: ready, OX: ready, G: ready}
        self.orders: dict[str, FakeOrder] = {}
        self.requests = []
        self.listeners = []
        self.last_reject_reason = ""
        self.positions = FakePositions()
        self.n = 0
        self.started = False
        self.stopped = False
        self.refuse_next = False
        self.replace_on_amend = False
        self.replaced = {}

    # contract
    async def start(self, venues=None):
        self.started = True

    async def stop(self, cancel_all=True):
        if cancel_all:
            await self.cancel_all()
        self.stopped = True

    def add_listener(self, fn):
        self.listeners.append(fn)

    def venue_ready(self, venue) -> bool:
        return self.ready[int(venue)]

    def venue_status(self):
        return {Exchange(v).key: r for v, r in self.ready.items()}

    def order(self, cid):
        return self.orders.get(cid)

    def open_orders(self, venue=None, instr_id=None):
        return [o for o in self.orders.values()
                if o.state not in (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED)
                and (venue is None or int(o.venue) == int(venue))
                and (instr_id is None or o.instr_id == instr_id)]

    def stats(self):
        return {"orders": len(self.orders)}

    def submit(self, req) -> str:
        self.requests.append(req)
        if self.refuse_next:
            self.refuse_next = False
            self.last_reject_reason = "refused by test"
            return ""
        if req.kind == RequestKind.NEW:
            if not self.ready[int(req.venue)]:
                self.last_reject_reason = "venue down"
                return ""
            self.n += 1
            cid = f"c{self.n}"
            o = FakeOrder(cid, req.venue, req.instr_id, req.side, req.px, req.qty, req.tif)
            self.orders[cid] = o
            if self.auto_ack:
                self.ack(cid)
            return cid
        if req.kind == RequestKind.CANCEL:
            o = self.orders.get(req.target_cl_ord_id)
            if o is None or o.state in (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED):
                self.last_reject_reason = "unknown order"
                return ""
            o.state = OrderState.PENDING_CANCEL
            if self.auto_ack:
                self.cancel_ack(o.cl_ord_id)
            return o.cl_ord_id
        if req.kind == RequestKind.AMEND:
            o = self.orders.get(req.target_cl_ord_id)
            if o is None:
                self.last_reject_reason = "unknown order"
                return ""
            if self.replace_on_amend:  # Binance-style cancelReplace: a new order, a new id
                self.n += 1
                cid = f"c{self.n}"
                new = FakeOrder(cid, o.venue, o.instr_id, o.side, req.px or o.px, req.qty or o.qty - o.filled_qty,
                                o.tif)
                self.orders[cid] = new
                o.state = OrderState.PENDING_CANCEL
                self.replaced[o.cl_ord_id] = cid
                return cid
            o.state = OrderState.PENDING_AMEND
            o.pending_px, o.pending_qty = req.px, req.qty
            if self.auto_ack:
                self.amend_ack(o.cl_ord_id)
            return o.cl_ord_id
        return "x"

    async def cancel_all(self, venue=None):
        for o in self.open_orders(venue):
            o.state = OrderState.CANCELED
            self._emit(o, "CANCELED")

    # venue answers
    def _emit(self, o, kind, **kw):
        ev = FakeEvent(o, kind, **kw)
        for fn in self.listeners:
            fn(ev)
        return ev

    def ack(self, cid):
        o = self.orders[cid]
        o.state = OrderState.NEW
        return self._emit(o, "ACK")

    def reject(self, cid):
        o = self.orders[cid]
        o.state = OrderState.REJECTED
        return self._emit(o, "REJECT")

    def cancel_ack(self, cid):
        o = self.orders[cid]
        o.state = OrderState.CANCELED
        return self._emit(o, "CANCELED")

    def amend_ack(self, cid):
        o = self.orders[cid]
        o.px = o.pending_px or o.px
        o.qty = (o.pending_qty + o.filled_qty) if o.pending_qty else o.qty
        o.state = OrderState.NEW
        return self._emit(o, "AMENDED")

    def fill(self, cid, qty, px=None):
        o = self.orders[cid]
        px = o.px if px is None else px
        o.filled_qty += qty
        o.avg_px = px
        o.state = OrderState.FILLED if o.filled_qty >= o.qty - 1e-12 else OrderState.PARTIALLY_FILLED
        return self._emit(o, "FILL", fill_qty=qty, fill_px=px)

    def new_requests(self, kind=None):
        return [r for r in self.requests if kind is None or r.kind == kind]


def write_quote(ring, venue, instr, bid, ask, bid_qty=1.0, ask_qty=1.0, flags=0, seq=0):
    ring.write(QUOTE_STRUCT, KIND_QUOTE, flags, venue, 0, instr, 0, time.time_ns(), time.monotonic_ns(), seq,
               bid, bid_qty, ask, ask_qty)


def write_trade(ring, venue, instr, px, qty, side=1):
    ring.write(TRADE_STRUCT, KIND_TRADE, 0, venue, side, instr, 0, time.time_ns(), time.monotonic_ns(), 1,
               px, qty, 0, 0)


def write_level(ring, venue, instr, side, px, qty, flags=0, kind=KIND_BOOK_LEVEL):
    ring.write(BOOK_LEVEL_STRUCT, kind, flags, venue, side, instr, 0, time.time_ns(), time.monotonic_ns(), 1,
               px, qty, 0, 0)


def write_reset(ring, venue, instr, flags=8):
    write_level(ring, venue, instr, 0, 0.0, 0.0, flags=flags, kind=KIND_BOOK_RESET)


__all__ = ["FakeOMS", "TimeInForce"]
