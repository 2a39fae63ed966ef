"""Gate (API v4) spot on one port: WS market data, private channels, WS API order entry, REST.

Frame shapes, labels and signing follow the Gate API v4 and spot WS v4
documentation (see shared/PROTOCOLS.md section 3). Order requests get two
replies: an ack, then the result.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson

from sim import auth
from sim.engine import BUY, DUPLICATE_CLIENT_ID, INSUFFICIENT_BALANCE, INVALID_AMEND, SELL, WOULD_TAKE, Order
from sim.market import Book, Instrument
from sim.server import Request, Response, text_frame
from sim.venues.base import VenueApp, VenueSession, json_str, pair_levels

_OPEN_STATES = frozenset(("NEW", "PARTIALLY_FILLED"))
_DASH = '"-"'
_ENGINE_TIF = {"gtc": "GTC", "poc": "GTC", "ioc": "IOC", "fok": "FOK"}
_TEXT = re.compile(r"t-[0-9A-Za-z_.-]{1,28}").fullmatch  # TEXT_RE without `$` letting a newline in
_FINISH_AS = {"NEW": "open", "PARTIALLY_FILLED": "open", "FILLED": "filled", "CANCELED": "cancelled",
              "EXPIRED": "ioc", "REJECTED": "cancelled"}
_PUSH_EVENTS = {"new": "put", "trade": "update", "amended": "update"}  # spot.orders event per engine event
_PLAIN_REQ_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}").fullmatch
TEXT_RE = re.compile(r"^t-[0-9A-Za-z_.-]{1,28}$")
PUBLIC = ("spot.book_ticker", "spot.order_book_update", "spot.trades")
PRIVATE = ("spot.orders", "spot.usertrades", "spot.balances")
FULL_EVERY_STEPS = 600  # a full:true snapshot replaces an update this often (per book)


def ms() -> int:
    return time.time_ns() // 1_000_000


def dec(v: float, places: int = 8) -> str:
    if not v:
        return "0"  # what the formatting below makes of 0.0 and -0.0
    s = f"{v:.{places}f}".rstrip("0").rstrip(".")
    return s if s and s != "-0" else "0"


class GateError(Exception):
    def __init__(self, label: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.label = label
        self.message = message
        self.status = status


class GateSession(VenueSession):
    def __init__(self, app: GateApp) -> None:
        super().__init__(app)
        self.gapp = app
        self.conn_id = format(id(self) & 0xFFFFFFFFFFFF, "012x")
        self.private_subs: dict[str, str] = {}  # channel -> api key

    def on_open(self) -> None:
        self.conn.kind = "md"

    def on_close(self) -> None:
        self.gapp.private.pop(self, None)
        super().on_close()

    def reply_obj(self, rid: Any, channel: str, event: str, result: Any = None, error: Any = None,
                  payload: Any = None) -> None:
        now = time.time_ns()
        body: dict[str, Any] = {"time": now // 1_000_000_000, "time_ms": now // 1_000_000, "id": rid,
                                "channel": channel, "event": event}
        body["error"] = error
        body["result"] = result if error is None else {"status": "failed"}
        self.conn.send_text(orjson.dumps(body))

    def on_text(self, data: bytes) -> None:
        recv_ns = time.monotonic_ns()
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.app.stats["bad_requests"] += 1
            self.reply_obj(None, "", "", error={"code": 1, "message": "invalid argument: request body is not "
                                                                     "valid JSON"})
            return
        if not isinstance(msg, dict):
            self.reply_obj(None, "", "", error={"code": 1, "message": "invalid argument: request must be an "
                                                                     "object"})
            return
        rid = msg.get("id")
        channel = msg.get("channel")
        event = msg.get("event")
        if channel == "spot.ping":
            now = time.time_ns()
            pong: dict[str, Any] = {"time": now // 1_000_000_000, "time_ms": now // 1_000_000}
            if rid is not None:
                pong["id"] = rid
            pong.update({"channel": "spot.pong", "event": "", "error": None, "result": None})
            self.conn.send_text(orjson.dumps(pong))
            return
        if not isinstance(channel, str) or not isinstance(event, str):
            self.reply_obj(rid, str(channel or ""), str(event or ""),
                           error={"code": 2, "message": "invalid argument: channel and event are required"})
            return
        if event == "api":
            self.conn.kind = "orders"
            self.gapp.ws_api(self, channel, msg.get("payload"), recv_ns)
            return
        if event not in ("subscribe", "unsubscribe"):
            self.reply_obj(rid, channel, event, error={"code": 2, "message": f"unknown event {event[:40]}"})
            return
        t = msg.get("time")
        if not isinstance(t, int) or isinstance(t, bool) or abs(time.time() - t) > 60:
            self.reply_obj(rid, channel, event, error={"code": 2, "message": "invalid argument: time"})
            return
        self.gapp.ws_subscribe(self, rid, channel, event, msg.get("payload"), msg.get("auth"), t)


class GateApp(VenueApp):
    name = "gate"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.private: dict[GateSession, dict[str, str]] = {}
        self._view_memo: tuple | None = None  # (order state key, head, rest) of the last order view formatted
        self.countdowns: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.countdown_fired: list[dict] = []
        self.order_seq = 0
        self._keys: dict[str, tuple[str, ...]] = {}
        # (pair, side, type, account, tif, amount, price) -> validated order terms (lean order entry)
        self._limit_terms: dict[tuple, tuple] = {}

    def reset(self) -> None:
        for h in self.countdowns.values():
            h.cancel()
        self.countdowns.clear()

    def open_ws(self, req: Request) -> Any:
        if len(self.server.conns) > self.cfg.max_connections:
            return Response(429, b'{"label":"TOO_MANY_REQUESTS","message":"too many connections"}')
        if req.path in ("/ws/v4/", "/ws/v4"):
            return GateSession(self)
        return None

    # -- subscriptions -------------------------------------------------------------
    def ws_subscribe(self, sess: GateSession, rid: Any, channel: str, event: str, payload: Any, auth_blk: Any,
                     t: int) -> None:
        if channel in PRIVATE:
            if not isinstance(auth_blk, dict) or auth_blk.get("method") != "api_key":
                sess.reply_obj(rid, channel, event, error={"code": 4, "message": "Authentication failed"})
                return
            key = auth_blk.get("KEY")
            acc = self.sim.accounts.get(key) if isinstance(key, str) else None
            sign = auth_blk.get("SIGN")
            if acc is None or not acc.secret or not isinstance(sign, str) or \
                    auth.gate_ws_channel_sign(acc.secret, channel, event, t) != sign.lower():
                sess.reply_obj(rid, channel, event, error={"code": 4, "message": "Authentication failed"})
                return
            subs = self.private.setdefault(sess, {})
            if event == "subscribe":
                subs[channel] = key
            else:
                subs.pop(channel, None)
            sess.reply_obj(rid, channel, event, {"status": "success"})
            return
        if channel not in PUBLIC:
            sess.reply_obj(rid, channel, event, error={"code": 2, "message": f"unknown channel {channel[:40]}"})
            return
        if not isinstance(payload, list) or not payload or not all(isinstance(p, str) for p in payload):
            sess.reply_obj(rid, channel, event, error={"code": 2, "message": "invalid argument: payload"})
            return
        pairs = payload
        if channel == "spot.order_book_update":
            if len(payload) != 2 or payload[1] not in ("100ms", "20ms"):
                sess.reply_obj(rid, channel, event, error={"code": 2, "message": "invalid argument: interval"})
                return
            pairs = payload[:1]
        for p in pairs:
            if self.instrument(p) is None:
                sess.reply_obj(rid, channel, event, error={"code": 2, "message": f"unknown currency pair {p[:40]}"})
                return
        for p in pairs:
            key = f"{channel}:{p}"
            if event == "subscribe":
                if not self.subscribe(sess, key):
                    sess.reply_obj(rid, channel, event, error={"code": 2, "message": "too many subscriptions"})
                    return
            else:
                self.unsubscribe(sess, key)
        sess.reply_obj(rid, channel, event, {"status": "success"})

    # -- market data ------------------------------------------------------------------
    def _update_frame(self, book: Book, first: int, full: bool) -> str:
        inst = book.inst
        now = time.time_ns()
        if full:
            b = pair_levels(inst, book.top_bids(100))
            a = pair_levels(inst, book.top_asks(100))
            extra = '"full":true,"l":"100",'
            return (f'{{"time":{now // 1_000_000_000},"time_ms":{now // 1_000_000},'
                    f'"channel":"spot.order_book_update","event":"update","result":{{"t":{now // 1_000_000},'
                    f'{extra}"s":"{inst.venue_symbol}","U":{first},"u":{book.update_id},"b":[{b}],"a":[{a}]}}}}')
        b = pair_levels(inst, book.chg_bids.items())
        a = pair_levels(inst, book.chg_asks.items())
        return (f'{{"time":{now // 1_000_000_000},"time_ms":{now // 1_000_000},"channel":"spot.order_book_update",'
                f'"event":"update","result":{{"t":{now // 1_000_000},"e":"depthUpdate",'
                f'"E":{now // 1_000_000_000},"s":"{inst.venue_symbol}","U":{first},"u":{book.update_id},'
                f'"b":[{b}],"a":[{a}]}}}}')

    def publish(self, symbol: str, book: Book, probe: bool) -> int:
        inst = book.inst
        pair = inst.venue_symbol
        keys = self._keys.get(pair)
        if keys is None:
            keys = self._keys[pair] = ("spot.order_book_update:" + pair, "spot.book_ticker:" + pair,
                                       "spot.trades:" + pair)
        k_obu, k_bt, k_tr = keys
        subs = self.subs
        frames = 0
        if book.chg_bids or book.chg_asks:
            n = len(book.chg_bids) + len(book.chg_asks)
            if symbol in self.skip_seq:
                self.skip_seq.discard(symbol)
                book.update_id += 1
            first = book.update_id + 1
            book.update_id += n
            frames += 1
            sessions = subs.get(k_obu)
            if sessions:
                full = book.steps % FULL_EVERY_STEPS == FULL_EVERY_STEPS - 1
                rec = self.probe_record(symbol, "order_book_update", book.update_id) if probe else None
                frame = text_frame(self._update_frame(book, first, full))
                for s in sessions:
                    s.conn.send_md(frame, rec)
        if book.top_changed:
            frames += 1
            sessions = subs.get(k_bt)
            if sessions:
                bb, bq, ba, aq = book.last_top
                now = time.time_ns()
                pxc, qc, px, qty = inst._px_cache, inst._qty_cache, inst.px, inst.qty
                raw = (f'{{"time":{now // 1_000_000_000},"time_ms":{now // 1_000_000},"channel":"spot.book_ticker",'
                       f'"event":"update","result":{{"t":{now // 1_000_000},"u":{book.update_id},"s":"{pair}",'
                       f'"b":"{pxc.get(bb) or px(bb)}","B":"{qc.get(bq) or qty(bq)}","a":"{pxc.get(ba) or px(ba)}",'
                       f'"A":"{qc.get(aq) or qty(aq)}"}}}}')
                rec = self.probe_record(symbol, "book_ticker", book.update_id) if probe else None
                frame = text_frame(raw)
                for s in sessions:
                    s.conn.send_md(frame, rec)
        if book.trades:
            frames += len(book.trades)
            sessions = subs.get(k_tr)
            if sessions:
                now = time.time_ns()
                for taker, t, lots, tid in book.trades:
                    raw = (f'{{"time":{now // 1_000_000_000},"time_ms":{now // 1_000_000},"channel":"spot.trades",'
                           f'"event":"update","result":{{"id":{tid},"id_market":{tid - 10_000_000},'
                           f'"create_time":{now // 1_000_000_000},"create_time_ms":"{now // 1000 / 1000:.3f}",'
                           f'"side":"{"buy" if taker == BUY else "sell"}","currency_pair":"{pair}",'
                           f'"amount":"{inst.qty(lots)}","price":"{inst.px(t)}","range":"{tid}-{tid}"}}}}')
                    rec = self.probe_record(symbol, "trades", tid) if probe else None
                    frame = text_frame(raw)
                    for s in sessions:
                        s.conn.send_md(frame, rec)
        self.stats["md_frames"] += frames
        return frames

    def shutdown_frame(self, conn: Any) -> str:
        now = time.time_ns()
        return (f'{{"time":{now // 1_000_000_000},"time_ms":{now // 1_000_000},"channel":"",'
                f'"event":"upgrade","result":null}}')

    # -- orders ---------------------------------------------------------------------------
    def order_view(self, o: Order) -> dict:
        inst = o.inst
        status = "open" if o.is_open else ("closed" if o.status == "FILLED" else "cancelled")
        finish = o.extra.get("finish_as") or {"NEW": "open", "PARTIALLY_FILLED": "open", "FILLED": "filled",
                                              "CANCELED": "cancelled", "EXPIRED": "ioc",
                                              "REJECTED": "cancelled"}[o.status]
        filled = inst.qty_float(o.filled_lots)
        avg = o.cum_quote / filled if filled else 0.0
        amount = o.extra.get("amount_str") or inst.qty(o.lots)
        return {"id": str(o.oid), "text": o.client_id or "apiv4-ws", "amend_text": o.extra.get("amend_text", "-"),
                "create_time": str(o.create_ms // 1000), "update_time": str(o.update_ms // 1000),
                "create_time_ms": o.create_ms, "update_time_ms": o.update_ms, "status": status,
                "currency_pair": inst.venue_symbol, "type": "market" if o.order_type == "MARKET" else "limit",
                "account": "spot", "side": "buy" if o.side == BUY else "sell", "amount": amount,
                "price": inst.px(o.ticks) if o.order_type != "MARKET" else "0",
                "time_in_force": o.extra.get("tif", "gtc"), "iceberg": "0",
                "left": inst.qty(o.remaining) if o.lots < 10**15 else "0",
                "filled_amount": inst.qty(o.filled_lots), "fill_price": dec(o.cum_quote),
                "filled_total": dec(o.cum_quote), "avg_deal_price": dec(avg, inst.px_dec + 4),
                "fee": dec(o.fee, 12), "fee_currency": o.fee_asset, "point_fee": "0", "gt_fee": "0",
                "gt_maker_fee": "0", "gt_taker_fee": "0", "gt_discount": False, "rebated_fee": "0",
                "rebated_fee_currency": inst.quote if o.side == BUY else inst.base,
                "finish_as": finish, "stp_id": 0, "stp_act": "-"}

    def push_view(self, o: Order, event: str) -> dict:
        v = self.order_view(o)
        v["event"] = event
        v["user"] = 1000001
        v["create_time_ms"] = str(o.create_ms)
        v["update_time_ms"] = str(o.update_ms)
        return v

    def order_view_json(self, o: Order, push_event: str | None = None) -> str:
        """orjson.dumps(order_view(o)) (or of push_view(o, push_event)) formatted from a template:
        a placed order is one result and two pushes, and building then dumping a 36-key dict for
        each was ~40 % of the order path (a unit test holds the two equal). The result and the
        pushes that follow it show the same state: the two halves around the `*_time_ms` fields
        are kept for the last (order, state) formatted and reused."""
        ex = o.extra
        key = (o, o.update_ms, o.status, o.filled_lots, o.cum_quote, o.fee, o.ticks, o.lots, ex.get("amend_text"),
               ex.get("amount_str"), ex.get("finish_as"), ex.get("tif"))
        memo = self._view_memo
        if memo is not None and memo[0] == key:
            head, rest = memo[1], memo[2]
        else:
            head, rest = self._order_view_parts(o)
            self._view_memo = (key, head, rest)
        if push_event is None:
            return f'{head}"create_time_ms":{o.create_ms},"update_time_ms":{o.update_ms},{rest}}}'
        return (f'{head}"create_time_ms":"{o.create_ms}","update_time_ms":"{o.update_ms}",{rest},'
                f'"event":"{push_event}","user":1000001}}')

    def _order_view_parts(self, o: Order) -> tuple[str, str]:
        inst = o.inst
        ex = o.extra
        qc = inst._qty_cache
        status = "open" if o.status in _OPEN_STATES else ("closed" if o.status == "FILLED" else "cancelled")
        finish = ex.get("finish_as") or _FINISH_AS[o.status]
        filled_lots = o.filled_lots
        filled = inst.qty_float(filled_lots)
        cq = o.cum_quote
        cum = dec(cq) if cq else "0"  # dec() of 0.0 without the call (an order that took nothing)
        amount = ex.get("amount_str")
        amount = json_str(amount) if amount else f'"{qc.get(o.lots) or inst.qty(o.lots)}"'
        market = o.order_type == "MARKET"
        price = inst.px(o.ticks) if not market else "0"
        left = inst.qty(o.lots - filled_lots) if o.lots < 10**15 else "0"
        amend_text = ex.get("amend_text")
        # text passed TEXT_RE on entry; currencies, tif and finish_as are the sim's own words
        head = (f'{{"id":"{o.oid}","text":"{o.client_id or "apiv4-ws"}",'
                f'"amend_text":{json_str(amend_text) if amend_text is not None else _DASH},'
                f'"create_time":"{o.create_ms // 1000}","update_time":"{o.update_ms // 1000}",')
        rest = (f'"status":"{status}","currency_pair":"{inst.venue_symbol}",'
                f'"type":"{"market" if market else "limit"}","account":"spot",'
                f'"side":"{"buy" if o.side == BUY else "sell"}","amount":{amount},"price":"{price}",'
                f'"time_in_force":"{ex.get("tif", "gtc")}","iceberg":"0","left":"{left}",'
                f'"filled_amount":"{qc.get(filled_lots) or inst.qty(filled_lots)}","fill_price":"{cum}",'
                f'"filled_total":"{cum}","avg_deal_price":"{dec(cq / filled, inst.px_dec + 4) if filled else "0"}",'
                f'"fee":"{dec(o.fee, 12) if o.fee else "0"}","fee_currency":"{o.fee_asset}","point_fee":"0","gt_fee":"0",'
                f'"gt_maker_fee":"0","gt_taker_fee":"0","gt_discount":false,"rebated_fee":"0",'
                f'"rebated_fee_currency":"{inst.quote if o.side == BUY else inst.base}",'
                f'"finish_as":"{finish}","stp_id":0,"stp_act":"-"')
        return head, rest

    def on_order_event(self, kind: str, o: Order, fill: Any) -> None:
        if not self.private or kind == "rejected":
            return
        event = _PUSH_EVENTS.get(kind, "finish")
        if kind == "trade" and not o.is_open:
            event = "finish"
        now = time.time_ns()
        key = o.api_key
        push = None
        for sess, chans in list(self.private.items()):
            if chans.get("spot.orders") == key:
                if push is None:  # one body for every subscribed session
                    push = (f'{{"time":{now // 1_000_000_000},"time_ms":{now // 1_000_000},'
                            f'"channel":"spot.orders","event":"update","result":[{self.order_view_json(o, event)}]}}'
                            ).encode()
                sess.conn.send_text(push)
            if fill is not None and chans.get("spot.usertrades") == key:
                sess.conn.send_text(orjson.dumps({"time": now // 1_000_000_000, "time_ms": now // 1_000_000,
                                                  "channel": "spot.usertrades", "event": "update",
                                                  "result": [self.trade_view(fill, push=True)]}))

    def trade_view(self, f: Any, push: bool = False) -> dict:
        o = f.order
        inst = o.inst
        d = {"id": f.trade_id, "create_time": str(f.ts_ms // 1000) if not push else f.ts_ms // 1000,
             "create_time_ms": f"{f.ts_ms / 1000:.3f}" if not push else f"{f.ts_ms / 1000:.3f}",
             "currency_pair": inst.venue_symbol, "side": "buy" if o.side == BUY else "sell",
             "role": "maker" if f.maker else "taker", "amount": inst.qty(f.lots), "price": inst.px(f.ticks),
             "order_id": str(o.oid), "fee": dec(f.fee, 12), "fee_currency": f.fee_asset, "point_fee": "0",
             "gt_fee": "0", "amend_text": o.extra.get("amend_text", "-"), "sequence_id": str(f.trade_id),
             "text": o.client_id or "apiv4-ws"}
        if push:
            d = {"id": f.trade_id, "user_id": 1000001, "order_id": str(o.oid), "currency_pair": inst.venue_symbol,
                 "create_time": f.ts_ms // 1000, "create_time_ms": f"{f.ts_ms / 1000:.3f}",
                 "side": "buy" if o.side == BUY else "sell", "amount": inst.qty(f.lots),
                 "role": "maker" if f.maker else "taker", "price": inst.px(f.ticks), "fee": dec(f.fee, 12),
                 "fee_currency": f.fee_asset, "point_fee": "0", "gt_fee": "0", "text": o.client_id or "apiv4-ws",
                 "amend_text": o.extra.get("amend_text", "-"), "biz_info": "", "id_market": f.trade_id}
        return d

    def _ws_header(self, sess: GateSession, channel: str, status: str, in_ns: int = 0) -> dict:
        now = time.time_ns()
        h = {"response_time": str(now // 1_000_000), "status": status, "channel": channel, "event": "api",
             "client_id": "127.0.0.1-0xc0000", "conn_id": sess.conn_id, "conn_trace_id": sess.conn_id,
             "trace_id": format(now & 0xFFFFFFFF, "08x")}
        if in_ns:
            h.update({"x_in_time": in_ns // 1000, "x_out_time": now // 1000,
                      "x_gate_ratelimit_requests_remain": 9, "x_gate_ratelimit_limit": 10,
                      "x_gat_ratelimit_reset_timestamp": now // 1_000_000 + 1000})
        return h

    def _ws_header_json(self, sess: GateSession, channel: str, in_ns: int = 0) -> str:
        """orjson.dumps(_ws_header(sess, channel, "200", in_ns)) from a template (every order ack and
        result; channel is one of the order channels, checked before)."""
        now = time.time_ns()
        head = (f'{{"response_time":"{now // 1_000_000}","status":"200","channel":"{channel}",'
                f'"event":"api","client_id":"127.0.0.1-0xc0000","conn_id":"{sess.conn_id}",'
                f'"conn_trace_id":"{sess.conn_id}","trace_id":"{now & 0xFFFFFFFF:08x}"')
        if not in_ns:
            return head + "}"
        return (f'{head},"x_in_time":{in_ns // 1000},"x_out_time":{now // 1000},'
                f'"x_gate_ratelimit_requests_remain":9,"x_gate_ratelimit_limit":10,'
                f'"x_gat_ratelimit_reset_timestamp":{now // 1_000_000 + 1000}}}')

    def ws_error(self, sess: GateSession, req_id: Any, channel: str, e: GateError, in_ns: int) -> None:
        self.stats["orders_rejected"] += 1
        body = {"request_id": req_id, "header": self._ws_header(sess, channel, str(e.status)),
                "data": {"errs": {"label": e.label, "message": e.message}}}
        self.reply(sess, orjson.dumps(body))

    def ws_api(self, sess: GateSession, channel: str, payload: Any, recv_ns: int) -> None:
        in_ns = time.time_ns()
        if not isinstance(payload, dict):
            self.ws_error(sess, None, channel, GateError("INVALID_ARGUMENT", "payload must be an object"), in_ns)
            return
        req_id = payload.get("req_id")
        if not isinstance(req_id, str | int) or isinstance(req_id, bool):
            self.ws_error(sess, None, channel, GateError("INVALID_ARGUMENT", "req_id is required"), in_ns)
            return
        rp = payload.get("req_param")
        if channel == "spot.login":
            key, ts, sig = payload.get("api_key"), payload.get("timestamp"), payload.get("signature")
            acc = self.sim.accounts.get(key) if isinstance(key, str) else None
            if acc is None or not acc.secret:
                self.ws_error(sess, req_id, channel, GateError("INVALID_KEY", "Invalid key provided", 401), in_ns)
                return
            try:
                ts_v = int(str(ts))
            except ValueError:
                self.ws_error(sess, req_id, channel, GateError("INVALID_ARGUMENT", "invalid timestamp"), in_ns)
                return
            if abs(time.time() - ts_v) > 60:
                self.ws_error(sess, req_id, channel, GateError("REQUEST_EXPIRED", "gap between request Timestamp "
                                                               "and server time exceeds 60", 401), in_ns)
                return
            if not isinstance(sig, str) or auth.gate_ws_api_sign(acc.secret, "api", channel, "", str(ts)) != sig.lower():
                self.ws_error(sess, req_id, channel, GateError("INVALID_SIGNATURE", "Signature mismatch", 401),
                              in_ns)
                return
            sess.api_key = key
            sess.conn.send_text(orjson.dumps({"request_id": req_id, "ack": False,
                                              "header": self._ws_header(sess, channel, "200"),
                                              "data": {"result": {"api_key": key, "uid": "1000001"}}}))
            return
        if channel not in ("spot.order_place", "spot.order_cancel", "spot.order_amend", "spot.order_cancel_cp",
                           "spot.order_cancel_ids", "spot.order_status", "spot.order_list"):
            self.ws_error(sess, req_id, channel, GateError("INVALID_ARGUMENT", f"unknown channel {channel[:40]}"),
                          in_ns)
            return
        cid = rp.get("text") if isinstance(rp, dict) else None
        if channel != "spot.order_place" and isinstance(rp, dict):
            cid = rp.get("order_id") or cid
        if channel not in ("spot.order_status", "spot.order_list"):
            self.note_order(channel, cid, recv_ns)
        if sess.api_key is None:
            self.ws_error(sess, req_id, channel, GateError("INVALID_KEY", "not logged in: send spot.login first",
                                                           401), in_ns)
            return
        if not isinstance(rp, dict) and not (channel == "spot.order_cancel_ids" and isinstance(rp, list)):
            self.ws_error(sess, req_id, channel, GateError("INVALID_ARGUMENT", "req_param must be an object"),
                          in_ns)
            return
        hdr = payload.get("req_header")
        if isinstance(hdr, dict) and "x-gate-exptime" in hdr:
            try:
                if int(hdr["x-gate-exptime"]) < ms():
                    self.ws_error(sess, req_id, channel, GateError("REQUEST_EXPIRED", "request expired"), in_ns)
                    return
            except (TypeError, ValueError):
                self.ws_error(sess, req_id, channel, GateError("INVALID_ARGUMENT", "x-gate-exptime"), in_ns)
                return
        if (self.rate_limit_count or self.rate_limit_until_ns) and channel in ("spot.order_place", "spot.order_amend") \
                and self.rate_limited():
            self.ws_error(sess, req_id, channel, GateError("TOO_MANY_REQUESTS", "Request Rate limit Exceeded (211)",
                                                           429), in_ns)
            return
        # the ack echoes the request, then the result follows
        rid = f'"{req_id}"' if req_id.__class__ is str and _PLAIN_REQ_ID(req_id) else orjson.dumps(req_id).decode()
        if channel in ("spot.order_place", "spot.order_cancel", "spot.order_amend", "spot.order_cancel_cp",
                       "spot.order_cancel_ids"):
            rid_b = rid.encode()
            self.reply(sess, b"".join((b'{"request_id":', rid_b, b',"ack":true,"header":',
                                       self._ws_header_json(sess, channel).encode(), b',"data":{"result":{"req_id":',
                                       rid_b, b',"req_header":', orjson.dumps(hdr) if hdr else b"{}",
                                       b',"req_param":', orjson.dumps(rp),
                                       b',"api_key":"","timestamp":"","signature":""}}}')))
        key = sess.api_key
        try:
            if channel == "spot.order_place" or channel == "spot.order_cancel" or channel == "spot.order_amend":
                o = (self.place(key, rp) if channel == "spot.order_place" else
                     self.cancel(key, rp) if channel == "spot.order_cancel" else self.amend(key, rp))
                self.stats["orders_acked"] += 1
                self.reply(sess, f'{{"request_id":{rid},"ack":false,'
                                 f'"header":{self._ws_header_json(sess, channel, in_ns)},'
                                 f'"data":{{"result":{self.order_view_json(o)}}}}}')
                self.dispatch_events()
                return
            result: Any
            if channel == "spot.order_cancel_cp":
                inst = self.pair(rp)
                side = rp.get("side")
                done = [o for o in self.engine.open_orders(key, inst.symbol)
                        if side not in ("buy", "sell") or (o.side == BUY) == (side == "buy")]
                for o in done:
                    self.engine.cancel(o)
                result = [self.order_view(o) for o in done]
            elif channel == "spot.order_cancel_ids":
                result = []
                for item in rp if isinstance(rp, list) else []:
                    try:
                        o = self.cancel(key, item if isinstance(item, dict) else {})
                        result.append({"currency_pair": o.inst.venue_symbol, "id": str(o.oid), "text": o.client_id,
                                       "succeeded": True, "label": "", "message": ""})
                    except GateError as e:
                        result.append({"currency_pair": item.get("currency_pair", "") if isinstance(item, dict)
                                       else "", "id": str(item.get("id", "")) if isinstance(item, dict) else "",
                                       "succeeded": False, "label": e.label, "message": e.message})
            elif channel == "spot.order_status":
                inst = self.pair(rp)
                o = self.lookup(key, rp, inst)
                if o is None:
                    raise GateError("ORDER_NOT_FOUND", "Order not found")
                result = self.order_view(o)
            else:
                inst = self.pair(rp)
                result = [self.order_view(o) for o in self.engine.open_orders(key, inst.symbol)]
        except GateError as e:
            self.ws_error(sess, req_id, channel, e, in_ns)
            self.dispatch_events()
            return
        self.stats["orders_acked"] += 1
        self.reply(sess, orjson.dumps({"request_id": req_id, "ack": False,
                                       "header": self._ws_header(sess, channel, "200", in_ns),
                                       "data": {"result": result}}))
        self.dispatch_events()

    def pair(self, rp: dict) -> Instrument:
        inst = self.instrument(rp.get("currency_pair"))
        if inst is None:
            raise GateError("INVALID_CURRENCY_PAIR", f"Invalid currency pair {str(rp.get('currency_pair'))[:40]}")
        return inst

    def lookup(self, key: str, rp: dict, inst: Instrument) -> Order | None:
        oid = rp.get("order_id", rp.get("id"))
        if oid is None or oid == "":
            raise GateError("MISSING_REQUIRED_PARAM", "Missing required parameter: order_id")
        oid = str(oid)
        o = None
        if oid.startswith("t-"):
            o = self.engine.find(key, client_id=oid)
        elif oid.isdigit():
            o = self.engine.find(key, oid=int(oid))
        return o if o is not None and o.inst is inst else None

    def place(self, key: str, rp: dict) -> Order:
        # lean path: pair, side, type, account, tif, amount and price accepted before (strategies
        # repeat them) are one dict lookup; anything else, and every error, takes the full checks
        amount, price = rp.get("amount"), rp.get("price")
        terms_key = None
        if amount.__class__ is str and price.__class__ is str:
            terms_key = (rp.get("currency_pair"), rp.get("side"), rp.get("type"), rp.get("account"),
                         rp.get("time_in_force"), amount, price)
            hit = self._limit_terms.get(terms_key)
            text = rp.get("text", "")
            if hit is not None and text.__class__ is str and (not text or _TEXT(text)):
                inst, side, ticks, lots, tif = hit
                return self._run_place(key, inst, side, ticks, lots, tif, text, "limit", amount, 0.0)
        o = self._place(key, rp)
        if terms_key is not None and o.order_type == "LIMIT" and o.status != "REJECTED":
            if len(self._limit_terms) > 50_000:
                self._limit_terms.clear()
            self._limit_terms[terms_key] = (o.inst, o.side, o.ticks, o.lots, o.extra["tif"])
        return o

    def _place(self, key: str, rp: dict) -> Order:
        inst = self.pair(rp)
        text = rp.get("text", "")
        if text and (not isinstance(text, str) or not TEXT_RE.match(text)):
            raise GateError("INVALID_TEXT", "Invalid text: must start with t- and be at most 28 bytes after it")
        side_s, typ = rp.get("side"), rp.get("type", "limit")
        if side_s not in ("buy", "sell"):
            raise GateError("INVALID_PARAM_VALUE", "Invalid side")
        if typ not in ("limit", "market"):
            raise GateError("INVALID_PARAM_VALUE", "Invalid type")
        acct = rp.get("account", "spot")
        if acct not in ("spot", "cross_margin", "unified"):
            raise GateError("INVALID_PARAM_VALUE", "Invalid account")
        tif = rp.get("time_in_force", "gtc" if typ == "limit" else "ioc")
        if tif not in ("gtc", "ioc", "poc", "fok") or (typ == "market" and tif not in ("ioc", "fok")):
            raise GateError("INVALID_PARAM_VALUE", "Invalid time_in_force")
        amount = rp.get("amount")
        if not isinstance(amount, str) or not amount:
            raise GateError("MISSING_REQUIRED_PARAM", "Missing required parameter: amount")
        side = BUY if side_s == "buy" else SELL
        quote_qty = 0.0
        if typ == "market":
            ticks = 0
            if side == BUY:
                try:
                    quote_qty = float(amount)
                except ValueError:
                    raise GateError("INVALID_PRECISION", f"Invalid amount {amount[:30]}") from None
                if not quote_qty >= inst.min_notional:
                    raise GateError("INVALID_PARAM_VALUE", "Your order size is too small")
                lots = 10**15
            else:
                lots = inst.parse_qty(amount)
                if lots is None:
                    raise GateError("INVALID_PRECISION", f"Invalid amount precision: {amount[:30]}")
        else:
            price = rp.get("price")
            if not isinstance(price, str) or not price:
                raise GateError("MISSING_REQUIRED_PARAM", "Missing required parameter: price")
            ticks = inst.parse_px(price)
            if ticks is None:
                raise GateError("INVALID_PRECISION", f"Invalid price precision: {price[:30]}")
            lots = inst.parse_qty(amount)
            if lots is None:
                raise GateError("INVALID_PRECISION", f"Invalid amount precision: {amount[:30]}")
            if lots < inst.min_lots or inst.px_float(ticks) * inst.qty_float(lots) < inst.min_notional:
                raise GateError("INVALID_PARAM_VALUE", "Your order size is too small")
        return self._run_place(key, inst, side, ticks, lots, tif, text, typ, amount, quote_qty)

    def _run_place(self, key: str, inst: Instrument, side: int, ticks: int, lots: int, tif: str, text: str,
                   typ: str, amount: str, quote_qty: float) -> Order:
        o = self.engine.new_order(key, inst, side, ticks, lots, _ENGINE_TIF[tif], tif == "poc", text,
                                  "MARKET" if typ == "market" else "LIMIT")
        o.quote_qty = quote_qty
        o.extra["tif"] = tif
        if typ == "market" and side == BUY:
            o.extra["amount_str"] = amount
        why = self.engine.place(o)
        if why == WOULD_TAKE:
            # Gate creates the order and finishes it as poc: the result says so
            o.status = "CANCELED"
            o.extra["finish_as"] = "poc"
            return o
        if why == INSUFFICIENT_BALANCE:
            raise GateError("BALANCE_NOT_ENOUGH", "Not enough balance")
        if why == DUPLICATE_CLIENT_ID:
            raise GateError("INVALID_PARAM_VALUE", "Duplicate text among open orders")
        if why:
            raise GateError("INVALID_PARAM_VALUE", why)
        if o.status == "EXPIRED":
            o.extra["finish_as"] = "fok" if tif == "fok" else ("ioc" if o.order_type == "LIMIT" else "filled"
                                                                if o.filled_lots else "depth_not_enough")
        return o

    def cancel(self, key: str, rp: dict) -> Order:
        inst = self.pair(rp)
        o = self.lookup(key, rp, inst)
        if o is None or not o.is_open:
            raise GateError("ORDER_NOT_FOUND", "Order not found")
        self.engine.cancel(o)
        o.extra["finish_as"] = "cancelled"
        return o

    def amend(self, key: str, rp: dict) -> Order:
        inst = self.pair(rp)
        o = self.lookup(key, rp, inst)
        if o is None or not o.is_open:
            raise GateError("ORDER_NOT_FOUND", "Order not found")
        ticks = lots = None
        if rp.get("price"):
            ticks = inst.parse_px(rp["price"]) if isinstance(rp["price"], str) else None
            if ticks is None:
                raise GateError("INVALID_PRECISION", "Invalid price precision")
        if rp.get("amount"):
            lots = inst.parse_qty(rp["amount"]) if isinstance(rp["amount"], str) else None
            if lots is None:
                raise GateError("INVALID_PRECISION", "Invalid amount precision")
        if ticks is None and lots is None:
            raise GateError("MISSING_REQUIRED_PARAM", "Missing required parameter: price or amount")
        why = self.engine.amend(o, ticks, lots)
        if why == INSUFFICIENT_BALANCE:
            raise GateError("BALANCE_NOT_ENOUGH", "Not enough balance")
        if why == WOULD_TAKE:
            raise GateError("POC_FILL_IMMEDIATELY", "Order would match and take immediately")
        if why == INVALID_AMEND:
            raise GateError("INVALID_PARAM_VALUE", "amount must be greater than the filled amount")
        if why:
            raise GateError("ORDER_NOT_FOUND", "Order not found")
        if isinstance(rp.get("amend_text"), str):
            o.extra["amend_text"] = rp["amend_text"][:31]
        return o

    # -- dead-man switch -----------------------------------------------------------------
    def countdown(self, key: str, timeout_s: int, pair: str) -> int:
        k = (key, pair)
        h = self.countdowns.pop(k, None)
        if h is not None:
            h.cancel()
        if timeout_s == 0:
            return 0
        self.countdowns[k] = self.sim.loop.call_later(timeout_s, self._countdown_fire, key, pair)
        return ms() + timeout_s * 1000

    def _countdown_fire(self, key: str, pair: str) -> None:
        self.countdowns.pop((key, pair), None)
        inst = self.instrument(pair) if pair else None
        orders = self.engine.open_orders(key, inst.symbol if inst else None)
        for o in orders:
            o.extra["finish_as"] = "cancelled"
            self.engine.cancel(o, "countdown")
        self.countdown_fired.append({"api_key": key, "currency_pair": pair, "canceled": len(orders), "ts": ms()})
        self.dispatch_events()

    # -- REST ---------------------------------------------------------------------------------
    def err(self, status: int, label: str, message: str) -> Response:
        self.stats["bad_requests"] += 1
        return Response(status, orjson.dumps({"label": label, "message": message}))

    def rest_auth(self, req: Request) -> str | Response:
        h = req.headers
        key, ts, sign = h.get("key"), h.get("timestamp"), h.get("sign")
        if not key or not ts or not sign:
            return self.err(401, "MISSING_REQUIRED_HEADER", "Missing required header: KEY, Timestamp or SIGN")
        acc = self.sim.accounts.get(key)
        if acc is None or not acc.secret:
            return self.err(401, "INVALID_KEY", "Invalid key provided")
        try:
            t = float(ts)
        except ValueError:
            return self.err(401, "INVALID_ARGUMENT", "Invalid Timestamp header")
        if abs(time.time() - t) > 60:
            return self.err(401, "REQUEST_EXPIRED", "gap between request Timestamp and server time exceeds 60")
        if auth.gate_rest_sign(acc.secret, req.method, req.path, req.query, req.body, ts) != sign.lower():
            return self.err(401, "INVALID_SIGNATURE", "Signature mismatch")
        return key

    def pair_view(self, inst: Instrument) -> dict:
        return {"id": inst.venue_symbol, "base": inst.base, "base_name": inst.base, "quote": inst.quote,
                "quote_name": inst.quote, "fee": "0.2", "min_base_amount": inst.min_qty_str,
                "min_quote_amount": inst.min_notional_str, "max_base_amount": "", "max_quote_amount": "5000000",
                "amount_precision": inst.qty_dec, "precision": inst.px_dec, "trade_status": "tradable",
                "sell_start": 0, "buy_start": 0, "delisting_time": 0, "type": "normal", "trade_url": "",
                "st_tag": False}

    def handle_http(self, req: Request) -> Response:
        p, m, args = req.path, req.method, req.args
        j = orjson.dumps
        if p == "/api/v4/spot/time":
            return Response(200, j({"server_time": ms()}))
        if p == "/api/v4/spot/currency_pairs":
            return Response(200, j([self.pair_view(i) for i in self.instruments.values()]))
        if p.startswith("/api/v4/spot/currency_pairs/"):
            inst = self.instrument(p.rsplit("/", 1)[1])
            if inst is None:
                return self.err(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
            return Response(200, j(self.pair_view(inst)))
        if p == "/api/v4/spot/order_book":
            inst = self.instrument(args.get("currency_pair"))
            if inst is None:
                return self.err(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
            try:
                limit = max(1, min(int(args.get("limit", "10") or 10), 1000))
            except ValueError:
                return self.err(400, "INVALID_PARAM_VALUE", "Invalid limit")
            b = self.books[inst.symbol]
            now = ms()
            out: dict[str, Any] = {}
            if args.get("with_id") == "true":
                out["id"] = b.update_id
            out.update({"current": now, "update": now,
                        "asks": [[inst.px(t), inst.qty(q)] for t, q in b.top_asks(limit)],
                        "bids": [[inst.px(t), inst.qty(q)] for t, q in b.top_bids(limit)]})
            return Response(200, j(out))
        if p == "/api/v4/spot/tickers":
            out_l = []
            for inst in self.instruments.values():
                if args.get("currency_pair") and args["currency_pair"] != inst.venue_symbol:
                    continue
                bb, bq, ba, aq = self.books[inst.symbol].top()
                out_l.append({"currency_pair": inst.venue_symbol, "last": inst.px(bb), "lowest_ask": inst.px(ba),
                              "highest_bid": inst.px(bb), "lowest_size": inst.qty(aq), "highest_size": inst.qty(bq)})
            return Response(200, j(out_l))
        if not p.startswith("/api/v4/spot/"):
            return self.err(404, "NOT_FOUND", "Not found")
        key = self.rest_auth(req)
        if isinstance(key, Response):
            return key
        if p == "/api/v4/spot/open_orders" and m == "GET":
            groups: dict[str, list] = {}
            for o in self.engine.open_orders(key):
                groups.setdefault(o.inst.venue_symbol, []).append(self.order_view(o))
            return Response(200, j([{"currency_pair": k, "total": len(v), "orders": v} for k, v in groups.items()]))
        if p == "/api/v4/spot/my_trades" and m == "GET":
            inst = self.instrument(args.get("currency_pair")) if args.get("currency_pair") else None
            fills = self.engine.recent_fills(key, inst.symbol if inst else None)[::-1][:100]
            return Response(200, j([self.trade_view(f) for f in fills]))
        if p == "/api/v4/spot/countdown_cancel_all" and m == "POST":
            try:
                body = orjson.loads(req.body or b"{}")
                timeout = int(body.get("timeout"))
                pair = body.get("currency_pair") or ""
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                return self.err(400, "INVALID_PARAM_VALUE", "Invalid timeout")
            if timeout != 0 and timeout < 5:
                return self.err(400, "INVALID_PARAM_VALUE", "timeout must be 0 or at least 5 seconds")
            if pair and self.instrument(pair) is None:
                return self.err(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
            return Response(200, j({"triggerTime": str(self.countdown(key, timeout, pair))}))
        if p == "/api/v4/spot/accounts" and m == "GET":
            acc = self.engine.account(key)
            return Response(200, j([{"currency": a, "available": dec(v[0]), "locked": dec(v[1]), "update_id": 1}
                                    for a, v in acc.items()]))
        if p == "/api/v4/spot/orders" and m == "POST":
            try:
                rp = orjson.loads(req.body or b"{}")
            except orjson.JSONDecodeError:
                return self.err(400, "INVALID_REQUEST_BODY", "Invalid request body")
            if not isinstance(rp, dict):
                return self.err(400, "INVALID_REQUEST_BODY", "Invalid request body")
            self.note_order("spot.order_place", rp.get("text"), time.monotonic_ns())
            if self.rate_limited():
                return self.err(429, "TOO_MANY_REQUESTS", "Request Rate limit Exceeded")
            try:
                o = self.place(key, rp)
            except GateError as e:
                return self.err(e.status, e.label, e.message)
            self.stats["orders_acked"] += 1
            out_b = j(self.order_view(o))
            self.dispatch_events()
            return Response(201, out_b)
        if p == "/api/v4/spot/orders" and m == "DELETE":
            inst = self.instrument(args.get("currency_pair"))
            if inst is None:
                return self.err(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
            done = self.engine.cancel_all(key, inst.symbol)
            out_b = j([self.order_view(o) for o in done])
            self.dispatch_events()
            return Response(200, out_b)
        if p.startswith("/api/v4/spot/orders/") and m in ("GET", "DELETE"):
            rp = {"order_id": p.rsplit("/", 1)[1], "currency_pair": args.get("currency_pair")}
            try:
                if m == "DELETE":
                    o = self.cancel(key, rp)
                else:
                    inst = self.pair(rp)
                    o = self.lookup(key, rp, inst)  # type: ignore[assignment]
                    if o is None:
                        raise GateError("ORDER_NOT_FOUND", "Order not found", 404)
            except GateError as e:
                return self.err(404 if e.label == "ORDER_NOT_FOUND" else e.status, e.label, e.message)
            out_b = j(self.order_view(o))
            self.dispatch_events()
            return Response(200, out_b)
        return self.err(404, "NOT_FOUND", "Not found")
