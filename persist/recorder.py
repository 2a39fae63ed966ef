"""Market-data recorder: md ring records -> rolling binary files under data/md/, and their reader.

File layout: a 64-byte header, then raw 64-byte records exactly as in the ring
(`ringbuf.records.MD_DTYPE`, view as QUOTE/TRADE/BOOK_LEVEL by `kind`), so the
backtester maps a file with `numpy.memmap` (`open_md_file`). Header (little endian):
  magic  8s  b"HFTMDREC"     version u4 (1)     record_size u4 (64)
  dtype_crc u4 (crc32 of MD_DTYPE's description)     reserved u4
  created_ns i8     venue 16s     dtype_name 16s ("MD_DTYPE")
The md ring is lossy: the recorder is one more reader (`read_batch`), never slows the
feed, and counts the records it lost to overruns.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib

import numpy as np

from ringbuf import records as R
from ringbuf.ring import Ring

log = logging.getLogger("persist.recorder")

MAGIC = b"HFTMDREC"
VERSION = 1
HEADER = struct.Struct("<8sIIIIq16s16s")
HEADER_SIZE = 64
DTYPE_NAME = b"MD_DTYPE"
DTYPE_CRC = zlib.crc32(repr(R.MD_DTYPE.descr).encode())
SUFFIX = ".md"
assert HEADER.size == HEADER_SIZE


class MdFileError(ValueError):
    """A market-data file is not one of ours, has another layout version, or is damaged."""


def make_header(venue: str, created_ns: int | None = None) -> bytes:
    return HEADER.pack(MAGIC, VERSION, R.MD_RECORD_SIZE, DTYPE_CRC, 0,
                       time.time_ns() if created_ns is None else created_ns,
                       venue.encode()[:16], DTYPE_NAME)


def read_header(path: str) -> dict:
    """Parse and validate the header; raises MdFileError with a one-line reason."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise MdFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) < HEADER_SIZE:
        raise MdFileError(f"{path}: truncated header ({len(raw)} of {HEADER_SIZE} bytes); not a complete md file")
    magic, version, rs, crc, _res, created, venue, name = HEADER.unpack(raw)
    if magic != MAGIC:
        raise MdFileError(f"{path}: not a market-data recording (bad magic {magic!r})")
    if version != VERSION:
        raise MdFileError(f"{path}: md file version {version}, this build reads version {VERSION}")
    if rs != R.MD_RECORD_SIZE or crc != DTYPE_CRC or name.rstrip(b"\0") != DTYPE_NAME:
        shown = name.rstrip(b"\0").decode(errors="replace")
        raise MdFileError(f"{path}: record layout {shown!r} "
                          f"(size {rs}, crc {crc:#x}) differs from this build's MD_DTYPE; re-record or convert")
    return {"path": path, "version": version, "record_size": rs, "created_ns": created,
            "venue": venue.rstrip(b"\0").decode(errors="replace"), "size": size,
            "records": (size - HEADER_SIZE) // rs, "partial_bytes": (size - HEADER_SIZE) % rs}


def open_md_file(path: str, allow_partial: bool = False) -> np.ndarray:
    """Read-only `numpy.memmap` of MD_DTYPE records. A file whose size is not a whole number of
    records is refused (truncated) unless `allow_partial` (a file still being written)."""
    h = read_header(path)
    if h["partial_bytes"] and not allow_partial:
        raise MdFileError(f"{path}: truncated: {h['partial_bytes']} trailing bytes are not a whole "
                          f"{R.MD_RECORD_SIZE}-byte record")
    n = h["records"]
    if n == 0:
        return np.zeros(0, dtype=R.MD_DTYPE)
    return np.memmap(path, dtype=R.MD_DTYPE, mode="r", offset=HEADER_SIZE, shape=(n,))


def list_md_files(path: str) -> list[str]:
    """`path` itself when it is a file, else every *.md file below it, sorted."""
    if os.path.isfile(path):
        return [path]
    out = []
    for root, _dirs, files in os.walk(path):
        out.extend(os.path.join(root, f) for f in files if f.endswith(SUFFIX))
    return sorted(out)


class MdFileWriter:
    """Rolling files `<dir>/<venue>/<venue>-<UTC time>-<n>.md`, a new one past `max_bytes`."""

    def __init__(self, directory: str, venue: str, max_bytes: int = 64 << 20) -> None:
        self.dir = os.path.join(directory, venue)
        self.venue = venue
        self.max_bytes = max(HEADER_SIZE + R.MD_RECORD_SIZE, max_bytes)
        self._f = None
        self._size = 0
        self._n = 0
        self.path = ""
        self.files = 0
        self.bytes = 0

    def _roll(self) -> None:
        self.close()
        os.makedirs(self.dir, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        while True:
            self._n += 1
            path = os.path.join(self.dir, f"{self.venue}-{stamp}-{self._n:04d}{SUFFIX}")
            if not os.path.exists(path):
                break
        self._f = open(path, "xb", buffering=1 << 20)
        self._f.write(make_header(self.venue))
        self._size = HEADER_SIZE
        self.path = path
        self.files += 1

    def write(self, raw: np.ndarray) -> None:
        """Append uint8 (n, 64) or MD_DTYPE records, rolling at record boundaries."""
        data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1, R.MD_RECORD_SIZE)
        i = 0
        n = data.shape[0]
        while i < n:
            if self._f is None or self._size >= self.max_bytes:
                self._roll()
            room = max(1, (self.max_bytes - self._size) // R.MD_RECORD_SIZE)
            k = min(room, n - i)
            self._f.write(data[i : i + k].tobytes())  # type: ignore[union-attr]
            self._size += k * R.MD_RECORD_SIZE
            self.bytes += k * R.MD_RECORD_SIZE
            i += k

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class MdRecorder:
    """Reads one venue's md ring (attached lazily: the feed may start later) into files."""

    def __init__(self, ring_name: str, venue: str, directory: str | None, max_bytes: int = 64 << 20,
                 batch: int = 4096, hot=None, counters=None) -> None:
        self.ring_name = ring_name
        self.venue = venue
        self.writer = MdFileWriter(directory, venue, max_bytes) if directory else None
        self.hot = hot
        self.ring: Ring | None = None
        self._buf = np.empty(batch, dtype=R.MD_DTYPE)
        self._next_attach = 0.0
        self.records = 0
        self.lost = 0
        self._ctr = counters
        if counters is not None:
            self._c_rec = counters.add(f"md_records_{venue}")
            self._c_lost = counters.add(f"md_lost_{venue}")
            self._c_bytes = counters.add(f"md_bytes_{venue}")

    def _attach(self) -> bool:
        now = time.monotonic()
        if now < self._next_attach:
            return False
        self._next_attach = now + 1.0
        try:
            ring = Ring.attach(self.ring_name, record_size=R.MD_RECORD_SIZE)
        except Exception:
            return False
        # an observer: records from now on, and keeps its head and lost count to itself so the
        # strategy's published positions stay the strategy's
        ring.observe()
        self.ring = ring
        log.info("recording %s from %s", self.venue, self.ring_name)
        return True

    def poll(self) -> int:
        """Copy what is new (one batch); returns records recorded."""
        ring = self.ring
        if ring is None:
            if not self._attach():
                return 0
            ring = self.ring
        n = ring.read_batch(self._buf)
        self.lost = ring.lost
        if n == 0:
            return 0
        recs = self._buf[:n]
        if self.writer is not None:
            self.writer.write(recs)
        if self.hot is not None:
            q = recs[recs["kind"] == R.KIND_QUOTE]
            if q.shape[0]:
                self.hot.on_quotes(q.view(R.QUOTE_DTYPE))
        self.records += n
        if self._ctr is not None:
            self._ctr.set(self._c_rec, self.records)
            self._ctr.set(self._c_lost, self.lost)
            if self.writer is not None:
                self._ctr.set(self._c_bytes, self.writer.bytes)
        return n

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.ring is not None:
            self.ring.close()
            self.ring = None
