"""Integration: the feed process against the simulator with faults on for 60 s; at the end the
top-20 book of every symbol, rebuilt from the ring records, equals the simulator's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.instruments import Instruments
from feeds.book import Book
from ringbuf.counters import read_counters
from ringbuf.records import MD_DTYPE
from ringbuf.ring import Ring
from ringbuf.ringstat import counters_name, ring_name
from ringbuf.shm import ShmError
from sim.testing import run_sim, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENUES = ("binance", "okx", "gate")
SYMS = ["BTC-USDT", "ETH-USDT"]
FAULTS = [
    ("binance", "drop", 17, {"scope": "md"}), ("binance", "skip_seq", 7, {}), ("binance", "malformed", 13, {}),
    ("okx", "skip_seq", 9, {}), ("okx", "bad_checksum", 5, {}), ("okx", "server_shutdown", 23, {}),
    ("gate", "stall", 19, {"duration_s": 3}), ("gate", "skip_seq", 8, {}), ("gate", "malformed", 11, {}),
    ("okx", "drop", 29, {"scope": "md"}),
]


class Consumer:
    """Rebuilds one book per (venue, symbol) from the md rings, as a strategy would."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ins = Instruments(SYMS)
        self.rings: dict[str, Ring] = {}
        self.books = {(v, s): Book(8192, instr_id=self.ins.id_for(s)) for v in VENUES for s in SYMS}
        self.out = np.zeros(1 << 16, dtype=MD_DTYPE)

    def attach(self) -> bool:
        for v in VENUES:
            if v not in self.rings:
                try:
                    r = Ring.attach(ring_name(self.prefix, f"md-{v}"), 64)
                except Exception:  # noqa: BLE001 - not created yet
                    return False
                r.claim_consumer()
                self.rings[v] = r
        return True

    def drain(self) -> int:
        total = 0
        for v, r in self.rings.items():
            while True:
                n = r.read_batch(self.out)
                if n == 0:
                    break
                total += n
                for s in SYMS:
                    self.books[(v, s)].apply_records(self.out[:n])
        return total

    def close(self) -> None:
        for r in self.rings.values():
            r.close()

    def lost(self) -> int:
        return sum(r.lost for r in self.rings.values())


def books_equal(c: Consumer, control) -> list[str]:
    bad = []
    for v in VENUES:
        for s in SYMS:
            b = c.books[(v, s)]
            ref = control.book(v, s, depth=20)
            rb = np.array([[float(p), float(q)] for p, q in ref["bids"]]).reshape(-1, 2)
            ra = np.array([[float(p), float(q)] for p, q in ref["asks"]]).reshape(-1, 2)
            bids, asks = b.top(20)
            if not (b.valid and bids.shape == rb.shape and asks.shape == ra.shape and np.array_equal(bids, rb)
                    and np.array_equal(asks, ra)):
                bad.append(f"{v} {s} valid={b.valid} ours={bids[:2].tolist()}/{asks[:2].tolist()} "
                           f"sim={rb[:2].tolist()}/{ra[:2].tolist()}")
    return bad


def test_feeds_survive_faults_and_end_with_the_simulators_books(shm_prefix, tmp_path):
    with run_sim(symbols=SYMS, seed=5, rate=2000, okx_books="legacy") as sim:
        log_path = tmp_path / "feed.log"
        cmd = [sys.executable, "-m", "feeds.handler", "--prefix", shm_prefix, "--symbols", ",".join(SYMS),
               "--urls", json.dumps(sim.urls), "--stale-s", "1.5", "--ring-capacity", str(1 << 20),
               "--log-level", "WARNING"] + [a for v in VENUES for a in ("--venue", v)]
        env = dict(os.environ, PYTHONPATH=ROOT)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        consumer = Consumer(shm_prefix)
        try:
            wait_until(lambda: proc.poll() is not None or consumer.attach(), 60, what="feed rings")
            assert proc.poll() is None, log_path.read_text()[-3000:]
            for venue, name, every, params in FAULTS:
                sim.control.fault(venue, name, every_s=every, **params)
            t_end = time.monotonic() + 60
            while time.monotonic() < t_end:
                consumer.drain()
                time.sleep(0.01)
                assert proc.poll() is None, log_path.read_text()[-3000:]
            sim.control.clear_faults()
            sim.control.pause_md()
            mismatch: list[str] = []

            def settled():
                consumer.drain()
                mismatch[:] = books_equal(consumer, sim.control)
                return not mismatch

            try:
                wait_until(settled, 90, interval_s=0.2, what="books equal to the simulator's")
            except TimeoutError:
                raise AssertionError("\n".join(mismatch) + "\n" + log_path.read_text()[-3000:]) from None
            ctr = {v: read_counters(counters_name(shm_prefix, f"feed-{v}"))["counters"] for v in VENUES}
            assert consumer.lost() == 0
            # the faults really happened and were handled
            assert all(ctr[v]["gaps"] > 0 for v in VENUES), ctr
            assert ctr["okx"]["checksum_failures"] > 0, ctr
            assert ctr["binance"]["reconnects"] > 0 and ctr["okx"]["reconnects"] > 0, ctr
            assert ctr["gate"]["stale_reconnects"] > 0, ctr
            assert ctr["binance"]["parse_errors"] > 0 and ctr["gate"]["parse_errors"] > 0, ctr
            assert ctr["okx"]["rotations"] > 0, ctr
            assert all(ctr[v]["messages"] > 1000 for v in VENUES), ctr
        finally:
            consumer.close()
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise


def test_scheduled_rotation_misses_no_update(shm_prefix, tmp_path):
    """Connections rotated every 3 s (new one subscribed before the old one closes): no book is
    ever reset and the books still equal the simulator's."""
    with run_sim(symbols=SYMS, seed=9, rate=1500, okx_books="legacy") as sim:
        log_path = tmp_path / "feed.log"
        cmd = [sys.executable, "-m", "feeds.handler", "--prefix", shm_prefix, "--symbols", ",".join(SYMS),
               "--urls", json.dumps(sim.urls), "--rotate-s", "3", "--ring-capacity", str(1 << 20),
               "--log-level", "WARNING"] + [a for v in VENUES for a in ("--venue", v)]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=log,
                                    stderr=subprocess.STDOUT)
        consumer = Consumer(shm_prefix)
        try:
            wait_until(lambda: proc.poll() is not None or consumer.attach(), 60, what="feed rings")

            def rotated():
                consumer.drain()
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    c = {v: read_counters(counters_name(shm_prefix, f"feed-{v}"))["counters"] for v in VENUES}
                except ShmError:  # counters block created just after the ring
                    return False
                return all(c[v]["rotations"] >= 3 for v in VENUES) and c

            ctr = wait_until(rotated, 120, interval_s=0.01, what="three rotations per venue")
            sim.control.pause_md()
            mismatch: list[str] = []

            def settled():
                consumer.drain()
                mismatch[:] = books_equal(consumer, sim.control)
                return not mismatch

            try:
                wait_until(settled, 60, interval_s=0.2, what="books equal to the simulator's")
            except TimeoutError:
                raise AssertionError("\n".join(mismatch)) from None
            for v in VENUES:
                assert ctr[v]["resyncs"] == 0 and ctr[v]["reconnects"] == 0, ctr
        finally:
            consumer.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
