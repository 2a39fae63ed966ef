"""The unified order API in one typed place: what strategies build (`OrderRequest`, `Symbol`),
what the OMS hands back (`Order`, `OrderEvent`) and the enums both use. Re-exports only."""

from __future__ import annotations

from common.enums import Exchange, OrderSide, OrderState, OrderType, TimeInForce
from oms.state import EventKind, Order, OrderEvent, Reason
from strategy.orders import OrderRequest, RequestKind, Symbol

__all__ = ["Exchange", "OrderSide", "OrderState", "OrderType", "TimeInForce", "EventKind", "Order", "OrderEvent",
           "Reason", "OrderRequest", "RequestKind", "Symbol"]
