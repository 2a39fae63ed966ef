"""The unified order API: what strategies return, what the OMS executes and what backtests fill.

`OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange.BINANCE), OrderSide.BUY, qty, px)`
accepts Decimal or float. Requests are small slotted objects built at the edges; the
hot path of the strategy host reuses them where it can. Must not talk to sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum

from common.enums import Exchange, OrderSide, OrderType, TimeInForce
from common.instruments import canonical


@dataclass(frozen=True, slots=True)
class Symbol:
    base: str
    quote: str
    exchange: Exchange

    @property
    def canonical(self) -> str:
        return canonical(self.base, self.quote)

    @classmethod
    def parse(cls, symbol: str, exchange: Exchange) -> Symbol:
        base, quote = symbol.upper().replace("_", "-").split("-")
        return cls(base, quote, exchange)

    def __str__(self) -> str:
        return f"{self.canonical}@{self.exchange.key}"


class RequestKind(IntEnum):
    NEW = 1
    CANCEL = 2
    AMEND = 3
    CANCEL_ALL = 4


def _num(x: Decimal | float | int | str) -> float:
    if isinstance(x, float):
        return x
    return float(x)


class OrderRequest:
    """A new order, cancel or amend. Prices and quantities are floats internally (the
    gateway formats them to the instrument's tick/lot decimals)."""

    __slots__ = ("kind", "venue", "instr_id", "symbol", "side", "qty", "px", "ord_type", "tif",
                 "cl_ord_id", "target_cl_ord_id", "strategy_id", "ts_ns", "tag")

    def __init__(self, kind: RequestKind, symbol: Symbol | None, side: OrderSide = OrderSide.BUY,
                 qty: float = 0.0, px: float = 0.0, ord_type: OrderType = OrderType.LIMIT,
                 tif: TimeInForce = TimeInForce.GTC, cl_ord_id: str = "", target_cl_ord_id: str = "",
                 strategy_id: int = 0, venue: Exchange | None = None, instr_id: int = 0) -> None:
        self.kind = kind
        self.symbol = symbol
        self.venue = venue if venue is not None else (symbol.exchange if symbol else None)
        self.instr_id = instr_id
        self.side = side
        self.qty = qty
        self.px = px
        self.ord_type = ord_type
        self.tif = tif
        self.cl_ord_id = cl_ord_id  # assigned by the OMS when empty
        self.target_cl_ord_id = target_cl_ord_id  # cancel/amend: the order acted on
        self.strategy_id = strategy_id
        self.ts_ns = 0
        self.tag = ""

    # ---- constructors ----------------------------------------------------
    @classmethod
    def new_limit(cls, symbol: Symbol, side: OrderSide, qty: Decimal | float, price: Decimal | float,
                  post_only: bool = False, ioc: bool = False, fok: bool = False,
                  cl_ord_id: str = "") -> OrderRequest:
        if sum((post_only, ioc, fok)) > 1:
            raise ValueError("choose at most one of post_only, ioc, fok")
        tif = (TimeInForce.POST_ONLY if post_only else TimeInForce.IOC if ioc
               else TimeInForce.FOK if fok else TimeInForce.GTC)
        q, p = _num(qty), _num(price)
        if not q > 0:
            raise ValueError(f"quantity must be positive, got {qty}")
        if not p > 0:
            raise ValueError(f"price must be positive, got {price}")
        return cls(RequestKind.NEW, symbol, OrderSide(side), q, p, OrderType.LIMIT, tif, cl_ord_id)

    @classmethod
    def new_market(cls, symbol: Symbol, side: OrderSide, qty: Decimal | float,
                   cl_ord_id: str = "") -> OrderRequest:
        q = _num(qty)
        if not q > 0:
            raise ValueError(f"quantity must be positive, got {qty}")
        return cls(RequestKind.NEW, symbol, OrderSide(side), q, 0.0, OrderType.MARKET, TimeInForce.IOC, cl_ord_id)

    @classmethod
    def cancel(cls, symbol: Symbol, cl_ord_id: str) -> OrderRequest:
        return cls(RequestKind.CANCEL, symbol, target_cl_ord_id=cl_ord_id)

    @classmethod
    def amend(cls, symbol: Symbol, cl_ord_id: str, qty: Decimal | float | None = None,
              price: Decimal | float | None = None) -> OrderRequest:
        if qty is None and price is None:
            raise ValueError("amend needs a new quantity or a new price")
        return cls(RequestKind.AMEND, symbol, qty=_num(qty) if qty is not None else 0.0,
                   px=_num(price) if price is not None else 0.0, target_cl_ord_id=cl_ord_id)

    @classmethod
    def cancel_all(cls, exchange: Exchange | None = None) -> OrderRequest:
        return cls(RequestKind.CANCEL_ALL, None, venue=exchange)

    @property
    def post_only(self) -> bool:
        return self.tif == TimeInForce.POST_ONLY

    @property
    def notional(self) -> float:
        return self.qty * self.px

    def __repr__(self) -> str:
        if self.kind == RequestKind.NEW:
            return (f"OrderRequest(NEW {self.symbol} {self.side.name} {self.qty}@{self.px} "
                    f"{self.tif.name} id={self.cl_ord_id!r})")
        return f"OrderRequest({self.kind.name} {self.symbol} target={self.target_cl_ord_id!r} qty={self.qty} px={self.px})"
