"""The pipeline with `faster_fifo.Queue` in place of the shared-memory market-data rings.

Everything else is the production code: `feeds.handler.run_feed_process` and
`strategy.host.run_strategy_process` run unchanged; only the object they get for the md ring
is an adapter over a queue. The producer side offers what the feed handler uses of `Ring`
(`claim_producer`, `writer`, `batch_writer`, `close`): one queue message per record for quotes
and trades, one message per frame (its records joined) for depth, as the ring publishes once
per frame. The consumer side offers what the strategy host uses (`claim_consumer`, `poll`,
`copy_buffer`, `tail_position`, `head_position`, `read_batch`, `lost`, `end_of_batch`, `mode`).
Messages are the same packed 64-byte records, passed as bytes (no pickling: the queue's
`dumps`/`loads` are identities, the library's documented fast path for bytes).
"""

from __future__ import annotations

import queue

import numpy as np

RECORD = 64
QUEUE_BYTES = RECORD * (1 << 16)  # the md ring's data size


def _identity(b):
    return b


def make_queue():
    import faster_fifo

    return faster_fifo.Queue(max_size_bytes=QUEUE_BYTES, loads=_identity, dumps=_identity)


class QueueProducer:
    """The feed side of one venue's queue."""

    mode = 0

    def __init__(self, q) -> None:
        self.q = q
        self.dropped = 0  # a full queue drops, as a lossy ring overwrites

    def claim_producer(self, *a, **k) -> None:
        pass

    def close(self) -> None:
        pass

    def writer(self, packer):
        pack = packer.pack
        put = self.q.put_nowait
        full = queue.Full
        me = self

        def write(*values) -> bool:
            try:
                put(pack(*values))
            except full:
                me.dropped += 1
            return True

        return write

    def batch_writer(self, packer):
        pack = packer.pack
        parts: list[bytes] = []
        q = self.q
        full = queue.Full
        me = self

        def put(*values) -> None:
            parts.append(pack(*values))

        def publish() -> int:
            n = len(parts)
            if n:
                try:
                    q.put_nowait(b"".join(parts))
                except full:
                    me.dropped += n
                parts.clear()
            return n

        put.sync = parts.clear  # type: ignore[attr-defined]
        return put, publish


class QueueConsumer:
    """The strategy side: records come out of queue messages one at a time (`poll` into
    `copy_buffer`) or in bulk (`read_batch`), like a lossy ring."""

    mode = 0
    lost = 0

    def __init__(self, q) -> None:
        self.q = q
        self._buf = b""
        self._pos = 0
        self._head = 0
        self._copy = bytearray(RECORD)
        self.copy_buffer = memoryview(self._copy)
        self.end_of_batch = True

    def claim_consumer(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _fill(self) -> bool:
        q = self.q
        if q.empty():
            return False
        try:
            msgs = q.get_many_nowait(max_messages_to_get=1024)
        except queue.Empty:
            return False
        self._buf = msgs[0] if len(msgs) == 1 else b"".join(msgs)
        self._pos = 0
        return True

    def poll(self) -> int:
        if self._pos >= len(self._buf) and not self._fill():
            return -1
        p = self._pos
        self._copy[:] = self._buf[p:p + RECORD]
        self._pos = p + RECORD
        self._head += 1
        self.end_of_batch = self._pos >= len(self._buf)
        return 0

    @property
    def head_position(self) -> int:
        return self._head

    @property
    def tail_position(self) -> int:
        if self._pos >= len(self._buf):
            self._fill()
        return self._head + (len(self._buf) - self._pos) // RECORD

    def read_batch(self, out: np.ndarray, limit: int | None = None) -> int:
        n = (len(self._buf) - self._pos) // RECORD
        if limit is not None:
            n = min(n, limit)
        n = min(n, out.shape[0])
        if n <= 0:
            return 0
        p = self._pos
        out.reshape(-1)[: n * RECORD] = np.frombuffer(self._buf, dtype=np.uint8, count=n * RECORD, offset=p)
        self._pos = p + n * RECORD
        self._head += n
        self.end_of_batch = self._pos >= len(self._buf)
        return n


def run_feed(queues: dict, *args, **kwargs) -> int:
    """`feeds.handler.run_feed_process` with each venue's ring replaced by its queue."""
    import feeds.handler as fh

    class _RingShim:
        @staticmethod
        def open(name: str, capacity: int, record_size: int, lossless: bool = False):
            return QueueProducer(queues[name])

    fh.Ring = _RingShim
    return fh.run_feed_process(*args, **kwargs)


def run_strategy(queues: dict, *args, **kwargs) -> int:
    """`strategy.host.run_strategy_process` attached to the queues instead of the md rings."""
    import strategy.host as sh

    sh._attach_ring = lambda name, record_size, timeout_s: QueueConsumer(queues[name])
    return sh.run_strategy_process(*args, **kwargs)
