"""Small enums shared by every layer: venues, sides, order types, order states.

Values are small ints so they fit the binary records; names are for the edges.
"""

from __future__ import annotations

from enum import IntEnum


class Exchange(IntEnum):
    BINANCE = 1
    OKX = 2
    GATE = 3

    @property
    def key(self) -> str:
        return self.name.lower()

    @classmethod
    def from_name(cls, name: str) -> Exchange:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown exchange {name!r}; expected one of binance, okx, gate") from None


VENUES = tuple(Exchange)
VENUE_NAMES = {v: v.key for v in Exchange}


class OrderSide(IntEnum):
    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide(-self.value)


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3
    POST_ONLY = 4  # Binance LIMIT_MAKER, OKX post_only, Gate poc


class OrderState(IntEnum):
    PENDING_NEW = 1
    NEW = 2
    PARTIALLY_FILLED = 3
    FILLED = 4
    PENDING_CANCEL = 5
    CANCELED = 6
    REJECTED = 7
    EXPIRED = 8
    UNKNOWN = 9
    PENDING_AMEND = 10

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        return self in _OPEN


_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED})
_OPEN = frozenset(
    {OrderState.NEW, OrderState.PARTIALLY_FILLED, OrderState.PENDING_CANCEL, OrderState.PENDING_AMEND}
)


class TradingState(IntEnum):
    ACTIVE = 1
    REDUCING = 2  # only orders that reduce position
    HALTED = 3
