"""Risk check cost per order: our RiskEngine (preallocated arrays, int reason codes) vs a
naive baseline (dicts of limits and positions, a result object per check), same run.

    .venv/bin/pytest benches/bench_rms.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from common.config import RiskConfig
from common.enums import Exchange, OrderSide
from common.instruments import Instruments
from rms.engine import RiskEngine
from strategy.orders import OrderRequest, RequestKind, Symbol
from strategy.state import MarketState

NOW = 10_000_000_000
SYM = Symbol("BTC", "USDT", Exchange.BINANCE)
LIMITS: dict[str, Any] = dict(max_orders_per_s=1e12, max_position=1e9, max_venue_notional=1e15,
                              max_total_notional=1e15, max_open_orders=10**9)


def engine() -> RiskEngine:
    ins = Instruments(["BTC-USDT", "ETH-USDT"])
    ins.add(Exchange.BINANCE, "BTC-USDT", tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)
    st = MarketState(64)
    st.set_quote(1, 1, 60000.0, 1.0, 60001.0, 1.0, NOW)
    rms = RiskEngine(RiskConfig(**LIMITS), ins, st)
    r = OrderRequest.new_limit(SYM, OrderSide.BUY, 0.001, 59990.0, post_only=True, cl_ord_id="open1")
    r.instr_id = 1
    rms.on_order_open(r)
    return rms


def request(px: float = 59990.0) -> OrderRequest:
    r = OrderRequest.new_limit(SYM, OrderSide.BUY, 0.001, px, post_only=True)
    r.instr_id = 1
    return r


# ---- baseline: how a straightforward Python bot checks an order ------------------------------
@dataclass
class CheckResult:
    ok: bool
    reason: str = ""


class NaiveRisk:
    def __init__(self) -> None:
        self.limits = {"price_band_bps": 200.0, "max_order_qty": 1.0, "max_order_notional": 50_000.0,
                       "max_position": 1e9, "max_venue_notional": 1e15, "max_total_notional": 1e15,
                       "max_open_orders": 10**9}
        self.books = {("binance", "BTC-USDT"): {"bid": 60000.0, "ask": 60001.0, "ts": NOW}}
        self.specs = {("binance", "BTC-USDT"): {"tick": 0.01, "lot": 0.00001, "min_notional": 5.0}}
        self.positions = {("binance", "BTC-USDT"): 0.0}
        self.open_orders: dict[str, dict[str, Any]] = {"open1": {"venue": "binance", "symbol": "BTC-USDT", "side": "BUY", "qty": 0.001,
                                      "px": 59990.0}}
        self.state = "ACTIVE"

    def check(self, req: OrderRequest, now_ns: int) -> CheckResult:
        key = (req.venue.key, req.symbol.canonical)  # type: ignore[union-attr]
        lim = self.limits
        if self.state == "HALTED":
            return CheckResult(False, "halted")
        book = self.books.get(key)
        if book is None or now_ns - book["ts"] > 2e9:
            return CheckResult(False, "stale")
        mid = (book["bid"] + book["ask"]) / 2
        if abs(req.px - mid) / mid * 1e4 > lim["price_band_bps"]:
            return CheckResult(False, "price band")
        if req.qty > lim["max_order_qty"] or req.qty * req.px > lim["max_order_notional"]:
            return CheckResult(False, "size")
        spec = self.specs[key]
        if abs(req.px / spec["tick"] - round(req.px / spec["tick"])) > 1e-6:
            return CheckResult(False, "tick")
        if abs(req.qty / spec["lot"] - round(req.qty / spec["lot"])) > 1e-6:
            return CheckResult(False, "lot")
        if req.post_only and req.side == OrderSide.BUY and req.px >= book["ask"]:
            return CheckResult(False, "post only")
        open_buy = sum(o["qty"] for o in self.open_orders.values()
                       if (o["venue"], o["symbol"]) == key and o["side"] == "BUY")
        if self.positions[key] + open_buy + req.qty > lim["max_position"]:
            return CheckResult(False, "position")
        if len(self.open_orders) >= lim["max_open_orders"]:
            return CheckResult(False, "open orders")
        return CheckResult(True)


@pytest.mark.benchmark(group="rms: allowed order")
def test_ours_allowed(benchmark):
    rms, req = engine(), request()
    assert rms.check(req, NOW) == 0
    benchmark(rms.check, req, NOW)


@pytest.mark.benchmark(group="rms: allowed order")
def test_baseline_allowed(benchmark):
    naive, req = NaiveRisk(), request()
    assert naive.check(req, NOW).ok
    benchmark(naive.check, req, NOW)


@pytest.mark.benchmark(group="rms: denied order (price band)")
def test_ours_denied(benchmark):
    rms, req = engine(), request(50000.0)
    assert rms.check(req, NOW) != 0
    benchmark(rms.check, req, NOW)


@pytest.mark.benchmark(group="rms: denied order (price band)")
def test_baseline_denied(benchmark):
    naive, req = NaiveRisk(), request(50000.0)
    assert not naive.check(req, NOW).ok
    benchmark(naive.check, req, NOW)


@pytest.mark.benchmark(group="rms: amend")
def test_ours_amend(benchmark):
    rms = engine()
    req = OrderRequest(RequestKind.AMEND, SYM, px=59991.0, qty=0.001, target_cl_ord_id="open1")
    assert rms.check(req, NOW) == 0
    benchmark(rms.check, req, NOW)
