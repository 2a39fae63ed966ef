"""Control endpoint (HTTP JSON on port-base+3): faults, book views, orders, trigger mode, probe, stats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from sim.faults import FaultError
from sim.server import App, Request, Response

if TYPE_CHECKING:
    from sim.core import Simulator


def _json(obj: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(obj))


def _err(status: int, msg: str) -> Response:
    return _json({"error": msg}, status)


class ControlApp(App):
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def handle_http(self, req: Request) -> Response:
        try:
            return self._route(req)
        except FaultError as e:
            return _err(400, str(e))
        except (ValueError, TypeError, KeyError) as e:
            return _err(400, f"bad request: {e}")

    def _body(self, req: Request) -> dict:
        if not req.body:
            return {}
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            raise ValueError("body is not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def _venue(self, req: Request) -> Any:
        v = req.args.get("venue", "")
        if v not in self.sim.venues:
            raise ValueError(f"venue must be one of {sorted(self.sim.venues)}")
        return self.sim.venues[v]

    def _route(self, req: Request) -> Response:
        sim = self.sim
        m, p = req.method, req.path.rstrip("/") or "/"
        if p == "/health":
            return _json({"ok": True})
        if p == "/urls":
            return _json(sim.urls)
        if p == "/faults":
            if m == "GET":
                return _json(sim.faults.describe())
            if m == "POST":
                b = self._body(req)
                params = b.get("params") or {}
                if not isinstance(params, dict):
                    raise ValueError("params must be an object")
                return _json(sim.faults.add(str(b.get("venue", "")), str(b.get("name", "")), params,
                                            b.get("every_s")))
            if m == "DELETE":
                return _json({"cleared": sim.faults.clear(req.args.get("venue") or None)})
        if p == "/faults/clear" and m == "POST":
            return _json({"cleared": sim.faults.clear(self._body(req).get("venue"))})
        if p == "/book" and m == "GET":
            app = self._venue(req)
            sym = req.args.get("symbol", "")
            if sym not in app.books:
                inst = app.instrument(sym)
                if inst is None:
                    return _err(404, f"unknown symbol {sym!r}")
                sym = inst.symbol
            depth = max(1, min(int(req.args.get("depth", "20")), 5000))
            return _json(app.book_view(sym, depth))
        if p == "/md/pause" and m == "POST":
            sim.paused = True
            for app in sim.venues.values():
                for c in app.md_conns():
                    c.flush()
            return _json({"paused": True, "steps": sim.steps})
        if p == "/md/resume" and m == "POST":
            sim.paused = False
            return _json({"paused": False})
        if p == "/orders" and m == "GET":
            app = self._venue(req)
            key = req.args.get("api_key", "sim-key")
            sym = req.args.get("symbol") or None
            return _json([{"order_id": str(o.oid), "client_order_id": o.client_id, "symbol": o.inst.symbol,
                           "side": "buy" if o.side > 0 else "sell", "price": o.inst.px(o.ticks),
                           "qty": o.inst.qty(o.lots), "filled_qty": o.inst.qty(o.filled_lots), "status": o.status,
                           "venue_view": app.order_view(o)} for o in app.engine.open_orders(key, sym)])
        if p == "/balances" and m == "GET":
            app = self._venue(req)
            return _json(app.engine.balances(req.args.get("api_key", "sim-key")))
        if p == "/fills" and m == "GET":
            app = self._venue(req)
            key = req.args.get("api_key", "sim-key")
            return _json([{"trade_id": f.trade_id, "order_id": str(f.order.oid),
                           "client_order_id": f.order.client_id, "symbol": f.order.inst.symbol,
                           "side": "buy" if f.order.side > 0 else "sell",
                           "price": f.order.inst.px(f.ticks), "qty": f.order.inst.qty(f.lots),
                           "maker": f.maker, "fee": f.fee, "fee_asset": f.fee_asset, "ts_ms": f.ts_ms}
                          for f in app.engine.recent_fills(key)])
        if p == "/trigger" and m == "POST":
            b = self._body(req)
            sym = b.get("symbol")
            if sym is not None and sym not in sim.market.symbols:
                raise ValueError(f"unknown symbol {sym!r}")
            interval = int(b.get("interval_ms", 500))
            if b.get("on", True) and interval < 1:
                raise ValueError("interval_ms must be >= 1")
            sim.set_trigger(bool(b.get("on", True)), interval, float(b.get("jump_bps", 50.0)), sym,
                            bool(b.get("load", False)))
            return _json({"trigger_ms": sim.trigger_ms, "jump_bps": sim.trigger_jump_bps, "load": sim.trigger_load})
        if p == "/probe" and m == "GET":
            return _json(sim.probe_snapshot(req.args.get("clear") in ("1", "true")))
        if p == "/stats" and m == "GET":
            return _json(sim.stats())
        if p == "/rate" and m == "POST":
            rate = float(self._body(req).get("rate", sim.rate))
            if not 0 <= rate <= 10_000_000:
                raise ValueError("rate out of range")
            sim.rate = rate
            return _json({"rate": sim.rate})
        if p == "/reset" and m == "POST":
            sim.reset()
            return _json({"reset": True})
        return _err(404, f"no route {m} {p}")
