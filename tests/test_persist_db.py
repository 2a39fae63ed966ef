"""persist/ against a real PostgreSQL (DATABASE_URL, else the embedded pgserver): migrations,
idempotent COPY writes, malformed records, order upserts, read-side queries, and the
persist process draining 100,000 fills exactly once, through a SIGKILL and a 30 s outage."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from persist import queries
from persist.db import EventWriter
from persist.schema import LATEST_VERSION, apply_migrations, schema_version
from persist.testing import (
    TcpProxy,
    as_raw,
    drop_schema,
    make_fills,
    make_order_events,
    make_position,
    new_schema_name,
    schema_url,
    wait_until,
)
from ringbuf import records as R
from ringbuf.ring import Ring
from ringbuf.ringstat import ring_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def surl(database_url):
    """A fresh schema of the test database, dropped afterwards."""
    name = new_schema_name("tp")
    yield schema_url(database_url, name)
    drop_schema(database_url, name)


def _count(url: str, table: str = "fills") -> int:
    try:
        with psycopg.connect(url, connect_timeout=5) as c:
            return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0
    except psycopg.OperationalError:
        return -1  # server not (yet) reachable


def _assert_exactly_once(url: str, n: int, start: int = 0) -> None:
    with psycopg.connect(url) as c:
        total, distinct, in_range = c.execute(
            "SELECT count(*), count(DISTINCT (venue, trade_id)), "
            "count(*) FILTER (WHERE substr(trade_id, 2)::bigint BETWEEN %s AND %s) FROM fills",
            (start, start + n - 1),
        ).fetchone()
    assert (total, distinct, in_range) == (n, n, n)


@pytest.mark.integration
def test_migrations_apply_once_and_are_idempotent(surl):
    with psycopg.connect(surl) as c:
        assert apply_migrations(c) == list(range(1, LATEST_VERSION + 1))
        assert apply_migrations(c) == []
        assert schema_version(c) == LATEST_VERSION
        assert c.execute("SELECT name FROM venues WHERE venue = 2").fetchone()[0] == "okx"
        # restart recovery's range query over fills can use the time index
        c.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in c.execute(
            "EXPLAIN SELECT venue, trade_id, event_ts_ns FROM fills WHERE event_ts_ns >= 1").fetchall())
        assert "fills_event_ts_brin" in plan


@pytest.mark.integration
def test_writes_are_idempotent_and_bad_records_are_skipped(surl):
    w = EventWriter(surl)
    batch = as_raw(make_fills(0, 1000))
    assert w.write(batch).rows == {"fills": 1000}
    w.write(batch)  # a replay after a crash: nothing new, nothing duplicated
    w.write(np.concatenate([batch[:10], batch[:10], as_raw(make_fills(1000, 5))]))  # duplicates inside a batch
    assert _count(surl) == 1005

    bad = as_raw(make_fills(2000, 6)).copy()
    f = bad.view(R.FILL_DTYPE).reshape(-1)
    f["trade_id"][0] = b""  # no key: refused
    f["trade_id"][1] = b"X\x00Y"  # NUL inside an id
    f["trade_id"][2] = b"\xff\xfe\x80"  # not UTF-8
    f["cl_ord_id"][3] = b"\xc3"  # truncated UTF-8 sequence
    unknown = bad[:1].copy()
    unknown[0, 0] = 77
    res = w.write(np.concatenate([bad, unknown]))
    assert res.bad == 2  # the empty key and the unknown kind; odd bytes are stored escaped
    with psycopg.connect(surl) as c:
        odd = {r[0] for r in c.execute("SELECT trade_id FROM fills WHERE trade_id NOT LIKE 'T%'").fetchall()}
        cl = c.execute("SELECT cl_ord_id FROM fills WHERE trade_id = 'T2003'").fetchone()[0]
    assert odd == {"X\\000Y", "\\377\\376\\200"} and cl == "\\303"
    assert _count(surl) == 1005 + 5
    w.close()


@pytest.mark.integration
def test_orders_keep_the_latest_event_and_queries_add_up(surl):
    w = EventWriter(surl)
    S = [int(x) for x in (1, 2, 3, 4, 7, 6)]  # PENDING_NEW NEW PARTIAL FILLED REJECTED CANCELED
    ev = make_order_events(["a", "a", "a", "b", "c", "c"], [S[0], S[1], S[3], S[4], S[1], S[5]],
                           filled=[0, 0, 0.01, 0, 0, 0])
    ev["event_seq"] = [1, 2, 3, 1, 1, 2]
    # the newest event of "a" arrives first, its older events after (a journal replay)
    w.write(as_raw(ev[[2]]))
    w.write(as_raw(ev[[0, 1, 3, 4, 5]]))
    okx = make_order_events(["d"], [S[2]], venue_id=2, filled=[0.004])
    w.write(as_raw(okx))
    fills = make_fills(0, 4)
    fills["cl_ord_id"] = b"a"
    fills["qty"] = 0.0025
    w.write(as_raw(fills))
    w.write(np.concatenate([as_raw(make_position(1, 1, 0.2, 200)), as_raw(make_position(1, 1, 0.1, 100))]))
    with psycopg.connect(surl) as c:
        rows = dict(c.execute("SELECT cl_ord_id, state FROM orders").fetchall())
        assert rows == {"a": 4, "b": 7, "c": 6, "d": 3}
        assert c.execute("SELECT count(*) FROM order_events").fetchone()[0] == 7
        assert c.execute("SELECT position FROM positions").fetchall() == [(0.2,)]
        stats = queries.order_stats(c)
    by = {(r["venue"], r["state"]): r["count"] for r in stats["orders_by_status"]}
    assert by == {("binance", "FILLED"): 1, ("binance", "REJECTED"): 1, ("binance", "CANCELED"): 1,
                  ("okx", "PARTIALLY_FILLED"): 1}
    assert stats["fills"]["fills"] == 4 and stats["fills"]["qty"] == pytest.approx(0.01)
    tot = stats["rates"]["total"]
    assert (tot["orders"], tot["rejected"], tot["accepted"], tot["filled"]) == (4, 1, 3, 2)
    assert tot["success_rate"] == pytest.approx(0.75) and tot["fill_rate"] == pytest.approx(2 / 3)
    assert stats["rates"]["venues"]["okx"]["fill_rate"] == 1.0
    w.close()


# ---- the persist process -----------------------------------------------------
def _config(tmp_path, extra: str = "") -> str:
    p = tmp_path / "persist.toml"
    p.write_text(f'[system]\ndata_dir = "{tmp_path / "data"}"\nlog_level = "INFO"\n'
                 f"[persist]\nbatch_size = 2000\nflush_ms = 20\n{extra}")
    return str(p)


def start_persist(tmp_path, prefix: str, db_url: str, cfg: str, redis_url: str | None = None,
                  md_venues: str = "", tag: str = "persist") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "persist.process", "--config", cfg, "--prefix", prefix, "--database-url", db_url]
    if redis_url:
        cmd += ["--redis-url", redis_url]
    if md_venues:
        cmd += ["--md-venues", md_venues]
    log = open(tmp_path / f"{tag}.log", "ab")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def start_producer(ring: str, count: int, start: int = 0, rate: float = 0.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "persist.testing", "produce", ring, str(count), "--start", str(start),
           "--rate", str(rate)]
    return subprocess.Popen(cmd, cwd=ROOT)


def stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def _log(tmp_path, tag: str = "persist") -> str:
    p = tmp_path / f"{tag}.log"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""


@pytest.mark.integration
@pytest.mark.slow
def test_100k_fills_through_the_ring_arrive_exactly_once(surl, shm_prefix, journal_dir, tmp_path):
    n = 100_000
    name = ring_name(shm_prefix, "events")
    ring = Ring.create(name, 1 << 13, R.EVENT_RECORD_SIZE, lossless=True)  # smaller than the stream: wraps
    persist = start_persist(tmp_path, shm_prefix, surl, _config(tmp_path))
    prod = start_producer(name, n)
    try:
        assert prod.wait(240) == 0
        wait_until(lambda: _count(surl) >= n or persist.poll() is not None, 300, 0.2, "100k fills in PostgreSQL")
        assert persist.poll() is None, _log(tmp_path)
        _assert_exactly_once(surl, n)
        assert ring.tail_position + ring.spilled == n  # what the producer wrote, ring plus spill journal
        wait_until(lambda: ring.head_position == ring.tail_position and ring.journal_read == ring.spilled, 60,
                   what="ring and spill journal fully consumed")
        from persist.process import status

        st = wait_until(lambda: (s := status(shm_prefix))["counters"].get("fills", 0) >= n and s, 30,
                        what="persist counters")
        assert st["db_up"] and st["healthy"] and st["counters"]["bad_records"] == 0
    finally:
        if prod.poll() is None:
            prod.kill()
        assert stop(persist) == 0, _log(tmp_path)
        ring.close()


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(surl, shm_prefix, journal_dir, tmp_path):
    n = 100_000
    name = ring_name(shm_prefix, "events")
    ring = Ring.create(name, 1 << 14, R.EVENT_RECORD_SIZE, lossless=True)
    cfg = _config(tmp_path)
    persist = start_persist(tmp_path, shm_prefix, surl, cfg)
    prod = start_producer(name, n, rate=8000)  # about 12 s of stream
    try:
        wait_until(lambda: _count(surl) >= 20_000, 240, 0.1, "the first 20k fills")
        persist.send_signal(signal.SIGKILL)
        persist.wait(30)
        mid = _count(surl)
        assert mid < n  # killed mid-stream
        persist = start_persist(tmp_path, shm_prefix, surl, cfg)
        assert prod.wait(300) == 0
        wait_until(lambda: _count(surl) >= n or persist.poll() is not None, 300, 0.2, "all fills after restart")
        assert persist.poll() is None, _log(tmp_path)
        _assert_exactly_once(surl, n)
    finally:
        if prod.poll() is None:
            prod.kill()
        stop(persist)
        ring.close()


@pytest.mark.integration
@pytest.mark.slow
def test_database_outage_of_30s_mid_stream_loses_and_duplicates_nothing(surl, shm_prefix, journal_dir, tmp_path):
    from persist.process import status

    n = 100_000
    proxy = TcpProxy(surl)
    name = ring_name(shm_prefix, "events")
    ring = Ring.create(name, 1 << 14, R.EVENT_RECORD_SIZE, lossless=True)
    persist = start_persist(tmp_path, shm_prefix, proxy.url, _config(tmp_path))
    prod = start_producer(name, n, rate=2000)  # about 50 s of stream
    try:
        wait_until(lambda: _count(surl) >= 10_000, 240, 0.1, "the first 10k fills")
        proxy.cut()
        t_cut = time.monotonic()
        st = wait_until(lambda: (s := status(shm_prefix))["journal_pending"] > 0 and not s["db_up"] and s, 60,
                        what="the outage to show in persist status")
        assert st["healthy"] is False and st["counters"]["db_errors"] >= 1
        frozen = _count(surl)
        while time.monotonic() - t_cut < 32:  # the database stays unreachable for more than 30 s
            time.sleep(0.5)
        assert _count(surl) == frozen  # nothing reached the database through the cut
        mid = status(shm_prefix)
        assert mid["journal_pending"] > 0 and mid["journal_bytes"] >= mid["journal_pending"] * 128
        proxy.restore()
        assert prod.wait(300) == 0
        wait_until(lambda: _count(surl) >= n or persist.poll() is not None, 300, 0.2, "all fills after the outage")
        assert persist.poll() is None, _log(tmp_path)
        _assert_exactly_once(surl, n)
        st = wait_until(lambda: (s := status(shm_prefix))["db_up"] and s["journal_pending"] == 0 and s, 60,
                        what="persist to report the database back and the journal replayed")
        assert st["counters"]["replayed"] > 0
        assert os.path.getsize(os.path.join(str(journal_dir), f"{shm_prefix}-persist.jnl")) == 0
    finally:
        if prod.poll() is None:
            prod.kill()
        proxy.restore()
        stop(persist)
        proxy.close()
        ring.close()


@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_with_the_database_down_journals_the_rest_and_the_next_run_replays_it(
        surl, shm_prefix, journal_dir, tmp_path):
    name = ring_name(shm_prefix, "events")
    ring = Ring.create(name, 1 << 12, R.EVENT_RECORD_SIZE, lossless=True)
    ring.claim_producer()
    proxy = TcpProxy(surl)
    cfg = _config(tmp_path)
    persist = start_persist(tmp_path, shm_prefix, proxy.url, cfg)
    try:
        ring.write_batch(make_fills(0, 1000))
        wait_until(lambda: _count(surl) >= 1000, 120, what="first batch")
        proxy.cut()
        ring.write_batch(make_fills(1000, 3000))
        jpath = os.path.join(str(journal_dir), f"{shm_prefix}-persist.jnl")
        wait_until(lambda: ring.head_position == ring.tail_position, 120, what="the ring drained into the journal")
        assert stop(persist) == 0, _log(tmp_path)
        assert os.path.getsize(jpath) == 3000 * 128
        proxy.restore()
        persist = start_persist(tmp_path, shm_prefix, surl, cfg)
        wait_until(lambda: _count(surl) >= 4000, 120, what="the journal replayed by the next run")
        _assert_exactly_once(surl, 4000)
    finally:
        stop(persist)
        proxy.close()
        ring.close()


@pytest.mark.integration
@pytest.mark.slow
def test_without_a_database_url_the_process_starts_an_embedded_server(shm_prefix, journal_dir, tmp_path):
    name = ring_name(shm_prefix, "events")
    ring = Ring.create(name, 1 << 10, R.EVENT_RECORD_SIZE, lossless=True)
    ring.claim_producer()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # run as root, pgserver runs postgres as its own user: the data dir's parents must be traversable
    data = tempfile.mkdtemp(prefix="hft-persist-emb-")
    os.chmod(data, 0o755)
    cfg = tmp_path / "emb.toml"
    cfg.write_text(f'[system]\ndata_dir = "{data}"\n[persist]\nbatch_size = 2000\nflush_ms = 20\n')
    cmd = [sys.executable, "-m", "persist.process", "--config", str(cfg), "--prefix", shm_prefix]
    log = open(tmp_path / "persist.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    pg_dir = Path(data) / "pg"
    url = f"postgresql://postgres:@/postgres?host={pg_dir}"
    try:
        ring.write_batch(make_fills(0, 300))
        wait_until(lambda: proc.poll() is not None or _count(url) >= 300,
                   180, 0.2, "fills in the embedded database")
        assert proc.poll() is None, _log(tmp_path)
        _assert_exactly_once(url, 300)
    finally:
        assert stop(proc) == 0, _log(tmp_path)
        ring.close()
    wait_until(lambda: not (pg_dir / "postmaster.pid").exists(), 60, 0.2, "the embedded server to stop with the process")
    shutil.rmtree(data, ignore_errors=True)


@pytest.mark.integration
def test_a_server_side_fault_keeps_the_batch_instead_of_dropping_it(surl):
    from persist.db import DbUnavailable

    w = EventWriter(surl)
    w.write(as_raw(make_fills(0, 10)))
    with psycopg.connect(surl, autocommit=True) as c:
        c.execute("ALTER TABLE fills RENAME TO fills_moved")
    with pytest.raises(DbUnavailable):
        w.write(as_raw(make_fills(10, 10)))  # not "bad records": the caller journals and retries
    with psycopg.connect(surl, autocommit=True) as c:
        c.execute("ALTER TABLE fills_moved RENAME TO fills")
    assert w.write(as_raw(make_fills(10, 10))).bad == 0
    assert _count(surl) == 20
    w.close()


@pytest.mark.integration
def test_parallel_writer_splits_fills_and_stays_exactly_once(surl):
    from persist.db import ParallelWriter

    w = ParallelWriter(surl, connections=2, min_split=1000)
    w.open()
    assert w.write(as_raw(make_fills(0, 4000))).rows == {"fills": 4000}
    assert w.writers[1].connected  # the second half went through the second connection
    res = w.write(as_raw(make_fills(3000, 4000)))  # first 1000 already stored: that part falls back
    assert res.rows == {"fills": 4000} and res.bad == 0 and w.fallbacks >= 1
    w.write(np.concatenate([as_raw(make_order_events(["p"], [2])), as_raw(make_fills(7000, 3000))]))  # mixed: one connection
    _assert_exactly_once(surl, 10_000)
    with psycopg.connect(surl) as c:
        assert c.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
    w.shutdown()


@pytest.mark.integration
def test_before_the_events_ring_exists_the_process_is_up_and_migrated(surl, shm_prefix, journal_dir, tmp_path):
    from persist.process import status

    persist = start_persist(tmp_path, shm_prefix, surl, _config(tmp_path))
    try:
        st = wait_until(lambda: (s := status(shm_prefix))["db_up"] and s, 120, what="db_up without an events ring")
        assert st["alive"] and st["healthy"]
        with psycopg.connect(surl) as c:
            assert schema_version(c) == LATEST_VERSION
        ring = Ring.create(ring_name(shm_prefix, "events"), 1 << 10, R.EVENT_RECORD_SIZE, lossless=True)
        ring.claim_producer()
        ring.write_batch(make_fills(0, 100))  # attached late, drained all the same
        wait_until(lambda: _count(surl) >= 100, 120, what="fills from a ring created after start")
        _assert_exactly_once(surl, 100)
    finally:
        assert stop(persist) == 0, _log(tmp_path)
    ring.close()
