"""Plain-Python venue wire helpers for the baselines: subscribe, login and order frames built
the way a typical user writes them (a dict, `json.dumps`, `hmac.new` per signed request).

Written from the venues' documentation (shared PROTOCOLS.md), independent of feeds/ and oms/,
so the baselines share no code with the pipeline they are compared against.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request

VENUES = ("binance", "okx", "gate")
TICK = {"binance": 0.01, "okx": 0.1, "gate": 0.1}  # BTC-USDT price steps of the simulator


def binance_sym(sym: str) -> str:
    return sym.replace("-", "")


def gate_sym(sym: str) -> str:
    return sym.replace("-", "_")


# ---- market data ---------------------------------------------------------------------------
def md_url(venue: str, urls: dict) -> str:
    if venue == "binance":
        return urls["binance"]["ws"]
    if venue == "okx":
        return urls["okx"].get("ws_public") or urls["okx"]["ws"]
    return urls["gate"]["ws"]


def order_url(venue: str, urls: dict) -> str:
    if venue == "binance":
        return urls["binance"]["ws_api"]
    if venue == "okx":
        return urls["okx"]["ws_private"]
    return urls["gate"]["ws"]


def subscribe_frames(venue: str, symbols: list[str]) -> list[str]:
    """BBO, trades and incremental depth of every symbol (the streams the feed handler uses)."""
    if venue == "binance":
        params = []
        for s in symbols:
            b = binance_sym(s).lower()
            params += [f"{b}@bookTicker", f"{b}@trade", f"{b}@depth@100ms"]
        return [json.dumps({"method": "SUBSCRIBE", "params": params, "id": 1})]
    if venue == "okx":
        args = []
        for s in symbols:
            args += [{"channel": "bbo-tbt", "instId": s}, {"channel": "trades", "instId": s},
                     {"channel": "books", "instId": s}]
        return [json.dumps({"op": "subscribe", "args": args})]
    now = int(time.time())
    pairs = [gate_sym(s) for s in symbols]
    out = [json.dumps({"time": now, "channel": "spot.book_ticker", "event": "subscribe", "payload": pairs}),
           json.dumps({"time": now, "channel": "spot.trades", "event": "subscribe", "payload": pairs})]
    for p in pairs:
        out.append(json.dumps({"time": now, "channel": "spot.order_book_update", "event": "subscribe",
                               "payload": [p, "100ms"]}))
    return out


# ---- authentication ---------------------------------------------------------------------------
def okx_login(api_key: str, secret: str, passphrase: str) -> str:
    ts = str(int(time.time()))
    sign = base64.b64encode(hmac.new(secret.encode(), (ts + "GET/users/self/verify").encode(),
                                     hashlib.sha256).digest()).decode()
    return json.dumps({"op": "login", "args": [{"apiKey": api_key, "passphrase": passphrase, "timestamp": ts,
                                                "sign": sign}]})


def gate_sign(secret: str, event: str, channel: str, req_param: str, ts: str) -> str:
    return hmac.new(secret.encode(), f"{event}\n{channel}\n{req_param}\n{ts}".encode(), hashlib.sha512).hexdigest()


def gate_login(api_key: str, secret: str) -> str:
    ts = str(int(time.time()))
    return json.dumps({"time": int(ts), "channel": "spot.login", "event": "api",
                       "payload": {"api_key": api_key, "timestamp": ts, "req_id": "login-1",
                                   "signature": gate_sign(secret, "api", "spot.login", "", ts)}})


def okx_inst_id_code(rest_url: str, symbol: str) -> int:
    """OKX WS orders need the instrument's integer code (GET /api/v5/public/instruments)."""
    with urllib.request.urlopen(f"{rest_url}/api/v5/public/instruments?instType=SPOT", timeout=10) as r:
        data = json.loads(r.read())["data"]
    for d in data:
        if d.get("instId") == symbol:
            return int(d["instIdCode"])
    raise ValueError(f"OKX has no instrument {symbol}")


# ---- orders -------------------------------------------------------------------------------------
class OrderWire:
    """Builds one venue's order frames per request: dict -> json.dumps, HMAC where the venue
    signs requests (Binance: every request; Gate: the SDK habit of signing each API request)."""

    def __init__(self, venue: str, api_key: str, secret: str, symbol: str, inst_id_code: int = 0) -> None:
        self.venue = venue
        self.api_key = api_key
        self.secret = secret
        self.symbol = symbol
        self.inst_id_code = inst_id_code
        self.rid = 0

    def _binance(self, method: str, params: dict) -> str:
        params["apiKey"] = self.api_key
        params["timestamp"] = int(time.time() * 1000)
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        self.rid += 1
        return json.dumps({"id": self.rid, "method": method, "params": params})

    def _gate(self, channel: str, req_param: dict) -> str:
        ts = str(int(time.time()))
        self.rid += 1
        rp = json.dumps(req_param)
        return json.dumps({"time": int(ts), "channel": channel, "event": "api",
                           "payload": {"req_id": str(self.rid), "req_param": req_param, "api_key": self.api_key,
                                       "timestamp": ts, "signature": gate_sign(self.secret, "api", channel, rp, ts)}})

    def new_post_only(self, cid: str, side: str, px: str, qty: str) -> str:
        v = self.venue
        if v == "binance":
            return self._binance("order.place", {"symbol": binance_sym(self.symbol), "side": side.upper(),
                                                 "type": "LIMIT_MAKER", "price": px, "quantity": qty,
                                                 "newClientOrderId": cid, "newOrderRespType": "RESULT"})
        if v == "okx":
            self.rid += 1
            return json.dumps({"id": str(self.rid), "op": "order",
                               "args": [{"instIdCode": self.inst_id_code, "tdMode": "cash", "side": side,
                                         "ordType": "post_only", "px": px, "sz": qty, "clOrdId": cid}]})
        return self._gate("spot.order_place", {"text": "t-" + cid, "currency_pair": gate_sym(self.symbol),
                                               "type": "limit", "account": "spot", "side": side, "amount": qty,
                                               "price": px, "time_in_force": "poc"})

    def cancel(self, cid: str) -> str:
        v = self.venue
        if v == "binance":
            return self._binance("order.cancel", {"symbol": binance_sym(self.symbol), "origClientOrderId": cid})
        if v == "okx":
            self.rid += 1
            return json.dumps({"id": str(self.rid), "op": "cancel-order",
                               "args": [{"instIdCode": self.inst_id_code, "clOrdId": cid}]})
        return self._gate("spot.order_cancel", {"order_id": "t-" + cid, "currency_pair": gate_sym(self.symbol)})
