"""Order throughput through the whole system: strategy -> risk -> OMS -> simulator, acknowledged.

    python -m benches.throughput [--quick] [--duration S] [--window N] [--cpus 0,1] [--json FILE]
                                 [--no-persist]

`python run.py` (the real launcher: feed, strategy, persist with PostgreSQL, monitor) runs the
`Flood` strategy below against a simulator this harness owns (`--sim-urls`). Flood keeps
`--window` post-only orders per venue cycling: place far from the touch, cancel on the ack,
place again on the cancel's answer, as fast as risk and the OMS allow (their rate limits raised
by config). Rates are measured over the steady middle of the run: orders from Flood's counters
(every place and cancel the venue answered; the OMS may carry several in one venue batch
request), venue requests from the simulator's own counters. The summed RSS is the peak of the
sum over the launcher's process tree, sampled every 0.5 s, with the simulator reported apart;
the summed PSS beside it counts shared pages once. JSON keys: orders_per_s (orders acknowledged
per second, places and cancels), new_orders_per_s, success_rate (accepted / answered orders),
rss_mb_total, pss_mb_total, requests_acked_per_s, request_success_rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common.enums import OrderSide
from strategy.api import Strategy, event_kind
from strategy.orders import OrderRequest, Symbol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENUES = ("binance", "okx", "gate")
SYMBOL = "BTC-USDT"


class Flood(Strategy):
    """Keeps `window` orders per venue cycling through place -> ack -> cancel -> answer -> place,
    3 % from the touch (post-only, never fills). Writes its counters to data_dir/flood.json
    once a second (from the timer, off the order path)."""

    name = "flood"
    timer_ms = 50.0

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.window = int(os.environ.get("FLOOD_WINDOW", "64"))
        self.path = os.path.join(cfg.system.data_dir, "flood.json")
        self.deficit: dict[int, int] = {}
        self.syms: dict[int, Symbol] = {}
        self.specs: dict = {}
        self.iid = 0
        self.side = 1
        self.n = {"new_sent": 0, "new_acked": 0, "new_rejected": 0, "cancel_sent": 0, "cancel_acked": 0,
                  "cancel_rejected": 0, "denied": 0}
        self.denied_by: dict[str, int] = {}
        self._last_write = 0

    def on_start(self, ctx):
        self.ctx = ctx
        self.prof = None
        if os.environ.get("FLOOD_PROFILE"):
            import cProfile

            self.prof = cProfile.Profile()  # from here on the whole strategy thread: host, risk, OMS
            self.prof.enable()
        self.iid = ctx.instruments.id_for(SYMBOL)
        out = []
        for v in ctx.venues:
            self.syms[v] = ctx.symbol(v, self.iid)
            self.deficit[v] = 0
            for _ in range(self.window):
                r = self._new(v)
                if r is not None:
                    out.append(r)
                else:
                    self.deficit[v] += 1
        return out

    def _new(self, v: int) -> OrderRequest | None:
        st = self.ctx.state
        k = v * st.n_instr + self.iid
        bid, ask = st.bid_px_f[k], st.ask_px_f[k]
        if not (0.0 < bid < ask):
            return None
        self.side = -self.side
        self.n["new_sent"] += 1
        spec = self.specs.get(v)
        if spec is None:
            spec = self.specs[v] = self.ctx.spec(v, self.iid)
        if self.side > 0:
            r = OrderRequest.new_limit(self.syms[v], OrderSide.BUY, 0.001, spec.round_px(bid * 0.97, 1),
                                       post_only=True)
        else:
            r = OrderRequest.new_limit(self.syms[v], OrderSide.SELL, 0.001, spec.round_px(ask * 1.03, -1),
                                       post_only=True)
        r.instr_id = self.iid
        return r

    def _cancel(self, order) -> OrderRequest:
        self.n["cancel_sent"] += 1
        r = OrderRequest.cancel(self.syms[int(order.venue)], order.cl_ord_id)
        r.instr_id = self.iid
        return r

    def on_order_event(self, ev):
        kind = event_kind(ev)
        o = ev.order
        v = int(o.venue)
        st = int(o.state)
        if kind == "ACK" and st in (2, 3):  # NEW / PARTIALLY_FILLED: rests, cancel it
            self.n["new_acked"] += 1
            return [self._cancel(o)]
        if kind in ("CANCELED", "EXPIRED"):
            self.n["cancel_acked"] += 1
        elif kind == "REJECT":
            self.n["new_rejected"] += 1
        elif kind == "CANCEL_REJECT":
            self.n["cancel_rejected"] += 1
        else:
            return None
        r = self._new(v)
        if r is None:
            self.deficit[v] += 1
            return None
        return [r]

    def on_stop(self) -> None:
        if getattr(self, "prof", None) is not None:
            self.prof.disable()
            self.prof.dump_stats(os.path.join(self.cfg.system.data_dir, "flood.prof"))

    def on_request_denied(self, req, reason_code, reason):
        self.n["denied"] += 1
        self.denied_by[reason] = self.denied_by.get(reason, 0) + 1
        v = int(req.venue or 0)
        if v in self.deficit:
            self.deficit[v] += 1

    def on_timer(self, now_ns):
        out = []
        for v, d in self.deficit.items():
            while d > 0:
                r = self._new(v)
                if r is None:
                    break
                out.append(r)
                d -= 1
            self.deficit[v] = d
        if now_ns - self._last_write > 1_000_000_000:
            self._last_write = now_ns
            try:
                tmp = self.path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({**self.n, "denied_by": self.denied_by, "mono_ns": now_ns}, f)
                os.replace(tmp, self.path)
            except OSError:
                pass
        return out or None


CONFIG = """
[system]
log_level = "WARNING"
data_dir = "{data_dir}"
shm_prefix = "{prefix}"

[persist]
enabled = {persist}
record_market_data = false

[monitor]
enabled = true

[strategy.market_making]
symbols = ["{symbol}"]
venues = ["binance", "okx", "gate"]

[risk]
max_orders_per_s = 1000000.0
max_open_orders = 100000
max_position = 1000.0
max_order_notional = 1000000.0
max_venue_notional = 100000000.0
max_total_notional = 100000000.0
price_band_bps = 500.0
max_reject_rate = 1.0
stale_md_ms = 600000.0
"""

VENUE_CFG = """
[exchanges.{v}]
api_key = "sim-key"
secret_key = "sim-secret"
passphrase = "{pp}"
order_rate = 1000000.0
order_burst = 1000000
cancel_rate = 1000000.0
cancel_burst = 1000000
"""


def tree_rss_mb(pid: int) -> dict[int, float]:
    import psutil

    out = {}
    try:
        p = psutil.Process(pid)
        for q in [p, *p.children(recursive=True)]:
            try:
                out[q.pid] = q.memory_info().rss / 2**20
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return out


def tree_pss_mb(pid: int) -> float:
    """Summed proportional set size of a process tree (MB): shared pages (the interpreter,
    numpy's libraries, the rings) divided among the processes that map them, so the sum is what
    the system really holds; summed RSS counts every shared page once per process."""
    import psutil

    total = 0.0
    try:
        p = psutil.Process(pid)
        for q in [p, *p.children(recursive=True)]:
            try:
                total += getattr(q.memory_full_info(), "pss", 0) / 2**20
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def cpu_s(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tck, int(fields[12]) / tck
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns, wait_ns, _ = f.read().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


def sim_counts(stats: dict) -> tuple[int, int, int]:
    rec = acked = rej = 0
    for v in VENUES:
        s = stats["venues"][v]
        rec += s["orders_received"]
        acked += s["orders_acked"]
        rej += s["orders_rejected"]
    return rec, acked, rej


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.throughput", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (under 45 s)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of flooding (default 60, quick 12)")
    ap.add_argument("--window", type=int, default=64, help="orders cycling per venue")
    ap.add_argument("--cpus", default="", help="passed to run.py --cpus (default: its own choice)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-persist", action="store_true", help="run without the persist process and database")
    ap.add_argument("--profile", action="store_true", help="cProfile the strategy process; print its top functions")
    a = ap.parse_args(argv)
    duration = a.duration if a.duration is not None else (12.0 if a.quick else 60.0)
    if duration <= 4 or a.window < 1:
        print("throughput: --duration must be more than 4 s and --window at least 1", file=sys.stderr)
        return 2

    from benches.tick_to_trade import machine
    from sim.testing import run_sim

    info = machine()
    print(f"throughput  {info['date']}  {info['cpu']}  {info['cores']} cores  load avg {info['load_avg']}")
    work = tempfile.mkdtemp(prefix="thr-")
    # the embedded database lives on between runs (a fresh initdb costs seconds); data/ is not committed
    data_dir = os.path.join(ROOT, "data", "bench-throughput")
    os.makedirs(data_dir, exist_ok=True)
    prefix = f"thr{os.getpid() % 100000}"
    cfg_path = os.path.join(work, "config.toml")
    text = CONFIG.format(data_dir=data_dir, prefix=prefix, persist="false" if a.no_persist else "true",
                         symbol=SYMBOL)
    for v in VENUES:
        text += VENUE_CFG.format(v=v, pp="sim-pass" if v == "okx" else "")
    with open(cfg_path, "w") as f:
        f.write(text)
    flood_path = os.path.join(data_dir, "flood.json")
    if os.path.exists(flood_path):
        os.unlink(flood_path)
    summary_path = os.path.join(work, "summary.json")
    t_start = time.monotonic()
    result: dict = {"machine": info, "command": "python -m benches.throughput " + " ".join(argv or sys.argv[1:]),
                    "window_per_venue": a.window, "persist": not a.no_persist}
    with run_sim(symbols=[SYMBOL, "ETH-USDT"], seed=1, rate=1000) as sim:
        # where run.py would put its own simulator: the cores left over, else the feed core
        avail = sorted(os.sched_getaffinity(0))
        chosen = [int(c) for c in a.cpus.split(",") if c.strip().isdigit()] if a.cpus else \
            (avail[1:] if len(avail) >= 3 else avail)
        sim_cpus = (set(avail) - set(chosen)) or {chosen[0]}
        try:
            os.sched_setaffinity(sim.proc.pid, sim_cpus)
        except OSError:
            pass
        urls_path = os.path.join(work, "sim-urls.json")
        with open(urls_path, "w") as f:
            json.dump(sim.urls, f)
        cmd = [sys.executable, "run.py", "--config", cfg_path, "--sim-urls", urls_path, "--prefix", prefix,
               "--strategy", "benches.throughput:Flood", "--no-tui", "--monitor-port", "0",
               "--summary", summary_path, "--status-every", "1000"]
        if a.cpus:
            cmd += ["--cpus", a.cpus]
        env = dict(os.environ, FLOOD_WINDOW=str(a.window))
        prof_path = os.path.join(data_dir, "flood.prof")
        if a.profile:
            env["FLOOD_PROFILE"] = "1"
            if os.path.exists(prof_path):
                os.unlink(prof_path)
        log = open(os.path.join(work, "run.log"), "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # trading starts when Flood writes its first counters
            deadline = time.monotonic() + 120
            while not read_json(flood_path):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    with open(os.path.join(work, "run.log")) as f:
                        tail = f.read()[-1500:]
                    print(f"throughput: the system did not start trading:\n{tail}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            startup_s = time.monotonic() - t_start
            warm = min(3.0, duration * 0.2)
            time.sleep(warm)
            s0, f0, t0 = sim.control.stats(), read_json(flood_path), time.monotonic()
            c0 = {p: cpu_s(p) for p in tree_rss_mb(proc.pid)} | {sim.proc.pid: cpu_s(sim.proc.pid)}
            u0 = {p: cpu_split(p) for p in c0}
            w0 = {p: schedstat(p) for p in c0}
            peak_total = peak_sim = peak_pss = 0.0
            per_proc: dict[int, float] = {}
            end = t0 + duration - warm - 1.0
            while time.monotonic() < end:
                time.sleep(0.5)
                rss = tree_rss_mb(proc.pid)
                peak_total = max(peak_total, sum(rss.values()))
                peak_pss = max(peak_pss, tree_pss_mb(proc.pid))
                for p, r in rss.items():
                    per_proc[p] = max(per_proc.get(p, 0.0), r)
                peak_sim = max(peak_sim, tree_rss_mb(sim.proc.pid).get(sim.proc.pid, 0.0))
            s1, t1 = sim.control.stats(), time.monotonic()
            time.sleep(1.1)
            f1 = read_json(flood_path)
            c1 = {p: cpu_s(p) for p in c0}
            u1 = {p: cpu_split(p) for p in c0}
            w1 = {p: schedstat(p) for p in c0}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    try:  # the launcher's own layout lines (which process on which core, what shares one)
        with open(os.path.join(work, "run.log")) as f:
            lines = f.read().splitlines()
        i = lines.index("process layout:")
        layout = [ln for ln in lines[i + 1:i + 8] if re.match(r"  (feed|strategy|persist|note)", ln)]
    except (OSError, ValueError):
        layout = []
    print("process layout (run.py):")
    for ln in layout:
        print(ln)
    print(f"  simulator (this harness's)  cpu {','.join(map(str, sorted(sim_cpus)))} (where run.py puts its own)")
    result["layout"] = layout
    dt = t1 - t0
    r0, a0, j0 = sim_counts(s0)
    r1, a1, j1 = sim_counts(s1)
    received, acked, rejected = r1 - r0, a1 - a0, j1 - j0
    summ = read_json(summary_path)
    import psutil  # noqa: F401  (names for the CPU table)

    names = {}
    for role, p in (summ.get("processes") or {}).items():
        for pid in p.get("pids", []):
            names[pid] = role
    names[proc.pid] = "launcher"
    names[sim.proc.pid] = "simulator"
    cpu = {names.get(p, f"pid {p}"): round((c1.get(p, 0) - c0[p]) / dt, 2) for p in c0}
    waiting = {names.get(p, f"pid {p}"): round((w1[p][1] - w0[p][1]) / dt, 2) for p in c0}
    # the strategy process (host + risk + OMS, one thread): CPU per acknowledged request, user / kernel
    strat = [p for p in c0 if names.get(p) == "strategy"]
    per_req = None
    n_orders = (int(f1.get("new_acked", 0)) + int(f1.get("cancel_acked", 0)) - int(f0.get("new_acked", 0))
                - int(f0.get("cancel_acked", 0))) * dt / max((f1.get("mono_ns", 0) - f0.get("mono_ns", 0)) / 1e9, 1e-9)
    if strat and n_orders > 0:
        p = strat[0]
        per_req = {"total": round((c1[p] - c0[p]) / n_orders * 1e6, 1),
                   "user": round((u1[p][0] - u0[p][0]) / n_orders * 1e6, 1),
                   "sys": round((u1[p][1] - u0[p][1]) / n_orders * 1e6, 1)}
    # orders (places and cancels) from Flood's counters, over their own timestamps: a venue batch
    # request (OKX batch-orders, Gate cancel_ids) carries several orders, so the simulator's request
    # counters are requests, not orders
    def fd(k: str) -> int:
        return int(f1.get(k, 0)) - int(f0.get(k, 0))

    fdt = (f1.get("mono_ns", 0) - f0.get("mono_ns", 0)) / 1e9 or dt
    accepted = fd("new_acked") + fd("cancel_acked")
    refused = fd("new_rejected") + fd("cancel_rejected")
    result.update({
        "orders_per_s": round(accepted / fdt),
        "new_orders_per_s": round(fd("new_acked") / fdt),
        "success_rate": round(accepted / (accepted + refused), 5) if accepted + refused else None,
        "requests_acked_per_s": round(acked / dt),
        "requests_received_per_s": round(received / dt),
        "request_success_rate": round(acked / received, 5) if received else None,
        "rejected": rejected,
        "rss_mb_total": round(peak_total, 1),
        "pss_mb_total": round(peak_pss, 1),
        "rss_mb_by_process": {names.get(p, f"pid {p}"): round(r, 1) for p, r in per_proc.items()},
        "simulator_rss_mb": round(peak_sim, 1),
        "cpu_per_s_by_process": cpu,
        "strategy_cpu_us_per_request": per_req,
        "runqueue_wait_per_s_by_process": waiting,
        "flood": f1,
        "oms_summary": {k: (summ.get("orders") or {}).get(k) for k in ("sent", "acked", "rejected", "unknown",
                                                                        "success_rate", "ack_latency_us")},
        "measured_s": round(dt, 1), "startup_s": round(startup_s, 1),
        "wall_s": round(time.monotonic() - t_start, 1),
    })
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(work, ignore_errors=True)
    print(f"  orders acknowledged (places and cancels): {result['orders_per_s']:,}/s "
          f"(new orders {result['new_orders_per_s']:,}/s); venue requests acknowledged by the simulator "
          f"{result['requests_acked_per_s']:,}/s (received {result['requests_received_per_s']:,}/s)")
    sr, rsr = result["success_rate"], result["request_success_rate"]
    print(f"  success rate (accepted / answered orders): {sr if sr is None else f'{sr * 100:.3f} %'}; "
          f"requests acked / received at the sim: {rsr if rsr is None else f'{rsr * 100:.3f} %'}"
          f"  rejected {rejected}  denied by risk/OMS {f1.get('denied', 0)}")
    print(f"  summed RSS (launcher tree, peak) {result['rss_mb_total']} MB (summed PSS, shared pages counted once: "
          f"{result['pss_mb_total']} MB); simulator {result['simulator_rss_mb']} MB")
    print("  CPU seconds per second:", ", ".join(f"{k} {v}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
    if per_req:
        print(f"  strategy process CPU per acknowledged order: {per_req['total']} us "
              f"(user {per_req['user']}, kernel {per_req['sys']})")
    print("  runnable but waiting for a CPU, s per s (main thread):",
          ", ".join(f"{k} {v}" for k, v in sorted(waiting.items(), key=lambda kv: -kv[1])))
    print(f"  measured {result['measured_s']} s after {result['startup_s']} s start-up; wall {result['wall_s']} s;"
          f" load average at end {result['machine']['load_avg_end']}")
    if a.profile and os.path.exists(prof_path):
        import pstats

        print("  strategy process profile (top 25 by own time):")
        pstats.Stats(prof_path).sort_stats("tottime").print_stats(25)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"  json: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
