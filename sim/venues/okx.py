"""OKX v5 spot on one port: public and private WS, REST market data, WS order entry, dead-man switch.

Frame shapes, error codes and signing follow the OKX v5 documentation (see
shared/PROTOCOLS.md section 2): seqId/prevSeqId chains with jumps, CRC32
checksum of the top 25 interleaved levels (legacy) or 0 (current).
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson

from sim import auth
from sim.engine import BUY, DUPLICATE_CLIENT_ID, INSUFFICIENT_BALANCE, SELL, WOULD_TAKE, Order
from sim.market import Book, Instrument
from sim.server import Request, Response, text_frame
from sim.venues.base import VenueApp, VenueSession, json_str

CL_ORD_RE = re.compile(r"^[a-zA-Z0-9]{1,32}$")
PUBLIC_CHANNELS = ("bbo-tbt", "books", "trades", "books5", "tickers")
ORD_TYPES = {"limit": ("GTC", False), "post_only": ("GTC", True), "ioc": ("IOC", False), "fok": ("FOK", False),
             "market": ("IOC", False)}


def ms() -> int:
    return time.time_ns() // 1_000_000


def checksum_of(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """CRC32 of the top 25 levels interleaved bid/ask as `px:sz`, as a signed 32-bit int."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    c = zlib.crc32(":".join(parts).encode())
    return c - (1 << 32) if c >= 1 << 31 else c


_STATES = {"NEW": "live", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
           "EXPIRED": "canceled", "REJECTED": "canceled"}
# an order push's keys in wire order with the values every order shares (order_view fills the rest)
_VIEW_BASE: dict[str, Any] = {
    "instType": "SPOT", "instId": "", "tgtCcy": "", "ccy": "", "ordId": "", "clOrdId": "", "tag": "", "px": "",
    "pxUsd": "", "pxVol": "", "pxType": "", "sz": "", "notionalUsd": "", "ordType": "", "side": "", "posSide": "",
    "tdMode": "cash", "accFillSz": "", "fillNotionalUsd": "", "avgPx": "0", "state": "", "lever": "", "pnl": "0",
    "feeCcy": "", "fee": "0", "rebateCcy": "", "rebate": "0", "category": "normal", "uTime": "", "cTime": "",
    "source": "", "reduceOnly": "false", "cancelSource": "", "cancelSourceReason": "", "quickMgnType": "",
    "stpId": "", "stpMode": "cancel_maker", "attachAlgoClOrdId": "", "lastPx": "", "isTpLimit": "false",
    "linkedAlgoOrd": None, "attachAlgoOrds": None, "algoClOrdId": "", "algoId": "", "amendResult": "",
    "reqId": "", "amendSource": "", "code": "0", "msg": "", "tradeQuoteCcy": "", "fillPx": "", "tradeId": "",
    "fillSz": "0", "fillTime": "", "fillPnl": "0", "fillFee": "0", "fillFeeCcy": "", "execType": "",
    "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "", "fillIdxPx": ""}


_EMPTY = '""'  # an empty JSON string (f-strings here cannot nest the quote they are written in)


def level_count(lots: int) -> int:
    return 1 + lots % 7


class OkxSession(VenueSession):
    def __init__(self, app: OkxApp, private: bool) -> None:
        super().__init__(app)
        self.oapp = app
        self.private = private
        self.conn_id = format(id(self) & 0xFFFFFFFF, "08x")
        self.orders_sub = False

    def on_open(self) -> None:
        self.conn.kind = "orders" if self.private else "md"

    def on_close(self) -> None:
        self.oapp.order_subs.discard(self)
        self.oapp.order_subs_by_key.clear()
        super().on_close()

    def send_json(self, obj: Any) -> None:
        self.conn.send_text(orjson.dumps(obj))

    def error(self, code: str, msg: str, rid: Any = None) -> None:
        body: dict = {"event": "error", "code": code, "msg": msg, "connId": self.conn_id}
        if rid is not None:
            body = {"id": rid, **body}
        self.send_json(body)

    def on_text(self, data: bytes) -> None:
        recv_ns = time.monotonic_ns()
        if data == b"ping":
            self.conn.send_text(b"pong")
            return
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.app.stats["bad_requests"] += 1
            self.error("60012", f"Invalid request: {data[:100].decode('utf-8', 'replace')}")
            return
        if not isinstance(msg, dict):
            self.error("60012", "Invalid request: request must be an object")
            return
        op = msg.get("op")
        rid = msg.get("id")
        if rid is not None and (not isinstance(rid, str) or len(rid) > 32 or not rid.isalnum()):
            self.error("60012", "Invalid request: id must be alphanumeric, at most 32 characters")
            return
        args = msg.get("args")
        if op in ("subscribe", "unsubscribe"):
            self.oapp.ws_subscribe(self, op, rid, args)
        elif op == "login":
            self.oapp.ws_login(self, rid, args)
        elif op in ("order", "batch-orders", "cancel-order", "batch-cancel-orders", "amend-order",
                    "batch-amend-orders", "mass-cancel"):
            if not self.private:
                self.error("60013", "Invalid args", rid)
                return
            self.oapp.ws_trade(self, op, rid, args, msg.get("expTime"), recv_ns)
        else:
            self.error("60012", f"Invalid request: {data[:100].decode('utf-8', 'replace')}", rid)


class OkxApp(VenueApp):
    name = "okx"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.by_code = {i.inst_id_code: i for i in self.instruments.values()}
        self.order_subs: set[OkxSession] = set()
        # api key -> its sessions with the orders channel; cleared whenever order_subs or a
        # session's login changes, rebuilt on the next push
        self.order_subs_by_key: dict[str, list[OkxSession]] = {}
        self._push_memo: tuple = (None, -1, b"")  # (order, dispatch batch, orders push body) of the last push
        self.dead_man: dict[str, asyncio.TimerHandle] = {}
        self.dead_man_fired: list[dict] = []
        self._cs_memo: dict[Book, dict[int, str]] = {}  # book -> key -> `px:sz` of every level
        self._keys: dict[str, tuple[str, ...]] = {}
        self.books_sent_ns: dict[str, int] = {}  # symbol -> when its last books update was generated
        self._uid_json: dict[str, str] = {}  # api key -> its JSON string (order pushes)
        # (instIdCode, side, ordType, px, sz) -> validated order terms (lean order entry)
        self._limit_terms: dict[tuple, tuple] = {}
        self._last_placed: Order | None = None

    def reset(self) -> None:
        for h in self.dead_man.values():
            h.cancel()
        self.dead_man.clear()

    def book_seq(self, b: Book) -> int:
        return b.seq_id

    # -- routing ---------------------------------------------------------------------
    def open_ws(self, req: Request) -> Any:
        if len(self.server.conns) > self.cfg.max_connections:
            return Response(429, b'{"code":"50011","msg":"Too many connections"}')
        if req.path == "/ws/v5/public":
            return OkxSession(self, False)
        if req.path == "/ws/v5/private":
            return OkxSession(self, True)
        return None

    def ws_subscribe(self, sess: OkxSession, op: str, rid: Any, args: Any) -> None:
        if not isinstance(args, list) or not args:
            sess.error("60012", "Invalid request: args must be a non-empty list", rid)
            return
        for a in args:
            if not isinstance(a, dict) or not isinstance(a.get("channel"), str):
                sess.error("60012", "Invalid request: each arg needs a channel", rid)
                return
            ch = a["channel"]
            if ch == "orders":
                if not sess.private:
                    sess.error("60018", f"Wrong URL or channel:{ch}, instId:{a.get('instId', '')} doesn't exist. "
                                        "Please use the correct URL, channel and parameters", rid)
                    return
                if sess.api_key is None:
                    sess.error("60011", "Please log in", rid)
                    return
                if a.get("instType") not in ("SPOT", "ANY", "MARGIN"):
                    sess.error("60018", f"Wrong URL or channel:{ch}, instType:{a.get('instType')} doesn't exist. "
                                        "Please use the correct URL, channel and parameters", rid)
                    return
                if op == "subscribe":
                    self.order_subs.add(sess)
                else:
                    self.order_subs.discard(sess)
                self.order_subs_by_key.clear()
                ack = {"event": op, "arg": {"channel": "orders", "instType": a["instType"]}, "connId": sess.conn_id}
                if "instId" in a:
                    ack["arg"]["instId"] = a["instId"]
                sess.send_json({"id": rid, **ack} if rid is not None else ack)
                continue
            inst_id = a.get("instId")
            if ch not in PUBLIC_CHANNELS or sess.private or inst_id not in self.by_venue_symbol:
                sess.error("60018", f"Wrong URL or channel:{ch},instId:{inst_id} doesn't exist. "
                                    "Please use the correct URL, channel and parameters", rid)
                return
            key = f"{ch}:{inst_id}"
            if op == "subscribe":
                if not self.subscribe(sess, key):
                    sess.error("60014", "Requests too frequent", rid)
                    return
            else:
                self.unsubscribe(sess, key)
            ack = {"event": op, "arg": {"channel": ch, "instId": inst_id}, "connId": sess.conn_id}
            sess.send_json({"id": rid, **ack} if rid is not None else ack)
            if op == "subscribe":
                inst = self.by_venue_symbol[inst_id]
                if ch == "books" and self.cfg.okx_books == "legacy":
                    sess.conn.send_md(text_frame(self.books_frame(self.books[inst.symbol], "snapshot")))
                elif ch == "books5":
                    sess.conn.send_md(text_frame(self.books5_frame(self.books[inst.symbol])))

    def ws_login(self, sess: OkxSession, rid: Any, args: Any) -> None:
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
            sess.error("60012", "Invalid request: login needs one arg", rid)
            return
        a = args[0]
        key, pp, ts, sign = a.get("apiKey"), a.get("passphrase"), a.get("timestamp"), a.get("sign")
        if not all(isinstance(x, str) and x for x in (key, pp, ts, sign)):
            sess.error("60012", "Invalid request: apiKey, passphrase, timestamp and sign are required", rid)
            return
        acc = self.sim.accounts.get(key)
        if acc is None:
            sess.error("60005", "Invalid apiKey", rid)
            return
        try:
            ts_v = float(ts)
        except ValueError:
            sess.error("60004", "Invalid timestamp", rid)
            return
        if abs(time.time() - ts_v) > 30:
            sess.error("60006", "Timestamp request expired", rid)
            return
        if pp != acc.passphrase:
            sess.error("60024", "Wrong passphrase", rid)
            return
        if not acc.secret or auth.okx_ws_login_sign(acc.secret, ts) != sign:
            sess.error("60007", "Invalid sign", rid)
            return
        sess.api_key = key
        self.order_subs_by_key.clear()
        body = {"event": "login", "code": "0", "msg": "", "connId": sess.conn_id}
        sess.send_json({"id": rid, **body} if rid is not None else body)

    # -- market data ------------------------------------------------------------------
    def _levels(self, inst: Instrument, levels: Any) -> str:
        pxc, qc, px, qty = inst._px_cache, inst._qty_cache, inst.px, inst.qty
        return ",".join([f'["{pxc.get(t) or px(t)}","{qc.get(q) or qty(q)}","0","{1 + q % 7 if q else 0}"]'
                         for t, q in levels])

    def checksum(self, book: Book) -> int:
        """checksum_of() over the top 25 levels, from `px:sz` strings kept for every level of the
        book and refreshed only where the book changed (book.dirty): formatting all 50 levels
        per frame was most of a books frame's cost."""
        memo = self._cs_memo.get(book)
        if memo is None or book.dirty is None or len(book.dirty) > 5_000:
            memo = self._cs_memo[book] = {}
            book.dirty = set(book.bid_keys)
            book.dirty.update(book.ask_keys)
        dirty = book.dirty
        if dirty:
            inst = book.inst
            pxc, qc, px, qty = inst._px_cache, inst._qty_cache, inst.px, inst.qty
            bids, asks = book.bids, book.asks
            for k in dirty:
                t, levels = (-k, bids) if k < 0 else (k, asks)
                q = levels.get(t)
                if q is None:
                    memo.pop(k, None)
                else:
                    memo[k] = f"{pxc.get(t) or px(t)}:{qc.get(q) or qty(q)}"
            dirty.clear()
        get = memo.__getitem__
        b = list(map(get, book.bid_keys[:25]))
        a = list(map(get, book.ask_keys[:25]))
        if len(b) == len(a):
            parts = b + a
            parts[0::2] = b
            parts[1::2] = a
        else:
            parts = []
            for i in range(25):
                if i < len(b):
                    parts.append(b[i])
                if i < len(a):
                    parts.append(a[i])
        c = zlib.crc32(":".join(parts).encode())
        return c - (1 << 32) if c >= 1 << 31 else c

    def books_frame(self, book: Book, action: str, now_ms: int = 0) -> str:
        inst = book.inst
        if action == "snapshot":
            bids = self._levels(inst, book.top_bids(400))
            asks = self._levels(inst, book.top_asks(400))
            prev = -1
        else:
            bids = self._levels(inst, book.chg_bids.items())
            asks = self._levels(inst, book.chg_asks.items())
            prev = book.prev_seq_id
        cs = self.checksum(book) if self.cfg.okx_books == "legacy" else 0
        if action == "update" and inst.symbol in self.bad_checksum:
            self.bad_checksum.discard(inst.symbol)
            cs = cs ^ 0x5A5A
        return (f'{{"arg":{{"channel":"books","instId":"{inst.venue_symbol}"}},"action":"{action}","data":'
                f'[{{"asks":[{asks}],"bids":[{bids}],"ts":"{now_ms or ms()}","checksum":{cs},"prevSeqId":{prev},'
                f'"seqId":{book.seq_id}}}]}}')

    def heartbeat_frame(self, book: Book) -> str:
        """A quiet book's keep-alive: no levels, seqId == prevSeqId == the last seqId sent."""
        inst = book.inst
        cs = self.checksum(book) if self.cfg.okx_books == "legacy" else 0
        return (f'{{"arg":{{"channel":"books","instId":"{inst.venue_symbol}"}},"action":"update","data":'
                f'[{{"asks":[],"bids":[],"ts":"{ms()}","checksum":{cs},"prevSeqId":{book.seq_id},'
                f'"seqId":{book.seq_id}}}]}}')

    def books5_frame(self, book: Book) -> str:
        inst = book.inst
        return (f'{{"arg":{{"channel":"books5","instId":"{inst.venue_symbol}"}},"data":[{{"asks":['
                f'{self._levels(inst, book.top_asks(5))}],"bids":[{self._levels(inst, book.top_bids(5))}],'
                f'"instId":"{inst.venue_symbol}","ts":"{ms()}","seqId":{book.seq_id}}}]}}')

    def publish(self, symbol: str, book: Book, probe: bool) -> int:
        inst = book.inst
        iid = inst.venue_symbol
        subs = self.subs
        frames = 0
        now = 0
        keys = self._keys.get(iid)
        if keys is None:
            keys = self._keys[iid] = ("books:" + iid, "books5:" + iid, "bbo-tbt:" + iid, "tickers:" + iid,
                                      "trades:" + iid)
        k_books, k_books5, k_bbo, k_tickers, k_trades = keys
        if book.chg_bids or book.chg_asks:
            book.prev_seq_id = book.seq_id
            # ids jump, they are not +1: deterministic from the book's own counter
            book.seq_id += 1 + (book.steps * 7 + len(book.chg_bids) * 3 + len(book.chg_asks)) % 5
            if symbol in self.skip_seq:
                self.skip_seq.discard(symbol)
                book.prev_seq_id += 1
            frames += 1
            self.books_sent_ns[symbol] = time.monotonic_ns()
            sessions = subs.get(k_books)
            if not sessions and book.dirty is not None:
                book.dirty = None  # nobody needs checksums of this book: stop tracking its changes
                self._cs_memo.pop(book, None)
            if sessions:
                now = ms()
                rec = self.probe_record(symbol, "books", book.seq_id) if probe else None
                frame = text_frame(self.books_frame(book, "update", now))
                for s in sessions:
                    s.conn.send_md(frame, rec)
            sessions = subs.get(k_books5)
            if sessions:
                frame = text_frame(self.books5_frame(book))
                for s in sessions:
                    s.conn.send_md(frame)
        if book.top_changed:
            frames += 1
            sessions = subs.get(k_bbo)
            if sessions:
                now = now or ms()
                bb, bq, ba, aq = book.last_top
                pxc, qc, px, qty = inst._px_cache, inst._qty_cache, inst.px, inst.qty
                raw = (f'{{"arg":{{"channel":"bbo-tbt","instId":"{iid}"}},"data":[{{"asks":[["'
                       f'{pxc.get(ba) or px(ba)}","{qc.get(aq) or qty(aq)}","0","{1 + aq % 7}"]],"bids":[["'
                       f'{pxc.get(bb) or px(bb)}","{qc.get(bq) or qty(bq)}","0","{1 + bq % 7}"]],"ts":"{now}",'
                       f'"seqId":{book.seq_id}}}]}}')
                rec = self.probe_record(symbol, "bbo-tbt", book.seq_id) if probe else None
                frame = text_frame(raw)
                for s in sessions:
                    s.conn.send_md(frame, rec)
            sessions = subs.get(k_tickers)
            if sessions:
                bb, bq, ba, aq = book.last_top
                raw = (f'{{"arg":{{"channel":"tickers","instId":"{iid}"}},"data":[{{"instType":"SPOT",'
                       f'"instId":"{iid}","last":"{inst.px(bb)}","lastSz":"0","askPx":"{inst.px(ba)}",'
                       f'"askSz":"{inst.qty(aq)}","bidPx":"{inst.px(bb)}","bidSz":"{inst.qty(bq)}",'
                       f'"ts":"{ms()}"}}]}}')
                frame = text_frame(raw)
                for s in sessions:
                    s.conn.send_md(frame)
        if book.trades:
            frames += len(book.trades)
            sessions = subs.get(k_trades)
            if sessions:
                now = now or ms()
                for taker, t, lots, tid in book.trades:
                    raw = (f'{{"arg":{{"channel":"trades","instId":"{iid}"}},"data":[{{"instId":"{iid}",'
                           f'"tradeId":"{tid}","px":"{inst.px(t)}","sz":"{inst.qty(lots)}",'
                           f'"side":"{"buy" if taker == BUY else "sell"}","ts":"{now}","count":"1",'
                           f'"source":"0","seqId":{book.seq_id}}}]}}')
                    rec = self.probe_record(symbol, "trades", tid) if probe else None
                    frame = text_frame(raw)
                    for s in sessions:
                        s.conn.send_md(frame, rec)
        self.stats["md_frames"] += frames
        return frames

    def send_heartbeats(self, now_ns: int, period_ns: int) -> int:
        """books channel keep-alive: a book with no update for period_ns gets an empty update with
        seqId == prevSeqId (OKX sends one about every 60 s on a quiet book)."""
        n = 0
        for symbol, book in self.books.items():
            last = self.books_sent_ns.get(symbol, 0)
            if not last:
                self.books_sent_ns[symbol] = now_ns
                continue
            if now_ns - last < period_ns:
                continue
            self.books_sent_ns[symbol] = now_ns
            sessions = self.subs.get("books:" + book.inst.venue_symbol)
            if not sessions:
                continue
            frame = text_frame(self.heartbeat_frame(book))
            for s in sessions:
                s.conn.send_md(frame)
                n += 1
        return n

    def shutdown_frame(self, conn: Any) -> str:
        return ('{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service '
                'upgrade. Please reconnect.","connId":"' + getattr(conn.ws, "conn_id", "") + '"}')

    # -- orders -------------------------------------------------------------------------
    def order_view(self, o: Order, fill: Any = None) -> dict:
        inst = o.inst
        ex = o.extra
        d = _VIEW_BASE.copy()  # every key in wire order; the per-order ones are set below
        d["instId"] = inst.venue_symbol
        d["ordId"] = str(o.oid)
        d["clOrdId"] = o.client_id
        d["tag"] = ex.get("tag", "")
        d["px"] = inst.px(o.ticks) if o.order_type != "MARKET" else ""
        d["sz"] = inst.qty(o.lots) if o.lots < 10**15 else ""
        d["ordType"] = ex.get("ordType", "limit")
        d["side"] = "buy" if o.side == BUY else "sell"
        d["accFillSz"] = inst.qty(o.filled_lots)
        if o.filled_lots:
            avg = o.cum_quote / inst.qty_float(o.filled_lots)
            d["avgPx"] = f"{avg:.{inst.px_dec + 4}f}".rstrip("0").rstrip(".")
        d["state"] = _STATES[o.status]
        d["feeCcy"] = d["rebateCcy"] = o.fee_asset
        if o.fee:
            d["fee"] = f"{-o.fee:.10f}".rstrip("0").rstrip(".")
        d["uTime"] = str(o.update_ms)
        d["cTime"] = str(o.create_ms)
        if ex:
            d["cancelSource"] = ex.get("cancelSource", "")
            d["cancelSourceReason"] = ex.get("cancelSourceReason", "")
            d["amendResult"] = ex.get("amendResult", "")
            d["reqId"] = ex.get("reqId", "")
        d["linkedAlgoOrd"] = {"algoId": ""}
        d["attachAlgoOrds"] = []
        d["tradeQuoteCcy"] = inst.quote
        if fill is not None:
            d.update({"fillPx": inst.px(fill.ticks), "tradeId": str(fill.trade_id), "fillSz": inst.qty(fill.lots),
                      "fillTime": str(fill.ts_ms), "fillFee": f"{-fill.fee:.10f}".rstrip("0").rstrip("."),
                      "fillFeeCcy": fill.fee_asset, "execType": "M" if fill.maker else "T",
                      "lastPx": inst.px(fill.ticks)})
        return d

    def order_push_json(self, o: Order, fill: Any = None) -> str:
        """orjson.dumps({"arg": {...}, "data": [order_view(o, fill)]}) formatted from a template:
        two of these go out per order on a connection with the orders channel, and copying then
        dumping a 70-key dict was ~40 % of the order path (a unit test holds the two equal).
        Client ids, order types and currencies were validated on entry and go in as they are;
        free text (tag, reqId, the api key) goes through json_str."""
        inst = o.inst
        ex = o.extra
        pc, qc = inst._px_cache, inst._qty_cache
        px = (pc.get(o.ticks) or inst.px(o.ticks)) if o.order_type != "MARKET" else ""
        sz = (qc.get(o.lots) or inst.qty(o.lots)) if o.lots < 10**15 else ""
        filled = o.filled_lots
        if filled:
            avg = o.cum_quote / inst.qty_float(filled)
            avg_px = f"{avg:.{inst.px_dec + 4}f}".rstrip("0").rstrip(".")
        else:
            avg_px = "0"
        fee = f"{-o.fee:.10f}".rstrip("0").rstrip(".") if o.fee else "0"
        fa = o.fee_asset
        tag = ex.get("tag")
        cancel_source = ex.get("cancelSource")
        cancel_reason = ex.get("cancelSourceReason")
        amend_result = ex.get("amendResult")
        req_id = ex.get("reqId")
        uid = self._uid_json.get(o.api_key)
        if uid is None:
            uid = self._uid_json[o.api_key] = json_str(o.api_key)
        if fill is None:
            last_px = ""
            fill_part = '"fillPx":"","tradeId":"","fillSz":"0","fillTime":"","fillPnl":"0","fillFee":"0",' \
                        '"fillFeeCcy":"","execType":""'
        else:
            last_px = inst.px(fill.ticks)
            fill_part = (f'"fillPx":"{last_px}","tradeId":"{fill.trade_id}","fillSz":"{inst.qty(fill.lots)}",'
                         f'"fillTime":"{fill.ts_ms}","fillPnl":"0",'
                         f'"fillFee":"{f"{-fill.fee:.10f}".rstrip("0").rstrip(".")}",'
                         f'"fillFeeCcy":"{fill.fee_asset}","execType":"{"M" if fill.maker else "T"}"')
        return (f'{{"arg":{{"channel":"orders","instType":"SPOT","uid":{uid}}},"data":[{{'
                f'"instType":"SPOT","instId":"{inst.venue_symbol}","tgtCcy":"","ccy":"","ordId":"{o.oid}",'
                f'"clOrdId":"{o.client_id}","tag":{json_str(tag) if tag else _EMPTY},'
                f'"px":"{px}","pxUsd":"","pxVol":"","pxType":"","sz":"{sz}","notionalUsd":"",'
                f'"ordType":"{ex.get("ordType", "limit")}","side":"{"buy" if o.side == BUY else "sell"}",'
                f'"posSide":"","tdMode":"cash","accFillSz":"{qc.get(filled) or inst.qty(filled)}",'
                f'"fillNotionalUsd":"","avgPx":"{avg_px}","state":"{_STATES[o.status]}","lever":"","pnl":"0",'
                f'"feeCcy":"{fa}","fee":"{fee}","rebateCcy":"{fa}","rebate":"0","category":"normal",'
                f'"uTime":"{o.update_ms}","cTime":"{o.create_ms}","source":"","reduceOnly":"false",'
                f'"cancelSource":{json_str(cancel_source) if cancel_source else _EMPTY},'
                f'"cancelSourceReason":{json_str(cancel_reason) if cancel_reason else _EMPTY},"quickMgnType":"",'
                f'"stpId":"","stpMode":"cancel_maker","attachAlgoClOrdId":"","lastPx":"{last_px}",'
                f'"isTpLimit":"false","linkedAlgoOrd":{{"algoId":""}},"attachAlgoOrds":[],"algoClOrdId":"",'
                f'"algoId":"","amendResult":{json_str(amend_result) if amend_result else _EMPTY},'
                f'"reqId":{json_str(req_id) if req_id else _EMPTY},'
                f'"amendSource":"","code":"0","msg":"","tradeQuoteCcy":"{inst.quote}",{fill_part},'
                f'"fillPxVol":"","fillPxUsd":"","fillMarkVol":"","fillFwdPx":"","fillMarkPx":"","fillIdxPx":""}}]}}')

    def on_order_event(self, kind: str, o: Order, fill: Any) -> None:
        if not self.order_subs or kind == "rejected":
            return
        key = o.api_key
        subs = self.order_subs_by_key.get(key)
        if subs is None:
            subs = self.order_subs_by_key[key] = [s for s in self.order_subs if s.api_key == key]
        if not subs:
            return
        if fill is None:
            # an order's events dispatched in one batch (an IOC's live + canceled) are pushed with
            # its state at dispatch, which nothing changes during the batch: one body serves them
            memo = self._push_memo
            if memo[0] is o and memo[1] == self.dispatch_seq:
                body = memo[2]
            else:
                body = self.order_push_json(o).encode()
                self._push_memo = (o, self.dispatch_seq, body)
        else:
            body = self.order_push_json(o, fill).encode()
        for s in subs:
            s.conn.send_text(body)

    def op_reply(self, sess: OkxSession, rid: Any, op: str, data: list, in_ns: int,
                 code: str | None = None, msg: str | None = None) -> None:
        if code is None:
            ok = sum(1 for d in data if d.get("sCode") == "0")
            code = "0" if ok == len(data) else ("1" if ok == 0 else "2")
            msg = "" if code == "0" else ("All operations failed" if code == "1" else "Partial success")
            if code != "1":
                self.stats["orders_acked"] += 1
            else:
                self.stats["orders_rejected"] += 1
            # orjson.dumps of the dict below, formatted directly (every order answer): the id was
            # checked alphanumeric on entry, op and msg are the sim's own words
            head = f'{{"id":"{rid}","op":"{op}"' if rid is not None else f'{{"op":"{op}"'
            self.reply(sess, (f'{head},"code":"{code}","msg":"{msg}","data":{orjson.dumps(data).decode()},'
                              f'"inTime":"{in_ns // 1000}","outTime":"{time.time_ns() // 1000}"}}'))
            return
        body: dict[str, Any] = {"op": op, "code": code, "msg": msg or "", "data": data,
                                "inTime": str(in_ns // 1000), "outTime": str(time.time_ns() // 1000)}
        if rid is not None:
            body = {"id": rid, **body}
        if code in ("0", "2"):
            self.stats["orders_acked"] += 1
        else:
            self.stats["orders_rejected"] += 1
        self.reply(sess, orjson.dumps(body))

    def ws_trade(self, sess: OkxSession, op: str, rid: Any, args: Any, exp_time: Any, recv_ns: int) -> None:
        in_ns = time.time_ns()
        first = args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else None
        self.note_order(op, first.get("clOrdId") or first.get("ordId") if first is not None else None, recv_ns)
        if sess.api_key is None:
            self.op_reply(sess, rid, op, [], in_ns, "60011", "Please log in")
            return
        if (self.rate_limit_count or self.rate_limit_until_ns) and self.rate_limited():
            self.op_reply(sess, rid, op, [], in_ns, "50011", "Rate limit reached. Please refer to API "
                                                             "documentation and throttle requests accordingly.")
            return
        if first is None or len(args) != 1 and not all(isinstance(a, dict) for a in args):
            self.op_reply(sess, rid, op, [], in_ns, "60013", "Invalid args")
            return
        if not op.startswith("batch") and op != "mass-cancel" and len(args) != 1:
            self.op_reply(sess, rid, op, [], in_ns, "60013", "Invalid args")
            return
        if len(args) > 20:
            self.op_reply(sess, rid, op, [], in_ns, "51000", "Parameter args error")
            return
        if exp_time is not None:
            try:
                expired = int(exp_time) < ms()
            except (TypeError, ValueError):
                self.op_reply(sess, rid, op, [], in_ns, "51000", "Parameter expTime error")
                return
            if expired:
                data = [{"ordId": "", "clOrdId": a.get("clOrdId", ""), "tag": a.get("tag", ""), "ts": str(ms()),
                         "sCode": "50102", "sMsg": "Request timeout"} for a in args]
                self.op_reply(sess, rid, op, data, in_ns)
                return
        key = sess.api_key
        if op in ("order", "batch-orders"):
            data = [self.place(key, a) for a in args]
        elif op in ("cancel-order", "batch-cancel-orders"):
            data = [self.cancel(key, a) for a in args]
        elif op in ("amend-order", "batch-amend-orders"):
            data = [self.amend(key, a) for a in args]
        else:
            a = args[0]
            inst = self.inst_from(a) if ("instIdCode" in a or "instId" in a) else None
            self.engine.cancel_all(key, inst.symbol if inst else None, "mass-cancel")
            data = [{"result": True}]
            self.op_reply(sess, rid, op, data, in_ns, "0", "")
            self.dispatch_events()
            return
        self.op_reply(sess, rid, op, data, in_ns)
        self.dispatch_events()

    def inst_from(self, a: dict) -> Instrument | None:
        code = a.get("instIdCode")
        if code is not None:
            try:
                return self.by_code.get(int(code))
            except (TypeError, ValueError):
                return None
        if not self.cfg.okx_require_inst_id_code:
            return self.instrument(a.get("instId"))
        return None

    def _bad(self, a: dict, code: str, msg: str, oid: str = "") -> dict:
        return {"ordId": oid, "clOrdId": a.get("clOrdId", "") if isinstance(a.get("clOrdId"), str) else "",
                "tag": a.get("tag", "") if isinstance(a.get("tag"), str) else "", "ts": str(ms()),
                "sCode": code, "sMsg": msg}

    def _inst_or_error(self, a: dict) -> tuple[Instrument | None, dict | None]:
        if "instIdCode" not in a and self.cfg.okx_require_inst_id_code:
            return None, self._bad(a, "50014", "Parameter instIdCode can not be empty.")
        inst = self.inst_from(a)
        if inst is None:
            return None, self._bad(a, "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")
        return inst, None

    def place(self, key: str, a: dict) -> dict:
        # lean path: instrument code, side, type, price and size strings accepted before (strategies
        # repeat them) are one dict lookup; anything else, and every error, takes the full checks
        px, sz = a.get("px"), a.get("sz")
        terms_key = None
        if px.__class__ is str and sz.__class__ is str and a.get("tdMode") == "cash":
            code = a.get("instIdCode")
            if code.__class__ is int:
                terms_key = (code, a.get("side"), a.get("ordType"), px, sz)
                hit = self._limit_terms.get(terms_key)
                cl = a.get("clOrdId", "")
                if hit is not None and cl.__class__ is str and (cl == "" or (len(cl) <= 32 and cl.isascii()
                                                                            and cl.isalnum())):
                    inst, side, ticks, lots, tif, post_only, ord_type = hit
                    return self._run_place(key, a, inst, side, ticks, lots, tif, post_only, cl, ord_type, 0.0)
        r = self._place(key, a)
        if terms_key is not None and r["sCode"] == "0" and a.get("ordType") != "market":
            o = self._last_placed
            if len(self._limit_terms) > 50_000:
                self._limit_terms.clear()
            self._limit_terms[terms_key] = (o.inst, o.side, o.ticks, o.lots, o.tif, o.post_only,
                                            o.extra["ordType"])
        return r

    def _place(self, key: str, a: dict) -> dict:
        inst, err = self._inst_or_error(a)
        if err:
            return err
        assert inst is not None
        cl = a.get("clOrdId", "")
        if cl != "" and (not isinstance(cl, str) or not CL_ORD_RE.match(cl)):
            return self._bad(a, "51000", "Parameter clOrdId error")
        if a.get("tdMode") != "cash":
            return self._bad(a, "51000", "Parameter tdMode error")
        side_s, ord_type = a.get("side"), a.get("ordType")
        if side_s not in ("buy", "sell"):
            return self._bad(a, "51000", "Parameter side error")
        if ord_type not in ORD_TYPES:
            return self._bad(a, "51000", "Parameter ordType error")
        tif, post_only = ORD_TYPES[ord_type]
        sz = a.get("sz")
        if not isinstance(sz, str) or not sz:
            return self._bad(a, "51000", "Parameter sz error")
        side = BUY if side_s == "buy" else SELL
        quote_qty = 0.0
        if ord_type == "market":
            tgt = a.get("tgtCcy") or ("quote_ccy" if side == BUY else "base_ccy")
            if tgt == "quote_ccy":
                try:
                    quote_qty = float(sz)
                except ValueError:
                    return self._bad(a, "51000", "Parameter sz error")
                if not quote_qty > 0:
                    return self._bad(a, "51000", "Parameter sz error")
                if side == SELL:
                    return self._bad(a, "51000", "Parameter tgtCcy error")
                lots = 10**15
            else:
                lots = inst.parse_qty(sz)
                if lots is None:
                    return self._bad(a, "51121", "Order quantity must be a multiple of the lot size.")
            ticks = 0
        else:
            px = a.get("px")
            if not isinstance(px, str) or not px:
                return self._bad(a, "51000", "Parameter px error")
            ticks = inst.parse_px(px)
            if ticks is None:
                return self._bad(a, "51000", "Parameter px error")
            lots = inst.parse_qty(sz)
            if lots is None:
                return self._bad(a, "51121", "Order quantity must be a multiple of the lot size.")
        if lots < inst.min_lots:
            return self._bad(a, "51020", "Your order should meet or exceed the minimum order amount.")
        return self._run_place(key, a, inst, side, ticks, lots, tif, post_only, cl, ord_type, quote_qty)

    def _run_place(self, key: str, a: dict, inst: Instrument, side: int, ticks: int, lots: int, tif: str,
                   post_only: bool, cl: str, ord_type: str, quote_qty: float) -> dict:
        o = self._last_placed = self.engine.new_order(key, inst, side, ticks, lots, tif, post_only, cl,
                                                      "MARKET" if ord_type == "market" else "LIMIT")
        o.quote_qty = quote_qty
        o.extra["ordType"] = ord_type
        if isinstance(a.get("tag"), str):
            o.extra["tag"] = a["tag"]
        why = self.engine.place(o)
        if why == WOULD_TAKE:
            # OKX accepts the order and cancels it at once; the orders channel says why
            o.status = "CANCELED"
            o.extra["cancelSource"] = "31"
            o.extra["cancelSourceReason"] = "The post-only order will take liquidity in taker orders"
            self.engine.events.append(("new", o, None))
            self.engine.events.append(("canceled", o, None))
            return {"ordId": str(o.oid), "clOrdId": cl, "tag": o.extra.get("tag", ""), "ts": str(ms()),
                    "sCode": "0", "sMsg": "Order placed"}
        if why == INSUFFICIENT_BALANCE:
            ccy = inst.quote if side == BUY else inst.base
            return self._bad(a, "51008", f"Order failed. Insufficient {ccy} balance in account.")
        if why == DUPLICATE_CLIENT_ID:
            return self._bad(a, "51016", "Duplicated clOrdId")
        if why:
            return self._bad(a, "51000", f"Order failed: {why}")
        return {"ordId": str(o.oid), "clOrdId": cl, "tag": o.extra.get("tag", ""), "ts": str(ms()),
                "sCode": "0", "sMsg": "Order placed"}

    def _find(self, key: str, a: dict, inst: Instrument) -> Order | None:
        oid = a.get("ordId")
        if oid:
            try:
                o = self.engine.find(key, oid=int(oid))
            except (TypeError, ValueError):
                return None
        else:
            cl = a.get("clOrdId")
            o = self.engine.find(key, client_id=cl) if isinstance(cl, str) and cl else None
        return o if o is not None and o.inst is inst else None

    def cancel(self, key: str, a: dict) -> dict:
        inst, err = self._inst_or_error(a)
        if err:
            return err
        assert inst is not None
        if not a.get("ordId") and not a.get("clOrdId"):
            return self._bad(a, "51000", "Parameter ordId error")
        o = self._find(key, a, inst)
        if o is None or not o.is_open:
            return self._bad(a, "51400", "Order cancellation failed as the order has been filled, canceled or "
                                         "does not exist.", str(a.get("ordId", "")))
        self.engine.cancel(o)
        return {"ordId": str(o.oid), "clOrdId": o.client_id, "ts": str(ms()), "sCode": "0", "sMsg": ""}

    def amend(self, key: str, a: dict) -> dict:
        inst, err = self._inst_or_error(a)
        if err:
            return err
        assert inst is not None
        o = self._find(key, a, inst)
        req_id = a.get("reqId", "") if isinstance(a.get("reqId"), str) else ""
        if o is None or not o.is_open:
            r = self._bad(a, "51503", "Order modification failed as the order has been filled, canceled or "
                                      "does not exist.", str(a.get("ordId", "")))
            r["reqId"] = req_id
            return r
        new_px, new_sz = a.get("newPx"), a.get("newSz")
        ticks = lots = None
        if new_px not in (None, ""):
            ticks = inst.parse_px(new_px) if isinstance(new_px, str) else None
            if ticks is None:
                return {**self._bad(a, "51000", "Parameter newPx error"), "reqId": req_id}
        if new_sz not in (None, ""):
            lots = inst.parse_qty(new_sz) if isinstance(new_sz, str) else None
            if lots is None:
                return {**self._bad(a, "51000", "Parameter newSz error"), "reqId": req_id}
        if ticks is None and lots is None:
            return {**self._bad(a, "51000", "Parameter newSz error"), "reqId": req_id}
        o.extra["reqId"] = req_id
        why = self.engine.amend(o, ticks, lots)
        if why:
            msg = {"insufficient_balance": "Order failed. Insufficient balance in account.",
                   "post_only_would_take": "The post-only order will take liquidity in taker orders",
                   "invalid_amend": "New order size cannot be less than or equal to the filled size"}.get(why, why)
            code = {"insufficient_balance": "51008", "post_only_would_take": "51527"}.get(why, "51510")
            o.extra["amendResult"] = "-1"
            if a.get("cxlOnFail") in (True, "true"):
                self.engine.cancel(o)
            return {"ordId": str(o.oid), "clOrdId": o.client_id, "ts": str(ms()), "reqId": req_id,
                    "sCode": code, "sMsg": msg}
        o.extra["amendResult"] = "0"
        return {"ordId": str(o.oid), "clOrdId": o.client_id, "ts": str(ms()), "reqId": req_id, "sCode": "0",
                "sMsg": ""}

    # -- dead-man switch -------------------------------------------------------------------
    def set_cancel_all_after(self, key: str, timeout_s: int) -> int:
        h = self.dead_man.pop(key, None)
        if h is not None:
            h.cancel()
        if timeout_s == 0:
            return 0
        self.dead_man[key] = self.sim.loop.call_later(timeout_s, self._dead_man_fire, key)
        return ms() + timeout_s * 1000

    def _dead_man_fire(self, key: str) -> None:
        self.dead_man.pop(key, None)
        orders = self.engine.open_orders(key)
        for o in orders:
            o.extra["cancelSource"] = "1"
            o.extra["cancelSourceReason"] = "Order canceled by system"
            self.engine.cancel(o, "dead-man")
        self.dead_man_fired.append({"api_key": key, "canceled": len(orders), "ts": ms()})
        self.dispatch_events()

    # -- REST ------------------------------------------------------------------------------
    def rest_auth(self, req: Request) -> str | Response:
        h = req.headers
        key, sign = h.get("ok-access-key"), h.get("ok-access-sign")
        ts, pp = h.get("ok-access-timestamp"), h.get("ok-access-passphrase")
        if not key:
            return self.err(401, "50103", "Request header OK-ACCESS-KEY cannot be empty.")
        if not pp:
            return self.err(401, "50104", "Request header OK-ACCESS-PASSPHRASE cannot be empty.")
        if not sign:
            return self.err(401, "50106", "Request header OK-ACCESS-SIGN cannot be empty.")
        if not ts:
            return self.err(401, "50107", "Request header OK-ACCESS-TIMESTAMP cannot be empty.")
        acc = self.sim.accounts.get(key)
        if acc is None:
            return self.err(401, "50111", "Invalid OK-ACCESS-KEY.")
        try:
            t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return self.err(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.")
        if abs(time.time() - t) > 30:
            return self.err(401, "50102", "Timestamp request expired.")
        if pp != acc.passphrase:
            return self.err(401, "50105", "Invalid OK-ACCESS-PASSPHRASE.")
        prehash = ts + req.method + req.target + req.body.decode("utf-8", "replace")
        if not acc.secret or auth.okx_sign(acc.secret, prehash) != sign:
            return self.err(401, "50113", "Invalid Sign.")
        return key

    def err(self, status: int, code: str, msg: str) -> Response:
        self.stats["bad_requests"] += 1
        return Response(status, orjson.dumps({"code": code, "msg": msg, "data": []}))

    def ok(self, data: list) -> Response:
        return Response(200, orjson.dumps({"code": "0", "msg": "", "data": data}))

    def instrument_view(self, inst: Instrument) -> dict:
        return {"instType": "SPOT", "instId": inst.venue_symbol, "instIdCode": inst.inst_id_code, "uly": "",
                "instFamily": "", "baseCcy": inst.base, "quoteCcy": inst.quote, "settleCcy": "", "ctVal": "",
                "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "1548133413000",
                "auctionEndTime": "", "contTdSwTime": "", "openType": "", "expTime": "", "lever": "",
                "tickSz": inst.tick_str, "lotSz": inst.lot_str, "minSz": inst.min_qty_str, "ctType": "",
                "alias": "", "state": "live", "ruleType": "normal", "maxLmtSz": "9999999999",
                "maxMktSz": "1000000", "maxLmtAmt": "20000000", "maxMktAmt": "1000000",
                "maxTwapSz": "9999999999", "maxIcebergSz": "9999999999", "maxTriggerSz": "9999999999",
                "maxStopSz": "1000000", "futureSettlement": False, "tradeQuoteCcyList": [inst.quote]}

    def handle_http(self, req: Request) -> Response:
        p, m, args = req.path, req.method, req.args
        if p == "/api/v5/public/time":
            return self.ok([{"ts": str(ms())}])
        if p == "/api/v5/public/instruments":
            if args.get("instType") != "SPOT":
                return self.err(400, "51000", "Parameter instType error")
            iid = args.get("instId")
            return self.ok([self.instrument_view(i) for i in self.instruments.values()
                            if not iid or i.venue_symbol == iid])
        if p == "/api/v5/market/books":
            inst = self.instrument(args.get("instId"))
            if inst is None:
                return self.err(400, "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")
            try:
                sz = max(1, min(int(args.get("sz", "1") or 1), 400))
            except ValueError:
                return self.err(400, "51000", "Parameter sz error")
            b = self.books[inst.symbol]
            lv = self._levels
            body = (f'{{"code":"0","msg":"","data":[{{"asks":[{lv(inst, b.top_asks(sz))}],"bids":['
                    f'{lv(inst, b.top_bids(sz))}],"ts":"{ms()}","seqId":{b.seq_id}}}]}}')
            return Response(200, body)
        if p == "/api/v5/market/ticker":
            inst = self.instrument(args.get("instId"))
            if inst is None:
                return self.err(400, "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")
            bb, bq, ba, aq = self.books[inst.symbol].top()
            return self.ok([{"instType": "SPOT", "instId": inst.venue_symbol, "last": inst.px(bb), "lastSz": "0",
                             "askPx": inst.px(ba), "askSz": inst.qty(aq), "bidPx": inst.px(bb),
                             "bidSz": inst.qty(bq), "ts": str(ms())}])
        if not p.startswith("/api/v5/trade/") and not p.startswith("/api/v5/account/"):
            return self.err(404, "50000", "Not found")
        key = self.rest_auth(req)
        if isinstance(key, Response):
            return key
        if p == "/api/v5/trade/orders-pending" and m == "GET":
            inst = self.instrument(args.get("instId")) if args.get("instId") else None
            return self.ok([self.order_view(o) for o in self.engine.open_orders(key, inst.symbol if inst else None)])
        if p in ("/api/v5/trade/fills", "/api/v5/trade/fills-history") and m == "GET":
            inst = self.instrument(args.get("instId")) if args.get("instId") else None
            fills = self.engine.recent_fills(key, inst.symbol if inst else None)[::-1][:100]
            return self.ok([{"instType": "SPOT", "instId": f.order.inst.venue_symbol, "tradeId": str(f.trade_id),
                             "ordId": str(f.order.oid), "clOrdId": f.order.client_id, "billId": str(f.trade_id),
                             "subType": "1", "tag": f.order.extra.get("tag", ""),
                             "fillPx": f.order.inst.px(f.ticks), "fillSz": f.order.inst.qty(f.lots),
                             "fillIdxPx": "", "fillPnl": "0", "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "",
                             "fillFwdPx": "", "fillMarkPx": "", "side": "buy" if f.order.side == BUY else "sell",
                             "posSide": "net", "execType": "M" if f.maker else "T", "feeCcy": f.fee_asset,
                             "fee": f"{-f.fee:.10f}".rstrip("0").rstrip("."), "ts": str(f.ts_ms),
                             "fillTime": str(f.ts_ms), "tradeQuoteCcy": f.order.inst.quote} for f in fills])
        if p == "/api/v5/trade/cancel-all-after" and m == "POST":
            try:
                body = orjson.loads(req.body or b"{}")
                t = int(body.get("timeOut"))
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                return self.err(400, "51000", "Parameter timeOut error")
            if t != 0 and not 10 <= t <= 120:
                return self.err(400, "51000", "Parameter timeOut error")
            trigger = self.set_cancel_all_after(key, t)
            return self.ok([{"triggerTime": str(trigger), "tag": body.get("tag", "") or "", "ts": str(ms())}])
        if p == "/api/v5/account/balance" and m == "GET":
            acc = self.engine.account(key)
            return self.ok([{"uTime": str(ms()), "totalEq": "", "details": [
                {"ccy": a, "availBal": f"{v[0]:.8f}", "frozenBal": f"{v[1]:.8f}", "cashBal": f"{v[0] + v[1]:.8f}",
                 "eq": f"{v[0] + v[1]:.8f}"} for a, v in acc.items()]}])
        if p in ("/api/v5/trade/order", "/api/v5/trade/cancel-order", "/api/v5/trade/amend-order") and m == "POST":
            try:
                a = orjson.loads(req.body or b"{}")
            except orjson.JSONDecodeError:
                return self.err(400, "50002", "JSON syntax error")
            if not isinstance(a, dict):
                return self.err(400, "50002", "JSON syntax error")
            if "instId" in a and "instIdCode" not in a:
                inst = self.instrument(a["instId"])
                if inst is not None:
                    a["instIdCode"] = inst.inst_id_code
            self.note_order(p.rsplit("/", 1)[1], a.get("clOrdId") or a.get("ordId"), time.monotonic_ns())
            if self.rate_limited():
                return self.err(429, "50011", "Rate limit reached. Please refer to API documentation and "
                                              "throttle requests accordingly.")
            fn = {"order": self.place, "cancel-order": self.cancel, "amend-order": self.amend}[p.rsplit("/", 1)[1]]
            d = fn(key, a)
            self.dispatch_events()
            ok = d.get("sCode") == "0"
            return Response(200, orjson.dumps({"code": "0" if ok else "1", "msg": "" if ok else
                                               "All operations failed", "data": [d]}))
        return self.err(404, "50000", "Not found")
