"""Order objects and the order state machine: which transitions are legal, and reason codes.

`transition(order, new_state)` applies a legal change and refuses (returns False) an
illegal one; the caller logs and counts the refusal. Fills are applied by the manager
even to a terminal order (a late fill after a cancel still happened). No I/O here.
"""

from __future__ import annotations

from enum import IntEnum
from operator import attrgetter

from common.enums import Exchange, OrderSide, OrderState, OrderType, TimeInForce

S = OrderState

# from-state -> states it may move to. Same-state updates (a repeated ack, a second
# partial fill) are not transitions and are always accepted.
LEGAL: dict[OrderState, frozenset[OrderState]] = {
    S.PENDING_NEW: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED, S.EXPIRED,
                              S.UNKNOWN, S.PENDING_CANCEL}),
    S.NEW: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.PENDING_AMEND, S.CANCELED,
                      S.EXPIRED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED, S.PENDING_CANCEL, S.PENDING_AMEND, S.CANCELED, S.EXPIRED,
                                   S.UNKNOWN}),
    # a cancel that the venue refuses returns the order to NEW / PARTIALLY_FILLED
    S.PENDING_CANCEL: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED, S.UNKNOWN}),
    S.PENDING_AMEND: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED,
                                S.EXPIRED, S.UNKNOWN}),
    # reconciliation resolves UNKNOWN to whatever the venue says
    S.UNKNOWN: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED,
                          S.PENDING_CANCEL}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


def is_legal(frm: OrderState, to: OrderState) -> bool:
    return frm == to or to in LEGAL[frm]


# The same facts as tables indexed by the state's int value, for the hot path: a list index
# on an IntEnum is C all the way, where a set lookup or the enum's properties run Python code.
_N_STATES = max(OrderState) + 1
LEGAL_M: tuple[tuple[bool, ...], ...] = tuple(
    tuple(f in LEGAL and t in LEGAL and is_legal(OrderState(f), OrderState(t)) for t in range(_N_STATES))
    for f in range(_N_STATES))
TERMINAL_M: tuple[bool, ...] = tuple(f in LEGAL and OrderState(f).is_terminal for f in range(_N_STATES))
PENDING_M: tuple[bool, ...] = tuple(f in (S.PENDING_NEW, S.PENDING_CANCEL, S.PENDING_AMEND) for f in range(_N_STATES))


class Reason(IntEnum):
    """Why an order was rejected, cancelled or not accepted (u1 in ORDER_EVENT records)."""

    NONE = 0
    BAD_SIGNATURE = 1
    TIMESTAMP = 2  # timestamp outside the venue's window
    INSUFFICIENT_BALANCE = 3
    POST_ONLY_CROSS = 4  # post-only would cross / take
    RATE_LIMIT = 5
    UNKNOWN_ORDER = 6
    INVALID_TICK_LOT = 7  # price/quantity precision or filter failure
    DUPLICATE_ID = 8
    IOC_UNFILLED = 9  # IOC/FOK remainder expired
    VENUE_DOWN = 10  # not connected / not authenticated
    RECONCILING = 11
    TRANSPORT = 12  # connection lost with the request in flight
    TIMEOUT = 13  # no answer in time
    NOT_FOUND = 14  # reconciliation: the venue never saw it
    USER_CANCEL = 15
    BAD_REQUEST = 16
    AUTH = 17  # key / permission / login
    UNKNOWN_INSTRUMENT = 18
    MIN_NOTIONAL = 19
    SELF_TRADE = 20
    VENUE_ERROR = 21  # server-side error, outcome unknown
    OTHER = 255


class EventKind(IntEnum):
    # `name` read by listeners on every event: a C property instead of the enum's Python one
    name = property(attrgetter("_name_"))  # type: ignore[assignment]

    ACK = 1
    REJECT = 2
    FILL = 3
    CANCELED = 4
    EXPIRED = 5
    AMENDED = 6
    UNKNOWN = 7
    CANCEL_REJECT = 8
    AMEND_REJECT = 9
    RECONCILED = 10  # state set by reconciliation
    PENDING = 11  # sent (PENDING_NEW / PENDING_CANCEL / PENDING_AMEND)


class Order:
    """One order as the OMS tracks it. Prices/quantities in float, ids as strings at the edge."""

    __slots__ = ("cl_ord_id", "venue", "instr_id", "symbol", "side", "px", "qty", "filled_qty", "avg_px",
                 "state", "venue_ord_id", "tif", "ord_type", "created_ns", "sent_ns", "acked_ns", "reason",
                 "event_seq", "strategy_id", "fees", "prev_state", "pending_px", "pending_qty", "waiters",
                 "trade_ids", "cum_quote", "last_update_ns", "_cl_s", "_cl_b", "_vid_s", "_vid_b")

    def __init__(self, cl_ord_id: str, venue: Exchange, instr_id: int, symbol: str, side: OrderSide,
                 px: float, qty: float, tif: TimeInForce = TimeInForce.GTC,
                 ord_type: OrderType = OrderType.LIMIT, strategy_id: int = 0, created_ns: int = 0) -> None:
        self.cl_ord_id = cl_ord_id
        self.venue = venue
        self.instr_id = instr_id
        self.symbol = symbol  # canonical BTC-USDT
        self.side = side
        self.px = px
        self.qty = qty
        self.filled_qty = 0.0
        self.avg_px = 0.0
        self.cum_quote = 0.0
        self.state = OrderState.PENDING_NEW
        self.prev_state = OrderState.PENDING_NEW
        self.venue_ord_id = ""
        self.tif = tif
        self.ord_type = ord_type
        self.created_ns = created_ns
        self.sent_ns = 0
        self.acked_ns = 0
        self.reason = Reason.NONE
        self.event_seq = 0
        self.strategy_id = strategy_id
        self.fees = 0.0
        self.pending_px = 0.0
        self.pending_qty = 0.0
        self.waiters: list | None = None  # futures of place_order()
        self.trade_ids: set[str] | None = None
        self.last_update_ns = 0
        # the ids as record bytes, encoded once (re-encoded if an id is ever replaced)
        self._cl_s = cl_ord_id
        self._cl_b = cl_ord_id.encode()[:32]
        self._vid_s = ""
        self._vid_b = b""

    @property
    def leaves_qty(self) -> float:
        return max(self.qty - self.filled_qty, 0.0)

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def __repr__(self) -> str:
        return (f"Order({self.cl_ord_id} {self.venue.key} {self.symbol} {self.side.name} {self.qty}@{self.px} "
                f"{self.state.name} filled={self.filled_qty} venue_id={self.venue_ord_id!r}"
                f"{' reason=' + self.reason.name if self.reason else ''})")


class OrderEvent:
    """What happened to an order: passed to listeners synchronously from the loop."""

    __slots__ = ("order", "kind", "fill_qty", "fill_px", "fee", "liquidity", "trade_id", "reason", "ts_ns")

    def __init__(self, order: Order, kind: EventKind, fill_qty: float = 0.0, fill_px: float = 0.0,
                 fee: float = 0.0, liquidity: int = 0, trade_id: str = "", reason: Reason = Reason.NONE,
                 ts_ns: int = 0) -> None:
        self.order = order
        self.kind = kind
        self.fill_qty = fill_qty
        self.fill_px = fill_px
        self.fee = fee
        self.liquidity = liquidity  # 1 maker, 2 taker, 0 unknown
        self.trade_id = trade_id
        self.reason = reason
        self.ts_ns = ts_ns

    def __repr__(self) -> str:
        extra = f" {self.fill_qty}@{self.fill_px} fee={self.fee} tid={self.trade_id}" if self.kind == EventKind.FILL else ""
        return f"OrderEvent({self.kind.name} {self.order.cl_ord_id} {self.order.state.name}{extra})"
