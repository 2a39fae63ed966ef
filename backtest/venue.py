"""One venue of a backtest: the simulator's matching engine (sim.engine.Engine, used as is)
over books rebuilt from the replayed records, with the queue-position model.

Books are rebuilt lazily: a (venue, instrument) book is brought up to date only when an
order needs it or while our orders rest on it, so records nobody trades against cost
nothing. Queue model (the simulator's rules): an order joins behind the displayed quantity
at its price; trades at the price consume the queue ahead, then the order; a displayed
quantity that shrinks below our queue position shortens it; a book that moves through our
price fills us as maker. Must not know about the strategy or risk.
"""

from __future__ import annotations

import random

import numpy as np

from ringbuf import records as R
from sim.engine import BUY, SELL, Engine
from sim.market import Book, Instrument

API_KEY = "backtest"
# A depth update that arrives before the trade that caused it (the simulator sends the diff
# first) must not advance the queue twice: the shrink is held this long for the trade.
PENDING_SHRINK_NS = 20_000_000

# reply kinds (names match oms.state.EventKind)
ACK, REJECT, FILL, CANCELED, EXPIRED, AMENDED, CANCEL_REJECT, AMEND_REJECT = (
    "ACK", "REJECT", "FILL", "CANCELED", "EXPIRED", "AMENDED", "CANCEL_REJECT", "AMEND_REJECT")


class Reply:
    """What the venue sends back about one order (delivered after the ack latency)."""

    __slots__ = ("kind", "cl_ord_id", "fill_qty", "fill_px", "fee", "liquidity", "trade_id", "reason",
                 "venue_ns", "px", "qty", "filled_qty", "status")

    def __init__(self, kind: str, cl_ord_id: str, venue_ns: int, fill_qty: float = 0.0, fill_px: float = 0.0,
                 fee: float = 0.0, liquidity: int = 0, trade_id: str = "", reason: str = "", px: float = 0.0,
                 qty: float = 0.0, filled_qty: float = 0.0, status: str = "") -> None:
        self.kind = kind
        self.cl_ord_id = cl_ord_id
        self.venue_ns = venue_ns
        self.fill_qty = fill_qty
        self.fill_px = fill_px
        self.fee = fee
        self.liquidity = liquidity
        self.trade_id = trade_id
        self.reason = reason
        self.px = px
        self.qty = qty
        self.filled_qty = filled_qty
        self.status = status

    def __repr__(self) -> str:
        return f"Reply({self.kind} {self.cl_ord_id} {self.fill_qty}@{self.fill_px} {self.reason})"


class KeyBook:
    """A (venue, instrument) book rebuilt from records, and where its records are."""

    __slots__ = ("book", "inst", "symbol", "book_idx", "ptr", "nxt", "quote_only", "bids", "asks", "tick", "lot", "idx_l")

    def __init__(self, book: Book, inst: Instrument, symbol: str, book_idx: np.ndarray, quote_only: bool,
                 sides) -> None:
        self.book = book
        self.inst = inst
        self.symbol = symbol
        self.book_idx = book_idx  # global indices of this key's book-level / reset records
        self.ptr = 0  # next position in book_idx not yet applied
        self.idx_l = book_idx.tolist()
        self.nxt = self.idx_l[0] if self.idx_l else 1 << 62  # book_idx[ptr] as a plain int
        self.tick = inst.tick
        self.lot = inst.lot
        self.quote_only = quote_only
        self.bids, self.asks = sides


class VenueSim:
    """The simulator's Engine for one venue, fed by records instead of its generator."""

    def __init__(self, venue_id: int, name: str, records: np.ndarray, symbols: dict[int, str],
                 maker_fee: float, taker_fee: float, instrument_overrides: dict | None = None,
                 columns: dict | None = None) -> None:
        self.venue_id = venue_id
        self.name = name
        self.recs = records
        self.kind_np = records["kind"]
        self.flags_np = records["flags"]
        # plain lists (shared by the venues): scalar reads from a list are several times cheaper
        cols = columns if columns is not None else record_columns(records)
        self.kind = cols["kind"]
        self.flags = cols["flags"]
        self.side = cols["side"]
        self.instr = cols["instr_id"]
        self.f0 = cols["f0"]
        self.f1 = cols["f1"]
        self.f2 = cols["f2"]
        self.f3 = cols["f3"]
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        books: dict[str, Book] = {}
        self.keys: dict[int, KeyBook] = {}
        mine = records["venue_id"] == venue_id
        is_book = mine & ((self.kind_np == R.KIND_BOOK_LEVEL) | (self.kind_np == R.KIND_BOOK_RESET))
        instr = records["instr_id"]
        for iid, sym in symbols.items():
            inst = Instrument(name, sym, iid)
            ov = (instrument_overrides or {}).get((venue_id, iid))
            if ov is not None:
                inst.tick, inst.lot = ov
            book = Book(inst, random.Random(0), 50)
            books[sym] = book
            idx = np.flatnonzero(is_book & (instr == iid))
            self.keys[iid] = KeyBook(book, inst, sym, idx, idx.size == 0, (None, None))
        self.engine = Engine(name, books, {}, 1e15, maker_fee, taker_fee)
        for kb in self.keys.values():
            kb.bids, kb.asks = self.engine.resting[kb.symbol]
        self.pending: dict[int, tuple[int, int]] = {}  # order id -> (shown lots, venue ns)
        self.orders_by_cid: dict[str, object] = {}
        self.fills = 0
        self.trade_seq = 0

    # ---- books ----------------------------------------------------------------------
    def resting(self, iid: int) -> bool:
        kb = self.keys.get(iid)
        return kb is not None and bool(kb.bids.keys or kb.asks.keys)

    def any_resting(self) -> bool:
        return bool(self.engine.orders)

    def sync(self, kb: KeyBook, upto: int) -> None:
        """Apply this key's book records with global index < upto (lazy catch-up)."""
        idx = kb.book_idx
        if kb.nxt >= upto:
            return
        p = kb.ptr
        end = int(np.searchsorted(idx, upto, side="left"))
        # a snapshot (or reset) inside the range makes everything before it irrelevant
        if end - p > 64:
            seg = idx[p:end]
            fl = self.flags_np[seg]
            restart = np.flatnonzero(((fl & R.F_SNAPSHOT_START) != 0) | (self.kind_np[seg] == R.KIND_BOOK_RESET))
            if restart.size:
                p += int(restart[-1])
        book = kb.book
        inst = kb.inst
        tick = inst.tick
        lot = inst.lot
        kind = self.kind
        flags = self.flags
        side = self.side
        f0 = self.f0
        f1 = self.f1
        for j in idx[p:end].tolist():
            if kind[j] == R.KIND_BOOK_RESET:
                _clear(book)
                continue
            if flags[j] & R.F_SNAPSHOT_START:
                _clear(book)
            t = int(f0[j] / tick + 0.5)
            n = int(f1[j] / lot + 0.5)
            if side[j] > 0:
                book.set_bid(t, n)
            else:
                book.set_ask(t, n)
        kb.ptr = end
        kb.nxt = int(idx[end]) if end < idx.size else 1 << 62
        book.chg_bids.clear()
        book.chg_asks.clear()

    def on_record(self, j: int, venue_ns: int, out: list) -> None:
        """Record j reaches the venue while our orders rest on its book: queue and fills."""
        kb = self.keys.get(self.instr[j])
        if kb is None:
            return
        k = self.kind[j]
        if kb.nxt < j:
            self.sync(kb, j)  # everything before j
        tick = kb.tick
        if k == R.KIND_TRADE:
            self._trade(kb, self.side[j], int(self.f0[j] / tick + 0.5), int(self.f1[j] / kb.lot + 0.5),
                        venue_ns)
        elif k == R.KIND_QUOTE:
            bid = self.f0[j]
            ask = self.f2[j]
            if kb.quote_only:
                self._quote_book(kb, bid, self.f1[j], ask, self.f3[j])
            self._through(kb, int(bid / tick + 0.5) if bid > 0 else 0, int(ask / tick + 0.5) if ask > 0 else 0)
        else:
            book = kb.book
            fl = self.flags[j]
            if k == R.KIND_BOOK_RESET or fl & R.F_SNAPSHOT_START:
                _clear(book)
            if k == R.KIND_BOOK_LEVEL:
                t = int(self.f0[j] / tick + 0.5)
                n = int(self.f1[j] / kb.lot + 0.5)
                if self.side[j] > 0:
                    book.set_bid(t, n)
                    if kb.bids.keys:
                        self._shrink(kb.bids, t, n, venue_ns)
                else:
                    book.set_ask(t, n)
                    if kb.asks.keys:
                        self._shrink(kb.asks, t, n, venue_ns)
            p = kb.ptr = kb.ptr + 1  # record j was this key's next book record
            kb.nxt = kb.idx_l[p] if p < len(kb.idx_l) else 1 << 62
            if fl & (R.F_UPDATE_END | R.F_SNAPSHOT_END):
                book.chg_bids.clear()
                book.chg_asks.clear()
                self._through(kb, book.best_bid(), book.best_ask())
        if self.engine.events:
            self.drain(venue_ns, out)

    def _quote_book(self, kb: KeyBook, bid: float, bq: float, ask: float, aq: float) -> None:
        """A book known only from top-of-book quotes: one level per side."""
        book = kb.book
        _clear(book)
        tick, lot = kb.inst.tick, kb.inst.lot
        if bid > 0 and bq > 0:
            book.set_bid(int(round(bid / tick)), max(1, int(round(bq / lot))))
        if ask > 0 and aq > 0:
            book.set_ask(int(round(ask / tick)), max(1, int(round(aq / lot))))
        book.chg_bids.clear()
        book.chg_asks.clear()

    def _shrink(self, side, ticks: int, lots: int, venue_ns: int) -> None:
        lvl = side.levels.get(ticks)
        if not lvl:
            return
        for o in lvl:
            p = self.pending.get(o.oid)
            if p is not None and p[0] < o.queue_ahead:
                o.queue_ahead = p[0]
            if lots < o.queue_ahead:
                self.pending[o.oid] = (lots, venue_ns)
            elif p is not None:
                del self.pending[o.oid]

    def _trade(self, kb: KeyBook, taker: int, t: int, lots: int, venue_ns: int) -> None:
        """The simulator's trade rule (Engine.on_book_step), with a pending shrink from a depth
        update that was sent before this trade applied after the trade, not before."""
        side = kb.asks if taker == BUY else kb.bids
        if not side.keys:
            return
        vol = lots
        pend = self.pending
        fill = self.engine._fill
        for k in list(side.keys):
            ticks = -k * side.sign
            if vol <= 0 or (ticks > t if taker == BUY else ticks < t):
                break
            if ticks != t:
                for o in list(side.levels.get(ticks, ())):
                    n = min(o.remaining, vol)
                    if n > 0:
                        vol -= n
                        fill(o, ticks, n, maker=True)
            else:
                ahead_ours = 0
                for o in list(side.levels.get(ticks, ())):
                    p = pend.pop(o.oid, None)
                    if p is not None and venue_ns - p[1] > PENDING_SHRINK_NS:
                        o.queue_ahead = min(o.queue_ahead, p[0])  # a cancel long ago, not this trade
                        p = None
                    reach = vol - o.queue_ahead - ahead_ours
                    ahead_ours += o.remaining
                    o.queue_ahead = max(0, o.queue_ahead - vol)
                    if p is not None and p[0] < o.queue_ahead:
                        o.queue_ahead = p[0]
                    n = min(o.remaining, reach)
                    if n > 0:
                        fill(o, ticks, n, maker=True)

    def _through(self, kb: KeyBook, bid_t: int, ask_t: int) -> None:
        """The public book moved through our price: we were hit as maker (Engine rule)."""
        bids, asks = kb.bids, kb.asks
        fill = self.engine._fill
        while ask_t and bids.keys and bids.best() >= ask_t:
            for o in list(bids.levels[bids.best()]):
                fill(o, o.ticks, o.remaining, maker=True)
        while bid_t and asks.keys and asks.best() <= bid_t:
            for o in list(asks.levels[asks.best()]):
                fill(o, o.ticks, o.remaining, maker=True)

    # ---- order entry ------------------------------------------------------------------
    def place(self, cl_ord_id: str, iid: int, side: int, px: float, qty: float, tif: str, post_only: bool,
              market: bool, upto: int, venue_ns: int, out: list) -> None:
        kb = self.keys.get(iid)
        if kb is None:
            out.append(Reply(REJECT, cl_ord_id, venue_ns, reason="unknown_instrument"))
            return
        self.sync(kb, upto)
        inst = kb.inst
        lots_f = qty / inst.lot
        lots = int(round(lots_f))
        if lots <= 0 or abs(lots_f - lots) > 1e-6 * max(1.0, lots_f):
            out.append(Reply(REJECT, cl_ord_id, venue_ns, reason="invalid_tick_lot"))
            return
        ticks = 0
        if not market:
            ticks_f = px / inst.tick
            ticks = int(round(ticks_f))
            if ticks <= 0 or abs(ticks_f - ticks) > 1e-6 * max(1.0, ticks_f):
                out.append(Reply(REJECT, cl_ord_id, venue_ns, reason="invalid_tick_lot"))
                return
        eng = self.engine
        o = eng.new_order(API_KEY, inst, BUY if side > 0 else SELL, ticks, lots, tif, post_only, cl_ord_id,
                          "MARKET" if market else "LIMIT")
        why = eng.place(o)
        if why:
            eng.events.clear()
            out.append(Reply(REJECT, cl_ord_id, venue_ns, reason=why))
            return
        self.drain(venue_ns, out)

    def cancel(self, cl_ord_id: str, venue_ns: int, out: list) -> None:
        eng = self.engine
        o = eng.by_client.get((API_KEY, cl_ord_id))
        if o is None or eng.cancel(o, "user"):
            out.append(Reply(CANCEL_REJECT, cl_ord_id, venue_ns, reason="unknown_order"))
            return
        self.pending.pop(o.oid, None)
        self.drain(venue_ns, out)

    def amend(self, cl_ord_id: str, px: float, qty: float, upto: int, venue_ns: int, out: list) -> None:
        eng = self.engine
        o = eng.by_client.get((API_KEY, cl_ord_id))
        if o is None:
            out.append(Reply(AMEND_REJECT, cl_ord_id, venue_ns, reason="unknown_order"))
            return
        kb = self.keys[o.inst.index]
        self.sync(kb, upto)
        inst = o.inst
        ticks = int(round(px / inst.tick)) if px > 0 else None
        lots = int(round(qty / inst.lot)) if qty > 0 else None
        self.pending.pop(o.oid, None)
        why = eng.amend(o, ticks, lots)
        if why:
            eng.events.clear()
            out.append(Reply(AMEND_REJECT, cl_ord_id, venue_ns, reason=why))
            return
        self.drain(venue_ns, out)

    def drain(self, venue_ns: int, out: list) -> None:
        """Engine events -> replies (fees in quote currency, as the OMS reports them)."""
        ev = self.engine.events
        if not ev:
            return
        for what, o, f in ev:
            cid = o.client_id
            inst = o.inst
            if what == "new":
                out.append(Reply(ACK, cid, venue_ns, px=o.price, qty=inst.qty_float(o.lots)))
            elif what == "trade":
                qty = inst.qty_float(f.lots)
                px = inst.px_float(f.ticks)
                rate = self.maker_fee if f.maker else self.taker_fee
                self.fills += 1
                out.append(Reply(FILL, cid, venue_ns, qty, px, qty * px * rate, 1 if f.maker else 2,
                                 str(f.trade_id), px=o.price, qty=inst.qty_float(o.lots),
                                 filled_qty=inst.qty_float(o.filled_lots), status=o.status))
                if not o.is_open:
                    self.pending.pop(o.oid, None)
            elif what == "canceled":
                out.append(Reply(CANCELED, cid, venue_ns, reason=o.reason,
                                 filled_qty=inst.qty_float(o.filled_lots)))
            elif what == "expired":
                out.append(Reply(EXPIRED, cid, venue_ns, reason=o.reason, filled_qty=inst.qty_float(o.filled_lots)))
            elif what == "amended":
                out.append(Reply(AMENDED, cid, venue_ns, px=o.price, qty=inst.qty_float(o.lots),
                                 filled_qty=inst.qty_float(o.filled_lots)))
        ev.clear()


def record_columns(records: np.ndarray) -> dict[str, list]:
    return {k: records[k].tolist() for k in ("kind", "flags", "side", "instr_id", "f0", "f1", "f2", "f3")}


def _clear(book: Book) -> None:
    book.bids.clear()
    book.asks.clear()
    book.bid_keys.clear()
    book.ask_keys.clear()
