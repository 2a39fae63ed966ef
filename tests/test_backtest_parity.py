"""Parity with live: record a run of `python run.py` against the simulator, replay the recording
through the backtest with the latency measured in that run, compare fills and final positions.

Tolerances (and why they are not tighter):
- Fill count: |replay - live| <= 50% of live + 10. The recording starts when the recorder
  attaches (a few seconds after the strategy may already quote) and stops before the kill
  switch, so fills at both ends of the live run have no data to be replayed against; the
  latency is sampled from the run's order->ack percentiles (halved per leg) rather than paired
  with each order; live acks on this loaded 2-core machine have a tail of hundreds of ms
  that reorders requests; and the queue position is a model of the simulator's (identical
  rules, but the simulator sees our order at its true arrival time). A count outside this band
  means the replay is modelling something different from live (e.g. no queue model, or
  latency ignored), which is what this test exists to catch.
- Final position per symbol (summed over venues): |replay - live| <= 2 x max_position x venues.
  Each venue's position is bounded by the market maker's max_position and the sign depends
  on the last one or two fills, so the bound states that both runs stayed inside the same
  inventory limits with the same quoting, not that the last fill matched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
DURATION_S = float(os.environ.get("BACKTEST_PARITY_SECONDS", "60"))


def test_replay_of_a_recorded_run_agrees_with_live(tmp_path, shm_prefix):
    from common.config import load

    data = tmp_path / "data"
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(f'[system]\ndata_dir = "{data}"\nshm_prefix = "{shm_prefix}"\n')
    summary_path = tmp_path / "summary.json"
    r = subprocess.run([PY, "run.py", "--config", str(cfg_path), "--duration", str(DURATION_S), "--summary",
                        str(summary_path), "--sim-port-base", "0", "--monitor-port", "0", "--no-tui"],
                       cwd=ROOT, capture_output=True, text=True, timeout=DURATION_S + 240)
    assert r.returncode == 0, r.stderr[-3000:]
    live = json.loads(summary_path.read_text())
    md_dir = data / "md"
    assert any(md_dir.rglob("*.md")), "run.py recorded no market data"
    rep = tmp_path / "replay"
    b = subprocess.run([PY, "-m", "backtest", "--data", str(md_dir), "--config", str(cfg_path), "--latency-from",
                        str(summary_path), "--report", str(rep), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stderr[-3000:]
    replay = json.loads((rep / "summary.json").read_text())
    live_fills = int(live["orders"]["fills"])
    bt_fills = int(replay["fills"])
    print(f"live fills {live_fills}, replay fills {bt_fills}; replay {replay['records']} records "
          f"over {replay['span_s']:.1f} s")
    assert live_fills > 0, "the live run made no fills: nothing to compare"
    assert abs(bt_fills - live_fills) <= 0.5 * live_fills + 10, (live_fills, bt_fills)
    cfg = load(str(cfg_path))
    n_venues = len(cfg.market_making.venues)
    bound = 2 * cfg.market_making.max_position * n_venues + 1e-9
    live_pos: dict[str, float] = {}
    for p in live.get("positions", []):
        live_pos[p["symbol"]] = live_pos.get(p["symbol"], 0.0) + float(p["qty"])
    for sym in set(live_pos) | set(replay["final_position_by_symbol"]):
        a = live_pos.get(sym, 0.0)
        bq = replay["final_position_by_symbol"].get(sym, 0.0)
        print(f"{sym}: live {a:+.6f} replay {bq:+.6f} (bound {bound})")
        assert abs(a - bq) <= bound, (sym, a, bq, bound)
