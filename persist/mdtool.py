"""Reader tool for market-data recordings.

    python -m persist.mdtool list PATH        one line per file: venue, records, time span, size
    python -m persist.mdtool summary PATH     per file and in total: records by kind and instrument,
                                              time span, rate, sequence gaps

PATH is a file or a directory (searched for *.md). A bad file is reported on one
line and skipped (exit code 1); bad arguments exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from persist.recorder import MdFileError, list_md_files, open_md_file, read_header
from ringbuf import records as R

KIND_NAMES = {R.KIND_QUOTE: "quote", R.KIND_TRADE: "trade", R.KIND_BOOK_LEVEL: "book_level",
              R.KIND_BOOK_RESET: "book_reset"}


def _ts(ns: int) -> str:
    if ns <= 0:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}Z"


def summarise(path: str) -> dict:
    """Summary of one file (raises MdFileError)."""
    h = read_header(path)
    recs = open_md_file(path, allow_partial=True)
    out = {"path": path, "venue": h["venue"], "records": int(recs.shape[0]), "bytes": h["size"],
           "partial_bytes": h["partial_bytes"], "created_ns": h["created_ns"]}
    if recs.shape[0] == 0:
        out.update(first_recv_ns=0, last_recv_ns=0, kinds={}, instruments={}, seq_gaps=0, rate_per_s=0.0)
        return out
    recv = np.asarray(recs["recv_ts_ns"])
    first, last = int(recv.min()), int(recv.max())
    kinds, kc = np.unique(np.asarray(recs["kind"]), return_counts=True)
    instr, ic = np.unique(np.asarray(recs["instr_id"]), return_counts=True)
    # gaps: per instrument, book levels whose prev_seq (f-slot for BOOK_LEVEL) skips the last venue_seq
    gaps = 0
    book = recs[np.asarray(recs["kind"]) == R.KIND_BOOK_LEVEL].view(R.BOOK_LEVEL_DTYPE)
    for iid in np.unique(book["instr_id"]) if book.shape[0] else ():
        b = book[book["instr_id"] == iid]
        seq = np.asarray(b["venue_seq"])
        prev = np.asarray(b["prev_seq"])
        starts = np.flatnonzero(np.diff(seq) != 0) + 1  # first level of each message
        if starts.size:
            gaps += int(((prev[starts] > seq[starts - 1] + 1) & (prev[starts] > 0)).sum())
    span_s = (last - first) / 1e9
    out.update(
        first_recv_ns=first, last_recv_ns=last,
        kinds={KIND_NAMES.get(int(k), f"kind{int(k)}"): int(c) for k, c in zip(kinds, kc, strict=True)},
        instruments={int(i): int(c) for i, c in zip(instr, ic, strict=True)},
        seq_gaps=gaps, rate_per_s=(recs.shape[0] / span_s) if span_s > 0 else 0.0,
    )
    return out


def cmd_list(paths: list[str], out=sys.stdout) -> int:
    rc = 0
    print(f"{'file':60s} {'venue':8s} {'records':>10s} {'MB':>8s}  first recv -> last recv", file=out)
    for p in paths:
        try:
            h = read_header(p)
            recs = open_md_file(p, allow_partial=True)
            recv = np.asarray(recs["recv_ts_ns"]) if recs.shape[0] else np.zeros(1, dtype=np.int64)
            note = f"  (+{h['partial_bytes']} partial bytes)" if h["partial_bytes"] else ""
            print(f"{p:60s} {h['venue']:8s} {recs.shape[0]:>10d} {h['size'] / 1e6:>8.2f}  "
                  f"{_ts(int(recv.min()))} -> {_ts(int(recv.max()))}{note}", file=out)
        except MdFileError as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_summary(paths: list[str], out=sys.stdout) -> int:
    rc = 0
    total = 0
    kinds: dict[str, int] = {}
    for p in paths:
        try:
            s = summarise(p)
        except MdFileError as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 1
            continue
        total += s["records"]
        for k, v in s["kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
        span = (s["last_recv_ns"] - s["first_recv_ns"]) / 1e9
        print(f"{s['path']}", file=out)
        print(f"  venue {s['venue']}  records {s['records']}  span {span:.3f} s  rate {s['rate_per_s']:.0f}/s  "
              f"seq gaps {s['seq_gaps']}", file=out)
        print(f"  kinds {s['kinds']}  instruments {s['instruments']}", file=out)
        if s["partial_bytes"]:
            print(f"  note: {s['partial_bytes']} trailing bytes are a partial record (file being written?)",
                  file=out)
    print(f"total: {len(paths)} file(s), {total} records, kinds {kinds}", file=out)
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m persist.mdtool", description="List and summarise md recordings.")
    ap.add_argument("command", choices=["list", "summary"])
    ap.add_argument("path", help="a .md file or a directory of them (e.g. data/md)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and 2
    import os

    if not os.path.exists(args.path):
        print(f"error: {args.path} does not exist; give a .md file or a directory such as data/md", file=sys.stderr)
        return 2
    paths = list_md_files(args.path)
    if not paths:
        print(f"no .md files under {args.path}", file=sys.stderr)
        return 1
    return cmd_list(paths) if args.command == "list" else cmd_summary(paths)


if __name__ == "__main__":
    sys.exit(main())
