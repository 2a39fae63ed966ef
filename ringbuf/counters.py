"""Counters block: one shared-memory segment per process, single writer, read live by tools.

Layout: a 64-byte header (magic, version, pid, slot count, last update, role), then one
64-byte metadata entry per counter (label) and one 8-byte value per counter, each value
on its own cache line so monitors never slow the writer. Readers never write.
"""

from __future__ import annotations

import struct
import time

from ringbuf import shm as _shm
from ringbuf.shm import ShmError

MAGIC = b"HFTCTR\x00\x01"
VERSION = 1
_HDR = struct.Struct("<8sIIqq24s")  # magic, version, slots, pid, last_update_ns, role
LABEL_BYTES = 64
VALUE_STRIDE = 64


def _size(slots: int) -> int:
    return 64 + slots * LABEL_BYTES + slots * VALUE_STRIDE


class Counters:
    """Writer side. `add(name)` allocates a counter at start-up and returns its index;
    `inc(idx)`/`set(idx, v)` are single aligned 8-byte stores on the hot path."""

    def __init__(self, name: str, role: str, slots: int = 128, replace: bool = True) -> None:
        import os

        self.name = name
        self._shm = _shm.create(name, _size(slots), replace=replace)
        buf = self._shm.buf
        buf[:] = bytes(len(buf))
        _HDR.pack_into(buf, 0, MAGIC, VERSION, slots, os.getpid(), time.time_ns(), role.encode()[:24])
        self.slots = slots
        self._labels_off = 64
        self._values_off = 64 + slots * LABEL_BYTES
        self._values = buf[self._values_off :].cast("q")
        self._hdr_q = buf[:64].cast("q")  # index 3 = last_update_ns
        self._names: dict[str, int] = {}

    def add(self, label: str) -> int:
        if label in self._names:
            return self._names[label]
        idx = len(self._names)
        if idx >= self.slots:
            raise ShmError(f"counters block {self.name!r} is full ({self.slots} counters)")
        off = self._labels_off + idx * LABEL_BYTES
        self._shm.buf[off : off + LABEL_BYTES] = label.encode()[:LABEL_BYTES].ljust(LABEL_BYTES, b"\0")
        self._names[label] = idx
        return idx

    def index(self, label: str) -> int:
        return self._names[label]

    def inc(self, idx: int, n: int = 1) -> None:
        v = self._values
        v[idx * 8] += n

    def set(self, idx: int, value: int) -> None:
        self._values[idx * 8] = value

    def get(self, idx: int) -> int:
        return self._values[idx * 8]

    def touch(self, now_ns: int | None = None) -> None:
        self._hdr_q[3] = time.time_ns() if now_ns is None else now_ns

    def close(self, unlink: bool = False) -> None:
        self._values.release()
        self._hdr_q.release()
        self._shm.close()
        if unlink:
            _shm.unlink(self.name)


def read_counters(name: str) -> dict:
    """Snapshot of a counters block: {'role', 'pid', 'last_update_ns', 'counters': {label: value}}."""
    s = _shm.attach(name)
    try:
        buf = s.buf
        magic, version, slots, pid, last_ns, role = _HDR.unpack_from(buf, 0)
        if magic != MAGIC:
            raise ShmError(f"segment {name!r} is not a counters block")
        if version != VERSION:
            raise ShmError(f"counters block {name!r} has version {version}, expected {VERSION}")
        out = {}
        values_off = 64 + slots * LABEL_BYTES
        for i in range(slots):
            off = 64 + i * LABEL_BYTES
            label = bytes(buf[off : off + LABEL_BYTES]).rstrip(b"\0")
            if not label:
                break
            out[label.decode()] = struct.unpack_from("<q", buf, values_off + i * VALUE_STRIDE)[0]
        return {"role": role.rstrip(b"\0").decode(), "pid": pid, "last_update_ns": last_ns, "counters": out}
    finally:
        s.close()
