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

_ACKED = {OrderState.NEW, OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.PENDING_CANCEL,
          OrderState.CANCELED, OrderState.EXPIRED, OrderState.PENDING_AMEND}


def _params(strategy) -> dict:
    cfg = getattr(strategy, "cfg", None)
    if cfg is not None and dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return {}


def _decision_latency(host) -> dict:
    n = min(getattr(host, "lat_n", 0), len(getattr(host, "lat", ())))
    if not n:
        return {}
    a = np.frombuffer(host.lat, dtype=np.int64)[:n] / 1000.0
    return {"decision_p50": float(np.percentile(a, 50)), "decision_p99": float(np.percentile(a, 99)),
            "decision_n": int(n)}


def build_status(host, ready: bool) -> dict:
    oms = host.oms
    instruments = host.instruments
    orders = list(getattr(oms, "orders", {}).values())
    by_venue: dict[str, dict] = {}
    sent = acked = rejected = unknown = filled_orders = 0
    for o in orders:
        v = by_venue.setdefault(o.venue.key, {"sent": 0, "acked": 0, "rejected": 0, "fills": 0, "pnl": 0.0})
        v["sent"] += 1
        sent += 1
        if o.state == OrderState.REJECTED:
            v["rejected"] += 1
            rejected += 1
        elif o.state == OrderState.UNKNOWN:
            unknown += 1
        elif o.state in _ACKED:
            v["acked"] += 1
            acked += 1
        if o.filled_qty > 0:
            filled_orders += 1
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
            by_venue[venue]["fills"] += p.fills
    answered = sent - unknown - sum(1 for o in orders if o.state == OrderState.PENDING_NEW)
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
    return {
        "pid": os.getpid(), "ts": time.time(), "ready": ready,
        "strategies": [{"name": getattr(strat, "name", type(strat).__name__), "class": type(strat).__name__,
                        "state": rms.get("state", "UNKNOWN"), "state_reason": rms.get("state_reason", ""),
                        "parameters": _params(strat), "positions": positions, "open_orders": open_orders,
                        "pnl": {"realized": realized, "unrealized": unrealized, "fees": fees,
                                "total": realized + unrealized - fees}}],
        "orders": {"sent": sent, "acked": acked, "rejected": rejected, "unknown": unknown,
                   "filled_orders": filled_orders, "fills": int(n.get("fills", 0)),
                   "success_rate": (acked / answered) if answered > 0 else None,
                   "fill_rate": (filled_orders / acked) if acked else None,
                   "by_state": dict(sum_states(orders)), "by_venue": by_venue,
                   "rejects_by_reason": dict(getattr(oms, "rejects_by_reason", {})),
                   "ack_latency_us": ack_lat, "open": len(open_orders)},
        "positions": positions,
        "pnl": {"realized": realized, "unrealized": unrealized, "fees": fees, "total": realized + unrealized - fees},
        "latency_us": lat,
        "risk": rms,
        "venues": oms.venue_status() if hasattr(oms, "venue_status") else {},
    }


def sum_states(orders) -> dict:
    out: dict[str, int] = {}
    for o in orders:
        out[o.state.name] = out.get(o.state.name, 0) + 1
    return out


class StatusWriter:
    """Called from the host's housekeeping; writes at most every `every_s` unless forced."""

    def __init__(self, data_dir: str, prefix: str, every_s: float = 1.0) -> None:
        self.path = status_path(data_dir, prefix, "strategy")
        self.every_s = every_s
        self._last = 0.0
        self.errors = 0

    def maybe_write(self, host, ready: bool, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        try:
            write_status(self.path, build_status(host, ready))
        except Exception:
            self.errors += 1  # status is for humans and monitors; never take the hot process down
