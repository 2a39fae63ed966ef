"""Replay: the OMS decoders on order-entry frames published in the venues' docs (tests/data/<venue>/),
checked field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.enums import OrderState
from oms.state import Reason
from oms.venues import binance, gate, okx
from oms.venues.base import (
    U_ACK,
    U_CANCEL_ACK,
    U_IGNORE,
    U_LOGIN,
    U_ORDER,
    U_REJECT,
)

pytestmark = pytest.mark.replay
DATA = Path(__file__).parent / "data"
S = OrderState


def frame(venue: str, name: str) -> bytes:
    return (DATA / venue / name).read_bytes()


# ---------------------------------------------------------------- Binance
def test_binance_order_place_result():
    (u,) = binance.decode(frame("binance", "ws_order_place_result.json"))
    assert u.kind == U_ACK and u.state == S.NEW
    assert u.cl_ord_id == "4d96324ff9d44481926157ec08158a40" and u.venue_ord_id == "12569099453"
    assert u.vsym == "BTCUSDT" and u.cum_qty == 0.0 and u.ts_ms == 1660801715639


def test_binance_order_place_full_filled():
    (u,) = binance.decode(frame("binance", "ws_order_place_full_filled.json"))
    assert u.kind == U_ACK and u.state == S.FILLED
    assert u.cum_qty == pytest.approx(0.00847) and u.avg_px == pytest.approx(198.335215 / 0.00847)


def test_binance_order_cancel_result():
    (u,) = binance.decode(frame("binance", "ws_order_cancel_result.json"))
    assert u.kind == U_CANCEL_ACK and u.state == S.CANCELED
    assert u.cl_ord_id == "4d96324ff9d44481926157"  # the cancelled order, not the cancel's own id
    assert u.cum_qty == pytest.approx(0.00001)


def test_binance_error_our_request_id():
    raw = frame("binance", "ws_error_insufficient_balance.json").replace(
        b'"56374a46-3061-486b-a311-99ee972eb648"', b'"nAbC123"')
    (u,) = binance.decode(raw)
    assert u.kind == U_REJECT and u.cl_ord_id == "AbC123" and u.reason == Reason.INSUFFICIENT_BALANCE
    assert u.code == "-2010"


def test_binance_error_foreign_request_id():
    (u,) = binance.decode(frame("binance", "ws_error_insufficient_balance.json"))
    assert u.kind == U_REJECT and u.reason == Reason.INSUFFICIENT_BALANCE and u.cl_ord_id == ""


def test_binance_execution_report_raw_and_wrapped():
    raw = frame("binance", "execution_report_new.json")
    for data in (b'{"subscriptionId":0,"event":' + raw.strip() + b"}",):
        (u,) = binance.decode(data)
        assert u.kind == U_ORDER and u.state == S.NEW and u.cl_ord_id == "mUvoqJxFIILMdfAW5iGSOW"
        assert u.venue_ord_id == "4293153" and u.vsym == "ETHBTC" and u.side == 1
        assert u.qty == 1.0 and u.px == pytest.approx(0.1026441) and u.fill_qty == 0.0 and u.trade_id == ""


def test_binance_execution_report_trade():
    import orjson

    ev = orjson.loads(frame("binance", "execution_report_new.json"))
    ev.update({"x": "TRADE", "X": "PARTIALLY_FILLED", "l": "0.40000000", "L": "0.10264400", "z": "0.40000000",
               "Z": "0.04105760", "n": "0.00040000", "N": "ETH", "t": 123, "m": True})
    (u,) = binance.decode(orjson.dumps({"subscriptionId": 0, "event": ev}))
    assert u.state == S.PARTIALLY_FILLED and u.fill_qty == 0.4 and u.fill_px == pytest.approx(0.102644)
    assert u.trade_id == "123" and u.liquidity == 1 and u.fee_asset == "ETH" and u.cum_qty == 0.4


def test_binance_order_status_is_a_reconciliation_view():
    import orjson

    vo = binance.venue_order(orjson.loads(frame("binance", "ws_order_status_filled.json"))["result"])
    assert vo.state == S.FILLED and vo.cum_qty == pytest.approx(0.00847) and vo.side == -1
    assert vo.avg_px == pytest.approx(198.335215 / 0.00847)


# ---------------------------------------------------------------- OKX
def test_okx_order_ack():
    (u,) = okx.decode(frame("okx", "ws_order_ack.json"))
    assert u.kind == U_ACK and u.cl_ord_id == "gw000123" and u.venue_ord_id == "12345689" and u.state == S.NEW


def test_okx_order_reject():
    (u,) = okx.decode(frame("okx", "ws_order_reject_insufficient.json"))
    assert u.kind == U_REJECT and u.code == "51008" and u.reason == Reason.INSUFFICIENT_BALANCE
    assert u.cl_ord_id == "gw000123"


def test_okx_login():
    (ok,) = okx.decode(frame("okx", "ws_login_ok.json"))
    assert ok.kind == U_LOGIN and ok.ok
    (bad,) = okx.decode(frame("okx", "ws_login_error.json"))
    assert bad.kind == U_LOGIN and not bad.ok and bad.code == "60009" and bad.reason == Reason.AUTH


def test_okx_orders_push_fill():
    (u,) = okx.decode(frame("okx", "orders_push_filled.json"))
    assert u.kind == U_ORDER and u.state == S.FILLED and u.venue_ord_id == "452197707845865472"
    assert u.fill_qty == 0.001 and u.fill_px == 31527.1 and u.trade_id == "242589207"
    assert u.fee == pytest.approx(0.02522168) and u.fee_asset == "USDT" and u.liquidity == 1
    assert u.cum_qty == 0.001 and u.avg_px == 31527.1 and u.ts_ms == 1654084353263 and u.side == -1


def test_okx_pong_and_foreign_channels():
    assert okx.decode(b"pong")[0].kind != U_ORDER
    assert okx.decode(frame("okx", "bbo_tbt.json"))[0].kind == U_IGNORE


# ---------------------------------------------------------------- Gate
def test_gate_orders_put():
    (u,) = gate.decode(frame("gate", "spot_orders_put.json"))
    assert u.kind == U_ORDER and u.state == S.NEW and u.cl_ord_id == "abc" and u.venue_ord_id == "30784435"
    assert u.vsym == "BTC_USDT" and u.side == -1 and u.qty == 1.0 and u.px == 10001.0 and u.cum_qty == 0.0


def test_gate_usertrades():
    (u,) = gate.decode(frame("gate", "spot_usertrades.json"))
    assert u.kind == U_ORDER and u.trade_id == "5736713" and u.venue_ord_id == "30784428"
    assert u.fill_qty == 1.0 and u.fill_px == 10000.0 and u.fee == pytest.approx(0.002) and u.liquidity == 2
    assert u.cl_ord_id == "apiv4"  # Gate's default text: not one of ours (no t- prefix)


def test_gate_order_place_ack_then_result():
    assert gate.decode(frame("gate", "ws_order_place_ack.json"))[0].kind == U_IGNORE
    (u,) = gate.decode(frame("gate", "ws_order_place_result.json"))
    assert u.kind == U_ACK and u.state == S.NEW and u.cl_ord_id == "my-custom-id" and u.venue_ord_id == "1700664330"
    assert u.vsym == "GT_USDT" and u.cum_qty == 0.0


def test_gate_login_error():
    (u,) = gate.decode(frame("gate", "ws_login_error.json"))
    assert u.kind == U_LOGIN and not u.ok and u.reason == Reason.AUTH


def test_gate_pong():
    assert gate.decode(frame("gate", "pong.json"))[0].kind != U_ORDER
