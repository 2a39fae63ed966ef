"""End to end: `python run.py` against the simulator with PostgreSQL, its endpoints, its
shutdown, its summary, and its recovery from SIGKILLed feed and strategy processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest

from ringbuf import shm
from sim.testing import run_sim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.integration, pytest.mark.slow]
VENUES = ("binance", "okx", "gate")


def _wait(cond, timeout_s: float, what: str, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _http(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


class Run:
    """A `python run.py` subprocess against an external simulator, with its own data dir."""

    def __init__(self, tmp_path, database_url: str, sim, duration: float, extra_cfg: str = "") -> None:
        self.prefix = "e" + uuid.uuid4().hex[:8]
        self.data = tmp_path / "data"
        self.cfg = tmp_path / "config.toml"
        self.cfg.write_text(f'[system]\ndata_dir = "{self.data}"\nidle_strategy = "backoff"\n'
                            f'[monitor]\nauth_token = "tok"\n{extra_cfg}')
        self.urls = tmp_path / "sim.json"
        self.urls.write_text(json.dumps(sim.urls))
        self.summary = tmp_path / "summary.json"
        env = dict(os.environ, DATABASE_URL=database_url, LOG_LEVEL="INFO")
        env.pop("REDIS_URL", None)
        self.log = open(tmp_path / "run.log", "w")
        self.started_ns = time.time_ns()
        self.proc = subprocess.Popen(
            [sys.executable, "run.py", "--config", str(self.cfg), "--duration", str(duration),
             "--summary", str(self.summary), "--prefix", self.prefix, "--sim-urls", str(self.urls),
             "--monitor-port", "0", "--no-tui", "--status-every", "5"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.run_dir = self.data / "run" / self.prefix

    def status(self, role: str):
        return _read_json(str(self.run_dir / f"{role}.json"))

    def monitor_port(self) -> int:
        st = _wait(lambda: self.status("monitor-ready"), 90, "the monitor to listen")
        return st["port"]

    def wait_trading(self, timeout_s: float = 90):
        return _wait(lambda: (self.status("strategy") or {}).get("ready") and self.status("strategy"),
                     timeout_s, "the strategy to be ready")

    def finish(self, timeout_s: float = 180) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.log.close()

    def log_text(self) -> str:
        with open(self.log.name) as f:
            return f.read()


def _db_rows(database_url: str, since_ns: int) -> tuple[int, list[tuple]]:
    with psycopg.connect(database_url) as conn:
        n_orders = conn.execute("SELECT count(*) FROM orders WHERE first_ts_ns >= %s", (since_ns,)).fetchone()[0] \
            if _has_column(conn, "orders", "first_ts_ns") else \
            conn.execute("SELECT count(*) FROM orders WHERE last_ts_ns >= %s", (since_ns,)).fetchone()[0]
        fills = conn.execute("SELECT venue, trade_id FROM fills WHERE event_ts_ns >= %s", (since_ns,)).fetchall()
    return n_orders, fills


def _has_column(conn, table: str, column: str) -> bool:
    return conn.execute("SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                        (table, column)).fetchone() is not None


def test_run_end_to_end_against_the_simulator(tmp_path, fresh_database):
    database_url = fresh_database
    with run_sim(symbols=["BTC-USDT", "ETH-USDT"], seed=7, rate=1500) as sim:
        run = Run(tmp_path, database_url, sim, duration=25)
        try:
            port = run.monitor_port()
            run.wait_trading()
            # every endpoint answers with the documented shape
            code, ctype, body = _http(port, "/health")
            h = json.loads(body)
            assert code in (200, 503) and ctype.startswith("application/json")
            assert {"status", "components", "alerts"} <= set(h)
            assert {f"feed_{v}" for v in VENUES} | {"strategy", "trading", "database"} <= set(h["components"])
            _wait(lambda: _http(port, "/health")[0] == 200, 60, "/health to report ok")
            code, ctype, body = _http(port, "/metrics")
            text = body.decode()
            assert code == 200 and ctype.startswith("text/plain")
            for needle in ('hft_messages{role="feed-binance"}', "hft_ring_tail_position", "hft_process_rss_bytes",
                           'hft_trading_state{state="ACTIVE"} 1'):
                assert needle in text, needle
            code, _, body = _http(port, "/strategies/status")
            st = json.loads(body)
            assert code == 200 and st["trading_state"] == "ACTIVE"
            s0 = st["strategies"][0]
            assert {"name", "state", "parameters", "positions", "open_orders", "pnl"} <= set(s0)
            assert s0["parameters"]["spread_bps"] > 0
            assert "sim-secret" not in body.decode()
            code, _, body = _http(port, "/orders/stats")
            os_ = json.loads(body)
            assert code == 200 and os_["database"] == "ok"
            assert {"by_status", "rates", "fills", "live", "latency_us"} <= set(os_)
        finally:
            rc = run.finish()
        log = run.log_text()
        assert rc == 0, log[-3000:]
        assert "sim-secret" not in log
        # no open order left at the venue, no segment left behind
        for v in VENUES:
            assert sim.control.open_orders(v) == [], v
        assert shm.list_segments(run.prefix) == []
        summ = json.loads(run.summary.read_text())
        o = summ["orders"]
        assert o["sent"] > 0 and o["acked"] > 0
        assert summ["peak_rss_mb_total"] < 512, summ["processes"]
        for role in ("strategy", "persist", "monitor", "feed0"):
            assert summ["processes"][role]["peak_rss_mb"] > 0
        # Postgres holds exactly the run's orders and fills
        n_orders, fills = _db_rows(database_url, summ["database"]["since_ns"])
        assert n_orders == o["sent"]
        assert len(fills) == len(set(fills)) == o["fills"]
        sim_fills = {(v, str(f["trade_id"])) for v in VENUES for f in sim.control.fills(v)}
        db_fills = {({1: "binance", 2: "okx", 3: "gate"}[v], t) for v, t in fills}
        assert db_fills == sim_fills


def test_sigkill_of_feed_and_strategy_processes_recovers(tmp_path, fresh_database):
    database_url = fresh_database
    with run_sim(symbols=["BTC-USDT", "ETH-USDT"], seed=11, rate=1500) as sim:
        run = Run(tmp_path, database_url, sim, duration=45)
        try:
            run.wait_trading()
            sup = _wait(lambda: run.status("supervisor"), 30, "the supervisor status")
            feed_pid = sup["processes"]["feed0"]["pid"]
            os.kill(feed_pid, signal.SIGKILL)
            sup = _wait(lambda: (s := run.status("supervisor")) and s["processes"]["feed0"]["starts"] >= 2
                        and s["processes"]["feed0"]["alive"] and s, 60, "the feed process to restart")
            assert sup["processes"]["feed0"]["pid"] != feed_pid
            strat_pid = run.status("strategy")["pid"]
            os.kill(strat_pid, signal.SIGKILL)
            st = _wait(lambda: (s := run.status("strategy")) and s.get("ready") and s["pid"] != strat_pid and s,
                       90, "the strategy to restart, reconcile and quote again")
            assert st["orders"]["unknown"] == 0
            # the restarted feed resynced its books: its messages keep flowing to the strategy
            time.sleep(3)
        finally:
            rc = run.finish()
        log = run.log_text()
        assert rc == 0, log[-3000:]
        assert "restarting feed0" in log and "restarting strategy" in log
        for v in VENUES:
            assert sim.control.open_orders(v) == [], v
        summ = json.loads(run.summary.read_text())
        assert summ["processes"]["strategy"]["starts"] == 2 and summ["processes"]["feed0"]["starts"] == 2
        # nothing lost: every fill the venue made during the run is in Postgres exactly once
        _, fills = _db_rows(database_url, run.started_ns)
        assert len(fills) == len(set(fills))
        sim_fills = {(v, str(f["trade_id"])) for v in VENUES for f in sim.control.fills(v)}
        db_fills = {({1: "binance", 2: "okx", 3: "gate"}[v], t) for v, t in fills}
        assert sim_fills, "the run made no fills"
        assert not (sim_fills - db_fills), f"fills missing from Postgres: {sorted(sim_fills - db_fills)}"
        assert not (db_fills - sim_fills), f"fills the venue never made: {sorted(db_fills - sim_fills)}"


@pytest.mark.parametrize("args, needle", [
    (["--cpus", "0,0"], "--cpus lists a core twice"),
    (["--cpus", "0"], "at least two cores"),
    (["--cpus", "999,998"], "cannot use"),
    (["--cpus", "a,b"], "comma-separated core numbers"),
    (["--duration", "-1"], "--duration"),
    (["--venues", "paper"], "invalid choice"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    p = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[strategy.market_making]\nspread_bps = -3\n")
    p = subprocess.run([sys.executable, "run.py", "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "strategy.market_making.spread_bps" in lines[0]


def test_live_without_keys_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_SECRET_KEY", "_PASSPHRASE"))}
    cfg = tmp_path / "c.toml"
    cfg.write_text('[exchanges.binance]\napi_key = "${BINANCE_API_KEY}"\nsecret_key = "${BINANCE_SECRET_KEY}"\n')
    p = subprocess.run([sys.executable, "run.py", "--config", str(cfg), "--venues", "live"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "BINANCE_API_KEY" in lines[0], p.stderr
