"""OKX v5 spot gateway over the private WebSocket: login, templates, decoding, REST.

Orders, amends and cancels go on the logged-in private socket (no per-order signature;
`instIdCode` from /api/v5/public/instruments, `instId` alongside for older servers);
state and fills come from the `orders` channel on the same socket. Dead-man switch:
`POST /api/v5/trade/cancel-all-after`. Keepalive: text `ping` when idle.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import orjson

from common.enums import Exchange, OrderState, TimeInForce
from common.instruments import InstrumentSpec, from_venue_symbol, venue_symbol
from oms.state import Reason
from oms.venues.base import (
    OP_AMEND,
    OP_CANCEL,
    OP_CANCEL_ALL,
    OP_NEW,
    U_ACK,
    U_AMEND_ACK,
    U_AMEND_REJECT,
    U_CANCEL_ACK,
    U_CANCEL_ALL_ACK,
    U_CANCEL_REJECT,
    U_ERROR,
    U_IGNORE,
    U_LOGIN,
    U_NOTICE,
    U_ORDER,
    U_PONG,
    U_REJECT,
    U_SUBSCRIBED,
    Gateway,
    GatewayError,
    Update,
    VenueOrder,
    field,
    fnum,
    prepared_hmac,
)

VENUE = Exchange.OKX


def sign(secret: str, payload: str) -> str:
    """OKX signature: base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + body))."""
    return base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()


def login_payload(ts_s: str) -> str:
    return ts_s + "GET" + "/users/self/verify"


def iso_ms(epoch_ms: int) -> str:
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


STATES = {"live": OrderState.NEW, "partially_filled": OrderState.PARTIALLY_FILLED, "filled": OrderState.FILLED,
          "canceled": OrderState.CANCELED, "mmp_canceled": OrderState.CANCELED}

_STATES_B = {k.encode(): v for k, v in STATES.items()}
_RATE = {"50011", "50061", "60014", "50040"}
_TIMESTAMP = {"50102", "60004", "60006", "50112"}
_SIG = {"50113", "60007"}
_AUTH = {"50100", "50101", "50103", "50104", "50105", "50111", "50114", "60005", "60009", "60024", "60011"}
_UNKNOWN_ORDER = {"51400", "51401", "51402", "51410", "51603", "51503", "51509"}
_BALANCE = {"51008", "51119", "51127", "51131"}
_TICKLOT = {"51121", "51006", "51007", "51137", "51138", "51139", "51031", "51004"}


def error_reason(code: str, msg: str = "") -> Reason:
    """OKX code (top-level or sCode) -> Reason."""
    c = str(code)
    m = msg.lower()
    if c in _RATE:
        return Reason.RATE_LIMIT
    if c in _TIMESTAMP:
        return Reason.TIMESTAMP
    if c in _SIG:
        return Reason.BAD_SIGNATURE
    if c in _AUTH:
        return Reason.AUTH
    if c in _UNKNOWN_ORDER:
        return Reason.UNKNOWN_ORDER
    if c in _BALANCE or "insufficient" in m:
        return Reason.INSUFFICIENT_BALANCE
    if c in _TICKLOT:
        return Reason.INVALID_TICK_LOT
    if c == "51016":
        return Reason.DUPLICATE_ID
    if c in ("51001", "51000") and "instid" in m:
        return Reason.UNKNOWN_INSTRUMENT
    if c == "51020":
        return Reason.MIN_NOTIONAL
    if "post" in m and "only" in m:
        return Reason.POST_ONLY_CROSS
    if c in ("50001", "50004", "50013", "50026"):
        return Reason.VENUE_ERROR
    if c.startswith("60") or c == "51000":
        return Reason.BAD_REQUEST
    return Reason.OTHER


_ORD_TYPE: dict[int, str] = {TimeInForce.GTC: "limit", TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok",
             TimeInForce.POST_ONLY: "post_only"}
_SIDE: dict[int, str] = {1: "buy", -1: "sell"}
_NEW_JSON = ('{"id":"n%s","op":"order","args":[{"instIdCode":%d,"instId":"%s","tdMode":"cash","side":"%s",'
             '"ordType":"%s","px":"%s","sz":"%s","clOrdId":"%s"}]}')
_NEW_ARG = ('{"instIdCode":%d,"instId":"%s","tdMode":"cash","side":"%s","ordType":"%s","px":"%s","sz":"%s",'
            '"clOrdId":"%s"}')
_CANCEL_JSON = '{"id":"c%s","op":"cancel-order","args":[{"instIdCode":%d,"instId":"%s","clOrdId":"%s"}]}'
_CANCEL_ARG = '{"instIdCode":%d,"instId":"%s","clOrdId":"%s"}'


class OkxGateway(Gateway):
    venue = VENUE
    batch_max = 20  # batch-orders / batch-cancel-orders take up to 20
    batch_new = True
    needs_ping_text = b"ping"
    ping_interval_s = 20.0

    def __init__(self, vcfg, instruments, sink, symbols=None) -> None:
        super().__init__(vcfg, instruments, sink, symbols)
        self._key = vcfg.api_key
        self._passphrase = vcfg.passphrase
        self._mac = prepared_hmac(vcfg.secret_key.encode(), hashlib.sha256)
        self.codes: dict[str, int] = {}  # instId -> instIdCode
        self._seq = 0

    def _sig(self, payload: str) -> str:
        m = self._mac.copy()
        m.update(payload.encode())
        return base64.b64encode(m.digest()).decode()

    # -- encoders (hot path) --------------------------------------------------------
    def encode_new(self, wire_id: str, vsym: str, side: int, px_s: str, qty_s: str, tif: int, ts_ms: int) -> bytes:
        return (_NEW_JSON % (wire_id, self.codes.get(vsym, 0), vsym, _SIDE[side], _ORD_TYPE[tif], px_s, qty_s,
                             wire_id)).encode()

    def encode_cancel(self, wire_id: str, vsym: str, venue_ord_id: str, ts_ms: int) -> bytes:
        return (_CANCEL_JSON % (wire_id, self.codes.get(vsym, 0), vsym, wire_id)).encode()

    def encode_amend(self, wire_id: str, vsym: str, venue_ord_id: str, side: int, new_qty_s: str, new_px_s: str,
                     tif: int, new_wire_id: str, ts_ms: int) -> bytes:
        arg = {"instIdCode": self.codes.get(vsym, 0), "instId": vsym, "clOrdId": wire_id}
        if new_qty_s:
            arg["newSz"] = new_qty_s
        if new_px_s:
            arg["newPx"] = new_px_s
        return orjson.dumps({"id": OP_AMEND + wire_id, "op": "amend-order", "args": [arg]})

    def encode_batch_new(self, items: list[tuple[str, str, int, str, str, int]]) -> tuple[str, bytes]:
        """Up to 20 new orders in one `batch-orders` request: (client id, instId, side, px, qty, tif).
        The request id is "b" + the first client id (each order's answer names its own clOrdId)."""
        args = ",".join(_NEW_ARG % (self.codes.get(v, 0), v, _SIDE[sd], _ORD_TYPE[tif], px_s, qty_s, w)
                        for w, v, sd, px_s, qty_s, tif in items[:20])
        rid = "b" + items[0][0]
        return rid, f'{{"id":"{rid}","op":"batch-orders","args":[{args}]}}'.encode()

    def encode_batch_cancel(self, items: list[tuple[str, str]], op: str = OP_CANCEL_ALL) -> tuple[str, bytes]:
        """Cancel up to 20 orders by (wire id, instId) in one `batch-cancel-orders` request whose id
        starts with `op` (cancel_all's, or requests coalesced while corked)."""
        self._seq += 1
        rid = f"{op}{self._seq}"
        args = ",".join(_CANCEL_ARG % (self.codes.get(v, 0), v, w) for w, v in items[:20])
        return rid, f'{{"id":"{rid}","op":"batch-cancel-orders","args":[{args}]}}'.encode()

    # -- login / private stream ------------------------------------------------------
    async def login(self) -> None:
        await self.sync_clock()
        ts = str(self.now_ms() // 1000)
        self._login_fut = self.new_future()
        self.send(orjson.dumps({"op": "login", "args": [{"apiKey": self._key, "passphrase": self._passphrase,
                                                          "timestamp": ts, "sign": self._sig(login_payload(ts))}]}))
        await self._login_fut

    async def subscribe_private(self) -> None:
        self._sub_fut = self.new_future()
        self._pending_subs = 1
        self.send(b'{"id":"sub","op":"subscribe","args":[{"channel":"orders","instType":"SPOT"}]}')
        await self._sub_fut

    def redundant(self, data: bytes) -> bool:
        # the order's state first (two finds near the start): most pushes that change something
        # (the cancel's `canceled`) stop there, before the scans of the long tail of the push
        if not data.startswith(b'{"arg":{"channel":"orders"'):
            return False
        state = field(data, b'"state":"')
        st = _STATES_B.get(state) if state else None
        if st is None:
            return False
        cl = field(data, b'"clOrdId":"')
        if not cl or not self.sink.known_state(cl.decode(), st):  # type: ignore[union-attr]
            return False
        if data.count(b'"clOrdId":"') != 1:
            return False
        if field(data, b'"fillSz":"') not in (None, b"", b"0") or field(data, b'"tradeId":"'):
            return False
        return field(data, b'"amendResult":"') in (None, b"", b"-1")

    # -- REST ----------------------------------------------------------------------
    async def _call(self, method: str, path: str, body: dict | None = None, signed: bool = True):
        if self.rest is None:
            raise GatewayError("okx: no REST URL configured")
        raw = orjson.dumps(body) if body is not None else b""
        headers = {"Content-Type": "application/json"}
        if signed:
            ts = iso_ms(self.now_ms())
            headers.update({"OK-ACCESS-KEY": self._key, "OK-ACCESS-PASSPHRASE": self._passphrase,
                            "OK-ACCESS-TIMESTAMP": ts,
                            "OK-ACCESS-SIGN": self._sig(ts + method + path + raw.decode())})
        if self.vcfg.testnet:
            headers["x-simulated-trading"] = "1"
        resp = await self.rest.request(method, path, raw if body is not None else None, headers)
        js = resp.json()
        if resp.status != 200 or not isinstance(js, dict) or str(js.get("code", "0")) != "0":
            code = js.get("code", "") if isinstance(js, dict) else ""
            msg = js.get("msg", "") if isinstance(js, dict) else ""
            raise GatewayError(f"okx {method} {path.split('?')[0]}: HTTP {resp.status} code {code} {msg}"[:200])
        return js.get("data", [])

    async def sync_clock(self) -> None:
        try:
            t0 = time.time_ns() // 1_000_000
            data = await self._call("GET", "/api/v5/public/time", signed=False)
            t1 = time.time_ns() // 1_000_000
            self.clock_offset_ms = int(data[0]["ts"]) - (t0 + t1) // 2
        except Exception:
            self.clock_offset_ms = 0

    async def load_instruments(self) -> int:
        data = await self._call("GET", "/api/v5/public/instruments?instType=SPOT", signed=False)
        return parse_instruments(data, self.instruments, self.codes, {venue_symbol(s, VENUE) for s in self.symbols})

    async def open_orders(self) -> list[VenueOrder]:
        data = await self._call("GET", "/api/v5/trade/orders-pending?instType=SPOT")
        return [venue_order(o) for o in data]

    async def query_order(self, wire_id: str, vsym: str) -> VenueOrder | None:
        return await self._query_order(f"instId={vsym}&clOrdId={wire_id}")

    async def query_order_by_id(self, venue_ord_id: str, vsym: str) -> VenueOrder | None:
        return await self._query_order(f"instId={vsym}&ordId={venue_ord_id}")

    async def _query_order(self, query: str) -> VenueOrder | None:
        """GET trade/order; None when OKX says the order does not exist (51603)."""
        try:
            data = await self._call("GET", f"/api/v5/trade/order?{query}")
        except GatewayError as e:
            if "51603" in str(e):
                return None
            raise
        return venue_order(data[0]) if data else None

    async def recent_fills(self, vsym: str, since_ms: int) -> list[Update]:
        """trade/fills (the last 3 days; newest first, FILLS_PAGE per request), paged back in time
        with `after=<billId>` until a page is short, older than `since_ms`, or brings nothing new.
        At most FILLS_MAX_PAGES requests (the endpoint allows 60 per 2 s)."""
        out: list[Update] = []
        seen: set[str] = set()
        after = ""
        for _ in range(FILLS_MAX_PAGES):
            q = f"/api/v5/trade/fills?instType=SPOT&instId={vsym}&begin={since_ms}&limit={FILLS_PAGE}"
            data = await self._call("GET", q + (f"&after={after}" if after else ""))
            new = 0
            oldest_ms = None
            for f in data or []:
                u = fill_update(f, vsym)
                if u.trade_id in seen:
                    continue
                seen.add(u.trade_id)
                out.append(u)
                new += 1
                after = str(f.get("billId", "")) or after
                oldest_ms = u.ts_ms if oldest_ms is None else min(oldest_ms, u.ts_ms)
            if len(data or []) < FILLS_PAGE or not new or not after or (oldest_ms is not None and oldest_ms < since_ms):
                break
        return out

    async def arm_deadman(self, timeout_s: int) -> bool:
        """cancel-all-after: 0 disarms, otherwise 10..120 s."""
        t = 0 if timeout_s <= 0 else min(max(int(timeout_s), 10), 120)
        await self._call("POST", "/api/v5/trade/cancel-all-after", {"timeOut": str(t)})
        return True

    async def cancel_all_rest(self, vsym: str) -> None:
        orders = [o for o in await self.open_orders() if o.vsym == vsym]
        for i in range(0, len(orders), 20):
            body = [{"instId": o.vsym, "ordId": o.venue_ord_id} for o in orders[i:i + 20]]
            await self._call("POST", "/api/v5/trade/cancel-batch-orders", body)  # type: ignore[arg-type]


def parse_instruments(data: list, instruments, codes: dict[str, int], wanted: set[str]) -> int:
    n = 0
    for d in data:
        inst = d.get("instId", "")
        if wanted and inst not in wanted:
            continue
        code = int(d.get("instIdCode", 0) or 0)
        codes[inst] = code
        sym = from_venue_symbol(inst, VENUE)
        instruments.set_spec(InstrumentSpec(VENUE, sym, instruments.id_for(sym),
                                            tick_size=fnum(d.get("tickSz")) or 0.01,
                                            lot_size=fnum(d.get("lotSz")) or 0.0001, min_qty=fnum(d.get("minSz")),
                                            venue_code=code))
        n += 1
    return n


FILLS_PAGE = 100  # trade/fills maximum
FILLS_MAX_PAGES = 20


def fill_update(f: dict, vsym: str = "") -> Update:
    """One trade/fills row (OKX fees are negative when paid)."""
    return Update(U_ORDER, cl_ord_id=f.get("clOrdId", ""), venue_ord_id=str(f.get("ordId", "")),
                  vsym=f.get("instId", vsym), fill_qty=fnum(f.get("fillSz")),
                  fill_px=fnum(f.get("fillPx")), fee=-fnum(f.get("fee")), fee_asset=f.get("feeCcy", ""),
                  liquidity=1 if f.get("execType") == "M" else 2, trade_id=str(f.get("tradeId", "")),
                  side=1 if f.get("side") == "buy" else -1, ts_ms=int(f.get("ts", 0) or 0))


def venue_order(o: dict) -> VenueOrder:
    return VenueOrder(o.get("clOrdId", ""), str(o.get("ordId", "")), o.get("instId", ""),
                      1 if o.get("side") == "buy" else -1, fnum(o.get("px")), fnum(o.get("sz")),
                      fnum(o.get("accFillSz")), fnum(o.get("avgPx")), STATES.get(o.get("state", ""), OrderState.UNKNOWN))


_CANCEL_SOURCE = {"31": Reason.POST_ONLY_CROSS, "32": Reason.SELF_TRADE, "14": Reason.IOC_UNFILLED,
                  "15": Reason.IOC_UNFILLED, "1": Reason.USER_CANCEL, "13": Reason.USER_CANCEL}


def decode_order_push(d: dict) -> Update:
    g = d.get
    st = STATES.get(g("state", ""), OrderState.UNKNOWN)
    vid = g("ordId", "")
    # positional: kind, op, req_id, cl_ord_id, venue_ord_id, vsym, state, cum_qty, avg_px
    u = Update(U_ORDER, "", "", g("clOrdId", ""), vid if vid.__class__ is str else str(vid), g("instId", ""), st,
               fnum(g("accFillSz")), fnum(g("avgPx")), px=fnum(g("px")), qty=fnum(g("sz")),
               side=1 if g("side") == "buy" else -1, ts_ms=int(g("uTime", 0) or g("fillTime", 0) or 0))
    fsz = fnum(d.get("fillSz"))
    if fsz > 0 and d.get("tradeId"):
        u.fill_qty = fsz
        u.fill_px = fnum(d.get("fillPx"))
        u.fee = -fnum(d.get("fillFee"))  # OKX: negative = charged
        u.fee_asset = d.get("fillFeeCcy", "")
        u.liquidity = 1 if d.get("execType") == "M" else 2
        u.trade_id = str(d.get("tradeId"))
        if d.get("fillTime"):
            u.ts_ms = int(d["fillTime"])
    if st == OrderState.CANCELED:
        src = str(d.get("cancelSource", ""))
        u.reason = _CANCEL_SOURCE.get(src, Reason.NONE)
        if u.reason == Reason.NONE and d.get("ordType") in ("ioc", "fok", "optimal_limit_ioc"):
            u.reason = Reason.IOC_UNFILLED
    if d.get("amendResult") == "0" and st in (OrderState.NEW, OrderState.PARTIALLY_FILLED) and not u.trade_id:
        u.kind = U_AMEND_ACK  # the push that confirms an amend (a later push may still carry the flag)
    return u


_NEW = OrderState.NEW
_loads = orjson.loads


def decode(data: bytes) -> list[Update]:
    """One private-socket frame -> updates. Pure: replay tests call it on recorded frames."""
    if data == b"pong":
        return [Update(U_PONG)]
    m = _loads(data)
    if not isinstance(m, dict):
        raise ValueError("frame is not an object")
    if "data" in m and "arg" in m:
        if m["arg"].get("channel") != "orders":
            return [Update(U_IGNORE)]
        return [decode_order_push(d) for d in m["data"]]
    ev = m.get("event")
    if ev is not None:
        code = str(m.get("code", "0"))
        if ev == "login":
            return [Update(U_LOGIN, ok=code == "0", code=code, reason=error_reason(code) if code != "0" else Reason.NONE)]
        if ev == "subscribe":
            return [Update(U_SUBSCRIBED)]
        if ev == "error":
            reason = error_reason(code, str(m.get("msg", "")))
            if reason in (Reason.AUTH, Reason.BAD_SIGNATURE, Reason.TIMESTAMP) or code in ("60009", "60022"):
                return [Update(U_LOGIN, ok=False, code=code, reason=reason)]
            if m.get("id") == "sub":
                return [Update(U_SUBSCRIBED, ok=False, code=code, msg=str(m.get("msg", ""))[:120])]
            return [Update(U_ERROR, code=code, msg=str(m.get("msg", ""))[:120], reason=reason)]
        if ev == "notice":
            return [Update(U_NOTICE, code=code, msg=str(m.get("msg", "notice"))[:120])]
        return [Update(U_IGNORE)]
    op = m.get("op")
    req_id = str(m.get("id", ""))
    top = str(m.get("code", "0"))
    rows = m.get("data") or []
    if op == "order" or op == "batch-orders":
        out = []
        for d in rows:
            sc = str(d.get("sCode", top))
            cl = d.get("clOrdId") or (req_id[1:] if req_id[:1] == OP_NEW else "")
            if sc == "0":
                # positional: kind, op, req_id, cl_ord_id, venue_ord_id, vsym, state
                out.append(Update(U_ACK, "", req_id, cl, str(d.get("ordId", "")), "", _NEW,
                                  ts_ms=int(d.get("ts", 0) or 0)))
            else:
                msg = str(d.get("sMsg", ""))
                r = error_reason(sc, msg)
                kind = U_ORDER if r == Reason.VENUE_ERROR else U_REJECT
                out.append(Update(kind, req_id=req_id, cl_ord_id=cl, code=sc, msg=msg[:120], reason=r, ok=False,
                                  state=OrderState.UNKNOWN if kind == U_ORDER else None))
        if not out:  # malformed request or top-level error without rows: the whole request failed
            r = error_reason(top, str(m.get("msg", "")))
            cl = req_id[1:] if op == "order" else ""  # a batch: the manager knows its orders by req_id
            out.append(Update(U_REJECT, req_id=req_id, cl_ord_id=cl, code=top, ok=False, reason=r,
                              msg=str(m.get("msg", ""))[:120]))
        return out
    if op in ("cancel-order", "amend-order", "batch-cancel-orders"):
        ok_kind, bad_kind = ((U_CANCEL_ACK, U_CANCEL_REJECT) if op != "amend-order" else (U_AMEND_ACK, U_AMEND_REJECT))
        out = []
        for d in rows:
            sc = str(d.get("sCode", top))
            cl = d.get("clOrdId") or (req_id[1:] if req_id[:1] in (OP_CANCEL, OP_AMEND) else "")
            if sc == "0":
                out.append(Update(ok_kind, "", req_id, cl, str(d.get("ordId", ""))))
            else:
                msg = str(d.get("sMsg", ""))
                out.append(Update(bad_kind, req_id=req_id, cl_ord_id=cl, code=sc, msg=msg[:120], ok=False,
                                  reason=error_reason(sc, msg)))
        if op == "batch-cancel-orders":
            if req_id[:1] == OP_CANCEL_ALL:
                out.append(Update(U_CANCEL_ALL_ACK, req_id=req_id, ok=top == "0"))
            elif not out:  # coalesced cancels refused as a whole: the gateway names each order
                out.append(Update(U_CANCEL_REJECT, req_id=req_id, code=top, ok=False,
                                  reason=error_reason(top, str(m.get("msg", ""))), msg=str(m.get("msg", ""))[:120]))
        if not out:
            out.append(Update(bad_kind, req_id=req_id, cl_ord_id=req_id[1:], code=top, ok=False,
                              reason=error_reason(top, str(m.get("msg", "")))))
        return out
    return [Update(U_IGNORE)]


_ = (OP_NEW, OP_CANCEL_ALL)


# the pure module decoder is the gateway's `decode` (no method hop per frame)
OkxGateway.decode = staticmethod(decode)  # type: ignore[method-assign,assignment]
