"""What the three venue feeds share: record sinks, the per-book sync state machine, `parse`.

A venue module subclasses `VenueFeed` and implements `_decode(frame, recv_ns, sink, sync)`
(one code path for the pure `parse` and for the feed process) and `_rest_book(body)`.
Records go to a `Sink`: `RingSink` (the ring's pre-bound writers, one publish per frame) in
the feed process, a `Collector` in `parse`. No I/O here and no module-level mutable state.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
from collections import deque
from functools import partial

import numpy as np
import orjson

from common.enums import Exchange
from common.instruments import InstrumentError, Instruments
from feeds.book import Book
from feeds.errors import FrameError
from ringbuf.records import (
    BOOK_LEVEL_STRUCT,
    F_RESYNC,
    F_SNAPSHOT_END,
    F_SNAPSHOT_START,
    F_UPDATE_END,
    KIND_BOOK_LEVEL,
    KIND_BOOK_RESET,
    KIND_QUOTE,
    MD_DTYPE,
    QUOTE_STRUCT,
    TRADE_STRUCT,
)

# Multi-record frames (book levels, several trades) are staged through one batch writer.
assert TRADE_STRUCT.format == BOOK_LEVEL_STRUCT.format, "trade and book-level records must share a layout"

# Errors a malformed frame can provoke while we index into the decoded JSON.
DECODE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, struct.error, OverflowError,
                 InstrumentError)

# reasons carried in the `aux` field of a KIND_BOOK_RESET record
REASON_GAP = 1
REASON_CHECKSUM = 2
REASON_CROSSED = 3
REASON_RECONNECT = 4
REASON_STALE = 5
REASON_BAD_FRAME = 6
REASON_NAMES = {REASON_GAP: "gap", REASON_CHECKSUM: "checksum", REASON_CROSSED: "crossed",
                REASON_RECONNECT: "reconnect", REASON_STALE: "stale", REASON_BAD_FRAME: "bad_frame"}

# `on_frame` return values below zero are control signals for the feed process
CTRL_ROTATE = -1  # the venue announced a shutdown / upgrade: open a new connection now

WAIT = 0  # waiting for a snapshot (WS or REST); updates are buffered
LIVE = 1

loads = orjson.loads


# ---- record layouts with a packed header --------------------------------------------------------
# The first 8 bytes of a market-data record (kind, flags, venue_id, side, instr_id, aux) as one
# little-endian u64, built once per instrument and side: a hot-path write then passes 8 values
# instead of 13 (a third cheaper per record). Byte for byte the QUOTE / BOOK_LEVEL records.
# The header is packed as a signed i64 (same bytes): `struct` converts a `q` in a few dozen
# instructions and a `Q` through the generic big-int path (about 10x more), per record.
QUOTE_H_STRUCT = struct.Struct("<qqqqdddd")  # header, exch_ts_ns, recv_ts_ns, venue_seq, 4 x f8
LEVEL_H_STRUCT = struct.Struct("<qqqqddqq")  # header, exch_ts_ns, recv_ts_ns, venue_seq, px, qty, prev, 0


def header(kind: int, flags: int, venue_id: int, side: int, iid: int, aux: int = 0) -> int:
    """The packed header of a record as a signed 64-bit int (see QUOTE_H_STRUCT)."""
    h = kind | flags << 8 | venue_id << 16 | (side & 0xFF) << 24 | iid << 32 | aux << 48
    return h - (1 << 64) if h >= 1 << 63 else h


assert QUOTE_H_STRUCT.pack(header(1, 4, 2, -1, 300, 7), 5, 6, 7, 1.5, 2.5, 3.5, 4.5) == QUOTE_STRUCT.pack(
    1, 4, 2, -1, 300, 7, 5, 6, 7, 1.5, 2.5, 3.5, 4.5), "QUOTE_H_STRUCT must match the quote record"
assert LEVEL_H_STRUCT.pack(header(3, 4, 2, -1, 300, 7), 5, 6, 7, 1.5, 2.5, 8, 9) == BOOK_LEVEL_STRUCT.pack(
    3, 4, 2, -1, 300, 7, 5, 6, 7, 1.5, 2.5, 8, 9), "LEVEL_H_STRUCT must match the book-level record"
assert LEVEL_H_STRUCT.pack(header(3, 255, 2, -1, 65535, 0xFFFF), 5, 6, 7, 1.5, 2.5, 8, 9) == BOOK_LEVEL_STRUCT.pack(
    3, 255, 2, -1, 65535, 0xFFFF, 5, 6, 7, 1.5, 2.5, 8, 9), "a header with the top bit set packs as signed"

F_UPDATE_END_H = F_UPDATE_END << 8  # the flag inside a packed header

# A run of book-level records as the ring's batch writer packs it (`Sink.level_run`): per record
# its first 32 bytes (header, exch_ts_ns, recv_ts_ns, venue_seq) and last 16 (prev, 0) as bytes
# packed once per frame and side, then px and qty: `struct` copies an `s` field and converts only
# the two floats, a third of the work of converting 8 fields per record.
LEVEL_RUN_STRUCT = struct.Struct("<32sdd16s")
RUN_HEAD_STRUCT = struct.Struct("<qqqq")  # header, exch_ts_ns, recv_ts_ns, venue_seq
RUN_MID_STRUCT = struct.Struct("<qqq")  # exch_ts_ns, recv_ts_ns, venue_seq
RUN_TAIL_STRUCT = struct.Struct("<qq")  # prev, 0
assert LEVEL_RUN_STRUCT.size == LEVEL_H_STRUCT.size
assert LEVEL_RUN_STRUCT.pack(RUN_HEAD_STRUCT.pack(header(3, 4, 2, -1, 300), 5, 6, 7), 1.5, 2.5,
                             RUN_TAIL_STRUCT.pack(8, 0)) == LEVEL_H_STRUCT.pack(header(3, 4, 2, -1, 300), 5, 6, 7,
                                                                                1.5, 2.5, 8, 0)


def _noop() -> int:
    return 0


def _unpacked(write13):
    """A packed-header writer over a 13-value writer (sinks that filter by field)."""

    def write_h(h, exch_ns, recv_ns, seq, f0, f1, f2, f3):
        side = h >> 24 & 0xFF
        return write13(h & 0xFF, h >> 8 & 0xFF, h >> 16 & 0xFF, side - 256 if side > 127 else side,
                       h >> 32 & 0xFFFF, h >> 48 & 0xFFFF, exch_ns, recv_ns, seq, f0, f1, f2, f3)

    return write_h


def _one_by_one(level_h):
    """A `level_run(n, values)` (LEVEL_RUN_STRUCT values) over a one-record packed-header writer."""
    head = RUN_HEAD_STRUCT.unpack
    tail = RUN_TAIL_STRUCT.unpack

    def level_run(n, values):
        if len(values) != 4 * n:
            raise struct.error(f"{len(values)} values for {n} level records")
        for i in range(0, 4 * n, 4):
            level_h(*head(values[i]), values[i + 1], values[i + 2], *tail(values[i + 3]))

    return level_run


def _packed(write_h):
    """A 13-value writer over a packed-header writer."""

    def write13(kind, flags, venue_id, side, iid, aux, exch_ns, recv_ns, seq, f0, f1, f2, f3):
        h = kind | flags << 8 | venue_id << 16 | (side & 0xFF) << 24 | iid << 32 | aux << 48
        return write_h(h - (1 << 64) if h >= 1 << 63 else h, exch_ns, recv_ns, seq, f0, f1, f2, f3)

    return write13


# ---- the quote fast path -------------------------------------------------------------------
# A venue's best bid/ask frame has one documented layout whose only variable parts are digit runs.
# `frame.translate(None, DIGITS)` (its skeleton) is looked up among the skeletons of frames the
# ordinary decode already accepted; on a hit, `frame.translate(TO_ARRAY)` is the same frame as a
# JSON array (letters become 1s, quotes spaces, objects arrays) that orjson decodes with the
# numbers converted in C. Each key or symbol string then reads back as a run of 1s of its length
# exactly when no digit was slipped into it, and a digit slipped in beside a value turns into
# invalid JSON (two numbers apart by a space). A quoted value without a dot ("0", OKX's "1") can
# lose all its digits to a neighbour ("A":""0 has the skeleton of "A":"0" and reads as 0), which
# leaves an empty string behind: a frame containing `""` (EMPTY_STR) never takes the fast path.
# Anything else falls back to the ordinary decode.
DIGITS = b"0123456789"
EMPTY_STR = b'""'
_tbl = bytearray(range(256))
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-":
    _tbl[_c] = 0x31  # "1"
_tbl[0x22] = 0x20  # '"' -> ' '
_tbl[0x3A] = 0x2C  # ':' -> ','
_tbl[0x7B] = 0x5B  # '{' -> '['
_tbl[0x7D] = 0x5D  # '}' -> ']'
TO_ARRAY = bytes(_tbl)
FAST_ERRORS = (ValueError, TypeError, struct.error, OverflowError)  # the fast path then falls back
MAX_LAYOUTS = 256  # skeletons remembered per feed


def ones(s: str) -> int:
    """What a letters-only string reads as after TO_ARRAY."""
    return int("1" * len(s))


def quote_skeleton(frame, sym: str, template: bytes) -> bytes | None:
    """The skeleton of `frame`, a quote frame the ordinary decode accepted for `sym`, when the
    frame is in the layout `template` (the skeleton with `%s` for the symbol and its dots left
    out, which the decode's success confines to the prices and sizes); else None. Symbols with a
    digit or a dot never take the fast path (a digit there would be indistinguishable)."""
    if not (0 < len(sym) <= 18 and sym.isascii() and sym.replace("-", "").replace("_", "").isalpha()):
        return None
    if frame.__class__ is not bytes:
        frame = bytes(frame)
    sk = frame.translate(None, DIGITS)
    if sk.replace(b".", b"") != template.replace(b"%s", sym.encode()):
        return None
    return sk


# ---- sinks ----------------------------------------------------------------------------------
class Sink:
    """Where a feed's records go. `quote(*v)` / `trade(*v)` write one QUOTE / TRADE record and
    publish it; `level(*v)` stages one record of the BOOK_LEVEL layout (book levels, resets and
    the trades of a multi-trade frame); `begin()` comes before a frame's first `level` and
    `publish()` after its last one, so a consumer sees a frame's records together.
    `quote_h` / `level_h` are the same writes with the header packed (`header`, QUOTE_H_STRUCT,
    LEVEL_H_STRUCT); `level_run(n, values)` stages `n` level records from one flat list of their
    LEVEL_RUN_STRUCT values (4 per record). A sink built from the 13-value writers alone derives
    them."""

    __slots__ = ("quote", "trade", "level", "begin", "publish", "quote_h", "level_h", "level_run")

    def __init__(self, quote, trade, level, begin=_noop, publish=_noop, quote_h=None, level_h=None,
                 level_run=None) -> None:
        self.quote = quote
        self.trade = trade
        self.level = level
        self.begin = begin
        self.publish = publish
        self.quote_h = quote_h if quote_h is not None else _unpacked(quote)
        self.level_h = level_h if level_h is not None else _unpacked(level)
        self.level_run = level_run if level_run is not None else _one_by_one(self.level_h)


def ring_sink(ring) -> Sink:
    """The feed process's sink: `Ring.writer` for single-record frames (about 2x cheaper than
    `Ring.write`), one `Ring.batch_writer` for the rest (one tail store per frame)."""
    try:
        put, publish = ring.batch_writer(LEVEL_H_STRUCT, LEVEL_RUN_STRUCT)
    except TypeError:  # a stand-in for Ring without record runs (the benches' queue adapter)
        put, publish = ring.batch_writer(LEVEL_H_STRUCT)
    # `begin` re-reads the tail: the single-record writers move it behind the batch writer's back
    return Sink(ring.writer(QUOTE_STRUCT), ring.writer(TRADE_STRUCT), _packed(put), put.sync, publish,
                ring.writer(QUOTE_H_STRUCT), put, getattr(put, "many", None))


def write_sink(write) -> Sink:
    """A sink over a generic `write(packer, *values)` (`Ring.write`, `Collector.write`, a filter)."""
    return Sink(partial(write, QUOTE_STRUCT), partial(write, TRADE_STRUCT), partial(write, BOOK_LEVEL_STRUCT),
                quote_h=partial(write, QUOTE_H_STRUCT), level_h=partial(write, LEVEL_H_STRUCT))


class Collector:
    """A `write(packer, *values)` sink that gathers packed records for `parse`."""

    __slots__ = ("parts", "sink")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.sink = write_sink(self.write)

    def write(self, packer: struct.Struct, *values) -> bool:
        self.parts.append(packer.pack(*values))
        return True

    def array(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0, dtype=MD_DTYPE)
        return np.frombuffer(bytearray(b"".join(self.parts)), dtype=MD_DTYPE)


# ---- numbers -----------------------------------------------------------------------------------
def split_levels(frame: bytes, tail: int) -> tuple[bytes, list, list] | None:
    """Fast path for a depth frame in the documented layout `<head>,"b":[[..]],"a":[[..]]<tail>`
    (Binance and Gate): (head bytes, bids, asks) with every price and size already a number, or
    None (the caller then decodes the frame the ordinary way). Deleting the quotes lets orjson
    convert the numbers in C (40 `float(str)` calls cost more than parsing the whole frame); it is
    only trusted when every level entry was a string, so a malformed value is never accepted
    here: the count of quotes removed must be exactly two per entry (plus the key "a")."""
    head, sep, rest = frame.partition(b',"b":')
    if not sep:
        return None
    sides = numeric_sides(rest, b",a:", tail)
    if sides is None:
        return None
    return head, sides[0], sides[1]


_NUMBER_CHARS = b"0123456789."
_NUMBERS_TO_0 = bytes(0x30 if c in _NUMBER_CHARS else c for c in range(256))
_SKELETONS: dict[tuple[int, int, int, bytes], bytes] = {}


def _skeleton(n1: int, n2: int, k: int, key: bytes) -> bytes:
    """`<levels>,"<key>":<levels>` with every entry an empty string: what a well-formed `raw` of
    `numeric_sides` reads as once its digits and dots are deleted."""
    sk = _SKELETONS.get((n1, n2, k, key))
    if sk is None:
        level = b"[" + b",".join([b'""'] * k) + b"]"
        quoted = b',"' + key[1:-1] + b'":'
        sk = b"[" + b",".join([level] * n1) + b"]" + quoted + b"[" + b",".join([level] * n2) + b"]"
        if len(_SKELETONS) < 4096:
            _SKELETONS[(n1, n2, k, key)] = sk
    return sk


def numeric_sides(raw: bytes, key: bytes, tail: int = 0) -> tuple[list, list] | None:
    """`raw` is `<levels>,"<key>":<levels>` plus `tail` bytes without quotes; `key` is given as
    it reads with the quotes deleted (b",a:"). Both level lists with every price and size a
    number (orjson converts them once the quotes are gone), or None when anything but string
    entries of digits and dots was there: with its digits and dots deleted, `raw` must read
    exactly as the skeleton of the levels found (every quote, bracket and comma in its place)
    and no quote may have a digit or dot on both sides, nor any string be empty, so a quote moved across
    a bracket or a comma, or a digit outside its string, is refused here as the ordinary decode
    refuses it."""
    s = raw.translate(None, b'"')
    # bytes.find, not `in`: `in` first tries the needle as an int and raises (and
    # formats) a TypeError inside, which costs more than the search
    if s.find(b"-") >= 0 or s.find(b"u") >= 0 or s.find(b"l") >= 0:
        return None  # "-0" parses as int 0 (not -0.0); "true"/"false"/"null" would become literals
    x, sep, y = s.partition(key)
    if not sep:
        return None
    try:
        first = loads(x)
        second = loads(y[:-tail] if tail else y)
        if first.__class__ is not list or second.__class__ is not list:
            return None
        k = len(first[0]) if first else (len(second[0]) if second else 2)
        if sum(map(len, first)) + sum(map(len, second)) != (len(first) + len(second)) * k:
            return None  # levels of different lengths: the ordinary decode says what is wrong
        body = raw[:-tail] if tail else raw
        if body.translate(None, _NUMBER_CHARS) != _skeleton(len(first), len(second), k, key):
            return None
        # and the digits inside their strings: with the skeleton in place, a digit or dot outside
        # its string stands against a quote with a digit or dot on its other side, or against an
        # empty string (never a price or size: the ordinary decode refuses it)
        if body.translate(_NUMBERS_TO_0).find(b'0"0') >= 0 or body.find(b'""') >= 0:
            return None
    except DECODE_ERRORS:
        return None
    return first, second




def float_levels(levels) -> list:
    """Price/size strings (or numbers) -> [[px, qty], ...] floats; raises on a malformed level."""
    if levels.__class__ is not list:
        raise FrameError("levels are not a list")
    return [[float(lv[0]), float(lv[1])] for lv in levels]


class BookState:
    """Sync state of one instrument's book on one venue."""

    __slots__ = ("iid", "book", "state", "last", "buffer", "ws_snapshots", "pending_since_ns", "refresh")

    def __init__(self, iid: int, book: Book, max_buffer: int) -> None:
        self.iid = iid
        self.book = book
        self.state = WAIT
        self.last = 0  # last applied update id (Binance/Gate u, OKX seqId)
        self.buffer: deque = deque(maxlen=max_buffer)
        self.ws_snapshots = 0  # WS snapshots seen (OKX legacy / Gate full)
        self.pending_since_ns = 0  # when we started waiting for a snapshot
        # a LIVE book waiting for a REST snapshot that restores the levels a depth-limited WS
        # snapshot left out: the diffs applied meanwhile are kept in `buffer` (see `request_refresh`)
        self.refresh = False


class VenueFeed:
    """Parser + book synchroniser for one venue. One instance per venue in the feed process
    (shared by its connections)."""

    venue: Exchange = Exchange.BINANCE
    keep_strings = False  # OKX: keep price/size strings for the checksum
    book_depth = 5000  # levels kept per side (venue snapshot / stream depth)

    def __init__(self, instruments: Instruments | None = None, book_depth: int | None = None,
                 max_buffer: int = 10_000) -> None:
        self.instruments = instruments if instruments is not None else Instruments()
        self.venue_id = int(self.venue)
        if book_depth is not None:
            self.book_depth = book_depth
        self.max_buffer = max_buffer
        self._ids: dict[str, int] = {}  # venue symbol -> instrument id
        # quote frame skeleton -> (instrument id, strings check, packed header): `quote_skeleton`
        self._quote_layouts: dict[bytes, tuple] = {}
        self.states: dict[int, BookState] = {}
        self.snapshot_requests: set[int] = set()  # instruments that need a REST snapshot
        self.resubscribe_requests: set[int] = set()  # instruments whose book channel to resubscribe (OKX)
        self.last_recv_ns: dict[int, int] = {}  # instrument id -> last quote/trade frame time
        self.last_book_ns: dict[int, int] = {}  # instrument id -> last book frame time
        self.sink: Sink = Collector().sink  # the feed process binds its ring (`bind`)
        self._sinks: dict = {}  # write function -> Sink, for callers that pass `write`
        # plain ints; the feed process copies them into its counters block
        self.gaps = 0
        self.checksum_failures = 0
        self.resyncs = 0
        self.crossed = 0
        self.duplicates = 0
        self.snapshots = 0

    # ---- public API --------------------------------------------------------
    def bind(self, sink: Sink) -> VenueFeed:
        """Make `sink` (e.g. `ring_sink(ring)`) the default destination of `on_frame`."""
        self.sink = sink
        return self

    def parse(self, frame: bytes | str, recv_ns: int) -> np.ndarray:
        """Decode one frame into MD_DTYPE records (view with QUOTE/TRADE/BOOK_LEVEL dtypes by
        `kind`). Pure: no book state, no I/O. Acks, pongs and control frames give an empty
        array; malformed input raises FrameError."""
        c = Collector()
        self._decode(frame, recv_ns, c.sink, False)
        return c.array()

    def on_frame(self, frame, recv_ns: int, write=None) -> int:
        """Decode one frame, run book sync and write the records to the bound sink (or through
        `write(packer, *values)`). Returns records written, or a CTRL_* value (< 0).
        Raises FrameError."""
        return self._decode(frame, recv_ns, self.sink if write is None else self._sink_of(write), True)

    def on_snapshot(self, iid: int, body: bytes, recv_ns: int, write=None) -> int:
        """Apply a REST depth snapshot for `iid` together with the buffered updates.
        Returns records written; -1 when the snapshot is too old (request another)."""
        try:
            seq, bids, asks, exch_ns = self._rest_book(body)
        except DECODE_ERRORS as e:
            raise FrameError(f"bad REST snapshot: {type(e).__name__}: {e}") from None
        st = self.state(iid)
        sink = self.sink if write is None else self._sink_of(write)
        sink.begin()
        try:
            return self._sync_from_rest(st, seq, bids, asks, exch_ns, recv_ns, sink)
        finally:
            sink.publish()

    def iid(self, vsym: str) -> int:
        """Instrument id of a venue symbol, assigned on first sight."""
        i = self._ids.get(vsym)
        if i is None:
            if not isinstance(vsym, str):
                raise FrameError(f"symbol is not a string: {vsym!r}"[:200])
            i = self._ids[vsym] = self.instruments.id_for_venue_symbol(vsym, self.venue)
        return i

    def state(self, iid: int) -> BookState:
        st = self.states.get(iid)
        if st is None:
            book = Book(self.book_depth + 64, self.keep_strings, iid, self.venue_id)
            st = self.states[iid] = BookState(iid, book, self.max_buffer)
        return st

    def reset_books(self, reason: int, recv_ns: int, write=None, iids=None) -> int:
        """Invalidate books (after a reconnect or a stale stream): a reset record each, and
        wait for a snapshot. Returns records written."""
        sink = self.sink if write is None else self._sink_of(write)
        n = 0
        sink.begin()
        try:
            for iid in list(self.states if iids is None else iids):
                st = self.state(iid)
                n += self._resync(st, reason, recv_ns, sink, request=False)
        finally:
            sink.publish()
        return n

    def request_snapshot(self, iid: int, now_ns: int) -> None:
        st = self.state(iid)
        st.pending_since_ns = now_ns
        self.snapshot_requests.add(iid)

    def request_refresh(self, iid: int, now_ns: int) -> None:
        """Ask for a REST snapshot of a LIVE book without resetting it: the book keeps streaming,
        the diffs applied from now on are also buffered, and `on_snapshot` replaces the book with
        the snapshot plus the buffered diffs newer than it (one SNAPSHOT_START..END frame and the
        diffs after it: a consumer sees no reset and no invalid book)."""
        st = self.state(iid)
        if st.state != LIVE:
            self.request_snapshot(iid, now_ns)
            return
        if not st.refresh:
            st.refresh = True
            st.buffer.clear()
        self.snapshot_requests.add(iid)

    def _learn_quote(self, frame, sym: str, iid: int, template: bytes, check) -> None:
        """Remember the skeleton of a quote frame the ordinary decode accepted (see `quote_skeleton`);
        `check(ones(sym))` is the tuple of key and symbol values a matching frame must read back."""
        sk = quote_skeleton(frame, sym, template)
        if sk is None:
            return
        if len(self._quote_layouts) >= MAX_LAYOUTS:
            self._quote_layouts.clear()
        self._quote_layouts[sk] = (iid, check(ones(sym)), header(KIND_QUOTE, 0, self.venue_id, 0, iid))

    def _sink_of(self, write) -> Sink:
        s = self._sinks.get(write)
        if s is None:
            if len(self._sinks) > 16:
                self._sinks.clear()
            s = self._sinks[write] = write_sink(write)
        return s

    # ---- venue hooks ----------------------------------------------------------
    def _decode(self, frame, recv_ns: int, sink: Sink, sync: bool) -> int:  # pragma: no cover
        raise NotImplementedError

    def _rest_book(self, body: bytes) -> tuple[int, list, list, int]:  # pragma: no cover
        """REST snapshot body -> (update id, bids, asks, exchange time ns)."""
        raise NotImplementedError

    def _wants_rest_on_gap(self, st: BookState) -> bool:
        return True

    # ---- book frames ------------------------------------------------------------
    def _book_frame(self, iid: int, bids: list, asks: list, U: int, u: int, exch_ns: int, recv_ns: int,
                    sink: Sink, sync: bool, numeric: bool) -> int:
        """A Binance/Gate diff: pure emission (`parse`) or sequence check + book + records, all
        published together. `numeric` says the levels are numbers already (fast path)."""
        sink.begin()
        try:
            if sync:
                self.last_book_ns[iid] = recv_ns
                st = self.states.get(iid) or self.state(iid)
                return self._on_diff(st, bids, asks, U, u, exch_ns, recv_ns, sink, numeric)
            return self._emit_raw(iid, bids, asks, U, u, exch_ns, recv_ns, sink, False)
        finally:
            sink.publish()

    # ---- emission ---------------------------------------------------------------
    def _emit_raw(self, iid: int, bids: list, asks: list, U: int, u: int, exch_ns: int, recv_ns: int,
                  sink: Sink, snapshot: bool) -> int:
        """Pure-parse emission of a book frame (no book, no sync)."""
        v = self.venue_id
        put = sink.level
        n = len(bids) + len(asks)
        if n == 0:
            if not snapshot:
                return 0
            put(KIND_BOOK_LEVEL, F_SNAPSHOT_START | F_SNAPSHOT_END | F_UPDATE_END, v, 0, iid, 0, exch_ns, recv_ns,
                u, 0.0, 0.0, U, 0)
            return 1
        recs = []
        for h, levels in ((header(KIND_BOOK_LEVEL, 0, v, 1, iid), bids), (header(KIND_BOOK_LEVEL, 0, v, -1, iid), asks)):
            for lv in levels:
                px = float(lv[0])
                qty = float(lv[1])
                if not (px > 0.0 and qty >= 0.0):
                    raise FrameError(f"bad level {lv!r}"[:200])
                recs.append((h, px, qty))
        first = F_SNAPSHOT_START << 8 if snapshot else 0
        last = (F_SNAPSHOT_END | F_UPDATE_END) << 8 if snapshot else F_UPDATE_END_H
        put_h = sink.level_h
        k = 0
        for h, px, qty in recs:
            k += 1
            put_h(h | (first if k == 1 else 0) | (last if k == n else 0), exch_ns, recv_ns, u, px, qty, U, 0)
        return n

    def _apply_update(self, st: BookState, bids: list, asks: list, U: int, u: int, exch_ns: int,
                      recv_ns: int, sink: Sink, strings: bool = False, numeric: bool = True) -> int:
        """Apply a diff that passed the sequence check: book + staged records. Levels are numbers
        (`numeric`), strings converted here, or (`strings`) the OKX strings the checksum needs,
        kept in the book. A bad level resyncs the book (a reset record instead of the frame's
        records), whichever form the levels came in. The frame's records are filled into one
        flat list (a template per side, prices and sizes stored in place) and staged with one
        `level_run` call: one C call packs them all into the ring."""
        st.last = u
        nb = len(bids)
        n = nb + len(asks)
        if n == 0:
            return 0
        book = st.book
        hb, ha, hbe, hae = book.hdr_bytes
        mid = RUN_MID_STRUCT.pack(exch_ns, recv_ns, u)
        tail = RUN_TAIL_STRUCT.pack(U, 0)
        vals = [hb + mid, 0.0, 0.0, tail] * nb
        vals += [ha + mid, 0.0, 0.0, tail] * (n - nb)
        vals[-4] = (hae if n != nb else hbe) + mid  # the frame's last record: UPDATE_END
        j = 1  # index of the next record's px in `vals`
        try:
            if bids.__class__ is not list or asks.__class__ is not list:
                raise FrameError("book levels are not lists")
            if strings:
                for bs, levels in ((book.bids, bids), (book.asks, asks)):
                    set_str = bs.set_str
                    for lv in levels:
                        ps = lv[0]
                        qs = lv[1]
                        px = float(ps)
                        qty = float(qs)
                        if not (px > 0.0 and qty >= 0.0):
                            raise FrameError(f"bad level {lv!r}"[:200])
                        set_str(px, qty, ps, qs)
                        vals[j] = px
                        vals[j + 1] = qty
                        j += 4
            else:
                # the hot loop: a size change is a dict lookup and one store; an insert or a delete
                # also updates the sorted keys (bisect, best level last)
                for bs, levels in ((book.bids, bids), (book.asks, asks)):
                    if not levels:
                        continue
                    index = bs.index
                    get = index.get
                    qv = bs.qv
                    pv = bs.pv
                    free = bs.free
                    keys = bs.keys
                    neg = bs.neg
                    for lv in levels:
                        px = lv[0]
                        qty = lv[1]
                        if not numeric:
                            px = float(px)
                            qty = float(qty)
                        if not (px > 0.0 and qty >= 0.0):
                            raise FrameError(f"bad level {lv!r}"[:200])
                        vals[j] = px
                        vals[j + 1] = qty
                        j += 4
                        i = get(px)
                        if i is not None:
                            if qty > 0.0:
                                qv[i] = qty
                            else:
                                del index[px]
                                free.append(i)
                                key = -px if neg else px
                                if keys[-1] == key:
                                    keys.pop()
                                else:
                                    del keys[bisect_left(keys, key)]
                        elif qty > 0.0:
                            if free:
                                i = free.pop()
                                index[px] = i
                                pv[i] = px
                                qv[i] = qty
                                key = -px if neg else px
                                if not keys or key > keys[-1]:
                                    keys.append(key)
                                else:
                                    insort(keys, key)
                            else:
                                bs.insert(px, qty)  # full: drops the worst level
        except DECODE_ERRORS as e:
            self._resync(st, REASON_BAD_FRAME, recv_ns, sink)
            if isinstance(e, FrameError):
                raise
            raise FrameError(f"bad book level: {type(e).__name__}: {e}"[:300]) from None
        sink.level_run(n, vals)
        k = n
        bk = book.bids.keys
        ak = book.asks.keys
        depth = self.book_depth
        if len(bk) > depth or len(ak) > depth:
            k += self._trim(st, exch_ns, recv_ns, u, U, sink)
        if bk and ak and -ak[-1] <= bk[-1]:
            self.crossed += 1
            k += self._resync(st, REASON_CROSSED, recv_ns, sink)
        return k

    def _trim(self, st: BookState, exch_ns: int, recv_ns: int, u: int, U: int, sink: Sink) -> int:
        """Levels beyond the venue's depth are no longer maintained by it: delete them (and say so)."""
        k = 0
        put = sink.level_h
        book = st.book
        for h, bs in ((book.hdr_bid, book.bids), (book.hdr_ask, book.asks)):
            h |= F_UPDATE_END_H
            for px in bs.trim(self.book_depth):
                k += 1
                put(h, exch_ns, recv_ns, u, px, 0.0, U, 0)
        return k

    def _apply_snapshot(self, st: BookState, bids: list, asks: list, seq: int, exch_ns: int, recv_ns: int,
                        sink: Sink, prev: int = 0, strings: bool | None = None) -> int:
        """Replace the book with a snapshot and emit it flagged SNAPSHOT_START..END. Levels are
        strings (REST, OKX) or numbers; the strings are kept when the book keeps them."""
        book = st.book
        # validate first: a snapshot is applied whole or not at all
        levels = []
        keep = self.keep_strings if strings is None else strings
        depth = self.book_depth
        for side, raw in ((1, bids), (-1, asks)):
            for lv in raw[:depth]:
                px = float(lv[0])
                qty = float(lv[1])
                if not (px > 0.0 and qty >= 0.0):
                    raise FrameError(f"bad snapshot level {lv!r}"[:200])
                if qty > 0.0:
                    levels.append((side, px, qty, lv[0], lv[1]) if keep else (side, px, qty))
        book.clear()
        for lv in levels:
            if keep:
                (book.bids if lv[0] > 0 else book.asks).set_str(lv[1], lv[2], lv[3], lv[4])
            else:
                (book.bids if lv[0] > 0 else book.asks).set(lv[1], lv[2])
        v = self.venue_id
        iid = st.iid
        put = sink.level
        n = len(levels)
        if n == 0:
            put(KIND_BOOK_LEVEL, F_SNAPSHOT_START | F_SNAPSHOT_END | F_UPDATE_END, v, 0, iid, 0, exch_ns, recv_ns,
                seq, 0.0, 0.0, prev, 0)
            n = 1
        else:
            put_h = sink.level_h
            hb = book.hdr_bid
            ha = book.hdr_ask
            start = F_SNAPSHOT_START << 8
            end = (F_SNAPSHOT_END | F_UPDATE_END) << 8
            k = 0
            for lv in levels:
                k += 1
                h = hb if lv[0] > 0 else ha
                if k == 1:
                    h |= start
                if k == n:
                    h |= end
                put_h(h, exch_ns, recv_ns, seq, lv[1], lv[2], prev, 0)
        st.state = LIVE
        st.last = seq
        st.buffer.clear()
        st.refresh = False
        st.pending_since_ns = 0
        self.snapshot_requests.discard(iid)
        self.resubscribe_requests.discard(iid)
        self.snapshots += 1
        book.valid = True
        if book.crossed():
            self.crossed += 1
            n += self._resync(st, REASON_CROSSED, recv_ns, sink)
        return n

    def _resync(self, st: BookState, reason: int, recv_ns: int, sink: Sink, request: bool = True) -> int:
        """Book is broken: tell the consumer (reset record), forget it and ask for a snapshot."""
        self.resyncs += 1
        if reason == REASON_GAP:
            self.gaps += 1
        elif reason == REASON_CHECKSUM:
            self.checksum_failures += 1
        st.book.clear()
        st.book.valid = False
        was_live = st.state == LIVE
        st.state = WAIT
        st.buffer.clear()
        st.refresh = False
        sink.level(KIND_BOOK_RESET, F_RESYNC, self.venue_id, 0, st.iid, reason, 0, recv_ns, st.last, 0.0, 0.0, 0, 0)
        if request and (was_live or reason != REASON_RECONNECT):
            if self._wants_rest_on_gap(st):
                self.request_snapshot(st.iid, recv_ns)
            else:
                st.pending_since_ns = recv_ns
                self.resubscribe_requests.add(st.iid)
        return 1

    # ---- U/u sequencing (Binance and Gate) -------------------------------------
    def _on_diff(self, st: BookState, bids: list, asks: list, U: int, u: int, exch_ns: int, recv_ns: int,
                 sink: Sink, numeric: bool = True) -> int:
        """Binance/Gate diff: apply when `U <= last + 1 <= u`; drop when `u <= last`; else gap.
        Buffered diffs are kept as numbers."""
        if st.state != LIVE:
            if not numeric:
                bids, asks = float_levels(bids), float_levels(asks)
            st.buffer.append((bids, asks, U, u, exch_ns, 0))
            if st.iid not in self.snapshot_requests:
                self.request_snapshot(st.iid, recv_ns)
            return 0
        last = st.last
        if u <= last:
            self.duplicates += 1
            return 0
        if U > last + 1:
            n = self._resync(st, REASON_GAP, recv_ns, sink)
            if not numeric:
                bids, asks = float_levels(bids), float_levels(asks)
            st.buffer.append((bids, asks, U, u, exch_ns, 0))
            return n
        if st.refresh:  # a REST snapshot is on its way: it will be followed by the diffs newer than it
            if not numeric:
                bids, asks = float_levels(bids), float_levels(asks)
                numeric = True
            st.buffer.append((bids, asks, U, u, exch_ns, 0))
        return self._apply_update(st, bids, asks, U, u, exch_ns, recv_ns, sink, False, numeric)

    def _sync_from_rest(self, st: BookState, seq: int, bids: list, asks: list, exch_ns: int, recv_ns: int,
                        sink: Sink) -> int:
        """Binance/Gate REST sync: drop buffered `u <= seq`; the first kept must have `U <= seq + 1`.
        A LIVE book (`request_refresh`) buffered the diffs applied since the request: the snapshot
        must not be older than the book unless those diffs bridge the difference."""
        buf = st.buffer
        while buf and buf[0][3] <= seq:
            buf.popleft()
        if buf and buf[0][2] > seq + 1:
            return -1  # snapshot older than the stream: fetch again
        if st.state == LIVE and not buf and seq < st.last:
            return -1  # older than the live book and nothing buffered to bring it forward
        pending = list(buf)
        n = self._apply_snapshot(st, bids, asks, seq, exch_ns, recv_ns, sink)
        for b, a, U, u, ex, cs in pending:
            if st.state != LIVE:
                st.buffer.append((b, a, U, u, ex, cs))
                continue
            n += self._on_diff(st, b, a, U, u, ex, recv_ns, sink)
        return n
