"""Every binary layout that crosses a process boundary: numpy structured dtypes.

Each record is a multiple of 64 bytes (one cache line), `kind` first, integer
nanosecond timestamps, float64 prices/quantities, small-int venue and instrument
ids. The hot path writes with `struct.pack_into` using the format derived here
from the same dtype; bulk readers use numpy views. Must not know venues or JSON.
"""

from __future__ import annotations

import struct

import numpy as np

# ---- record kinds --------------------------------------------------------
KIND_QUOTE = 1
KIND_TRADE = 2
KIND_BOOK_LEVEL = 3
KIND_BOOK_RESET = 4  # book invalid: consumer must drop it and wait for a snapshot
KIND_ORDER_EVENT = 10
KIND_FILL = 11
KIND_RISK_EVENT = 12
KIND_POSITION = 13

# ---- flags (uint8) -------------------------------------------------------
F_SNAPSHOT_START = 1  # first level of a snapshot: clear the book before applying
F_SNAPSHOT_END = 2  # last level of a snapshot: book is whole again
F_UPDATE_END = 4  # last record produced from one venue message (book consistent after it)
F_RESYNC = 8  # emitted while the feed resynchronises this book
F_REPLAY = 16  # record replayed (journal / reconciliation), not live

SIDE_BID = 1
SIDE_ASK = -1
SIDE_BUY = 1
SIDE_SELL = -1

_HEADER = [
    ("kind", "u1"),
    ("flags", "u1"),
    ("venue_id", "u1"),
    ("side", "i1"),
    ("instr_id", "u2"),
    ("aux", "u2"),  # kind-specific small field (e.g. level index, reason code)
]

# ---- market data (64 bytes) ---------------------------------------------
QUOTE_DTYPE = np.dtype(
    _HEADER
    + [
        ("exch_ts_ns", "i8"),
        ("recv_ts_ns", "i8"),
        ("venue_seq", "i8"),
        ("bid_px", "f8"),
        ("bid_qty", "f8"),
        ("ask_px", "f8"),
        ("ask_qty", "f8"),
    ],
    align=True,
)

TRADE_DTYPE = np.dtype(
    _HEADER
    + [
        ("exch_ts_ns", "i8"),
        ("recv_ts_ns", "i8"),
        ("venue_seq", "i8"),  # venue trade id where numeric
        ("px", "f8"),
        ("qty", "f8"),
        ("reserved0", "i8"),
        ("reserved1", "i8"),
    ],
    align=True,
)

BOOK_LEVEL_DTYPE = np.dtype(
    _HEADER
    + [
        ("exch_ts_ns", "i8"),
        ("recv_ts_ns", "i8"),
        ("venue_seq", "i8"),  # last update id of the message (Binance/Gate u, OKX seqId)
        ("px", "f8"),
        ("qty", "f8"),  # 0 means delete the level
        ("prev_seq", "i8"),  # first update id (U) or OKX prevSeqId
        ("reserved0", "i8"),
    ],
    align=True,
)

# Generic view of any market-data record: header + timestamps + payload slots.
MD_DTYPE = np.dtype(
    _HEADER
    + [
        ("exch_ts_ns", "i8"),
        ("recv_ts_ns", "i8"),
        ("venue_seq", "i8"),
        ("f0", "f8"),
        ("f1", "f8"),
        ("f2", "f8"),
        ("f3", "f8"),
    ],
    align=True,
)

# ---- events (128 bytes) --------------------------------------------------
ORDER_EVENT_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "u1"),
        ("venue_id", "u1"),
        ("side", "i1"),
        ("instr_id", "u2"),
        ("state", "u1"),  # oms OrderState value
        ("reason", "u1"),  # reject / cancel reason code
        ("event_ts_ns", "i8"),  # wall clock (epoch ns)
        ("exch_ts_ns", "i8"),
        ("event_seq", "i8"),  # per-order event sequence (idempotency key with venue + cl_ord_id)
        ("px", "f8"),
        ("qty", "f8"),
        ("filled_qty", "f8"),
        ("avg_px", "f8"),
        ("cl_ord_id", "S32"),
        ("venue_ord_id", "S24"),
        ("ord_type", "u1"),
        ("tif", "u1"),
        ("strategy_id", "u1"),
        ("reserved0", "u1"),
        ("latency_us", "f4"),  # request -> this event, where known
    ],
    align=True,
)

FILL_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "u1"),
        ("venue_id", "u1"),
        ("side", "i1"),
        ("instr_id", "u2"),
        ("liquidity", "u1"),  # 1 maker, 2 taker, 0 unknown
        ("reserved0", "u1"),
        ("event_ts_ns", "i8"),
        ("exch_ts_ns", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("fee", "f8"),  # positive = paid
        ("fee_asset", "S8"),
        ("trade_id", "S24"),
        ("cl_ord_id", "S32"),
        ("realized_pnl", "f8"),
        ("reserved1", "i8"),
    ],
    align=True,
)

RISK_EVENT_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "u1"),
        ("venue_id", "u1"),
        ("side", "i1"),
        ("instr_id", "u2"),
        ("reason", "u2"),  # rms reason code
        ("event_ts_ns", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("limit_value", "f8"),
        ("observed_value", "f8"),
        ("cl_ord_id", "S32"),
        ("text", "S48"),
    ],
    align=True,
)

POSITION_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "u1"),
        ("venue_id", "u1"),
        ("reserved0", "i1"),
        ("instr_id", "u2"),
        ("reserved1", "u2"),
        ("event_ts_ns", "i8"),
        ("position", "f8"),
        ("avg_px", "f8"),
        ("realized_pnl", "f8"),
        ("unrealized_pnl", "f8"),
        ("fees", "f8"),
        ("mark_px", "f8"),
        ("reserved2", "V64"),
    ],
    align=True,
)

EVENT_HEADER_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("flags", "u1"),
        ("venue_id", "u1"),
        ("side", "i1"),
        ("instr_id", "u2"),
        ("aux", "u2"),
        ("event_ts_ns", "i8"),
        ("body", "V112"),
    ],
    align=True,
)

MD_RECORD_SIZE = 64
EVENT_RECORD_SIZE = 128

MD_DTYPES = {
    KIND_QUOTE: QUOTE_DTYPE,
    KIND_TRADE: TRADE_DTYPE,
    KIND_BOOK_LEVEL: BOOK_LEVEL_DTYPE,
    KIND_BOOK_RESET: BOOK_LEVEL_DTYPE,
}
EVENT_DTYPES = {
    KIND_ORDER_EVENT: ORDER_EVENT_DTYPE,
    KIND_FILL: FILL_DTYPE,
    KIND_RISK_EVENT: RISK_EVENT_DTYPE,
    KIND_POSITION: POSITION_DTYPE,
}

_STRUCT_CODES = {
    "u1": "B",
    "i1": "b",
    "u2": "H",
    "i2": "h",
    "u4": "I",
    "i4": "i",
    "f4": "f",
    "u8": "Q",
    "i8": "q",
    "f8": "d",
}


def _fields(dtype: np.dtype) -> list:
    if dtype.fields is None:
        raise TypeError(f"{dtype} is not a structured dtype")
    return sorted(dtype.fields.items(), key=lambda kv: kv[1][1])


def struct_format(dtype: np.dtype) -> str:
    """Little-endian `struct` format with explicit padding that matches `dtype` byte for byte."""
    fields = _fields(dtype)
    fmt = ["<"]
    pos = 0
    for _name, (fdt, off, *_rest) in fields:
        if off > pos:
            fmt.append(f"{off - pos}x")
        if fdt.kind == "S":
            fmt.append(f"{fdt.itemsize}s")
        elif fdt.kind == "V":
            fmt.append(f"{fdt.itemsize}x")
        else:
            fmt.append(_STRUCT_CODES[fdt.str.lstrip("<>|=")])
        pos = off + fdt.itemsize
    if dtype.itemsize > pos:
        fmt.append(f"{dtype.itemsize - pos}x")
    return "".join(fmt)


def packer(dtype: np.dtype) -> struct.Struct:
    """Precompiled `struct.Struct` for `dtype`; void (V) fields are padding and take no argument."""
    s = struct.Struct(struct_format(dtype))
    assert s.size == dtype.itemsize, (s.size, dtype.itemsize)
    return s


def packed_field_names(dtype: np.dtype) -> list[str]:
    """Field names in the argument order of `packer(dtype).pack_into` (void fields skipped)."""
    fields = _fields(dtype)
    return [name for name, (fdt, *_r) in fields if fdt.kind != "V"]


QUOTE_STRUCT = packer(QUOTE_DTYPE)
TRADE_STRUCT = packer(TRADE_DTYPE)
BOOK_LEVEL_STRUCT = packer(BOOK_LEVEL_DTYPE)
MD_STRUCT = packer(MD_DTYPE)
ORDER_EVENT_STRUCT = packer(ORDER_EVENT_DTYPE)
FILL_STRUCT = packer(FILL_DTYPE)
RISK_EVENT_STRUCT = packer(RISK_EVENT_DTYPE)
POSITION_STRUCT = packer(POSITION_DTYPE)

for _dt in (QUOTE_DTYPE, TRADE_DTYPE, BOOK_LEVEL_DTYPE, MD_DTYPE):
    assert _dt.itemsize == MD_RECORD_SIZE, _dt
for _dt in (ORDER_EVENT_DTYPE, FILL_DTYPE, RISK_EVENT_DTYPE, POSITION_DTYPE, EVENT_HEADER_DTYPE):
    assert _dt.itemsize == EVENT_RECORD_SIZE, _dt
