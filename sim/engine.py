"""Matching engine for the simulator's own users, one instance per venue.

Our orders are not shown in the generated public book: a resting order queues
behind the displayed quantity at its price when it arrives, and fills when
generated trades eat through that queue or when the generated book moves
through its price. An order that crosses the book on arrival takes the
displayed levels as a taker (and removes that liquidity from the public book).
Users' orders never match each other. It knows nothing about wire formats.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from collections.abc import Callable

from sim.market import Book, Instrument

BUY, SELL = 1, -1

# engine outcomes the venue layer maps to its own codes
INSUFFICIENT_BALANCE = "insufficient_balance"
WOULD_TAKE = "post_only_would_take"
DUPLICATE_CLIENT_ID = "duplicate_client_id"
UNKNOWN_ORDER = "unknown_order"
FOK_NOT_FILLED = "fok_not_filled"
IOC_REMAINDER = "ioc_remainder"
NO_LIQUIDITY = "no_liquidity"
INVALID_AMEND = "invalid_amend"


_OPEN = frozenset(("NEW", "PARTIALLY_FILLED"))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Fill:
    __slots__ = ("trade_id", "order", "ticks", "lots", "maker", "fee", "fee_asset", "ts_ms", "quote")

    def __init__(self, trade_id: int, order: Order, ticks: int, lots: int, maker: bool, fee: float,
                 fee_asset: str, ts_ms: int, quote: float) -> None:
        self.trade_id = trade_id
        self.order = order
        self.ticks = ticks
        self.lots = lots
        self.maker = maker
        self.fee = fee
        self.fee_asset = fee_asset
        self.ts_ms = ts_ms
        self.quote = quote


class Order:
    __slots__ = ("oid", "api_key", "inst", "side", "ticks", "lots", "filled_lots", "cum_quote", "tif",
                 "post_only", "client_id", "status", "create_ms", "update_ms", "queue_ahead", "fee",
                 "fee_asset", "locked", "order_type", "reason", "extra", "last_fill", "orig_client_id",
                 "quote_qty", "working_ms", "seq")

    def __init__(self, oid: int, api_key: str, inst: Instrument, side: int, ticks: int, lots: int,
                 tif: str, post_only: bool, client_id: str, order_type: str) -> None:
        self.oid = oid
        self.api_key = api_key
        self.inst = inst
        self.side = side
        self.ticks = ticks
        self.lots = lots
        self.filled_lots = 0
        self.cum_quote = 0.0
        self.tif = tif
        self.post_only = post_only
        self.client_id = client_id
        self.orig_client_id = ""
        self.status = "NEW"
        self.create_ms = now_ms()
        self.update_ms = self.create_ms
        self.working_ms = self.create_ms
        self.queue_ahead = 0
        self.fee = 0.0
        self.fee_asset = inst.base if side == BUY else inst.quote
        self.locked = 0.0
        self.order_type = order_type
        self.reason = ""
        self.extra: dict = {}
        self.last_fill: Fill | None = None
        self.quote_qty = 0.0
        self.seq = 0

    @property
    def remaining(self) -> int:
        return self.lots - self.filled_lots

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def price(self) -> float:
        return self.inst.px_float(self.ticks)


class Side:
    """Our resting orders on one side of one symbol: price -> orders in time priority."""

    __slots__ = ("levels", "keys", "sign")

    def __init__(self, sign: int) -> None:
        self.levels: dict[int, list[Order]] = {}
        self.keys: list[int] = []  # sorted so that keys[0] is the best price for this side
        self.sign = sign

    def add(self, o: Order) -> None:
        lvl = self.levels.get(o.ticks)
        if lvl is None:
            self.levels[o.ticks] = [o]
            bisect.insort(self.keys, -o.ticks * self.sign)
        else:
            lvl.append(o)

    def remove(self, o: Order) -> None:
        lvl = self.levels.get(o.ticks)
        if lvl is None:
            return
        try:
            lvl.remove(o)
        except ValueError:
            return
        if not lvl:
            del self.levels[o.ticks]
            k = -o.ticks * self.sign
            i = bisect.bisect_left(self.keys, k)
            if i < len(self.keys) and self.keys[i] == k:
                del self.keys[i]

    def best(self) -> int | None:
        return -self.keys[0] * self.sign if self.keys else None


class Engine:
    def __init__(self, venue: str, books: dict[str, Book], balances: dict[str, float],
                 default_base_balance: float, maker_fee: float, taker_fee: float, id_base: int = 0) -> None:
        """`id_base` offsets order and trade ids. The simulator passes its start time so ids
        never repeat across runs (real venues' ids only grow, and a database keyed on
        (venue, trade_id) must not see a new fill as an old one); 0 keeps fixed ids
        (backtests, where results must be identical run to run)."""
        self.venue = venue
        self.books = books
        self.start_balances = balances
        self.default_base_balance = default_base_balance
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.accounts: dict[str, dict[str, list[float]]] = {}
        self.orders: dict[int, Order] = {}  # open orders by id
        self.closed: dict[int, Order] = {}  # recently closed, for queries
        self.closed_by_client: dict[tuple[str, str], Order] = {}  # latest closed order per (key, client id)
        self.by_client: dict[tuple[str, str], Order] = {}  # open orders by (key, client id)
        self.resting: dict[str, tuple[Side, Side]] = {s: (Side(BUY), Side(SELL)) for s in books}
        self.fills: dict[str, deque[Fill]] = {}
        self.events: list[tuple[str, Order, Fill | None]] = []
        self._oid = itertools.count(id_base + {"binance": 4_100_000_001, "okx": 6_200_000_001}.get(venue, 1_700_000_001))
        self._trade_id = itertools.count(id_base + 50_000_001)
        self.on_events: Callable[[], None] | None = None
        self.stats = {"placed": 0, "rejected": 0, "canceled": 0, "fills": 0, "amended": 0}

    # -- accounts -----------------------------------------------------------
    def account(self, api_key: str) -> dict[str, list[float]]:
        acc = self.accounts.get(api_key)
        if acc is None:
            acc = {a: [v, 0.0] for a, v in self.start_balances.items()}
            for sym in self.books:
                for a in sym.split("-"):
                    acc.setdefault(a, [self.default_base_balance, 0.0])
            self.accounts[api_key] = acc
        return acc

    def balances(self, api_key: str) -> dict[str, dict[str, float]]:
        return {a: {"free": round(v[0], 12), "locked": round(v[1], 12)} for a, v in self.account(api_key).items()}

    def reset(self) -> None:
        for o in list(self.orders.values()):
            self._close(o, "CANCELED", emit=False)
        self.accounts.clear()
        self.closed.clear()
        self.closed_by_client.clear()
        self.fills.clear()
        self.events.clear()

    # -- queries -------------------------------------------------------------
    def open_orders(self, api_key: str, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values()
                if o.api_key == api_key and (symbol is None or o.inst.symbol == symbol)]

    def find(self, api_key: str, oid: int | None = None, client_id: str | None = None) -> Order | None:
        if oid is not None:
            o = self.orders.get(oid) or self.closed.get(oid)
            return o if o is not None and o.api_key == api_key else None
        if client_id:
            o = self.by_client.get((api_key, client_id))
            if o is not None:
                return o
            # the most recently closed order with that id (client ids never change after close)
            return self.closed_by_client.get((api_key, client_id))
        return None

    def recent_fills(self, api_key: str, symbol: str | None = None) -> list[Fill]:
        return [f for f in self.fills.get(api_key, ()) if symbol is None or f.order.inst.symbol == symbol]

    # -- order entry -----------------------------------------------------------
    def new_order(self, api_key: str, inst: Instrument, side: int, ticks: int, lots: int, tif: str,
                  post_only: bool, client_id: str, order_type: str = "LIMIT") -> Order:
        return Order(next(self._oid), api_key, inst, side, ticks, lots, tif, post_only, client_id, order_type)

    def place(self, o: Order) -> str:
        """Run a new order; returns "" when accepted, otherwise an engine outcome code
        (the order is then REJECTED and never entered the book)."""
        inst = o.inst
        book = self.books[inst.symbol]
        api_key = o.api_key
        acc = self.accounts.get(api_key)
        if acc is None:
            acc = self.account(api_key)
        cid = o.client_id
        if cid and (api_key, cid) in self.by_client:
            return self._reject(o, DUPLICATE_CLIENT_ID)
        market = o.order_type == "MARKET"
        side = o.side
        ticks = o.ticks
        if market:
            crosses = True
        elif side == BUY:
            crosses = bool(book.ask_keys) and ticks >= book.ask_keys[0]
        else:
            crosses = bool(book.bid_keys) and ticks <= -book.bid_keys[0]
        if o.post_only and not market and crosses:
            return self._reject(o, WOULD_TAKE)
        # what the order could take right now (nothing unless it crosses)
        takes = self._plan_take(o, book) if crosses else []
        # balance: lock what the whole order could cost
        if side == BUY:
            if market:
                need = o.quote_qty if o.quote_qty else sum(t * inst.tick * n * inst.lot for t, n in takes)
            else:
                need = (ticks * inst.tick) * (o.lots * inst.lot)
            asset = inst.quote
        else:
            need = o.lots * inst.lot
            asset = inst.base
        bal = acc.get(asset)
        if bal is None:
            bal = acc[asset] = [0.0, 0.0]
        if need > bal[0] + 1e-9:
            return self._reject(o, INSUFFICIENT_BALANCE)
        events = self.events
        if o.tif == "FOK" and not (market and o.quote_qty) and sum(n for _, n in takes) < o.lots:
            o.status = "EXPIRED"
            o.reason = FOK_NOT_FILLED
            self._remember(o)
            events.append(("new", o, None))
            events.append(("expired", o, None))
            return ""
        if not takes and (market or o.tif == "IOC"):
            # nothing to take (the usual far-from-market IOC): it expires at once, so skip the
            # lock, the book entry and the close that would undo them; the same events and state
            self.stats["placed"] += 1
            events.append(("new", o, None))
            o.reason = NO_LIQUIDITY
            o.status = "EXPIRED"
            o.update_ms = now_ms()
            self._remember(o)
            events.append(("expired", o, None))
            return ""
        bal[0] -= need
        bal[1] += need
        o.locked = need
        self.orders[o.oid] = o
        if cid:
            self.by_client[(api_key, cid)] = o
        self.stats["placed"] += 1
        events.append(("new", o, None))
        # taker part
        for t, n in takes:
            if market and o.quote_qty and side == BUY:
                spend_left = o.locked
                n = min(n, int(spend_left / (t * inst.tick * inst.lot) + 1e-9))
                if n <= 0:
                    break
            lvl = (book.asks if side == BUY else book.bids).get(t, 0)
            if side == BUY:
                book.set_ask(t, lvl - n)
            else:
                book.set_bid(t, lvl - n)
            self._fill(o, t, n, maker=False)
            if o.status not in _OPEN:
                break
        if o.status in _OPEN:
            if market or o.tif == "IOC" or o.tif == "FOK":
                o.reason = IOC_REMAINDER if o.filled_lots else NO_LIQUIDITY
                self._close(o, "EXPIRED")
            else:
                o.queue_ahead = (book.bids if side == BUY else book.asks).get(ticks, 0)
                self.resting[inst.symbol][0 if side == BUY else 1].add(o)
        return ""

    def _plan_take(self, o: Order, book: Book) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        need = o.remaining
        market = o.order_type == "MARKET"
        if o.side == BUY:
            for t in book.ask_keys:
                if need <= 0 or (not market and t > o.ticks):
                    break
                n = min(need, book.asks[t])
                out.append((t, n))
                need -= n
        else:
            for k in book.bid_keys:
                t = -k
                if need <= 0 or (not market and t < o.ticks):
                    break
                n = min(need, book.bids[t])
                out.append((t, n))
                need -= n
        return out

    def _reject(self, o: Order, why: str) -> str:
        o.status = "REJECTED"
        o.reason = why
        self.stats["rejected"] += 1
        return why

    def _remember(self, o: Order) -> None:
        self.closed[o.oid] = o
        if o.client_id:
            self.closed_by_client[(o.api_key, o.client_id)] = o
        if len(self.closed) > 20_000:
            cbc = self.closed_by_client
            for k in list(itertools.islice(self.closed, 5_000)):
                c = self.closed.pop(k)
                ck = (c.api_key, c.client_id)
                if cbc.get(ck) is c:
                    del cbc[ck]

    def _fill(self, o: Order, ticks: int, lots: int, maker: bool) -> None:
        inst = o.inst
        qty = inst.qty_float(lots)
        px = inst.px_float(ticks)
        quote = px * qty
        acc = self.account(o.api_key)
        rate = self.maker_fee if maker else self.taker_fee
        if o.side == BUY:
            # release the lock for this quantity at the order's price, pay the fill price
            if o.order_type == "MARKET":
                release = min(o.locked, quote)
            else:
                release = min(o.locked, inst.px_float(o.ticks) * qty)
            q = acc[inst.quote]
            q[1] -= release
            q[0] += release - quote
            o.locked -= release
            fee = qty * rate
            acc.setdefault(inst.base, [0.0, 0.0])[0] += qty - fee
        else:
            b = acc[inst.base]
            release = min(o.locked, qty)
            b[1] -= release
            o.locked -= release
            fee = quote * rate
            acc.setdefault(inst.quote, [0.0, 0.0])[0] += quote - fee
        o.filled_lots += lots
        o.cum_quote += quote
        o.fee += fee
        o.update_ms = now_ms()
        f = Fill(next(self._trade_id), o, ticks, lots, maker, fee, o.fee_asset, o.update_ms, quote)
        o.last_fill = f
        dq = self.fills.get(o.api_key)
        if dq is None:
            dq = self.fills[o.api_key] = deque(maxlen=2000)
        dq.append(f)
        self.stats["fills"] += 1
        if o.filled_lots >= o.lots:
            o.status = "FILLED"
            self.events.append(("trade", o, f))
            self._close(o, "FILLED", emit=False)
        else:
            o.status = "PARTIALLY_FILLED"
            self.events.append(("trade", o, f))

    def _close(self, o: Order, status: str, emit: bool = True) -> None:
        """Take an order off the book, release its lock, remember it."""
        orders = self.orders
        if o.oid in orders:
            del orders[o.oid]
            self.resting[o.inst.symbol][0 if o.side == BUY else 1].remove(o)
        if o.client_id:
            k = (o.api_key, o.client_id)
            if self.by_client.get(k) is o:
                del self.by_client[k]
        if o.locked:
            acc = self.account(o.api_key)
            bal = acc[o.inst.quote if o.side == BUY else o.inst.base]
            bal[1] -= o.locked
            bal[0] += o.locked
            o.locked = 0.0
        o.status = status
        o.update_ms = now_ms()
        self._remember(o)
        if emit:
            self.events.append(("canceled" if status == "CANCELED" else "expired", o, None))

    def cancel(self, o: Order, reason: str = "") -> str:
        if not o.is_open or o.oid not in self.orders:
            return UNKNOWN_ORDER
        o.reason = reason
        self._close(o, "CANCELED")
        self.stats["canceled"] += 1
        return ""

    def cancel_all(self, api_key: str, symbol: str | None = None, reason: str = "") -> list[Order]:
        out = []
        for o in self.open_orders(api_key, symbol):
            self.cancel(o, reason)
            out.append(o)
        return out

    def amend(self, o: Order, new_ticks: int | None, new_lots: int | None, keep_priority: bool = False) -> str:
        """Change price and/or total quantity of an open order; a price change or size increase
        loses queue priority. A price that crosses the book takes liquidity (post-only: rejected)."""
        if not o.is_open or o.oid not in self.orders:
            return UNKNOWN_ORDER
        ticks = o.ticks if new_ticks is None else new_ticks
        lots = o.lots if new_lots is None else new_lots
        if lots <= o.filled_lots or (keep_priority and (ticks != o.ticks or lots > o.lots)):
            return INVALID_AMEND
        book = self.books[o.inst.symbol]
        if ticks != o.ticks:
            crosses = (o.side == BUY and book.ask_keys and ticks >= book.ask_keys[0]) or \
                      (o.side == SELL and book.bid_keys and ticks <= -book.bid_keys[0])
            if crosses and o.post_only:
                return WOULD_TAKE
        # rebalance the lock for the new terms
        acc = self.account(o.api_key)
        rem_qty = o.inst.qty_float(lots - o.filled_lots)
        if o.side == BUY:
            need = o.inst.px_float(ticks) * rem_qty
            bal = acc[o.inst.quote]
        else:
            need = rem_qty
            bal = acc[o.inst.base]
        if need - o.locked > bal[0] + 1e-9:
            return INSUFFICIENT_BALANCE
        bal[0] -= need - o.locked
        bal[1] += need - o.locked
        o.locked = need
        side = self.resting[o.inst.symbol][0 if o.side == BUY else 1]
        requeue = ticks != o.ticks or lots > o.lots
        if requeue:
            side.remove(o)
        o.ticks, o.lots = ticks, lots
        o.update_ms = now_ms()
        self.stats["amended"] += 1
        self.events.append(("amended", o, None))
        if requeue:
            takes = self._plan_take(o, book)
            for t, n in takes:
                lvl = (book.asks if o.side == BUY else book.bids).get(t, 0)
                if o.side == BUY:
                    book.set_ask(t, lvl - n)
                else:
                    book.set_bid(t, lvl - n)
                self._fill(o, t, n, maker=False)
            if o.is_open:
                o.queue_ahead = (book.bids if o.side == BUY else book.asks).get(o.ticks, 0)
                side.add(o)
        return ""

    # -- market-driven fills ----------------------------------------------------
    def on_book_step(self, symbol: str) -> None:
        """Fill resting orders that generated trades reached or that the book moved through."""
        bids, asks = self.resting[symbol]
        if not bids.keys and not asks.keys:
            return
        book = self.books[symbol]
        # trades: a buy taker hits our asks, a sell taker hits our bids
        for taker, t, lots, _tid in book.trades:
            side = asks if taker == BUY else bids
            if not side.keys:
                continue
            vol = lots
            # only levels at or better than the trade price can be reached: a prefix of the keys
            for k in side.keys[:bisect.bisect_right(side.keys, -t * side.sign)]:
                ticks = -k * side.sign
                if vol <= 0 or (ticks > t if taker == BUY else ticks < t):
                    break
                better = ticks != t
                if better:
                    for o in list(side.levels.get(ticks, ())):
                        n = min(o.remaining, vol)
                        if n > 0:
                            vol -= n
                            self._fill(o, ticks, n, maker=True)
                elif ticks == t:
                    ahead_ours = 0
                    for o in list(side.levels.get(ticks, ())):
                        reach = vol - o.queue_ahead - ahead_ours
                        ahead_ours += o.remaining
                        o.queue_ahead = max(0, o.queue_ahead - vol)
                        n = min(o.remaining, reach)
                        if n > 0:
                            self._fill(o, ticks, n, maker=True)
        # displayed size shrinking at our price shortens our queue
        for side, chg in ((bids, book.chg_bids), (asks, book.chg_asks)):
            if side.keys and chg:
                levels = side.levels
                for ticks in (chg if len(chg) < len(levels) else list(levels)):
                    lvl = levels.get(ticks)
                    if lvl is None or ticks not in chg:
                        continue
                    shown = chg[ticks]
                    for o in lvl:
                        if o.queue_ahead > shown:
                            o.queue_ahead = shown
        # the generated book moved through our price: we were hit as maker
        ba = book.ask_keys[0] if book.ask_keys else None
        while ba is not None and bids.keys and bids.best() >= ba:
            for o in list(bids.levels[bids.best()]):
                self._fill(o, o.ticks, o.remaining, maker=True)
        bb = -book.bid_keys[0] if book.bid_keys else None
        while bb is not None and asks.keys and asks.best() <= bb:
            for o in list(asks.levels[asks.best()]):
                self._fill(o, o.ticks, o.remaining, maker=True)
