"""End-to-end tick-to-trade: the simulator in trigger mode, the real pipeline, the floor and
two baselines in the same run, on the host's monotonic clock.

    python -m benches.tick_to_trade [--quick] [--duration S] [--cpus 0,1] [--json FILE] [--plot FILE.png]
                                    [--interval-ms 100] [--load-rate 30000] [--study idle-gc]
                                    [--layout venue-with-feed|venue-apart] [--idle busy_spin|yielding|backoff]
                                    [--feed-idle ...] [--floor-idle ...] [--sim-nice N]

The simulator keeps BTC-USDT quiet and moves it by `--jump-bps` every `--interval-ms`; the
probe gives the send time of each jump's best-bid/offer frame per venue and the arrival time of
every order request. Tick-to-trade = first order request received on a venue after a jump -
that jump's BBO frame send time on that venue. Phases, one after the other on one simulator
with the same trigger schedule:
  floor        benches.baselines.floor: prebuilt order frame per md frame, nothing parsed
  pipeline     feed process -> shm md ring -> strategy host (market maker, risk, OMS) -> order WS
  faster_fifo  the same processes with faster_fifo.Queue in place of the md rings
  naive        benches.baselines.naive_bot: one asyncio process, websockets + json + dict books
  load/*       pipeline and naive again while the other symbol streams at `--load-rate`
Order-to-ack comes from the events ring the OMS writes (PENDING event -> the venue's answer,
every op) and the OMS's own send -> ack figure for new orders. Percentiles from HDR histograms.
`--study idle-gc` instead runs the pipeline once per idle strategy and GC setting.
The pipeline's strategy process busy-spins by default (`--idle`), as on an isolated core; the
feed sleeps in epoll (`--feed-idle`); `--floor-idle busy_spin` adds a floor that polls too.
`T2T_DUMP_STAGES=FILE` appends each phase's raw per-jump stage times (ns, per venue in order).
Timings are measurements, never pass/fail: a shared machine moves them.
"""

from __future__ import annotations

import argparse
import array
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from strategy.market_making import MarketMaker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENUES = ("binance", "okx", "gate")
BBO_KINDS = {"bookTicker", "bbo-tbt", "book_ticker"}
TRIGGER_SYMBOL = "BTC-USDT"
SYMBOLS = ["BTC-USDT", "ETH-USDT"]
ANSWER_KINDS = {1, 2, 4, 5, 6, 8, 9}  # oms EventKind: ACK REJECT CANCELED EXPIRED AMENDED CANCEL/AMEND_REJECT
PENDING_KIND = 11


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------------- the probed strategy
class StageProbeMM(MarketMaker):
    """The built-in market maker, plus a record of (venue, feed receive ns, host read ns, decision
    done ns) for each quote of the trigger symbol, written to data_dir at stop: the per-stage
    split of tick-to-trade. Costs one tuple compare per record on other instruments."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg.market_making, stale_ms=cfg.risk.stale_md_ms)
        self._stage_path = os.path.join(cfg.system.data_dir, "stages.bin")
        self._stages = array.array("q")
        self._trig = -1

    def on_start(self, ctx):
        out = super().on_start(ctx)
        self._trig = ctx.instruments.id_for(TRIGGER_SYMBOL)
        return out

    def on_market_data(self, md):
        t = md._t
        if t[0] == 1 and t[4] == self._trig:
            out = super().on_market_data(md)
            self._stages.extend((t[2], t[7], md.now_ns, time.monotonic_ns()))
            return out
        return super().on_market_data(md)

    def on_stop(self) -> None:
        try:
            with open(self._stage_path, "wb") as f:
                f.write(self._stages.tobytes())
        except OSError:
            pass
        super().on_stop()


# ---------------------------------------------------------------------------- process entry points
def _gc_setup(gc_mode: str, feed: bool) -> None:
    import gc

    if gc_mode == "freeze":
        return
    if feed:  # the feed process freezes unconditionally: stub it out for the comparison
        import types

        import feeds.handler as fh

        fh.gc = types.SimpleNamespace(collect=lambda *a: 0, freeze=lambda: None, set_threshold=lambda *a: None)
    if gc_mode == "disabled":
        gc.disable()


def _feed_entry(kind, queues, venues, cfg_path, prefix, cpu, symbols, urls, gc_mode):
    _gc_setup(gc_mode, True)
    if kind == "faster_fifo":
        from benches.baselines.fifo_pipeline import run_feed

        sys.exit(run_feed(queues, venues, cfg_path, prefix, cpu, symbols, urls))
    from feeds.handler import run_feed_process

    probe = os.environ.get("T2T_FEED_PROBE")
    if probe:  # diagnosis: (header, recv ns, ns after the ring write) of every quote the feed writes
        import atexit

        import feeds.base as fb

        rows = array.array("q")
        orig = fb.ring_sink

        def probed_sink(ring):
            sink = orig(ring)
            qh = sink.quote_h

            def quote_h(h, exch_ns, recv_ns, seq, f0, f1, f2, f3):
                r = qh(h, exch_ns, recv_ns, seq, f0, f1, f2, f3)
                rows.extend((h, recv_ns, time.monotonic_ns()))
                return r

            sink.quote_h = quote_h
            return sink

        fb.ring_sink = probed_sink
        import feeds.handler as fh

        fh.ring_sink = probed_sink
        atexit.register(lambda: open(probe, "wb").write(rows.tobytes()))
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    sys.exit(run_feed_process(venues, cfg_path, prefix, cpu, symbols, urls))


def _strategy_entry(kind, queues, cfg_path, prefix, cpu, venues, urls, strategy, gc_mode, max_sleep_us=0):
    _gc_setup(gc_mode, False)
    if max_sleep_us:  # the backoff's longest sleep is not a config key: set it for this study only
        import functools

        import strategy.host as sh

        sh.AsyncIdle = functools.partial(sh.AsyncIdle, max_sleep_ns=int(max_sleep_us * 1000))
    if kind == "faster_fifo":
        from benches.baselines.fifo_pipeline import run_strategy

        sys.exit(run_strategy(queues, cfg_path, prefix, cpu, venues, urls, strategy))
    from strategy.host import run_strategy_process

    sys.exit(run_strategy_process(cfg_path, prefix, cpu, venues, urls, strategy))


# ---------------------------------------------------------------------------- helpers
def hdr_summary(samples_ns) -> dict:
    """p50/p90/p99/p99.9/max (us) and count from an HDR histogram of ns samples."""
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 60_000_000_000, 3)
    for v in samples_ns:
        h.record_value(max(1, int(v)))
    n = h.get_total_count()
    if not n:
        return {"count": 0, "p50_us": None, "p90_us": None, "p99_us": None, "p999_us": None, "max_us": None}
    return {"count": int(n), "p50_us": h.get_value_at_percentile(50) / 1e3,
            "p90_us": h.get_value_at_percentile(90) / 1e3, "p99_us": h.get_value_at_percentile(99) / 1e3,
            "p999_us": h.get_value_at_percentile(99.9) / 1e3, "max_us": h.get_max_value() / 1e3}


def tick_to_trade(probe: dict, symbol: str, interval_ns: int) -> dict:
    """Per venue: (jump send ns, first order recv ns after it) for every jump in the probe."""
    out = {}
    for v in VENUES:
        jumps = sorted(r["send_ns"] for r in probe.get("md", [])
                       if r.get("venue") == v and r.get("symbol") == symbol and r.get("kind") in BBO_KINDS
                       and r.get("send_ns"))
        orders = sorted(r["recv_ns"] for r in probe.get("orders", []) if r.get("venue") == v)
        pairs, missed = [], 0
        j = 0
        for i, s in enumerate(jumps):
            end = min(jumps[i + 1] if i + 1 < len(jumps) else s + interval_ns, s + interval_ns)
            while j < len(orders) and orders[j] < s:
                j += 1
            if j < len(orders) and orders[j] < end:
                pairs.append((s, orders[j]))
            else:
                missed += 1
        out[v] = {"pairs": pairs, "jumps": len(jumps), "missed": missed, "orders": len(orders)}
    return out


def parse_cpus(text: str | None) -> list[int]:
    avail = sorted(os.sched_getaffinity(0))
    if not text:
        return avail[-2:] if len(avail) >= 2 else avail
    try:
        cpus = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--cpus takes comma-separated core numbers such as 0,1, got {text!r}") from None
    bad = [c for c in cpus if c not in avail]
    if bad or not cpus or len(set(cpus)) != len(cpus):
        raise UsageError(f"--cpus must list distinct available cores ({','.join(map(str, avail))}), got {text!r}")
    return cpus


LAYOUTS = ("venue-apart", "venue-with-feed")


def layout(cpus: list[int], mode: str = "venue-with-feed") -> dict:
    """Where the simulator, the feed process and the strategy process run.
    venue-apart: with 2 cores the simulator (the venue: on a real host it is across the network)
    gets the first core to itself and the trading system (feed + strategy, the floor, the naive
    bot) the last; venue-with-feed: the simulator shares the feed's core, the strategy has its own.
    With 3+ cores the feed takes the first, the strategy the last, the simulator the middle ones."""
    feed = cpus[0]
    hot = cpus[-1]
    if len(cpus) > 2:
        sim = set(cpus[1:-1])
    elif mode == "venue-apart" and len(cpus) == 2:
        sim, feed = {cpus[0]}, hot
    else:
        sim = {feed}
    return {"feed": feed, "strategy": hot, "sim": sim, "cpus": cpus, "mode": mode}


def describe_layout(lay: dict) -> list[str]:
    sim = ",".join(map(str, sorted(lay["sim"])))
    lines = [f"  simulator (venues)                cpu {sim}",
             f"  feed process (binance+okx+gate)   cpu {lay['feed']}",
             f"  strategy+risk+oms                 cpu {lay['strategy']}",
             f"  floor / naive bot (one process)   cpu {lay['strategy']}",
             "  harness (this process)            unpinned, sleeps between probe reads"]
    shared = []
    if lay["feed"] in lay["sim"]:
        shared.append(f"cpu {lay['feed']}: the simulator and the feed process")
    if lay["feed"] == lay["strategy"]:
        shared.append(f"cpu {lay['feed']}: the feed and strategy processes (and the floor / naive bot in their phases)")
    if shared:
        lines.append("  shares a core: " + "; ".join(shared))
    return lines


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:
        return 0.0


CONFIG = """
[system]
log_level = "WARNING"
idle_strategy = "{idle}"
feed_idle_strategy = "{feed_idle}"
gc_freeze = {gc_freeze}
shm_prefix = "{prefix}"
data_dir = "{data_dir}"

[persist]
enabled = false

[monitor]
enabled = false

[strategy.market_making]
symbols = ["{trigger}"]
venues = ["binance", "okx", "gate"]
spread_bps = 20.0
order_size = 0.001
max_position = 0.01
requote_threshold_bps = 2.0
min_order_lifetime_ms = 0.0

[risk]
max_orders_per_s = 100000.0
max_open_orders = 1000
stale_md_ms = 600000.0
max_reject_rate = 1.0
price_band_bps = 500.0
"""

VENUE_CFG = """
[exchanges.{v}]
api_key = "sim-key"
secret_key = "sim-secret"
passphrase = "{pp}"
symbols = {symbols}
order_rate = 100000.0
order_burst = 100000
cancel_rate = 100000.0
cancel_burst = 100000
"""


def write_config(path: str, data_dir: str, prefix: str, idle: str, gc_mode: str, feed_idle: str = "backoff") -> None:
    text = CONFIG.format(idle=idle, feed_idle=feed_idle, gc_freeze="true" if gc_mode == "freeze" else "false", prefix=prefix,
                         data_dir=data_dir, trigger=TRIGGER_SYMBOL)
    for v in VENUES:
        text += VENUE_CFG.format(v=v, pp="sim-pass" if v == "okx" else "", symbols=json.dumps(SYMBOLS))
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------- participants
class Pipeline:
    """Feed process + strategy process (shm rings or faster_fifo queues), events ring drained here."""

    def __init__(self, kind: str, work: str, urls_path: str, urls: dict, lay: dict, idle: str = "backoff",
                 gc_mode: str = "freeze", tag: str = "", max_sleep_us: int = 0, feed_idle: str = "backoff") -> None:
        self.kind = kind
        self.name = f"{kind}{tag}"
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.prefix = "".join(c for c in f"t{os.getpid() % 1000}{kind[:2]}{tag}" if c.isalnum())[:16]
        self.cfg_path = os.path.join(self.dir, "config.toml")
        write_config(self.cfg_path, self.dir, self.prefix, idle, gc_mode, feed_idle)
        self.urls = urls
        self.lay = lay
        self.gc_mode = gc_mode
        self.max_sleep_us = max_sleep_us
        self.procs: list[mp.Process] = []
        self.events = None
        self.pending: dict = {}
        self.ack_ns: list[int] = []
        self.oms_ack_us: list[float] = []
        self.collect = False

    def start(self) -> None:
        from ringbuf.records import EVENT_RECORD_SIZE
        from ringbuf.ring import Ring
        from ringbuf.ringstat import clean, ring_name

        clean(self.prefix)
        self.events = Ring.create(ring_name(self.prefix, "events"), 1 << 16, EVENT_RECORD_SIZE, lossless=True,
                                  replace=True)
        self.events.claim_consumer()
        ctx = mp.get_context("spawn")
        queues = {}
        if self.kind == "faster_fifo":
            from benches.baselines.fifo_pipeline import make_queue

            queues = {ring_name(self.prefix, f"md-{v}"): make_queue() for v in VENUES}
        feed = ctx.Process(target=_feed_entry, name="ttt-feed",
                           args=(self.kind, queues, list(VENUES), self.cfg_path, self.prefix, self.lay["feed"],
                                 SYMBOLS, self.urls, self.gc_mode))
        feed.start()
        strat = ctx.Process(target=_strategy_entry, name="ttt-strategy",
                            args=(self.kind, queues, self.cfg_path, self.prefix, self.lay["strategy"],
                                  list(VENUES), self.urls, "benches.tick_to_trade:StageProbeMM", self.gc_mode,
                                  self.max_sleep_us))
        strat.start()
        self.procs = [feed, strat]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        from monitor.sources import counters_by_role, read_status, status_path

        path = status_path(self.dir, self.prefix, "strategy")
        deadline = time.monotonic() + timeout_s
        while True:
            self.drain()
            for p in self.procs:
                if not p.is_alive():
                    raise RuntimeError(f"{self.name}: {p.name} exited with {p.exitcode} during start-up")
            blocks = counters_by_role(self.prefix)
            feeds_ok = all((blocks.get(f"feed-{v}") or {}).get("counters", {}).get("snapshots", 0) > 0
                           for v in VENUES)
            st = read_status(path) or {}
            if feeds_ok and st.get("ready") and st.get("pid") == self.procs[1].pid \
                    and (st.get("orders") or {}).get("acked", 0) >= 2 * len(VENUES):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not ready after {timeout_s:.0f}s (feeds synced: {feeds_ok}, "
                                   f"strategy: {st.get('ready')}, orders: {st.get('orders', {}).get('acked')})")
            time.sleep(0.05)

    def drain(self) -> None:
        from ringbuf.records import KIND_ORDER_EVENT, ORDER_EVENT_DTYPE

        ring = self.events
        if ring is None:
            return
        while True:
            batch = ring.peek_batch(4096)
            n = batch.shape[0]
            if n == 0:
                j = ring.read_journal(4096)
                if j.shape[0] == 0:
                    return
                batch, n, journal = j, j.shape[0], True
            else:
                journal = False
            if self.collect:
                ev = batch[batch[:, 0] == KIND_ORDER_EVENT].copy().view(ORDER_EVENT_DTYPE).reshape(-1)
                for cid, ts, kind, lat in zip(ev["cl_ord_id"].tolist(), ev["event_ts_ns"].tolist(),
                                              ev["reserved0"].tolist(), ev["latency_us"].tolist(), strict=True):
                    if kind == PENDING_KIND:
                        self.pending[cid] = ts
                    elif kind in ANSWER_KINDS:
                        t0 = self.pending.pop(cid, None)
                        if t0 is not None:
                            self.ack_ns.append(ts - t0)
                        if kind == 1 and lat > 0:
                            self.oms_ack_us.append(lat)
            if journal:
                ring.journal_advance(n)
            else:
                ring.advance(n)

    def begin(self) -> None:
        self.drain()
        self.pending.clear()
        self.ack_ns.clear()
        self.oms_ack_us.clear()
        self.collect = True

    def end(self) -> None:
        self.drain()
        self.collect = False

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid]

    def stop(self) -> None:
        from ringbuf import shm

        for p in reversed(self.procs):  # strategy first: its kill switch cancels the quotes
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            p.join(8)
            if p.is_alive():
                p.kill()
                p.join(2)
        self.drain()
        if self.events is not None:
            self.events.close()
            self.events = None
        for name in shm.list_segments(self.prefix + "-"):
            shm.unlink(name)

    def stages(self) -> np.ndarray:
        try:
            a = np.fromfile(os.path.join(self.dir, "stages.bin"), dtype=np.int64)
        except OSError:
            return np.zeros((0, 4), dtype=np.int64)
        return a[: len(a) // 4 * 4].reshape(-1, 4)


class External:
    """A one-process baseline (floor or naive bot) as a subprocess that prints READY."""

    def __init__(self, name: str, module: str, urls_path: str, lay: dict, extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.module = module
        self.urls_path = urls_path
        self.lay = lay
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.tail = ""

    def start(self) -> None:
        cmd = [sys.executable, "-m", self.module, "--urls", self.urls_path, "--cpu", str(self.lay["strategy"]),
               "--symbols", ",".join(SYMBOLS), "--trigger-symbol", TRIGGER_SYMBOL] + self.extra
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sel.select(0.1):
                line = self.proc.stdout.readline()
                if line.strip() == "READY":
                    return
                if not line and self.proc.poll() is not None:
                    break
        err = (self.proc.stderr.read() if self.proc.poll() is not None else "")[-500:]
        raise RuntimeError(f"{self.name} did not become ready: {err}")

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def drain(self) -> None:
        pass

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
            self.tail = out.strip().splitlines()[-1] if out.strip() else ""
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    def stages(self) -> np.ndarray:
        return np.zeros((0, 4), dtype=np.int64)


# ---------------------------------------------------------------------------- one phase
def run_phase(sim, part, args, load: bool) -> dict:
    c = sim.control
    c.reset()
    c.set_rate(args.base_rate)
    t0 = time.monotonic()
    part.start()
    try:
        part.wait_ready()
        startup_s = time.monotonic() - t0
        if load:
            c.set_rate(args.load_rate)
        c._call("POST", "/trigger", {"on": True, "interval_ms": args.interval_ms, "jump_bps": args.jump_bps,
                                     "symbol": TRIGGER_SYMBOL, "load": load})
        time.sleep(max(0.2, 3 * args.interval_ms / 1000))  # the book goes quiet, quotes settle
        c.probe(clear=True)
        part.begin()
        s0 = c.stats()
        from benches.throughput import cpu_s, schedstat

        watched = {"sim": sim.proc.pid, **{f"p{i}": pid for i, pid in enumerate(part.pids())}}
        w0 = {k: (schedstat(p), cpu_s(p)) for k, p in watched.items()}
        t_begin = time.monotonic()
        rss = {}
        deadline = t_begin + args.duration
        while time.monotonic() < deadline:
            time.sleep(0.1)
            part.drain()
            for pid in part.pids():
                rss[pid] = max(rss.get(pid, 0.0), rss_mb(pid))
        probe = c.probe()
        s1 = c.stats()
        elapsed = time.monotonic() - t_begin
        w1 = {k: (schedstat(p), cpu_s(p)) for k, p in watched.items()}
        c.trigger(False)
        c.set_rate(args.base_rate)
        part.end()
    finally:
        part.stop()
    frames = sum(s1["venues"][v]["frames_sent"] - s0["venues"][v]["frames_sent"] for v in VENUES)
    per_venue = tick_to_trade(probe, TRIGGER_SYMBOL, args.interval_ms * 1_000_000)
    samples = [o - s for v in VENUES for s, o in per_venue[v]["pairs"]]
    res = hdr_summary(samples)
    res["by_venue_p50_us"] = {v: hdr_summary([o - s for s, o in per_venue[v]["pairs"]])["p50_us"] for v in VENUES}
    res["jumps"] = sum(per_venue[v]["jumps"] for v in VENUES)
    res["unanswered_jumps"] = sum(per_venue[v]["missed"] for v in VENUES)
    # jumps with no order within the interval are not in the percentiles: say how many were answered
    res["answered_fraction"] = round(res["count"] / res["jumps"], 3) if res["jumps"] else None
    # a lower bound that does not flatter a participant falling behind: unanswered = one interval
    censored = samples + [args.interval_ms * 1_000_000] * res["unanswered_jumps"]
    res["p99_incl_unanswered_us"] = hdr_summary(censored)["p99_us"]
    res["order_requests"] = sum(per_venue[v]["orders"] for v in VENUES)
    res["frames_sent_per_s"] = round(frames / elapsed)  # every frame the venues wrote; md dominates
    res["startup_s"] = round(startup_s, 1)
    res["rss_mb"] = round(sum(rss.values()), 1)
    names = {"sim": "simulator", "p0": "feed" if isinstance(part, Pipeline) else part.name, "p1": "strategy"}
    res["cpu_per_s"] = {names[k]: round((w1[k][1] - w0[k][1]) / elapsed, 2) for k in w0}
    res["runqueue_wait_per_s"] = {names[k]: round((w1[k][0][1] - w0[k][0][1]) / elapsed, 3) for k in w0}
    res["samples_us"] = [round(x / 1e3, 1) for x in samples]
    if isinstance(part, Pipeline):
        res["order_to_ack"] = hdr_summary(part.ack_ns)
        res["order_to_ack_new_oms"] = hdr_summary([x * 1e3 for x in part.oms_ack_us])
        res["stages"] = stage_split(part.stages(), per_venue)
    return res


def stage_split(st: np.ndarray, per_venue: dict) -> dict:
    """Per jump: sim send -> feed recv, feed recv -> strategy read, read -> decision, decision ->
    order arrival at the sim; medians in us (records matched to jumps by venue and time)."""
    vid = {"binance": 1, "okx": 2, "gate": 3}
    parts: dict[str, list] = {"sim_to_feed": [], "feed_to_strategy": [], "decision": [], "send_to_sim": []}
    for v in VENUES:
        rows = st[st[:, 0] == vid[v]] if st.size else st
        if not len(rows):
            continue
        recv = rows[:, 1]
        for s, o in per_venue[v]["pairs"]:
            i = int(np.searchsorted(recv, s))  # first quote the feed received after the jump was sent
            if i >= len(rows) or rows[i, 1] > o:
                continue
            _, r, h, d = rows[i]
            parts["sim_to_feed"].append(r - s)
            parts["feed_to_strategy"].append(h - r)
            parts["decision"].append(d - h)
            parts["send_to_sim"].append(o - d)
    dump = os.environ.get("T2T_DUMP_STAGES")
    if dump:
        with open(dump, "a") as f:
            f.write(json.dumps({k: [int(x) for x in v] for k, v in parts.items()}) + "\n")
    return {k: ({"p50_us": float(np.percentile(np.array(x) / 1e3, 50)),
                 "p99_us": float(np.percentile(np.array(x) / 1e3, 99)), "count": len(x)} if x else {})
            for k, x in parts.items()}


# ---------------------------------------------------------------------------- output
def fmt(x) -> str:
    return "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def print_table(rows: list[tuple[str, dict]]) -> None:
    print(f"{'phase':28} {'n':>6} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'p99.9 us':>9} {'max us':>9}"
          f" {'sent/s':>8} {'unans':>6}")
    for name, r in rows:
        print(f"{name:28} {r['count']:>6} {fmt(r['p50_us']):>9} {fmt(r['p90_us']):>9} {fmt(r['p99_us']):>9}"
              f" {fmt(r['p999_us']):>9} {fmt(r['max_us']):>9} {r.get('frames_sent_per_s', 0):>8,}"
              f" {r.get('unanswered_jumps', 0):>6}")


def plot(path: str, series: list[tuple[str, list[float]]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, xs in series:
        if not xs:
            continue
        a = np.sort(np.asarray(xs, dtype=float))
        q = (np.arange(1, len(a) + 1) - 0.5) / len(a)
        ax.plot(1.0 / (1.0 - q), a, label=f"{name} (p50 {np.percentile(a, 50):.0f} us, n={len(a)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [2, 10, 100, 1000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["50%", "90%", "99%", "99.9%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("tick-to-trade (us, log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "python": platform.python_version()}


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.tick_to_trade", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short phases (whole run under 45 s)")
    ap.add_argument("--duration", type=float, default=None, help="seconds measured per phase (default 10, quick 1.5)")
    ap.add_argument("--cpus", default="", help="cores: feeds on the first, strategy/baselines on the last")
    ap.add_argument("--layout", choices=LAYOUTS, default="venue-with-feed",
                    help="2 cores: the simulator shares the feed's core (default) or has the first core alone "
                         "(then feed and strategy share the last)")
    ap.add_argument("--idle", choices=["backoff", "busy_spin", "yielding"], default="busy_spin",
                    help="the strategy process's idle strategy ([system] idle_strategy) in the pipeline phases")
    ap.add_argument("--feed-idle", choices=["backoff", "busy_spin", "yielding"], default="backoff",
                    help="the feed process's ([system] feed_idle_strategy) in the pipeline phases")
    ap.add_argument("--sim-nice", type=int, default=0,
                    help="nice value for the simulator (a venue across the network takes no CPU from the system: "
                         "with a positive value it does not preempt a feed sharing its core)")
    ap.add_argument("--floor-idle", choices=["backoff", "busy_spin", "yielding"], default=None,
                    help="also run the floor polling its sockets this way (a second floor phase)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--plot", default=None, help="write a PNG of the latency distributions here")
    ap.add_argument("--interval-ms", type=int, default=None, help="time between jumps (default 100, quick 50)")
    ap.add_argument("--jump-bps", type=float, default=5.0)
    ap.add_argument("--base-rate", type=float, default=1000.0, help="md frames/s between phases")
    ap.add_argument("--load-rate", type=float, default=30000.0, help="md frames/s asked of the sim under load")
    ap.add_argument("--phases", default="floor,pipeline,faster_fifo,naive,load",
                    help="comma-separated subset of floor,pipeline,faster_fifo,naive,load")
    ap.add_argument("--study", choices=["idle-gc"], default=None,
                    help="idle-gc: the pipeline once per idle strategy and GC setting instead")
    try:
        args = ap.parse_args(argv)
        if args.duration is None:
            args.duration = 1.5 if args.quick else 10.0
        if args.interval_ms is None:
            args.interval_ms = 50 if args.quick else 100
        if args.duration <= 0 or args.interval_ms < 5:
            raise UsageError("--duration must be positive and --interval-ms at least 5")
        phases = [p for p in args.phases.split(",") if p]
        unknown = set(phases) - {"floor", "pipeline", "faster_fifo", "naive", "load"}
        if unknown:
            raise UsageError(f"unknown phase(s) {', '.join(sorted(unknown))}")
        lay = layout(parse_cpus(args.cpus), args.layout)
    except UsageError as e:
        print(f"tick_to_trade: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return int(e.code or 0)

    from sim.testing import run_sim

    info = machine()
    print(f"tick-to-trade  {info['date']}  {info['cpu']}  {info['cores']} cores  load avg {info['load_avg']}")
    print("process layout:")
    for line in describe_layout(lay):
        print(line)
    work = tempfile.mkdtemp(prefix="ttt-")
    results: dict = {"machine": info, "command": "python -m benches.tick_to_trade " + " ".join(argv or sys.argv[1:]),
                     "settings": {"interval_ms": args.interval_ms, "jump_bps": args.jump_bps,
                                  "duration_s": args.duration, "load_rate": args.load_rate,
                                  "symbols": SYMBOLS, "trigger_symbol": TRIGGER_SYMBOL,
                                  "idle_strategy": args.idle, "feed_idle_strategy": args.feed_idle,
                                  "sim_nice": args.sim_nice,
                                  "layout": {k: (sorted(v) if isinstance(v, set) else v) for k, v in lay.items()}}}
    rows: list[tuple[str, dict]] = []
    t_start = time.monotonic()
    try:
        with run_sim(symbols=SYMBOLS, seed=1, rate=args.base_rate, okx_books="legacy") as sim:
            try:
                os.sched_setaffinity(sim.proc.pid, lay["sim"])
                if args.sim_nice:
                    os.setpriority(os.PRIO_PROCESS, sim.proc.pid, args.sim_nice)
            except OSError:
                pass
            urls_path = os.path.join(work, "sim-urls.json")
            with open(urls_path, "w") as f:
                json.dump(sim.urls, f)

            def phase(name, part, load=False):
                print(f"  running {name} ...", flush=True)
                r = run_phase(sim, part, args, load)
                rows.append((name, r))
                return r

            idle, fidle = args.idle, args.feed_idle
            if args.study == "idle-gc":
                study = {}
                for idle, gc_mode, sleep_us in (("backoff", "freeze", 0), ("yielding", "freeze", 0),
                                                ("busy_spin", "freeze", 0), ("backoff", "freeze", 100),
                                                ("backoff", "default", 0), ("backoff", "disabled", 0)):
                    name = f"idle={idle}{f' max {sleep_us}us' if sleep_us else ''} gc={gc_mode}"
                    study[name] = phase(name, Pipeline("pipeline", work, urls_path, sim.urls, lay, idle, gc_mode,
                                                       tag=f"{idle[:2]}{gc_mode[:2]}{sleep_us or ''}",
                                                       max_sleep_us=sleep_us))
                results["idle_gc"] = study
            else:
                if "floor" in phases:
                    results["floor"] = phase("floor", External("floor", "benches.baselines.floor", urls_path, lay))
                    if args.floor_idle and args.floor_idle != "backoff":
                        results["floor_" + args.floor_idle] = phase(
                            f"floor, {args.floor_idle}", External("floor", "benches.baselines.floor", urls_path, lay,
                                                                  ("--idle", args.floor_idle)))
                if "pipeline" in phases:
                    results["pipeline"] = phase("pipeline (shm ring)",
                                                Pipeline("pipeline", work, urls_path, sim.urls, lay, idle, feed_idle=fidle))
                if "faster_fifo" in phases:
                    results["faster_fifo"] = phase("faster_fifo queue",
                                                   Pipeline("faster_fifo", work, urls_path, sim.urls, lay, idle, feed_idle=fidle))
                if "naive" in phases:
                    results["naive"] = phase("naive asyncio bot",
                                             External("naive", "benches.baselines.naive_bot", urls_path, lay))
                if "load" in phases:
                    results["load"] = {
                        "pipeline": phase("load: pipeline (shm ring)",
                                          Pipeline("pipeline", work, urls_path, sim.urls, lay, idle, tag="ld",
                                                   feed_idle=fidle), True),
                        "naive": phase("load: naive asyncio bot",
                                       External("naive", "benches.baselines.naive_bot", urls_path, lay), True)}
    except (RuntimeError, TimeoutError, OSError) as e:
        print(f"tick_to_trade: {e}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    results["wall_s"] = round(time.monotonic() - t_start, 1)
    results["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    print(f"tick-to-trade (sim BBO frame sent -> first order request received), jump every "
          f"{args.interval_ms} ms, {args.duration:g} s per phase:")
    print_table(rows)
    for name, r in rows:
        if "order_to_ack" in r:
            a, b = r["order_to_ack"], r["order_to_ack_new_oms"]
            print(f"  order-to-ack {name:28} all ops p50 {fmt(a['p50_us'])} p99 {fmt(a['p99_us'])} us (n={a['count']});"
                  f" new orders (OMS clock) p50 {fmt(b['p50_us'])} p99 {fmt(b['p99_us'])} us (n={b['count']})")
    for name, r in rows:
        w = r.get("runqueue_wait_per_s", {})
        print(f"  CPU s/s {name:24} " + "  ".join(f"{k} {v}" for k, v in r.get("cpu_per_s", {}).items())
              + " | runnable, waiting for a CPU s/s " + "  ".join(f"{k} {v}" for k, v in w.items()))
    for name, r in rows:
        if r.get("stages"):
            s = r["stages"]
            parts = "  ".join(f"{k} {fmt(v.get('p50_us'))}" for k, v in s.items() if v)
            print(f"  stages p50 us {name:24} {parts}")
    if "floor" in results and "pipeline" in results and results["floor"]["p50_us"] and results["pipeline"]["p50_us"]:
        print(f"  pipeline p50 - floor p50 = {results['pipeline']['p50_us'] - results['floor']['p50_us']:.1f} us")
    ld = results.get("load")
    if ld and ld["pipeline"]["p99_us"] and ld["naive"]["p99_us"]:
        print(f"  under load: naive p99 / pipeline p99 = {ld['naive']['p99_us'] / ld['pipeline']['p99_us']:.1f}x"
              f" (answered jumps only); counting unanswered jumps as {args.interval_ms} ms: "
              f"{ld['naive']['p99_incl_unanswered_us'] / ld['pipeline']['p99_incl_unanswered_us']:.1f}x")
    print(f"  wall {results['wall_s']} s, load average at end {results['machine']['load_avg_end']}")

    if args.plot:
        plot(args.plot, [(n, r.get("samples_us", [])) for n, r in rows],
             f"tick-to-trade, {info['cpu'][:40]}, {info['date']}")
        print(f"  plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"  json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
