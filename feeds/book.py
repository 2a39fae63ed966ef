"""L2 order book in preallocated numpy arrays: apply levels, best bid/ask, top-N, crossed check.

Used by the feed process (to verify sequences, checksums and crossed books) and by
consumers that rebuild a book from the ring's book-level records (`apply_records`).
No object per level: each side keeps its prices and sizes in numpy arrays indexed
by slot, one price->slot dict and one sorted list of keys for the order.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

import numpy as np

from ringbuf.records import (
    F_SNAPSHOT_END,
    F_SNAPSHOT_START,
    F_UPDATE_END,
    KIND_BOOK_LEVEL,
    KIND_BOOK_RESET,
    MD_DTYPE,
    SIDE_ASK,
    SIDE_BID,
)

NAN = math.nan


class BookSide:
    """One side. `keys` is ascending with the best level LAST (`px` for bids, `-px` for asks):
    venues change the top of the book most, and inserting or deleting near the end of a list
    moves few pointers. A size change is one dict lookup and one 8-byte store (`qv[slot] = qty`
    through a memoryview of the numpy array, 2x cheaper than numpy item assignment); only an
    insert or a delete touches `keys`. The feed's hot loop inlines that (`index`, `qv`,
    `insert`, `remove`); everything else calls `set`."""

    __slots__ = ("px", "qty", "index", "free", "keys", "neg", "cap", "px_str", "qty_str", "qv", "pv")

    def __init__(self, capacity: int, is_bid: bool, keep_strings: bool = False) -> None:
        self.cap = capacity
        self.neg = not is_bid  # asks are keyed by -px so that the best is last on both sides
        self.px = np.zeros(capacity, dtype=np.float64)
        self.qty = np.zeros(capacity, dtype=np.float64)
        self.pv = memoryview(self.px)
        self.qv = memoryview(self.qty)
        self.index: dict[float, int] = {}
        self.free = list(range(capacity - 1, -1, -1))
        self.keys: list[float] = []
        # OKX checksums hash the strings as received; kept per slot, not per level object
        self.px_str: list[str] | None = [""] * capacity if keep_strings else None
        self.qty_str: list[str] | None = [""] * capacity if keep_strings else None

    def __len__(self) -> int:
        return len(self.keys)

    def clear(self) -> None:
        self.index.clear()
        self.keys.clear()
        self.free = list(range(self.cap - 1, -1, -1))
        self.qty[:] = 0.0

    def set(self, px: float, qty: float) -> int:
        """Set the size at `px` (qty 0 deletes). Returns the slot, or -1 (deleted / not kept)."""
        i = self.index.get(px)
        if qty > 0.0:
            if i is None:
                return self.insert(px, qty)
            self.qv[i] = qty
            return i
        if i is not None:
            self.remove(px)
        return -1

    def insert(self, px: float, qty: float) -> int:
        """A new level (`px` not in the book, qty > 0). Returns its slot, or -1 when the side
        is full and `px` is worse than every kept level."""
        key = -px if self.neg else px
        keys = self.keys
        if not self.free:
            # full: keep the best `cap` levels (venues only maintain a fixed depth anyway)
            if key <= keys[0]:
                return -1
            self.remove(-keys[0] if self.neg else keys[0])
        i = self.free.pop()
        self.index[px] = i
        self.pv[i] = px
        self.qv[i] = qty
        if not keys or key > keys[-1]:
            keys.append(key)  # a new best level: the common case at the top of the book
        else:
            insort(keys, key)
        return i

    def remove(self, px: float) -> None:
        """Delete the level at `px` (which must be in the book)."""
        i = self.index.pop(px)
        self.qv[i] = 0.0
        self.free.append(i)
        keys = self.keys
        key = -px if self.neg else px
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def set_str(self, px: float, qty: float, px_s: str, qty_s: str) -> None:
        i = self.set(px, qty)
        if i >= 0:
            self.px_str[i] = px_s
            self.qty_str[i] = qty_s

    def trim(self, depth: int) -> list[float]:
        """Drop levels beyond `depth`; returns the dropped prices (worst last)."""
        out: list[float] = []
        keys = self.keys
        while len(keys) > depth:
            key = keys[0]
            out.append(-key if self.neg else key)
            self.remove(out[-1])
        out.reverse()  # worst last
        return out

    def best(self) -> tuple[float, float]:
        if not self.keys:
            return NAN, 0.0
        k = self.keys[-1]
        px = -k if self.neg else k
        return float(px), float(self.qty[self.index[px]])

    def best_px(self) -> float:
        if not self.keys:
            return NAN
        k = self.keys[-1]
        return float(-k if self.neg else k)

    def _top_prices(self, n: int) -> list[float]:
        keys = self.keys[: -n - 1 : -1] if n > 0 else []
        return [-k for k in keys] if self.neg else keys

    def top(self, n: int) -> np.ndarray:
        """(k, 2) float64 array of [px, qty], best first, k <= n."""
        pxs = self._top_prices(n)
        idx = self.index
        slots = [idx[p] for p in pxs]
        out = np.empty((len(slots), 2), dtype=np.float64)
        out[:, 0] = pxs
        out[:, 1] = self.qty[slots]
        return out

    def top_strings(self, n: int) -> list[tuple[str, str]]:
        idx = self.index
        ps, qs = self.px_str, self.qty_str
        out = []
        for p in self._top_prices(n):
            i = idx[p]
            out.append((ps[i], qs[i]))
        return out


class Book:
    """An L2 book. `valid` is False after a reset until a whole snapshot has been applied."""

    __slots__ = ("bids", "asks", "valid", "seq", "instr_id", "venue_id", "hdr_bid", "hdr_ask", "hdr_bytes")

    def __init__(self, capacity: int = 1024, keep_strings: bool = False, instr_id: int = 0,
                 venue_id: int = 0) -> None:
        self.bids = BookSide(capacity, True, keep_strings)
        self.asks = BookSide(capacity, False, keep_strings)
        self.valid = False
        self.seq = 0
        self.instr_id = instr_id
        self.venue_id = venue_id
        # first 8 bytes of this book's BOOK_LEVEL records per side as one u64 (kind, flags 0,
        # venue, side, instrument, aux 0): what the feed's packed-header writer takes
        self.hdr_bid = KIND_BOOK_LEVEL | venue_id << 16 | (SIDE_BID & 0xFF) << 24 | instr_id << 32
        self.hdr_ask = KIND_BOOK_LEVEL | venue_id << 16 | (SIDE_ASK & 0xFF) << 24 | instr_id << 32
        # the same as 8 little-endian bytes: bid, ask, then both with F_UPDATE_END (a frame's last record)
        end = F_UPDATE_END << 8
        self.hdr_bytes = tuple(h.to_bytes(8, "little") for h in (self.hdr_bid, self.hdr_ask, self.hdr_bid | end,
                                                                   self.hdr_ask | end))

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def side(self, side: int) -> BookSide:
        return self.bids if side > 0 else self.asks

    def set_level(self, side: int, px: float, qty: float) -> None:
        """`side` +1 bid / -1 ask; qty 0 deletes the level."""
        (self.bids if side > 0 else self.asks).set(px, qty)

    def best_bid(self) -> tuple[float, float]:
        return self.bids.best()

    def best_ask(self) -> tuple[float, float]:
        return self.asks.best()

    def crossed(self) -> bool:
        """True when both sides exist and best ask <= best bid."""
        b, a = self.bids.keys, self.asks.keys
        return bool(b) and bool(a) and -a[-1] <= b[-1]

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top n levels per side: (bids, asks), each a (k, 2) [px, qty] array, best first."""
        return self.bids.top(n), self.asks.top(n)

    def depth(self) -> tuple[int, int]:
        return len(self.bids), len(self.asks)

    # ---- consumer side: rebuild from ring records ------------------------------
    def apply_record(self, kind: int, flags: int, side: int, px: float, qty: float, seq: int = 0) -> None:
        """Apply one market-data record (others are ignored). A reset invalidates the book; a
        snapshot start clears it; a snapshot end makes it valid again."""
        if kind == KIND_BOOK_LEVEL:
            if flags & F_SNAPSHOT_START:
                self.clear()
            if side:
                (self.bids if side > 0 else self.asks).set(px, qty)
            if flags & F_SNAPSHOT_END:
                self.valid = True
            self.seq = seq
        elif kind == KIND_BOOK_RESET:
            self.clear()
            self.valid = False

    def apply_records(self, records: np.ndarray) -> int:
        """Apply an array of 64-byte market-data records (any MD dtype view) for this book's
        instrument (all records when `instr_id` is 0). Returns records applied."""
        recs = records.view(MD_DTYPE)
        if self.instr_id:
            recs = recs[recs["instr_id"] == self.instr_id]
        if self.venue_id:
            recs = recs[recs["venue_id"] == self.venue_id]
        kinds = recs["kind"]
        recs = recs[(kinds == KIND_BOOK_LEVEL) | (kinds == KIND_BOOK_RESET)]
        apply = self.apply_record
        for kind, flags, side, px, qty, seq in zip(recs["kind"].tolist(), recs["flags"].tolist(),
                                                   recs["side"].tolist(), recs["f0"].tolist(),
                                                   recs["f1"].tolist(), recs["venue_seq"].tolist(),
                                                   strict=True):
            apply(kind, flags, side, px, qty, seq)
        return len(recs)


__all__ = ["Book", "BookSide", "SIDE_BID", "SIDE_ASK"]
