"""The persist process's own outage journal: an append-only file of raw 128-byte event records.

While PostgreSQL is unreachable every batch is appended here before the ring's head
moves past it; when the database is back the journal is replayed in order, then
truncated. A sidecar `<name>.pos` holds how many records were already committed to
the database, so a restart resumes the replay there (a replayed record that was
committed just before a crash is written again and ignored by the natural keys).

fsync policy (`[persist] journal_fsync`, default `batch`):
  every  each record is written and synced on its own (O_DSYNC); slowest, survives power loss per record;
  batch  one fsync per appended batch, before the ring head moves past it: a batch
         acknowledged to the ring survives power loss;
  off    no fsync: the OS writes the pages back; survives a crash or SIGKILL of the persist
         process (the data is in the page cache) but not a power loss or kernel crash.
This journal is distinct from the events ring's spill journal (written by the producer
when the ring is full, read by the drain through `Ring.read_journal`).
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ringbuf.records import EVENT_RECORD_SIZE

FSYNC_POLICIES = ("every", "batch", "off")
_POS = struct.Struct("<q")


class OutageJournal:
    """Append-only record file plus a replay position; single writer, single reader (this process)."""

    def __init__(self, path: str, fsync: str = "batch", record_size: int = EVENT_RECORD_SIZE) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"journal fsync policy must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.path = path
        self.pos_path = path + ".pos"
        self.fsync = fsync
        self.record_size = record_size
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        self._fd = os.open(path, flags, 0o644)
        self._sync_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_DSYNC) if fsync == "every" else -1
        size = os.fstat(self._fd).st_size
        whole = size - size % record_size
        if whole != size:
            # a write torn by a crash: those records were never acknowledged to the ring
            os.ftruncate(self._fd, whole)
        self.records = whole // record_size  # records in the file
        self.replayed = min(self._load_pos(), self.records)

    # ---- state -------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Records appended but not yet committed to the database."""
        return self.records - self.replayed

    @property
    def bytes(self) -> int:
        return self.records * self.record_size

    def _load_pos(self) -> int:
        try:
            with open(self.pos_path, "rb") as f:
                raw = f.read(_POS.size)
            return _POS.unpack(raw)[0] if len(raw) == _POS.size else 0
        except FileNotFoundError:
            return 0

    def _store_pos(self, n: int) -> None:
        tmp = self.pos_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_POS.pack(n))
            if self.fsync != "off":
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.pos_path)

    # ---- writer ------------------------------------------------------------
    def append(self, raw: np.ndarray) -> None:
        """Append uint8 (n, record_size) records; durable per the fsync policy on return."""
        n = raw.shape[0]
        if n == 0:
            return
        data = np.ascontiguousarray(raw).reshape(-1)
        if self.fsync == "every":
            rs = self.record_size
            mv = memoryview(data)
            for i in range(n):
                _write_all(self._sync_fd, mv[i * rs : (i + 1) * rs])
        else:
            _write_all(self._fd, memoryview(data))
            if self.fsync == "batch":
                os.fsync(self._fd)
        self.records += n

    # ---- reader ------------------------------------------------------------
    def read(self, limit: int) -> np.ndarray:
        """Up to `limit` records not yet replayed, in append order (uint8 (n, record_size))."""
        n = min(self.pending, limit)
        if n <= 0:
            return np.empty((0, self.record_size), dtype=np.uint8)
        raw = os.pread(self._fd, n * self.record_size, self.replayed * self.record_size)
        n = len(raw) // self.record_size
        return np.frombuffer(raw[: n * self.record_size], dtype=np.uint8).reshape(n, self.record_size)

    def consume(self, n: int) -> None:
        """Mark `n` records as committed to the database; truncates once all are replayed."""
        self.replayed += n
        if self.replayed >= self.records:
            # position first: a crash between the two replays the file again (harmless),
            # never skips records appended after the truncation
            self._store_pos(0)
            os.ftruncate(self._fd, 0)
            self.records = 0
            self.replayed = 0
        else:
            self._store_pos(self.replayed)

    def close(self) -> None:
        for fd in (self._fd, self._sync_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._sync_fd = -1


def _write_all(fd: int, mv: memoryview) -> None:
    while len(mv):
        k = os.write(fd, mv)
        mv = mv[k:]
