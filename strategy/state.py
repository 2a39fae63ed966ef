"""Per-instrument market state of the strategy host: preallocated numpy arrays indexed
[venue_id, instr_id] (best bid/ask, last update, book valid / resyncing).

Each array also has a flat memoryview alias (index `venue_id * n_instr + instr_id`) for the
hot path: scalar access through a memoryview is several times cheaper than numpy
indexing and returns plain floats. Written only by the host; read by strategies and rms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_VENUES = 4  # venue ids are 1..3 (common.enums.Exchange); row 0 stays unused


def _flat(a: np.ndarray) -> Any:
    """A 1-D memoryview over a C-contiguous array (plain float / int items on indexing)."""
    return memoryview(a.reshape(-1))  # type: ignore[arg-type]


class MarketState:
    """Top of book and book health per (venue, instrument)."""

    def __init__(self, n_instr: int = 64) -> None:
        if n_instr < 2:
            n_instr = 2
        self.n_instr = n_instr
        shape = (N_VENUES, n_instr)
        self.bid_px = np.zeros(shape, dtype=np.float64)
        self.bid_qty = np.zeros(shape, dtype=np.float64)
        self.ask_px = np.zeros(shape, dtype=np.float64)
        self.ask_qty = np.zeros(shape, dtype=np.float64)
        self.last_trade_px = np.zeros(shape, dtype=np.float64)
        self.update_ns = np.zeros(shape, dtype=np.int64)  # host monotonic ns of the last update
        self.exch_ts_ns = np.zeros(shape, dtype=np.int64)
        self.valid = np.zeros(shape, dtype=np.uint8)  # 1: two-sided, not resyncing
        self.resync = np.zeros(shape, dtype=np.uint8)  # 1: the feed is resynchronising this book
        self.has_depth = np.zeros(shape, dtype=np.uint8)  # 1: depth records seen (snapshot ends a resync)
        # flat aliases for the hot path
        self.bid_px_f = _flat(self.bid_px)
        self.bid_qty_f = _flat(self.bid_qty)
        self.ask_px_f = _flat(self.ask_px)
        self.ask_qty_f = _flat(self.ask_qty)
        self.last_trade_px_f = _flat(self.last_trade_px)
        self.update_ns_f = _flat(self.update_ns)
        self.exch_ts_ns_f = _flat(self.exch_ts_ns)
        self.valid_f = _flat(self.valid)
        self.resync_f = _flat(self.resync)
        self.has_depth_f = _flat(self.has_depth)

    def index(self, venue_id: int, instr_id: int) -> int:
        return venue_id * self.n_instr + instr_id

    def in_range(self, venue_id: int, instr_id: int) -> bool:
        return 0 < venue_id < N_VENUES and 0 < instr_id < self.n_instr

    # ---- readers (edges and strategies) ------------------------------------
    def best_bid(self, venue_id: int, instr_id: int) -> float:
        return self.bid_px_f[venue_id * self.n_instr + instr_id]

    def best_ask(self, venue_id: int, instr_id: int) -> float:
        return self.ask_px_f[venue_id * self.n_instr + instr_id]

    def mid(self, venue_id: int, instr_id: int) -> float:
        k = venue_id * self.n_instr + instr_id
        b = self.bid_px_f[k]
        a = self.ask_px_f[k]
        if b > 0.0 and a > 0.0:
            return (b + a) * 0.5
        return 0.0

    def is_valid(self, venue_id: int, instr_id: int) -> bool:
        return self.valid_f[venue_id * self.n_instr + instr_id] == 1

    def is_resyncing(self, venue_id: int, instr_id: int) -> bool:
        return self.resync_f[venue_id * self.n_instr + instr_id] == 1

    def age_ns(self, venue_id: int, instr_id: int, now_ns: int) -> int:
        """Nanoseconds since the last update; a very large number when never updated."""
        t = self.update_ns_f[venue_id * self.n_instr + instr_id]
        if t == 0:
            return 1 << 62
        return now_ns - t

    # ---- writers (the host; also tests and backtests) ----------------------
    def set_quote(self, venue_id: int, instr_id: int, bid_px: float, bid_qty: float,
                  ask_px: float, ask_qty: float, now_ns: int, exch_ts_ns: int = 0) -> None:
        k = venue_id * self.n_instr + instr_id
        self.bid_px_f[k] = bid_px
        self.bid_qty_f[k] = bid_qty
        self.ask_px_f[k] = ask_px
        self.ask_qty_f[k] = ask_qty
        self.update_ns_f[k] = now_ns
        self.exch_ts_ns_f[k] = exch_ts_ns
        self.valid_f[k] = 1 if (bid_px > 0.0 and ask_px > 0.0 and self.resync_f[k] == 0) else 0

    def set_resync(self, venue_id: int, instr_id: int, resyncing: bool, now_ns: int = 0) -> None:
        k = venue_id * self.n_instr + instr_id
        if resyncing:
            self.resync_f[k] = 1
            self.valid_f[k] = 0
        else:
            self.resync_f[k] = 0
            self.valid_f[k] = 1 if (self.bid_px_f[k] > 0.0 and self.ask_px_f[k] > 0.0) else 0
        if now_ns:
            self.update_ns_f[k] = now_ns
