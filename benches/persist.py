"""Persistence harness: fills/s through the drain (binary COPY batches) vs row-by-row INSERT,
drain lag percentiles under a steady producer, recorder MB/s vs a per-record writer.

    python -m benches.persist [--quick] [--json FILE] [--database-url URL] [--batch-size N]

The database is --database-url, else DATABASE_URL, else an embedded pgserver. Everything
runs in a fresh schema that is dropped at the end. Both figures of a pair are measured in
the same run on the same server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import psycopg

from persist.db import EventWriter, ParallelWriter
from persist.drain import EventDrain
from persist.journal import OutageJournal
from persist.recorder import MdRecorder
from persist.testing import drop_schema, make_fills, new_schema_name, schema_url
from ringbuf import records as R
from ringbuf.ring import Ring


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor()}, {os.cpu_count()} cores"


def _ring(tag: str, capacity: int, lossless: bool = True, record_size: int = R.EVENT_RECORD_SIZE) -> Ring:
    return Ring.create(f"bench-{os.getpid()}-{tag}", capacity, record_size, lossless=lossless, replace=True)


def bench_copy(url: str, n: int, batch: int, jdir: str, runs: int, start: int, connections: int = 1) -> dict:
    """Fills already in the events ring -> drained to PostgreSQL; wall time until all are committed."""
    cap = 1 << max(12, (n - 1).bit_length())
    rates = []
    for run in range(runs):
        ring = _ring(f"copy{run}", cap)
        prod = Ring.attach(ring.name)
        prod.claim_producer()
        ring.claim_consumer()
        fills = make_fills(start + run * n, n)
        prod.write_batch(fills)
        w = ParallelWriter(url, connections, nice_backend=False)  # same priority as the baseline's backend
        w.open()
        j = OutageJournal(os.path.join(jdir, f"copy{run}.jnl"))
        d = EventDrain(ring, w, j, batch_size=batch, flush_ms=50)
        t0 = time.perf_counter()
        assert d.drain_all(deadline_s=600)
        dt = time.perf_counter() - t0
        assert d.totals.rows.get("fills") == n, d.totals
        rates.append(n / dt)
        w.shutdown()
        j.close()
        prod.close()
        ring.close()
        ring.unlink()
    return {"fills_per_s": statistics.median(rates), "runs": [round(r) for r in rates], "n": n,
            "batch_size": batch}


def bench_replay(url: str, n: int, batch: int, start: int) -> dict:
    """The same fills written again (a journal replay after a crash): every row is a duplicate."""
    w = EventWriter(url, nice_backend=False)  # same priority as the baseline's backend
    w.open()
    fills = make_fills(start, n)
    raw = np.ascontiguousarray(fills).view(np.uint8).reshape(-1, R.EVENT_RECORD_SIZE)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        w.write(raw[i : i + batch])
    dt = time.perf_counter() - t0
    w.close()
    return {"fills_per_s": n / dt, "n": n}


def bench_insert(url: str, n: int, batch: int, start: int) -> dict:
    """Baseline: one INSERT ... ON CONFLICT DO NOTHING statement per fill, a commit per batch."""
    fills = make_fills(start, n)
    rows = [(int(f["venue_id"]), f["trade_id"].decode(), f["cl_ord_id"].decode(), int(f["instr_id"]),
             int(f["side"]), int(f["liquidity"]), float(f["px"]), float(f["qty"]), float(f["fee"]),
             f["fee_asset"].decode(), float(f["realized_pnl"]), int(f["event_ts_ns"]), int(f["exch_ts_ns"]),
             int(f["flags"])) for f in fills]
    sql = ("INSERT INTO fills (venue, trade_id, cl_ord_id, instr_id, side, liquidity, px, qty, fee, fee_asset, "
           "realized_pnl, event_ts_ns, exch_ts_ns, flags) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
           "%s, %s) ON CONFLICT DO NOTHING")
    with psycopg.connect(url) as c:
        t0 = time.perf_counter()
        with c.cursor() as cur:
            for i, row in enumerate(rows, 1):
                cur.execute(sql, row, prepare=True)
                if i % batch == 0:
                    c.commit()
        c.commit()
        dt = time.perf_counter() - t0
    return {"fills_per_s": n / dt, "n": n}


def bench_lag(url: str, rate: float, seconds: float, batch: int, flush_ms: float, jdir: str,
              start: int) -> dict:
    """A producer process writes fills at `rate`/s; lag = commit time - the fill's event_ts_ns."""
    n = int(rate * seconds)
    ring = _ring("lag", 1 << 16)
    ring.claim_consumer()
    w = ParallelWriter(url, 2, nice_backend=False)  # as the persist process writes
    w.open()
    j = OutageJournal(os.path.join(jdir, "lag.jnl"))
    lags: list[np.ndarray] = []
    write_ms: list[float] = []
    real_write = w.write

    def timed_write(raw):
        t0 = time.perf_counter()
        try:
            return real_write(raw)
        finally:
            write_ms.append((time.perf_counter() - t0) * 1e3)

    w.write = timed_write  # type: ignore[method-assign]

    def on_commit(batch_raw: np.ndarray, now_ns: int) -> None:
        ts = batch_raw.view(R.FILL_DTYPE).reshape(-1)["event_ts_ns"]
        lags.append(now_ns - ts)

    d = EventDrain(ring, w, j, batch_size=batch, flush_ms=flush_ms, on_commit=on_commit)
    prod = subprocess.Popen([sys.executable, "-m", "persist.testing", "produce", ring.name, str(n),
                             "--start", str(start), "--rate", str(rate), "--chunk", "50"])
    from ringbuf.idle import BackOff

    idle = BackOff(max_spins=20, max_yields=20, min_sleep_ns=100_000, max_sleep_ns=2_000_000)
    while d.totals.rows.get("fills", 0) < n:
        idle.idle(d.step())
        if prod.poll() not in (None, 0):
            raise RuntimeError("producer failed")
    prod.wait(60)
    w.shutdown()
    j.close()
    ring.close()
    ring.unlink()
    all_lags = np.concatenate(lags) / 1e6
    p = np.percentile(all_lags, [50, 90, 99, 99.9])
    return {"rate_per_s": rate, "n": n, "batch_size": batch, "flush_ms": flush_ms,
            "p50_ms": float(p[0]), "p90_ms": float(p[1]), "p99_ms": float(p[2]), "p999_ms": float(p[3]),
            "max_ms": float(all_lags.max()), "batches": len(lags),
            "mean_batch": float(np.mean([x.shape[0] for x in lags])),
            "write_ms_p50": float(np.percentile(write_ms, 50)), "write_ms_p99": float(np.percentile(write_ms, 99))}


def bench_recorder(n: int, out_dir: str) -> dict:
    """md ring -> MdRecorder -> files, vs a baseline that writes each record with its own f.write."""
    ring = _ring("md", 1 << 16, lossless=False, record_size=R.MD_RECORD_SIZE)
    ring.claim_producer()
    rec = MdRecorder(ring.name, "binance", os.path.join(out_dir, "ours"), max_bytes=64 << 20, batch=8192)
    rec.poll()
    recs = np.zeros(8192, dtype=R.MD_DTYPE)
    recs["kind"] = R.KIND_QUOTE
    busy = 0.0
    done = 0
    while done < n:
        ring.write_batch(recs)
        done += recs.shape[0]
        t0 = time.perf_counter()
        while rec.poll():
            pass
        busy += time.perf_counter() - t0
    t0 = time.perf_counter()
    rec.close()
    busy += time.perf_counter() - t0
    assert rec.lost == 0 and rec.records == done
    ours = done * R.MD_RECORD_SIZE / busy / 1e6
    ring.close()
    ring.unlink()

    base_n = min(n, 200_000)
    arr = np.zeros(base_n, dtype=R.MD_DTYPE)
    path = os.path.join(out_dir, "baseline.md")
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for i in range(base_n):
            f.write(arr[i].tobytes())
    base = base_n * R.MD_RECORD_SIZE / (time.perf_counter() - t0) / 1e6
    return {"mb_per_s": ours, "records": done, "baseline_mb_per_s": base, "baseline": "per-record f.write"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.persist", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--batch-size", type=int, default=5000)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    url = args.database_url or os.environ.get("DATABASE_URL")
    embedded = None
    if not url:
        from persist.embedded import start_embedded_postgres

        embedded = start_embedded_postgres(os.path.join(tempfile.gettempdir(), f"hft-bench-pg-{os.getuid()}"))
        url = embedded.url
    schema = new_schema_name("bench")
    surl = schema_url(url, schema)
    n_copy, runs, n_insert, lag_s = (50_000, 2, 5_000, 3.0) if args.quick else (200_000, 3, 20_000, 10.0)
    n_md = 1_000_000 if args.quick else 4_000_000
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpu": _cpu(),
                 "command": "python -m benches.persist" + (" --quick" if args.quick else ""),
                 "database": "embedded pgserver" if embedded else "DATABASE_URL server"}
    try:
        with tempfile.TemporaryDirectory(prefix="hft-bench-persist-") as tmp:
            EventWriter(surl).open()  # migrations
            print(f"database: {out['database']}; schema {schema}; batch {args.batch_size}")
            out["copy"] = bench_copy(surl, n_copy, args.batch_size, tmp, runs, start=0)
            print(f"copy   drain (binary COPY batches): {out['copy']['fills_per_s']:>10,.0f} fills/s  "
                  f"runs {out['copy']['runs']}")
            out["copy_2conn"] = bench_copy(surl, n_copy, args.batch_size, tmp, runs, start=5_000_000, connections=2)
            print(f"copy   drain, 2 connections:        {out['copy_2conn']['fills_per_s']:>10,.0f} fills/s  "
                  f"runs {out['copy_2conn']['runs']}  (what the persist process uses)")
            out["insert"] = bench_insert(surl, n_insert, args.batch_size, start=10_000_000)
            print(f"insert baseline (row by row):       {out['insert']['fills_per_s']:>10,.0f} fills/s  "
                  f"({out['copy']['fills_per_s'] / out['insert']['fills_per_s']:.1f}x slower than copy)")
            out["replay"] = bench_replay(surl, n_copy // 2, args.batch_size, start=0)
            print(f"replay of already-stored fills:     {out['replay']['fills_per_s']:>10,.0f} fills/s")
            for key, flush_ms, start in (("lag", 50.0, 20_000_000), ("lag_flush10", 10.0, 30_000_000)):
                out[key] = lg = bench_lag(surl, 20_000.0, lag_s, args.batch_size, flush_ms, tmp, start=start)
                print(f"drain lag at {lg['rate_per_s']:,.0f} fills/s (batch {lg['batch_size']}, flush "
                      f"{lg['flush_ms']:.0f} ms): p50 {lg['p50_ms']:.1f} ms  p90 {lg['p90_ms']:.1f}  "
                      f"p99 {lg['p99_ms']:.1f}  p99.9 {lg['p999_ms']:.1f}  max {lg['max_ms']:.1f}; "
                      f"{lg['batches']} batches of {lg['mean_batch']:.0f} on average, each written in "
                      f"{lg['write_ms_p50']:.1f} ms (p50), {lg['write_ms_p99']:.1f} ms (p99)")
            out["recorder"] = bench_recorder(n_md, tmp)
            rc = out["recorder"]
            print(f"recorder ring -> file: {rc['mb_per_s']:,.0f} MB/s; baseline per-record write: "
                  f"{rc['baseline_mb_per_s']:,.0f} MB/s")
    finally:
        drop_schema(url, schema)
        if embedded is not None:
            embedded.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
