"""Launcher and supervisor: one command starts the whole trading system.

    python run.py [--config config.toml] [--cpus 2,3,4] [--venues sim|live]
                  [--duration SECONDS] [--summary FILE.json]

With no arguments and no config: the built-in simulator, the market maker on BTC-USDT
and ETH-USDT on all three venues, embedded PostgreSQL, cores chosen automatically.
Feeds are pinned to the first cores given, the strategy to the last; persistence,
monitor and simulator run at nice 19 on whatever is left. Crashed processes are
restarted with back-off; repeated crashes halt trading. SIGINT/SIGTERM: halt, cancel
all open orders, drain and flush, exit 0 (a second signal forces exit).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from common.config import Config, ConfigError, load
from tune.check import default_trading_cpus

log = logging.getLogger("run")
ROOT = os.path.dirname(os.path.abspath(__file__))


class UsageError(Exception):
    """Bad arguments: one line, exit code 2."""


# --------------------------------------------------------------------------- cores
@dataclass
class Layout:
    feed_groups: list[tuple[int | None, list[str]]]  # (cpu, venues) per feed process
    strategy_cpu: int | None
    low_priority_cpus: set[int] | None  # persist / monitor / sim; None = anywhere

    def describe(self, venues: list[str]) -> list[str]:
        def cpu(c):
            return "any" if c is None else str(c)

        lines = [f"  feed {'+'.join(vs):22} cpu {cpu(c)}" for c, vs in self.feed_groups]
        lines.append(f"  {'strategy+risk+oms':27} cpu {cpu(self.strategy_cpu)}")
        low = "any" if not self.low_priority_cpus else ",".join(map(str, sorted(self.low_priority_cpus)))
        lines.append(f"  {'persist, monitor, sim':27} cpu {low} (nice 19)")
        shared = []
        used = [c for c, _ in self.feed_groups] + [self.strategy_cpu]
        if self.low_priority_cpus:
            for c in sorted(self.low_priority_cpus):
                if c in used:
                    shared.append(c)
        if shared:
            lines.append(f"  note: low-priority processes share cpu {','.join(map(str, shared))} "
                         "with a pinned process (nice 19 keeps them out of its way)")
        return lines


def parse_cpus(text: str) -> list[int]:
    try:
        cpus = [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise UsageError(f"--cpus takes comma-separated core numbers such as 2,3,4, got {text!r}") from None
    if not cpus:
        raise UsageError("--cpus needs at least two cores, e.g. --cpus 0,1")
    if len(set(cpus)) != len(cpus):
        raise UsageError(f"--cpus lists a core twice: {text}")
    avail = sorted(os.sched_getaffinity(0))
    missing = [c for c in cpus if c not in avail]
    if missing:
        raise UsageError(f"--cpus names core(s) {','.join(map(str, missing))} that this process cannot use; "
                         f"available: {','.join(map(str, avail))}")
    if len(cpus) < 2:
        raise UsageError("--cpus needs at least two cores: one for the feeds and one for the strategy")
    return cpus


def plan_layout(venues: list[str], cpus: list[int] | None) -> Layout:
    """Feeds on the first cores (venues grouped when there are fewer cores than venues),
    strategy on the last, low-priority work on the rest or shared at nice 19."""
    avail = sorted(os.sched_getaffinity(0))
    if cpus is None:
        if len(avail) < 2:
            return Layout([(None, venues)], None, None)
        cpus = default_trading_cpus(avail)  # the rule tune/check.py reports against
    feed_cpus = cpus[:-1][: max(1, len(venues))]
    strategy_cpu = cpus[-1]
    groups: list[tuple[int | None, list[str]]] = [(c, []) for c in feed_cpus]
    for i, v in enumerate(venues):
        groups[i % len(groups)][1].append(v)
    groups = [g for g in groups if g[1]]
    rest = set(avail) - set(cpus)
    low = rest if rest else set(feed_cpus)  # share a feed core at nice 19 rather than the strategy's
    return Layout(groups, strategy_cpu, low)


# --------------------------------------------------------------------------- processes
def _child_init(cpu: int | None, nice: int, cpus: set[int] | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    elif cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass


def _run_feed(cpu, nice, cpus, venues, config_path, prefix, symbols, urls):
    _child_init(None, nice, cpus)
    from common.logs import setup_logging
    from feeds.handler import run_feed_process

    try:
        setup_logging(load(config_path))
    except ConfigError:
        pass  # run_feed_process reports it (one line, exit 2)

    sys.exit(run_feed_process(venues, config_path, prefix, cpu, symbols, urls))


def _run_strategy(cpu, nice, cpus, config_path, prefix, venues, urls, strategy):
    _child_init(None, nice, cpus)
    from strategy.host import run_strategy_process

    sys.exit(run_strategy_process(config_path, prefix, cpu, venues, urls, strategy))


def _run_persist(cpu, nice, cpus, config_path, prefix, database_url, redis_url, md_venues):
    _child_init(cpu, 0, cpus)
    from persist.process import run_persist_process

    sys.exit(run_persist_process(config_path, prefix, database_url, redis_url, md_venues))


def _run_monitor(cpu, nice, cpus, config_path, prefix, database_url, venues, port, ready_file):
    _child_init(cpu, 0, cpus)
    from monitor.server import run_monitor_process

    sys.exit(run_monitor_process(config_path, prefix, database_url, venues, port, nice=nice,
                                 ready_file=ready_file))


@dataclass
class Proc:
    role: str
    target: object
    args: tuple
    cpu: int | None = None
    nice: int = 0
    cpus: set[int] | None = None
    process: mp.Process | None = None
    starts: int = 0
    crashes: list[float] = field(default_factory=list)
    next_start: float = 0.0
    failed: bool = False
    peak_rss: int = 0
    pid_history: list[int] = field(default_factory=list)

    def start(self, ctx) -> None:
        self.process = ctx.Process(target=self.target, args=(self.cpu, self.nice, self.cpus, *self.args),
                                   name=f"hft-{self.role}", daemon=False)
        self.process.start()
        self.starts += 1
        self.pid_history.append(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    MAX_CRASHES = 5
    CRASH_WINDOW_S = 60.0

    def __init__(self, cfg: Config, args, layout: Layout, venues: list[str], prefix: str) -> None:
        self.cfg = cfg
        self.args = args
        self.layout = layout
        self.venues = venues
        self.prefix = prefix
        self.ctx = mp.get_context("spawn")
        self.procs: dict[str, Proc] = {}
        self.stopping = False
        self.signals = 0
        self.sim_proc: subprocess.Popen | None = None
        self.sim_urls: dict | None = None
        self.pg = None
        self.database_url = ""
        self.redis_url = cfg.redis.url if cfg.redis.enabled else ""
        self.data_dir = cfg.system.data_dir
        self.started = time.time()
        self.monitor_port = 0
        self.sim_peak_rss = 0
        self.self_peak_rss = 0
        self.alerts: list[str] = []

    # ---- bring-up ------------------------------------------------------------------
    def start_database(self) -> None:
        if self.cfg.database.url:
            self.database_url = self.cfg.database.url
            import psycopg

            try:
                psycopg.connect(self.database_url, connect_timeout=5).close()
                log.info("database: %s", _redact_url(self.database_url))
            except psycopg.Error as e:
                log.warning("database unreachable at start (%s): events go to the journal until it answers",
                            type(e).__name__)
            return
        from persist.embedded import start_embedded_postgres

        t = time.monotonic()
        self.pg = start_embedded_postgres(os.path.join(self.data_dir, "pg"))
        self.database_url = self.pg.url
        # children (spawned later) read it like any configured URL, e.g. the strategy process
        # restoring positions after a restart
        os.environ["DATABASE_URL"] = self.database_url
        log.info("database: embedded PostgreSQL under %s (started in %.1fs)", self.pg.data_dir,
                 time.monotonic() - t)

    def start_sim(self) -> None:
        sc = self.cfg.sim
        port_base = sc.port_base if self.args.sim_port_base is None else self.args.sim_port_base
        ready = os.path.join(self.data_dir, "run", self.prefix, "sim-ready.json")
        os.makedirs(os.path.dirname(ready), exist_ok=True)
        if os.path.exists(ready):
            os.unlink(ready)
        symbols = sorted(set(self.cfg.market_making.symbols) | set(sc.symbols))
        cmd = [sys.executable, "-m", "sim", "--host", sc.host, "--port-base", str(port_base),
               "--symbols", ",".join(symbols), "--seed", str(sc.seed), "--rate", str(sc.rate),
               "--okx-books", sc.okx_books, "--ready-file", ready]
        # the simulator stands for the venues: normal priority, off the strategy's core when possible
        self.sim_proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=lambda: _child_init(None, 0, self.layout.low_priority_cpus))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.sim_proc.poll() is not None:
                err = (self.sim_proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
                raise UsageError(f"simulator failed to start: {err[-1] if err else 'exit ' + str(self.sim_proc.returncode)}")
            if os.path.exists(ready):
                try:
                    with open(ready) as f:
                        self.sim_urls = json.load(f)
                    break
                except ValueError:
                    pass
            time.sleep(0.05)
        if not self.sim_urls:
            raise UsageError("simulator did not become ready within 30 s")
        log.info("venues: built-in simulator (control %s)", self.sim_urls.get("control"))

    def use_sim(self, path: str) -> None:
        """An already-running simulator (its `--ready-file` JSON): tests and benchmarks own it."""
        try:
            with open(path) as f:
                self.sim_urls = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"--sim-urls {path}: cannot read the simulator's URL map ({e})") from None
        log.info("venues: external simulator (control %s)", self.sim_urls.get("control"))

    def create_segments(self) -> None:
        from ringbuf.records import EVENT_RECORD_SIZE, MD_RECORD_SIZE
        from ringbuf.ring import Ring
        from ringbuf.ringstat import clean, ring_name

        removed = clean(self.prefix)
        if removed:
            log.warning("removed %d stale shared-memory segment(s) left by a crashed run: %s", len(removed),
                        ", ".join(removed))
        self.rings = [Ring.open(ring_name(self.prefix, f"md-{v}"), 1 << 16, MD_RECORD_SIZE) for v in self.venues]
        self.rings.append(Ring.open(ring_name(self.prefix, "events"), 1 << 16, EVENT_RECORD_SIZE, lossless=True))

    def add(self, role: str, target, args: tuple, cpu: int | None, nice: int) -> Proc:
        p = Proc(role, target, args, cpu=cpu, nice=nice,
                 cpus=self.layout.low_priority_cpus if nice else None)
        self.procs[role] = p
        return p

    def build_procs(self) -> None:
        cfgp = self.args.config
        symbols = list(self.cfg.market_making.symbols)
        urls = self.sim_urls
        if urls is None:  # live: hand every process the validated URLs (the file may not hold them)
            urls = {v: {"rest_url": self.cfg.exchanges[v].rest_url, "ws_url": self.cfg.exchanges[v].ws_url,
                        "ws_api_url": self.cfg.exchanges[v].ws_api_url} for v in self.venues}
        for i, (cpu, vs) in enumerate(self.layout.feed_groups):
            self.add(f"feed{i}", _run_feed, (vs, cfgp, self.prefix, symbols, urls), cpu, 0)
        if self.cfg.persist.enabled:
            md = self.venues if self.cfg.persist.record_market_data else []
            self.add("persist", _run_persist, (cfgp, self.prefix, self.database_url, self.redis_url or None, md),
                     None, 19)
        if self.cfg.monitor.enabled:
            ready = os.path.join(self.data_dir, "run", self.prefix, "monitor-ready.json")
            if os.path.exists(ready):
                os.unlink(ready)
            self.monitor_ready = ready
            self.add("monitor", _run_monitor, (cfgp, self.prefix, self.database_url, self.venues,
                                               self.args.monitor_port, ready), None, 19)
        self.add("strategy", _run_strategy, (cfgp, self.prefix, self.venues, urls, self.args.strategy),
                 self.layout.strategy_cpu, 0)

    def wait_feeds_synced(self, timeout_s: float = 30.0) -> bool:
        from monitor.sources import counters_by_role

        want = {f"feed-{v}" for v in self.venues}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stopping:
            blocks = counters_by_role(self.prefix)
            ready = set()
            for role in want:
                c = (blocks.get(role) or {}).get("counters", {})
                syms = [k for k in c if k.startswith("last_recv_ns:")]
                if c.get("snapshots", 0) > 0 and syms and all(c[k] for k in syms):
                    ready.add(role)
            if ready == want:
                return True
            self.check_processes()
            time.sleep(0.1)
        return False

    def wait_strategy_ready(self, timeout_s: float = 30.0) -> bool:
        from monitor.sources import read_status, status_path

        path = status_path(self.data_dir, self.prefix, "strategy")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stopping:
            st = read_status(path)
            if st and st.get("ready") and st.get("pid") == self.procs["strategy"].pid:
                return True
            self.check_processes()
            time.sleep(0.1)
        return False

    def start_all(self) -> None:
        for role, p in self.procs.items():
            if role.startswith("feed"):
                p.start(self.ctx)
        synced = self.wait_feeds_synced()
        log.info("feeds: %s", "books synced on every venue" if synced else "not every book synced yet (continuing)")
        for role in ("persist", "monitor"):
            if role in self.procs:
                self.procs[role].start(self.ctx)
        self.procs["strategy"].start(self.ctx)
        ready = self.wait_strategy_ready()
        log.info("strategy: %s", "order connections authenticated and reconciled; quoting" if ready
                 else "not ready within 30 s (still trying)")
        if "monitor" in self.procs:
            from monitor.sources import read_status

            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                st = read_status(self.monitor_ready)
                if st:
                    self.monitor_port = st["port"]
                    break
                time.sleep(0.05)
            log.info("monitor: http://%s:%s (/health /metrics /strategies/status /orders/stats)",
                     self.cfg.monitor.host, self.monitor_port or "?")

    # ---- supervision ----------------------------------------------------------------
    def check_processes(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for role, p in self.procs.items():
            if p.failed or p.process is None:
                continue
            if p.alive():
                continue
            if p.next_start:
                if now >= p.next_start:
                    p.next_start = 0.0
                    log.warning("restarting %s (start #%d)", role, p.starts + 1)
                    p.start(self.ctx)
                continue
            code = p.process.exitcode
            p.crashes = [t for t in p.crashes if now - t < self.CRASH_WINDOW_S] + [now]
            if code == 2:
                log.error("%s exited with a configuration error; not restarting", role)
                p.failed = True
            elif len(p.crashes) > self.MAX_CRASHES:
                p.failed = True
                msg = f"{role} crashed {len(p.crashes)} times in {self.CRASH_WINDOW_S:g}s; giving up"
                log.error("ALERT %s", msg)
                self.alerts.append(msg)
                self.halt_trading(msg)
            else:
                delay = min(0.5 * 2 ** (len(p.crashes) - 1), 10.0)
                log.warning("%s (pid %d) exited with %s; restarting in %.1fs", role, p.pid, code, delay)
                p.next_start = now + delay
        self.write_status()

    def halt_trading(self, reason: str) -> None:
        try:
            from rms.control import ControlBlock

            cb = ControlBlock.attach(self.prefix)
            cb.request_halt(reason[:47])
            cb.close()
        except Exception as e:
            log.error("could not halt trading through the control segment: %s", e)

    def sample_rss(self) -> None:
        import psutil

        for p in self.procs.values():
            if p.alive():
                try:
                    p.peak_rss = max(p.peak_rss, psutil.Process(p.pid).memory_info().rss)
                except psutil.Error:
                    pass
        try:
            self.self_peak_rss = max(self.self_peak_rss, psutil.Process().memory_info().rss)
            if self.sim_proc and self.sim_proc.poll() is None:
                self.sim_peak_rss = max(self.sim_peak_rss, psutil.Process(self.sim_proc.pid).memory_info().rss)
        except psutil.Error:
            pass

    def write_status(self) -> None:
        from monitor.sources import status_path, write_status

        procs = {r: {"pid": p.pid, "alive": p.alive(), "starts": p.starts, "failed": p.failed,
                     "cpu": p.cpu, "nice": p.nice} for r, p in self.procs.items()}
        write_status(status_path(self.data_dir, self.prefix, "supervisor"),
                     {"pid": os.getpid(), "ts": time.time(), "processes": procs,
                      "failed": any(p.failed for p in self.procs.values()), "alerts": self.alerts[-20:]})

    # ---- shutdown -------------------------------------------------------------------
    def on_signal(self, signum, _frame) -> None:
        self.signals += 1
        if self.signals >= 2:
            log.error("second signal: forcing exit")
            for p in self.procs.values():
                if p.alive():
                    p.process.kill()
            if self.sim_proc and self.sim_proc.poll() is None:
                self.sim_proc.kill()
            self.cleanup_segments()
            os._exit(1)
        log.info("%s received: halting, cancelling open orders, draining", signal.Signals(signum).name)
        self.stopping = True

    def _terminate(self, roles: list[str], timeout_s: float) -> None:
        ps = [self.procs[r] for r in roles if r in self.procs and self.procs[r].alive()]
        for p in ps:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        for p in ps:
            p.process.join(max(0.0, deadline - time.monotonic()))
            if p.process.is_alive():
                log.warning("%s did not stop in time; killing it", p.role)
                p.process.kill()
                p.process.join(1)

    def shutdown(self) -> None:
        self.stopping = True
        t0 = time.monotonic()
        self._terminate(["strategy"], 3.0)  # kill switch: halt, cancel all, wait for acks
        self._terminate([r for r in self.procs if r.startswith("feed")] + ["monitor"], 1.0)
        self._terminate(["persist"], max(0.5, 4.0 - (time.monotonic() - t0)))  # final drain + flush
        if self.sim_proc and self.sim_proc.poll() is None:
            self.sim_proc.send_signal(signal.SIGTERM)
        self.cleanup_segments()
        log.info("stopped in %.1fs", time.monotonic() - t0)

    def stop_external(self) -> None:
        if self.sim_proc is not None:
            try:
                self.sim_proc.wait(3)
            except subprocess.TimeoutExpired:
                self.sim_proc.kill()
        if self.pg is not None:
            self.pg.stop()

    def cleanup_segments(self) -> None:
        from ringbuf import shm

        for r in getattr(self, "rings", []):
            r.close()
        for name in shm.list_segments(self.prefix + "-"):
            shm.unlink(name)

    # ---- reporting ------------------------------------------------------------------
    def status_line(self) -> str:
        from monitor.sources import counters_by_role, read_status, status_path

        blocks = counters_by_role(self.prefix)
        parts = []
        now = time.monotonic_ns()
        for v in self.venues:
            c = (blocks.get(f"feed-{v}") or {}).get("counters", {})
            age = (now - c["last_recv_ns"]) / 1e9 if c.get("last_recv_ns") else float("nan")
            parts.append(f"{v} msgs {c.get('messages', 0)} age {age:.1f}s")
        st = read_status(status_path(self.data_dir, self.prefix, "strategy")) or {}
        o = st.get("orders", {})
        parts.append(f"orders {o.get('sent', 0)} acked {o.get('acked', 0)} fills {o.get('fills', 0)} "
                     f"pnl {st.get('pnl', {}).get('total', 0.0):.2f}")
        lat = o.get("ack_latency_us", {})
        if lat:
            parts.append(f"ack p50 {lat.get('p50', 0):.0f}us p99 {lat.get('p99', 0):.0f}us")
        return " | ".join(parts)

    def summary(self) -> dict:
        from monitor.sources import read_status, status_path

        st = read_status(status_path(self.data_dir, self.prefix, "strategy")) or {}
        out = {"duration_s": round(time.time() - self.started, 1), "venues": self.venues,
               "orders": st.get("orders", {}), "positions": st.get("positions", []), "pnl": st.get("pnl", {}),
               "latency_us": st.get("latency_us", {}), "strategies": st.get("strategies", []),
               "database": {}, "processes": {}}
        if self.database_url:
            try:
                import psycopg

                from persist import queries

                since = int(self.started * 1e9)  # this run only: the database keeps every run
                with psycopg.connect(self.database_url, connect_timeout=5) as conn:
                    out["database"] = {"since_ns": since, "rates": queries.rates(conn, since),
                                       "fills": queries.fill_totals(conn, since),
                                       "by_status": queries.orders_by_status(conn, since)}
            except Exception as e:
                out["database"] = {"error": type(e).__name__}
        total = 0
        for role, p in self.procs.items():
            out["processes"][role] = {"peak_rss_mb": round(p.peak_rss / 2**20, 1), "starts": p.starts,
                                      "pids": p.pid_history}
            total += p.peak_rss
        out["processes"]["launcher"] = {"peak_rss_mb": round(self.self_peak_rss / 2**20, 1)}
        total += self.self_peak_rss
        out["peak_rss_mb_total"] = round(total / 2**20, 1)
        if self.sim_proc is not None:
            out["simulator_peak_rss_mb"] = round(self.sim_peak_rss / 2**20, 1)
        out["success_rate"] = (out["orders"] or {}).get("success_rate")
        return out


def _redact_url(url: str) -> str:
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    if u.password:
        netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return urllib.parse.urlunsplit((u.scheme, netloc, u.path, "", ""))
    return urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, "", ""))


def run(args) -> int:
    try:
        cfg = load(args.config, venues=args.venues)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"config {cfg.source}: ok")
        return 0
    try:
        cpus = parse_cpus(args.cpus) if args.cpus else (cfg.system.cpus or None)
        if cpus is not None and not args.cpus:
            cpus = parse_cpus(",".join(map(str, cpus)))
    except UsageError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("run.py: --duration must be a positive number of seconds", file=sys.stderr)
        return 2
    from common.logs import setup_logging

    setup_logging(cfg)
    logging.getLogger("pgserver").setLevel(max(logging.WARNING, logging.getLogger().level))
    venues = [v for v in cfg.market_making.venues if cfg.exchanges[v].enabled] or \
        [v.key for v in cfg.enabled_venues()]
    prefix = args.prefix or cfg.system.shm_prefix
    layout = plan_layout(venues, cpus)
    print("process layout:")
    for line in layout.describe(venues):
        print(line)
    sup = Supervisor(cfg, args, layout, venues, prefix)
    # positions persisted before this moment belong to another simulator run (fresh venue, fresh
    # balances); on live venues the inventory is real and carries over
    os.environ["HFT_POSITIONS_SINCE_NS"] = str(time.time_ns() if cfg.system.venues == "sim" else 0)
    signal.signal(signal.SIGINT, sup.on_signal)
    signal.signal(signal.SIGTERM, sup.on_signal)
    rc = 0
    try:
        sup.start_database()
        if cfg.system.venues == "sim":
            if args.sim_urls:
                sup.use_sim(args.sim_urls)
            else:
                sup.start_sim()
        sup.create_segments()
        sup.build_procs()
        sup.start_all()
        deadline = time.monotonic() + args.duration if args.duration else None
        tty = sys.stdout.isatty() and not args.no_tui
        last_line = 0.0
        live = _live_view(sup) if tty else None
        while not sup.stopping:
            sup.check_processes()
            sup.sample_rss()
            now = time.monotonic()
            if live is not None:
                live.update(_render(sup))
            elif now - last_line >= args.status_every:
                log.info("status: %s", sup.status_line())
                last_line = now
            if deadline is not None and now >= deadline:
                log.info("--duration reached")
                break
            time.sleep(0.2)
        if live is not None:
            live.stop()
    except UsageError as e:
        print(f"run.py: {e}", file=sys.stderr)
        rc = 2
    except Exception:
        log.exception("launcher failed")
        rc = 1
    finally:
        sup.sample_rss()
        if args.status_snapshot and rc == 0:
            _save_snapshot(sup, args.status_snapshot)
        sup.shutdown()
        if args.summary and rc == 0:
            summ = sup.summary()
            with open(args.summary, "w") as f:
                json.dump(summ, f, indent=2)
            log.info("summary written to %s", args.summary)
        sup.stop_external()
    return rc


def _save_snapshot(sup: Supervisor, path: str) -> None:
    """The live status table as it looked at the end of the run: .svg (a screenshot) or text."""
    try:
        from rich.console import Console

        con = Console(record=True, width=150, file=open(os.devnull, "w"))
        con.print(_render(sup))
        if path.endswith(".svg"):
            con.save_svg(path, title="python run.py")
        else:
            con.save_text(path)
    except Exception as e:
        log.warning("could not save the status snapshot: %s", e)


def _live_view(sup: Supervisor):
    try:
        from rich.live import Live

        live = Live(_render(sup), refresh_per_second=2, transient=False)
        live.start()
        return live
    except Exception:
        return None


def _render(sup: Supervisor):
    from rich.table import Table

    from monitor.sources import counters_by_role, read_status, status_path

    blocks = counters_by_role(sup.prefix)
    t = Table(title=f"hft  prefix={sup.prefix}  up {time.time() - sup.started:.0f}s  (Ctrl-C to stop)")
    for col in ("venue", "md msgs", "book age s", "resyncs", "orders", "fills", "position", "pnl"):
        t.add_column(col, justify="right")
    st = read_status(status_path(sup.data_dir, sup.prefix, "strategy")) or {}
    per_venue = (st.get("orders") or {}).get("by_venue", {})
    pos = {}
    for p in st.get("positions", []):
        pos.setdefault(p.get("venue"), []).append(f"{p.get('symbol')} {p.get('qty', 0):+.4f}")
    now = time.monotonic_ns()
    for v in sup.venues:
        c = (blocks.get(f"feed-{v}") or {}).get("counters", {})
        age = (now - c["last_recv_ns"]) / 1e9 if c.get("last_recv_ns") else float("nan")
        pv = per_venue.get(v, {})
        t.add_row(v, str(c.get("messages", 0)), f"{age:.2f}", str(c.get("resyncs", 0)), str(pv.get("sent", 0)),
                  str(pv.get("fills", 0)), ", ".join(pos.get(v, [])) or "-", f"{pv.get('pnl', 0.0):.2f}")
    lat = (st.get("latency_us") or {})
    o = st.get("orders", {})
    t.caption = (f"orders sent {o.get('sent', 0)}  acked {o.get('acked', 0)}  rejected {o.get('rejected', 0)}  "
                 f"fills {o.get('fills', 0)}  pnl {st.get('pnl', {}).get('total', 0.0):.2f}  "
                 f"tick-to-order p50/p99 {lat.get('decision_p50', 0):.1f}/{lat.get('decision_p99', 0):.1f} us  "
                 f"order-to-ack p50/p99 {lat.get('ack_p50', 0):.0f}/{lat.get('ack_p99', 0):.0f} us")
    return t


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like every other bad input
        print(f"run.py: {message} (see python run.py --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _ArgParser(prog="python run.py", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="config.toml (default: built-in simulator setup)")
    ap.add_argument("--cpus", default="", help="cores to pin to, e.g. 2,3,4: feeds first, strategy last")
    ap.add_argument("--venues", choices=["sim", "live"], default=None,
                    help="sim: built-in simulator (default); live: the configured venue URLs and keys")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--summary", default=None, help="write a JSON summary here at exit")
    ap.add_argument("--strategy", default=None, help="module:Class instead of the built-in market maker")
    ap.add_argument("--prefix", default=None, help="shared-memory prefix (default system.shm_prefix)")
    ap.add_argument("--monitor-port", type=int, default=None, help="override [monitor].port (0 = any free port)")
    ap.add_argument("--sim-port-base", type=int, default=None, help="override [sim].port_base (0 = free ports)")
    ap.add_argument("--sim-urls", default=None, help="use a running simulator: its --ready-file JSON")
    ap.add_argument("--status-every", type=float, default=10.0, help="seconds between plain status lines")
    ap.add_argument("--no-tui", action="store_true", help="plain log lines even on a terminal")
    ap.add_argument("--status-snapshot", default=None, help="save the live status table at exit (.svg or text)")
    ap.add_argument("--check-config", action="store_true", help="validate the configuration and exit")

    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
