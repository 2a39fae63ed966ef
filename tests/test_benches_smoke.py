"""The end-to-end harnesses run and write the documented JSON: benches.tick_to_trade --quick and
benches.throughput --quick, once each, against the real simulator and processes.
Only shapes and counts are checked: a timing never decides a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


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


def test_throughput_quick_json(tmp_path):
    out = tmp_path / "thr.json"
    p = _run(["benches.throughput", "--quick", "--json", str(out)], 600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["orders_per_s"] > 0
    assert 0 < r["success_rate"] <= 1
    assert r["rss_mb_total"] > 0


@pytest.mark.parametrize("args", [["benches.tick_to_trade", "--cpus", "x"],
                                  ["benches.tick_to_trade", "--phases", "nope"],
                                  ["benches.throughput", "--duration", "1"]])
def test_bad_arguments_exit_2(args):
    p = _run(args, 120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
