"""Example strategy: join the best bid on the venue whose bid is lowest when another venue's
best bid is higher by `edge_bps` (a simple cross-venue lean), and cancel when the edge fades.

Run it in the strategy process instead of the built-in market maker:

    python -m strategy.host --strategy examples.cross_venue_skew:CrossVenueBid

It shows the whole API: `on_start` (context, symbols), `on_market_data` (the reused `md`
view and the host's per-venue state), `on_order_event`, `on_request_denied`, `on_stop`.
"""

from __future__ import annotations

from common.enums import OrderSide
from strategy.api import Strategy, event_kind
from strategy.orders import OrderRequest


class CrossVenueBid(Strategy):
    name = "cross_venue_bid"

    def __init__(self, cfg=None, edge_bps: float = 3.0, qty: float = 0.001) -> None:
        self.edge = edge_bps * 1e-4
        self.qty = qty
        self.working: dict[tuple[int, int], str] = {}  # (venue, instr) -> cl_ord_id of our bid
        self.pending: dict[tuple[int, int], OrderRequest] = {}
        self.filled_qty = 0.0

    def on_start(self, ctx):
        self.ctx = ctx

    def on_market_data(self, md):
        if not md.is_quote or not md.book_valid:
            return None
        v, i = md.venue_id, md.instr_id
        best_elsewhere = max((md.best_bid(o) for o in self.ctx.venues if o != v), default=0.0)
        key = (v, i)
        lean = best_elsewhere > md.bid_px * (1.0 + self.edge)
        if lean and key not in self.working and key not in self.pending:
            spec = self.ctx.spec(v, i)
            if spec is None:
                return None
            px = spec.round_px(md.bid_px, OrderSide.BUY)  # join the bid, never cross
            req = OrderRequest.new_limit(self.ctx.symbol(v, i), OrderSide.BUY, spec.round_qty(self.qty), px,
                                         post_only=True)
            req.instr_id = i
            self.pending[key] = req
            return [req]
        if not lean and key in self.working:
            return [OrderRequest.cancel(self.ctx.symbol(v, i), self.working[key])]
        return None

    def on_order_event(self, ev):
        o = ev.order
        key = (int(o.venue), o.instr_id)
        req = self.pending.get(key)
        if req is not None and req.cl_ord_id == o.cl_ord_id:
            del self.pending[key]
            self.working[key] = o.cl_ord_id
        if o.state.is_terminal and self.working.get(key) == o.cl_ord_id:
            del self.working[key]
        if event_kind(ev) == "FILL":
            self.filled_qty += ev.fill_qty  # callbacks never block: count here, report elsewhere
        return None

    def on_request_denied(self, req, reason_code, reason):
        for key, r in list(self.pending.items()):
            if r is req:
                del self.pending[key]

    def on_stop(self):
        self.working.clear()
