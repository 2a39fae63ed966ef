"""Shared-memory ring: single-process rules, wrap-around properties, and real multi-process runs."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbuf import shm
from ringbuf.records import (
    FILL_DTYPE,
    MD_DTYPE,
    QUOTE_STRUCT,
)
from ringbuf.ring import Ring, RingError
from tests import ringprocs

pytestmark = pytest.mark.unit


def _drain_lossless(c: Ring, limit: int = 4096) -> np.ndarray:
    """Everything available: ring first, then the spill journal (the documented order)."""
    out = []
    while True:
        b = c.peek_batch(limit)
        if len(b):
            out.append(b.copy())
            c.advance(len(b))
            continue
        j = c.read_journal(limit)
        if len(j):
            out.append(j.copy())
            c.journal_advance(len(j))
            continue
        break
    if not out:
        return np.empty(0, dtype=FILL_DTYPE)
    return np.concatenate(out).view(FILL_DTYPE).ravel()


def test_create_rejects_bad_geometry(shm_prefix):
    with pytest.raises(RingError, match="power of two"):
        Ring.create(f"{shm_prefix}-r", 1000, 64)
    with pytest.raises(RingError, match="multiple of 64"):
        Ring.create(f"{shm_prefix}-r", 1024, 60)


def test_attach_missing_segment_is_clear_error(shm_prefix):
    with pytest.raises(shm.ShmError, match="does not exist"):
        Ring.attach(f"{shm_prefix}-nothing")


def test_attach_foreign_segment_is_refused(shm_prefix):
    s = shm.create(f"{shm_prefix}-foreign", 4096)
    s.buf[:8] = b"NOTARING"
    s.close()
    with pytest.raises(RingError, match="not a ring"):
        Ring.attach(f"{shm_prefix}-foreign")


def test_attach_wrong_record_size_is_refused(shm_prefix):
    r = Ring.create(f"{shm_prefix}-r", 64, 64)
    with pytest.raises(RingError, match="64-byte records, expected 128"):
        Ring.attach(f"{shm_prefix}-r", record_size=128)
    r.close()


def test_attach_version_mismatch_is_refused(shm_prefix):
    r = Ring.create(f"{shm_prefix}-r", 64, 64)
    r.buffer[8] = 99  # layout version
    r.close()
    with pytest.raises(RingError, match="layout version 99"):
        Ring.attach(f"{shm_prefix}-r")


def test_attach_stale_producer_is_refused_when_asked(shm_prefix):
    r = Ring.create(f"{shm_prefix}-r", 64, 64)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=ringprocs.produce_quotes, args=(f"{shm_prefix}-r", 10))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    with pytest.raises(RingError, match="stale"):
        Ring.attach(f"{shm_prefix}-r", allow_stale=False)
    c = Ring.attach(f"{shm_prefix}-r")  # a drainer may still read what was left
    assert c.tail_position == 10
    c.close()
    r.close()


def test_duplicate_create_is_clear_error(shm_prefix):
    r = Ring.create(f"{shm_prefix}-r", 64, 64)
    with pytest.raises(shm.ShmError, match="already exists"):
        Ring.create(f"{shm_prefix}-r", 64, 64)
    r.close()


def test_lossy_single_reads_and_lapping(shm_prefix):
    p = Ring.create(f"{shm_prefix}-r", 16, 64)
    c = Ring.attach(f"{shm_prefix}-r", 64)
    p.claim_producer()
    for i in range(5):
        p.write(QUOTE_STRUCT, *ringprocs.quote_values(i))
    got = []
    while (off := c.poll()) >= 0:
        got.append(QUOTE_STRUCT.unpack_from(c.copy_buffer, off)[6])
    assert got == [0, 1, 2, 3, 4]
    assert c.lost == 0
    for i in range(5, 45):  # laps the reader by more than a whole ring
        p.write(QUOTE_STRUCT, *ringprocs.quote_values(i))
    got = []
    while (off := c.poll()) >= 0:
        v = QUOTE_STRUCT.unpack_from(c.copy_buffer, off)
        assert ringprocs.check_quote(v)
        got.append(v[6])
    # a reader cannot tell an idle producer from one rewriting the oldest slot, so after a lap
    # it keeps the newest capacity - 1 records
    assert got == list(range(30, 45))
    assert c.lost == 25
    p.close()
    c.close()


def test_end_of_batch_marks_last_available_record(shm_prefix):
    p = Ring.create(f"{shm_prefix}-r", 64, 64)
    c = Ring.attach(f"{shm_prefix}-r", 64)
    p.claim_producer()
    for i in range(3):
        p.write(QUOTE_STRUCT, *ringprocs.quote_values(i))
    flags = []
    c.read(lambda buf, off: flags.append(c.end_of_batch), 100)
    assert flags == [False, False, True]
    p.close()
    c.close()


def test_lossless_spills_to_journal_and_keeps_order(shm_prefix, journal_dir):
    p = Ring.create(f"{shm_prefix}-e", 8, 128, lossless=True)
    c = Ring.attach(f"{shm_prefix}-e", 128)
    p.claim_producer()
    p.spin_limit = 3
    for i in range(50):
        p.write(*_fill_args(i))
    assert p.spilled == 42
    first = _drain_lossless(c, 5)
    # after the journal drained, the producer returns to the ring
    for i in range(50, 56):
        p.write(*_fill_args(i))
    assert p.spilled == 42
    assert c.tail_position - c.head_position == 6
    second = _drain_lossless(c, 5)
    seen = np.concatenate([first["event_ts_ns"], second["event_ts_ns"]])
    assert seen.tolist() == list(range(56))
    p.close()
    c.close()


def test_drained_journal_gives_its_disk_space_back(shm_prefix, journal_dir):
    """Consumed journal bytes are punched out of the file (its size, and so every record's
    address, stays), and spilling again afterwards still reads back in order."""
    p = Ring.create(f"{shm_prefix}-j", 8, 128, lossless=True)
    c = Ring.attach(f"{shm_prefix}-j", 128)
    p.claim_producer()
    p.spin_limit = 1
    n1 = 24_000  # ~3 MB through the journal
    for i in range(n1):
        p.write(*_fill_args(i))
    path = c.journal_path()
    allocated_full = os.stat(path).st_blocks * 512
    assert allocated_full >= (n1 - 8) * 128
    first = _drain_lossless(c, 1000)
    st = os.stat(path)
    assert st.st_size >= (n1 - 8) * 128  # addresses unchanged
    assert st.st_blocks * 512 <= 64 * 1024  # the consumed records' blocks are free again
    for i in range(n1, n1 + 100):  # fill the ring and spill again at the old journal position
        p.write(*_fill_args(i))
    second = _drain_lossless(c, 7)
    seen = np.concatenate([first["event_ts_ns"], second["event_ts_ns"]])
    assert seen.tolist() == list(range(n1 + 100))
    p.close()
    c.close()


def _fill_args(i: int) -> tuple:
    from ringbuf.records import FILL_STRUCT, KIND_FILL

    return (FILL_STRUCT, KIND_FILL, 0, 1, 1, 3, 1, 0, i, i, 1.5, 0.25, 0.001, b"USDT", b"%d" % i, b"c", 0.0, 0)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["w", "wb", "r", "rb"]), st.integers(1, 40)), min_size=1, max_size=40),
       cap_pow=st.integers(2, 6))
def test_wraparound_lossless_property(ops, cap_pow):
    """Any interleaving of single/batch writes and reads delivers every record once, in order."""
    import uuid

    name = "t" + uuid.uuid4().hex[:10]
    cap = 1 << cap_pow
    p = Ring.create(name, cap, 64, lossless=True)
    c = Ring.attach(name, 64)
    p.claim_producer(journal_path=f"/tmp/{name}.jnl")
    p.spin_limit = 1
    written = 0
    read: list[int] = []
    try:
        for op, k in ops:
            if op == "w":
                for _ in range(k):
                    p.write(QUOTE_STRUCT, *ringprocs.quote_values(written))
                    written += 1
            elif op == "wb":
                arr = np.zeros(k, dtype=MD_DTYPE)
                arr["venue_seq"] = np.arange(written, written + k)
                p.write_batch(arr)
                written += k
            elif op == "r":
                for _ in range(k):
                    off = c.poll()
                    if off < 0:
                        break
                    read.append(QUOTE_STRUCT.unpack_from(c.buffer, off)[8])
                    c.release()
            else:
                out = np.zeros(k, dtype=MD_DTYPE)
                n = c.read_batch(out)
                read.extend(out["venue_seq"][:n].tolist())
            if c.tail_position == c.head_position and c.spilled > c.journal_read:
                j = c.read_journal(1000)
                read.extend(j.copy().view(MD_DTYPE)["venue_seq"].ravel().tolist())
                c.journal_advance(len(j))
        # drain the rest
        while True:
            out = np.zeros(64, dtype=MD_DTYPE)
            n = c.read_batch(out)
            if n:
                read.extend(out["venue_seq"][:n].tolist())
                continue
            j = c.read_journal(1000)
            if not len(j):
                break
            read.extend(j.copy().view(MD_DTYPE)["venue_seq"].ravel().tolist())
            c.journal_advance(len(j))
        assert read == list(range(written))
    finally:
        p.close()
        c.close()
        shm.unlink(name)
        if os.path.exists(f"/tmp/{name}.jnl"):
            os.unlink(f"/tmp/{name}.jnl")


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.integers(1, 100), min_size=1, max_size=30), cap_pow=st.integers(2, 6),
       read_every=st.integers(1, 4))
def test_wraparound_lossy_property(batches, cap_pow, read_every):
    """A lossy reader only ever sees whole records in increasing order; seen + lost == written."""
    import uuid

    name = "t" + uuid.uuid4().hex[:10]
    p = Ring.create(name, 1 << cap_pow, 64)
    c = Ring.attach(name, 64)
    p.claim_producer()
    written = 0
    seen: list[int] = []
    try:
        for bi, k in enumerate(batches):
            for _ in range(k):
                p.write(QUOTE_STRUCT, *ringprocs.quote_values(written))
                written += 1
            if bi % read_every == 0:
                out = np.zeros(17, dtype=MD_DTYPE)
                n = c.read_batch(out)
                seen.extend(out["venue_seq"][:n].tolist())
        while (off := c.poll()) >= 0:
            v = QUOTE_STRUCT.unpack_from(c.copy_buffer, off)
            assert ringprocs.check_quote(v)
            seen.append(v[8])
        assert seen == sorted(set(seen))
        assert len(seen) + c.lost == written
    finally:
        p.close()
        c.close()
        shm.unlink(name)


@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_events_ring_million_records_complete_in_order(shm_prefix, tmp_path):
    n = 1_000_000
    name = f"{shm_prefix}-events"
    c = Ring.create(name, 1 << 14, 128, lossless=True)
    c.claim_consumer()
    ctx = mp.get_context("spawn")
    prod = ctx.Process(target=ringprocs.produce_events, args=(name, n, str(tmp_path / "ev.jnl")))
    prod.start()
    expected = 0
    deadline = time.monotonic() + 240
    while expected < n and time.monotonic() < deadline:
        b = c.peek_batch(4096)
        if len(b):
            ids = b.view(FILL_DTYPE)["event_ts_ns"].ravel()
            assert (ids == np.arange(expected, expected + len(ids))).all(), "out of order or missing"
            expected += len(ids)
            c.advance(len(b))
            continue
        if c.spilled > c.journal_read:
            j = c.read_journal(4096, path=str(tmp_path / "ev.jnl"))
            ids = j.view(FILL_DTYPE)["event_ts_ns"].ravel()
            assert (ids == np.arange(expected, expected + len(ids))).all(), "journal out of order"
            expected += len(ids)
            c.journal_advance(len(j))
            continue
        time.sleep(0.0005)  # a slow consumer forces the producer to spill now and then
    prod.join(60)
    assert prod.exitcode == 0
    assert expected == n
    c.close()


@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_lossy_slow_reader_counts_overruns_and_sees_whole_records(shm_prefix):
    n = 400_000
    name = f"{shm_prefix}-md"
    c = Ring.create(name, 1 << 10, 64)
    c.claim_consumer()
    ctx = mp.get_context("spawn")
    prod = ctx.Process(target=ringprocs.produce_quotes, args=(name, n))
    prod.start()
    seen = 0
    last = -1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        off = c.poll()
        if off < 0:
            if not prod.is_alive() and c.tail_position == n and c.head_position >= n:
                break
            time.sleep(0)
            continue
        v = QUOTE_STRUCT.unpack_from(c.copy_buffer, off)
        assert ringprocs.check_quote(v), f"torn record {v}"
        assert v[6] > last
        last = v[6]
        seen += 1
        if seen % 50 == 0:
            time.sleep(0.0002)  # deliberately slow
    prod.join(30)
    assert prod.exitcode == 0
    assert c.lost > 0, "a slow reader must have been lapped"
    assert seen + c.lost == n
    c.close()


@pytest.mark.integration
def test_producer_sigkill_mid_stream_leaves_only_whole_records(shm_prefix, tmp_path):
    name = f"{shm_prefix}-md"
    c = Ring.create(name, 1 << 12, 64)
    c.claim_consumer()
    ctx = mp.get_context("spawn")
    ready = tmp_path / "ready"
    prod = ctx.Process(target=ringprocs.produce_forever, args=(name, str(ready)))
    prod.start()
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = 0
    while seen < 20_000 and time.monotonic() < deadline:
        off = c.poll()
        if off >= 0:
            assert ringprocs.check_quote(QUOTE_STRUCT.unpack_from(c.copy_buffer, off))
            seen += 1
    os.kill(prod.pid, signal.SIGKILL)
    prod.join(10)
    # whatever is left after the kill: each record whole, positions consistent
    out = np.zeros(1 << 12, dtype=MD_DTYPE)
    n = c.read_batch(out)
    for rec in out[:n]:
        assert ringprocs.check_quote(QUOTE_STRUCT.unpack(rec.tobytes()))
    while (off := c.poll()) >= 0:
        assert ringprocs.check_quote(QUOTE_STRUCT.unpack_from(c.copy_buffer, off))
    assert c.head_position == c.tail_position
    with pytest.raises(RingError, match="stale"):
        Ring.attach(name, allow_stale=False)
    c.close()


def test_batch_writer_publishes_a_frame_at_once(shm_prefix):
    p = Ring.create(f"{shm_prefix}-r", 8, 64)
    c = Ring.attach(f"{shm_prefix}-r", 64)
    p.claim_producer()
    put, publish = p.batch_writer(QUOTE_STRUCT)
    for i in range(3):
        put(*ringprocs.quote_values(i))
    assert c.poll() == -1, "nothing is visible before publish"
    assert publish() == 3 and publish() == 0
    got = []
    while (off := c.poll()) >= 0:
        got.append(QUOTE_STRUCT.unpack_from(c.copy_buffer, off)[6])
    assert got == [0, 1, 2]
    for i in range(3, 20):  # laps an 8-slot ring inside one batch: the reader keeps only whole records
        put(*ringprocs.quote_values(i))
    publish()
    got = []
    while (off := c.poll()) >= 0:
        v = QUOTE_STRUCT.unpack_from(c.copy_buffer, off)
        assert ringprocs.check_quote(v)
        got.append(v[6])
    assert got == list(range(13, 20)) and c.lost == 10
    with pytest.raises(RingError, match="lossy"):
        Ring.create(f"{shm_prefix}-l", 8, 64, lossless=True).batch_writer(QUOTE_STRUCT)
    p.close()
    c.close()


def test_observer_reads_without_touching_the_consumers_positions(shm_prefix):
    p = Ring.create(f"{shm_prefix}-r", 16, 64)
    p.claim_producer()
    w = p.writer(QUOTE_STRUCT)
    for i in range(4):
        w(*ringprocs.quote_values(i))
    c = Ring.attach(f"{shm_prefix}-r", 64)
    c.claim_consumer()
    obs = Ring.attach(f"{shm_prefix}-r", 64)
    obs.observe()  # starts at the tail: sees only what comes next
    for i in range(4, 40):
        w(*ringprocs.quote_values(i))
    out = np.zeros(64, dtype=MD_DTYPE)
    n = obs.read_batch(out)
    assert out["venue_seq"][:n].tolist() == list(range(25, 40)) and obs.lost == 21
    # the consumer's published head and lost count are untouched by the observer
    stat = Ring.attach(f"{shm_prefix}-r", 64)
    assert stat.head_position == 0 and stat.lost == 0
    got = []
    while (off := c.poll()) >= 0:
        got.append(QUOTE_STRUCT.unpack_from(c.copy_buffer, off)[8])
    assert got == list(range(25, 40)) and c.lost == 25
    assert stat.head_position == 40 and stat.lost == 25
    with pytest.raises(RingError, match="lossless"):
        Ring.create(f"{shm_prefix}-e", 8, 64, lossless=True).observe()
    for r in (p, c, obs, stat):
        r.close()


def test_sleeping_consumer_is_woken_by_one_datagram(shm_prefix):
    import select

    p = Ring.create(f"{shm_prefix}-r", 16, 64)
    p.claim_producer()
    c = Ring.attach(f"{shm_prefix}-r", 64)
    c.claim_consumer()
    sock = c.wake_listener()
    assert sock is not None
    assert Ring.attach(f"{shm_prefix}-r", 64).wake_listener() is None, "one listener per ring"
    w = p.writer(QUOTE_STRUCT)
    w(*ringprocs.quote_values(0))
    assert c.arm_sleep() is False, "records already waiting: do not sleep"
    c.poll()
    assert c.arm_sleep() is True
    w(*ringprocs.quote_values(1))
    w(*ringprocs.quote_values(2))
    assert select.select([sock], [], [], 10)[0], "the producer's publish woke the sleeper"
    assert sock.recv(16) == b"w"
    assert not select.select([sock], [], [], 0.05)[0], "one wake-up per sleep, not one per record"
    c.disarm_sleep()
    w(*ringprocs.quote_values(3))
    assert not select.select([sock], [], [], 0.05)[0], "an awake consumer gets no datagrams"
    sock.close()
    p.close()
    c.close()


def test_batch_writer_many_packs_runs_of_records_across_the_wrap(shm_prefix):
    from ringbuf.ring import MANY_RECORDS

    p = Ring.create(f"{shm_prefix}-r", 64, 64)
    c = Ring.attach(f"{shm_prefix}-r", 64)
    p.claim_producer()
    put, publish = p.batch_writer(QUOTE_STRUCT)
    seq = 0

    def run(n):
        nonlocal seq
        vals = []
        for i in range(seq, seq + n):
            vals.extend(ringprocs.quote_values(i))
        seq += n
        return vals

    put(*run(1)[:13])  # one single put, then runs that must follow it
    put.many(3, run(3))
    assert c.poll() == -1, "nothing is visible before publish"
    assert publish() == 4
    put.many(60, run(60))  # 4 + 60 = 64: ends exactly at the end of the ring
    put.many(5, run(5))  # starts at slot 0
    put.many(0, [])
    publish()
    got = []
    while (off := c.poll()) >= 0:
        v = QUOTE_STRUCT.unpack_from(c.copy_buffer, off)
        assert ringprocs.check_quote(v)
        got.append(v[6])
    assert got == list(range(6, 69)) and c.lost == 6  # a lapped reader keeps capacity - 1
    put.many(10, run(10))  # wraps: 69 % 64 = 5 -> slots 5..14, then one longer than a single pack
    put.many(MANY_RECORDS + 7, run(MANY_RECORDS + 7))
    publish()
    got = []
    while (off := c.poll()) >= 0:
        v = QUOTE_STRUCT.unpack_from(c.copy_buffer, off)
        assert ringprocs.check_quote(v)
        got.append(v[6])
    assert got == list(range(seq - 63, seq))
    with pytest.raises(struct.error):
        put.many(2, run(1))  # too few values: refused, nothing staged
    with pytest.raises(struct.error):
        put.many(MANY_RECORDS + 1, run(MANY_RECORDS))
    p.close()
    c.close()


def test_lossy_reader_refuses_slots_a_staged_batch_overwrote(shm_prefix):
    """A batch writes its slots before it publishes the tail: a reader a lap behind must not take
    a slot the unpublished batch already overwrote for a whole record of the old lap."""
    p = Ring.create(f"{shm_prefix}-r", 8, 64)
    c = Ring.attach(f"{shm_prefix}-r", 64)
    p.claim_producer()
    w = p.writer(QUOTE_STRUCT)
    for i in range(8):
        w(*ringprocs.quote_values(i))
    put, publish = p.batch_writer(QUOTE_STRUCT)
    put.sync()
    for i in range(8, 10):  # staged into slots 0 and 1, tail still 8
        put(*ringprocs.quote_values(i))
    got = []
    while (off := c.poll()) >= 0:
        got.append(QUOTE_STRUCT.unpack_from(c.copy_buffer, off)[6])
    assert got == [2, 3, 4, 5, 6, 7], "record 1 shared its slot with the staged 9: dropped"
    put.many(3, [v for i in range(10, 13) for v in ringprocs.quote_values(i)])  # slots 2..4
    publish()
    got = []
    while (off := c.poll()) >= 0:
        got.append(QUOTE_STRUCT.unpack_from(c.copy_buffer, off)[6])
    assert got == [8, 9, 10, 11, 12]
    # read_batch applies the same check: stage 4 over the oldest unread slots
    put.many(6, [v for i in range(13, 19) for v in ringprocs.quote_values(i)])
    publish()
    put.many(4, [v for i in range(19, 23) for v in ringprocs.quote_values(i)])  # slots of 11..14 (13, 14 unread)
    out = np.zeros(8, dtype=MD_DTYPE)
    n = c.read_batch(out)
    assert out["venue_seq"][:n].tolist() == [15, 16, 17, 18]
    p.close()
    c.close()
