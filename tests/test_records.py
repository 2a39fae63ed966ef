"""Record layouts: struct formats agree with the numpy dtypes byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from ringbuf import records as R

pytestmark = pytest.mark.unit

ALL = {
    "quote": (R.QUOTE_DTYPE, R.QUOTE_STRUCT),
    "trade": (R.TRADE_DTYPE, R.TRADE_STRUCT),
    "book_level": (R.BOOK_LEVEL_DTYPE, R.BOOK_LEVEL_STRUCT),
    "md": (R.MD_DTYPE, R.MD_STRUCT),
    "order_event": (R.ORDER_EVENT_DTYPE, R.ORDER_EVENT_STRUCT),
    "fill": (R.FILL_DTYPE, R.FILL_STRUCT),
    "risk_event": (R.RISK_EVENT_DTYPE, R.RISK_EVENT_STRUCT),
    "position": (R.POSITION_DTYPE, R.POSITION_STRUCT),
}


@pytest.mark.parametrize("name", list(ALL))
def test_size_is_cache_line_multiple_and_kind_first(name):
    dt, st = ALL[name]
    assert dt.itemsize % 64 == 0
    assert st.size == dt.itemsize
    assert dt.fields["kind"][1] == 0


@pytest.mark.parametrize("name", list(ALL))
def test_pack_into_matches_numpy_view_field_by_field(name):
    dt, st = ALL[name]
    names = R.packed_field_names(dt)
    values = []
    for i, f in enumerate(names):
        fdt = dt.fields[f][0]
        if fdt.kind == "S":
            values.append(f"v{i}".encode()[: fdt.itemsize])
        elif fdt.kind == "f":
            values.append(i + 0.5)
        elif fdt.kind == "i":
            values.append(-i if fdt.itemsize > 1 else -1)
        else:
            values.append(i)
    buf = bytearray(dt.itemsize * 2)
    st.pack_into(buf, dt.itemsize, *values)
    rec = np.frombuffer(bytes(buf), dtype=dt)[1]
    for f, v in zip(names, values, strict=True):
        assert rec[f] == v, f
    # and the offsets computed by struct agree with numpy's
    unpacked = st.unpack_from(buf, dt.itemsize)
    for got, v in zip(unpacked, values, strict=True):
        assert (got.rstrip(b"\0") if isinstance(got, bytes) else got) == v


def test_units_in_field_names():
    for dt in (R.QUOTE_DTYPE, R.TRADE_DTYPE, R.BOOK_LEVEL_DTYPE):
        for f in dt.names:
            if "ts" in f:
                assert f.endswith("_ns"), f
    assert {"bid_px", "bid_qty", "ask_px", "ask_qty"} <= set(R.QUOTE_DTYPE.names)


def test_md_view_over_mixed_kinds():
    arr = np.zeros(2, dtype=R.MD_DTYPE)
    buf = arr.view(np.uint8).reshape(2, 64)
    R.QUOTE_STRUCT.pack_into(buf[0], 0, R.KIND_QUOTE, 0, 1, 0, 3, 0, 1, 2, 3, 10.0, 1.0, 11.0, 2.0)
    R.TRADE_STRUCT.pack_into(buf[1], 0, R.KIND_TRADE, 0, 2, -1, 3, 0, 1, 2, 99, 10.5, 0.3, 0, 0)
    assert arr["kind"].tolist() == [R.KIND_QUOTE, R.KIND_TRADE]
    q = arr[arr["kind"] == R.KIND_QUOTE].view(R.QUOTE_DTYPE)
    t = arr[arr["kind"] == R.KIND_TRADE].view(R.TRADE_DTYPE)
    assert q["ask_px"][0] == 11.0 and t["px"][0] == 10.5 and t["side"][0] == -1
