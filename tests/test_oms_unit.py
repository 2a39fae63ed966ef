"""OMS unit tests: state machine, client ids, positions, token buckets, signing vectors,
encoders (templates vs. the documented parameter rules) and error-code mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json

import pytest

from common.config import load
from common.enums import Exchange, OrderSide, OrderState, TimeInForce
from common.instruments import Instruments
from oms import manager as mgr
from oms.ids import ClOrdIdGen, base62, from_wire, to_wire, valid_client_id
from oms.positions import Position
from oms.ratelimit import TokenBucket
from oms.state import LEGAL, EventKind, Order, Reason, is_legal
from oms.venues import binance, gate, okx
from oms.venues.base import (
    OP_CANCEL_ALL,
    U_ACK,
    U_CANCEL_ACK,
    U_CANCEL_ALL_ACK,
    U_CANCEL_REJECT,
    U_ORDER,
    U_REJECT,
    Update,
)

pytestmark = pytest.mark.unit
S = OrderState

# ---------------------------------------------------------------- state machine
EXPECTED_LEGAL = {
    S.PENDING_NEW: {S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED, S.EXPIRED, S.UNKNOWN,
                    S.PENDING_CANCEL},
    S.NEW: {S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.PENDING_AMEND, S.CANCELED, S.EXPIRED, S.UNKNOWN},
    S.PARTIALLY_FILLED: {S.FILLED, S.PENDING_CANCEL, S.PENDING_AMEND, S.CANCELED, S.EXPIRED, S.UNKNOWN},
    S.PENDING_CANCEL: {S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED, S.UNKNOWN},
    S.PENDING_AMEND: {S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, S.UNKNOWN},
    S.UNKNOWN: {S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.PENDING_CANCEL},
    S.FILLED: set(), S.CANCELED: set(), S.REJECTED: set(), S.EXPIRED: set(),
}


@pytest.mark.parametrize("frm,to", list(itertools.product(list(S), list(S))))
def test_every_transition(frm, to):
    expected = frm == to or to in EXPECTED_LEGAL[frm]
    assert is_legal(frm, to) == expected


def test_table_covers_every_state():
    assert set(LEGAL) == set(S)
    for frm, tos in LEGAL.items():
        assert tos == EXPECTED_LEGAL[frm], frm
    for t in (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED):
        assert t.is_terminal and not LEGAL[t]
    # a transport failure is never a reject: UNKNOWN is reachable from every in-flight state
    for frm in (S.PENDING_NEW, S.PENDING_CANCEL, S.PENDING_AMEND):
        assert is_legal(frm, S.UNKNOWN)
    assert not is_legal(S.NEW, S.REJECTED)


class _Sink:
    def on_update(self, gw, u):
        pass

    def known_state(self, cl, st):
        return False

    def on_gateway_down(self, gw, reason, was):
        pass


_GATEWAYS = {Exchange.BINANCE: binance.BinanceGateway, Exchange.OKX: okx.OkxGateway, Exchange.GATE: gate.GateGateway}


def _manager(venue=Exchange.BINANCE, tick=0.01, ready=False):
    cfg = load(text="")
    ins = Instruments(["BTC-USDT"])
    ins.add(venue, "BTC-USDT", tick_size=tick, lot_size=0.00001)
    om = mgr.OrderManager(cfg, ins)
    gw = _GATEWAYS[venue](cfg.venue(venue.key), ins, om, ["BTC-USDT"])
    st = mgr._VenueState(gw, TokenBucket(1000, 1000), TokenBucket(1000, 1000))
    st.ready = ready
    om._venues[venue] = st
    return om, gw


def _capture(gw) -> list[dict]:
    """Give the gateway a transport whose socket writes are parsed back into the JSON messages
    they carry (one per WebSocket frame, zero-masked as the gateway writes them)."""
    frames: list[dict] = []

    class Under:
        def write(self, b):
            buf = bytes(b)
            while buf:
                n, off = buf[1] & 0x7F, 2
                if n == 126:
                    n, off = int.from_bytes(buf[2:4], "big"), 4
                frames.append(json.loads(buf[off + 4:off + 4 + n]))
                buf = buf[off + 4 + n:]

    class T:
        underlying_transport = Under()

        def send(self, mt, data):
            frames.append(json.loads(data))

    gw.transport = T()
    return frames


def _order(om, cl="abc", qty=1.0):
    o = Order(cl, Exchange.BINANCE, 1, "BTC-USDT", OrderSide.BUY, 100.0, qty)
    om.orders[cl] = o
    return o


def test_illegal_transition_is_counted_not_applied():
    om, gw = _manager()
    o = _order(om)
    events = []
    om.add_listener(events.append)
    assert om._set_state(o, S.NEW, EventKind.ACK)
    assert om._set_state(o, S.CANCELED, EventKind.CANCELED)
    assert not om._set_state(o, S.NEW, EventKind.ACK)  # terminal -> NEW: illegal
    assert o.state == S.CANCELED and om.n["illegal"] == 1
    assert [e.kind for e in events] == [EventKind.ACK, EventKind.CANCELED]
    assert o.event_seq == 2


def test_late_fill_after_cancel_is_applied():
    om, gw = _manager()
    o = _order(om, qty=2.0)
    om._set_state(o, S.NEW, EventKind.ACK)
    om._set_state(o, S.CANCELED, EventKind.CANCELED)
    om.on_update(gw, Update(U_ORDER, cl_ord_id="abc", fill_qty=0.5, fill_px=101.0, trade_id="t1"))
    assert o.state == S.CANCELED and o.filled_qty == 0.5 and om.n["late_fills"] == 1
    assert om.positions.get(Exchange.BINANCE, 1).qty == 0.5
    # the same trade again is not double counted
    om.on_update(gw, Update(U_ORDER, cl_ord_id="abc", fill_qty=0.5, fill_px=101.0, trade_id="t1"))
    assert o.filled_qty == 0.5 and om.n["duplicate_fills"] == 1


def test_transport_failure_makes_in_flight_unknown_not_rejected():
    om, gw = _manager()
    om.reconnect = False
    a, b, c = _order(om, "a"), _order(om, "b"), _order(om, "c")
    om._set_state(b, S.NEW, EventKind.ACK)
    om._set_state(c, S.NEW, EventKind.ACK)
    om._set_state(c, S.PENDING_CANCEL, EventKind.PENDING)
    om.on_gateway_down(gw, "connection lost", True)
    assert a.state == S.UNKNOWN and a.reason == Reason.TRANSPORT
    assert b.state == S.NEW  # acked and resting: unaffected
    assert c.state == S.UNKNOWN
    assert not om.venue_ready(Exchange.BINANCE)


def test_ack_reject_and_cancel_reject_paths():
    om, gw = _manager()
    o = _order(om, "x1")
    o.sent_ns = 1
    om.on_update(gw, Update(U_ACK, cl_ord_id="x1", venue_ord_id="9", state=S.NEW))
    assert o.state == S.NEW and o.venue_ord_id == "9" and om.n["acks"] == 1
    om._set_state(o, S.PENDING_CANCEL, EventKind.PENDING)
    om.on_update(gw, Update(U_CANCEL_REJECT, cl_ord_id="x1", reason=Reason.RATE_LIMIT, ok=False))
    assert o.state == S.NEW  # the cancel failed: back to what it was
    r = _order(om, "x2")
    om.on_update(gw, Update(U_REJECT, cl_ord_id="x2", reason=Reason.POST_ONLY_CROSS, ok=False))
    assert r.state == S.REJECTED and r.reason == Reason.POST_ONLY_CROSS
    assert om.rejects_by_reason["POST_ONLY_CROSS"] == 1


def test_submit_refuses_when_venue_down_and_says_why():
    om, gw = _manager()
    from strategy.orders import OrderRequest, Symbol

    req = OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange.BINANCE), OrderSide.BUY, 0.01, 100.0)
    assert om.submit(req) == ""
    assert "binance" in om.last_reject_reason and "not connected" in om.last_reject_reason
    om._venues[Exchange.BINANCE].reconciling = True
    assert om.submit(req) == "" and "reconciling" in om.last_reject_reason


def test_credentials_never_in_repr():
    cfg = load(text="")
    gw = okx.OkxGateway(cfg.venue("okx"), Instruments(), _Sink())
    text = repr(gw) + repr(gw.__dict__.get("reason"))
    assert "sim-secret" not in text and "sim-pass" not in text


# ---------------------------------------------------------------- client ids
def test_client_ids_valid_everywhere_and_unique_across_restarts():
    a = ClOrdIdGen(epoch_ms=1_700_000_000_000, salt=1)
    b = ClOrdIdGen(epoch_ms=1_700_000_000_001, salt=1)  # a restart one ms later
    ids = {a.next() for _ in range(10_000)} | {b.next() for _ in range(10_000)}
    assert len(ids) == 20_000
    for cl in list(ids)[:2000] + [ClOrdIdGen().next()]:
        for v in Exchange:
            assert valid_client_id(v, to_wire(v, cl)), (v, cl)
        assert from_wire(Exchange.GATE, to_wire(Exchange.GATE, cl)) == cl
    big = ClOrdIdGen(epoch_ms=2**41)
    big._n = 62**10
    assert len(big.next()) <= 28


@pytest.mark.parametrize("venue,wire,ok", [
    (Exchange.OKX, "abc123", True), (Exchange.OKX, "a-b", False), (Exchange.OKX, "a_b", False),
    (Exchange.OKX, "x" * 32, True), (Exchange.OKX, "x" * 33, False), (Exchange.OKX, "", False),
    (Exchange.BINANCE, "a-b_c", True), (Exchange.BINANCE, "x" * 36, True), (Exchange.BINANCE, "x" * 37, False),
    (Exchange.BINANCE, "a.b", False), (Exchange.GATE, "t-abc", True), (Exchange.GATE, "abc", False),
    (Exchange.GATE, "t-" + "x" * 28, True), (Exchange.GATE, "t-" + "x" * 29, False), (Exchange.GATE, "t-a.b_c-d", True),
    (Exchange.GATE, "t-a b", False),
])
def test_client_id_rules(venue, wire, ok):
    assert valid_client_id(venue, wire) == ok


def test_base62():
    assert base62(0) == "0" and base62(61) == "z" and base62(62) == "10" and base62(5, 3) == "005"


# ---------------------------------------------------------------- positions
def test_position_average_price_realized_and_unrealized():
    p = Position(1, 1)
    p.apply_fill(1, 1.0, 100.0, fee_quote=0.1)
    p.apply_fill(1, 1.0, 110.0)
    assert p.qty == 2.0 and p.avg_px == pytest.approx(105.0)
    r = p.apply_fill(-1, 0.5, 120.0)
    assert r == pytest.approx(7.5) and p.qty == 1.5 and p.avg_px == pytest.approx(105.0)
    assert p.unrealized_pnl(100.0) == pytest.approx(-7.5)
    r = p.apply_fill(-1, 2.5, 90.0)  # closes 1.5 (loss 22.5), opens 1.0 short at 90
    assert r == pytest.approx(-22.5) and p.qty == pytest.approx(-1.0) and p.avg_px == 90.0
    assert p.unrealized_pnl(80.0) == pytest.approx(10.0)
    assert p.realized_pnl == pytest.approx(-15.0) and p.fees == pytest.approx(0.1)
    p.apply_fill(1, 1.0, 95.0)
    assert p.qty == 0.0 and p.avg_px == 0.0 and p.realized_pnl == pytest.approx(-20.0)


# ---------------------------------------------------------------- token bucket
def test_token_bucket_and_backoff():
    b = TokenBucket(rate=10.0, burst=5)
    t = b.last_ns
    assert all(b.try_acquire(t) for _ in range(5))
    assert not b.try_acquire(t)
    assert b.try_acquire(t + 100_000_000)  # 0.1 s later: one token back
    wait = b.on_rate_limited(t + 100_000_000)
    assert wait > 0 and not b.try_acquire(t + 100_000_000 + int(wait * 1e9) - 1)
    assert b.try_acquire(t + 100_000_000 + int(wait * 1e9) + 200_000_000)
    assert b.on_rate_limited(t + 10**9) > wait or wait == 5.0  # exponential
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


# ---------------------------------------------------------------- signing vectors
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"


@pytest.mark.parametrize("payload,expected", [
    ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"),
    ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1"
     "&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"),
    (f"apiKey={BINANCE_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT"
     "&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
     "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"),
])
def test_binance_sign_vectors(payload, expected):
    assert binance.sign(BINANCE_SECRET, payload) == expected


def test_binance_ws_payload_sorting_and_logon_vector():
    params = {"apiKey": BINANCE_KEY, "timestamp": 1649729878532, "signature": "x"}
    assert binance.sign(BINANCE_SECRET, binance.ws_payload(params)) == \
        "1cf54395b336b0a9727ef27d5d98987962bc47aca6e13fe978612d0adee066ed"
    non_ascii = {"symbol": "１２３４５６", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1.00000000",
                 "price": "0.10000000", "recvWindow": 5000, "timestamp": 1645423376532, "apiKey": BINANCE_KEY}
    assert binance.sign(BINANCE_SECRET, binance.ws_payload(non_ascii)) == \
        "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"


def test_binance_order_place_and_cancel_doc_signatures():
    place = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "23416.10000000",
             "quantity": "0.00847000", "apiKey": BINANCE_KEY, "timestamp": 1660801715431}
    assert binance.sign(BINANCE_SECRET, binance.ws_payload(place)).startswith("15af09e4")
    cancel = {"symbol": "BTCUSDT", "origClientOrderId": "4d96324ff9d44481926157", "apiKey": BINANCE_KEY,
              "timestamp": 1660801715830}
    assert binance.sign(BINANCE_SECRET, binance.ws_payload(cancel)).endswith("5282")


def test_okx_sign_illustrations():
    s = "22582BD0CFF14C41EDBF1AB98506286D"
    assert okx.sign(s, okx.login_payload("1538054050")) == "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M="
    assert okx.sign(s, "2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC") == \
        "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY="
    assert okx.iso_ms(1607418537715) == "2020-12-08T09:08:57.715Z"


def test_gate_sign_vectors():
    get = gate.rest_payload("GET", "/api/v4/futures/orders", "contract=BTC_USD&status=finished&limit=50", b"",
                            "1541993715")
    assert gate.sign("secret", get) == ("55f84ea195d6fe57ce62464daaa7c3c02fa9d1dde954e4c898289c9a2407a3d6fb3faf24deff1"
                                        "6790d726b66ac9f74526668b13bd01029199cc4fcc522418b8a")
    body = b'{"contract":"BTC_USD","type":"limit","size":100,"price":6800,"time_in_force":"gtc"}'
    post = gate.rest_payload("POST", "/api/v4/futures/orders", "", body, "1541993715")
    assert gate.sign("secret", post) == ("eae42da914a590ddf727473aff25fc87d50b64783941061f47a3fdb92742541fc4c2c14017"
                                         "581b4199a1418d54471c269c03a38d788d802e2c306c37636389f0")
    assert gate.sign("secret", gate.channel_payload("spot.orders", "subscribe", 1611541000)).startswith("833a44bb")
    assert gate.sign("secret", gate.ws_api_payload("api", "spot.login", "", "1681984544")).startswith("3e133322")


# ---------------------------------------------------------------- encoders
def _cfg_gw(cls, **kw):
    cfg = load(text="")
    return cls(cfg.venue(cls.venue.key), Instruments(), _Sink(), ["BTC-USDT"])


@pytest.mark.parametrize("tif", [TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY])
def test_binance_new_order_template_is_signed_like_the_docs(tif):
    gw = _cfg_gw(binance.BinanceGateway)
    m = json.loads(gw.encode_new("abc123", "BTCUSDT", -1, "23416.10", "0.00847", tif, 1660801715431))
    p = m["params"]
    assert m["id"] == "nabc123" and m["method"] == "order.place"
    assert p["newClientOrderId"] == "abc123" and p["side"] == "SELL" and p["apiKey"] == "sim-key"
    if tif == TimeInForce.POST_ONLY:
        assert p["type"] == "LIMIT_MAKER" and "timeInForce" not in p
    else:
        assert p["type"] == "LIMIT" and p["timeInForce"] == tif.name
    # the signature is HMAC over the sorted params, exactly what the venue recomputes
    assert p["signature"] == binance.sign("sim-secret", binance.ws_payload(p))


def test_binance_cancel_amend_cancel_all_are_signed():
    gw = _cfg_gw(binance.BinanceGateway)
    for raw in (gw.encode_cancel("abc", "BTCUSDT", "", 1), gw.encode_cancel_all("BTCUSDT", 2),
                gw.encode_amend("abc", "BTCUSDT", "", 1, "0.5", "", TimeInForce.GTC, "", 3),
                gw.encode_amend("abc", "BTCUSDT", "", 1, "0.5", "101.00", TimeInForce.POST_ONLY, "def", 4)):
        p = json.loads(raw)["params"]
        assert p["signature"] == binance.sign("sim-secret", binance.ws_payload(p))
    m = json.loads(gw.encode_amend("abc", "BTCUSDT", "", 1, "0.5", "101.00", TimeInForce.GTC, "def", 4))
    assert m["method"] == "order.cancelReplace" and m["params"]["newClientOrderId"] == "def"
    assert m["params"]["cancelReplaceMode"] == "STOP_ON_FAILURE"


def test_okx_templates():
    gw = _cfg_gw(okx.OkxGateway)
    gw.codes["BTC-USDT"] = 123456
    m = json.loads(gw.encode_new("gw000123", "BTC-USDT", 1, "30000.1", "0.01", TimeInForce.POST_ONLY, 0))
    assert m == {"id": "ngw000123", "op": "order", "args": [{"instIdCode": 123456, "instId": "BTC-USDT",
                 "tdMode": "cash", "side": "buy", "ordType": "post_only", "px": "30000.1", "sz": "0.01",
                 "clOrdId": "gw000123"}]}
    c = json.loads(gw.encode_cancel("gw000123", "BTC-USDT", "", 0))
    assert c["op"] == "cancel-order" and c["args"][0]["clOrdId"] == "gw000123"
    a = json.loads(gw.encode_amend("gw000123", "BTC-USDT", "", 1, "0.02", "", TimeInForce.GTC, "", 0))
    assert a["op"] == "amend-order" and a["args"][0]["newSz"] == "0.02" and "newPx" not in a["args"][0]
    rid, data = gw.encode_batch_cancel([(f"id{i}", "BTC-USDT") for i in range(25)])
    b = json.loads(data)
    assert b["op"] == "batch-cancel-orders" and len(b["args"]) == 20 and b["id"] == rid and rid[0] == OP_CANCEL_ALL
    assert b["args"][3] == {"instIdCode": 123456, "instId": "BTC-USDT", "clOrdId": "id3"}


def test_gate_templates():
    gw = _cfg_gw(gate.GateGateway)
    m = json.loads(gw.encode_new("abc", "BTC_USDT", -1, "1.5", "2", TimeInForce.POST_ONLY, 1681986203000))
    assert m["channel"] == "spot.order_place" and m["event"] == "api" and m["time"] == 1681986203
    rp = m["payload"]["req_param"]
    assert rp == {"text": "t-abc", "currency_pair": "BTC_USDT", "type": "limit", "account": "spot", "side": "sell",
                  "amount": "2", "price": "1.5", "time_in_force": "poc"}
    c = json.loads(gw.encode_cancel("abc", "BTC_USDT", "", 1681986203000))
    assert c["payload"]["req_param"] == {"order_id": "t-abc", "currency_pair": "BTC_USDT"}
    x = json.loads(gw.encode_cancel_all("BTC_USDT", 1681986203000))
    assert x["channel"] == "spot.order_cancel_cp"


def test_hmac_key_prepared_once_matches_fresh_hmac():
    gw = _cfg_gw(okx.OkxGateway)
    assert gw._sig("abc") == base64.b64encode(hmac.new(b"sim-secret", b"abc", hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------- error codes
@pytest.mark.parametrize("code,msg,status,reason", [
    (-1022, "Signature for this request is not valid.", 400, Reason.BAD_SIGNATURE),
    (-1021, "Timestamp for this request is outside of the recvWindow.", 400, Reason.TIMESTAMP),
    (-2010, "Account has insufficient balance for requested action.", 400, Reason.INSUFFICIENT_BALANCE),
    (-2010, "Order would immediately match and take.", 400, Reason.POST_ONLY_CROSS),
    (-1015, "Too many new orders; current limit is 50 orders per 10 SECOND.", 429, Reason.RATE_LIMIT),
    (-1003, "Too much request weight used", 429, Reason.RATE_LIMIT),
    (-2013, "Order does not exist.", 400, Reason.UNKNOWN_ORDER),
    (-2011, "Unknown order sent.", 400, Reason.UNKNOWN_ORDER),
    (-1013, "Filter failure: PRICE_FILTER", 400, Reason.INVALID_TICK_LOT),
    (-1013, "Filter failure: LOT_SIZE", 400, Reason.INVALID_TICK_LOT),
    (-1013, "Filter failure: NOTIONAL", 400, Reason.MIN_NOTIONAL),
    (-2015, "Invalid API-key, IP, or permissions for action.", 401, Reason.AUTH),
    (-1007, "Timeout waiting for response from backend server. Send status unknown.", 408, Reason.VENUE_ERROR),
    (-2010, "Duplicate order sent.", 400, Reason.DUPLICATE_ID),
])
def test_binance_error_reason(code, msg, status, reason):
    assert binance.error_reason(code, msg, status) == reason


@pytest.mark.parametrize("code,msg,reason", [
    ("60007", "", Reason.BAD_SIGNATURE), ("50113", "", Reason.BAD_SIGNATURE), ("60006", "", Reason.TIMESTAMP),
    ("50102", "", Reason.TIMESTAMP), ("51008", "Order failed. Insufficient USDT balance in account",
                                      Reason.INSUFFICIENT_BALANCE),
    ("50011", "", Reason.RATE_LIMIT), ("50061", "", Reason.RATE_LIMIT), ("51603", "", Reason.UNKNOWN_ORDER),
    ("51400", "", Reason.UNKNOWN_ORDER), ("51121", "", Reason.INVALID_TICK_LOT), ("60024", "", Reason.AUTH),
    ("51016", "", Reason.DUPLICATE_ID),
])
def test_okx_error_reason(code, msg, reason):
    assert okx.error_reason(code, msg) == reason


@pytest.mark.parametrize("label,status,reason", [
    ("INVALID_SIGNATURE", 401, Reason.BAD_SIGNATURE), ("REQUEST_EXPIRED", 400, Reason.TIMESTAMP),
    ("BALANCE_NOT_ENOUGH", 400, Reason.INSUFFICIENT_BALANCE), ("POC_FILL_IMMEDIATELY", 400, Reason.POST_ONLY_CROSS),
    ("TOO_MANY_REQUESTS", 429, Reason.RATE_LIMIT), ("", 429, Reason.RATE_LIMIT),
    ("ORDER_NOT_FOUND", 404, Reason.UNKNOWN_ORDER), ("INVALID_PRECISION", 400, Reason.INVALID_TICK_LOT),
    ("INVALID_KEY", 401, Reason.AUTH), ("SERVER_ERROR", 500, Reason.VENUE_ERROR),
])
def test_gate_error_reason(label, status, reason):
    assert gate.error_reason(label, status) == reason


def test_post_only_reject_normalised_on_all_venues():
    b = binance.decode(b'{"id":"nabc","status":400,"error":{"code":-2010,"msg":"Order would immediately match and take."}}')
    assert b[0].kind == U_REJECT and b[0].reason == Reason.POST_ONLY_CROSS and b[0].cl_ord_id == "abc"
    o = okx.decode_order_push({"clOrdId": "abc", "state": "canceled", "cancelSource": "31", "ordType": "post_only"})
    assert o.state == S.CANCELED and o.reason == Reason.POST_ONLY_CROSS
    g = gate.order_update(U_ACK, {"text": "t-abc", "status": "cancelled", "finish_as": "poc", "amount": "1",
                                  "left": "1"})
    assert g.state == S.CANCELED and g.reason == Reason.POST_ONLY_CROSS and g.cl_ord_id == "abc"


def test_malformed_frames_raise_for_the_gateway_to_count():
    for dec in (binance.decode, okx.decode, gate.decode):
        with pytest.raises(ValueError):  # orjson.JSONDecodeError is a ValueError
            dec(b"{not json")
        with pytest.raises(ValueError):
            dec(b"[1,2]")


def test_terminal_orders_are_purged_after_retention_and_index_by_venue_id():
    om, gw = _manager()
    om.retain_terminal_s = 0.0
    o = _order(om, "p1")
    om.on_update(gw, Update(U_ACK, cl_ord_id="p1", venue_ord_id="77", state=S.NEW))
    assert om._by_venue_id(Exchange.BINANCE, "77") is o
    # a push that names only the venue order id still finds the order
    om.on_update(gw, Update(U_ORDER, venue_ord_id="77", state=S.CANCELED))
    assert o.state == S.CANCELED
    import time as _t

    assert om._purge_terminal(_t.monotonic_ns() + 1) == 1
    assert om.order("p1") is None and om._by_venue_id(Exchange.BINANCE, "77") is None


def test_terminal_orders_beyond_the_cap_are_purged_oldest_first():
    om, gw = _manager()
    om.max_terminal_orders = 2
    for i in range(4):
        _order(om, f"c{i}")
        om.on_update(gw, Update(U_ACK, cl_ord_id=f"c{i}", venue_ord_id=f"9{i}", state=S.NEW))
        om.on_update(gw, Update(U_ORDER, cl_ord_id=f"c{i}", state=S.CANCELED))
    _order(om, "live")
    om.on_update(gw, Update(U_ACK, cl_ord_id="live", venue_ord_id="99", state=S.NEW))
    import time as _t

    assert om._purge_terminal(_t.monotonic_ns()) == 2  # young, but over the cap
    assert [om.order(f"c{i}") is None for i in range(4)] == [True, True, False, False]
    assert om.order("live") is not None  # open orders are never purged


def test_send_failure_makes_the_order_unknown():
    om, gw = _manager()
    from strategy.orders import OrderRequest, Symbol

    class Broken:
        def send(self, *a):
            raise RuntimeError("closing")

    gw.transport = Broken()
    gw.connected = gw.authenticated = True
    om._venues[Exchange.BINANCE].ready = True
    cl = om.submit(OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange.BINANCE), OrderSide.BUY, 0.01, 100.0))
    assert cl and om.order(cl).state == S.UNKNOWN and om.order(cl).reason == Reason.TRANSPORT


def test_bad_rate_limit_config_is_a_one_line_config_error():
    import asyncio

    from common.config import ConfigError

    cfg = load(text="[exchanges.binance]\napi_key = 'k'\nsecret_key = 's'\norder_rate = -5\n")
    om = mgr.OrderManager(cfg, Instruments(["BTC-USDT"]))
    with pytest.raises(ConfigError, match="order_rate"):
        asyncio.run(om.start([Exchange.BINANCE]))


def test_connection_rotated_before_the_venue_lifetime_cap():
    import asyncio

    om, gw = _manager()
    dropped = []

    class T:
        def disconnect(self):
            dropped.append(1)

    import time as _t

    gw.transport = T()
    assert type(gw).max_age_s == 23.5 * 3600
    gw.connected_ns = _t.monotonic_ns()
    assert not gw.too_old()
    gw.max_age_s = 1.0
    gw.connected_ns = _t.monotonic_ns() - 5_000_000_000  # connected 5 s ago, cap 1 s
    assert gw.too_old()
    asyncio.run(gw.keepalive_tick())
    assert dropped and "lifetime" in gw.close_reason


def test_requests_sent_while_a_read_is_handled_leave_in_one_write():
    om, gw = _manager()
    writes, sends = [], []

    class Under:
        def write(self, b):
            writes.append(bytes(b))

    class T:
        underlying_transport = Under()

        def send(self, mt, data):
            sends.append(data)

    gw.transport = T()
    msgs = [b"a" * 5, b"b" * 200, b"c" * 70000]
    gw._corked = True
    for m in msgs:
        assert gw.send(m)
    gw._corked = False
    assert not writes and not sends
    gw.flush()
    assert len(writes) == 1 and not sends
    buf, out = writes[0], []
    while buf:  # parse the frames back: FIN+TEXT, masked with a zero key
        assert buf[0] == 0x81 and buf[1] & 0x80
        n, off = buf[1] & 0x7F, 2
        if n == 126:
            n, off = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, off = int.from_bytes(buf[2:10], "big"), 10
        assert buf[off:off + 4] == b"\0\0\0\0"
        out.append(buf[off + 4:off + 4 + n])
        buf = buf[off + 4 + n:]
    assert out == msgs
    gw.send(b"solo")  # not corked: straight to the transport
    assert sends == [b"solo"]


def test_an_update_the_manager_cannot_apply_is_counted_not_raised():
    class Boom(_Sink):
        def on_update(self, gw, u):
            raise KeyError("bug")

    cfg = load(text="")
    gw = okx.OkxGateway(cfg.venue("okx"), Instruments(), Boom())
    gw.on_frame(b'{"id":"nabc","op":"order","code":"0","msg":"","data":[{"ordId":"1","clOrdId":"abc","sCode":"0"}]}')
    gw.on_frame(b"{not json")
    assert gw.bad_frames == 2 and gw.frames_in == 2


@pytest.mark.parametrize("venue", [Exchange.BINANCE, Exchange.OKX, Exchange.GATE], ids=lambda v: v.key)
def test_redundant_pushes_skipped_before_parsing_change_nothing(venue):
    """Frames the simulator sends for one IOC order: with the pre-parse filter on and off, the
    order ends in the same state with the same events; only repeats are skipped."""
    from benches.bench_oms import ANSWER_FRAMES
    from benches.bench_oms import _manager as bench_manager

    results = []
    for use_filter in (True, False):
        om = bench_manager(venue)
        gw = om._venues[venue].gw
        if not use_filter:
            gw.redundant = lambda data: False
        events = []
        om.add_listener(lambda e, events=events: events.append((e.kind, e.order.state)))
        o = Order("Vc8test0001", venue, 1, "BTC-USDT", OrderSide.BUY, 48000.0, 0.001)
        o.sent_ns = 1
        om.orders[o.cl_ord_id] = o
        for f in ANSWER_FRAMES[venue.key]:
            gw.on_frame(f.replace("{cl}", o.cl_ord_id).encode())
        results.append((o.state, o.reason, o.venue_ord_id, o.event_seq, events, gw.redundant_frames))
    on, off = results
    assert on[:5] == off[:5] and on[0].is_terminal
    if venue != Exchange.GATE:
        assert on[5] >= 1 and off[5] == 0
    # a push with a trade is never skipped
    om, gw = _manager()
    o = _order(om, "f1", qty=1.0)
    om.on_update(gw, Update(U_ACK, cl_ord_id="f1", venue_ord_id="5", state=S.NEW))
    trade = (b'{"subscriptionId":0,"event":{"e":"executionReport","E":1,"s":"BTCUSDT","c":"f1","S":"BUY",'
             b'"o":"LIMIT","f":"GTC","q":"1","p":"100","C":"","x":"TRADE","X":"PARTIALLY_FILLED","i":5,'
             b'"l":"0.5","z":"0.5","L":"100","n":"0","N":"USDT","T":1,"t":9,"m":true,"Z":"50"}}')
    assert not gw.redundant(trade)
    gw.on_frame(trade)
    assert o.filled_qty == 0.5 and o.state == S.PARTIALLY_FILLED


def test_okx_batch_orders_template():
    gw = _cfg_gw(okx.OkxGateway)
    gw.codes["BTC-USDT"] = 7
    items = [(f"id{i}", "BTC-USDT", 1 if i % 2 else -1, "100.1", "0.5", TimeInForce.POST_ONLY) for i in range(25)]
    rid, data = gw.encode_batch_new(items)
    m = json.loads(data)
    assert m["op"] == "batch-orders" and m["id"] == rid == "bid0" and len(m["args"]) == 20
    assert m["args"][1] == {"instIdCode": 7, "instId": "BTC-USDT", "tdMode": "cash", "side": "buy",
                            "ordType": "post_only", "px": "100.1", "sz": "0.5", "clOrdId": "id1"}
    (u,) = okx.decode(b'{"id":"bid0","op":"batch-orders","code":"50011","msg":"Rate limit reached","data":[]}')
    assert u.kind == U_REJECT and u.cl_ord_id == "" and u.req_id == "bid0" and u.reason == Reason.RATE_LIMIT
    # coalesced cancels refused as a whole: one cancel reject without an id (the gateway names each order)
    (u,) = okx.decode(b'{"id":"y7","op":"batch-cancel-orders","code":"50011","msg":"Rate limit reached","data":[]}')
    assert u.kind == U_CANCEL_REJECT and u.cl_ord_id == "" and u.req_id == "y7" and u.reason == Reason.RATE_LIMIT
    # cancel_all's batch still reports as cancel-all
    us = okx.decode(b'{"id":"x3","op":"batch-cancel-orders","code":"0","msg":"","data":[{"clOrdId":"a","ordId":"1",'
                    b'"sCode":"0","sMsg":""}]}')
    assert [u.kind for u in us] == [U_CANCEL_ACK, U_CANCEL_ALL_ACK] and us[0].cl_ord_id == "a"


def _okx_manager():
    """A manager with a ready OKX gateway whose socket writes are captured."""
    om, gw = _manager(Exchange.OKX, tick=0.1, ready=True)
    gw.codes["BTC-USDT"] = 7
    return om, gw, _capture(gw)


def _okx_new(px=100.0):
    from strategy.orders import OrderRequest, Symbol

    return OrderRequest.new_limit(Symbol("BTC", "USDT", Exchange.OKX), OrderSide.BUY, 0.01, px, post_only=True)


def test_a_corked_burst_leaves_as_batch_requests_in_submission_order():
    from strategy.orders import OrderRequest, Symbol

    om, gw, frames = _okx_manager()
    resting = [om.submit(_okx_new(90.0 + i)) for i in range(2)]  # not corked: plain requests at once
    assert [f["op"] for f in frames] == ["order", "order"]
    frames.clear()
    cls = om.submit_many([_okx_new(100.0 + i) for i in range(23)]
                         + [OrderRequest.cancel(Symbol("BTC", "USDT", Exchange.OKX), c) for c in resting]
                         + [_okx_new(50.0)])
    assert all(cls) and len(set(cls)) == 26
    # 23 new -> batches of 20 and 3; 2 cancels -> one batch; the last new alone -> a plain order
    assert [(f["op"], len(f["args"])) for f in frames] == [("batch-orders", 20), ("batch-orders", 3),
                                                          ("batch-cancel-orders", 2), ("order", 1)]
    assert [a["clOrdId"] for f in frames[:2] for a in f["args"]] == cls[:23]
    assert [a["clOrdId"] for a in frames[2]["args"]] == resting and frames[3]["args"][0]["clOrdId"] == cls[-1]
    assert frames[0]["args"][5]["px"] == "105.0" and frames[0]["args"][5]["ordType"] == "post_only"
    assert gw.batched_requests == 25
    assert all(om.order(c).state == S.PENDING_NEW for c in cls[:23] + cls[-1:])
    assert all(om.order(c).state == S.PENDING_CANCEL for c in resting)


def test_gate_cancels_of_a_corked_burst_leave_as_one_cancel_ids_request():
    from strategy.orders import OrderRequest, Symbol

    om, gw = _manager(Exchange.GATE, tick=0.1, ready=True)
    resolving = []
    om._spawn = lambda coro: (resolving.append(coro.__name__), coro.close())  # no loop here: note, don't run
    frames = _capture(gw)
    sym = Symbol("BTC", "USDT", Exchange.GATE)
    cls = om.submit_many([OrderRequest.new_limit(sym, OrderSide.BUY, 0.01, 100.0 + i, post_only=True)
                          for i in range(3)])
    assert [f["channel"] for f in frames] == ["spot.order_place"] * 3  # Gate has no batch place
    for i, c in enumerate(cls):
        om.on_update(gw, Update(U_ACK, cl_ord_id=c, venue_ord_id=str(900 + i), state=S.NEW))
    frames.clear()
    om.submit_many([OrderRequest.cancel(sym, c) for c in cls])
    assert len(frames) == 1 and gw.batched_requests == 3
    (f,) = frames
    assert f["channel"] == "spot.order_cancel_ids" and f["payload"]["req_param"] == [
        {"currency_pair": "BTC_USDT", "id": "t-" + c} for c in cls]
    rid = f["payload"]["req_id"]
    # the answer: two cancelled, one refused (already gone)
    res = [{"currency_pair": "BTC_USDT", "id": "900", "text": "t-" + cls[0], "succeeded": True, "label": "",
            "message": ""},
           {"currency_pair": "BTC_USDT", "id": "t-" + cls[1], "succeeded": True, "label": "", "message": ""},
           {"currency_pair": "BTC_USDT", "id": "902", "text": "t-" + cls[2], "succeeded": False,
            "label": "ORDER_NOT_FOUND", "message": "Order not found"}]
    frame = {"request_id": rid, "ack": False, "header": {"response_time": "1", "status": "200",
                                                         "channel": "spot.order_cancel_ids", "event": "api"},
             "data": {"result": res}}
    gw.on_frame(json.dumps(frame).encode())
    assert om.order(cls[0]).state == S.CANCELED and om.order(cls[1]).state == S.CANCELED
    assert om.order(cls[2]).state == S.UNKNOWN  # not found: reconciliation asks the venue what became of it
    assert resolving == ["_resolve_unknown"]
    # a whole request refused: every order named, each cancel rejected
    o = om.submit_many([OrderRequest.new_limit(sym, OrderSide.BUY, 0.01, 90.0 + i, post_only=True) for i in range(2)])
    for i, c in enumerate(o):
        om.on_update(gw, Update(U_ACK, cl_ord_id=c, venue_ord_id=str(800 + i), state=S.NEW))
    frames.clear()
    om.submit_many([OrderRequest.cancel(sym, c) for c in o])
    rid = frames[0]["payload"]["req_id"]
    gw.on_frame(json.dumps({"request_id": rid, "ack": False,
                            "header": {"status": "429", "channel": "spot.order_cancel_ids", "event": "api"},
                            "data": {"errs": {"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"}}
                            }).encode())
    assert [om.order(c).state for c in o] == [S.NEW, S.NEW] and om.n["cancel_rejects"] == 3


def test_a_refused_batch_answers_every_order_in_it():
    from strategy.orders import OrderRequest, Symbol

    om, gw, frames = _okx_manager()
    resting = [om.submit(_okx_new(90.0 + i)) for i in range(3)]
    for c in resting:
        gw.on_frame(b'{"id":"n%s","op":"order","code":"0","msg":"","data":[{"ordId":"1%s","clOrdId":"%s",'
                    b'"sCode":"0","sMsg":""}]}' % (c.encode(), str(len(c)).encode(), c.encode()))
    assert all(om.order(c).state == S.NEW for c in resting)
    frames.clear()
    cls = om.submit_many([_okx_new(100.0 + i) for i in range(4)])
    om.submit_many([OrderRequest.cancel(Symbol("BTC", "USDT", Exchange.OKX), c) for c in resting])
    new_rid, cancel_rid = frames[0]["id"], frames[1]["id"]
    gw.on_frame(b'{"id":"%s","op":"batch-orders","code":"50011","msg":"Rate limit reached","data":[]}'
                % new_rid.encode())
    gw.on_frame(b'{"id":"%s","op":"batch-cancel-orders","code":"50011","msg":"Rate limit reached","data":[]}'
                % cancel_rid.encode())
    assert all(om.order(c).state == S.REJECTED and om.order(c).reason == Reason.RATE_LIMIT for c in cls)
    assert all(om.order(c).state == S.NEW for c in resting)  # the cancels were refused: still working
    assert om.n["cancel_rejects"] == 3 and not gw._batches
    # a repeat of the refusal names nothing any more: counted as a foreign update, nothing moves
    gw.on_frame(b'{"id":"%s","op":"batch-orders","code":"50011","msg":"Rate limit reached","data":[]}'
                % new_rid.encode())
    assert om.n["foreign_updates"] == 1 and gw.bad_frames == 0


# ---------------------------------------------------------------- restart recovery (no venue)
def _recovering_manager(source=None, fills=(), vo=None, ring=None):
    """A manager whose Binance gateway answers recent_fills / query_order_by_id from memory."""
    import asyncio

    from oms.venues.base import VenueOrder

    om, gw = _manager()
    om.position_source = source
    om.ring = ring
    calls = []

    async def recent_fills(vsym, since_ms):
        calls.append((vsym, since_ms))
        return [Update(U_ORDER, **f) for f in fills]

    async def query_order_by_id(vid, vsym):
        return vo or VenueOrder("old1", vid, vsym, 1, 100.0, 3.0, 3.0, 100.0, S.FILLED)

    gw.recent_fills = recent_fills
    gw.query_order_by_id = query_order_by_id
    st = om._venues[Exchange.BINANCE]
    st.recover_since_ms = gw.now_ms() - 900_000
    st.recover_syms = {"BTCUSDT"}

    async def go():
        om._starting = True
        if source is not None:
            await om._restore_positions([Exchange.BINANCE])
        await om._reconcile_fills(Exchange.BINANCE)
        om._starting = False

    asyncio.run(go())
    return om, calls


def _fill(tid, qty, px=100.0, ts_ms=None, vid="77"):
    import time

    return dict(venue_ord_id=vid, vsym="BTCUSDT", fill_qty=qty, fill_px=px, trade_id=tid, side=1,
                ts_ms=ts_ms if ts_ms is not None else int(time.time() * 1000) - 1000)


def test_start_up_recovers_fills_of_an_unknown_order_into_positions():
    import time

    old = int(time.time() * 1000) - 3_600_000  # before the lookback: a venue that ignores `since`
    om, calls = _recovering_manager(fills=[_fill("t1", 1.0), _fill("t2", 2.0, 110.0), _fill("t0", 5.0, ts_ms=old)])
    assert calls and calls[0][0] == "BTCUSDT" and not om._venues[Exchange.BINANCE].recover_syms
    o = om.order("old1")
    assert o is not None and o.state == S.FILLED and o.filled_qty == 3.0 and o.trade_ids == {"t1", "t2"}
    assert o.event_seq > 1 << 40  # continues above the killed session's event numbers
    pos = om.positions.get(Exchange.BINANCE, 1)
    assert pos.qty == 3.0 and pos.avg_px == pytest.approx((100.0 + 220.0) / 3)
    assert om.n["adopted_from_fills"] == 1 and om.n["fills"] == 2
    # a later pass (a reconnect): an order nobody knows now is one of ours purged after it ended
    # (or foreign): its fills are not adopted again, and known fills are not applied twice
    import asyncio

    gw = om.gateway(Exchange.BINANCE)

    async def later(vsym, since_ms):
        return [Update(U_ORDER, **_fill("t1", 1.0)), Update(U_ORDER, **_fill("t9", 4.0, vid="88"))]

    gw.recent_fills = later
    om.orders["x"] = Order("x", Exchange.BINANCE, 1, "BTC-USDT", OrderSide.BUY, 100.0, 1.0)  # a known order
    asyncio.run(om._reconcile_fills(Exchange.BINANCE))
    assert pos.qty == 3.0 and om.n["adopted_from_fills"] == 1 and om.order("venue88") is None


def test_recovered_fills_already_in_a_persisted_snapshot_are_not_counted_twice():
    import time

    from ringbuf.records import EVENT_RECORD_SIZE, F_REPLAY, FILL_DTYPE, KIND_FILL

    snap_ns = time.time_ns() - 500_000_000
    seen = {}

    def source(since_ns):
        seen["since"] = since_ns
        # t1 was applied (and stored) before the snapshot; t2 was stored after it (killed between
        # the FILL and its POSITION record); t3 never reached the database
        return ({(1, 1): (1.0, 100.0, 0.0, 0.1, snap_ns)}, {(1, "t1"): snap_ns - 1000, (1, "t2"): snap_ns + 1000})

    class _Ring:
        def __init__(self):
            self.recs = []

        def write(self, st, *fields):
            buf = bytearray(EVENT_RECORD_SIZE)
            st.pack_into(buf, 0, *fields)
            self.recs.append(bytes(buf))
            return True

    ring = _Ring()
    om, _ = _recovering_manager(source, fills=[_fill("t1", 1.0), _fill("t2", 0.5), _fill("t3", 1.5)], ring=ring)
    assert seen["since"] < snap_ns
    pos = om.positions.get(Exchange.BINANCE, 1)
    assert pos.qty == pytest.approx(3.0) and pos.fees == pytest.approx(0.1)
    assert om.n["fills_in_snapshot"] == 1 and om.order("old1").filled_qty == 3.0
    fills = [r for r in ring.recs if r[0] == KIND_FILL]
    import numpy as np

    arr = np.frombuffer(b"".join(fills), FILL_DTYPE)
    assert sorted(arr["trade_id"].tolist()) == [b"t2", b"t3"] and (arr["flags"] & F_REPLAY).all()


def test_unreachable_position_source_falls_back_to_the_venue_fills(caplog):
    def source(since_ns):
        raise OSError("connection refused\nsecond line")

    with caplog.at_level("WARNING", logger="oms"):
        om, _ = _recovering_manager(source, fills=[_fill("t1", 1.0), _fill("t2", 2.0)])
    assert om.positions.get(Exchange.BINANCE, 1).qty == 3.0 and om.n["position_source_errors"] == 1
    assert "persisted positions unavailable (connection refused)" in caplog.text


def test_recovered_fills_are_paged_within_each_venue_limits():
    import asyncio

    async def go():
        cfg = load(text="")
        ins = Instruments(["BTC-USDT"])
        # Binance: startTime first, then fromId (never both), while pages are full
        b = binance.BinanceGateway(cfg.venue("binance"), ins, _Sink(), ["BTC-USDT"])
        seen_b = []

        async def bget(path, params=None, signed=False, method="GET"):
            seen_b.append(dict(params))
            start = params.get("fromId", 0)
            n = binance.FILLS_PAGE if start < 2 * binance.FILLS_PAGE else 3
            return [{"id": start + i, "orderId": 1, "qty": "1", "price": "1", "time": 1} for i in range(n)]

        b._get = bget
        out = await b.recent_fills("BTCUSDT", 123)
        assert len(out) == 2 * binance.FILLS_PAGE + 3 and len(seen_b) == 3
        assert seen_b[0]["startTime"] == 123 and "fromId" not in seen_b[0]
        assert seen_b[1] == {"symbol": "BTCUSDT", "fromId": binance.FILLS_PAGE, "limit": binance.FILLS_PAGE}
        # a venue that ignores the paging parameter: one repeated page ends the loop
        seen_b.clear()

        async def same(path, params=None, signed=False, method="GET"):
            seen_b.append(params)
            return [{"id": i, "orderId": 1, "qty": "1", "price": "1"} for i in range(binance.FILLS_PAGE)]

        b._get = same
        assert len(await b.recent_fills("BTCUSDT", 0)) == binance.FILLS_PAGE and len(seen_b) == 2
        # OKX: newest first, back in time with after=<billId> until older than since
        o = okx.OkxGateway(cfg.venue("okx"), ins, _Sink(), ["BTC-USDT"])
        seen_o = []

        async def ocall(method, path, body=None, signed=True):
            seen_o.append(path)
            top = 1000 - 100 * (len(seen_o) - 1)
            return [{"tradeId": str(top - i), "billId": str(top - i), "ordId": "1", "fillSz": "1", "fillPx": "1",
                     "ts": str(top - i)} for i in range(okx.FILLS_PAGE)]

        o._call = ocall
        out = await o.recent_fills("BTC-USDT", 750)
        assert len(seen_o) == 3 and "after=901" in seen_o[1] and "limit=100" in seen_o[0]
        assert "begin=750" in seen_o[0]
        # Gate: page=1, 2, ... while full
        g = gate.GateGateway(cfg.venue("gate"), ins, _Sink(), ["BTC-USDT"])
        seen_g = []

        async def gcall(method, path, query="", body=None, signed=True, allow_404=False):
            seen_g.append(query)
            page = len(seen_g)
            n = gate.FILLS_PAGE if page == 1 else 5
            return [{"id": page * 10_000 + i, "amount": "1", "price": "1", "create_time_ms": "1700000000123.5"}
                    for i in range(n)]

        g._call = gcall
        out = await g.recent_fills("BTC_USDT", 1_700_000_000_999)
        assert len(out) == gate.FILLS_PAGE + 5 and "page=2" in seen_g[1] and "from=1700000000" in seen_g[0]
        assert out[0].ts_ms == 1_700_000_000_123

    asyncio.run(go())


def test_gate_trade_time_in_seconds_or_milliseconds():
    assert gate.usertrade({"create_time_ms": "1700000000123.456"}).ts_ms == 1_700_000_000_123
    assert gate.usertrade({"create_time_ms": "1700000000.123"}).ts_ms == 1_700_000_000_123
    assert gate.usertrade({"create_time": "1700000000"}).ts_ms == 1_700_000_000_000
