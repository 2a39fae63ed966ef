"""Feed process: venue WebSockets (picows) -> pure parser + book sync -> md ring per venue.

Entry points (the launcher calls the first):

    run_feed_process(venues: list[str], config_path: str | None, prefix: str, cpu: int | None,
                     symbols: list[str], urls: dict | None = None, *, stale_after_s=None,
                     rotate_after_s=None, ring_capacity=1 << 16, stop_event=None,
                     single_connection=False) -> int
    python -m feeds.handler --venue okx [--venue gate] --prefix hft [--cpu 2] [--config FILE]
                            [--symbols BTC-USDT,ETH-USDT] [--urls JSON] [--stale-s 30] [--rotate-s N]
                            [--single-connection]

`urls` maps venue -> {"ws": url, "rest": url} (the simulator's `urls` map works as is);
otherwise exchanges.<venue>.ws_url / rest_url from the config. Each venue writes the ring
`ring_name(prefix, "md-<venue>")` and the counters block `counters_name(prefix, "feed-<venue>")`.
Each venue opens one connection per stream group (`STREAM_GROUPS`: quotes+trades apart from books).
It must not place orders, and does nothing per message beyond parse + ring write.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import signal
import ssl
import sys
import time
import urllib.parse

import orjson

from common.config import LIVE_URLS, TESTNET_URLS, ConfigError
from common.config import load as load_config
from common.enums import Exchange
from common.instruments import InstrumentError, Instruments, split_canonical
from feeds import binance, gate, okx
from feeds.base import CTRL_ROTATE, LIVE, REASON_RECONNECT, REASON_STALE, Sink, VenueFeed, ring_sink
from feeds.errors import FrameError
from ringbuf.counters import Counters
from ringbuf.idle import spin_event_loop
from ringbuf.records import KIND_BOOK_LEVEL, KIND_QUOTE, KIND_TRADE
from ringbuf.ring import Ring, RingError
from ringbuf.ringstat import counters_name, ring_name

log = logging.getLogger("feeds.handler")

FEEDS = {"binance": binance.BinanceFeed, "okx": okx.OkxFeed, "gate": gate.GateFeed}
# venue connection lifetimes: Binance documents 24 h; rotate well before it
ROTATE_AFTER_S = {"binance": 23 * 3600.0, "okx": 0.0, "gate": 0.0}
COUNTER_LABELS = ("messages", "bytes", "parse_errors", "gaps", "checksum_failures", "resyncs", "reconnects",
                  "rotations", "stale_reconnects", "crossed", "duplicates", "snapshots", "rest_errors",
                  "records", "last_recv_ns")


class FeedError(Exception):
    """Bad arguments or configuration for the feed process (one line, exit code 2)."""


# ---- tiny HTTP GET (REST snapshots only; never on the per-message path) -------------
async def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    secure = u.scheme == "https"
    port = u.port or (443 if secure else 80)
    path = (u.path or "/") + ("?" + u.query if u.query else "")

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(u.hostname, port,
                                                       ssl=ssl.create_default_context() if secure else None)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAccept: application/json\r\n"
                         f"Accept-Encoding: identity\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = bytearray()
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    body += await reader.readexactly(size)
                    await reader.readexactly(2)
                return status, bytes(body)
            if "content-length" in headers:
                return status, await reader.readexactly(int(headers["content-length"]))
            return status, await reader.read()
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout_s)


# ---- stream groups -------------------------------------------------------------------------
# One connection per group, so that a burst on one stream group (depth) never queues in front
# of another (best bid/ask, trades) on the same socket. `books` says which group carries the
# order books (its disconnects reset them; the REST snapshot loop follows it).
STREAM_GROUPS = {
    "binance": (("bbo", ("bookTicker", "trade"), False), ("depth", ("depth@100ms",), True)),
    "okx": (("bbo", ("bbo-tbt", "trades"), False), ("books", ("books",), True)),
    "gate": (("bbo", ("spot.book_ticker", "spot.trades"), False), ("books", ("spot.order_book_update",), True)),
}
SINGLE_GROUPS = {
    "binance": (("all", binance.STREAM_KINDS, True),),
    "okx": (("all", okx.CHANNELS, True),),
    "gate": (("all", gate.CHANNELS, True),),
}


class StreamGroup:
    """The streams of one connection, its live connection and the one opened to replace it."""

    def __init__(self, name: str, kinds: tuple[str, ...], books: bool) -> None:
        self.name = name
        self.kinds = tuple(kinds)
        self.books = books
        self.primary = None  # Listener of the connection that owns the streams
        self.secondary = None  # the connection opened for a rotation, before the old one closes
        self.connected_ns = 0
        self.attempt = 0
        self.rotating = False
        self.last_ping_ns = 0
        self.wake: asyncio.Event | None = None


class _Discard:
    """`Listener.hold` of a connection being closed: whatever still arrives on it is dropped."""

    __slots__ = ()

    def append(self, _item) -> None:
        pass


DISCARD = _Discard()


def dedup_sink(base: Sink, last: dict, seen: dict) -> Sink:
    """`base`, except that a quote or trade passes only when its venue sequence (its exchange time
    when the venue gives none) is newer than the last one written for that instrument and kind.
    Used while two connections of a group overlap: each record is written once, from whichever
    connection brings it first. `last` holds what was written, `seen` the newest offered (written
    or not); the rotation reads both."""
    bq, bt, bl = base.quote, base.trade, base.level

    def newer(kind: int, v: tuple) -> bool:
        key = (kind, v[4])
        s = v[8] or v[6]
        if s > seen.get(key, -1):
            seen[key] = s
        if s <= last.get(key, -1):
            return False
        last[key] = s
        return True

    def quote(*v) -> bool:
        return bq(*v) if newer(KIND_QUOTE, v) else False

    def trade(*v) -> bool:
        return bt(*v) if newer(KIND_TRADE, v) else False

    def level(*v):
        if v[0] == KIND_TRADE and not newer(KIND_TRADE, v):
            return False
        return bl(*v)

    # book levels are not deduplicated here (their sequence check does it): the run goes straight through
    return Sink(quote, trade, level, base.begin, base.publish, level_run=base.level_run)


# ---- one WebSocket connection -----------------------------------------------------------
def _listener_class():
    from picows import WSListener, WSMsgType

    text, binary, ping = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING
    monotonic_ns = time.monotonic_ns

    class Listener(WSListener):
        """Per connection: the hot path is `on_ws_frame` -> feed decode -> the ring's writers."""

        def __init__(self, runner: VenueRunner, conn_id: int, group: StreamGroup | None = None) -> None:
            self.runner = runner
            self.conn_id = conn_id
            self.group = group if group is not None else runner.groups[0]
            self.feed = runner.feed
            self.decode = runner.feed._decode
            self.transport = None
            self.last_rx_ns = monotonic_ns()
            self.closing = False
            self.data_frames = 0
            self.hold: list | None = None  # frames held while this connection waits to take over

        def on_ws_connected(self, transport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport, frame) -> None:
            t = frame.msg_type
            if t is text or t is binary:
                recv_ns = monotonic_ns()
                self.last_rx_ns = recv_ns
                r = self.runner
                mv = frame.get_payload_as_memoryview()
                r.messages += 1
                r.nbytes += len(mv)
                if self.hold is not None:
                    self.hold.append((bytes(mv), recv_ns))
                    return
                try:
                    n = self.decode(mv, recv_ns, self.feed.sink, True)
                except FrameError as e:
                    r.parse_errors += 1
                    if r.parse_errors < 20 or r.parse_errors % 1000 == 0:
                        log.warning("%s: malformed frame (%d so far): %s", r.venue, r.parse_errors, e)
                    return
                if n > 0:
                    r.records += n
                    self.data_frames += 1
                elif n == CTRL_ROTATE:
                    r.on_rotate_notice(self)
            elif t is ping:
                transport.send_pong(frame.get_payload_as_bytes())
                self.last_rx_ns = monotonic_ns()

        def on_ws_disconnected(self, transport) -> None:
            self.runner.on_disconnected(self)

    return Listener


class VenueRunner:
    """Connections (one per stream group), sync side tasks and counters of one venue inside the
    feed process. Every connection's frames go through the one `VenueFeed` into the one ring
    (all callbacks run on one event loop: a single producer)."""

    def __init__(self, venue: str, ws_url: str, rest_url: str, symbols: list[str], instruments: Instruments,
                 prefix: str, ring_capacity: int = 1 << 16, stale_after_s: float = 30.0,
                 rotate_after_s: float | None = None, snapshot_timeout_s: float = 3.0,
                 stream_groups=None) -> None:
        self.venue = venue
        self.exchange = Exchange.from_name(venue)
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.symbols = symbols
        self.instruments = instruments
        self.iids = [instruments.id_for(s) for s in symbols]
        # attach to the ring a previous run of this feed left (consumers stay mapped to it)
        self.ring = Ring.open(ring_name(prefix, f"md-{venue}"), ring_capacity, 64)
        try:
            self.ring.claim_producer()
            self.feed: VenueFeed = FEEDS[venue](instruments).bind(ring_sink(self.ring))
            self.counters = Counters(counters_name(prefix, f"feed-{venue}"), f"feed-{venue}")
        except Exception:
            self.ring.close()
            raise
        self.ctr = {label: self.counters.add(label) for label in COUNTER_LABELS}
        self.ctr_sym = {iid: self.counters.add(f"last_recv_ns:{instruments.name(iid)}") for iid in self.iids}
        groups = STREAM_GROUPS if stream_groups is None else stream_groups
        if isinstance(groups, dict):
            groups = groups[venue]
        self.groups = [StreamGroup(*g) for g in groups]
        self.stale_after_ns = int(stale_after_s * 1e9)
        rot = ROTATE_AFTER_S[venue] if rotate_after_s is None else rotate_after_s
        self.rotate_after_ns = int(rot * 1e9)
        self.snapshot_timeout_ns = int(snapshot_timeout_s * 1e9)
        self.rotate_overlap_s = 0.5  # least time both connections of a rotation stream together
        self.rotate_max_overlap_s = 5.0  # switch by then even if a stream never showed its position
        # hot-path counters: plain ints, copied into the counters block by housekeeping
        self.messages = self.nbytes = self.parse_errors = self.records = 0
        self.reconnects = self.rotations = self.stale_reconnects = self.rest_errors = 0
        self._dedup_users = 0
        self._dedup_last: dict = {}
        self._dedup_seen: dict = {}
        self._plain_sink = self.feed.sink
        self._conn_seq = 0
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    @property
    def book_group(self) -> StreamGroup:
        for g in self.groups:
            if g.books:
                return g
        return self.groups[-1]

    @property
    def primary(self):
        """The book group's live connection (None while it is down)."""
        return self.book_group.primary

    # ---- life cycle ---------------------------------------------------------------
    async def run(self) -> None:
        for g in self.groups:
            g.wake = asyncio.Event()
        self._tasks = [asyncio.ensure_future(self._connect_loop(g)) for g in self.groups]
        self._tasks += [asyncio.ensure_future(self._snapshot_loop()), asyncio.ensure_future(self._housekeeping())]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            pass

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for g in self.groups:
            for lst in (g.primary, g.secondary):
                if lst is not None and lst.transport is not None:
                    lst.closing = True
                    lst.transport.disconnect()
        self._flush_counters()

    def close(self) -> None:
        self.counters.close()
        self.ring.close()

    # ---- connections ------------------------------------------------------------------
    def _subscribe(self, g: StreamGroup, transport) -> None:
        from picows import WSMsgType

        syms = self.symbols
        if self.venue == "binance":
            msgs = [binance.subscribe_message(syms, g.kinds)]
        elif self.venue == "okx":
            msgs = [okx.subscribe_message(syms, g.kinds)]
        else:
            msgs = gate.subscribe_messages(syms, g.kinds)
        for m in msgs:
            transport.send(WSMsgType.TEXT, m)

    async def _open(self, g: StreamGroup | None = None):
        from picows import ws_connect

        g = g or self.book_group
        self._conn_seq += 1
        cid = self._conn_seq
        listener_cls = _listener_class()
        transport, listener = await ws_connect(lambda: listener_cls(self, cid, g), self.ws_url,
                                               enable_auto_ping=True, auto_ping_idle_timeout=10,
                                               auto_ping_reply_timeout=10, enable_auto_pong=False,
                                               websocket_handshake_timeout=10)
        listener.transport = transport
        return listener

    async def _connect_loop(self, g: StreamGroup) -> None:
        while not self._stopping:
            if g.primary is None:
                try:
                    lst = await self._open(g)
                except (TimeoutError, OSError, Exception) as e:  # noqa: B014 - picows raises its own
                    g.attempt += 1
                    delay = min(30.0, 0.1 * 2 ** min(g.attempt, 10)) * (0.5 + random.random())
                    log.warning("%s/%s: connect to %s failed (%s); retry in %.2fs", self.venue, g.name,
                                self.ws_url, e, delay)
                    await asyncio.sleep(delay)
                    continue
                g.primary = lst
                g.connected_ns = time.monotonic_ns()
                self._subscribe(g, lst.transport)
                if g.books:
                    self._after_subscribe()
                log.info("%s/%s: connected to %s", self.venue, g.name, self.ws_url)
            g.wake.clear()
            try:
                await asyncio.wait_for(g.wake.wait(), 0.5)
            except TimeoutError:
                pass

    def _after_subscribe(self) -> None:
        now = time.monotonic_ns()
        for iid in self.iids:
            st = self.feed.state(iid)
            if st.state != LIVE:
                if self.venue == "okx":
                    st.pending_since_ns = now  # a WS snapshot should come; REST if it does not
                else:
                    # the stream is subscribed (and buffering) before the snapshot is fetched
                    self.feed.request_snapshot(iid, now)

    def on_disconnected(self, lst) -> None:
        g = lst.group
        if lst is g.secondary:
            g.secondary = None
            return
        if lst is not g.primary:
            return
        g.primary = None
        if g.secondary is not None:  # rotation in progress: the new connection takes over now
            g.primary, g.secondary = g.secondary, None
            return
        if self._stopping:
            return
        if not lst.closing:
            self.reconnects += 1
            log.warning("%s/%s: connection lost; reconnecting", self.venue, g.name)
        if g.books:
            # whatever arrives next starts a new sequence: consumers must drop their books now
            self.feed.reset_books(REASON_RECONNECT, time.monotonic_ns())
        if lst.data_frames > 0:
            g.attempt = 0
        else:
            g.attempt += 1
        self._schedule_reconnect(g)

    def _schedule_reconnect(self, g: StreamGroup) -> None:
        delay = 0.0 if g.attempt == 0 else min(30.0, 0.1 * 2 ** min(g.attempt, 10)) * (0.5 + random.random())
        if g.wake is not None:
            asyncio.get_event_loop().call_later(delay, g.wake.set)

    def on_rotate_notice(self, lst) -> None:
        g = lst.group
        if lst is g.primary and not g.rotating:
            log.info("%s/%s: venue announced a shutdown/upgrade; rotating the connection", self.venue, g.name)
            asyncio.ensure_future(self._rotate(g))

    # ---- rotation: two connections overlap, nothing is lost or written twice -----------------
    def _dedup_on(self) -> dict:
        if self._dedup_users == 0:
            self._dedup_last.clear()
            self._dedup_seen.clear()
            self.feed.sink = dedup_sink(self._plain_sink, self._dedup_last, self._dedup_seen)
        self._dedup_users += 1
        return self._dedup_last

    def _dedup_off(self) -> None:
        self._dedup_users -= 1
        if self._dedup_users == 0:
            self.feed.sink = self._plain_sink
            self._dedup_last.clear()
            self._dedup_seen.clear()

    def _caught_up(self, first: dict, last: dict) -> bool:
        """True when the old connection has delivered, for every stream the new one has shown,
        the new one's first update (or a later one): everything before that came from the old
        connection, everything from it on is in the new connection's held frames."""
        states = self.feed.states
        for (kind, iid), s in first.items():
            if kind == KIND_BOOK_LEVEL:
                st = states.get(iid)
                if st is not None and st.state == LIVE and st.last < s:
                    return False
            elif last.get((kind, iid), -1) < s:
                return False
        return True

    async def _rotate(self, g: StreamGroup | None = None) -> None:
        """Open and subscribe the new connection while the old one keeps streaming; hold the new
        one's frames and note where each of its streams starts (venue sequence per instrument);
        keep reading the old one until it has reached those points, then switch without yielding
        to the loop: close the old one and replay the held frames through the same sequence
        checks. Quotes and trades are written once (a duplicate by venue sequence is dropped),
        book diffs already applied are dropped by update id and later ones continue the chain
        (no gap, no resync)."""
        g = g or self.book_group
        if g.rotating or g.primary is None:
            return
        g.rotating = True
        old = g.primary
        try:
            new = await self._open(g)
        except Exception as e:  # noqa: BLE001 - the old connection keeps working
            log.warning("%s/%s: rotation connect failed: %s", self.venue, g.name, e)
            g.rotating = False
            return
        if g.primary is not old or self._stopping:  # the old one went away while we connected
            new.closing = True
            new.transport.disconnect()
            g.rotating = False
            return
        new.hold = []
        g.secondary = new
        feed = self.feed
        last = self._dedup_on()
        try:
            self._subscribe(g, new.transport)
            first: dict = {}
            scanned = 0
            t0 = time.monotonic()
            while True:
                held = new.hold
                for raw, recv_ns in held[scanned:]:  # where each of the new streams starts (pure parse)
                    try:
                        recs = feed.parse(raw, recv_ns)
                    except FrameError:
                        continue
                    for kind, iid, seq, ts in zip(recs["kind"].tolist(), recs["instr_id"].tolist(),
                                                  recs["venue_seq"].tolist(), recs["exch_ts_ns"].tolist(),
                                                  strict=True):
                        if kind == KIND_QUOTE or kind == KIND_TRADE or kind == KIND_BOOK_LEVEL:
                            first.setdefault((kind, iid), seq or ts)
                scanned = len(held)
                if new.transport.is_disconnected or g.primary is not old or self._stopping:
                    break
                waited = time.monotonic() - t0
                if waited >= self.rotate_max_overlap_s:
                    log.warning("%s/%s: rotation: old connection did not catch up in %.1fs; switching",
                                self.venue, g.name, waited)
                    break
                if waited >= self.rotate_overlap_s and first and self._caught_up(first, last):
                    break
                await asyncio.sleep(0.005)
            if new.transport.is_disconnected or self._stopping:
                if g.secondary is new:
                    g.secondary = None
                return
            # switch without yielding to the loop: nothing from either socket interleaves here
            held, new.hold = new.hold, None
            if g.primary is old:
                g.primary, g.secondary = new, None
                old.closing = True
                old.hold = DISCARD
                if old.transport is not None:
                    old.transport.disconnect()
            g.connected_ns = time.monotonic_ns()
            target = dict(last)  # the newest quote/trade written per stream, all from the old connection
            seen = self._dedup_seen
            seen.clear()  # from here on only the new connection offers records
            for raw, recv_ns in held:
                try:
                    n = feed.on_frame(raw, recv_ns)
                except FrameError:
                    self.parse_errors += 1
                    continue
                if n > 0:
                    self.records += n
                    new.data_frames += 1
            self.rotations += 1
            # the new connection may still be behind the old one on some stream (a slower path):
            # keep dropping duplicates until it has delivered, for each, what the old one wrote
            t0 = time.monotonic()
            while (not self._stopping and time.monotonic() - t0 < self.rotate_max_overlap_s
                   and any(seen.get(k, -1) < v for k, v in target.items())):
                await asyncio.sleep(0.005)
        finally:
            self._dedup_off()
            g.rotating = False

    def _reconnect_now(self, reason: int, g: StreamGroup | None = None) -> None:
        g = g or self.book_group
        lst = g.primary
        if lst is None:
            return
        if reason == REASON_STALE:
            self.stale_reconnects += 1
        lst.closing = True
        if g.books:
            self.feed.reset_books(reason, time.monotonic_ns())
        if lst.transport is not None:
            lst.transport.disconnect(graceful=False)

    # ---- snapshots --------------------------------------------------------------------
    def _snapshot_url(self, iid: int) -> str:
        sym = self.instruments.name(iid)
        if self.venue == "binance":
            return self.rest_url + binance.snapshot_path(sym)
        if self.venue == "okx":
            return self.rest_url + okx.snapshot_path(sym)
        return self.rest_url + gate.snapshot_path(sym)

    async def _snapshot_loop(self) -> None:
        feed = self.feed
        retries: dict[int, int] = {}
        while not self._stopping:
            if not feed.snapshot_requests or self.primary is None:
                await asyncio.sleep(0.02)
                continue
            iid = min(feed.snapshot_requests)
            try:
                status, body = await http_get(self._snapshot_url(iid))
            except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as e:
                self.rest_errors += 1
                log.warning("%s: snapshot of %s failed: %s", self.venue, self.instruments.name(iid), e)
                await asyncio.sleep(0.5)
                continue
            if iid not in feed.snapshot_requests:
                continue  # a WS snapshot arrived meanwhile
            if status != 200:
                self.rest_errors += 1
                log.warning("%s: snapshot of %s: HTTP %d", self.venue, self.instruments.name(iid), status)
                await asyncio.sleep(0.5)
                continue
            try:
                n = feed.on_snapshot(iid, body, time.monotonic_ns())
            except FrameError as e:
                self.rest_errors += 1
                log.warning("%s: bad snapshot of %s: %s", self.venue, self.instruments.name(iid), e)
                await asyncio.sleep(0.5)
                continue
            if n < 0:  # older than the buffered stream: fetch again shortly
                retries[iid] = retries.get(iid, 0) + 1
                await asyncio.sleep(min(1.0, 0.05 * retries[iid]))
            else:
                retries.pop(iid, None)
                self.records += n
            await asyncio.sleep(0.05 if self.venue == "binance" else 0.01)  # venue REST weight

    # ---- housekeeping: counters, pings, watchdog, rotation --------------------------------
    async def _housekeeping(self) -> None:
        from picows import WSMsgType

        while not self._stopping:
            await asyncio.sleep(0.1)
            now = time.monotonic_ns()
            self._flush_counters()
            feed = self.feed
            for g in self.groups:
                lst = g.primary
                if lst is None or lst.transport is None:
                    continue
                # keepalive: OKX wants a text "ping" before 30 s of silence; Gate an app-level spot.ping
                if self.venue == "okx" and now - lst.last_rx_ns > 20e9 and now - g.last_ping_ns > 5e9:
                    lst.transport.send(WSMsgType.TEXT, b"ping")
                    g.last_ping_ns = now
                elif self.venue == "gate" and now - g.last_ping_ns > 10e9:
                    lst.transport.send(WSMsgType.TEXT, gate.ping_message())
                    g.last_ping_ns = now
                if g.books:
                    # OKX: resubscribe a broken book to get a fresh WS snapshot; REST when none comes
                    if feed.resubscribe_requests:
                        syms = [self.instruments.name(i) for i in feed.resubscribe_requests]
                        feed.resubscribe_requests.clear()
                        lst.transport.send(WSMsgType.TEXT, okx.unsubscribe_message(syms, ("books",)))
                        lst.transport.send(WSMsgType.TEXT, okx.subscribe_message(syms, ("books",)))
                    for iid in self.iids:
                        st = feed.states.get(iid)
                        if (st is not None and st.state != LIVE and st.pending_since_ns
                                and iid not in feed.snapshot_requests
                                and now - st.pending_since_ns > self.snapshot_timeout_ns):
                            feed.request_snapshot(iid, now)
                # stale-stream watchdog: a subscribed symbol silent for too long -> reconnect (+ resync)
                if self.stale_after_ns and now - g.connected_ns > self.stale_after_ns and not g.rotating:
                    last = feed.last_book_ns if g.books else feed.last_recv_ns
                    for iid in self.iids:
                        t = last.get(iid, g.connected_ns)
                        if now - max(t, g.connected_ns) > self.stale_after_ns:
                            log.warning("%s/%s: no data for %s in %.1fs; reconnecting", self.venue, g.name,
                                        self.instruments.name(iid), (now - t) / 1e9)
                            self._reconnect_now(REASON_STALE, g)
                            break
                if self.rotate_after_ns and now - g.connected_ns > self.rotate_after_ns and not g.rotating:
                    asyncio.ensure_future(self._rotate(g))

    def _flush_counters(self) -> None:
        c, f, i = self.counters, self.feed, self.ctr
        c.set(i["messages"], self.messages)
        c.set(i["bytes"], self.nbytes)
        c.set(i["parse_errors"], self.parse_errors)
        c.set(i["records"], self.records)
        c.set(i["gaps"], f.gaps)
        c.set(i["checksum_failures"], f.checksum_failures)
        c.set(i["resyncs"], f.resyncs)
        c.set(i["reconnects"], self.reconnects)
        c.set(i["rotations"], self.rotations)
        c.set(i["stale_reconnects"], self.stale_reconnects)
        c.set(i["crossed"], f.crossed)
        c.set(i["duplicates"], f.duplicates)
        c.set(i["snapshots"], f.snapshots)
        c.set(i["rest_errors"], self.rest_errors)
        last, last_book = f.last_recv_ns, f.last_book_ns
        newest = 0
        for iid, idx in self.ctr_sym.items():
            t = max(last.get(iid, 0), last_book.get(iid, 0))
            c.set(idx, t)
            newest = max(newest, t)
        c.set(i["last_recv_ns"], newest)
        c.touch()


# ---- process entry point ---------------------------------------------------------------
def _venue_urls(venue: str, cfg, urls: dict | None) -> tuple[str, str]:
    ws = rest = ""
    if urls and venue in urls:
        u = urls[venue]
        ws = u.get("ws") or u.get("ws_public") or u.get("ws_url") or ""
        rest = u.get("rest") or u.get("rest_url") or ""
    if cfg is not None and (not ws or not rest):
        vc = cfg.exchanges.get(venue)
        if vc is not None:
            ws = ws or vc.ws_url
            rest = rest or vc.rest_url
            if (not ws or not rest) and cfg.system.venues == "live":
                table = TESTNET_URLS if vc.testnet else LIVE_URLS
                ws = ws or table[venue]["ws_url"]
                rest = rest or table[venue]["rest_url"]
    if not ws or not rest:
        raise FeedError(f"no market-data URLs for {venue}: set exchanges.{venue}.ws_url and rest_url, "
                        f"or pass --urls (the simulator's URL map)")
    if venue == "binance" and not ws.rstrip("/").endswith(("/ws", "/stream")) and "/ws/" not in ws:
        ws = ws.rstrip("/") + "/ws"
    return ws, rest


def build_runners(venues: list[str], config_path: str | None, prefix: str, symbols: list[str],
                  urls: dict | None = None, stale_after_s: float | None = None,
                  rotate_after_s: float | None = None, ring_capacity: int = 1 << 16,
                  single_connection: bool = False, cfg=None) -> list[VenueRunner]:
    if cfg is None:
        try:
            cfg = load_config(config_path)
        except ConfigError as e:
            raise FeedError(str(e)) from None
    if not venues:
        raise FeedError("no venue given: use --venue binance|okx|gate (repeatable)")
    for v in venues:
        if v not in FEEDS:
            raise FeedError(f"unknown venue {v!r}; expected binance, okx or gate")
    if ring_capacity <= 0 or ring_capacity & (ring_capacity - 1):
        raise FeedError(f"ring capacity must be a power of two, got {ring_capacity}")
    base_syms = list(cfg.market_making.symbols)
    try:
        syms = [f"{b}-{q}" for b, q in (split_canonical(s) for s in (symbols or base_syms))]
    except InstrumentError as e:
        raise FeedError(str(e)) from None
    # ids in config order first, so every process of the system agrees on them
    instruments = Instruments(base_syms + [s for s in syms if s not in base_syms])
    stale = 30.0 if stale_after_s is None else stale_after_s
    runners = []
    try:
        for v in venues:
            vsyms = syms
            vc = cfg.exchanges.get(v)
            if not symbols and vc is not None and vc.symbols:
                vsyms = list(vc.symbols)
            ws, rest = _venue_urls(v, cfg, urls)
            runners.append(VenueRunner(v, ws, rest, vsyms, instruments, prefix, ring_capacity, stale,
                                       rotate_after_s,
                                       stream_groups=SINGLE_GROUPS if single_connection else None))
    except RingError as e:
        for r in runners:
            r.close()
        raise FeedError(str(e)) from None
    except Exception:
        for r in runners:
            r.close()
        raise
    return runners


async def run_runners(runners: list[VenueRunner], stop_event=None, loop_idle: str = "backoff") -> None:
    """Run the runners until SIGINT/SIGTERM or `stop_event`. `loop_idle` ([system]
    feed_idle_strategy): backoff sleeps in epoll between frames; busy_spin / yielding poll the
    sockets without sleeping (ringbuf.idle.spin_event_loop)."""
    tasks = [asyncio.ensure_future(r.run()) for r in runners]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_spin = spin_event_loop(loop, loop_idle)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):
            pass  # not the main thread
    while not stop.is_set():
        if stop_event is not None and stop_event.is_set():
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass
    if stop_spin is not None:
        stop_spin()
    for r in runners:
        await r.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_feed_process(venues: list[str], config_path: str | None, prefix: str, cpu: int | None,
                     symbols: list[str], urls: dict | None = None, *, stale_after_s: float | None = None,
                     rotate_after_s: float | None = None, ring_capacity: int = 1 << 16, stop_event=None,
                     single_connection: bool = False) -> int:
    """Run the feeds of `venues` in this process until SIGINT/SIGTERM (or `stop_event`).
    Returns the exit code: 0, or 2 after printing a one-line error for bad arguments/config."""
    try:
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})
            except (OSError, ValueError) as e:
                raise FeedError(f"cannot pin the feed process to cpu {cpu}: {e}") from None
        try:
            cfg = load_config(config_path)
        except ConfigError as e:
            raise FeedError(str(e)) from None
        runners = build_runners(venues, config_path, prefix, symbols, urls, stale_after_s, rotate_after_s,
                                ring_capacity, single_connection, cfg=cfg)
    except FeedError as e:
        print(f"feeds: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    gc.collect()
    gc.freeze()  # start-up objects never move again; per-message garbage is acyclic
    gc.set_threshold(50_000, 50, 100)
    try:
        asyncio.run(run_runners(runners, stop_event, cfg.system.feed_idle_strategy))
    finally:
        for r in runners:
            r.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m feeds.handler", description="Run venue market-data feeds.")
    p.add_argument("--venue", action="append", default=[], help="binance, okx or gate (repeatable)")
    p.add_argument("--prefix", default="hft", help="shared-memory segment prefix")
    p.add_argument("--cpu", type=int, default=None, help="pin to this core")
    p.add_argument("--config", default=None, help="config.toml (default: built-in defaults)")
    p.add_argument("--symbols", default="", help="comma-separated canonical symbols, e.g. BTC-USDT,ETH-USDT")
    p.add_argument("--urls", default=None, help='JSON map, e.g. {"okx":{"ws":"ws://..","rest":"http://.."}}')
    p.add_argument("--stale-s", type=float, default=None, help="reconnect when a symbol is silent this long")
    p.add_argument("--rotate-s", type=float, default=None, help="rotate connections after this many seconds")
    p.add_argument("--ring-capacity", type=int, default=1 << 16)
    p.add_argument("--single-connection", action="store_true",
                   help="all streams of a venue on one connection (default: quotes+trades and books apart)")
    p.add_argument("--log-level", default="INFO")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    logging.basicConfig(level=a.log_level.upper() if a.log_level.upper() in logging._nameToLevel else "INFO",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    urls = None
    if a.urls:
        try:
            urls = orjson.loads(a.urls)
            if not isinstance(urls, dict):
                raise ValueError("not an object")
        except ValueError as e:
            print(f"feeds: --urls is not a JSON object of venue URLs: {e}", file=sys.stderr)
            return 2
    symbols = [s for s in a.symbols.split(",") if s.strip()]
    return run_feed_process(a.venue, a.config, a.prefix, a.cpu, symbols, urls, stale_after_s=a.stale_s,
                            rotate_after_s=a.rotate_s, ring_capacity=a.ring_capacity,
                            single_connection=a.single_connection)


if __name__ == "__main__":
    sys.exit(main())
