"""Backtest report: summary.json, fills.csv, PNG plots (matplotlib Agg) and report.md.

Runs after the replay, never during it. Must not change any result: it only reads them.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from common.enums import Exchange


def write_report(bt, summary: dict, out_dir: str, plots: bool = True) -> list[str]:
    """Write the report files into out_dir; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    p = os.path.join(out_dir, "summary.json")
    with open(p, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    written.append(p)
    p = os.path.join(out_dir, "fills.csv")
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["local_ts_ns", "venue_ts_ns", "venue", "symbol", "side", "qty", "px", "fee", "liquidity",
                    "cl_ord_id"])
        for t, tv, v, i, side, qty, px, fee, liq, cid in bt.oms.fills:
            w.writerow([t, tv, Exchange(v).key, bt.instruments.name(i), "buy" if side > 0 else "sell", repr(qty),
                        repr(px), repr(fee), {1: "maker", 2: "taker"}.get(liq, "unknown"), cid])
    written.append(p)
    pngs = plot_all(bt, out_dir) if plots else []
    written.extend(pngs)
    p = os.path.join(out_dir, "report.md")
    with open(p, "w") as f:
        f.write(render_md(summary, [os.path.basename(x) for x in pngs]))
    written.append(p)
    return written


def render_md(s: dict, pngs: list[str]) -> str:
    lines = ["# Backtest report", ""]
    src = s.get("data", {})
    if src:
        lines.append(f"Data: {src.get('source')} {src.get('path', '')} "
                     f"({s['records']} records, {s['span_s']:.1f} s); strategy `{s.get('strategy', '')}`; "
                     f"seed {s.get('seed', '')}.")
        lines.append("")
    lines += ["| metric | value |", "| --- | --- |"]
    for k in ("pnl", "fees", "volume_quote", "fills", "fill_ratio", "max_position", "max_drawdown",
              "sharpe_per_minute", "orders_sent", "cancels_sent", "amends_sent"):
        lines.append(f"| {k} | {s.get(k)} |")
    lines.append(f"| rejects | {json.dumps(s.get('rejects_by_reason', {}))} |")
    lines.append(f"| final position | {json.dumps(s.get('final_position_by_symbol', {}))} |")
    lines.append("")
    lat = s.get("latency", {})
    if lat:
        lines.append("Latency model (us): " + ", ".join(
            f"{leg} p50 {lat[leg]['p50']} / p99 {lat[leg]['p99']} ({lat[leg]['kind']})"
            for leg in ("feed_us", "order_us", "ack_us") if leg in lat) + ".")
        lines.append("")
    titles = {"mid_quotes_fills.png": "Mid price, our quotes and fills", "inventory.png": "Inventory",
              "pnl.png": "Cumulative PnL (marked to mid, after fees)", "latency.png": "Latency distribution used"}
    for p in pngs:
        lines += [f"## {titles.get(p, p)}", "", f"![{p}]({p})", ""]
    return "\n".join(lines)


def plot_all(bt, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    ni = bt.ni
    t0 = int(bt.L[0]) if bt.n else 0
    samples = bt.samples
    fills = bt.oms.fills
    # the key to show: most fills, else the first key with a quote
    counts: dict[int, int] = {}
    for f in fills:
        k = f[2] * ni + f[3]
        counts[k] = counts.get(k, 0) + 1
    key = max(counts, key=lambda k: (counts[k], -k)) if counts else (bt.keys[0] if bt.keys else 0)
    v, i = divmod(key, ni)
    label = f"{Exchange(v).key} {bt.instruments.name(i)}" if 0 < v < 4 else str(key)
    q = [x for x in bt.quotes if x[1] == key and x[2] > 0]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    if q:
        tq = (np.array([x[0] for x in q]) - t0) / 1e9
        ax.plot(tq, [x[2] for x in q], lw=0.8, color="black", label="mid")
        bb = np.array([x[3] for x in q])
        ba = np.array([x[4] for x in q])
        ax.plot(tq, np.where(bb > 0, bb, np.nan), lw=0.7, color="tab:green", label="our bid")
        ax.plot(tq, np.where(ba > 0, ba, np.nan), lw=0.7, color="tab:red", label="our ask")
    fk = [f for f in fills if f[2] * ni + f[3] == key]
    if fk:
        tf = (np.array([f[0] for f in fk]) - t0) / 1e9
        px = np.array([f[6] for f in fk])
        side = np.array([f[4] for f in fk])
        ax.scatter(tf[side > 0], px[side > 0], marker="^", color="tab:green", s=22, label="buy fill", zorder=3)
        ax.scatter(tf[side < 0], px[side < 0], marker="v", color="tab:red", s=22, label="sell fill", zorder=3)
    ax.set_title(f"Mid, our quotes and fills: {label}")
    ax.set_xlabel("seconds")
    ax.legend(loc="best", fontsize=8)
    out.append(_save(fig, out_dir, "mid_quotes_fills.png", plt))
    fig, ax = plt.subplots(figsize=(11, 3.5))
    if samples:
        ts = (np.array([s[0] for s in samples]) - t0) / 1e9
        pos = np.array([s[3] for s in samples])
        for j, k in enumerate(bt.keys):
            if pos.size and np.any(pos[:, j] != 0):
                vv, ii = divmod(k, ni)
                ax.step(ts, pos[:, j], where="post", lw=0.9, label=f"{Exchange(vv).key} {bt.instruments.name(ii)}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Inventory (base units)")
    ax.set_xlabel("seconds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    out.append(_save(fig, out_dir, "inventory.png", plt))
    fig, ax = plt.subplots(figsize=(11, 3.5))
    if samples:
        ts = (np.array([s[0] for s in samples]) - t0) / 1e9
        ax.plot(ts, [s[1] for s in samples], lw=0.9, label="PnL (after fees)")
        ax.plot(ts, [-s[2] for s in samples], lw=0.7, ls="--", label="fees paid (negative)")
        ax.legend(loc="best", fontsize=8)
    ax.set_title("Cumulative PnL, marked to mid (quote currency)")
    ax.set_xlabel("seconds")
    out.append(_save(fig, out_dir, "pnl.png", plt))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, xs in bt.latency.plot_samples_us().items():
        if np.ptp(xs) == 0:
            ax.axvline(xs[0], lw=1.5, label=f"{name} {xs[0]:.0f} us (constant)",
                       color={"feed": "tab:blue", "order": "tab:orange", "ack": "tab:green"}[name])
        else:
            ax.hist(xs, bins=80, histtype="step", lw=1.0, label=name, density=True)
    ax.set_title("Latency distribution used (microseconds)")
    ax.set_xlabel("us")
    ax.legend(loc="best", fontsize=8)
    out.append(_save(fig, out_dir, "latency.png", plt))
    return out


def _save(fig, out_dir: str, name: str, plt) -> str:
    p = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(p, dpi=90)
    plt.close(fig)
    return p
