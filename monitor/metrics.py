"""Prometheus text exposition (format 0.0.4) built from the shared-memory counters.

Every counter of every process block becomes `hft_<name>{role="<role>"}`; a label of
the form `name:key` (e.g. `last_recv_ns:BTC-USDT`) becomes `hft_<name>{role=..,key=".."}`.
Rings give positions, lag, lost and spilled; the control segment the trading state;
psutil the RSS of each process. Latency histograms are exported where the processes
publish bucket counters (`<name>_bucket:le_<us>`), and as p50/p99 gauges otherwise.
"""

from __future__ import annotations

import re

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(label: str) -> str:
    name = _BAD.sub("_", label).strip("_").lower()
    if not name or name[0].isdigit():
        name = "m_" + name
    return "hft_" + name


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(d: dict) -> str:
    if not d:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in d.items()) + "}"


class Exposition:
    def __init__(self) -> None:
        self._series: dict[str, list[tuple[dict, float]]] = {}
        self._types: dict[str, str] = {}
        self._help: dict[str, str] = {}

    def add(self, name: str, value: float, labels: dict | None = None, typ: str = "gauge", help: str = "") -> None:
        self._series.setdefault(name, []).append((labels or {}, value))
        self._types.setdefault(name, typ)
        if help:
            self._help.setdefault(name, help)

    def render(self) -> str:
        lines = []
        for name in sorted(self._series):
            if name in self._help:
                lines.append(f"# HELP {name} {self._help[name]}")
            lines.append(f"# TYPE {name} {self._types[name]}")
            for labels, value in self._series[name]:
                if isinstance(value, float) and value != value:
                    v = "NaN"
                else:
                    v = repr(float(value)) if isinstance(value, float) else str(int(value))
                lines.append(f"{name}{_labels(labels)} {v}")
        return "\n".join(lines) + "\n"


TRADING_STATES = {1: "ACTIVE", 2: "REDUCING", 3: "HALTED"}


def build(counters: dict[str, dict], rings: dict[str, dict], control: dict | None,
          rss: dict[int, int], extra: dict | None = None) -> str:
    ex = Exposition()
    for role, blk in sorted(counters.items()):
        ex.add("hft_process_up", 1 if blk["alive"] else 0, {"role": role},
               help="1 when the process that owns the counters block is alive")
        if blk.get("age_s") is not None:
            ex.add("hft_process_counters_age_seconds", round(blk["age_s"], 3), {"role": role},
                   help="seconds since the process last updated its counters")
        for label, value in blk["counters"].items():
            base, _, key = label.partition(":")
            labels = {"role": role}
            if key:
                labels["key"] = key
            m = re.match(r"(.+)_bucket$", base)
            if m and key.startswith("le_"):
                ex.add(metric_name(m.group(1)) + "_bucket", value,
                       {"role": role, "le": key[3:].replace("inf", "+Inf")}, typ="histogram")
                continue
            ex.add(metric_name(base), value, labels)
        pid = blk["pid"]
        if pid in rss:
            ex.add("hft_process_rss_bytes", rss[pid], {"role": role}, help="resident set size")
    for name, r in sorted(rings.items()):
        if "error" in r:
            continue
        lab = {"ring": name, "mode": r["mode"]}
        ex.add("hft_ring_tail_position", r["tail_position"], lab, typ="counter",
               help="records published by the producer")
        ex.add("hft_ring_head_position", r["head_position"], lab, typ="counter",
               help="records consumed")
        ex.add("hft_ring_lag", r["lag"], lab, help="records published and not yet consumed")
        ex.add("hft_ring_lost_total", r["lost"], lab, typ="counter",
               help="records a lossy consumer lost to overruns")
        ex.add("hft_ring_spilled_total", r["spilled"], lab, typ="counter",
               help="records a lossless producer spilled to its journal")
    if control is not None:
        st = control.get("state_code", 0)
        for code, name in TRADING_STATES.items():
            ex.add("hft_trading_state", 1 if st == code else 0, {"state": name},
                   help="1 for the current trading state")
        ex.add("hft_kill_switch_total", control.get("kills", 0), typ="counter")
    if rss:
        ex.add("hft_rss_bytes_total", sum(rss.values()), help="summed RSS of every process of the system")
    for k, v in (extra or {}).items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            ex.add(metric_name(k), v)
        elif isinstance(v, bool):
            ex.add(metric_name(k), 1 if v else 0)
    return ex.render()
