"""Encode + sign cost per order on each venue: our prebuilt templates with a prepared HMAC key
(`copy()` per message) vs a baseline that builds a params dict, signs a fresh `hmac.new` and
`json.dumps` per order; plus the whole `OrderManager.submit()` hot path with the socket stubbed.

    .venv/bin/pytest benches/bench_oms.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from common.config import load
from common.enums import Exchange, OrderSide, TimeInForce
from common.instruments import Instruments
from oms import manager as mgr
from oms.ratelimit import TokenBucket
from oms.venues import binance, gate, okx
from strategy.orders import OrderRequest, Symbol

CFG = load(text="")
TS = 1_700_000_000_000


class _Sink:
    def on_update(self, gw, u):
        pass

    def on_gateway_down(self, gw, r, w):
        pass


def _gw(cls):
    gw = cls(CFG.venue(cls.venue.key), Instruments(), _Sink(), ["BTC-USDT"])
    if cls is okx.OkxGateway:
        gw.codes["BTC-USDT"] = 10001
    return gw


# ---------------------------------------------------------------- baselines (naive, per order)
def baseline_binance(cl: str, px: str, qty: str) -> bytes:
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": px,
              "quantity": qty, "newClientOrderId": cl, "newOrderRespType": "RESULT", "apiKey": "sim-key",
              "timestamp": TS}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(b"sim-secret", payload.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"id": "n" + cl, "method": "order.place", "params": params}).encode()


def baseline_okx(cl: str, px: str, qty: str) -> bytes:
    # OKX WS orders are not signed per message (the login is); the baseline builds and dumps a dict
    return json.dumps({"id": "n" + cl, "op": "order", "args": [{"instIdCode": 10001, "instId": "BTC-USDT",
                       "tdMode": "cash", "side": "buy", "ordType": "limit", "px": px, "sz": qty,
                       "clOrdId": cl}]}).encode()


def baseline_gate(cl: str, px: str, qty: str) -> bytes:
    return json.dumps({"time": TS // 1000, "channel": "spot.order_place", "event": "api",
                       "payload": {"req_id": "n" + cl, "req_param": {"text": "t-" + cl, "currency_pair": "BTC_USDT",
                                   "type": "limit", "account": "spot", "side": "buy", "amount": qty, "price": px,
                                   "time_in_force": "gtc"}}}).encode()


@pytest.mark.benchmark(group="encode+sign binance")
def test_binance_ours(benchmark):
    gw = _gw(binance.BinanceGateway)
    benchmark(gw.encode_new, "Vc8abcdEF12", "BTCUSDT", 1, "60000.01", "0.00100", TimeInForce.GTC, TS)


@pytest.mark.benchmark(group="encode+sign binance")
def test_binance_baseline_dict_json_hmac(benchmark):
    benchmark(baseline_binance, "Vc8abcdEF12", "60000.01", "0.00100")


@pytest.mark.benchmark(group="encode+sign binance")
def test_bare_hmac_sha256_hexdigest(benchmark):
    payload = (b"apiKey=sim-key&newClientOrderId=Vc8abcdEF12&newOrderRespType=RESULT&price=60000.01&quantity=0.00100"
               b"&side=BUY&symbol=BTCUSDT&timeInForce=GTC&timestamp=1700000000000&type=LIMIT")
    benchmark(lambda: hmac.new(b"sim-secret", payload, hashlib.sha256).hexdigest())


@pytest.mark.benchmark(group="encode+sign okx")
def test_okx_ours(benchmark):
    gw = _gw(okx.OkxGateway)
    benchmark(gw.encode_new, "Vc8abcdEF12", "BTC-USDT", 1, "60000.1", "0.001", TimeInForce.GTC, TS)


@pytest.mark.benchmark(group="encode+sign okx")
def test_okx_baseline_dict_json(benchmark):
    benchmark(baseline_okx, "Vc8abcdEF12", "60000.1", "0.001")


@pytest.mark.benchmark(group="encode+sign gate")
def test_gate_ours(benchmark):
    gw = _gw(gate.GateGateway)
    benchmark(gw.encode_new, "Vc8abcdEF12", "BTC_USDT", 1, "60000.1", "0.001", TimeInForce.GTC, TS)


@pytest.mark.benchmark(group="encode+sign gate")
def test_gate_baseline_dict_json(benchmark):
    benchmark(baseline_gate, "Vc8abcdEF12", "60000.1", "0.001")


# ---------------------------------------------------------------- whole submit() hot path
class _NullTransport:
    def send(self, mt, data):
        pass

    def disconnect(self):
        pass


def _manager(venue: Exchange):
    ins = Instruments(["BTC-USDT"])
    ins.add(venue, "BTC-USDT", tick_size=0.01, lot_size=0.00001)
    om = mgr.OrderManager(CFG, ins)
    gw = mgr.gateway_class(venue)(CFG.venue(venue.key), ins, om, ["BTC-USDT"])
    if venue == Exchange.OKX:
        gw.codes["BTC-USDT"] = 10001
    gw.transport = _NullTransport()
    gw.connected = gw.authenticated = True
    st = mgr._VenueState(gw, TokenBucket(1e12, 1e12), TokenBucket(1e12, 1e12))
    st.ready = True
    om._venues[venue] = st
    return om


@pytest.mark.benchmark(group="submit() hot path")
@pytest.mark.parametrize("venue", list(Exchange), ids=lambda v: v.key)
def test_submit_new(benchmark, venue):
    om = _manager(venue)
    sym = Symbol("BTC", "USDT", venue)

    def one():
        om.submit(OrderRequest(1, sym, OrderSide.BUY, 0.001, 60000.0))

    benchmark(one)
    om.orders.clear()


_ = time
