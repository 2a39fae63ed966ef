"""Live inspector for rings and counters blocks in shared memory (read-only, like AeronStat).

    python -m ringbuf.ringstat [--prefix hft] [--watch SECONDS] [--clean]

Prints every ring's positions, lag, overruns and spill state, and every counter.
`--clean` unlinks segments whose owning process is gone (left by a crashed run).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time

from ringbuf import shm as _shm
from ringbuf.counters import MAGIC as CTR_MAGIC
from ringbuf.counters import read_counters
from ringbuf.ring import MAGIC as RING_MAGIC
from ringbuf.ring import Ring, RingError


def ring_name(prefix: str, name: str) -> str:
    return f"{prefix}-ring-{name}"


def counters_name(prefix: str, role: str) -> str:
    return f"{prefix}-ctr-{role}"


def _magic(name: str) -> bytes:
    try:
        s = _shm.attach(name)
    except _shm.ShmError:
        return b""
    try:
        return bytes(s.buf[:8]) if len(s.buf) >= 8 else b""
    finally:
        s.close()


def snapshot(prefix: str = "hft") -> dict:
    rings, counters = {}, {}
    for seg in _shm.list_segments(prefix + "-"):
        magic = _magic(seg)
        if magic == RING_MAGIC:
            try:
                r = Ring.attach(seg)
            except RingError as e:
                rings[seg] = {"error": str(e)}
                continue
            tail, head = r.tail_position, r.head_position
            rings[seg] = {
                "mode": "lossless" if r.mode else "lossy",
                "capacity": r.capacity,
                "record_size": r.record_size,
                "tail_position": tail,
                "head_position": head,
                "lag": tail - head,
                "lost": r.lost,
                "spilled": r.spilled,
                "journal_read": r.journal_read,
                "producer_pid": r.producer_pid,
                "producer_alive": _shm.pid_alive(r.producer_pid),
            }
            r.close()
        elif magic == CTR_MAGIC:
            try:
                counters[seg] = read_counters(seg)
            except _shm.ShmError as e:
                counters[seg] = {"error": str(e)}
    return {"rings": rings, "counters": counters}


def clean(prefix: str) -> list[str]:
    removed = []
    for seg in _shm.list_segments(prefix + "-"):
        magic = _magic(seg)
        pid = 0
        try:
            s = _shm.attach(seg)
            if magic == RING_MAGIC:
                pid = struct.unpack_from("<q", s.buf, 24)[0]
            elif magic == CTR_MAGIC:
                pid = struct.unpack_from("<q", s.buf, 16)[0]
            s.close()
        except _shm.ShmError:
            continue
        if not _shm.pid_alive(pid):
            _shm.unlink(seg)
            removed.append(seg)
    return removed


def render(snap: dict) -> str:
    lines = []
    if snap["rings"]:
        lines.append(f"{'ring':32} {'mode':8} {'tail':>12} {'head':>12} {'lag':>8} {'lost':>10} {'spilled':>8} producer")
        for name, r in snap["rings"].items():
            if "error" in r:
                lines.append(f"{name:32} {r['error']}")
                continue
            alive = "alive" if r["producer_alive"] else ("none" if not r["producer_pid"] else "gone")
            lines.append(
                f"{name:32} {r['mode']:8} {r['tail_position']:>12} {r['head_position']:>12} {r['lag']:>8} "
                f"{r['lost']:>10} {r['spilled']:>8} {r['producer_pid']} ({alive})"
            )
    for name, c in snap["counters"].items():
        if "error" in c:
            lines.append(f"{name}: {c['error']}")
            continue
        age = (time.time_ns() - c["last_update_ns"]) / 1e9 if c["last_update_ns"] else float("nan")
        lines.append(f"{name} role={c['role']} pid={c['pid']} updated {age:.1f}s ago")
        for label, v in c["counters"].items():
            lines.append(f"  {label:40} {v:>16}")
    if not lines:
        lines.append("no rings or counters found")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ringbuf.ringstat", description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default="hft", help="segment name prefix (default hft)")
    ap.add_argument("--watch", type=float, default=0.0, help="refresh every SECONDS until Ctrl-C")
    ap.add_argument("--clean", action="store_true", help="unlink segments whose owner process is gone")
    args = ap.parse_args(argv)
    if args.clean:
        removed = clean(args.prefix)
        print(f"removed {len(removed)} stale segment(s)" + (": " + ", ".join(removed) if removed else ""))
        return 0
    try:
        while True:
            out = render(snapshot(args.prefix))
            if args.watch > 0:
                sys.stdout.write("\x1b[2J\x1b[H" + out + "\n")
                sys.stdout.flush()
                time.sleep(args.watch)
            else:
                print(out)
                return 0
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
