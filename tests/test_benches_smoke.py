"""The end-to-end harnesses run and write the documented JSON: benches.tick_to_trade --quick and
benches.throughput --quick, once each, against the real simulator and processes.
Only shapes and counts are checked: a timing never decides a test. Two unit tests pin down the
jump/order pairing and the faster_fifo ring adapter the harness relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


@pytest.mark.integration
@pytest.mark.slow
def test_tick_to_trade_quick_json(tmp_path):
    out = tmp_path / "ttt.json"
    png = tmp_path / "ttt.png"
    p = _run(["benches.tick_to_trade", "--quick", "--json", str(out), "--plot", str(png)], 600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("floor", "pipeline", "faster_fifo", "naive"):
        for field in ("p50_us", "p99_us", "p999_us", "count"):
            assert field in r[key], (key, field)
        assert r[key]["count"] > 0, key
        assert r[key]["p50_us"] > 0
    for key in ("pipeline", "naive"):
        assert r["load"][key]["count"] > 0, key
        assert "p99_us" in r["load"][key]
    assert r["pipeline"]["order_to_ack"]["count"] > 0
    assert png.stat().st_size > 0
    assert "process layout" in p.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_throughput_quick_json(tmp_path):
    out = tmp_path / "thr.json"
    p = _run(["benches.throughput", "--quick", "--json", str(out)], 600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["orders_per_s"] > 0
    assert 0 < r["success_rate"] <= 1
    assert r["rss_mb_total"] > 0 and 0 < r["pss_mb_total"] <= r["rss_mb_total"]
    assert 0 < r["requests_acked_per_s"] and 0 < r["request_success_rate"] <= 1


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("args", [["benches.tick_to_trade", "--cpus", "x"],
                                  ["benches.tick_to_trade", "--phases", "nope"],
                                  ["benches.throughput", "--duration", "1"]])
def test_bad_arguments_exit_2(args):
    p = _run(args, 120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.unit
def test_jump_pairing_takes_the_first_order_inside_each_interval():
    from benches.tick_to_trade import tick_to_trade

    ms = 1_000_000
    probe = {"md": [{"venue": "okx", "symbol": "BTC-USDT", "kind": "bbo-tbt", "send_ns": t * ms}
                    for t in (100, 200, 300)]
            + [{"venue": "okx", "symbol": "BTC-USDT", "kind": "books", "send_ns": 99 * ms},
               {"venue": "okx", "symbol": "ETH-USDT", "kind": "bbo-tbt", "send_ns": 150 * ms}],
             "orders": [{"venue": "okx", "recv_ns": t * ms} for t in (50, 101, 102, 250, 260)]
             + [{"venue": "gate", "recv_ns": 201 * ms}]}
    r = tick_to_trade(probe, "BTC-USDT", 100 * ms)["okx"]
    assert r["pairs"] == [(100 * ms, 101 * ms), (200 * ms, 250 * ms)]
    assert r["jumps"] == 3 and r["missed"] == 1


@pytest.mark.unit
def test_faster_fifo_adapter_delivers_records_in_order():
    import numpy as np

    from benches.baselines.fifo_pipeline import QueueConsumer, QueueProducer, make_queue
    from ringbuf.records import BOOK_LEVEL_STRUCT, MD_STRUCT, QUOTE_STRUCT

    q = make_queue()
    prod, cons = QueueProducer(q), QueueConsumer(q)
    quote = prod.writer(QUOTE_STRUCT)
    put, publish = prod.batch_writer(BOOK_LEVEL_STRUCT)
    quote(1, 0, 2, 0, 1, 0, 10, 11, 1, 100.0, 1.0, 101.0, 2.0)
    for i in range(5):
        put(3, 0, 2, 1, 1, i, 10, 11, 2 + i, 100.0 - i, 1.0, 0, 0)
    assert publish() == 5
    assert cons.poll() == 0
    assert MD_STRUCT.unpack_from(cons.copy_buffer, 0)[8] == 1
    assert cons.poll() == 0 and MD_STRUCT.unpack_from(cons.copy_buffer, 0)[8] == 2
    assert cons.tail_position - cons.head_position == 4
    out = np.zeros((8, 64), dtype=np.uint8)
    assert cons.read_batch(out, 10) == 4
    assert [MD_STRUCT.unpack_from(out[i].tobytes())[8] for i in range(4)] == [3, 4, 5, 6]
    assert cons.poll() == -1
