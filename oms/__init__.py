"""Order management: state machine, client order ids, per-venue gateways and reconciliation. Never decides what to trade.

The unified order API is re-exported here: `Exchange`, `OrderSide`, `Symbol`, `OrderRequest`
(from strategy/orders.py), `OrderManager`, `Order`, `OrderEvent`, `EventKind`, `Reason`.
"""

from common.enums import Exchange, OrderSide, OrderState, TimeInForce
from oms.manager import OrderManager, apply_sim_urls
from oms.positions import Position, PositionBook
from oms.state import EventKind, Order, OrderEvent, Reason
from strategy.orders import OrderRequest, RequestKind, Symbol

__all__ = ["Exchange", "OrderSide", "OrderState", "TimeInForce", "Symbol", "OrderRequest", "RequestKind",
           "OrderManager", "Order", "OrderEvent", "EventKind", "Reason", "Position", "PositionBook",
           "apply_sim_urls"]
