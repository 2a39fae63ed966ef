"""Simulator over loopback: frame conformance against published frames, order entry and signing,
private streams, REST reconciliation, dead-man switches, faults, bad input, determinism.

Never asserts timings: every wait polls for a condition with a generous timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import time
import urllib.parse
from datetime import UTC, datetime

import pytest

from sim import auth
from sim.testing import WsClient, WsClosed, http_json, run_sim, wait_until

pytestmark = pytest.mark.integration

DATA = os.path.join(os.path.dirname(__file__), "data")
KEY, SECRET, PASS = "sim-key", "sim-secret", "sim-pass"


def load(venue: str, name: str) -> dict:
    with open(os.path.join(DATA, venue, name)) as f:
        return json.load(f)


def same_shape(sample, got, extra_ok=(), path="") -> None:
    """Same keys and JSON value types, recursively (lists: compare first elements)."""
    if isinstance(sample, dict):
        assert isinstance(got, dict), f"{path}: expected object, got {got!r}"
        missing = set(sample) - set(got)
        extra = set(got) - set(sample) - set(extra_ok)
        assert not missing and not extra, f"{path}: missing {missing}, extra {extra}"
        for k in sample:
            same_shape(sample[k], got[k], extra_ok, f"{path}.{k}")
    elif isinstance(sample, list):
        assert isinstance(got, list), f"{path}: expected list, got {got!r}"
        if sample and got:
            same_shape(sample[0], got[0], extra_ok, path + "[0]")
    elif sample is None:
        pass  # null in the sample: the venue sends null or a value there
    else:
        assert type(got) is type(sample), f"{path}: {type(got).__name__} != {type(sample).__name__} ({got!r})"


@pytest.fixture(scope="module")
def sim():
    with run_sim(symbols=["BTC-USDT", "ETH-USDT"], seed=5, rate=3000) as s:
        yield s


def ws(url: str) -> WsClient:
    return WsClient(url, timeout_s=30)


# -- signing helpers (written from the venues' docs, like a client would) -------------------
def bn_sign(params: dict, secret: str = SECRET, key: str = KEY) -> dict:
    p = dict(params, apiKey=key, timestamp=int(time.time() * 1000))
    payload = "&".join(f"{k}={p[k]}" for k in sorted(p))
    p["signature"] = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return p


def bn_rest(sim, method: str, path: str, params: dict, secret: str = SECRET):
    p = dict(params, timestamp=int(time.time() * 1000))
    q = urllib.parse.urlencode(p)
    sig = hmac.new(secret.encode(), q.encode(), hashlib.sha256).hexdigest()
    return http_json(method, f"{sim.urls['binance']['rest']}{path}?{q}&signature={sig}",
                     headers={"X-MBX-APIKEY": KEY})


def okx_login(c: WsClient, secret: str = SECRET) -> dict:
    ts = str(int(time.time()))
    sign = base64.b64encode(hmac.new(secret.encode(), (ts + "GET/users/self/verify").encode(),
                                     hashlib.sha256).digest()).decode()
    c.send_json({"op": "login", "args": [{"apiKey": KEY, "passphrase": PASS, "timestamp": ts, "sign": sign}]})
    return c.recv_until(lambda m: m.get("event") in ("login", "error"))


def okx_rest(sim, method: str, path: str, body: dict | None = None, secret: str = SECRET):
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}Z"
    b = json.dumps(body) if body is not None else ""
    sign = base64.b64encode(hmac.new(secret.encode(), (ts + method + path + b).encode(), hashlib.sha256)
                            .digest()).decode()
    return http_json(method, sim.urls["okx"]["rest"] + path, b.encode() if b else None,
                     {"OK-ACCESS-KEY": KEY, "OK-ACCESS-SIGN": sign, "OK-ACCESS-TIMESTAMP": ts,
                      "OK-ACCESS-PASSPHRASE": PASS, "Content-Type": "application/json"})


def gate_login(c: WsClient, secret: str = SECRET) -> dict:
    ts = str(int(time.time()))
    sig = hmac.new(secret.encode(), f"api\nspot.login\n\n{ts}".encode(), hashlib.sha512).hexdigest()
    c.send_json({"time": int(ts), "channel": "spot.login", "event": "api",
                 "payload": {"api_key": KEY, "timestamp": ts, "req_id": "login-1", "signature": sig}})
    return c.recv_until(lambda m: m.get("request_id") == "login-1")


def gate_rest(sim, method: str, path: str, query: str = "", body: dict | None = None, secret: str = SECRET):
    ts = str(int(time.time()))
    b = json.dumps(body).encode() if body is not None else b""
    s = "\n".join((method, path, query, hashlib.sha512(b).hexdigest(), ts))
    sign = hmac.new(secret.encode(), s.encode(), hashlib.sha512).hexdigest()
    url = sim.urls["gate"]["rest"] + path + ("?" + query if query else "")
    return http_json(method, url, b or None, {"KEY": KEY, "Timestamp": ts, "SIGN": sign,
                                              "Content-Type": "application/json"})


def gate_sub_private(c: WsClient, channel: str, payload: list, secret: str = SECRET) -> dict:
    t = int(time.time())
    sign = hmac.new(secret.encode(), f"channel={channel}&event=subscribe&time={t}".encode(),
                    hashlib.sha512).hexdigest()
    c.send_json({"time": t, "id": 9, "channel": channel, "event": "subscribe", "payload": payload,
                 "auth": {"method": "api_key", "KEY": KEY, "SIGN": sign}})
    return c.recv_until(lambda m: m.get("channel") == channel and m.get("event") == "subscribe")


def far_bid(sim, venue: str, symbol: str = "BTC-USDT") -> str:
    """A bid that rests: 2 % under the best bid, a whole number (a multiple of every tick).
    The deepest displayed bid is only ~1 USD under the top while the generator moves BTC by tens
    of USD a second, so an order placed there a few ms later was sometimes filled at once."""
    best = float(sim.control.book(venue, symbol, depth=1)["bids"][0][0])
    return str(int(best * 0.98))


# -- market-data conformance -----------------------------------------------------------------
def test_binance_md_conformance(sim):
    with ws(sim.urls["binance"]["stream"] + "?streams=btcusdt@bookTicker/btcusdt@trade/btcusdt@depth@100ms") as c:
        got = {}
        while len(got) < 3:
            m = c.recv_json()
            got.setdefault(m["stream"].split("@", 1)[1], m["data"])
    same_shape(load("binance", "book_ticker.json"), got["bookTicker"])
    same_shape(load("binance", "trade.json"), got["trade"])
    same_shape(load("binance", "depth_update.json"), got["depth@100ms"])
    with ws(sim.urls["binance"]["ws"]) as c:
        c.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade"], "id": 1})
        same_shape(load("binance", "subscribe_reply.json"), c.recv_until(lambda m: m.get("id") == 1))
        same_shape(load("binance", "agg_trade.json"), c.recv_until(lambda m: m.get("e") == "aggTrade"))
    st, snap = http_json("GET", sim.urls["binance"]["rest"] + "/api/v3/depth?symbol=BTCUSDT&limit=100")
    assert st == 200 and len(snap["bids"]) == 100
    same_shape(load("binance", "depth_snapshot_rest.json"), snap)


def test_okx_md_conformance(sim):
    with ws(sim.urls["okx"]["ws_public"]) as c:
        c.send_json({"id": "1512", "op": "subscribe", "args": [{"channel": "bbo-tbt", "instId": "BTC-USDT"}]})
        same_shape(load("okx", "subscribe_reply.json"), c.recv_until(lambda m: m.get("event") == "subscribe"))
        c.send_json({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"},
                                                 {"channel": "trades", "instId": "BTC-USDT"}]})
        got = {}
        while len(got) < 4:
            m = c.recv_json()
            if "data" in m:
                got.setdefault(m["arg"]["channel"] + m.get("action", ""), m)
        same_shape(load("okx", "bbo_tbt.json"), got["bbo-tbt"])
        same_shape(load("okx", "books_snapshot.json"), got["bookssnapshot"])
        same_shape(load("okx", "books_update.json"), got["booksupdate"])
        same_shape(load("okx", "trades.json"), got["trades"])
        c.send_json({"op": "subscribe", "argss": []})
        same_shape(load("okx", "error.json"), c.recv_until(lambda m: m.get("event") == "error"))
        c.send_text("ping")
        assert c.recv_until(lambda m: m == "pong") == "pong"


def test_gate_md_conformance(sim):
    with ws(sim.urls["gate"]["ws"]) as c:
        t = int(time.time())
        c.send_json({"time": t, "id": 123, "channel": "spot.book_ticker", "event": "subscribe",
                     "payload": ["BTC_USDT"]})
        same_shape(load("gate", "subscribe_reply.json"), c.recv_until(lambda m: m.get("event") == "subscribe"))
        for ch, p in (("spot.order_book_update", ["BTC_USDT", "100ms"]), ("spot.trades", ["BTC_USDT"])):
            c.send_json({"time": t, "channel": ch, "event": "subscribe", "payload": p})
        got = {}
        while len(got) < 3:
            m = c.recv_json()
            if m.get("event") == "update":
                got.setdefault(m["channel"], m)
        same_shape(load("gate", "book_ticker.json"), got["spot.book_ticker"])
        same_shape(load("gate", "order_book_update.json"), got["spot.order_book_update"])
        # id_market is in the current Spot WS v4 docs (PROTOCOLS.md 3.3), not in the older sample
        same_shape(load("gate", "trades.json"), got["spot.trades"], extra_ok=("id_market",))
        c.send_json({"time": t, "channel": "spot.ping"})
        same_shape(load("gate", "pong.json"), c.recv_until(lambda m: m.get("channel") == "spot.pong"))
    st, snap = http_json("GET", sim.urls["gate"]["rest"] + "/api/v4/spot/order_book?currency_pair=BTC_USDT"
                                                           "&limit=100&with_id=true")
    assert st == 200 and len(snap["asks"]) == 100
    same_shape(load("gate", "order_book_rest.json"), snap)


def test_reference_data(sim):
    st, info = http_json("GET", sim.urls["binance"]["rest"] + "/api/v3/exchangeInfo?symbol=BTCUSDT")
    f = {x["filterType"]: x for x in info["symbols"][0]["filters"]}
    assert f["PRICE_FILTER"]["tickSize"] == "0.01000000" and f["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert "minNotional" in f["NOTIONAL"]
    assert http_json("GET", sim.urls["binance"]["rest"] + "/api/v3/time")[1]["serverTime"] > 0
    st, inst = http_json("GET", sim.urls["okx"]["rest"] + "/api/v5/public/instruments?instType=SPOT")
    row = inst["data"][0]
    assert {"tickSz", "lotSz", "minSz", "instIdCode"} <= set(row) and isinstance(row["instIdCode"], int)
    st, books = http_json("GET", sim.urls["okx"]["rest"] + "/api/v5/market/books?instId=BTC-USDT&sz=400")
    assert isinstance(books["data"][0]["seqId"], int) and len(books["data"][0]["bids"]) >= 50
    assert http_json("GET", sim.urls["okx"]["rest"] + "/api/v5/public/time")[1]["data"][0]["ts"].isdigit()
    st, pairs = http_json("GET", sim.urls["gate"]["rest"] + "/api/v4/spot/currency_pairs")
    assert {"precision", "amount_precision", "min_base_amount", "min_quote_amount"} <= set(pairs[0])
    assert http_json("GET", sim.urls["gate"]["rest"] + "/api/v4/spot/time")[1]["server_time"] > 0


# -- order entry ---------------------------------------------------------------------------------
def test_binance_order_flow_and_user_stream(sim):
    with ws(sim.urls["binance"]["ws_api"]) as c:
        # Ed25519 session logon, then the user data stream
        p = {"apiKey": "sim-ed25519-key", "timestamp": int(time.time() * 1000)}
        p["signature"] = auth.ed25519_sign_b64(auth.TEST_ED25519_PRIVATE_KEY_B64,
                                               "&".join(f"{k}={p[k]}" for k in sorted(p)))
        c.send_json({"id": "logon", "method": "session.logon", "params": p})
        r = c.recv_until(lambda m: m.get("id") == "logon")
        assert r["status"] == 200 and r["result"]["apiKey"] == "sim-ed25519-key"
        c.send_json({"id": "uds", "method": "userDataStream.subscribe"})
        assert c.recv_until(lambda m: m.get("id") == "uds")["result"] == {"subscriptionId": 0}
        px = far_bid(sim, "binance")
        c.send_json({"id": "o-1", "method": "order.place", "params": {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": px,
            "quantity": "0.00100", "newClientOrderId": "ed-1", "newOrderRespType": "RESULT",
            "timestamp": int(time.time() * 1000)}})
        ack = c.recv_until(lambda m: m.get("id") == "o-1")
        assert ack["status"] == 200 and ack["result"]["status"] == "NEW"
        same_shape(load("binance", "ws_order_place_result.json"), ack)
        er = c.recv_until(lambda m: m.get("event", {}).get("e") == "executionReport")
        same_shape(load("binance", "execution_report.json"), er)
        assert er["event"]["c"] == "ed-1" and er["event"]["x"] == "NEW"
        oid = ack["result"]["orderId"]
        # HMAC-signed request on the same connection, for the HMAC key
        c.send_json({"id": 2, "method": "openOrders.status", "params": bn_sign({"symbol": "BTCUSDT"})})
        assert c.recv_until(lambda m: m.get("id") == 2)["result"] == []
        c.send_json({"id": 3, "method": "order.cancel", "params": {
            "symbol": "BTCUSDT", "orderId": oid, "timestamp": int(time.time() * 1000)}})
        r = c.recv_until(lambda m: m.get("id") == 3)
        assert r["result"]["status"] == "CANCELED"
        c.recv_until(lambda m: m.get("event", {}).get("x") == "CANCELED")
        c.send_json({"id": "c-4", "method": "order.cancel", "params": {
            "symbol": "BTCUSDT", "orderId": oid, "timestamp": int(time.time() * 1000)}})
        r = c.recv_until(lambda m: m.get("id") == "c-4")
        assert r["status"] == 400 and r["error"]["code"] == -2011
        same_shape(load("binance", "ws_error.json"), r)


def test_binance_rejects(sim):
    px = far_bid(sim, "binance")
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": px,
            "quantity": "0.00100"}
    with ws(sim.urls["binance"]["ws_api"]) as c:
        def call(params, rid):
            c.send_json({"id": rid, "method": "order.place", "params": params})
            return c.recv_until(lambda m: m.get("id") == rid)
        bad = bn_sign(base)
        bad["signature"] = "0" * 64
        assert call(bad, "s")["error"]["code"] == -1022
        old = bn_sign(base)
        old["timestamp"] -= 60_000
        payload = "&".join(f"{k}={old[k]}" for k in sorted(old) if k != "signature")
        old["signature"] = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        assert call(old, "t")["error"]["code"] == -1021
        assert call(bn_sign(dict(base, price="1.001")), "tick")["error"] == {
            "code": -1013, "msg": "Filter failure: PRICE_FILTER"}
        assert call(bn_sign(dict(base, quantity="0.000001")), "lot")["error"]["code"] == -1013
        assert call(bn_sign(dict(base, quantity="5000", price="60000")), "bal")["error"] == {
            "code": -2010, "msg": "Account has insufficient balance for requested action."}
        ask = sim.control.book("binance", "BTC-USDT", 1)["asks"][0][0]
        r = call(bn_sign(dict(base, type="LIMIT_MAKER", price=str(float(ask) + 100)[:12], timeInForce=None)
                         | {}), "pm")
        assert r["status"] == 400
        pm = {k: v for k, v in base.items() if k != "timeInForce"}
        r = call(bn_sign(dict(pm, type="LIMIT_MAKER", price=f"{float(ask) + 50:.2f}")), "pm2")
        assert r["error"] == {"code": -2010, "msg": "Order would immediately match and take."}
        r = call({**bn_sign(base), "apiKey": "nobody"}, "key")
        assert r["status"] == 401 and r["error"]["code"] == -2015


def test_binance_rest_reconciliation(sim):
    px = far_bid(sim, "binance")
    st, r = bn_rest(sim, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                   "timeInForce": "GTC", "price": px, "quantity": "0.00100",
                                                   "newClientOrderId": "rest-1"})
    assert st == 200, r
    st, oo = bn_rest(sim, "GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert st == 200 and any(o["clientOrderId"] == "rest-1" for o in oo)
    assert any(o["client_order_id"] == "rest-1" for o in sim.control.open_orders("binance"))
    ask = sim.control.book("binance", "BTC-USDT", 1)["asks"][0][0]
    st, r = bn_rest(sim, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                   "timeInForce": "IOC", "price": f"{float(ask) * 1.01:.2f}",
                                                   "quantity": "0.00100"})
    assert st == 200 and r["status"] == "FILLED" and r["fills"]
    st, trades = bn_rest(sim, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert st == 200 and trades and trades[-1]["isMaker"] is False
    st, done = bn_rest(sim, "DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert st == 200 and all(o["status"] == "CANCELED" for o in done)
    st, r = bn_rest(sim, "GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, secret="wrong")
    assert st == 400 and r["code"] == -1022


def test_okx_order_flow(sim):
    codes = {i["instId"]: i["instIdCode"] for i in
             http_json("GET", sim.urls["okx"]["rest"] + "/api/v5/public/instruments?instType=SPOT")[1]["data"]}
    with ws(sim.urls["okx"]["ws_private"]) as c:
        assert okx_login(c, "wrong")["code"] == "60007"
        r = okx_login(c)
        assert r["event"] == "login" and r["code"] == "0"
        c.send_json({"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]})
        c.recv_until(lambda m: m.get("event") == "subscribe")
        px = far_bid(sim, "okx")
        c.send_json({"id": "o1", "op": "order", "args": [{"instIdCode": codes["BTC-USDT"], "tdMode": "cash",
                                                          "side": "buy", "ordType": "post_only", "px": px,
                                                          "sz": "0.001", "clOrdId": "okx1"}]})
        ack = c.recv_until(lambda m: m.get("id") == "o1")
        same_shape(load("okx", "order_ack.json"), ack)
        assert ack["code"] == "0" and ack["data"][0]["sCode"] == "0"
        push = c.recv_until(lambda m: m.get("arg", {}).get("channel") == "orders")
        assert push["data"][0]["state"] == "live" and push["data"][0]["clOrdId"] == "okx1"
        c.send_json({"id": "o2", "op": "order", "args": [{"instId": "BTC-USDT", "tdMode": "cash", "side": "buy",
                                                          "ordType": "limit", "px": px, "sz": "0.001"}]})
        r = c.recv_until(lambda m: m.get("id") == "o2")
        assert r["code"] == "1" and r["data"][0]["sCode"] == "50014"
        c.send_json({"id": "o3", "op": "order", "args": [{"instIdCode": codes["BTC-USDT"], "tdMode": "cash",
                                                          "side": "buy", "ordType": "limit", "px": "60000",
                                                          "sz": "100"}]})
        r = c.recv_until(lambda m: m.get("id") == "o3")
        assert r["data"][0]["sCode"] == "51008"
        same_shape(load("okx", "order_reject.json"), r)
        st, pend = okx_rest(sim, "GET", "/api/v5/trade/orders-pending?instType=SPOT")
        assert st == 200 and any(o["clOrdId"] == "okx1" for o in pend["data"])
        c.send_json({"id": "a1", "op": "amend-order", "args": [{"instIdCode": codes["BTC-USDT"], "clOrdId": "okx1",
                                                                "newSz": "0.002"}]})
        assert c.recv_until(lambda m: m.get("id") == "a1")["data"][0]["sCode"] == "0"
        c.send_json({"id": "c1", "op": "cancel-order", "args": [{"instIdCode": codes["BTC-USDT"],
                                                                 "clOrdId": "okx1"}]})
        assert c.recv_until(lambda m: m.get("id") == "c1")["data"][0]["sCode"] == "0"
        c.recv_until(lambda m: m.get("arg", {}).get("channel") == "orders" and m["data"][0]["state"] == "canceled")
        c.send_json({"id": "c2", "op": "cancel-order", "args": [{"instIdCode": codes["BTC-USDT"],
                                                                 "clOrdId": "okx1"}]})
        assert c.recv_until(lambda m: m.get("id") == "c2")["data"][0]["sCode"] == "51400"
        # post-only that would take: accepted, then canceled on the orders channel
        ask = sim.control.book("okx", "BTC-USDT", 1)["asks"][0][0]
        c.send_json({"id": "p1", "op": "order", "args": [{"instIdCode": codes["BTC-USDT"], "tdMode": "cash",
                                                          "side": "buy", "ordType": "post_only",
                                                          "px": f"{float(ask) + 10:.1f}", "sz": "0.001",
                                                          "clOrdId": "pox"}]})
        assert c.recv_until(lambda m: m.get("id") == "p1")["data"][0]["sCode"] == "0"
        m = c.recv_until(lambda m: m.get("arg", {}).get("channel") == "orders"
                         and m["data"][0]["clOrdId"] == "pox" and m["data"][0]["state"] == "canceled")
        assert m["data"][0]["cancelSource"] == "31"
    st, fills = okx_rest(sim, "GET", "/api/v5/trade/fills?instType=SPOT")
    assert st == 200 and fills["code"] == "0"
    st, r = okx_rest(sim, "GET", "/api/v5/trade/orders-pending", secret="bad")
    assert st == 401 and r["code"] == "50113"


def test_gate_order_flow(sim):
    with ws(sim.urls["gate"]["ws"]) as c:
        r = gate_login(c, "wrong")
        assert r["data"]["errs"]["label"] == "INVALID_SIGNATURE"
        assert gate_login(c)["header"]["status"] == "200"
        assert gate_sub_private(c, "spot.orders", ["!all"])["result"] == {"status": "success"}
        px = far_bid(sim, "gate")
        c.send_json({"time": int(time.time()), "channel": "spot.order_place", "event": "api",
                     "payload": {"req_id": "p1", "req_header": {"x-gate-exptime": str(int(time.time() * 1000) + 60000)},
                                 "req_param": {"text": "t-g1", "currency_pair": "BTC_USDT",
                                                               "type": "limit", "account": "spot", "side": "buy",
                                                               "amount": "0.001", "price": px,
                                                               "time_in_force": "poc"}}})
        ack = c.recv_until(lambda m: m.get("request_id") == "p1")
        assert ack["ack"] is True
        same_shape(load("gate", "order_place_ack.json"), ack, extra_ok=("time_in_force",))  # echo of our request
        res = c.recv_until(lambda m: m.get("request_id") == "p1")
        assert res["ack"] is False and res["data"]["result"]["status"] == "open"
        # stp_id/stp_act are documented fields of the Order object (APIv4 schema)
        same_shape(load("gate", "order_place_result.json"), res, extra_ok=("stp_id", "stp_act"))
        push = c.recv_until(lambda m: m.get("channel") == "spot.orders")
        assert push["result"][0]["event"] == "put" and push["result"][0]["text"] == "t-g1"
        c.send_json({"time": int(time.time()), "channel": "spot.order_place", "event": "api",
                     "payload": {"req_id": "p2", "req_param": {"text": "t-g2", "currency_pair": "BTC_USDT",
                                                               "type": "limit", "side": "buy", "amount": "1000",
                                                               "price": "60000"}}})
        c.recv_until(lambda m: m.get("request_id") == "p2" and m.get("ack"))
        err = c.recv_until(lambda m: m.get("request_id") == "p2")
        assert err["data"]["errs"]["label"] == "BALANCE_NOT_ENOUGH"
        same_shape(load("gate", "order_error.json"), err)
        st, oo = gate_rest(sim, "GET", "/api/v4/spot/open_orders")
        assert st == 200 and oo[0]["orders"][0]["text"] == "t-g1"
        c.send_json({"time": int(time.time()), "channel": "spot.order_cancel", "event": "api",
                     "payload": {"req_id": "c1", "req_param": {"order_id": "t-g1", "currency_pair": "BTC_USDT"}}})
        c.recv_until(lambda m: m.get("request_id") == "c1" and m.get("ack"))
        r = c.recv_until(lambda m: m.get("request_id") == "c1")
        assert r["data"]["result"]["status"] == "cancelled"
        c.send_json({"time": int(time.time()), "channel": "spot.order_cancel", "event": "api",
                     "payload": {"req_id": "c2", "req_param": {"order_id": "t-g1", "currency_pair": "BTC_USDT"}}})
        c.recv_until(lambda m: m.get("request_id") == "c2" and m.get("ack"))
        assert c.recv_until(lambda m: m.get("request_id") == "c2")["data"]["errs"]["label"] == "ORDER_NOT_FOUND"
    st, r = gate_rest(sim, "GET", "/api/v4/spot/my_trades", "currency_pair=BTC_USDT")
    assert st == 200 and isinstance(r, list)
    st, r = gate_rest(sim, "GET", "/api/v4/spot/open_orders", secret="nope")
    assert st == 401 and r["label"] == "INVALID_SIGNATURE"


def test_dead_man_switches_and_orders_survive_disconnect(sim):
    # an order connection dropped by the client: orders stay
    px = far_bid(sim, "okx")
    code = http_json("GET", sim.urls["okx"]["rest"] + "/api/v5/public/instruments?instType=SPOT")[1]["data"][0]
    c = ws(sim.urls["okx"]["ws_private"])
    okx_login(c)
    c.send_json({"id": "d1", "op": "order", "args": [{"instIdCode": code["instIdCode"], "tdMode": "cash",
                                                      "side": "buy", "ordType": "limit", "px": px, "sz": "0.001",
                                                      "clOrdId": "dm1"}]})
    c.recv_until(lambda m: m.get("id") == "d1")
    c.sock.close()
    time.sleep(0.2)
    assert any(o["client_order_id"] == "dm1" for o in sim.control.open_orders("okx"))
    st, r = okx_rest(sim, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "5"})
    assert st == 400  # 10..120 or 0
    st, r = okx_rest(sim, "POST", "/api/v5/trade/cancel-all-after", {"timeOut": "10"})
    assert st == 200 and int(r["data"][0]["triggerTime"]) > 0
    # Gate countdown
    with ws(sim.urls["gate"]["ws"]) as g:
        gate_login(g)
        g.send_json({"time": int(time.time()), "channel": "spot.order_place", "event": "api",
                     "payload": {"req_id": "g1", "req_param": {"text": "t-dm", "currency_pair": "BTC_USDT",
                                                               "side": "buy", "amount": "0.001",
                                                               "price": far_bid(sim, "gate")}}})
        g.recv_until(lambda m: m.get("request_id") == "g1" and not m.get("ack"))
    st, r = gate_rest(sim, "POST", "/api/v4/spot/countdown_cancel_all", body={"timeout": 5})
    assert st == 200 and int(r["triggerTime"]) > 0
    wait_until(lambda: not sim.control.open_orders("gate"), 60, what="gate countdown to cancel")
    wait_until(lambda: not sim.control.open_orders("okx"), 60, what="okx cancel-all-after to cancel")


# -- book equality and pause --------------------------------------------------------------------
def test_client_book_equals_sim_book(sim):
    with ws(sim.urls["binance"]["ws"] + "/btcusdt@depth@100ms") as c:
        first = c.recv_json()
        st, snap = http_json("GET", sim.urls["binance"]["rest"] + "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        bids = {p: q for p, q in snap["bids"]}
        asks = {p: q for p, q in snap["asks"]}
        last = snap["lastUpdateId"]
        assert first["U"] <= last + 1
        sim.control.pause_md()
        try:
            target = sim.control.book("binance", "BTC-USDT", 20)["seq"]
            while last < target:
                m = c.recv_json()
                if m["u"] <= last:
                    continue
                assert m["U"] <= last + 1 <= m["u"]
                for side, book in (("b", bids), ("a", asks)):
                    for p, q in m[side]:
                        if float(q) == 0:
                            book.pop(p, None)
                        else:
                            book[p] = q
                last = m["u"]
            view = sim.control.book("binance", "BTC-USDT", 20)
            assert sorted(bids.items(), key=lambda x: -float(x[0]))[:20] == [tuple(x) for x in view["bids"]]
            assert sorted(asks.items(), key=lambda x: float(x[0]))[:20] == [tuple(x) for x in view["asks"]]
        finally:
            sim.control.resume_md()


# -- faults -------------------------------------------------------------------------------------
def test_fault_skip_seq_each_venue(sim):
    with ws(sim.urls["binance"]["ws"] + "/btcusdt@depth") as b, ws(sim.urls["gate"]["ws"]) as g, \
            ws(sim.urls["okx"]["ws_public"]) as o:
        g.send_json({"time": int(time.time()), "channel": "spot.order_book_update", "event": "subscribe",
                     "payload": ["BTC_USDT", "100ms"]})
        o.send_json({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]})
        g.recv_until(lambda m: m.get("event") == "subscribe")
        o.recv_until(lambda m: m.get("action") == "snapshot")
        prev_b = b.recv_json()["u"]
        prev_g = g.recv_until(lambda m: m.get("event") == "update")["result"]["u"]
        prev_o = o.recv_until(lambda m: m.get("action") == "update")["data"][0]["seqId"]
        sim.control.fault("all", "skip_seq")
        gaps = {"binance": False, "gate": False, "okx": False}
        deadline = time.monotonic() + 60
        while not all(gaps.values()) and time.monotonic() < deadline:
            if not gaps["binance"]:
                m = b.recv_json()
                gaps["binance"] = m["U"] > prev_b + 1
                prev_b = m["u"]
            if not gaps["gate"]:
                m = g.recv_until(lambda m: m.get("event") == "update")["result"]
                gaps["gate"] = m["U"] > prev_g + 1
                prev_g = m["u"]
            if not gaps["okx"]:
                m = o.recv_until(lambda m: m.get("action") == "update")["data"][0]
                gaps["okx"] = m["prevSeqId"] != prev_o
                prev_o = m["seqId"]
        assert all(gaps.values()), gaps


def test_fault_bad_checksum_and_malformed(sim):
    from sim.venues.okx import checksum_of

    with ws(sim.urls["okx"]["ws_public"]) as o:
        o.send_json({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]})
        snap = o.recv_until(lambda m: m.get("action") == "snapshot")["data"][0]
        bids = {p: q for p, q, *_ in snap["bids"]}
        asks = {p: q for p, q, *_ in snap["asks"]}

        def apply(d) -> bool:
            for side, book in (("bids", bids), ("asks", asks)):
                for p, q, *_ in d[side]:
                    if q == "0":
                        book.pop(p, None)
                    else:
                        book[p] = q
            top_b = sorted(bids.items(), key=lambda x: -float(x[0]))[:25]
            top_a = sorted(asks.items(), key=lambda x: float(x[0]))[:25]
            return checksum_of(top_b, top_a) == d["checksum"]

        for _ in range(5):
            assert apply(o.recv_until(lambda m: m.get("action") == "update")["data"][0])
        sim.control.fault("okx", "bad_checksum")
        bad = False
        for _ in range(200):
            if not apply(o.recv_until(lambda m: m.get("action") == "update")["data"][0]):
                bad = True
                break
        assert bad
        sim.control.fault("okx", "malformed")
        assert isinstance(o.recv_until(lambda m: isinstance(m, str) and "malformed" in m), str)


def test_fault_stall_and_drop(sim):
    with ws(sim.urls["binance"]["ws"] + "/ethusdt@depth") as c:
        c.recv_json()
        sim.control.fault("binance", "stall", duration_s=3)
        c.buf = b""
        # the connection stays open and quiet; a ping still gets a pong
        with pytest.raises(TimeoutError):
            while True:
                c.recv_frame(timeout_s=1.0)
        c.send_raw(b"hi", 0x9)
        wait_until(lambda: c.recv_frame(10)[0] in (0xA, 0x1), 20, what="pong or data after stall")
    c = ws(sim.urls["gate"]["ws"])
    sim.control.fault("gate", "drop")
    with pytest.raises(WsClosed):
        while True:
            c.recv_json(timeout_s=20)


def test_fault_order_acks(sim):
    with ws(sim.urls["binance"]["ws_api"]) as c:
        sim.control.fault("binance", "rate_limit", count=1)
        c.send_json({"id": "r", "method": "order.place", "params": bn_sign({"symbol": "BTCUSDT", "side": "BUY",
                     "type": "LIMIT", "timeInForce": "GTC", "price": far_bid(sim, "binance"), "quantity": "0.001"})})
        r = c.recv_until(lambda m: m.get("id") == "r")
        assert r["status"] == 429 and r["error"]["code"] == -1015
        sim.control.fault("binance", "drop_ack")
        c.send_json({"id": "lost", "method": "time"})
        c.send_json({"id": "after", "method": "time"})
        assert c.recv_json()["id"] == "after"
        sim.control.fault("binance", "delay_ack", ms=500)
        c.send_json({"id": "late", "method": "time"})
        c.send_json({"id": "early", "method": "time"})
        assert c.recv_json()["id"] == "early"
        assert c.recv_json()["id"] == "late"
    with ws(sim.urls["okx"]["ws_private"]) as o:
        okx_login(o)
        sim.control.fault("okx", "rate_limit", count=1)
        o.send_json({"id": "rl", "op": "order", "args": [{"instIdCode": 100001}]})
        assert o.recv_until(lambda m: m.get("id") == "rl")["code"] == "50011"
    with ws(sim.urls["gate"]["ws"]) as g:
        gate_login(g)
        sim.control.fault("gate", "rate_limit", count=1)
        g.send_json({"time": int(time.time()), "channel": "spot.order_place", "event": "api",
                     "payload": {"req_id": "rl", "req_param": {"currency_pair": "BTC_USDT"}}})
        r = g.recv_until(lambda m: m.get("request_id") == "rl")
        assert r["header"]["status"] == "429" and r["data"]["errs"]["label"] == "TOO_MANY_REQUESTS"


def test_fault_schedule_and_shutdown_notice(sim):
    with ws(sim.urls["okx"]["ws_public"]) as o:
        fid = sim.control.fault("okx", "server_shutdown", every_s=0.5)["id"]
        try:
            assert o.recv_until(lambda m: m.get("event") == "notice")["code"] == "64008"
            assert o.recv_until(lambda m: m.get("event") == "notice")["code"] == "64008"
            assert any(e["id"] == fid for e in sim.control.faults()["scheduled"])
        finally:
            sim.control.clear_faults("okx")
    assert not sim.control.faults()["scheduled"]


def test_fault_restart():
    with run_sim(symbols=["BTC-USDT"], seed=2, rate=500) as s:
        c = ws(s.urls["binance"]["ws"] + "/btcusdt@trade")
        s.control.fault("binance", "restart", down_s=1)
        with pytest.raises(WsClosed):
            while True:
                c.recv_json(timeout_s=20)

        def reconnect():
            try:
                return ws(s.urls["binance"]["ws"] + "/btcusdt@trade")
            except (OSError, WsClosed):
                return None
        c2 = wait_until(reconnect, 30, 0.2, "venue back after restart")
        assert c2.recv_json()["e"] == "trade"
        c2.close()


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_input_never_crashes(sim):
    host, port = urllib.parse.urlsplit(sim.urls["okx"]["rest"]).netloc.split(":")
    for junk in (b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000,
                 b"POST /api/v5/trade/order HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"\r\n\r\n"):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)  # half-close
        try:
            s.recv(1000)
        except OSError:
            pass
        s.close()
    for _venue, url in (("binance", sim.urls["binance"]["ws_api"]), ("okx", sim.urls["okx"]["ws_private"]),
                       ("gate", sim.urls["gate"]["ws"])):
        with ws(url) as c:
            for msg in (b"{", b"[]", b"null", b'{"method":5}', b'{"op":"order","args":"x"}', b'{"channel":1}',
                        json.dumps({"id": 1, "method": "order.place", "params": {"symbol": ["x"]}}).encode(),
                        json.dumps({"op": "order", "args": [{"instIdCode": {}, "px": []}]}).encode(),
                        json.dumps({"channel": "spot.order_place", "event": "api", "payload": {"req_id": []}})
                        .encode()):
                c.send_text(msg)
            c.send_raw(b"\xff\xfe", 1)  # invalid UTF-8: close 1007
            with pytest.raises(WsClosed):
                while True:
                    c.recv_json(timeout_s=20)
        with ws(url) as c:
            c.send_raw(b"x" * (2 * 1024 * 1024), 1)  # oversized: close 1009
            with pytest.raises(WsClosed):
                while True:
                    c.recv_json(timeout_s=20)
            assert c.close_code == 1009
        with ws(url) as c:
            c.send_raw(b"{}", 1, mask=False)  # unmasked: protocol error
            with pytest.raises(WsClosed):
                while True:
                    c.recv_json(timeout_s=20)
    assert sim.control.health() == {"ok": True}
    assert sim.control.stats()["venues"]["okx"]["bad_requests"] >= 1


# -- trigger mode and probe ----------------------------------------------------------------------------
def test_trigger_mode_and_probe(sim):
    with ws(sim.urls["binance"]["ws"] + "/btcusdt@bookTicker") as c, ws(sim.urls["binance"]["ws_api"]) as api:
        sim.control.trigger(True, interval_ms=300, jump_bps=30, symbol="BTC-USDT")
        try:
            sim.control.probe(clear=True)
            c.recv_json(timeout_s=30)
            api.send_json({"id": "t", "method": "order.place", "params": bn_sign({
                "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                "price": far_bid(sim, "binance"), "quantity": "0.001", "newClientOrderId": "probe-1"})})
            api.recv_until(lambda m: m.get("id") == "t")

            def records():
                rec = sim.control.probe()
                jumps = [r for r in rec["md"] if r["trigger"] and r["venue"] == "binance"]
                orders = [r for r in rec["orders"] if r["client_order_id"] == "probe-1"]
                return (jumps, orders) if jumps and orders else None
            jumps, orders = wait_until(records, 30, 0.1, "a jump frame and the order in the probe")
            assert jumps[0]["send_ns"] > 0 and orders[0]["recv_ns"] > 0
            assert jumps[0]["kind"] in ("bookTicker", "depthUpdate", "trade")
        finally:
            sim.control.trigger(False)


def test_stats_and_reset(sim):
    st = sim.control.stats()
    assert st["venues"]["binance"]["orders_received"] >= 1 and st["frames_generated"] > 0
    sim.control.reset()
    assert sim.control.open_orders("binance") == [] and sim.control.balances("binance")["USDT"]["free"] == 1e6


# -- determinism across processes -------------------------------------------------------------------------
def _frames(seed: int, n: int = 60) -> list:
    out = []
    with run_sim(symbols=["BTC-USDT"], seed=seed, rate=2000, paused=True) as s:
        with ws(s.urls["binance"]["stream"] + "?streams=btcusdt@depth/btcusdt@trade") as b, \
                ws(s.urls["okx"]["ws_public"]) as o:
            o.send_json({"op": "subscribe", "args": [{"channel": "bbo-tbt", "instId": "BTC-USDT"}]})
            o.recv_until(lambda m: m.get("event") == "subscribe")
            s.control.resume_md()
            while len(out) < n:
                d = b.recv_json()["data"]
                out.append({k: v for k, v in d.items() if k not in ("E", "T")})
            for _ in range(20):
                d = o.recv_until(lambda m: "data" in m)["data"][0]
                out.append({k: v for k, v in d.items() if k != "ts"})
    return out


@pytest.mark.slow
def test_same_seed_same_frames():
    a, b = _frames(11), _frames(11)
    assert a == b
    assert _frames(12) != a


# -- keep-alives ---------------------------------------------------------------------------------------
def test_okx_books_heartbeat_on_quiet_book():
    with run_sim(symbols=["BTC-USDT"], seed=3, paused=True, okx_books_heartbeat_s=0.5) as s, \
            ws(s.urls["okx"]["ws_public"]) as o:
        o.send_json({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]})
        snap = o.recv_until(lambda m: m.get("action") == "snapshot")["data"][0]
        hb = o.recv_until(lambda m: m.get("action") == "update", timeout_s=20)["data"][0]
        assert hb["asks"] == [] and hb["bids"] == []
        assert hb["seqId"] == hb["prevSeqId"] == snap["seqId"]
        assert hb["checksum"] == snap["checksum"]  # the book did not change
        hb2 = o.recv_until(lambda m: m.get("action") == "update", timeout_s=20)["data"][0]
        assert hb2["seqId"] == hb2["prevSeqId"] == snap["seqId"]


def test_binance_server_ping_and_pong_timeout():
    with run_sim(symbols=["BTC-USDT"], seed=3, paused=True, binance_ping_s=0.3, binance_pong_timeout_s=1.5) as s:
        quiet = ws(s.urls["binance"]["ws"] + "/btcusdt@trade")  # never reads, so never pongs
        with ws(s.urls["binance"]["ws"] + "/btcusdt@trade") as c:
            op, _payload = c.recv_frame(timeout_s=10)
            assert op == 0x9  # a server ping
            c.send_raw(_payload, 0xA)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:  # recv() answers each ping with a pong
                try:
                    c.recv(timeout_s=0.2)
                except TimeoutError:
                    pass
            c.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 7})
            assert c.recv_until(lambda m: m.get("id") == 7)["result"] == ["btcusdt@trade"]
        with pytest.raises(WsClosed):
            while True:
                quiet.recv(timeout_s=10)
        assert quiet.close_code == 1008
        quiet.close()
