"""Binance spot on one port: raw and combined market streams, REST, WS API order entry, user data.

Frame shapes, error codes and the signing rule follow the Binance spot API
documentation (see shared/PROTOCOLS.md section 1).
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import orjson

from sim import auth
from sim.engine import (
    BUY,
    DUPLICATE_CLIENT_ID,
    INSUFFICIENT_BALANCE,
    INVALID_AMEND,
    SELL,
    UNKNOWN_ORDER,
    WOULD_TAKE,
    Order,
)
from sim.market import Book, Instrument
from sim.server import OP_PING, Request, Response, encode_frame, text_frame
from sim.venues.base import VenueApp, VenueSession, json_str, pair_levels

CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
STREAM_RE = re.compile(r"^([a-z0-9]+)@(bookTicker|trade|aggTrade|depth|depth@100ms|depth@1000ms)$")
ZERO8 = "0.00000000"
_EMPTY_JSON_STR = '""'
RATE_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
               {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
               {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
               {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000}]
WS_RATE_LIMITS = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50, "count": 1},
                  {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000, "count": 1}]

_DECIMALS_SEEN: set[str] = set()  # strings DECIMAL_RE accepted (clients repeat prices and sizes)
_RATE_LIMITS_TAIL = b',"rateLimits":' + orjson.dumps(WS_RATE_LIMITS) + b"}"
_EXEC_TYPES = {"new": "NEW", "trade": "TRADE", "canceled": "CANCELED", "expired": "EXPIRED", "amended": "REPLACED",
               "rejected": "REJECTED"}
_OPEN_STATES = frozenset(("NEW", "PARTIALLY_FILLED"))
_RESP_TYPES = frozenset(("ACK", "RESULT", "FULL"))
_CLIENT_ID = re.compile(r"[a-zA-Z0-9_-]{1,36}").fullmatch  # CLIENT_ID_RE without `$` letting a newline in
_PLAIN_ID = re.compile(r"^[a-zA-Z0-9._:-]{0,36}$").match  # ids that need no JSON escaping


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def ms() -> int:
    return time.time_ns() // 1_000_000


class StreamSession(VenueSession):
    """Market streams: /ws/<stream> (raw) or /stream?streams= (combined)."""

    kind = "md"

    def __init__(self, app: BinanceApp, combined: bool, streams: list[str]) -> None:
        super().__init__(app)
        self.combined = combined
        self.initial = streams
        self.bapp = app

    def on_open(self) -> None:
        self.conn.kind = "md"
        for s in self.initial:
            self.app.subscribe(self, s)

    def on_text(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.conn.send_text(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON: expected value"},
                                              "id": None}))
            return
        if not isinstance(msg, dict):
            self.conn.send_text(b'{"error":{"code":2,"msg":"Invalid request: request must be an object"},'
                                b'"id":null}')
            return
        rid = msg.get("id")
        method = msg.get("method")
        params = msg.get("params", [])
        if not (rid is None or isinstance(rid, int | str)) or isinstance(rid, bool):
            self.conn.send_text(orjson.dumps({"error": {"code": 2, "msg": "Invalid request: invalid id"},
                                              "id": None}))
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._err(rid, 2, "Invalid request: params must be a list of stream names")
                return
            for p in params:
                if not self.bapp.valid_stream(p):
                    self._err(rid, 2, f"Invalid request: unknown stream {p[:60]}")
                    return
            for p in params:
                if method == "SUBSCRIBE":
                    if not self.app.subscribe(self, p):
                        self._err(rid, 2, "Invalid request: too many streams")
                        return
                else:
                    self.app.unsubscribe(self, p)
            self.conn.send_text(orjson.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            self.conn.send_text(orjson.dumps({"result": sorted(self.subs), "id": rid}))
        elif method == "SET_PROPERTY":
            if isinstance(params, list) and len(params) == 2 and params[0] == "combined" \
                    and isinstance(params[1], bool):
                self.combined = params[1]
                self.conn.send_text(orjson.dumps({"result": None, "id": rid}))
            else:
                self._err(rid, 1, "Invalid value type: expected Boolean")
        elif method == "GET_PROPERTY":
            if isinstance(params, list) and params == ["combined"]:
                self.conn.send_text(orjson.dumps({"result": self.combined, "id": rid}))
            else:
                self._err(rid, 0, "Unknown property")
        else:
            self._err(rid, 2, "Invalid request: unknown method")

    def _err(self, rid: Any, code: int, msg: str) -> None:
        self.conn.send_text(orjson.dumps({"error": {"code": code, "msg": msg}, "id": rid}))


class ApiSession(VenueSession):
    """WS API (/ws-api/v3): order entry, session logon, user data stream."""

    kind = "orders"

    def __init__(self, app: BinanceApp) -> None:
        super().__init__(app)
        self.bapp = app
        self.user_sub_ids: list[int] = []
        self.next_sub_id = 0
        self.connected_ms = ms()
        self.authorized_ms = 0

    def on_open(self) -> None:
        self.conn.kind = "orders"

    def on_close(self) -> None:
        self.bapp.drop_user_streams(self)
        super().on_close()

    def on_text(self, data: bytes) -> None:
        recv_ns = time.monotonic_ns()
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.app.stats["bad_requests"] += 1
            self.conn.send_text(orjson.dumps({"id": None, "status": 400, "error": {
                "code": -1000, "msg": "Malformed request: request body is not valid JSON."}}))
            return
        if not isinstance(msg, dict):
            self.conn.send_text(orjson.dumps({"id": None, "status": 400, "error": {
                "code": -1102, "msg": "Malformed request: request must be an object."}}))
            return
        rid = msg.get("id")
        if isinstance(rid, str) and len(rid) > 36 or not (rid is None or isinstance(rid, int | str)) \
                or isinstance(rid, bool):
            self.conn.send_text(orjson.dumps({"id": None, "status": 400, "error": {
                "code": -1102, "msg": "Mandatory parameter 'id' was not sent, was empty/null, or malformed."}}))
            return
        method = msg.get("method")
        params = msg.get("params", {})
        if not isinstance(params, dict):
            self._error(rid, BinanceError(-1102, "Mandatory parameter 'params' was not sent, was empty/null, "
                                                 "or malformed."))
            return
        if isinstance(method, str) and method.startswith("v3/"):
            method = method[3:]
        try:
            self.bapp.ws_api(self, rid, method, params, recv_ns)
        except BinanceError as e:
            self._error(rid, e)

    def _error(self, rid: Any, e: BinanceError) -> None:
        self.bapp.stats["orders_rejected"] += 1
        body = {"id": rid, "status": e.status, "error": {"code": e.code, "msg": e.msg},
                "rateLimits": WS_RATE_LIMITS}
        self.bapp.reply(self, orjson.dumps(body))

    def ok(self, rid: Any, result: Any) -> None:
        self.bapp.reply(self, orjson.dumps({"id": rid, "status": 200, "result": result,
                                            "rateLimits": WS_RATE_LIMITS}))

    def ok_raw(self, rid: Any, result_json: bytes) -> None:
        """ok() for a result that is already JSON: the same bytes, without a dict round trip."""
        rid_json = b'"' + rid.encode() + b'"' if rid.__class__ is str and _PLAIN_ID(rid) else orjson.dumps(rid)
        self.bapp.reply(self, b'{"id":' + rid_json + b',"status":200,"result":' + result_json + _RATE_LIMITS_TAIL)


class BinanceApp(VenueApp):
    name = "binance"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.lower = {inst.venue_symbol.lower(): inst for inst in self.instruments.values()}
        self.user_streams: dict[str, list[tuple[ApiSession, int]]] = {}
        self._anon = itertools.count(1)
        self._keys: dict[str, tuple[str, ...]] = {}
        self._ws_handlers = self._ws_handler_table()
        # (symbol, side, type, timeInForce, price, quantity) strings -> validated order terms
        self._limit_terms: dict[tuple, tuple] = {}
        self._er_memo: tuple | None = None  # ((order, client id, lots, ticks), fixed part of its executionReport)

    def reset(self) -> None:
        pass

    def valid_stream(self, name: str) -> bool:
        m = STREAM_RE.match(name)
        return bool(m) and m.group(1) in self.lower

    # -- routing ----------------------------------------------------------------
    def open_ws(self, req: Request) -> Any:
        if len(self.server.conns) > self.cfg.max_connections:
            return Response(429, b'{"code":-1003,"msg":"Too many connections."}')
        p = req.path
        if p == "/ws-api/v3":
            return ApiSession(self)
        if p == "/ws" or p == "/ws/":
            return StreamSession(self, False, [])
        if p.startswith("/ws/"):
            streams = [s for s in p[4:].split("/") if s]
            if not all(self.valid_stream(s) for s in streams):
                return Response(400, b'{"code":-1121,"msg":"Invalid symbol."}')
            return StreamSession(self, False, streams)
        if p == "/stream":
            streams = [s for s in req.args.get("streams", "").split("/") if s]
            if not all(self.valid_stream(s) for s in streams):
                return Response(400, b'{"code":-1121,"msg":"Invalid symbol."}')
            return StreamSession(self, True, streams)
        return None

    # -- market data ----------------------------------------------------------
    def publish(self, symbol: str, book: Book, probe: bool) -> int:
        inst = book.inst
        vs = inst.venue_symbol
        keys = self._keys.get(vs)
        if keys is None:
            ls = vs.lower()
            keys = self._keys[vs] = (ls + "@depth", ls + "@depth@100ms", ls + "@bookTicker", ls + "@trade",
                                     ls + "@aggTrade")
        k1, k2, kt, k, ka = keys
        subs = self.subs
        frames = 0
        e_ms = 0
        if book.chg_bids or book.chg_asks:
            n = len(book.chg_bids) + len(book.chg_asks)
            if symbol in self.skip_seq:
                self.skip_seq.discard(symbol)
                book.update_id += 1
            first = book.update_id + 1
            book.update_id += n
            frames += 1
            if k1 in subs or k2 in subs:
                e_ms = ms()
                raw = (f'{{"e":"depthUpdate","E":{e_ms},"s":"{vs}","U":{first},"u":{book.update_id},'
                       f'"b":[{pair_levels(inst, book.chg_bids.items())}],'
                       f'"a":[{pair_levels(inst, book.chg_asks.items())}]}}')
                rec = self.probe_record(symbol, "depthUpdate", book.update_id) if probe else None
                self._send(k1, raw, rec)
                self._send(k2, raw, rec)
        if book.top_changed:
            frames += 1
            if kt in subs:
                bb, bq, ba, aq = book.last_top
                pxc, qc, px, qty = inst._px_cache, inst._qty_cache, inst.px, inst.qty
                raw = (f'{{"u":{book.update_id},"s":"{vs}","b":"{pxc.get(bb) or px(bb)}",'
                       f'"B":"{qc.get(bq) or qty(bq)}","a":"{pxc.get(ba) or px(ba)}","A":"{qc.get(aq) or qty(aq)}"}}')
                self._send(kt, raw, self.probe_record(symbol, "bookTicker", book.update_id) if probe else None)
        if book.trades:
            frames += len(book.trades)
            if k in subs or ka in subs:
                e_ms = e_ms or ms()
                for taker, t, lots, tid in book.trades:
                    m = "true" if taker == SELL else "false"
                    if k in subs:
                        raw = (f'{{"e":"trade","E":{e_ms},"s":"{vs}","t":{tid},"p":"{inst.px(t)}",'
                               f'"q":"{inst.qty(lots)}","T":{e_ms},"m":{m},"M":true}}')
                        self._send(k, raw, self.probe_record(symbol, "trade", tid) if probe else None)
                    if ka in subs:
                        raw = (f'{{"e":"aggTrade","E":{e_ms},"s":"{vs}","a":{tid},"p":"{inst.px(t)}",'
                               f'"q":"{inst.qty(lots)}","f":{tid},"l":{tid},"T":{e_ms},"m":{m},"M":true}}')
                        self._send(ka, raw, None)
        self.stats["md_frames"] += frames
        return frames

    def _send(self, key: str, raw: str, probe: dict | None) -> None:
        sessions = self.subs.get(key)
        if not sessions:
            return
        plain = wrapped = None
        for s in sessions:
            if s.combined:  # type: ignore[attr-defined]
                if wrapped is None:
                    wrapped = text_frame(f'{{"stream":"{key}","data":{raw}}}')
                s.conn.send_md(wrapped, probe)
            else:
                if plain is None:
                    plain = text_frame(raw)
                s.conn.send_md(plain, probe)

    def ping_all(self, now_ns: int, pong_timeout_ns: int) -> int:
        """Binance pings every connection periodically; one that has not answered a ping for
        pong_timeout_ns is disconnected. Returns the number of pings sent."""
        n = 0
        for c in list(self.server.conns):
            if c.ws is None or c.closed or c.close_sent:
                continue
            if pong_timeout_ns and c.ping_sent_ns and now_ns - c.ping_sent_ns >= pong_timeout_ns:
                c.close(1008, "pong timeout")
                continue
            c.send_now(encode_frame(b"", OP_PING))
            if not c.ping_sent_ns:
                c.ping_sent_ns = now_ns
            n += 1
        return n

    def shutdown_frame(self, conn: Any) -> str:
        ev = f'{{"e":"serverShutdown","E":{ms()}}}'
        ws = conn.ws
        if isinstance(ws, ApiSession):
            return f'{{"event":{ev}}}'
        if isinstance(ws, StreamSession) and ws.combined:
            return f'{{"stream":"!serverShutdown","data":{ev}}}'
        return ev

    # -- formatting of orders -------------------------------------------------------
    def order_view(self, o: Order) -> dict:
        inst = o.inst
        return {"symbol": inst.venue_symbol, "orderId": o.oid, "orderListId": -1, "clientOrderId": o.client_id,
                "price": inst.px(o.ticks), "origQty": inst.qty(o.lots), "executedQty": inst.qty(o.filled_lots),
                "cummulativeQuoteQty": f"{o.cum_quote:.8f}", "status": o.status, "timeInForce": o.tif,
                "type": o.order_type, "side": "BUY" if o.side == BUY else "SELL", "stopPrice": ZERO8,
                "icebergQty": ZERO8, "time": o.create_ms, "updateTime": o.update_ms, "isWorking": True,
                "workingTime": o.working_ms, "origQuoteOrderQty": f"{o.quote_qty:.8f}",
                "selfTradePreventionMode": "EXPIRE_MAKER"}

    def order_result(self, o: Order, resp_type: str = "RESULT") -> dict:
        inst = o.inst
        r = {"symbol": inst.venue_symbol, "orderId": o.oid, "orderListId": -1, "clientOrderId": o.client_id,
             "transactTime": o.update_ms}
        if resp_type == "ACK":
            return r
        r.update({"price": inst.px(o.ticks), "origQty": inst.qty(o.lots), "executedQty": inst.qty(o.filled_lots),
                  "origQuoteOrderQty": f"{o.quote_qty:.8f}", "cummulativeQuoteQty": f"{o.cum_quote:.8f}",
                  "status": o.status, "timeInForce": o.tif, "type": o.order_type,
                  "side": "BUY" if o.side == BUY else "SELL", "workingTime": o.working_ms,
                  "selfTradePreventionMode": "EXPIRE_MAKER"})
        if resp_type == "FULL":
            r["fills"] = [{"price": inst.px(f.ticks), "qty": inst.qty(f.lots), "commission": f"{f.fee:.8f}",
                           "commissionAsset": f.fee_asset, "tradeId": f.trade_id}
                          for f in o.extra.get("fills", ())]
        return r

    def order_result_json(self, o: Order, resp_type: str = "RESULT") -> bytes:
        """orjson.dumps(order_result(o, resp_type)), formatted directly (the order-entry hot path).
        Only for orders built by build_order: symbol and client id need no escaping."""
        inst = o.inst
        if resp_type == "ACK":
            return (f'{{"symbol":"{inst.venue_symbol}","orderId":{o.oid},"orderListId":-1,'
                    f'"clientOrderId":"{o.client_id}","transactTime":{o.update_ms}}}').encode()
        qq, cq = o.quote_qty, o.cum_quote  # never -0.0: sums of positive amounts from 0.0
        body = (f'{{"symbol":"{inst.venue_symbol}","orderId":{o.oid},"orderListId":-1,"clientOrderId":"{o.client_id}",'
                f'"transactTime":{o.update_ms},"price":"{inst.px(o.ticks)}","origQty":"{inst.qty(o.lots)}",'
                f'"executedQty":"{inst.qty(o.filled_lots)}","origQuoteOrderQty":"{f"{qq:.8f}" if qq else ZERO8}",'
                f'"cummulativeQuoteQty":"{f"{cq:.8f}" if cq else ZERO8}","status":"{o.status}","timeInForce":"{o.tif}",'
                f'"type":"{o.order_type}","side":"{"BUY" if o.side == BUY else "SELL"}",'
                f'"workingTime":{o.working_ms},"selfTradePreventionMode":"EXPIRE_MAKER"').encode()
        if resp_type == "FULL":
            fills = [{"price": inst.px(f.ticks), "qty": inst.qty(f.lots), "commission": f"{f.fee:.8f}",
                      "commissionAsset": f.fee_asset, "tradeId": f.trade_id} for f in o.extra.get("fills", ())]
            return body + b',"fills":' + orjson.dumps(fills) + b"}"
        return body + b"}"

    def cancel_result(self, o: Order) -> dict:
        inst = o.inst
        return {"symbol": inst.venue_symbol, "origClientOrderId": o.orig_client_id or o.client_id,
                "orderId": o.oid, "orderListId": -1, "clientOrderId": o.extra.get("cancel_cid") or o.client_id,
                "transactTime": o.update_ms, "price": inst.px(o.ticks), "origQty": inst.qty(o.lots),
                "executedQty": inst.qty(o.filled_lots), "origQuoteOrderQty": f"{o.quote_qty:.8f}",
                "cummulativeQuoteQty": f"{o.cum_quote:.8f}", "status": o.status, "timeInForce": o.tif,
                "type": o.order_type, "side": "BUY" if o.side == BUY else "SELL",
                "selfTradePreventionMode": "EXPIRE_MAKER"}

    def cancel_result_json(self, o: Order) -> bytes:
        """orjson.dumps(cancel_result(o)) formatted directly (every order.cancel answer); the
        client ids go through json_str: a cancel's newClientOrderId is taken as sent."""
        inst = o.inst
        cid = o.client_id
        qq, cq = o.quote_qty, o.cum_quote
        return (f'{{"symbol":"{inst.venue_symbol}","origClientOrderId":{json_str(o.orig_client_id or cid)},'
                f'"orderId":{o.oid},"orderListId":-1,"clientOrderId":{json_str(o.extra.get("cancel_cid") or cid)},'
                f'"transactTime":{o.update_ms},"price":"{inst.px(o.ticks)}","origQty":"{inst.qty(o.lots)}",'
                f'"executedQty":"{inst.qty(o.filled_lots)}","origQuoteOrderQty":"{f"{qq:.8f}" if qq else ZERO8}",'
                f'"cummulativeQuoteQty":"{f"{cq:.8f}" if cq else ZERO8}","status":"{o.status}","timeInForce":"{o.tif}",'
                f'"type":"{o.order_type}","side":"{"BUY" if o.side == BUY else "SELL"}",'
                f'"selfTradePreventionMode":"EXPIRE_MAKER"}}').encode()

    # -- auth ------------------------------------------------------------------------
    def check_ts(self, params: dict) -> None:
        ts = params.get("timestamp")
        if ts.__class__ is int and "recvWindow" not in params:  # the common request: integer ms, default window
            now_us = time.time_ns() // 1000
            ts_us = ts * 1000 if ts < 10**14 else ts
            if ts_us >= now_us + 1_000_000:
                raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
            if now_us - ts_us > 5_000_000:
                raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
            return
        if ts is None or ts == "":
            raise mandatory("timestamp")
        try:
            ts_v = int(ts)
        except (TypeError, ValueError):
            raise BinanceError(-1100, "Illegal characters found in parameter 'timestamp'; legal range is "
                                      "'^[0-9]{1,20}$'.") from None
        rw = params.get("recvWindow", 5000)
        try:
            rw_ms = float(rw)
        except (TypeError, ValueError):
            raise BinanceError(-1100, "Illegal characters found in parameter 'recvWindow'.") from None
        if not 0 < rw_ms <= 60000:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        now_us = time.time_ns() // 1000
        ts_us = ts_v * 1000 if ts_v < 10**14 else ts_v
        if ts_us >= now_us + 1_000_000:
            raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_us - ts_us > rw_ms * 1000:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def check_signature(self, api_key: Any, payload: str, signature: Any) -> None:
        acc = self.sim.accounts.get(api_key) if isinstance(api_key, str) else None
        if acc is None:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if not isinstance(signature, str) or not signature:
            raise mandatory("signature")
        if acc.ed25519_public_key:
            ok = auth.ed25519_verify_b64(acc.ed25519_public_key, payload, signature)
        else:
            ok = auth.hmac_hex_equal(auth.binance_hmac_hex(acc.secret, payload), signature)
        if not ok:
            raise BinanceError(-1022, "Signature for this request is not valid.")

    def ws_auth(self, sess: ApiSession, params: dict) -> str:
        """Signed WS API request: returns the api key it acts for."""
        if "signature" in params:
            api_key = params.get("apiKey")
            if not api_key:
                raise mandatory("apiKey")
            self.check_signature(api_key, auth.binance_ws_payload(params), params["signature"])
            self.check_ts(params)
            return api_key
        if sess.api_key is None:
            raise mandatory("signature")
        if "apiKey" in params and params["apiKey"] != sess.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        self.check_ts(params)
        return sess.api_key

    # -- WS API -------------------------------------------------------------------------
    def ws_api(self, sess: ApiSession, rid: Any, method: Any, params: dict, recv_ns: int) -> None:
        h = self._ws_handlers.get(method) if method.__class__ is str else None
        if h is None:
            raise BinanceError(-1102 if method is None else -1020,
                               "Mandatory parameter 'method' was not sent, was empty/null, or malformed."
                               if method is None else "This operation is not supported.")
        h(sess, rid, method, params, recv_ns)

    def _ws_handler_table(self) -> dict[str, Any]:
        return {"ping": lambda sess, rid, *_: sess.ok(rid, {}),
                "time": lambda sess, rid, *_: sess.ok(rid, {"serverTime": ms()}),
                "exchangeInfo": lambda sess, rid, *_: sess.ok(rid, self.exchange_info(None)),
                "depth": self._ws_depth, "session.logon": self._ws_logon,
                "session.status": lambda sess, rid, *_: sess.ok(rid, self.session_status(sess)),
                "session.logout": self._ws_logout, "order.place": self._ws_place, "order.test": self._ws_place,
                "order.cancel": self._ws_cancel, "order.cancelReplace": self._ws_cancel_replace,
                "order.amend.keepPriority": self._ws_amend, "order.status": self._ws_status,
                "openOrders.status": self._ws_open_orders, "openOrders.cancelAll": self._ws_cancel_all,
                "account.status": self._ws_account, "userDataStream.subscribe": self._ws_uds_subscribe,
                "userDataStream.subscribe.signature": self._ws_uds_subscribe,
                "userDataStream.unsubscribe": self._ws_uds_unsubscribe}

    def _too_many(self) -> BinanceError:
        return BinanceError(-1015, "Too many new orders; current limit is 50 orders per 10 SECOND.", 429)

    def _ws_depth(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        inst = self.symbol_param(params)
        sess.ok(rid, self.depth_snapshot(inst, params.get("limit", 100)))

    def _ws_logon(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        api_key = self.ws_auth(sess, params)
        sess.api_key = api_key
        sess.authorized_ms = ms()
        sess.ok(rid, self.session_status(sess))

    def _ws_logout(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        sess.api_key = None
        sess.authorized_ms = 0
        sess.ok(rid, self.session_status(sess))

    def _ws_place(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        self.note_order(method, params.get("newClientOrderId"), recv_ns)
        if (self.rate_limit_count or self.rate_limit_until_ns) and self.rate_limited():
            raise self._too_many()
        key = self.ws_auth(sess, params)
        o, resp_type = self.build_order(key, params)
        if method == "order.test":
            sess.ok(rid, {})
            return
        self.run_place(o)
        sess.ok_raw(rid, self.order_result_json(o, resp_type))
        self.stats["orders_acked"] += 1
        if self.engine.events:
            self.dispatch_events()

    def _ws_cancel(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        self.note_order(method, params.get("origClientOrderId") or params.get("orderId"), recv_ns)
        if (self.rate_limit_count or self.rate_limit_until_ns) and self.rate_limited():
            raise self._too_many()
        key = self.ws_auth(sess, params)
        o = self.cancel_from_params(key, params)
        sess.ok_raw(rid, self.cancel_result_json(o))
        self.stats["orders_acked"] += 1
        self.dispatch_events()

    def _ws_cancel_replace(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        self.note_order(method, params.get("newClientOrderId"), recv_ns)
        if self.rate_limited():
            raise self._too_many()
        key = self.ws_auth(sess, params)
        sess.ok(rid, self.cancel_replace(key, params))
        self.stats["orders_acked"] += 1
        self.dispatch_events()

    def _ws_amend(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        self.note_order(method, params.get("origClientOrderId") or params.get("orderId"), recv_ns)
        if self.rate_limited():
            raise self._too_many()
        key = self.ws_auth(sess, params)
        sess.ok(rid, self.amend_keep_priority(key, params))
        self.stats["orders_acked"] += 1
        self.dispatch_events()

    def _ws_status(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        key = self.ws_auth(sess, params)
        inst = self.symbol_param(params)
        o = self.find_order(key, params, "origClientOrderId")
        if o is None or o.inst is not inst:
            raise BinanceError(-2013, "Order does not exist.")
        sess.ok(rid, self.order_view(o))

    def _ws_open_orders(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        key = self.ws_auth(sess, params)
        sym = self.symbol_param(params).symbol if params.get("symbol") else None
        sess.ok(rid, [self.order_view(o) for o in self.engine.open_orders(key, sym)])

    def _ws_cancel_all(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        self.note_order(method, None, recv_ns)
        key = self.ws_auth(sess, params)
        inst = self.symbol_param(params)
        done = self.engine.cancel_all(key, inst.symbol)
        if not done:
            raise BinanceError(-2011, "Unknown order sent.")
        sess.ok(rid, [self.cancel_result(o) for o in done])
        self.dispatch_events()

    def _ws_account(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        key = self.ws_auth(sess, params)
        sess.ok(rid, self.account_info(key))

    def _ws_uds_subscribe(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        if method == "userDataStream.subscribe.signature":
            key = self.ws_auth(sess, params)
        else:
            if sess.api_key is None:
                raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            key = sess.api_key
        sub_id = sess.next_sub_id
        sess.next_sub_id += 1
        sess.user_sub_ids.append(sub_id)
        self.user_streams.setdefault(key, []).append((sess, sub_id))
        sess.ok(rid, {"subscriptionId": sub_id})

    def _ws_uds_unsubscribe(self, sess: ApiSession, rid: Any, method: str, params: dict, recv_ns: int) -> None:
        sub = params.get("subscriptionId")
        streams = [(s, i) for lst in self.user_streams.values() for s, i in lst if s is sess]
        if sub is not None and not any(i == sub for _, i in streams):
            raise BinanceError(-2035, "User Data Stream subscription not active.")
        for lst in self.user_streams.values():
            lst[:] = [(s, i) for s, i in lst if not (s is sess and (sub is None or i == sub))]
        sess.ok(rid, {})

    def session_status(self, sess: ApiSession) -> dict:
        return {"apiKey": sess.api_key, "authorizedSince": sess.authorized_ms or None,
                "connectedSince": sess.connected_ms, "returnRateLimits": True, "serverTime": ms(),
                "userDataStream": bool(sess.user_sub_ids)}

    def drop_user_streams(self, sess: ApiSession) -> None:
        for lst in self.user_streams.values():
            lst[:] = [(s, i) for s, i in lst if s is not sess]

    # -- order helpers ----------------------------------------------------------------
    def symbol_param(self, params: dict) -> Instrument:
        s = params.get("symbol")
        if not s:
            raise mandatory("symbol")
        inst = self.instrument(s)
        if inst is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return inst

    def decimal_param(self, params: dict, name: str, required: bool = True) -> str | None:
        v = params.get(name)
        if v is None or v == "":
            if required:
                raise mandatory(name)
            return None
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                      "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
        s = v if isinstance(v, str) else repr(v)
        if s in _DECIMALS_SEEN:
            return s
        if not DECIMAL_RE.match(s):
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                      "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
        if len(_DECIMALS_SEEN) > 100_000:
            _DECIMALS_SEEN.clear()
        _DECIMALS_SEEN.add(s)
        return s

    def build_order(self, key: str, params: dict) -> tuple[Order, str]:
        # lean path: a LIMIT / LIMIT_MAKER whose symbol, side, type, tif, price and quantity were
        # all accepted before (strategies repeat them) is one dict lookup; anything else, and
        # every error, takes the full checks below
        ps, qs = params.get("price"), params.get("quantity")
        if ps.__class__ is str and qs.__class__ is str:
            hit = self._limit_terms.get((params.get("symbol"), params.get("side"), params.get("type"),
                                         params.get("timeInForce"), ps, qs))
            if hit is not None:
                cid = params.get("newClientOrderId")
                resp_type = params.get("newOrderRespType") or "FULL"
                if cid.__class__ is str and (len(cid) <= 36 and cid.isascii() and cid.isalnum() or _CLIENT_ID(cid)) \
                        and resp_type in _RESP_TYPES:
                    inst, side, ticks, lots, tif, typ = hit
                    return self.engine.new_order(key, inst, side, ticks, lots, tif, typ == "LIMIT_MAKER", cid,
                                                 typ), resp_type
        o, resp_type = self._build_order(key, params)
        if o.order_type != "MARKET" and ps.__class__ is str and qs.__class__ is str:
            if len(self._limit_terms) > 50_000:
                self._limit_terms.clear()
            self._limit_terms[(params.get("symbol"), params.get("side"), params.get("type"),
                               params.get("timeInForce"), ps, qs)] = (o.inst, o.side, o.ticks, o.lots, o.tif,
                                                                      o.order_type)
        return o, resp_type

    def _build_order(self, key: str, params: dict) -> tuple[Order, str]:
        inst = self.symbol_param(params)
        side_s = params.get("side")
        if not side_s:
            raise mandatory("side")
        if side_s not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        typ = params.get("type")
        if not typ:
            raise mandatory("type")
        if typ not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise BinanceError(-1116, "Invalid orderType.")
        tif = params.get("timeInForce")
        if typ == "LIMIT":
            if not tif:
                raise mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(-1115, "Invalid timeInForce.")
        elif tif is not None:
            raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
        cid = params.get("newClientOrderId")
        if cid is None or cid == "":
            cid = "sim" + str(next(self._anon))
        elif not isinstance(cid, str) or not (len(cid) <= 36 and cid.isascii() and cid.isalnum()) \
                and not _CLIENT_ID(cid):
            raise BinanceError(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range "
                                      "is '^[a-zA-Z0-9-_]{1,36}$'.")
        resp_type = params.get("newOrderRespType") or "FULL"
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
        side = BUY if side_s == "BUY" else SELL
        quote_qty = 0.0
        if typ == "MARKET":
            qs = self.decimal_param(params, "quantity", required=False)
            qq = self.decimal_param(params, "quoteOrderQty", required=False)
            if (qs is None) == (qq is None):
                raise BinanceError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                                          "empty/null!")
            if qs is not None:
                lots = inst.parse_qty(qs)
                if lots is None:
                    raise BinanceError(-1013, "Filter failure: LOT_SIZE")
            else:
                quote_qty = float(qq or 0)
                if quote_qty < inst.min_notional:
                    raise BinanceError(-1013, "Filter failure: NOTIONAL")
                lots = 10**15  # bounded by the quote amount when executing
            ticks = 0
        else:
            ps = self.decimal_param(params, "price")
            qs = self.decimal_param(params, "quantity")
            ticks = inst.parse_px(ps)  # type: ignore[arg-type]
            if ticks is None:
                raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
            lots = inst.parse_qty(qs)  # type: ignore[arg-type]
            if lots is None or lots < inst.min_lots:
                raise BinanceError(-1013, "Filter failure: LOT_SIZE")
            if inst.px_float(ticks) * inst.qty_float(lots) < inst.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
        o = self.engine.new_order(key, inst, side, ticks, lots, tif or ("IOC" if typ == "MARKET" else "GTC"),
                                  typ == "LIMIT_MAKER", cid, typ)
        o.quote_qty = quote_qty
        if typ == "MARKET" and quote_qty and side == SELL:
            raise BinanceError(-1013, "Filter failure: quoteOrderQty on SELL is not supported by the simulator")
        return o, resp_type

    def run_place(self, o: Order) -> None:
        fills_before = len(self.engine.events)
        why = self.engine.place(o)
        if why:
            raise self.place_error(why)
        if o.filled_lots:  # the FULL response lists the fills taken on arrival (none: no list)
            o.extra["fills"] = [f for k, _o, f in self.engine.events[fills_before:] if k == "trade" and _o is o]

    def place_error(self, why: str) -> BinanceError:
        if why == INSUFFICIENT_BALANCE:
            return BinanceError(-2010, "Account has insufficient balance for requested action.")
        if why == WOULD_TAKE:
            return BinanceError(-2010, "Order would immediately match and take.")
        if why == DUPLICATE_CLIENT_ID:
            return BinanceError(-2010, "Duplicate order sent.")
        return BinanceError(-2010, "Order rejected: " + why)

    def find_order(self, key: str, params: dict, cid_field: str, oid_field: str = "orderId") -> Order | None:
        oid = params.get(oid_field)
        cid = params.get(cid_field)
        if oid is None and not cid:
            raise BinanceError(-1102, f"Param '{cid_field}' or '{oid_field}' must be sent, but both were "
                                      "empty/null!")
        if oid is not None:
            try:
                oid = int(oid)
            except (TypeError, ValueError):
                raise BinanceError(-1100, f"Illegal characters found in parameter '{oid_field}'.") from None
            return self.engine.find(key, oid=oid)
        return self.engine.find(key, client_id=str(cid))

    def cancel_from_params(self, key: str, params: dict, oid_field: str = "orderId",
                           cid_field: str = "origClientOrderId") -> Order:
        inst = self.symbol_param(params)
        o = self.find_order(key, params, cid_field, oid_field)
        if o is None or o.inst is not inst or not o.is_open:
            raise BinanceError(-2011, "Unknown order sent.")
        new_cid = params.get("newClientOrderId")
        if new_cid:
            o.extra["cancel_cid"] = str(new_cid)
        if self.engine.cancel(o) == UNKNOWN_ORDER:
            raise BinanceError(-2011, "Unknown order sent.")
        return o

    def cancel_replace(self, key: str, params: dict) -> dict:
        mode = params.get("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise mandatory("cancelReplaceMode")
        new_o, resp_type = self.build_order(key, params)
        try:
            old = self.cancel_from_params(key, params, "cancelOrderId", "cancelOrigClientOrderId")
        except BinanceError as e:
            if mode == "STOP_ON_FAILURE":
                raise BinanceError(-2022, "Order cancel-replace failed.", 400) from e
            old = None
            cancel_resp: dict = {"code": e.code, "msg": e.msg}
        else:
            cancel_resp = self.cancel_result(old)
        try:
            self.run_place(new_o)
            new_resp: Any = self.order_result(new_o, resp_type)
            new_res = "SUCCESS"
        except BinanceError as e:
            new_resp = {"code": e.code, "msg": e.msg}
            new_res = "FAILURE"
        if old is None and new_res == "FAILURE":
            raise BinanceError(-2022, "Order cancel-replace failed.")
        return {"cancelResult": "SUCCESS" if old is not None else "FAILURE", "newOrderResult": new_res,
                "cancelResponse": cancel_resp, "newOrderResponse": new_resp}

    def amend_keep_priority(self, key: str, params: dict) -> dict:
        inst = self.symbol_param(params)
        o = self.find_order(key, params, "origClientOrderId")
        if o is None or o.inst is not inst or not o.is_open:
            raise BinanceError(-2013, "Order does not exist.")
        qs = self.decimal_param(params, "newQty")
        lots = inst.parse_qty(qs)  # type: ignore[arg-type]
        if lots is None:
            raise BinanceError(-1013, "Filter failure: LOT_SIZE")
        if lots >= o.lots:
            raise BinanceError(-2038, "Order amend (quantity increase) is not supported.")
        why = self.engine.amend(o, None, lots, keep_priority=True)
        if why == INVALID_AMEND:
            raise BinanceError(-2038, "Order amend (quantity increase) is not supported.")
        if why:
            raise BinanceError(-2013, "Order does not exist.")
        new_cid = params.get("newClientOrderId")
        orig = o.client_id
        if new_cid:
            o.orig_client_id, o.client_id = o.client_id, str(new_cid)
        return {"transactTime": o.update_ms, "executionId": next(self._anon),
                "amendedOrder": {"symbol": inst.venue_symbol, "orderId": o.oid, "orderListId": -1,
                                 "origClientOrderId": orig, "clientOrderId": o.client_id,
                                 "price": inst.px(o.ticks), "qty": inst.qty(o.lots),
                                 "executedQty": inst.qty(o.filled_lots), "preventedQty": ZERO8,
                                 "quoteOrderQty": ZERO8, "cumulativeQuoteQty": f"{o.cum_quote:.8f}",
                                 "status": o.status, "timeInForce": o.tif, "type": o.order_type,
                                 "side": "BUY" if o.side == BUY else "SELL", "workingTime": o.working_ms,
                                 "selfTradePreventionMode": "EXPIRE_MAKER"}}

    # -- user data events -------------------------------------------------------------------
    def on_order_event(self, kind: str, o: Order, fill: Any) -> None:
        subs = self.user_streams.get(o.api_key)
        if not subs:
            return
        inst = o.inst
        now = ms()
        ev = self.execution_report_json(kind, o, fill, now)
        pos = None
        if kind == "trade":
            acc = self.engine.account(o.api_key)
            pos = {"e": "outboundAccountPosition", "E": now, "u": now,
                   "B": [{"a": a, "f": f"{acc[a][0]:.8f}", "l": f"{acc[a][1]:.8f}"}
                         for a in (inst.base, inst.quote)]}
        for sess, sub_id in list(subs):
            sess.conn.send_text(f'{{"subscriptionId":{sub_id},"event":{ev}}}')
            if pos is not None:
                sess.conn.send_text(orjson.dumps({"subscriptionId": sub_id, "event": pos}))

    def execution_report(self, kind: str, o: Order, fill: Any, now: int) -> dict:
        """The executionReport event as a dict: the reference for execution_report_json."""
        inst = o.inst
        if kind == "new":
            status = "NEW"
        elif kind == "trade":
            status = "FILLED" if o.filled_lots >= o.lots else "PARTIALLY_FILLED"
        else:
            status = o.status
        ev = {"e": "executionReport", "E": now, "s": inst.venue_symbol, "c": o.client_id,
              "S": "BUY" if o.side == BUY else "SELL", "o": o.order_type, "f": o.tif, "q": inst.qty(o.lots),
              "p": inst.px(o.ticks), "P": ZERO8, "F": ZERO8, "g": -1,
              "C": (o.orig_client_id or o.client_id) if kind == "canceled" else "",
              "x": _EXEC_TYPES[kind], "X": status, "r": "NONE", "i": o.oid,
              "l": inst.qty(fill.lots) if fill else ZERO8,
              "z": inst.qty(o.filled_lots) if kind != "new" else ZERO8,
              "L": inst.px(fill.ticks) if fill else ZERO8,
              "n": f"{fill.fee:.8f}" if fill else "0", "N": fill.fee_asset if fill else None,
              "T": fill.ts_ms if fill else o.update_ms, "t": fill.trade_id if fill else -1,
              "I": next(self._anon), "w": o.is_open and o.order_type != "MARKET",
              "m": bool(fill.maker) if fill else False, "M": False, "O": o.create_ms,
              "Z": f"{o.cum_quote:.8f}", "Y": f"{fill.quote:.8f}" if fill else ZERO8,
              "Q": f"{o.quote_qty:.8f}", "W": o.working_ms, "V": "EXPIRE_MAKER"}
        if kind == "canceled" and o.extra.get("cancel_cid"):
            ev["c"] = o.extra["cancel_cid"]
            ev["C"] = o.client_id
        return ev

    def execution_report_json(self, kind: str, o: Order, fill: Any, now: int) -> str:
        """orjson.dumps(execution_report(...)) formatted from a template: two of these go out per
        order on a session with the user data stream, and building then dumping a 34-key dict
        was a third of the order path (a unit test holds the two equal)."""
        inst = o.inst
        if kind == "new":
            status = "NEW"
        elif kind == "trade":
            status = "FILLED" if o.filled_lots >= o.lots else "PARTIALLY_FILLED"
        else:
            status = o.status
        c = o.client_id
        cc = ""
        if kind == "canceled":
            cc = o.orig_client_id or c
            cancel_cid = o.extra.get("cancel_cid")
            if cancel_cid:
                c, cc = cancel_cid, c
        qc = inst._qty_cache
        if fill is None:
            fill_part = (f'"l":"{ZERO8}","z":"{ZERO8 if kind == "new" else qc.get(o.filled_lots) or inst.qty(o.filled_lots)}",'
                         f'"L":"{ZERO8}","n":"0","N":null,"T":{o.update_ms},"t":-1,')
            maker = "false"
            last_quote = ZERO8
        else:
            fill_part = (f'"l":"{inst.qty(fill.lots)}","z":"{inst.qty(o.filled_lots)}","L":"{inst.px(fill.ticks)}",'
                         f'"n":"{fill.fee:.8f}","N":{json_str(fill.fee_asset)},"T":{fill.ts_ms},"t":{fill.trade_id},')
            maker = "true" if fill.maker else "false"
            last_quote = f"{fill.quote:.8f}"
        # "s" to "g" only change with the client id shown, size or price: an order's reports (two or
        # more each) reuse them
        key = (o, c, o.lots, o.ticks)
        memo = self._er_memo
        if memo is not None and memo[0] == key:
            fixed = memo[1]
        else:
            fixed = (f'"s":"{inst.venue_symbol}","c":{json_str(c)},"S":"{"BUY" if o.side == BUY else "SELL"}",'
                     f'"o":"{o.order_type}","f":"{o.tif}","q":"{qc.get(o.lots) or inst.qty(o.lots)}",'
                     f'"p":"{inst._px_cache.get(o.ticks) or inst.px(o.ticks)}","P":"{ZERO8}","F":"{ZERO8}","g":-1,')
            self._er_memo = (key, fixed)
        working = "true" if o.status in _OPEN_STATES and o.order_type != "MARKET" else "false"
        qq, cq = o.quote_qty, o.cum_quote  # never -0.0: sums of positive amounts from 0.0
        return (f'{{"e":"executionReport","E":{now},{fixed}"C":{json_str(cc) if cc else _EMPTY_JSON_STR},'
                f'"x":"{_EXEC_TYPES[kind]}","X":"{status}",'
                f'"r":"NONE","i":{o.oid},{fill_part}"I":{next(self._anon)},"w":{working},"m":{maker},"M":false,'
                f'"O":{o.create_ms},"Z":"{f"{cq:.8f}" if cq else ZERO8}","Y":"{last_quote}",'
                f'"Q":"{f"{qq:.8f}" if qq else ZERO8}",'
                f'"W":{o.working_ms},"V":"EXPIRE_MAKER"}}')

    # -- REST ----------------------------------------------------------------------------
    def exchange_info(self, only: list[str] | None) -> dict:
        syms = []
        for inst in self.instruments.values():
            if only and inst.venue_symbol not in only:
                continue
            syms.append({
                "symbol": inst.venue_symbol, "status": "TRADING", "baseAsset": inst.base,
                "baseAssetPrecision": 8, "quoteAsset": inst.quote, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "icebergAllowed": False,
                "ocoAllowed": False, "otoAllowed": False, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": False, "cancelReplaceAllowed": True, "amendAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": inst.px(1), "maxPrice": "1000000.00000000",
                     "tickSize": inst.px(1)},
                    {"filterType": "LOT_SIZE", "minQty": inst.qty(inst.min_lots), "maxQty": "9000.00000000",
                     "stepSize": inst.qty(1)},
                    {"filterType": "NOTIONAL", "minNotional": f"{inst.min_notional:.8f}",
                     "applyMinToMarket": True, "maxNotional": "9000000.00000000", "applyMaxToMarket": False,
                     "avgPriceMins": 5},
                    {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200}],
                "permissions": [], "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE"]})
        return {"timezone": "UTC", "serverTime": ms(), "rateLimits": RATE_LIMITS, "exchangeFilters": [],
                "symbols": syms}

    def depth_snapshot(self, inst: Instrument, limit: Any) -> dict:
        try:
            n = int(limit)
        except (TypeError, ValueError):
            raise BinanceError(-1100, "Illegal characters found in parameter 'limit'.") from None
        n = max(1, min(n, 5000))
        b = self.books[inst.symbol]
        return {"lastUpdateId": b.update_id,
                "bids": [[inst.px(t), inst.qty(q)] for t, q in b.top_bids(n)],
                "asks": [[inst.px(t), inst.qty(q)] for t, q in b.top_asks(n)]}

    def account_info(self, key: str) -> dict:
        acc = self.engine.account(key)
        return {"makerCommission": int(self.cfg.maker_fee * 10000), "takerCommission": int(self.cfg.taker_fee * 10000),
                "canTrade": True, "canWithdraw": False, "canDeposit": False, "updateTime": ms(),
                "accountType": "SPOT", "permissions": ["SPOT"],
                "balances": [{"asset": a, "free": f"{v[0]:.8f}", "locked": f"{v[1]:.8f}"} for a, v in acc.items()]}

    def handle_http(self, req: Request) -> Response:
        try:
            return self._http(req)
        except BinanceError as e:
            self.stats["bad_requests"] += 1
            return Response(e.status, orjson.dumps({"code": e.code, "msg": e.msg}))

    def rest_signed(self, req: Request) -> str:
        params = dict(req.args)
        if req.body and req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qsl
            params.update(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        key = req.headers.get("x-mbx-apikey")
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        if "signature" not in params:
            raise mandatory("signature")
        self.check_signature(key, auth.binance_rest_payload(req.query, req.body), params["signature"])
        self.check_ts(params)
        req.args = params
        return key

    def _http(self, req: Request) -> Response:
        p, m = req.path, req.method
        j = orjson.dumps
        if p == "/api/v3/ping":
            return Response(200, b"{}")
        if p == "/api/v3/time":
            return Response(200, j({"serverTime": ms()}))
        if p == "/api/v3/exchangeInfo":
            only = None
            if req.args.get("symbol"):
                only = [req.args["symbol"]]
            elif req.args.get("symbols"):
                try:
                    only = orjson.loads(req.args["symbols"])
                except orjson.JSONDecodeError:
                    raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
            if only and not all(isinstance(s, str) and self.instrument(s) for s in only):
                raise BinanceError(-1121, "Invalid symbol.")
            return Response(200, j(self.exchange_info(only)))
        if p == "/api/v3/depth":
            inst = self.symbol_param(req.args)
            return Response(200, j(self.depth_snapshot(inst, req.args.get("limit", 100))))
        if p == "/api/v3/ticker/bookTicker":
            inst = self.symbol_param(req.args)
            b = self.books[inst.symbol]
            bb, bq, ba, aq = b.top()
            return Response(200, j({"symbol": inst.venue_symbol, "bidPrice": inst.px(bb), "bidQty": inst.qty(bq),
                                    "askPrice": inst.px(ba), "askQty": inst.qty(aq)}))
        if p == "/api/v3/openOrders":
            key = self.rest_signed(req)
            if m == "GET":
                sym = self.symbol_param(req.args).symbol if req.args.get("symbol") else None
                return Response(200, j([self.order_view(o) for o in self.engine.open_orders(key, sym)]))
            if m == "DELETE":
                self.note_order("openOrders.cancelAll", None, time.monotonic_ns())
                inst = self.symbol_param(req.args)
                done = self.engine.cancel_all(key, inst.symbol)
                if not done:
                    raise BinanceError(-2011, "Unknown order sent.")
                out = [self.cancel_result(o) for o in done]
                self.dispatch_events()
                return Response(200, j(out))
        if p == "/api/v3/myTrades" and m == "GET":
            key = self.rest_signed(req)
            inst = self.symbol_param(req.args)
            limit = max(1, min(int(req.args.get("limit", "500") or 500), 1000))
            fills = self.engine.recent_fills(key, inst.symbol)[-limit:]
            return Response(200, j([{"symbol": inst.venue_symbol, "id": f.trade_id, "orderId": f.order.oid,
                                     "orderListId": -1, "price": inst.px(f.ticks), "qty": inst.qty(f.lots),
                                     "quoteQty": f"{f.quote:.8f}", "commission": f"{f.fee:.8f}",
                                     "commissionAsset": f.fee_asset, "time": f.ts_ms,
                                     "isBuyer": f.order.side == BUY, "isMaker": f.maker, "isBestMatch": True}
                                    for f in fills]))
        if p == "/api/v3/account" and m == "GET":
            key = self.rest_signed(req)
            return Response(200, j(self.account_info(key)))
        if p == "/api/v3/order":
            key = self.rest_signed(req)
            if m == "POST":
                self.note_order("order.place", req.args.get("newClientOrderId"), time.monotonic_ns())
                if self.rate_limited():
                    raise BinanceError(-1015, "Too many new orders; current limit is 50 orders per 10 SECOND.",
                                       429)
                o, resp_type = self.build_order(key, req.args)
                self.run_place(o)
                self.stats["orders_acked"] += 1
                out = j(self.order_result(o, resp_type))
                self.dispatch_events()
                return Response(200, out)
            if m == "DELETE":
                o = self.cancel_from_params(key, req.args)
                out = j(self.cancel_result(o))
                self.dispatch_events()
                return Response(200, out)
            if m == "GET":
                inst = self.symbol_param(req.args)
                o = self.find_order(key, req.args, "origClientOrderId")
                if o is None or o.inst is not inst:
                    raise BinanceError(-2013, "Order does not exist.")
                return Response(200, j(self.order_view(o)))
        return Response(404, b'{"code":-1020,"msg":"This operation is not supported."}')
