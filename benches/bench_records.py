"""pytest-benchmark: record write with pack_into, single read, batch read (ring and raw)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from ringbuf import shm
from ringbuf.records import KIND_QUOTE, MD_DTYPE, QUOTE_DTYPE, QUOTE_STRUCT
from ringbuf.ring import Ring

VALUES = (KIND_QUOTE, 0, 1, 0, 7, 0, 1, 2, 3, 100.0, 1.0, 100.01, 2.0)


@pytest.fixture
def ring():
    name = "bb" + uuid.uuid4().hex[:8]
    r = Ring.create(name, 1 << 16, 64)
    r.claim_producer()
    c = Ring.attach(name)
    yield r, c
    c.close()
    r.close()
    shm.unlink(name)


def test_pack_into_64_bytes(benchmark):
    buf = bytearray(4096)
    benchmark(QUOTE_STRUCT.pack_into, buf, 64, *VALUES)


def test_baseline_json_dumps_of_same_record(benchmark):
    d = dict(zip(("kind", "flags", "venue", "side", "instr", "aux", "exch_ts", "recv_ts", "seq", "bid_px",
                  "bid_qty", "ask_px", "ask_qty"), VALUES, strict=True))
    benchmark(json.dumps, d)


def test_ring_write_single(benchmark, ring):
    r, _ = ring
    w = r.writer(QUOTE_STRUCT)
    benchmark(w, *VALUES)


def test_ring_write_generic(benchmark, ring):
    r, _ = ring
    benchmark(r.write, QUOTE_STRUCT, *VALUES)


def test_ring_single_read(benchmark, ring):
    r, c = ring
    w = r.writer(QUOTE_STRUCT)
    unpack = QUOTE_STRUCT.unpack_from

    def one():
        w(*VALUES)
        off = c.poll()
        return unpack(c.copy_buffer, off)

    benchmark(one)


def test_ring_batch_read_1024(benchmark, ring):
    r, c = ring
    batch = np.zeros(1024, dtype=MD_DTYPE)
    out = np.zeros(1024, dtype=MD_DTYPE)

    def one():
        r.write_batch(batch)
        return c.read_batch(out)

    n = benchmark(one)
    assert n == 1024


def test_numpy_view_field_read(benchmark):
    arr = np.zeros(1, dtype=QUOTE_DTYPE)
    rec = arr[0]
    benchmark(lambda: rec["bid_px"])
