"""`run_backtest(...)`: the Python entry point behind `python -m backtest`.

Loads config, data and strategy, builds the latency model, runs the replay and writes the
report. Every user error becomes BacktestError with a one-line message.
"""

from __future__ import annotations

import sys

import numpy as np

from common.config import ConfigError, load
from common.enums import Exchange

from .data import DataError, generate, load_files, set_sim_specs
from .latency import LatencyError, LatencyModel
from .runner import Backtest

QUICK_S = 30.0
DEFAULT_LATENCY_US = 500.0


class BacktestError(ValueError):
    """Bad arguments, config, strategy or data (one-line message; the CLI exits 2)."""


def make_strategy(spec: str | None, cfg):
    from strategy.host import load_strategy

    if spec in (None, "", "market_making", "mm"):
        return load_strategy(None, cfg)
    if ":" not in spec:
        raise BacktestError(f"--strategy must be market_making or module:Class, got {spec!r}")
    try:
        return load_strategy(spec, cfg)
    except ConfigError as e:
        raise BacktestError(str(e)) from None


def make_latency(latency_us: float | None, latency_from: str | None, seed: int) -> LatencyModel:
    try:
        if latency_from:
            return LatencyModel.from_file(latency_from, seed)
        return LatencyModel.constant(DEFAULT_LATENCY_US if latency_us is None else latency_us, seed)
    except LatencyError as e:
        raise BacktestError(str(e)) from None


class _Progress:
    """A rich progress bar on stderr (long runs); a no-op object when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.tasks: dict[str, int] = {}
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                                TimeRemainingColumn(), transient=True)
            self.bar.start()

    def cb(self, name: str):
        if self.bar is None:
            return None

        def update(done: int, total: int) -> None:
            t = self.tasks.get(name)
            if t is None:
                t = self.tasks[name] = self.bar.add_task(name, total=total)
            self.bar.update(t, completed=done, total=total)

        return update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_backtest(data: str | None = None, generate_s: float | None = None, config: str | None = None,
                 strategy=None, latency_us: float | None = None, latency_from: str | None = None, seed: int = 1,
                 report_dir: str | None = None, quick: bool = False, fees_bps: dict | None = None,
                 rate: float | None = None, progress: bool | None = None, plots: bool = True,
                 records: np.ndarray | None = None, timer_ms: float | None = None):
    """Run one backtest; returns (summary dict, Backtest). `strategy` is a spec string or a
    Strategy instance; `records` (MD_DTYPE, receive-time order) replaces --data/--generate."""
    from strategy.api import Strategy
    from strategy.host import build_instruments

    try:
        cfg = load(config)
    except ConfigError as e:
        raise BacktestError(f"config: {e}") from None
    instruments = build_instruments(cfg)
    for s in cfg.sim.symbols:
        instruments.id_for(s)
    lat = make_latency(latency_us, latency_from, seed)
    strat = strategy if isinstance(strategy, Strategy) else make_strategy(strategy, cfg)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _Progress(bool(progress))
    try:
        if records is not None:
            recs, info = records, {"source": "records", "records": int(records.shape[0]), "malformed": 0}
            generated = False
        elif data:
            try:
                recs, info = load_files(data)
            except DataError as e:
                raise BacktestError(str(e)) from None
            generated = False
        else:
            seconds = 60.0 if generate_s is None else generate_s
            if quick:
                seconds = min(seconds, QUICK_S)
            try:
                recs, info = generate(list(cfg.sim.symbols), seconds, seed, instruments,
                                      rate=rate if rate is not None else cfg.sim.rate,
                                      progress=bar.cb("generating"))
            except DataError as e:
                raise BacktestError(str(e)) from None
            generated = True
        if quick and not generated and recs.shape[0]:
            t = recs["recv_ts_ns"]
            recs = recs[: int(np.searchsorted(t, t[0] + int(QUICK_S * 1e9), side="left"))]
        venues = sorted({int(v) for v in np.unique(recs["venue_id"]) if 0 < int(v) < 4}) if recs.shape[0] else []
        set_sim_specs(instruments, instruments.symbols(), venues or [int(v) for v in Exchange])
        bt = Backtest(cfg, instruments, strat, recs, lat, generated, fees_bps=fees_bps, timer_ms=timer_ms,
                      progress=bar.cb("replaying"))
        summary = bt.run()
    finally:
        bar.close()
    summary["events_per_s"] = round(bt.n / bt.wall_s) if bt.wall_s > 0 else 0
    summary["wall_s"] = round(bt.wall_s, 3)
    summary["setup_s"] = round(bt.setup_s, 3)  # per-venue books and column lists, before the replay
    summary["data"] = {k: v for k, v in info.items() if k != "files"}
    summary["strategy"] = strategy if isinstance(strategy, str) else type(strat).__module__ + ":" + type(strat).__name__
    summary["seed"] = seed
    if report_dir:
        from .report import write_report

        try:
            write_report(bt, summary, report_dir, plots=plots and not quick)
        except OSError as e:
            raise BacktestError(f"cannot write the report to {report_dir}: {e.strerror or e}") from None
    return summary, bt
