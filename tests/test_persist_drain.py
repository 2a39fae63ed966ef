"""The drain's ordering and acknowledgement logic with an in-memory sink (no database): the
ring head moves only after a write, the outage journal is replayed in order, the ring's spill
journal is read after the ring, a crash between write and advance only repeats records."""

from __future__ import annotations

import numpy as np
import pytest

from persist.db import DbUnavailable, WriteResult
from persist.drain import EventDrain
from persist.journal import OutageJournal
from persist.testing import make_fills
from ringbuf import records as R
from ringbuf.ring import Ring
from ringbuf.ringstat import ring_name

pytestmark = pytest.mark.unit


class MemorySink:
    """Stands in for EventWriter: keeps the trade ids it was given, in order; can be 'down'."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.down = False
        self.fallbacks = 0

    def open(self) -> None:
        if self.down:
            raise DbUnavailable("down")

    def write(self, raw: np.ndarray) -> WriteResult:
        if self.down:
            raise DbUnavailable("down")
        f = np.ascontiguousarray(raw).view(R.FILL_DTYPE).reshape(-1)
        self.ids.extend(int(t[1:]) for t in f["trade_id"])
        return WriteResult(rows={"fills": f.shape[0]})

    def close(self) -> None:
        pass


@pytest.fixture
def ring(shm_prefix, journal_dir):
    r = Ring.create(ring_name(shm_prefix, "events"), 64, R.EVENT_RECORD_SIZE, lossless=True)
    r.claim_consumer()
    p = Ring.attach(r.name)
    p.claim_producer()
    p.spin_limit = 10  # spill to the ring's journal quickly when full
    yield r, p
    p.close()
    r.close()


def _drain(ring, sink, tmp_path, **kw):
    j = OutageJournal(str(tmp_path / "out.jnl"))
    d = EventDrain(ring, sink, j, batch_size=kw.pop("batch_size", 16), flush_ms=0, max_backoff_s=0.0, **kw)
    return d, j


def test_ring_then_spill_journal_in_order(ring, tmp_path):
    r, p = ring
    sink = MemorySink()
    d, _ = _drain(r, sink, tmp_path)
    p.write_batch(make_fills(0, 500))  # 64 fit the ring, the rest spill to its journal
    assert p.spilled == 500 - 64
    assert d.drain_all(30)
    assert sink.ids == list(range(500))
    assert r.journal_read == r.spilled and r.head_position == r.tail_position


def test_outage_journal_keeps_order_and_loses_nothing(ring, tmp_path):
    r, p = ring
    sink = MemorySink()
    d, j = _drain(r, sink, tmp_path)
    p.write_batch(make_fills(0, 40))
    d.drain_all(30)
    sink.down = True
    for k in range(40, 400, 40):  # the stream goes on during the outage
        p.write_batch(make_fills(k, 40))
        d.drain_all(1)
    assert not d.db_up and j.pending == 360 and r.head_position == r.tail_position
    sink.down = False
    p.write_batch(make_fills(400, 30))
    assert d.drain_all(30)
    assert sink.ids == list(range(430)) and j.pending == 0


def test_a_crash_between_write_and_advance_only_repeats(ring, tmp_path):
    r, p = ring
    sink = MemorySink()
    d, j = _drain(r, sink, tmp_path, batch_size=20)
    p.write_batch(make_fills(0, 50))
    batch, source, _ = d._source_batch(20)
    sink.write(batch)  # committed ... and the process dies before advancing the head
    j.close()
    consumer = Ring.attach(r.name)  # the restarted process
    consumer.claim_consumer()
    d2, _ = _drain(consumer, sink, tmp_path / "restart")
    assert d2.drain_all(30)
    assert sorted(set(sink.ids)) == list(range(50))  # nothing lost
    assert sink.ids[:20] == sink.ids[20:40] == list(range(20))  # the unacknowledged batch came twice
    consumer.close()


def test_small_batches_wait_for_flush_ms(ring, tmp_path):
    r, p = ring
    sink = MemorySink()
    j = OutageJournal(str(tmp_path / "o.jnl"))
    d = EventDrain(r, sink, j, batch_size=1000, flush_ms=60_000)
    p.write_batch(make_fills(0, 5))
    assert d.step() == 0 and sink.ids == []  # neither full nor old yet
    assert d.step(force=True) == 5 and sink.ids == list(range(5))
