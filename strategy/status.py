"""The strategy process's status file: what /strategies/status, /orders/stats, the launcher's
live view and `run.py --summary` read. Written atomically about once a second and at exit,
off the hot path (from the host's housekeeping timer). Never contains secrets.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from common.enums import Exchange, OrderState
from monitor.sources import status_path, write_status
from oms.state import EventKind

_PENDING, _ACK, _FILL, _REJECT, _UNKNOWN = (EventKind.PENDING, EventKind.ACK, EventKind.FILL, EventKind.REJECT,
                                            EventKind.UNKNOWN)
_PENDING_NEW = OrderState.PENDING_NEW


def _params(strategy) -> dict:
    cfg = getattr(strategy, "cfg", None)
    if cfg is not None and dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return {}


def _decision_latency(host) -> dict:
    n = min(getattr(host, "lat_n", 0), len(getattr(host, "lat", ())))
    if not n:
        return {}
    a = np.frombuffer(host.lat, dtype=np.int64)[:n] / 1000.0
    return {"decision_p50": float(np.percentile(a, 50)), "decision_p99": float(np.percentile(a, 99)),
            "decision_n": int(n)}


class OrderCounts:
    """Per-venue order counts kept from the OMS's events as they happen, so writing the status
    never walks the OMS's order table (which would stall the hot loop as it grows). Called for
    every order event: the OMS's own kinds are matched by identity, anything else by name."""

    def __init__(self) -> None:
        self.by_venue: dict[str, dict] = {}
        self._of_venue: dict = {}  # venue (enum or int) -> its dict in by_venue

    def venue(self, key: str) -> dict:
        d = self.by_venue.get(key)
        if d is None:
            d = self.by_venue[key] = {"sent": 0, "acked": 0, "rejected": 0, "unknown": 0, "fills": 0,
                                      "filled_orders": 0, "pnl": 0.0}
        return d

    def on_event(self, ev) -> None:
        k = ev.kind
        o = ev.order
        d = self._of_venue.get(o.venue)
        if d is None:
            d = self._of_venue[o.venue] = self.venue(o.venue.key)
        if k is _PENDING:
            if o.state == _PENDING_NEW:
                d["sent"] += 1
        elif k is _ACK:
            d["acked"] += 1
        elif k is _FILL:
            d["fills"] += 1
            if o.filled_qty <= ev.fill_qty + 1e-12:  # first fill of this order
                d["filled_orders"] += 1
        elif k is _REJECT:
            d["rejected"] += 1
        elif k is _UNKNOWN:
            d["unknown"] += 1
        elif type(k) is not EventKind:  # a string kind (another OMS, a test double)
            self._on_named(getattr(k, "name", str(k)), ev, d)

    @staticmethod
    def _on_named(kind: str, ev, d: dict) -> None:
        o = ev.order
        if kind == "PENDING" and o.state == OrderState.PENDING_NEW:
            d["sent"] += 1
        elif kind == "ACK":
            d["acked"] += 1
        elif kind == "REJECT":
            d["rejected"] += 1
        elif kind == "UNKNOWN":
            d["unknown"] += 1
        elif kind == "FILL":
            d["fills"] += 1
            if o.filled_qty <= ev.fill_qty + 1e-12:  # first fill of this order
                d["filled_orders"] += 1


def build_status(host, ready: bool, counts: OrderCounts) -> dict:
    oms = host.oms
    instruments = host.instruments
    by_venue = {k: dict(v) for k, v in counts.by_venue.items()}
    tot = {k: sum(v[k] for v in by_venue.values()) for k in ("sent", "acked", "rejected", "unknown", "fills",
                                                               "filled_orders")}
    n = getattr(oms, "n", {})
    positions = []
    realized = unrealized = fees = 0.0
    for p in oms.positions.all():
        venue = Exchange(int(p.venue)).key
        mark = float(host.state.mid(p.venue, p.instr_id)) if hasattr(host.state, "mid") else p.mark_px
        upnl = p.unrealized_pnl(mark) if mark == mark and mark > 0 else p.unrealized_pnl()
        positions.append({"venue": venue, "symbol": instruments.name(p.instr_id), "qty": p.qty,
                          "avg_px": p.avg_px, "realized_pnl": p.realized_pnl, "unrealized_pnl": upnl,
                          "fees": p.fees, "fills": p.fills, "volume": p.volume})
        realized += p.realized_pnl
        unrealized += upnl
        fees += p.fees
        if venue in by_venue:
            by_venue[venue]["pnl"] += p.realized_pnl + upnl - p.fees
    answered = tot["acked"] + tot["rejected"]
    ack_lat = oms.latency_percentiles() if hasattr(oms, "latency_percentiles") else {}
    open_orders = [{"cl_ord_id": o.cl_ord_id, "venue": o.venue.key, "symbol": instruments.name(o.instr_id),
                    "side": "BUY" if int(o.side) > 0 else "SELL", "px": o.px, "qty": o.qty,
                    "filled_qty": o.filled_qty, "state": o.state.name}
                   for o in oms.open_orders()]
    lat = _decision_latency(host)
    if ack_lat:
        lat.update({"ack_p50": ack_lat.get("p50", 0.0), "ack_p99": ack_lat.get("p99", 0.0),
                    "ack_p999": ack_lat.get("p99.9", 0.0), "ack_n": ack_lat.get("n", 0)})
    rms = host.rms.summary() if hasattr(host.rms, "summary") else {}
    strat = host.strategy
    pnl = {"realized": realized, "unrealized": unrealized, "fees": fees, "total": realized + unrealized - fees}
    return {
        "pid": os.getpid(), "ts": time.time(), "ready": ready,
        "strategies": [{"name": getattr(strat, "name", type(strat).__name__), "class": type(strat).__name__,
                        "state": rms.get("state", "UNKNOWN"), "state_reason": rms.get("state_reason", ""),
                        "parameters": _params(strat), "positions": positions, "open_orders": open_orders,
                        "pnl": pnl}],
        "orders": {**tot, "success_rate": (tot["acked"] / answered) if answered else None,
                   "fill_rate": (tot["filled_orders"] / tot["acked"]) if tot["acked"] else None,
                   "by_venue": by_venue, "counts": {k: int(v) for k, v in dict(n).items()},
                   "rejects_by_reason": dict(getattr(oms, "rejects_by_reason", {})),
                   "ack_latency_us": ack_lat, "open": len(open_orders)},
        "positions": positions,
        "pnl": pnl,
        "latency_us": lat,
        "risk": rms,
        "venues": oms.venue_status() if hasattr(oms, "venue_status") else {},
    }


class StatusWriter:
    """Called from the host's housekeeping; writes at most every `every_s` unless forced."""

    def __init__(self, data_dir: str, prefix: str, every_s: float = 1.0) -> None:
        self.path = status_path(data_dir, prefix, "strategy")
        self.every_s = every_s
        self._last = 0.0
        self.errors = 0
        self.counts = OrderCounts()
        self._attached = None

    def attach(self, oms) -> None:
        if self._attached is not oms and hasattr(oms, "add_listener"):
            oms.add_listener(self.counts.on_event)
            self._attached = oms

    def maybe_write(self, host, ready: bool, force: bool = False) -> None:
        self.attach(host.oms)
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        try:
            write_status(self.path, build_status(host, ready, self.counts))
        except Exception:
            self.errors += 1  # status is for humans and monitors; never take the hot process down
