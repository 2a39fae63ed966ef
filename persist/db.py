"""Event batches into PostgreSQL: binary COPY into staging tables, then idempotent inserts.

One transaction per batch; the caller moves its read position only after `write`
returns. A lost connection raises `DbUnavailable` (the caller journals the batch and
retries with back-off); a batch the server refuses for its content is split until
the bad records are isolated, counted and skipped, so bad input never stalls the drain.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import psycopg

from persist import pgcopy
from persist.schema import apply_migrations
from ringbuf import records as R

log = logging.getLogger("persist.db")

CONNECT_KW = dict(connect_timeout=3, keepalives=1, keepalives_idle=5, keepalives_interval=2,
                  keepalives_count=3, tcp_user_timeout=10_000, application_name="hft-persist")


class DbUnavailable(Exception):
    """The database cannot be reached or the connection broke mid-batch."""


@dataclass
class WriteResult:
    rows: dict[str, int] = field(default_factory=dict)  # records handed to each table
    bad: int = 0  # records skipped as malformed (unknown kind, no key, refused by the server)

    def add(self, other: WriteResult) -> None:
        for k, v in other.rows.items():
            self.rows[k] = self.rows.get(k, 0) + v
        self.bad += other.bad


def connect(url: str, **kw) -> psycopg.Connection:
    """A connection with keepalives and a connect timeout; raises DbUnavailable."""
    params = dict(CONNECT_KW)
    if "host=/" in url or url.startswith("postgresql://postgres:@/") or "%2F" in url:
        for k in ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"):
            params.pop(k)  # unix socket: TCP options do not apply
    params.update(kw)
    try:
        return psycopg.connect(url, **params)
    except psycopg.OperationalError as e:
        raise DbUnavailable(_one_line(e)) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def split_by_kind(raw: np.ndarray) -> tuple[dict[int, np.ndarray], int]:
    """uint8 (n, 128) records -> {kind: structured array}, count of unknown kinds.

    A batch of one kind (the common case) is viewed without copying."""
    if raw.shape[0] == 0:
        return {}, 0
    kinds = raw[:, 0]
    first = int(kinds[0])
    if first in pgcopy.SPECS and (kinds == first).all():
        spec = pgcopy.SPECS[first]
        return {first: np.ascontiguousarray(raw).view(spec.dtype).reshape(-1)}, 0
    out = {}
    known = 0
    for kind, spec in pgcopy.SPECS.items():
        m = kinds == kind
        k = int(m.sum())
        if k:
            out[kind] = np.ascontiguousarray(raw[m]).view(spec.dtype).reshape(-1)
            known += k
    return out, raw.shape[0] - known


def _nice_backend(conn: psycopg.Connection, niceness: int = 19) -> bool:
    """Lower the CPU priority of our own server backend when it runs on this host and the OS
    lets us (same user, or root): the COPY work then yields to the hot path like we do."""
    host = conn.info.host or ""
    if not (host.startswith("/") or host in ("127.0.0.1", "localhost", "::1")):
        return False
    try:
        pid = conn.info.backend_pid
        os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), niceness))
        return True
    except (OSError, AttributeError):
        return False  # another machine or namespace, or not permitted: harmless


class EventWriter:
    """Owns one connection; `write(raw)` persists a batch of 128-byte event records."""

    def __init__(self, url: str, nice_backend: bool = True) -> None:
        self.url = url
        self.nice_backend = nice_backend
        self.conn: psycopg.Connection | None = None
        self.backend_niced = False
        self.fallbacks = 0  # batches that needed ON CONFLICT (duplicates inside the batch or a replay race)

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def open(self) -> None:
        """Connect, apply migrations, create the staging tables. Raises DbUnavailable."""
        self.close()
        conn = connect(self.url)
        try:
            apply_migrations(conn)
            conn.autocommit = True
            # The staging tables are never analyzed: keep the planner on index probes of the
            # natural keys instead of hashing the whole target table every batch.
            conn.execute("SET enable_hashjoin = off")
            conn.execute("SET enable_mergejoin = off")
            for spec in pgcopy.SPECS.values():
                conn.execute(spec.stage_ddl())
            conn.autocommit = False
            self.backend_niced = _nice_backend(conn) if self.nice_backend else False
        except psycopg.OperationalError as e:
            conn.close()
            raise DbUnavailable(_one_line(e)) from None
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def write(self, raw: np.ndarray) -> WriteResult:
        """Persist uint8 (n, 128) records in one transaction. Raises DbUnavailable."""
        if not self.connected:
            self.open()
        groups, unknown = split_by_kind(raw)
        res = WriteResult(bad=unknown)
        if not groups:
            return res
        try:
            res.add(self._write_groups(groups))
        except DbUnavailable:
            self.close()
            raise
        except (psycopg.DataError, psycopg.IntegrityError) as e:
            # The server refused the content (not the connection): isolate the bad records.
            if self.conn is None or self.conn.closed:
                self.close()
                raise DbUnavailable(_one_line(e)) from None
            log.warning("batch of %d refused (%s); isolating bad records", raw.shape[0], _one_line(e))
            self._rollback()
            if raw.shape[0] == 1:
                res.bad += 1
                return res
            mid = raw.shape[0] // 2
            res = WriteResult(bad=0)
            res.add(self.write(raw[:mid]))
            res.add(self.write(raw[mid:]))
        except psycopg.Error as e:
            # Anything else (a dropped table, lost privileges, a server fault) is the server's
            # problem, not the records': keep them (journal) and retry; reconnecting re-runs
            # the migrations.
            self.close()
            raise DbUnavailable(_one_line(e)) from None
        return res

    def _rollback(self) -> None:
        try:
            self.conn.rollback()  # type: ignore[union-attr]
        except psycopg.Error:
            self.close()
            raise DbUnavailable("connection lost during rollback") from None

    def _write_groups(self, groups: dict[int, np.ndarray]) -> WriteResult:
        conn = self.conn
        assert conn is not None
        res = WriteResult()
        try:
            with conn.cursor() as cur:
                for kind, recs in groups.items():
                    spec = pgcopy.SPECS[kind]
                    ok = pgcopy.valid_mask(spec, recs)
                    if not ok.all():
                        res.bad += int((~ok).sum())
                        recs = recs[ok]
                    if recs.shape[0] == 0:
                        continue
                    if kind == R.KIND_FILL and self._copy_direct(cur, spec, recs):
                        res.rows[spec.table] = res.rows.get(spec.table, 0) + int(recs.shape[0])
                        continue
                    with cur.copy(spec.copy_sql()) as cp:
                        cp.write(spec.encode(recs))
                    self._insert(cur, spec)
                    if kind == R.KIND_ORDER_EVENT:
                        cur.execute(pgcopy.ORDERS_UPSERT)
                    elif kind == R.KIND_POSITION:
                        cur.execute(pgcopy.POSITIONS_UPSERT)
                    res.rows[spec.table] = res.rows.get(spec.table, 0) + int(recs.shape[0])
            conn.commit()
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            self.close()
            raise DbUnavailable(_one_line(e)) from None
        return res

    def _copy_direct(self, cur: psycopg.Cursor, spec: pgcopy.TableSpec, recs: np.ndarray) -> bool:
        """Fast path: COPY straight into the table. False (nothing written) when any row is
        already there or an id is not valid text: the staging path then sorts it out."""
        conn = self.conn
        assert conn is not None
        stmt, payload = pgcopy.encode_direct(spec, recs)
        try:
            with conn.transaction():  # savepoint
                with cur.copy(stmt) as cp:
                    cp.write(payload)
            return True
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
            self.fallbacks += 1
            return False

    def _insert(self, cur: psycopg.Cursor, spec: pgcopy.TableSpec) -> None:
        conn = self.conn
        assert conn is not None
        try:
            with conn.transaction():  # savepoint: a unique violation keeps the staged rows
                cur.execute(spec.insert_new_sql())
        except psycopg.errors.UniqueViolation:
            self.fallbacks += 1
            cur.execute(spec.insert_on_conflict_sql())


class ParallelWriter:
    """Several connections: a batch made only of fills (at least `min_split` of them) is split
    across them and the parts are committed concurrently, so the server's COPY work uses more
    than one core; anything else goes through the first connection. `write` returns only when
    every part is committed. If any part fails the whole batch is reported failed: the caller
    journals it, and the parts that did commit are dropped as duplicates when it is replayed."""

    def __init__(self, url: str, connections: int = 2, nice_backend: bool = True, min_split: int = 2000) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.url = url
        self.writers = [EventWriter(url, nice_backend) for _ in range(max(1, connections))]
        self.min_split = min_split
        self._pool = (ThreadPoolExecutor(max_workers=len(self.writers) - 1, thread_name_prefix="persist-writer")
                      if len(self.writers) > 1 else None)

    @property
    def connected(self) -> bool:
        return self.writers[0].connected

    @property
    def fallbacks(self) -> int:
        return sum(w.fallbacks for w in self.writers)

    @property
    def backend_niced(self) -> bool:
        return self.writers[0].backend_niced

    def open(self) -> None:
        """Opens the first connection (migrations); the others connect on their first batch."""
        self.writers[0].open()

    def close(self) -> None:
        for w in self.writers:
            w.close()

    def shutdown(self) -> None:
        self.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def write(self, raw: np.ndarray) -> WriteResult:
        k = len(self.writers)
        if k == 1 or raw.shape[0] < self.min_split or not (raw[:, 0] == R.KIND_FILL).all():
            return self.writers[0].write(raw)
        parts = np.array_split(raw, k)
        assert self._pool is not None
        futures = [self._pool.submit(w.write, p) for w, p in zip(self.writers[1:], parts[1:], strict=True)]
        res = WriteResult()
        err: DbUnavailable | None = None
        try:
            res.add(self.writers[0].write(parts[0]))
        except DbUnavailable as e:
            err = e
        for f in futures:
            try:
                res.add(f.result())
            except DbUnavailable as e:
                err = err or e
        if err is not None:
            raise err
        return res
