"""The Strategy API users write against, identical in live trading and in backtests.

A strategy subclasses `Strategy` and returns `OrderRequest`s from its callbacks. Market
data arrives as `MarketData`, one reused view over the current ring record plus the
host's per-instrument state (no object is built per message). Must not talk to sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from common.enums import Exchange, TradingState
from common.instruments import Instruments, InstrumentSpec
from ringbuf.records import F_RESYNC, F_SNAPSHOT_END, KIND_BOOK_LEVEL, KIND_BOOK_RESET, KIND_QUOTE, KIND_TRADE
from strategy.orders import OrderRequest, Symbol
from strategy.state import MarketState

_VENUES = (None, Exchange.BINANCE, Exchange.OKX, Exchange.GATE)
_EMPTY_RECORD = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)


class MarketData:
    """View of one market-data record (the MD_DTYPE fields, unpacked once by the host)
    and of the host's state for its (venue, instrument). The host reuses one instance:
    copy what you need to keep; never store the object itself."""

    __slots__ = ("_t", "_k", "state", "instruments", "now_ns")

    def __init__(self, state: MarketState, instruments: Instruments | None = None) -> None:
        self._t = _EMPTY_RECORD
        self._k = 0
        self.state = state
        self.instruments = instruments
        self.now_ns = 0  # host monotonic time when the record was read

    def load(self, record: tuple, now_ns: int) -> None:
        """Point the view at an unpacked MD_STRUCT tuple (host and backtests)."""
        self._t = record
        self._k = record[2] * self.state.n_instr + record[4]
        self.now_ns = now_ns

    # ---- the record --------------------------------------------------------
    @property
    def kind(self) -> int:
        return self._t[0]

    @property
    def flags(self) -> int:
        return self._t[1]

    @property
    def venue_id(self) -> int:
        return self._t[2]

    @property
    def venue(self) -> Exchange | None:
        v = self._t[2]
        return _VENUES[v] if 0 < v < 4 else None

    @property
    def side(self) -> int:
        """Trades: +1 buyer was the taker, -1 seller; book levels: +1 bid, -1 ask."""
        return self._t[3]

    @property
    def instr_id(self) -> int:
        return self._t[4]

    @property
    def symbol(self) -> str:
        return self.instruments.name(self._t[4]) if self.instruments is not None else ""

    @property
    def exch_ts_ns(self) -> int:
        return self._t[6]

    @property
    def recv_ts_ns(self) -> int:
        return self._t[7]

    @property
    def venue_seq(self) -> int:
        return self._t[8]

    @property
    def is_quote(self) -> bool:
        return self._t[0] == KIND_QUOTE

    @property
    def is_trade(self) -> bool:
        return self._t[0] == KIND_TRADE

    @property
    def is_book(self) -> bool:
        return self._t[0] == KIND_BOOK_LEVEL or self._t[0] == KIND_BOOK_RESET

    @property
    def px(self) -> float:
        """Trade or book-level price (quotes: the bid)."""
        return self._t[9]

    @property
    def qty(self) -> float:
        """Trade or book-level quantity (0 deletes a level)."""
        return self._t[10]

    @property
    def trade_px(self) -> float:
        return self._t[9] if self._t[0] == KIND_TRADE else 0.0

    @property
    def trade_qty(self) -> float:
        return self._t[10] if self._t[0] == KIND_TRADE else 0.0

    @property
    def is_resync_record(self) -> bool:
        return bool(self._t[1] & F_RESYNC) or self._t[0] == KIND_BOOK_RESET

    @property
    def is_snapshot_end(self) -> bool:
        return bool(self._t[1] & F_SNAPSHOT_END)

    # ---- host state for this (venue, instrument) --------------------------
    @property
    def bid_px(self) -> float:
        return self.state.bid_px_f[self._k]

    @property
    def bid_qty(self) -> float:
        return self.state.bid_qty_f[self._k]

    @property
    def ask_px(self) -> float:
        return self.state.ask_px_f[self._k]

    @property
    def ask_qty(self) -> float:
        return self.state.ask_qty_f[self._k]

    @property
    def mid(self) -> float:
        b = self.state.bid_px_f[self._k]
        a = self.state.ask_px_f[self._k]
        return (a + b) * 0.5 if a > 0.0 and b > 0.0 else 0.0

    @property
    def book_valid(self) -> bool:
        return self.state.valid_f[self._k] == 1

    @property
    def book_resyncing(self) -> bool:
        return self.state.resync_f[self._k] == 1

    @property
    def book_age_ns(self) -> int:
        return self.state.age_ns(self._t[2], self._t[4], self.now_ns)

    def best_bid(self, venue_id: int | None = None) -> float:
        """Best bid of this instrument on `venue_id` (default: the record's venue)."""
        v = self._t[2] if venue_id is None else int(venue_id)
        return self.state.bid_px_f[v * self.state.n_instr + self._t[4]]

    def best_ask(self, venue_id: int | None = None) -> float:
        v = self._t[2] if venue_id is None else int(venue_id)
        return self.state.ask_px_f[v * self.state.n_instr + self._t[4]]

    def __repr__(self) -> str:
        return (f"MarketData(kind={self.kind} venue={self.venue_id} instr={self.instr_id} "
                f"bid={self.bid_px} ask={self.ask_px} px={self.px} qty={self.qty})")


class StrategyContext:
    """What the host (or a backtest) gives a strategy in `on_start`: instruments, market
    state, positions, open orders, clock and trading state. Every callable is optional
    so a backtest or a test can provide only what it has."""

    def __init__(self, instruments: Instruments, state: MarketState, config=None,
                 clock: Callable[[], int] = time.monotonic_ns,
                 position_fn: Callable[[int, int], float] | None = None,
                 open_orders_fn: Callable[..., list] | None = None,
                 trading_state_fn: Callable[[], TradingState] | None = None,
                 venue_ready_fn: Callable[[int], bool] | None = None,
                 venues: list[int] | None = None) -> None:
        self.instruments = instruments
        self.state = state
        self.config = config
        self.clock = clock
        self._position_fn = position_fn
        self._open_orders_fn = open_orders_fn
        self._trading_state_fn = trading_state_fn
        self._venue_ready_fn = venue_ready_fn
        self.venues = list(venues) if venues is not None else [int(v) for v in Exchange]
        self._symbols: dict[tuple[int, int], Symbol] = {}
        # optional fast path: positions as a flat view indexed like the state
        # (venue_id * state.n_instr + instr_id); None when the provider has none
        self.positions: Any = None
        self.ready_flags: Any = None  # venue id -> 1 ready / 0 not (fast path for venue_ready)
        self.risk: Any = None  # the risk engine (its .state is the trading state), when there is one

    def now_ns(self) -> int:
        return self.clock()

    def symbol(self, venue_id: int, instr_id: int) -> Symbol:
        """The Symbol of (venue, instrument), built once and cached."""
        key = (venue_id, instr_id)
        s = self._symbols.get(key)
        if s is None:
            s = Symbol.parse(self.instruments.name(instr_id), Exchange(venue_id))
            self._symbols[key] = s
        return s

    def book(self, venue_id: int, instr_id: int):
        """The L2 book (feeds.book.Book: best_bid(), best_ask(), top(n), valid) rebuilt by the
        host from BOOK_LEVEL records when the strategy sets `wants_l2 = True`; else None."""
        return None

    def spec(self, venue_id: int, instr_id: int) -> InstrumentSpec | None:
        return self.instruments.spec(venue_id, instr_id)

    def position(self, venue_id: int, instr_id: int) -> float:
        return self._position_fn(venue_id, instr_id) if self._position_fn is not None else 0.0

    def open_orders(self, venue=None, instr_id=None) -> list:
        return self._open_orders_fn(venue, instr_id) if self._open_orders_fn is not None else []

    @property
    def trading_state(self) -> TradingState:
        return self._trading_state_fn() if self._trading_state_fn is not None else TradingState.ACTIVE

    def venue_ready(self, venue_id: int) -> bool:
        return self._venue_ready_fn(venue_id) if self._venue_ready_fn is not None else True


class Strategy:
    """Base class. Override what you need; every callback may return a list of
    `OrderRequest` (or None). Requests go through risk, then to the OMS.

    - `on_start(ctx)`: once, after the OMS is ready and before the first record.
    - `on_market_data(md)`: per market-data record (unless `batch_mode` is set).
    - `on_end_of_batch()`: once per burst of records (every poll that found work).
    - `on_order_event(ev)`: acks, fills, cancels... of this strategy's orders (the OMS's
      OrderEvent: `ev.kind` name ACK/REJECT/FILL/CANCELED/EXPIRED/AMENDED/UNKNOWN, `ev.order`
      with cl_ord_id, venue, instr_id, side, px, qty, filled_qty, state; `ev.fill_qty`, `ev.fill_px`).
    - `on_request_denied(req, reason_code, reason)`: risk or the OMS refused a request.
    - `on_timer(now_ns)`: every `timer_ms` (default 100 ms) even without market data.
    - `on_stop()`: once at shutdown, after the kill switch cancelled every order.
    """

    name = "strategy"
    strategy_id = 0
    batch_mode = False  # True: skip on_market_data, decide once per batch in on_end_of_batch
    wants_l2 = False  # True: the host rebuilds L2 books from depth records (ctx.book(venue, instr))
    timer_ms = 100.0

    ctx: StrategyContext | None = None

    def on_start(self, ctx: StrategyContext) -> list[OrderRequest] | None:
        self.ctx = ctx
        return None

    def on_market_data(self, md: MarketData) -> list[OrderRequest] | None:
        return None

    def on_end_of_batch(self) -> list[OrderRequest] | None:
        return None

    def on_order_event(self, ev) -> list[OrderRequest] | None:
        return None

    def on_request_denied(self, req: OrderRequest, reason_code: int, reason: str) -> None:
        return None

    def on_timer(self, now_ns: int) -> list[OrderRequest] | None:
        return None

    def on_halt(self, reason: str) -> None:
        """The kill switch fired: the host is cancelling every order; stop quoting."""
        return None

    def on_stop(self) -> None:
        return None


def event_kind(ev) -> str:
    """Upper-case name of an order event's kind, whether an enum or a string."""
    k = ev.kind
    if type(k) is str:
        return k.upper()
    # an enum member keeps its name in the plain attribute `_name_`; `.name` is a Python-level
    # descriptor that costs several times more (this runs for every order event)
    name = getattr(k, "_name_", None)
    if name is None:
        name = getattr(k, "name", None)
    return name if name is not None else str(k).upper()
