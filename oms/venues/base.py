"""What every venue gateway shares: the normalised `Update` a decoder returns, the picows
connection (open, authenticate, keep alive, reconnect) and the REST client.

A venue module supplies pure encoders/decoders plus login, subscribe, REST and
dead-man calls; it never changes order state itself: it hands `Update`s to its sink
(the OrderManager). Nothing here blocks the loop; credentials never appear in logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from picows import WSListener, WSMsgType, WSTransport, ws_connect

from common.config import VenueConfig
from common.enums import Exchange, OrderState
from common.instruments import Instruments
from oms.http import HttpClient
from oms.state import Reason

log = logging.getLogger("oms.gateway")

# Update kinds
U_ACK = 1  # new order accepted by the venue (state may also be given)
U_REJECT = 2  # new order refused
U_ORDER = 3  # execution report / order push: state and cumulative fill
U_FILL = 4  # one trade (may come with U_ORDER data in the same object)
U_CANCEL_ACK = 5
U_CANCEL_REJECT = 6
U_AMEND_ACK = 7
U_AMEND_REJECT = 8
U_LOGIN = 9  # authenticated (ok) or login failed (reason)
U_SUBSCRIBED = 10
U_PONG = 11
U_ERROR = 12  # connection-level error frame
U_NOTICE = 13  # venue asks us to reconnect (shutdown / upgrade notice)
U_IGNORE = 14
U_CANCEL_ALL_ACK = 15
U_BATCH = 16  # request ack whose per-order results follow as separate updates

OP_NEW = "n"
OP_CANCEL = "c"
OP_AMEND = "a"
OP_CANCEL_ALL = "x"
OP_OTHER = "o"
OP_BATCH_CANCEL = "y"  # cancels coalesced into one batch request (OP_CANCEL_ALL: cancel_all's)

B_NEW = 1  # Gateway.queue kinds
B_CANCEL = 2


class Update:
    """One normalised fact decoded from a venue frame. Quantities are absolute (base units),
    `cum_qty` cumulative, `fill_*` this trade only; empty strings / 0 when not given."""

    __slots__ = ("kind", "op", "req_id", "cl_ord_id", "venue_ord_id", "vsym", "state", "cum_qty", "avg_px",
                 "fill_qty", "fill_px", "fee", "fee_asset", "liquidity", "trade_id", "reason", "code", "msg",
                 "ts_ms", "px", "qty", "side", "ok", "retry_after_s")

    def __init__(self, kind: int, op: str = "", req_id: str = "", cl_ord_id: str = "", venue_ord_id: str = "",
                 vsym: str = "", state: OrderState | None = None, cum_qty: float = -1.0, avg_px: float = 0.0,
                 fill_qty: float = 0.0, fill_px: float = 0.0, fee: float = 0.0, fee_asset: str = "",
                 liquidity: int = 0, trade_id: str = "", reason: Reason = Reason.NONE, code: str = "",
                 msg: str = "", ts_ms: int = 0, px: float = 0.0, qty: float = 0.0, side: int = 0, ok: bool = True,
                 retry_after_s: float = 0.0) -> None:
        self.kind = kind
        self.op = op
        self.req_id = req_id
        self.cl_ord_id = cl_ord_id
        self.venue_ord_id = venue_ord_id
        self.vsym = vsym
        self.state = state
        self.cum_qty = cum_qty  # -1: not given
        self.avg_px = avg_px
        self.fill_qty = fill_qty
        self.fill_px = fill_px
        self.fee = fee  # positive = paid
        self.fee_asset = fee_asset
        self.liquidity = liquidity
        self.trade_id = trade_id
        self.reason = reason
        self.code = code
        self.msg = msg
        self.ts_ms = ts_ms
        self.px = px
        self.qty = qty
        self.side = side
        self.ok = ok
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__[1:]
                           if getattr(self, k) not in ("", 0, 0.0, -1.0, None, Reason.NONE, True))
        return f"Update({self.kind}, {fields})"


class VenueOrder:
    """An order as the venue reports it in reconciliation."""

    __slots__ = ("cl_ord_id", "venue_ord_id", "vsym", "side", "px", "qty", "cum_qty", "avg_px", "state")

    def __init__(self, cl_ord_id: str, venue_ord_id: str, vsym: str, side: int, px: float, qty: float,
                 cum_qty: float, avg_px: float, state: OrderState) -> None:
        self.cl_ord_id = cl_ord_id
        self.venue_ord_id = venue_ord_id
        self.vsym = vsym
        self.side = side
        self.px = px
        self.qty = qty
        self.cum_qty = cum_qty
        self.avg_px = avg_px
        self.state = state

    def __repr__(self) -> str:
        return f"VenueOrder({self.cl_ord_id} {self.vsym} {self.state.name} {self.cum_qty}/{self.qty}@{self.px})"


class GatewayError(Exception):
    """Login, subscription or REST failure (message safe to log: no credentials)."""


def field(data: bytes, key: bytes) -> bytes | None:
    """The string value after `key` (which ends with the value's opening quote), or None.
    For byte-level checks of flat venue pushes whose values carry no escapes (ids, enums)."""
    i = data.find(key)
    if i < 0:
        return None
    i += len(key)
    j = data.find(b'"', i)
    return data[i:j] if j >= 0 else None


def prepared_hmac(key: bytes, digestmod):
    """An HMAC object keyed once; sign each message with `.copy()`, `.update()`, `.hexdigest()`.
    The OpenSSL-backed object under `hmac.HMAC` copies in C, several times faster than the
    wrapper's Python `copy()`."""
    import hmac as _hmac

    mac = _hmac.new(key, digestmod=digestmod)
    inner = getattr(mac, "_hmac", None)
    return inner if inner is not None else mac


def fnum(x: Any) -> float:
    """Venue decimal string (or number) -> float; '' / None -> 0."""
    if x is None or x == "":
        return 0.0
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


_HDR_SMALL = [bytes((0x81, 0x80 | n, 0, 0, 0, 0)) for n in range(126)]  # FIN+TEXT, masked, zero key
_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_mono_ns = time.monotonic_ns


class _Listener(WSListener):
    __slots__ = ("gw",)

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def on_ws_connected(self, transport: WSTransport) -> None:
        pass

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        mt = frame.msg_type
        if mt == _TEXT or mt == _BINARY:
            # requests sent while a read's frames are handled (a strategy answering acks, the rows
            # of a batch answer) leave in one socket write after its last frame, not one write each,
            # and coalesce into batch requests where the venue has them
            gw = self.gw
            was = gw._corked  # corked by the caller already: its uncork sends
            gw._corked = True
            try:
                gw.on_frame(frame.get_payload_as_bytes())
            finally:
                gw._corked = was
            if not was and frame.last_in_buffer and (gw._outbox or gw._run):
                gw.flush()
        elif mt == _CLOSE:
            self.gw.close_reason = f"closed by venue (code {frame.get_close_code()})"
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gw.on_disconnected(transport)


class Gateway:
    """One venue: one order connection (the venue's WS API / private socket), a REST client,
    and the venue's encoders/decoders. Subclasses fill in the venue parts."""

    venue: Exchange = Exchange.BINANCE
    needs_ping_text: bytes = b""  # application-level ping (OKX "ping")
    ping_interval_s: float = 0.0
    max_age_s: float = 0.0  # rotate the connection before the venue's cap (Binance: 24 h)
    batch_max: int = 0  # cancels (and new orders, with batch_new) per batch request; 0: no batches
    batch_new: bool = False  # new orders go in batch requests too

    def __init__(self, vcfg: VenueConfig, instruments: Instruments, sink: Any,
                 symbols: list[str] | None = None) -> None:
        self.vcfg = vcfg
        self.instruments = instruments
        self.sink = sink  # receives on_update(gw, update), on_gateway_down(gw, reason)
        self.symbols = list(symbols or vcfg.symbols or [])
        self.transport: WSTransport | None = None
        self.connected = False
        self.authenticated = False
        self.reason = "not started"
        self.close_reason = ""
        self.rest = HttpClient(vcfg.rest_url) if vcfg.rest_url else None
        self._login_fut: asyncio.Future | None = None
        self._sub_fut: asyncio.Future | None = None
        self._pending_subs = 0
        self.frames_in = 0
        self.bad_frames = 0
        self.redundant_frames = 0
        self.last_rx_ns = 0
        self.clock_offset_ms = 0  # venue time - local time
        self.connects = 0
        self.connected_ns = 0
        self._corked = False
        self._outbox: list[bytes] = []
        # requests coalesced while corked (venues with batch requests): the open run's kind
        # (B_NEW / B_CANCEL) and items, closed into one batch request per `batch_max` items
        self._run_kind = 0
        self._run: list[tuple] = []
        self._batches: dict[str, tuple[int, list[str]]] = {}  # batch request id -> (kind, client ids)
        self.batched_requests = 0  # orders/cancels that left inside a batch request
        self._on_frame_hook: Callable[[bytes], None] | None = None

    # -- safe repr: never print credentials ------------------------------------
    def __repr__(self) -> str:
        return (f"{type(self).__name__}(connected={self.connected}, authenticated={self.authenticated}, "
                f"reason={self.reason!r})")

    # -- connection ----------------------------------------------------------------
    def ws_url(self) -> str:
        return self.vcfg.ws_api_url or self.vcfg.ws_url

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Open, authenticate and subscribe the private streams. Raises GatewayError."""
        url = self.ws_url()
        if not url:
            raise GatewayError(f"{self.venue.key}: no order WebSocket URL configured")
        self.reason = "connecting"
        try:
            transport, _ = await asyncio.wait_for(
                ws_connect(lambda: _Listener(self), url, enable_auto_ping=False,
                           websocket_handshake_timeout=timeout_s), timeout_s)
        except (TimeoutError, OSError, Exception) as e:  # picows raises its own WSError types
            self.reason = f"connect failed: {type(e).__name__}"
            raise GatewayError(f"{self.venue.key}: cannot connect to {url}: {type(e).__name__}: {e}") from None
        self.transport = transport
        self.connected = True
        self.close_reason = ""
        self.connects += 1
        self.last_rx_ns = time.monotonic_ns()
        self.connected_ns = self.last_rx_ns
        try:
            self.reason = "authenticating"
            await asyncio.wait_for(self.login(), timeout_s)
            self.reason = "subscribing"
            await asyncio.wait_for(self.subscribe_private(), timeout_s)
        except TimeoutError:
            self.reason = "login/subscribe timed out"
            self.drop()
            raise GatewayError(f"{self.venue.key}: login or private subscription timed out") from None
        except GatewayError as e:
            self.reason = str(e)
            self.drop()
            raise
        self.authenticated = True
        self.reason = ""

    def drop(self) -> None:
        t = self.transport
        if t is not None:
            try:
                t.disconnect()
            except Exception:
                pass

    def on_disconnected(self, transport: WSTransport) -> None:
        if transport is not self.transport:
            return
        self.transport = None
        was = self.authenticated
        self.connected = False
        self.authenticated = False
        self.reason = self.close_reason or "connection lost"
        for fut in (self._login_fut, self._sub_fut):
            if fut is not None and not fut.done():
                fut.set_exception(GatewayError(f"{self.venue.key}: connection lost during login"))
        self.sink.on_gateway_down(self, self.reason, was)

    def send(self, data: bytes) -> bool:
        t = self.transport
        if t is None:
            return False
        if self._corked:
            if self._run:
                self._close_run()
            self._outbox.append(data)
            return True
        try:
            t.send(WSMsgType.TEXT, data)
        except Exception:  # closing transport: the disconnect callback follows
            return False
        return True

    def queue(self, kind: int, item: tuple) -> bool:
        """A new order (B_NEW: wire id, instrument, side, price, size, tif; venues with `batch_new`)
        or a cancel (B_CANCEL: wire id, instrument) for a corked gateway of a venue with batch
        requests (`batch_max`).
        Consecutive requests of one kind leave as one batch request of up to `batch_max`; a run of
        one leaves as the plain request. Requests keep their order: another kind, or any other
        frame, closes the run. False: no connection (the caller marks the order UNKNOWN)."""
        if self.transport is None:
            return False
        if kind != self._run_kind and self._run:
            self._close_run()
        self._run_kind = kind
        self._run.append(item)
        if len(self._run) >= self.batch_max:
            self._close_run()
        return True

    def _close_run(self) -> None:
        run, self._run = self._run, []
        kind = self._run_kind
        self._run_kind = 0
        if len(run) == 1:
            it = run[0]
            if kind == B_NEW:
                self._outbox.append(self.encode_new(it[0], it[1], it[2], it[3], it[4], it[5], 0))
            else:
                self._outbox.append(self.encode_cancel(it[0], it[1], "", 0))
            return
        rid, data = self.encode_batch_new(run) if kind == B_NEW else self.encode_batch_cancel(run, OP_BATCH_CANCEL)
        batches = self._batches
        batches[rid] = (kind, [it[0] for it in run])
        if len(batches) > 4096:  # answered batches: keep the map small
            for old in list(batches)[:2048]:
                del batches[old]
        self.batched_requests += len(run)
        self._outbox.append(data)

    def _batch_failed(self, u: Update) -> list[Update] | None:
        """A whole batch request refused (no per-order rows): one reject per order in it."""
        b = self._batches.pop(u.req_id, None)
        if b is None:
            return None
        return [Update(u.kind, req_id=u.req_id, cl_ord_id=cl, code=u.code, msg=u.msg,
                       reason=u.reason, ok=False, retry_after_s=u.retry_after_s) for cl in b[1]]

    def flush(self) -> None:
        """Write the requests queued while a read's frames were handled, in one socket write.
        Client frames must be masked; a zero masking key is valid (RFC 6455 5.3) and leaves the
        payload as is, so the frames are built here without copying through a mask."""
        if self._run:
            self._close_run()
        out, self._outbox = self._outbox, []
        t = self.transport
        if t is None or not out:
            return
        try:
            if len(out) == 1:
                t.send(WSMsgType.TEXT, out[0])
                return
            parts = []
            for data in out:
                n = len(data)
                if n < 126:
                    parts.append(_HDR_SMALL[n])
                elif n < 65536:
                    parts.append(b"\x81\xfe" + n.to_bytes(2, "big") + b"\x00\x00\x00\x00")
                else:
                    parts.append(b"\x81\xff" + n.to_bytes(8, "big") + b"\x00\x00\x00\x00")
                parts.append(data)
            t.underlying_transport.write(b"".join(parts))
        except Exception:  # closing transport: the disconnect callback follows
            pass

    def on_frame(self, data: bytes) -> None:
        self.frames_in += 1
        self.last_rx_ns = _mono_ns()
        if self._on_frame_hook is not None:
            self._on_frame_hook(data)
        if self.redundant(data):
            self.redundant_frames += 1
            return
        try:
            updates = self.decode(data)
        except Exception:  # malformed frame: count, skip, never crash the loop
            self.bad_frames += 1
            log.warning("%s: undecodable frame (%d bytes) skipped", self.venue.key, len(data))
            return
        sink = self.sink
        for u in updates:
            k = u.kind
            if k <= U_AMEND_REJECT:  # order updates (1..8): the hot case first
                each = None
                if not u.cl_ord_id and self._batches and (k == U_REJECT or k == U_CANCEL_REJECT):
                    each = self._batch_failed(u)
                try:
                    if each is None:
                        sink.on_update(self, u)
                    else:
                        for e in each:
                            sink.on_update(self, e)
                except Exception:  # a frame the state machine cannot use must not cost the connection
                    self.bad_frames += 1
                    log.exception("%s: update %r could not be applied; skipped", self.venue.key, u.kind)
            elif k == U_LOGIN:
                f = self._login_fut
                if f is not None and not f.done():
                    if u.ok:
                        f.set_result(True)
                    else:
                        f.set_exception(GatewayError(f"{self.venue.key}: login refused: {u.reason.name} {u.code}"))
            elif k == U_SUBSCRIBED:
                self._pending_subs -= 1
                f = self._sub_fut
                if f is not None and not f.done():
                    if not u.ok:
                        f.set_exception(GatewayError(f"{self.venue.key}: private subscription refused: {u.code} {u.msg}"))
                    elif self._pending_subs <= 0:
                        f.set_result(True)
            elif k == U_PONG or k == U_IGNORE:
                pass
            elif k == U_NOTICE:
                self.close_reason = f"venue notice: {u.msg or 'reconnect requested'}"
                sink.on_notice(self, u)
            else:
                try:
                    sink.on_update(self, u)
                except Exception:
                    self.bad_frames += 1
                    log.exception("%s: update %r could not be applied; skipped", self.venue.key, u.kind)

    def redundant(self, data: bytes) -> bool:
        """True for a private push that only repeats what the manager already knows (same order,
        same state, no trade): skipped before JSON parsing. Venues override; when unsure: False."""
        return False

    def new_future(self) -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    def too_old(self) -> bool:
        return bool(self.max_age_s and self.transport is not None and
                    (time.monotonic_ns() - self.connected_ns) / 1e9 > self.max_age_s)

    async def keepalive_tick(self) -> None:
        """Called about twice a second by the manager's housekeeping task."""
        if self.too_old():
            self.close_reason = "rotating the connection before the venue's lifetime cap"
            self.drop()
            return
        if self.needs_ping_text and self.transport is not None:
            idle_s = (time.monotonic_ns() - self.last_rx_ns) / 1e9
            if idle_s >= self.ping_interval_s:
                self.send(self.needs_ping_text)

    # -- venue parts ------------------------------------------------------------------
    def encode_new(self, cl_ord_id: str, vsym: str, side: int, px_s: str, qty_s: str, tif: int,
                   ts_ms: int) -> bytes:
        raise NotImplementedError

    def encode_cancel(self, cl_ord_id: str, vsym: str, venue_ord_id: str, ts_ms: int) -> bytes:
        raise NotImplementedError

    def encode_amend(self, cl_ord_id: str, vsym: str, venue_ord_id: str, side: int, new_qty_s: str,
                     new_px_s: str, tif: int, new_wire_id: str, ts_ms: int) -> bytes:
        raise NotImplementedError

    def encode_cancel_all(self, vsym: str, ts_ms: int) -> bytes:
        raise NotImplementedError

    def encode_batch_new(self, items: list[tuple[str, str, int, str, str, int]]) -> tuple[str, bytes]:
        """(request id, frame) of one batch request of new orders (venues with `batch_max`)."""
        raise NotImplementedError

    def encode_batch_cancel(self, items: list[tuple[str, str]], op: str = OP_CANCEL_ALL) -> tuple[str, bytes]:
        """(request id, frame) of one batch cancel; `op` is the request id's prefix."""
        raise NotImplementedError

    async def sync_clock(self) -> None:
        raise NotImplementedError

    async def load_instruments(self) -> int:
        raise NotImplementedError

    async def open_orders(self) -> list[VenueOrder]:
        raise NotImplementedError

    async def query_order(self, wire_id: str, vsym: str) -> VenueOrder | None:
        raise NotImplementedError

    async def query_order_by_id(self, venue_ord_id: str, vsym: str) -> VenueOrder | None:
        """The order by the venue's own id (None: the venue does not know it)."""
        raise NotImplementedError

    async def recent_fills(self, vsym: str, since_ms: int) -> list[Update]:
        """Our fills on `vsym` from `since_ms` (venue time), every page the venue allows."""
        raise NotImplementedError

    async def arm_deadman(self, timeout_s: int) -> bool:
        raise NotImplementedError

    async def cancel_all_rest(self, vsym: str) -> None:
        raise NotImplementedError

    async def login(self) -> None:
        raise NotImplementedError

    async def subscribe_private(self) -> None:
        raise NotImplementedError

    def decode(self, data: bytes) -> list[Update]:
        raise NotImplementedError

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    async def close(self) -> None:
        self.drop()
        if self.rest is not None:
            await self.rest.close()
