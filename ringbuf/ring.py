"""Single-producer single-consumer ring over named shared memory (Aeron vocabulary).

Layout: a 64-byte header (magic, version, capacity, record size, mode, producer pid,
creation time), the producer's line (`tail_position`, spill counters), the
consumer's line (`head_position`, lost records, journal position), the producer's
journal path, then `capacity` fixed-size record slots.

Positions are published with one aligned 8-byte store through a memoryview cast
to 'q' (never `struct.pack_into`, which is not atomic in CPython). Market-data
rings are lossy: the producer never waits, and a reader detects a lapped or torn
record by reading the tail again after its copy: the producer writes sequence s
only while the tail is s, so a copy of sequence h is whole if the tail was still
below h + capacity afterwards (x86 keeps stores, and loads, in program order).
This replaced per-slot sequence numbers: same guarantee, two fewer stores per
record. Event rings are lossless (the producer spins, then spills to an
append-only journal file and never drops an event).
"""

from __future__ import annotations

import functools
import os
import struct
import time
from array import array
from collections.abc import Callable

import numpy as np

from ringbuf import shm as _shm
from ringbuf.shm import ShmError

MAGIC = b"HFTRING\x01"
VERSION = 2
MODE_LOSSY = 0
MODE_LOSSLESS = 1

_HDR = struct.Struct("<8sIIqqqI")  # magic, version, record_size, capacity, producer_pid, created_ns, mode
HEADER_BYTES = 512
# indices into the positions view ('q' over the first HEADER_BYTES)
_TAIL = 128 // 8  # producer cache line (128-byte spaced against adjacent-line prefetch)
_SPILLED = _TAIL + 1  # records written to the journal by the producer
# Lossy rings: the highest sequence the producer may be writing. A batch writes its records
# before it publishes the tail, so a slot can be overwritten while the tail is up to a batch
# behind: the producer stores the claim first, and a reader validates its copy against
# max(tail, claim) as it would against the tail alone (a single write of sequence `tail` is in
# progress at most). Zero (below the tail) for segments whose producer never batched.
_CLAIM = _TAIL + 2
_HEAD = 256 // 8  # consumer cache line
_LOST = _HEAD + 1  # records a lossy consumer lost to overruns or torn copies
_JOURNAL_READ = _HEAD + 2  # journal records the consumer has consumed
_CONSUMER_PID = _HEAD + 3
_SLEEPING = _HEAD + 4  # the consumer is (about to be) asleep: the producer sends one wake-up datagram
_JOURNAL_PATH_OFF = 384  # producer's spill journal path (absolute, NUL padded), read by the consumer
_JOURNAL_PATH_MAX = 127


class RingError(ShmError):
    """The ring cannot be attached or used as asked."""


def segment_size(capacity: int, record_size: int) -> int:
    return HEADER_BYTES + capacity * record_size


class Ring:
    """One SPSC ring. Create with `Ring.create`, attach with `Ring.attach`; one side each."""

    def __init__(self, name: str, shm, create: bool = False) -> None:
        self.name = name
        self._shm = shm
        buf = shm.buf
        magic, version, rs, cap, ppid, created, mode = _HDR.unpack_from(buf, 0)
        if magic != MAGIC:
            shm.close()
            raise RingError(f"segment {name!r} is not a ring of this system (bad magic {magic!r})")
        if version != VERSION:
            shm.close()
            raise RingError(f"ring {name!r} has layout version {version}, this build reads {VERSION}; restart the producer")
        if cap <= 0 or cap & (cap - 1) or len(buf) < segment_size(cap, rs):
            shm.close()
            raise RingError(f"ring {name!r} header is corrupt (capacity {cap}, record size {rs})")
        self.record_size = rs
        self.capacity = cap
        self.mask = cap - 1
        self.mode = mode
        self.created_ns = created
        self.buffer = buf
        self._pos = buf[:HEADER_BYTES].cast("q")
        self.data_offset = HEADER_BYTES
        self._data = buf[self.data_offset : self.data_offset + cap * rs]
        # producer-local state
        self._tail = self._pos[_TAIL]
        self._head_cache = self._pos[_HEAD]
        self._lossless = mode == MODE_LOSSLESS
        # a producer that restarts while its journal is undrained must keep spilling (order)
        self._spilling = self._pos[_SPILLED] != self._pos[_JOURNAL_READ]
        self._journal_path: str | None = None
        self._journal_fd = -1
        self._wake_sock = None
        self.spin_limit = 20_000
        # consumer-local state
        self._head = self._pos[_HEAD]
        self._tail_cache = self._head
        self._cpos = self._pos  # where this reader publishes head and lost (see observe)
        self._copy = bytearray(rs)
        self.copy_buffer = memoryview(self._copy)
        self._journal_freed = 0  # journal bytes below this offset are consumed and given back
        self.end_of_batch = False

    # ---- life cycle ------------------------------------------------------
    @classmethod
    def create(cls, name: str, capacity: int, record_size: int, lossless: bool = False,
               replace: bool = False) -> Ring:
        if capacity <= 0 or capacity & (capacity - 1):
            raise RingError(f"ring {name!r}: capacity must be a power of two, got {capacity}")
        if record_size <= 0 or record_size % 64:
            raise RingError(f"ring {name!r}: record size must be a multiple of 64, got {record_size}")
        shm = _shm.create(name, segment_size(capacity, record_size), replace=replace)
        shm.buf[:HEADER_BYTES] = bytes(HEADER_BYTES)
        _HDR.pack_into(shm.buf, 0, MAGIC, VERSION, record_size, capacity, os.getpid(), time.time_ns(),
                       MODE_LOSSLESS if lossless else MODE_LOSSY)
        return cls(name, shm, create=True)

    @classmethod
    def open(cls, name: str, capacity: int, record_size: int, lossless: bool = False) -> Ring:
        """Attach to the ring if it exists with this geometry, else create it. A restarted
        producer must use this, not `create(replace=True)`: consumers stay mapped to the
        existing segment and a replacement would leave them reading a dead one."""
        try:
            ring = cls.attach(name, record_size=record_size)
        except ShmError as e:
            if isinstance(e, RingError):
                raise
            try:
                return cls.create(name, capacity, record_size, lossless=lossless)
            except ShmError:
                ring = cls.attach(name, record_size=record_size)  # lost a creation race
        want = MODE_LOSSLESS if lossless else MODE_LOSSY
        if ring.capacity != capacity or ring.mode != want:
            cap, mode = ring.capacity, ring.mode
            ring.close()
            raise RingError(f"ring {name!r} exists with capacity {cap} and mode {mode}, expected "
                            f"{capacity} and {want}; stop the system and clean it (ringstat --clean)")
        return ring

    @classmethod
    def attach(cls, name: str, record_size: int | None = None, allow_stale: bool = True) -> Ring:
        """Attach to an existing ring; `record_size` guards against a foreign layout.

        With `allow_stale=False` a ring whose producer process is gone is refused.
        """
        shm = _shm.attach(name)
        if len(shm.buf) < _HDR.size:
            shm.close()
            raise RingError(f"segment {name!r} is too small to be a ring")
        ring = cls(name, shm)
        if record_size is not None and ring.record_size != record_size:
            rs = ring.record_size
            ring.close()
            raise RingError(f"ring {name!r} holds {rs}-byte records, expected {record_size}")
        if not allow_stale:
            pid = ring.producer_pid
            if pid and not _shm.pid_alive(pid):
                ring.close()
                raise RingError(f"ring {name!r} is stale: its producer (pid {pid}) is gone; restart the producer")
        return ring

    def close(self) -> None:
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
        if self._wake_sock is not None:
            self._wake_sock.close()
            self._wake_sock = None
        if self._shm is None:
            return
        for mv in ("_pos", "_data", "copy_buffer"):
            v = getattr(self, mv, None)
            if v is not None:
                try:
                    v.release()
                except BufferError:
                    pass  # a numpy view handed out by peek_batch is still alive
        self._shm.close()
        self.buffer = None
        self._shm = None

    def unlink(self) -> None:
        _shm.unlink(self.name)

    # ---- header ----------------------------------------------------------
    @property
    def producer_pid(self) -> int:
        return _HDR.unpack_from(self._shm.buf, 0)[4]

    def claim_producer(self, pid: int | None = None, journal_path: str | None = None) -> None:
        """Become the producer: record our pid and resume at the published tail."""
        pid = os.getpid() if pid is None else pid
        struct.pack_into("<q", self._shm.buf, 24, pid)
        self._tail = self._pos[_TAIL]
        self._pos[_CLAIM] = self._tail  # a batch a dead producer left unpublished is void
        self._head_cache = self._pos[_HEAD]
        path = os.path.abspath(journal_path or default_journal_path(self.name))
        raw = path.encode()
        if len(raw) > _JOURNAL_PATH_MAX:
            raise RingError(f"journal path {path!r} is longer than {_JOURNAL_PATH_MAX} bytes")
        self._shm.buf[_JOURNAL_PATH_OFF : _JOURNAL_PATH_OFF + 128] = raw.ljust(128, b"\0")
        self._journal_path = path
        self._spilling = self._pos[_SPILLED] != self._pos[_JOURNAL_READ]

    def observe(self) -> None:
        """Become an extra lossy reader (e.g. a recorder) that keeps its head and lost counts
        to itself, so the consumer's published positions stay its own. Starts at the tail."""
        if self._lossless:
            raise RingError(f"ring {self.name!r} is lossless: it has exactly one consumer")
        self._cpos = array("q", bytes(HEADER_BYTES))
        self._head = self._tail_cache = self._pos[_TAIL]
        self._cpos[_HEAD] = self._head

    def claim_consumer(self) -> None:
        self._pos[_CONSUMER_PID] = os.getpid()
        self._head = self._tail_cache = self._pos[_HEAD]

    @property
    def tail_position(self) -> int:
        return self._pos[_TAIL]

    @property
    def head_position(self) -> int:
        return self._cpos[_HEAD]

    @property
    def lost(self) -> int:
        """Records this reader lost to overruns (an observer counts its own)."""
        return self._cpos[_LOST]

    @property
    def spilled(self) -> int:
        return self._pos[_SPILLED]

    @property
    def journal_read(self) -> int:
        return self._pos[_JOURNAL_READ]

    # ---- producer --------------------------------------------------------
    def try_claim(self) -> int:
        """Byte offset (into `self.buffer`) of the next slot, or -1 when a lossless ring is full.

        Fill the slot (e.g. `STRUCT.pack_into(ring.buffer, off, ...)`) then `commit()`.
        """
        tail = self._tail
        if self.mode == MODE_LOSSLESS and tail - self._head_cache >= self.capacity:
            self._head_cache = self._pos[_HEAD]
            if tail - self._head_cache >= self.capacity:
                return -1
        return self.data_offset + (tail & self.mask) * self.record_size

    def commit(self) -> None:
        tail = self._tail + 1
        self._tail = tail
        self._pos[_TAIL] = tail
        if self._pos[_SLEEPING]:
            self._wake()

    def write(self, packer: struct.Struct, *values) -> bool:
        """Pack one record. Lossy: never waits. Lossless: spins, then spills to the journal."""
        tail = self._tail
        if self._lossless:
            if self._spilling or tail - self._head_cache >= self.capacity:
                return self._write_slow(packer.pack(*values))
        packer.pack_into(self.buffer, self.data_offset + (tail & self.mask) * self.record_size, *values)
        tail += 1
        self._tail = tail
        self._pos[_TAIL] = tail
        if self._pos[_SLEEPING]:
            self._wake()
        return True

    def writer(self, packer: struct.Struct) -> Callable[..., bool]:
        """A specialised `write` for one record layout: `w = ring.writer(QUOTE_STRUCT); w(*values)`.

        The function is generated with one named parameter per field: CPython then passes the
        arguments straight through instead of packing and unpacking a `*values` tuple twice,
        which halves the cost of a write (measured 1,144 -> 576 ns per 64-byte record here).
        Everything it touches is bound once."""
        args = _arg_list(packer)
        ns = dict(ring=self, pack=packer.pack, pack_into=packer.pack_into, buf=self.buffer,
                  doff=self.data_offset, mask=self.mask, rs=self.record_size, cap=self.capacity,
                  pos=self._pos, T=_TAIL, S=_SLEEPING)
        if self._lossless:
            src = f"""
def write_lossless({args}):
    tail = ring._tail
    if tail - ring._head_cache >= cap or ring._spilling:
        return ring._write_slow(pack({args}))
    pack_into(buf, doff + (tail & mask) * rs, {args})
    ring._tail = pos[T] = tail + 1
    if pos[S]:
        ring._wake()
    return True
"""
        else:
            src = f"""
def write_lossy({args}):
    tail = ring._tail
    pack_into(buf, doff + (tail & mask) * rs, {args})
    ring._tail = pos[T] = tail + 1
    if pos[S]:
        ring._wake()
    return True
"""
        exec(src, ns)  # noqa: S102 - generated from the struct's field count only
        return ns["write_lossless" if self._lossless else "write_lossy"]

    def batch_writer(self, packer: struct.Struct, run_packer: struct.Struct | None = None
                     ) -> tuple[Callable[..., None], Callable[[], int]]:
        """Lossy rings: `put, publish = ring.batch_writer(STRUCT)`; `put(*values)` packs a record
        into the next slot without publishing it; `publish()` makes every put record visible
        with one tail store (so a reader sees a frame's records together) and returns how many.
        Saves the per-record tail store of `writer` when one frame yields many records.

        `put.many(n, values)` puts `n` records at once from one flat list of their field values
        (record after record): one `Struct` call packs a run of up to MANY_RECORDS slots, so a
        frame of 20 book levels costs one C call instead of 20 Python calls. `run_packer` (same
        record size) is the layout `many` takes, when it is not `packer`'s: e.g. one whose
        constant fields are `s` strings packed once per frame, which `struct` copies instead of
        converting field by field."""
        if self._lossless:
            raise RingError("batch_writer is for lossy (market-data) rings; use writer() on lossless rings")
        args = _arg_list(packer)
        pending = [self._tail]
        run = packer if run_packer is None else run_packer
        if run.size != packer.size:
            raise RingError(f"run_packer packs {run.size} bytes, the records are {packer.size}")
        body = run.format.lstrip("<>=!@")
        nf = len(run.unpack(bytes(run.size)))
        packs = _run_packers(body)
        ns = dict(ring=self, pack_into=packer.pack_into, buf=self.buffer, doff=self.data_offset,
                  mask=self.mask, rs=self.record_size, pos=self._pos, T=_TAIL, S=_SLEEPING, pending=pending,
                  packs=packs, cap=self.capacity, nf=nf, M=MANY_RECORDS, C=_CLAIM)
        src = f"""
def put({args}):
    t = pending[0]
    pos[C] = t
    pack_into(buf, doff + (t & mask) * rs, {args})
    pending[0] = t + 1

def many(n, values):
    t = pending[0]
    slot = t & mask
    pos[C] = t + n - 1
    if slot + n <= cap and 0 < n <= M:
        packs[n](buf, doff + slot * rs, *values)
    elif n > 0:  # longer than one pack, or wraps around the end of the ring
        if len(values) != n * nf:
            raise struct.error(f"many: {{len(values)}} values for {{n}} records of {{nf}}")
        i = 0
        while i < n:
            slot = (t + i) & mask
            k = min(n - i, cap - slot, M)
            packs[k](buf, doff + slot * rs, *values[i * nf : (i + k) * nf])
            i += k
    pending[0] = t + n

def publish():
    t = pending[0]
    n = t - ring._tail
    if n:
        ring._tail = pos[T] = t
        if pos[S]:
            ring._wake()
    return n

def sync():  # another write path moved the tail: start from there
    pending[0] = ring._tail
"""
        ns["struct"] = struct
        exec(src, ns)  # noqa: S102 - generated from the struct's field count only
        put = ns["put"]
        put.sync = ns["sync"]  # type: ignore[attr-defined]
        put.many = ns["many"]  # type: ignore[attr-defined]
        return put, ns["publish"]

    # ---- wake-ups: a consumer that sleeps is woken by one datagram, not by polling -------
    @property
    def wake_address(self) -> bytes:
        """Abstract-namespace UNIX datagram address the consumer listens on while asleep."""
        return b"\0hft-wake:" + self.name.encode()

    def _wake(self) -> None:
        """Producer side: the consumer announced it sleeps; send it one datagram (and only one:
        the flag is cleared here, the consumer sets it again before its next sleep)."""
        self._pos[_SLEEPING] = 0
        sock = self._wake_sock
        if sock is None:
            import socket

            sock = self._wake_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
        try:
            sock.sendto(b"w", self.wake_address)
        except OSError:
            pass  # nobody listening or its queue is full: it wakes on its own timeout anyway

    def wake_listener(self):
        """Consumer side: a bound, non-blocking datagram socket for `loop.add_reader`, or None
        when another reader already listens on this ring."""
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(self.wake_address)
        except OSError:
            sock.close()
            return None
        return sock

    def arm_sleep(self) -> bool:
        """Consumer: announce a sleep. Returns False (and does not sleep) when records arrived
        meanwhile. The producer's tail store and our flag store race only benignly: a missed
        wake-up costs at most the caller's sleep timeout."""
        self._pos[_SLEEPING] = 1
        if self._pos[_TAIL] > self._head:
            self._pos[_SLEEPING] = 0
            return False
        return True

    def disarm_sleep(self) -> None:
        self._pos[_SLEEPING] = 0

    def _write_slow(self, record: bytes) -> bool:
        if self._spilling:
            if self._pos[_SPILLED] != self._pos[_JOURNAL_READ]:
                self._spill(record)  # keep order: stay on the journal until it is drained
                return True
            self._spilling = False
        off = self.try_claim()
        if off < 0:
            off = self._wait_for_space()
            if off < 0:
                self._spilling = True
                self._spill(record)
                return True
        self.buffer[off : off + self.record_size] = record
        self.commit()
        return True

    def write_bytes(self, record: bytes | bytearray | memoryview) -> bool:
        if self._lossless and (self._spilling or self._tail - self._head_cache >= self.capacity):
            return self._write_slow(bytes(record))
        off = self.try_claim()
        self.buffer[off : off + self.record_size] = record
        self.commit()
        return True

    def write_batch(self, records: np.ndarray) -> int:
        """Copy a structured array of records in (at most two memcpys). Returns records written
        to the ring; a full lossless ring spills the remainder to the journal."""
        raw = np.ascontiguousarray(records).view(np.uint8).reshape(-1, self.record_size)
        n = raw.shape[0]
        done = 0
        while done < n:
            tail = self._tail
            if self._lossless:
                if self._spilling and self._pos[_SPILLED] != self._pos[_JOURNAL_READ]:
                    break
                self._spilling = False
                free = self.capacity - (tail - self._pos[_HEAD])
                if free <= 0:
                    if self._wait_for_space() < 0:
                        break
                    continue
            else:
                free = self.capacity
            slot = tail & self.mask
            k = min(n - done, free, self.capacity - slot)
            self._pos[_CLAIM] = tail + k - 1
            dst = np.frombuffer(self._data, dtype=np.uint8).reshape(self.capacity, self.record_size)
            dst[slot : slot + k] = raw[done : done + k]
            tail += k
            self._tail = tail
            self._pos[_TAIL] = tail
            done += k
            if self._pos[_SLEEPING]:
                self._wake()
        if done < n:
            self._spilling = True
            for i in range(done, n):
                self._spill(raw[i].tobytes())
        return done

    def _wait_for_space(self) -> int:
        for _ in range(self.spin_limit):
            off = self.try_claim()
            if off >= 0:
                return off
        return -1

    def _spill(self, record: bytes) -> None:
        if self._journal_fd < 0:
            if self._journal_path is None:
                self._journal_path = self.journal_path()
            os.makedirs(os.path.dirname(self._journal_path) or ".", exist_ok=True)
            self._journal_fd = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # Position-addressed: record k of the journal lives at byte k * record_size.
        spilled = self._pos[_SPILLED]
        os.pwrite(self._journal_fd, record, spilled * self.record_size)
        self._pos[_SPILLED] = spilled + 1

    # ---- consumer --------------------------------------------------------
    def poll(self) -> int:
        """Next record without allocating: returns an offset into `self.buffer` (lossless) or
        0 into `self.copy_buffer` (lossy, validated copy); -1 when nothing is new.

        Lossless callers must call `release()` after handling the record.
        """
        h = self._head
        if h >= self._tail_cache:
            self._tail_cache = t = self._pos[_TAIL]
            if h >= t:
                return -1
        if self._lossless:
            return self.data_offset + (h & self.mask) * self.record_size
        return self._poll_lossy(h, self._tail_cache)

    def _poll_lossy(self, h: int, t: int) -> int:
        cap = self.capacity
        rs = self.record_size
        pos = self._pos
        while True:
            if t - h > cap:  # lapped before we looked: resume at the oldest record still there
                self._skip(h, t - cap)
                h = t - cap
            off = (h & self.mask) * rs
            self._copy[:] = self._data[off : off + rs]
            t = pos[_TAIL]
            w = pos[_CLAIM]
            if w < t:
                w = t
            if w - h >= cap:
                # the producer reached sequence h + capacity (same slot) during or before the
                # copy: it may be torn. Drop it and what else the producer has overtaken.
                new_h = min(w - cap + 1, t)
                self._skip(h, new_h)
                h = new_h
                if h >= t:
                    return -1
                continue
            h += 1
            self._head = h
            self._cpos[_HEAD] = h
            self._tail_cache = t
            self.end_of_batch = h >= t
            return 0

    def _skip(self, h: int, new_h: int) -> None:
        self._cpos[_LOST] += new_h - h
        self._head = new_h
        self._cpos[_HEAD] = new_h

    def release(self) -> None:
        """Lossless: hand the slot returned by `poll()` back to the producer."""
        h = self._head + 1
        self._head = h
        self._pos[_HEAD] = h
        self.end_of_batch = h >= self._tail_cache

    def read(self, handler: Callable[[memoryview, int], None], limit: int = 256) -> int:
        """Call `handler(buffer, offset)` per record, up to `limit`; returns records handled.
        `self.end_of_batch` is true while handling the last record available now."""
        n = 0
        if self.mode == MODE_LOSSLESS:
            buf = self.buffer
            while n < limit:
                off = self.poll()
                if off < 0:
                    break
                t = self._pos[_TAIL]
                self.end_of_batch = self._head + 1 >= t or n + 1 == limit
                handler(buf, off)
                self.release()
                n += 1
            return n
        buf = self.copy_buffer
        while n < limit:
            if self.poll() < 0:
                break
            if n + 1 == limit:
                self.end_of_batch = True
            handler(buf, 0)
            n += 1
        return n

    def peek_batch(self, limit: int) -> np.ndarray:
        """Lossless: contiguous uint8 view (n, record_size) of up to `limit` unread records,
        valid until `advance(n)`. Stops at the wrap point; call again for the rest."""
        h = self._head
        n = min(self._pos[_TAIL] - h, limit)
        if n <= 0:
            return np.empty((0, self.record_size), dtype=np.uint8)
        slot = h & self.mask
        n = min(n, self.capacity - slot)
        data = np.frombuffer(self._data, dtype=np.uint8).reshape(self.capacity, self.record_size)
        return data[slot : slot + n]

    def advance(self, n: int) -> None:
        h = self._head + n
        self._head = h
        self._pos[_HEAD] = h

    def read_batch(self, out: np.ndarray, limit: int | None = None) -> int:
        """Copy up to len(out) records into `out` (uint8 (N, record_size) or a structured
        array of record_size itemsize). Lossy rings check the tail after the copy; lapped or
        possibly torn records are dropped and counted. Returns records copied."""
        raw = out.view(np.uint8).reshape(-1, self.record_size)
        cap = self.capacity
        limit = raw.shape[0] if limit is None else min(limit, raw.shape[0])
        h = self._head
        t = self._pos[_TAIL]
        if self.mode == MODE_LOSSY and t - h > cap:
            self._skip(h, t - cap)
            h = t - cap
        n = min(t - h, limit)
        if n <= 0:
            return 0
        data = np.frombuffer(self._data, dtype=np.uint8).reshape(cap, self.record_size)
        got = 0
        pos = h
        while got < n:
            slot = pos & self.mask
            k = min(n - got, cap - slot)
            raw[got : got + k] = data[slot : slot + k]
            got += k
            pos += k
        n_valid = n
        if self.mode == MODE_LOSSY:
            t2 = max(self._pos[_TAIL], self._pos[_CLAIM])
            bad = min(n, t2 - cap + 1 - h)  # sequences the producer may have overwritten meanwhile
            if bad > 0:
                self._cpos[_LOST] += bad
                raw[: n - bad] = raw[bad:n].copy()
                n_valid = n - bad
        self._head = h + n
        self._cpos[_HEAD] = h + n
        self.end_of_batch = self._head >= self._pos[_TAIL]
        return n_valid

    # ---- journal (lossless spill) ----------------------------------------
    def journal_path(self) -> str:
        """The producer's spill journal (recorded in the header when it claimed the ring)."""
        if self._journal_path:
            return self._journal_path
        raw = bytes(self._shm.buf[_JOURNAL_PATH_OFF : _JOURNAL_PATH_OFF + 128]).rstrip(b"\0")
        return raw.decode() if raw else os.path.abspath(default_journal_path(self.name))

    def read_journal(self, limit: int = 4096, path: str | None = None) -> np.ndarray:
        """Consumer: unread journal records as uint8 (n, record_size); call `journal_advance(n)`
        once they are safely handled. Read the journal only when the ring is empty."""
        spilled = self._pos[_SPILLED]
        done = self._pos[_JOURNAL_READ]
        n = min(spilled - done, limit)
        if n <= 0:
            return np.empty((0, self.record_size), dtype=np.uint8)
        p = path or self.journal_path()
        with open(p, "rb") as f:
            f.seek(done * self.record_size)
            raw = f.read(n * self.record_size)
        n = len(raw) // self.record_size
        return np.frombuffer(raw[: n * self.record_size], dtype=np.uint8).reshape(n, self.record_size)

    def journal_advance(self, n: int, path: str | None = None) -> None:
        """Consumer: `n` journal records are handled. When the journal is drained, or at least
        JOURNAL_RECLAIM_BYTES have been consumed since the last time, the consumed bytes go back
        to the filesystem (a hole is punched: the file keeps its size and record k stays at byte
        k * record_size, so the producer, appending further on, is never disturbed)."""
        done = self._pos[_JOURNAL_READ] + n
        self._pos[_JOURNAL_READ] = done
        end = (done * self.record_size) & ~(_PAGE - 1)
        if end > self._journal_freed and (done == self._pos[_SPILLED] or
                                          end - self._journal_freed >= JOURNAL_RECLAIM_BYTES):
            if punch_hole(path or self.journal_path(), self._journal_freed, end):
                self._journal_freed = end


@functools.lru_cache(maxsize=16)
def _run_packers(body: str) -> list:
    """[None, pack_into of 1 record, of 2 consecutive records, ..., of MANY_RECORDS] for the
    little-endian record format `body`."""
    return [None] + [struct.Struct("<" + body * k).pack_into for k in range(1, MANY_RECORDS + 1)]


def _arg_list(packer: struct.Struct) -> str:
    """'a0, a1, ...': one parameter per value the packer takes."""
    n = len(packer.unpack(bytes(packer.size)))
    return ", ".join(f"a{i}" for i in range(n))


MANY_RECORDS = 64  # records packed by one call of a batch writer's `put.many`
_PAGE = 4096
JOURNAL_RECLAIM_BYTES = 1 << 20
_FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
_fallocate = None


def punch_hole(path: str, start: int, end: int) -> bool:
    """Free the disk blocks of bytes [start, end) of a file, keeping its size (Linux fallocate
    PUNCH_HOLE). False when the file or the filesystem does not allow it (the bytes then stay)."""
    global _fallocate
    if end <= start:
        return True
    if _fallocate is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).fallocate
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
            _fallocate = fn
        except (OSError, AttributeError):
            _fallocate = False
    if not _fallocate:
        return False
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        return _fallocate(fd, _FALLOC_PUNCH, start, end - start) == 0
    finally:
        os.close(fd)


def default_journal_path(name: str) -> str:
    base = os.environ.get("HFT_JOURNAL_DIR", os.path.join("data", "journal"))
    return os.path.join(base, f"{name}.jnl")
