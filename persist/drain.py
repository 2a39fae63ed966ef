"""The events-ring drain: ring (and its spill journal) -> PostgreSQL, or the outage journal.

Batches are bounded by size (`batch_size`) and age (`flush_ms`). The ring's head only
moves after the batch is committed to the database or appended (durably, per the
fsync policy) to the outage journal, so a SIGKILL at any point loses nothing and the
natural keys drop what is written twice. Single-threaded, no allocation per record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from persist.db import DbUnavailable, EventWriter, ParallelWriter, WriteResult
from persist.journal import OutageJournal
from ringbuf.ring import Ring

log = logging.getLogger("persist.drain")

COUNTER_LABELS = (
    "batches", "rows", "fills", "order_events", "risk_events", "position_snapshots", "bad_records",
    "db_errors", "db_up", "journal_bytes", "journal_pending", "replayed", "lag", "ring_journal_pending",
    "last_commit_ns", "fallback_batches",
)

_EMPTY = np.empty((0, 128), dtype=np.uint8)


class EventDrain:
    """Owns the consumer side of the events ring. Call `step()` in a loop; `drain_all()` at exit."""

    def __init__(self, ring: Ring, writer: EventWriter | ParallelWriter, journal: OutageJournal, batch_size: int = 5000,
                 flush_ms: float = 50.0, counters=None, hot=None,
                 on_commit: Callable[[np.ndarray, int], None] | None = None,
                 max_backoff_s: float = 5.0) -> None:
        self.ring = ring
        self.writer = writer
        self.journal = journal
        self.batch_size = max(1, int(batch_size))
        self.flush_ns = int(flush_ms * 1e6)
        self.hot = hot
        self.on_commit = on_commit
        self.db_up = False
        self.max_backoff_s = max_backoff_s
        self._backoff_s = 0.1
        self._next_connect_ns = 0
        self._pending_since_ns = 0
        self._down_since_ns = 0
        self.totals = WriteResult()
        self.ctr = counters
        self._c = {}
        if counters is not None:
            self._c = {label: counters.add(label) for label in COUNTER_LABELS}

    # ---- source: the ring, then its spill journal ---------------------------
    def _source_batch(self, limit: int) -> tuple[np.ndarray, int, bool]:
        """(records, source, complete): source 0 = ring, 1 = ring spill journal; complete is
        False when more records are already available (a wrap point or a full batch)."""
        ring = self.ring
        avail = ring.tail_position - ring.head_position
        if avail > 0:
            batch = ring.peek_batch(limit)
            return batch, 0, batch.shape[0] < avail
        if ring.spilled != ring.journal_read:
            t0 = ring.tail_position
            try:
                batch = ring.read_journal(limit)
            except OSError as e:
                log.error("cannot read the ring spill journal %s: %s", ring.journal_path(), e)
                return _EMPTY, 1, False
            if ring.tail_position != t0:
                return _EMPTY, 1, False  # the producer went back to the ring meanwhile: ring first
            return batch, 1, True
        return _EMPTY, 0, False

    def _source_advance(self, source: int, n: int) -> None:
        if source == 0:
            self.ring.advance(n)
        else:
            self.ring.journal_advance(n)

    # ---- database state -----------------------------------------------------
    def _try_connect(self, now_ns: int) -> None:
        try:
            self.writer.open()
        except DbUnavailable as e:
            self._down(now_ns, e, connecting=True)
            return
        if self._down_since_ns:
            log.warning("database is back after %.1f s; replaying %d journaled records",
                        (now_ns - self._down_since_ns) / 1e9, self.journal.pending)
        self.db_up = True
        self._down_since_ns = 0
        self._backoff_s = 0.1
        self._set("db_up", 1)

    def _down(self, now_ns: int, err: Exception, connecting: bool = False) -> None:
        if self.db_up or not self._down_since_ns:
            log.warning("database unavailable (%s); journaling events to %s", err, self.journal.path)
            self._down_since_ns = now_ns
        self.db_up = False
        self._inc("db_errors")
        self._set("db_up", 0)
        self._next_connect_ns = now_ns + int(self._backoff_s * 1e9)
        self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)

    # ---- one iteration ------------------------------------------------------
    def step(self, force: bool = False) -> int:
        """Move at most one batch (plus one journal replay chunk); returns records moved."""
        now = time.monotonic_ns()
        if not self.db_up and now >= self._next_connect_ns:
            self._try_connect(now)
        moved = 0
        if self.journal.pending and self.db_up:
            moved += self._replay_chunk(now)
            ring = self.ring
            if (self.journal.pending and not force and ring.spilled == ring.journal_read
                    and ring.tail_position - ring.head_position < ring.capacity // 2):
                # replaying: leave new records in the ring (written once, later) unless it fills up
                self._publish_state()
                return moved
        batch, source, more = self._source_batch(self.batch_size)
        n = batch.shape[0]
        if n:
            if not (force or more or n >= self.batch_size):
                if not self._pending_since_ns:
                    self._pending_since_ns = now
                if now - self._pending_since_ns < self.flush_ns:
                    self._publish_state()
                    return moved
            self._pending_since_ns = 0
            self._handle(batch, now)
            self._source_advance(source, n)
            moved += n
        else:
            self._pending_since_ns = 0
        self._publish_state()
        return moved

    def _handle(self, batch: np.ndarray, now: int) -> None:
        if self.hot is not None:
            self.hot.on_events(batch)
        if self.db_up and not self.journal.pending:
            try:
                self._commit(batch)
                return
            except DbUnavailable as e:
                self._down(now, e)
        # database down, or a backlog that must be replayed first (order): journal it
        self.journal.append(batch)

    def _commit(self, batch: np.ndarray) -> None:
        res = self.writer.write(batch)
        self.totals.add(res)
        self._inc("batches")
        self._inc("rows", sum(res.rows.values()))
        for table, k in res.rows.items():
            self._inc(table, k)
        if res.bad:
            self._inc("bad_records", res.bad)
            log.warning("skipped %d malformed event records", res.bad)
        self._set("fallback_batches", self.writer.fallbacks)
        self._set("last_commit_ns", time.time_ns())
        if self.on_commit is not None:
            self.on_commit(batch, time.time_ns())

    def _replay_chunk(self, now: int) -> int:
        chunk = self.journal.read(self.batch_size)
        if chunk.shape[0] == 0:
            return 0
        try:
            self._commit(chunk)
        except DbUnavailable as e:
            self._down(now, e)
            return 0
        self.journal.consume(chunk.shape[0])
        self._inc("replayed", chunk.shape[0])
        if not self.journal.pending:
            log.warning("outage journal replayed; writing to the database directly again")
        return chunk.shape[0]

    def drain_all(self, deadline_s: float = 10.0) -> bool:
        """Final drain at shutdown: everything readable goes to the database or the journal.
        Returns True when the ring, its spill journal and the outage journal are all empty."""
        end = time.monotonic() + deadline_s
        self._next_connect_ns = 0  # one more attempt now, whatever the back-off says
        while time.monotonic() < end:
            moved = self.step(force=True)
            if moved == 0:
                ring = self.ring
                ring_empty = ring.tail_position == ring.head_position and ring.spilled == ring.journal_read
                if ring_empty and (self.journal.pending == 0 or not self.db_up):
                    return self.journal.pending == 0
                if not self.db_up:
                    time.sleep(0.05)
        return False

    @property
    def lag(self) -> int:
        ring = self.ring
        return (ring.tail_position - ring.head_position) + (ring.spilled - ring.journal_read) + self.journal.pending

    # ---- counters -----------------------------------------------------------
    def _inc(self, label: str, n: int = 1) -> None:
        if self._c:
            self.ctr.inc(self._c[label], n)

    def _set(self, label: str, v: int) -> None:
        if self._c:
            self.ctr.set(self._c[label], v)

    def _publish_state(self) -> None:
        if self._c:
            ring = self.ring
            self.ctr.set(self._c["lag"], self.lag)
            self.ctr.set(self._c["ring_journal_pending"], ring.spilled - ring.journal_read)
            self.ctr.set(self._c["journal_bytes"], self.journal.bytes)
            self.ctr.set(self._c["journal_pending"], self.journal.pending)
            self.ctr.touch()
