"""Backtest replay speed: market-data records replayed per second, idle strategy and market maker.

    .venv/bin/python -m benches.bench_backtest [--seconds 150] [--repeat 3]
    .venv/bin/pytest benches/bench_backtest.py --benchmark-only -q

The same generated records (the simulator's generator, seed 3) are replayed by: the baseline,
a plain Python loop that unpacks each record with MD_STRUCT and updates a dict of best
bid/ask (what a naive replayer does, with no strategy, risk or matching at all); the backtest
with an idle strategy (base Strategy: numpy fast path); the backtest with the built-in market
maker (per-record host, rms, matching engine, queue model). Prints events/s for each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ringbuf import records as R


def make_records(seconds: float = 150.0, seed: int = 3) -> np.ndarray:
    from backtest.data import generate
    from common.config import load
    from strategy.host import build_instruments

    cfg = load(None)
    recs, _ = generate(list(cfg.sim.symbols), seconds, seed, build_instruments(cfg), rate=2000.0)
    return recs


def baseline_naive(recs: np.ndarray) -> float:
    """Per-record Python unpack + dict update; returns seconds."""
    buf = memoryview(recs.view(np.uint8).reshape(-1))
    unpack = R.MD_STRUCT.unpack_from
    top: dict[tuple[int, int], tuple[float, float]] = {}
    t0 = time.perf_counter()
    for off in range(0, recs.shape[0] * 64, 64):
        t = unpack(buf, off)
        if t[0] == R.KIND_QUOTE:
            top[(t[2], t[4])] = (t[9], t[11])
    return time.perf_counter() - t0


def backtest_run(recs: np.ndarray, strategy) -> tuple[float, dict]:
    from backtest.api import run_backtest

    s, bt = run_backtest(records=recs, strategy=strategy, progress=False, seed=1, plots=False)
    return bt.wall_s, s


def main(argv: list[str] | None = None) -> int:
    from strategy.api import Strategy

    ap = argparse.ArgumentParser(prog="python -m benches.bench_backtest")
    ap.add_argument("--seconds", type=float, default=150.0, help="generated market seconds (default 150)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    recs = make_records(args.seconds)
    print(f"records: {recs.shape[0]} ({args.seconds:g} s of generated market, made in "
          f"{time.perf_counter() - t0:.1f} s)")
    rows = []
    for _ in range(args.repeat):
        base = baseline_naive(recs)
        idle, _s = backtest_run(recs, Strategy())
        mm, s = backtest_run(recs, "market_making")
        rows.append((recs.shape[0] / base, recs.shape[0] / idle, recs.shape[0] / mm, s["fills"]))
        print(f"baseline naive loop {rows[-1][0]:>12,.0f} ev/s | backtest idle {rows[-1][1]:>12,.0f} ev/s | "
              f"backtest market maker {rows[-1][2]:>10,.0f} ev/s ({s['fills']} fills)")
    med = np.median(np.array(rows), axis=0)
    print(f"median of {args.repeat}: baseline {med[0]:,.0f} ev/s, idle {med[1]:,.0f} ev/s, "
          f"market maker {med[2]:,.0f} ev/s")
    return 0


# ---- pytest-benchmark -------------------------------------------------------------------------
_RECS = None


def _recs():
    global _RECS
    if _RECS is None:
        _RECS = make_records(20.0)
    return _RECS


def test_bench_backtest_idle(benchmark):
    from strategy.api import Strategy

    recs = _recs()
    benchmark.extra_info["records"] = int(recs.shape[0])
    benchmark.pedantic(backtest_run, args=(recs, Strategy()), rounds=3, iterations=1)


def test_bench_backtest_market_maker(benchmark):
    recs = _recs()
    benchmark.extra_info["records"] = int(recs.shape[0])
    benchmark.pedantic(backtest_run, args=(recs, "market_making"), rounds=1, iterations=1)


def test_bench_baseline_naive_loop(benchmark):
    recs = _recs()
    benchmark.pedantic(baseline_naive, args=(recs,), rounds=3, iterations=1)


if __name__ == "__main__":
    raise SystemExit(main())
