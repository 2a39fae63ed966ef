"""Component health and alert rules, evaluated from what `monitor.sources` reads.

Health is degraded (HTTP 503) when a feed is stale, the strategy is down, the database
is unreachable, or trading is halted. Alerts fire on the same signals plus reject-rate
spikes and order-to-ack p99 above a threshold; each transition is logged and, when a
webhook URL is configured, POSTed as JSON.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("monitor.alerts")


@dataclass
class HealthInputs:
    venues: list[str]
    counters: dict[str, dict]
    control: dict | None
    persist: dict | None
    stale_feed_s: float = 5.0
    expect_persist: bool = True
    supervisor: dict | None = None  # the launcher's process table (status file)


def _feed_component(venue: str, blk: dict | None, stale_s: float, now_mono: int) -> dict:
    if blk is None:
        return {"status": "down", "detail": "feed process has no counters block"}
    if not blk["alive"]:
        return {"status": "down", "detail": f"feed process pid {blk['pid']} is gone"}
    c = blk["counters"]
    ages = {}
    for label, v in c.items():
        if label.startswith("last_recv_ns:"):
            ages[label.split(":", 1)[1]] = (now_mono - v) / 1e9 if v else None
    stale = [s for s, a in ages.items() if a is None or a > stale_s]
    out = {"status": "stale" if stale else "ok", "book_age_s": {s: (round(a, 3) if a is not None else None)
                                                               for s, a in ages.items()},
           "messages": c.get("messages", 0), "resyncs": c.get("resyncs", 0),
           "reconnects": c.get("reconnects", 0), "gaps": c.get("gaps", 0)}
    if stale:
        out["detail"] = f"no data for {', '.join(stale)} in {stale_s:g}s"
    return out


def evaluate(inp: HealthInputs) -> dict:
    now_mono = time.monotonic_ns()
    comps: dict[str, dict] = {}
    for v in inp.venues:
        comps[f"feed_{v}"] = _feed_component(v, inp.counters.get(f"feed-{v}"), inp.stale_feed_s, now_mono)
    strat = inp.counters.get("strategy")
    if strat is None:
        comps["strategy"] = {"status": "down", "detail": "strategy process has no counters block"}
    elif not strat["alive"]:
        comps["strategy"] = {"status": "down", "detail": f"strategy process pid {strat['pid']} is gone"}
    else:
        comps["strategy"] = {"status": "ok", "pid": strat["pid"]}
    ctl = inp.control
    if ctl is None:
        comps["trading"] = {"status": "unknown", "detail": "no control segment"}
    else:
        state = {1: "ACTIVE", 2: "REDUCING", 3: "HALTED"}.get(ctl.get("state_code", 0), "UNKNOWN")
        comps["trading"] = {"status": "halted" if state == "HALTED" else "ok", "state": state,
                            "reason": ctl.get("reason", "")}
    if inp.expect_persist:
        p = inp.persist
        if p is None or not p.get("alive"):
            comps["database"] = {"status": "down", "detail": "persist process is not running"}
        elif not p.get("db_up"):
            comps["database"] = {"status": "down", "detail": "database unreachable; events go to the journal",
                                 "journal_pending": p.get("journal_pending", 0)}
        else:
            comps["database"] = {"status": "ok", "lag": p.get("lag", 0), "redis_up": p.get("redis_up", False)}
    if inp.supervisor:
        comps["supervisor"] = {"status": "ok" if not inp.supervisor.get("failed") else "down",
                               "processes": inp.supervisor.get("processes", {})}
    degraded = [k for k, v in comps.items() if v["status"] not in ("ok", "unknown")]
    return {"status": "degraded" if degraded else "ok", "degraded": degraded, "components": comps}


@dataclass
class AlertRule:
    name: str
    firing: bool = False
    since: float = 0.0
    detail: str = ""


@dataclass
class AlertEngine:
    reject_rate_alert: float = 0.2
    latency_p99_alert_us: float = 5000.0
    webhook_url: str = ""
    rules: dict[str, AlertRule] = field(default_factory=dict)
    _last_orders: int = 0
    _last_rejects: int = 0
    sent: int = 0
    send_errors: int = 0

    def evaluate(self, health: dict, counters: dict[str, dict]) -> list[dict]:
        """Update every rule; return the transitions (fired or resolved) of this round."""
        comps = health["components"]
        checks: dict[str, tuple[bool, str]] = {}
        stale = [k for k, v in comps.items() if k.startswith("feed_") and v["status"] != "ok"]
        checks["stale_feed"] = (bool(stale), ", ".join(f"{k}: {comps[k].get('detail', '')}" for k in stale))
        tr = comps.get("trading", {})
        checks["halt"] = (tr.get("status") == "halted", tr.get("reason", ""))
        db = comps.get("database")
        checks["database_down"] = (db is not None and db["status"] != "ok", (db or {}).get("detail", ""))
        checks["strategy_down"] = (comps.get("strategy", {}).get("status") == "down",
                                   comps.get("strategy", {}).get("detail", ""))
        oms = (counters.get("strategy") or {}).get("counters", {})
        orders = oms.get("oms_sent", oms.get("host.orders_sent", 0))
        rejects = oms.get("oms_rejects", 0)
        d_orders, d_rej = orders - self._last_orders, rejects - self._last_rejects
        self._last_orders, self._last_rejects = orders, rejects
        rate = d_rej / d_orders if d_orders >= 20 else 0.0
        checks["reject_rate"] = (rate > self.reject_rate_alert,
                                 f"{rate:.1%} of the last {d_orders} orders rejected")
        p99 = oms.get("oms_ack_p99_us", 0)
        checks["latency_p99"] = (p99 > self.latency_p99_alert_us,
                                 f"order-to-ack p99 {p99} us > {self.latency_p99_alert_us:g} us")
        now = time.time()
        transitions = []
        for name, (bad, detail) in checks.items():
            rule = self.rules.setdefault(name, AlertRule(name))
            if bad and not rule.firing:
                rule.firing, rule.since, rule.detail = True, now, detail
                transitions.append({"alert": name, "state": "firing", "detail": detail, "ts": now})
                log.warning("ALERT %s firing: %s", name, detail)
            elif not bad and rule.firing:
                rule.firing, rule.detail = False, ""
                transitions.append({"alert": name, "state": "resolved", "detail": detail, "ts": now})
                log.info("ALERT %s resolved", name)
            elif bad:
                rule.detail = detail
        return transitions

    def active(self) -> list[dict]:
        return [{"alert": r.name, "since": r.since, "detail": r.detail} for r in self.rules.values() if r.firing]
