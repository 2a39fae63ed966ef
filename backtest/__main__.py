"""python -m backtest: replay recorded or generated market data through a strategy.

    python -m backtest [--data PATH | --generate SECONDS] [--config config.toml]
                       [--strategy market_making|module:Class] [--latency-us N | --latency-from FILE]
                       [--seed N] [--report DIR] [--quick] [--fees VENUE=MAKER/TAKER,...] [--rate N]
                       [--progress | --no-progress]

Prints a one-line summary and, with --report DIR, writes summary.json, fills.csv, PNG plots
and report.md. Bad arguments, config or data files: one-line error, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .api import BacktestError, run_backtest


def parse_fees(text: str) -> dict[int, tuple[float, float]]:
    from common.enums import Exchange

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, val = part.partition("=")
        m, sep2, t = val.partition("/")
        try:
            if not sep or not sep2:
                raise ValueError
            out[int(Exchange.from_name(name.strip()))] = (float(m), float(t))
        except (ValueError, KeyError):
            raise BacktestError(f"--fees: {part!r} is not VENUE=MAKER_BPS/TAKER_BPS (e.g. binance=8/10)") from None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backtest", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", help="a .md recording or a directory of them (e.g. data/md)")
    src.add_argument("--generate", type=float, metavar="SECONDS",
                     help="replay SECONDS of the simulator's generated market instead (default 60)")
    ap.add_argument("--config", default=None, help="config.toml (default: built-in simulator setup)")
    ap.add_argument("--strategy", default="market_making", help="market_making or module:Class")
    lat = ap.add_mutually_exclusive_group()
    lat.add_argument("--latency-us", type=float, default=None, metavar="N",
                     help="one-way latency of every leg (feed, order, ack) in microseconds (default 500)")
    lat.add_argument("--latency-from", default=None, metavar="FILE",
                     help="JSON latency samples or percentiles (all legs, or feed_us/order_us/ack_us)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generator and of latency sampling")
    ap.add_argument("--report", default=None, metavar="DIR", help="write summary.json, fills.csv, plots, report.md")
    ap.add_argument("--quick", action="store_true", help="first 30 s of data only, no plots (smoke runs)")
    ap.add_argument("--fees", default="", help="per-venue fees in bps, e.g. binance=8/10,okx=8/10 (default 8/10)")
    ap.add_argument("--rate", type=float, default=None, help="--generate: frames/s (default: [sim] rate)")
    prog = ap.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar")
    prog.add_argument("--no-progress", dest="progress", action="store_false")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    try:
        fees = parse_fees(args.fees)
        summary, _bt = run_backtest(data=args.data, generate_s=args.generate, config=args.config,
                                    strategy=args.strategy, latency_us=args.latency_us,
                                    latency_from=args.latency_from, seed=args.seed, report_dir=args.report,
                                    quick=args.quick, fees_bps=fees, rate=args.rate, progress=args.progress)
    except BacktestError as e:
        print(f"backtest: {e}", file=sys.stderr)
        return 2
    keys = ("records", "span_s", "pnl", "fees", "fills", "fill_ratio", "max_position", "max_drawdown",
            "orders_sent", "events_per_s")
    print("backtest: " + json.dumps({k: summary.get(k) for k in keys}))
    if args.report:
        print(f"backtest: report in {args.report}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
