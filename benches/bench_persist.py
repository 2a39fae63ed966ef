"""Micro benchmarks (pytest-benchmark): building a binary COPY payload for 5,000 fills with numpy
vs a per-row Python text COPY baseline. No database needed.

    .venv/bin/pytest benches/bench_persist.py --benchmark-only -q
"""

from __future__ import annotations

import numpy as np
import pytest

from persist import pgcopy
from persist.testing import make_fills

N = 5000


@pytest.fixture(scope="module")
def fills() -> np.ndarray:
    return make_fills(1_000_000, N)


def _text_copy(recs: np.ndarray) -> bytes:
    out = []
    for f in recs.tolist():  # FILL_DTYPE field order
        out.append(f"{f[2]}\t{f[13].decode()}\t{f[14].decode()}\t{f[4]}\t{f[3]}\t{f[5]}\t{f[9]!r}\t{f[10]!r}\t"
                   f"{f[11]!r}\t{f[12].decode()}\t{f[15]!r}\t{f[7]}\t{f[8]}\t{f[1]}\n")
    return "".join(out).encode()


def test_encode_direct_binary(benchmark, fills):
    stmt, payload = benchmark(pgcopy.encode_direct, pgcopy.FILLS, fills)
    assert len(payload) > N * 100


def test_encode_staging_binary(benchmark, fills):
    payload = benchmark(pgcopy.FILLS.encode, fills)
    assert len(payload) > N * 100


def test_encode_text_per_row_baseline(benchmark, fills):
    payload = benchmark(_text_copy, fills)
    assert payload.count(b"\n") == N
