"""IPC harness: shared-memory ring vs faster_fifo.Queue, multiprocessing.Queue and Pipe.

    python -m benches.ipc [--quick] [--json FILE] [--plot FILE.png] [--cpus 0,1]

Producer and consumer are separate processes pinned to different cores. Latency: paced
sends of one 64-byte record carrying its send time (CLOCK_MONOTONIC, comparable across
processes), one-way percentiles from an HDR histogram. Throughput: as fast as possible,
records/s measured from the producer's first write to the consumer's last read.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import struct
import sys
import time
import uuid

import numpy as np

from ringbuf import shm
from ringbuf.records import KIND_QUOTE, MD_DTYPE, QUOTE_STRUCT
from ringbuf.ring import Ring

_TS = struct.Struct("<q")
TS_OFF = 8  # exch_ts_ns field: the send time travels in it


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def _record(i: int, ts: int) -> tuple:
    return (KIND_QUOTE, 0, 1, 0, 1, 0, ts, 0, i, 100.0, 1.0, 100.01, 1.0)


def _pace_until(t_ns: int) -> None:
    now = time.monotonic_ns
    while now() < t_ns:
        pass


# ---------------------------------------------------------------- ring
def ring_producer(name: str, n: int, mode: str, interval_ns: int, cpu: int | None, go) -> None:
    _pin(cpu)
    r = Ring.attach(name)
    r.claim_producer(journal_path=f"/tmp/{name}.jnl")
    r.spin_limit = 1 << 40  # throughput runs measure back-pressure, never spill
    pack = QUOTE_STRUCT
    mono = time.monotonic_ns
    go.wait()
    if mode == "latency":
        write = r.writer(pack)
        t = mono() + 1_000_000
        for i in range(n):
            t += interval_ns
            _pace_until(t)
            write(KIND_QUOTE, 0, 1, 0, 1, 0, mono(), 0, i, 100.0, 1.0, 100.01, 1.0)
    elif mode == "batch":
        batch = np.zeros(1024, dtype=MD_DTYPE)
        batch["kind"] = KIND_QUOTE
        done = 0
        batch["exch_ts_ns"][0] = mono()
        while done < n:
            k = min(1024, n - done)
            batch["venue_seq"][:k] = np.arange(done, done + k)
            written = r.write_batch(batch[:k])
            assert written == k
            done += k
            batch["exch_ts_ns"][0] = 0
    else:
        write = r.writer(pack)
        write(KIND_QUOTE, 0, 1, 0, 1, 0, mono(), 0, 0, 100.0, 1.0, 100.01, 1.0)
        for i in range(1, n):
            write(KIND_QUOTE, 0, 1, 0, 1, 0, 0, 0, i, 100.0, 1.0, 100.01, 1.0)
    r.close()


def ring_consumer(name: str, n: int, mode: str, cpu: int | None, ready, out) -> None:
    _pin(cpu)
    r = Ring.attach(name)
    r.claim_consumer()
    mono = time.monotonic_ns
    unpack = _TS.unpack_from
    ready.set()
    if mode == "latency":
        lat = np.empty(n, dtype=np.int64)
        i = 0
        buf = r.buffer
        lossless = r.mode == 1
        while i < n:
            off = r.poll()
            if off < 0:
                continue
            now = mono()
            src = buf if lossless else r.copy_buffer
            lat[i] = now - unpack(src, off + TS_OFF)[0]
            if lossless:
                r.release()
            i += 1
        out.send(("latency", lat))
    elif mode == "batch":
        outarr = np.zeros(4096, dtype=MD_DTYPE)
        got = 0
        t0 = 0
        while got < n:
            k = r.read_batch(outarr)
            if k:
                if not t0:
                    t0 = int(outarr["exch_ts_ns"][0])
                got += k
        out.send(("throughput", got, t0, mono(), r.lost))
    else:
        got = 0
        t0 = 0
        lossless = r.mode == 1
        buf = r.buffer
        while True:
            off = r.poll()
            if off < 0:
                if not lossless and got and r.tail_position >= n:
                    break
                continue
            if not t0:
                t0 = unpack(buf if lossless else r.copy_buffer, off + TS_OFF)[0]
            if lossless:
                r.release()
            got += 1
            if got + r.lost >= n:
                break
        out.send(("throughput", got, t0, mono(), r.lost))
    r.close()


# ---------------------------------------------------------------- queues
def _rec_bytes(i: int, ts: int) -> bytes:
    return QUOTE_STRUCT.pack(*_record(i, ts))


def queue_producer(kind: str, q, n: int, mode: str, interval_ns: int, cpu: int | None, go) -> None:
    _pin(cpu)
    mono = time.monotonic_ns
    send = q.send_bytes if kind == "pipe" else q.put
    go.wait()
    if mode == "latency":
        t = mono() + 1_000_000
        for i in range(n):
            t += interval_ns
            _pace_until(t)
            send(_rec_bytes(i, mono()))
    else:
        send(_rec_bytes(0, mono()))
        body = _rec_bytes(1, 0)
        for _ in range(1, n):
            send(body)


def queue_consumer(kind: str, q, n: int, mode: str, cpu: int | None, ready, out) -> None:
    _pin(cpu)
    mono = time.monotonic_ns
    unpack = _TS.unpack_from
    if kind == "pipe":
        recv = q.recv_bytes
    elif kind == "faster_fifo":
        def recv():
            return q.get(timeout=10)
    else:
        recv = q.get
    ready.set()
    if mode == "latency":
        lat = np.empty(n, dtype=np.int64)
        for i in range(n):
            b = recv()
            lat[i] = mono() - unpack(b, TS_OFF)[0]
        out.send(("latency", lat))
    else:
        b = recv()
        t0 = unpack(b, TS_OFF)[0]
        if kind == "faster_fifo":
            got = 1
            while got < n:
                got += len(q.get_many(timeout=10, max_messages_to_get=4096))
        else:
            for _ in range(1, n):
                recv()
            got = n
        out.send(("throughput", got, t0, mono(), 0))


# ---------------------------------------------------------------- runner
def _run_pair(target_p, args_p, target_c, args_c):
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    parent, child = ctx.Pipe(duplex=False)
    c = ctx.Process(target=target_c, args=(*args_c, ready, child))
    p = ctx.Process(target=target_p, args=(*args_p, go))
    c.start()
    p.start()
    if not ready.wait(60):
        raise RuntimeError("consumer did not start")
    time.sleep(0.05)
    go.set()
    if not parent.poll(300):
        p.kill()
        c.kill()
        raise RuntimeError("no result within 300 s")
    res = parent.recv()
    p.join(30)
    c.join(30)
    return res


def measure(transport: str, mode: str, n: int, interval_ns: int, cpus: tuple[int | None, int | None]):
    pc, cc = cpus
    if transport.startswith("shm_ring"):
        lossless = transport != "shm_ring_lossy"
        name = "bipc" + uuid.uuid4().hex[:8]
        ring = Ring.create(name, 1 << 16, 64, lossless=lossless)
        try:
            return _run_pair(ring_producer, (name, n, mode, interval_ns, pc),
                             ring_consumer, (name, n, mode, cc))
        finally:
            ring.close()
            shm.unlink(name)
    ctx = mp.get_context("spawn")
    if transport == "faster_fifo":
        import faster_fifo

        q = faster_fifo.Queue(max_size_bytes=64 * 1024 * 1024)
        qp = qc = q
    elif transport == "mp_queue":
        q = ctx.Queue()
        qp = qc = q
    elif transport == "mp_pipe":
        qc, qp = ctx.Pipe(duplex=False)
    else:
        raise ValueError(transport)
    kind = "pipe" if transport == "mp_pipe" else transport
    return _run_pair(queue_producer, (kind, qp, n, mode, interval_ns, pc),
                     queue_consumer, (kind, qc, n, mode, cc))


def percentiles(lat_ns: np.ndarray) -> dict:
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 60_000_000_000, 3)
    for v in lat_ns.tolist():
        h.record_value(max(1, int(v)))
    us = 1000.0
    return {
        "p50_us": h.get_value_at_percentile(50) / us,
        "p90_us": h.get_value_at_percentile(90) / us,
        "p99_us": h.get_value_at_percentile(99) / us,
        "p999_us": h.get_value_at_percentile(99.9) / us,
        "max_us": h.get_max_value() / us,
        "count": int(h.get_total_count()),
    }


def machine() -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def run(quick: bool, cpus: tuple[int | None, int | None]) -> dict:
    lat_n = 20_000 if quick else 100_000
    interval_ns = 20_000
    tp = {"shm_ring": 2_000_000 if quick else 5_000_000, "faster_fifo": 300_000 if quick else 1_000_000,
          "mp_queue": 150_000 if quick else 500_000, "mp_pipe": 300_000 if quick else 1_000_000}
    results: dict = {"machine": machine(), "cpus": list(cpus), "latency_interval_us": interval_ns / 1000}
    lat_samples = {}
    for transport in ("shm_ring", "faster_fifo", "mp_queue", "mp_pipe"):
        _, lat = measure(transport, "latency", lat_n, interval_ns, cpus)
        lat_samples[transport] = lat
        entry = percentiles(lat)
        _, got, t0, t1, lost = measure(transport, "throughput", tp[transport], 0, cpus)
        entry["throughput_per_s"] = got / ((t1 - t0) / 1e9)
        results[transport] = entry
        print(f"  {transport:12} p50 {entry['p50_us']:8.2f} us  p99 {entry['p99_us']:9.2f} us  "
              f"throughput {entry['throughput_per_s']:>12,.0f} /s", flush=True)
    # ring variants: batched numpy writes/reads, and lossy single writes
    _, got, t0, t1, lost = measure("shm_ring", "batch", tp["shm_ring"] * 4, 0, cpus)
    results["shm_ring"]["batch_throughput_per_s"] = got / ((t1 - t0) / 1e9)
    _, got, t0, t1, lost = measure("shm_ring_lossy", "throughput", tp["shm_ring"], 0, cpus)
    results["shm_ring"]["lossy_throughput_per_s"] = tp["shm_ring"] / ((t1 - t0) / 1e9)
    results["shm_ring"]["lossy_consumer_lost"] = int(lost)
    results["_samples"] = lat_samples
    return results


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, lat in results["_samples"].items():
        v = np.sort(lat) / 1000.0
        ax.plot(v, np.linspace(0, 1, len(v)), label=f"{name} (p50 {results[name]['p50_us']:.1f} us)")
    ax.set_xscale("log")
    ax.set_xlabel("one-way latency (us, log scale)")
    ax.set_ylabel("cumulative fraction")
    m = results["machine"]
    ax.set_title(f"IPC one-way latency, paced 64-byte records\n{m['cpu']}, {m['cores']} cores, {m['date']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.ipc", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (under 40 s)")
    ap.add_argument("--json", help="write results to FILE")
    ap.add_argument("--plot", help="write a latency CDF PNG to FILE")
    ap.add_argument("--cpus", default="", help="producer,consumer cores (default: the last two cores)")
    args = ap.parse_args(argv)
    ncpu = os.cpu_count() or 1
    if args.cpus:
        try:
            pc, cc = (int(x) for x in args.cpus.split(","))
        except ValueError:
            print("--cpus takes two core numbers, e.g. --cpus 0,1", file=sys.stderr)
            return 2
        avail = os.sched_getaffinity(0)
        if pc not in avail or cc not in avail or pc == cc:
            print(f"--cpus must name two distinct available cores from {sorted(avail)}", file=sys.stderr)
            return 2
        cpus = (pc, cc)
    else:
        cpus = (ncpu - 2, ncpu - 1) if ncpu >= 2 else (None, None)
    t = time.monotonic()
    m = machine()
    print(f"benches.ipc: {m['cpu']}, {m['cores']} cores, producer cpu {cpus[0]}, consumer cpu {cpus[1]}")
    res = run(args.quick, cpus)
    r = res["shm_ring"]
    ff = res["faster_fifo"]
    print(f"  shm_ring batch throughput {r['batch_throughput_per_s']:,.0f} /s, lossy single-write "
          f"{r['lossy_throughput_per_s']:,.0f} /s (consumer lost {r['lossy_consumer_lost']})")
    print(f"  ring p50 is {ff['p50_us'] / r['p50_us']:.1f}x lower than faster_fifo's; took {time.monotonic() - t:.1f} s")
    if args.plot:
        plot(res, args.plot)
    if args.json:
        out = {k: v for k, v in res.items() if k != "_samples"}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
