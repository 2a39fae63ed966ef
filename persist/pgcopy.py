"""PostgreSQL binary COPY payloads built from record arrays with numpy (no Python object per row).

Every column of a staging table has a fixed width, so one big-endian structured
array (field count, then length + value per column) is the whole payload. Byte
strings (ids) travel as fixed-width bytea and are trimmed of their NUL padding in
SQL when moved from the staging table to the real one. Pure: no I/O here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ringbuf import records as R

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"

# pg type -> (big-endian numpy code, staging SQL type)
_PG = {
    "int2": (">i2", "smallint"),
    "int4": (">i4", "integer"),
    "int8": (">i8", "bigint"),
    "float4": (">f4", "real"),
    "float8": (">f8", "double precision"),
}


@dataclass(frozen=True)
class Column:
    name: str  # column in the real table
    src: str  # field of the record dtype
    pg: str  # int2 | int4 | int8 | float4 | float8 | bytes


@dataclass(frozen=True)
class TableSpec:
    kind: int
    dtype: np.dtype
    table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def stage(self) -> str:
        return f"stage_{self.table}"

    def copy_dtype(self) -> np.dtype:
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for c in self.columns:
            fields.append((f"len_{c.name}", ">i4"))
            if c.pg == "bytes":
                fields.append((f"val_{c.name}", f"S{self.dtype[c.src].itemsize}"))
            else:
                fields.append((f"val_{c.name}", _PG[c.pg][0]))
        return np.dtype(fields)  # packed: the wire format has no padding

    def stage_ddl(self) -> str:
        cols = ", ".join(f"{c.name} {'bytea' if c.pg == 'bytes' else _PG[c.pg][1]}" for c in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({cols}) ON COMMIT DELETE ROWS"

    def select_converted(self) -> str:
        """SELECT over the staging table with byte strings trimmed and made text."""
        exprs = []
        for c in self.columns:
            if c.pg == "bytes":
                # 'escape' turns any non-printable byte into \nnn: malformed ids cannot fail a batch
                exprs.append(f"encode(rtrim({c.name}, '\\x00'::bytea), 'escape') AS {c.name}")
            else:
                exprs.append(c.name)
        return f"SELECT {', '.join(exprs)} FROM {self.stage}"

    def insert_new_sql(self) -> str:
        """Fast idempotent insert for a single writer: anti-join on the natural key.
        A duplicate inside one batch raises a unique violation: use `insert_on_conflict_sql`."""
        names = ", ".join(c.name for c in self.columns)
        cond = " AND ".join(f"t.{k} = s.{k}" for k in self.key)
        return (f"INSERT INTO {self.table} ({names}) SELECT {names} FROM ({self.select_converted()}) s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {self.table} t WHERE {cond})")

    def insert_on_conflict_sql(self) -> str:
        names = ", ".join(c.name for c in self.columns)
        return f"INSERT INTO {self.table} ({names}) {self.select_converted()} ON CONFLICT DO NOTHING"

    def copy_sql(self) -> str:
        return f"COPY {self.stage} ({', '.join(c.name for c in self.columns)}) FROM STDIN (FORMAT BINARY)"

    def encode(self, recs: np.ndarray) -> bytes:
        """Binary COPY payload (signature, rows, trailer) for a 1-d array of `self.dtype`."""
        out = np.empty(recs.shape[0], dtype=self.copy_dtype())
        out["nfields"] = len(self.columns)
        for c in self.columns:
            width = self.dtype[c.src].itemsize if c.pg == "bytes" else np.dtype(_PG[c.pg][0]).itemsize
            out[f"len_{c.name}"] = width
            out[f"val_{c.name}"] = recs[c.src]
        return COPY_SIGNATURE + out.tobytes() + COPY_TRAILER


def encode_direct(spec: TableSpec, recs: np.ndarray) -> tuple[str, bytes]:
    """(COPY statement, payload) straight into the real table, ids sent as exact-length text.

    Rows are grouped by the lengths of their id fields so that each group has one fixed
    layout (ids in practice have a handful of lengths); row order does not matter to a
    set insert. Fails on the server (unique violation, NUL or invalid UTF-8 in an id):
    the caller then takes the staging path."""
    fixed = [c for c in spec.columns if c.pg != "bytes"]
    var = [c for c in spec.columns if c.pg == "bytes"]
    names = ", ".join(c.name for c in fixed + var)
    lens = [np.char.str_len(recs[c.src]).astype(np.int64) for c in var]
    key = np.zeros(recs.shape[0], dtype=np.int64)
    for ln in lens:
        key = key * 256 + ln
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    parts = [COPY_SIGNATURE]
    groups = np.split(order, cuts) if recs.shape[0] else []
    for grp in groups:
        r = recs if len(groups) == 1 else recs[grp]  # one layout (the usual case): no gather
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for c in fixed:
            fields += [(f"len_{c.name}", ">i4"), (f"val_{c.name}", _PG[c.pg][0])]
        glens = [int(ln[grp[0]]) for ln in lens]
        for c, ln in zip(var, glens, strict=True):
            fields.append((f"len_{c.name}", ">i4"))
            if ln:
                fields.append((f"val_{c.name}", f"S{ln}"))
        out = np.empty(grp.shape[0], dtype=np.dtype(fields))
        out["nfields"] = len(spec.columns)
        for c in fixed:
            out[f"len_{c.name}"] = np.dtype(_PG[c.pg][0]).itemsize
            out[f"val_{c.name}"] = r[c.src]
        for c, ln in zip(var, glens, strict=True):
            out[f"len_{c.name}"] = ln
            if ln:
                out[f"val_{c.name}"] = r[c.src]
        parts.append(out.tobytes())
    parts.append(COPY_TRAILER)
    return f"COPY {spec.table} ({names}) FROM STDIN (FORMAT BINARY)", b"".join(parts)


def _cols(*spec: tuple[str, str, str] | tuple[str, str]) -> tuple[Column, ...]:
    out = []
    for s in spec:
        if len(s) == 2:
            out.append(Column(s[0], s[0], s[1]))
        else:
            out.append(Column(s[0], s[1], s[2]))
    return tuple(out)


FILLS = TableSpec(
    R.KIND_FILL, R.FILL_DTYPE, "fills", ("venue", "trade_id"),
    _cols(("venue", "venue_id", "int2"), ("trade_id", "bytes"), ("cl_ord_id", "bytes"),
          ("instr_id", "int4"), ("side", "int2"), ("liquidity", "int2"), ("px", "float8"),
          ("qty", "float8"), ("fee", "float8"), ("fee_asset", "bytes"), ("realized_pnl", "float8"),
          ("event_ts_ns", "int8"), ("exch_ts_ns", "int8"), ("flags", "int2")),
)

ORDER_EVENTS = TableSpec(
    R.KIND_ORDER_EVENT, R.ORDER_EVENT_DTYPE, "order_events", ("venue", "cl_ord_id", "event_seq"),
    _cols(("venue", "venue_id", "int2"), ("cl_ord_id", "bytes"), ("event_seq", "int8"),
          ("state", "int2"), ("reason", "int2"), ("instr_id", "int4"), ("side", "int2"),
          ("ord_type", "int2"), ("tif", "int2"), ("strategy_id", "int2"), ("px", "float8"),
          ("qty", "float8"), ("filled_qty", "float8"), ("avg_px", "float8"), ("venue_ord_id", "bytes"),
          ("latency_us", "float4"), ("event_ts_ns", "int8"), ("exch_ts_ns", "int8"), ("flags", "int2")),
)

RISK_EVENTS = TableSpec(
    R.KIND_RISK_EVENT, R.RISK_EVENT_DTYPE, "risk_events", ("event_ts_ns", "venue", "instr_id", "reason", "cl_ord_id"),
    _cols(("venue", "venue_id", "int2"), ("instr_id", "int4"), ("side", "int2"), ("reason", "int4"),
          ("px", "float8"), ("qty", "float8"), ("limit_value", "float8"), ("observed_value", "float8"),
          ("cl_ord_id", "bytes"), ("text", "bytes"), ("event_ts_ns", "int8"), ("flags", "int2")),
)

POSITION_SNAPSHOTS = TableSpec(
    R.KIND_POSITION, R.POSITION_DTYPE, "position_snapshots", ("venue", "instr_id", "event_ts_ns"),
    _cols(("venue", "venue_id", "int2"), ("instr_id", "int4"), ("event_ts_ns", "int8"),
          ("position", "float8"), ("avg_px", "float8"), ("realized_pnl", "float8"),
          ("unrealized_pnl", "float8"), ("fees", "float8"), ("mark_px", "float8"), ("flags", "int2")),
)

SPECS: dict[int, TableSpec] = {s.kind: s for s in (FILLS, ORDER_EVENTS, RISK_EVENTS, POSITION_SNAPSHOTS)}

# Latest state per order: newest event_seq wins, an older (replayed) event never overwrites.
ORDERS_UPSERT = f"""
INSERT INTO orders (venue, cl_ord_id, venue_ord_id, instr_id, side, ord_type, tif, strategy_id, state,
                    reason, px, qty, filled_qty, avg_px, last_event_seq, first_ts_ns, last_ts_ns)
SELECT DISTINCT ON (venue, cl_ord_id) venue, cl_ord_id, venue_ord_id, instr_id, side, ord_type, tif,
       strategy_id, state, reason, px, qty, filled_qty, avg_px, event_seq,
       min(event_ts_ns) OVER (PARTITION BY venue, cl_ord_id), event_ts_ns
FROM ({ORDER_EVENTS.select_converted()}) s
ORDER BY venue, cl_ord_id, event_seq DESC
ON CONFLICT (venue, cl_ord_id) DO UPDATE SET
    venue_ord_id = CASE WHEN EXCLUDED.venue_ord_id <> '' THEN EXCLUDED.venue_ord_id ELSE orders.venue_ord_id END,
    instr_id = EXCLUDED.instr_id, side = EXCLUDED.side, ord_type = EXCLUDED.ord_type, tif = EXCLUDED.tif,
    strategy_id = EXCLUDED.strategy_id, state = EXCLUDED.state, reason = EXCLUDED.reason,
    px = EXCLUDED.px, qty = EXCLUDED.qty, filled_qty = EXCLUDED.filled_qty, avg_px = EXCLUDED.avg_px,
    last_event_seq = EXCLUDED.last_event_seq, last_ts_ns = EXCLUDED.last_ts_ns,
    first_ts_ns = LEAST(orders.first_ts_ns, EXCLUDED.first_ts_ns)
WHERE orders.last_event_seq < EXCLUDED.last_event_seq
"""

POSITIONS_UPSERT = f"""
INSERT INTO positions (venue, instr_id, event_ts_ns, position, avg_px, realized_pnl, unrealized_pnl, fees, mark_px)
SELECT DISTINCT ON (venue, instr_id) venue, instr_id, event_ts_ns, position, avg_px, realized_pnl,
       unrealized_pnl, fees, mark_px
FROM ({POSITION_SNAPSHOTS.select_converted()}) s
ORDER BY venue, instr_id, event_ts_ns DESC
ON CONFLICT (venue, instr_id) DO UPDATE SET
    event_ts_ns = EXCLUDED.event_ts_ns, position = EXCLUDED.position, avg_px = EXCLUDED.avg_px,
    realized_pnl = EXCLUDED.realized_pnl, unrealized_pnl = EXCLUDED.unrealized_pnl,
    fees = EXCLUDED.fees, mark_px = EXCLUDED.mark_px
WHERE positions.event_ts_ns <= EXCLUDED.event_ts_ns
"""


def valid_mask(spec: TableSpec, recs: np.ndarray) -> np.ndarray:
    """Records that can be keyed: a fill needs a trade id, an order event a client order id."""
    if spec.kind == R.KIND_FILL:
        return recs["trade_id"] != b""
    if spec.kind == R.KIND_ORDER_EVENT:
        return recs["cl_ord_id"] != b""
    return np.ones(recs.shape[0], dtype=bool)


def decode_copy(payload: bytes, columns: tuple[Column, ...] | list[Column]) -> list[tuple]:
    """Parse a binary COPY payload back into rows, `columns` in payload order (tests, debugging)."""
    if not payload.startswith(COPY_SIGNATURE[:11]):
        raise ValueError("not a binary COPY payload")
    codes = {"int2": ">h", "int4": ">i", "int8": ">q", "float4": ">f", "float8": ">d"}
    pos = len(COPY_SIGNATURE)
    rows = []
    while True:
        (nf,) = struct.unpack_from(">h", payload, pos)
        pos += 2
        if nf == -1:
            break
        if nf != len(columns):
            raise ValueError(f"row has {nf} fields, expected {len(columns)}")
        row = []
        for c in columns:
            (ln,) = struct.unpack_from(">i", payload, pos)
            pos += 4
            raw = payload[pos : pos + ln]
            pos += ln
            row.append(raw.rstrip(b"\0") if c.pg == "bytes" else struct.unpack(codes[c.pg], raw)[0])
        rows.append(tuple(row))
    return rows


def direct_columns(spec: TableSpec) -> list[Column]:
    """Column order of `encode_direct` payloads (fixed-width first, ids last)."""
    return [c for c in spec.columns if c.pg != "bytes"] + [c for c in spec.columns if c.pg == "bytes"]
