"""Clocks: monotonic nanoseconds inside the host, wall-clock nanoseconds for records
that leave it (database, venues). One place so tests and benchmarks agree."""

from __future__ import annotations

import time

mono_ns = time.monotonic_ns
perf_ns = time.perf_counter_ns
wall_ns = time.time_ns


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
