"""Test and benchmark helpers for persist/: synthetic event records, a producer process,
a TCP proxy that can cut the database off, and per-test schemas. Not used in production.

    python -m persist.testing produce RING COUNT [--start N] [--rate PER_S] [--chunk K]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import uuid

import numpy as np
import psycopg
from psycopg import conninfo as _ci
from psycopg import sql

from ringbuf import records as R


# ---- records ---------------------------------------------------------------
def make_fills(start: int, n: int, venue_id: int = 1, instr_id: int = 1, ts_ns: int | None = None) -> np.ndarray:
    """Fills with trade ids T<start>..T<start+n-1> (unique per venue)."""
    a = np.zeros(n, dtype=R.FILL_DTYPE)
    idx = np.arange(start, start + n)
    a["kind"] = R.KIND_FILL
    a["venue_id"] = venue_id
    a["instr_id"] = instr_id
    a["side"] = np.where(idx % 2 == 0, 1, -1)
    a["liquidity"] = 1
    a["event_ts_ns"] = time.time_ns() if ts_ns is None else ts_ns
    a["exch_ts_ns"] = a["event_ts_ns"]
    a["px"] = 50_000.0 + (idx % 100) * 0.5
    a["qty"] = 0.001
    a["fee"] = 0.0001
    a["fee_asset"] = b"USDT"
    a["trade_id"] = np.char.encode(np.char.add("T", idx.astype(str)))
    a["cl_ord_id"] = np.char.encode(np.char.add("c", (idx // 3).astype(str)))
    return a


def make_order_events(cl_ids: list[str], states: list[int], venue_id: int = 1, seq_start: int = 1,
                      filled: list[float] | None = None) -> np.ndarray:
    a = np.zeros(len(cl_ids), dtype=R.ORDER_EVENT_DTYPE)
    a["kind"] = R.KIND_ORDER_EVENT
    a["venue_id"] = venue_id
    a["instr_id"] = 1
    a["side"] = 1
    a["state"] = states
    a["event_ts_ns"] = time.time_ns()
    a["event_seq"] = np.arange(seq_start, seq_start + len(cl_ids))
    a["px"] = 50_000.0
    a["qty"] = 0.01
    a["filled_qty"] = filled if filled is not None else 0.0
    a["cl_ord_id"] = [c.encode() for c in cl_ids]
    a["venue_ord_id"] = b"v1"
    a["ord_type"] = 1
    a["tif"] = 1
    return a


def make_position(venue_id: int, instr_id: int, position: float, ts_ns: int) -> np.ndarray:
    a = np.zeros(1, dtype=R.POSITION_DTYPE)
    a["kind"] = R.KIND_POSITION
    a["venue_id"] = venue_id
    a["instr_id"] = instr_id
    a["event_ts_ns"] = ts_ns
    a["position"] = position
    a["avg_px"] = 50_000.0
    return a


def as_raw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8).reshape(-1, R.EVENT_RECORD_SIZE)


# ---- producer process -------------------------------------------------------
def produce(ring_name: str, count: int, start: int = 0, rate: float = 0.0, chunk: int = 500,
            journal_path: str | None = None) -> None:
    """Write `count` fills into an existing lossless ring as its producer, at about `rate`/s."""
    from ringbuf.ring import Ring

    ring = Ring.attach(ring_name, record_size=R.EVENT_RECORD_SIZE)
    ring.claim_producer(journal_path=journal_path)
    t0 = time.monotonic()
    done = 0
    while done < count:
        k = min(chunk, count - done)
        ring.write_batch(make_fills(start + done, k))
        done += k
        if rate > 0:
            ahead = done / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    ring.close()


# ---- database helpers -----------------------------------------------------
def schema_url(url: str, schema: str) -> str:
    """The same database with `schema` first on the search path (created by the migrations)."""
    return _ci.make_conninfo(url, options=f"-c search_path={schema}")


def new_schema_name(tag: str = "t") -> str:
    return f"{tag}_{uuid.uuid4().hex[:10]}"


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def target_address(url: str) -> tuple[int, object]:
    """(socket family, address) of the server named by a libpq or Redis URL (TCP or unix socket)."""
    if url.startswith("unix://"):
        return socket.AF_UNIX, url[len("unix://"):].split("?")[0]
    if url.startswith("redis://"):
        from urllib.parse import urlparse

        u = urlparse(url)
        return socket.AF_INET, (u.hostname or "127.0.0.1", u.port or 6379)
    d = _ci.conninfo_to_dict(url)
    host = d.get("host") or "127.0.0.1"
    port = int(d.get("port") or 5432)
    if host.startswith("/"):
        return socket.AF_UNIX, os.path.join(host, f".s.PGSQL.{port}")
    return socket.AF_INET, (host, port)


class TcpProxy:
    """A loopback TCP forwarder to a PostgreSQL or Redis server that a test can cut and restore.

    `cut()` resets every open connection and closes new ones on accept (the client
    sees the server vanish); `restore()` forwards again. `url` is the proxied URL."""

    def __init__(self, target_url: str) -> None:
        self.family, self.addr = target_address(target_url)
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(64)
        self.port = self._lsock.getsockname()[1]
        if target_url.startswith(("redis://", "unix://")):
            self.url = f"redis://127.0.0.1:{self.port}/0"
        else:
            self.url = _ci.make_conninfo(target_url, host="127.0.0.1", port=str(self.port))
        self._cut = False
        self._closed = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="tcpproxy")
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._lsock.accept()
            except OSError:
                return
            if self._cut:
                self.refused += 1
                _hard_close(client)
                continue
            try:
                upstream = socket.socket(self.family, socket.SOCK_STREAM)
                upstream.connect(self.addr)
            except OSError:
                _hard_close(client)
                continue
            self.accepted += 1
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self._cut:
                    break
                dst.sendall(data)
        except OSError:
            pass
        _hard_close(src)
        _hard_close(dst)

    def cut(self) -> None:
        self._cut = True
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            _hard_close(s)

    def restore(self) -> None:
        self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        try:
            self._lsock.close()
        except OSError:
            pass


def _hard_close(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def wait_until(cond, timeout_s: float = 60.0, interval_s: float = 0.05, what: str = "condition"):
    """Poll `cond()` until truthy (returned) or raise TimeoutError naming `what`."""
    end = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m persist.testing")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce", help="write fills into a lossless events ring")
    p.add_argument("ring")
    p.add_argument("count", type=int)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--chunk", type=int, default=500)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    produce(args.ring, args.count, args.start, args.rate, args.chunk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
