"""Feed process: venue WebSockets (picows) -> pure parser + book sync -> md ring per venue.

Entry points (the launcher calls the first):

    run_feed_process(venues: list[str], config_path: str | None, prefix: str, cpu: int | None,
                     symbols: list[str], urls: dict | None = None, *, stale_after_s=None,
                     rotate_after_s=None, ring_capacity=1 << 16, stop_event=None) -> int
    python -m feeds.handler --venue okx [--venue gate] --prefix hft [--cpu 2] [--config FILE]
                            [--symbols BTC-USDT,ETH-USDT] [--urls JSON] [--stale-s 30] [--rotate-s N]

`urls` maps venue -> {"ws": url, "rest": url} (the simulator's `urls` map works as is);
otherwise exchanges.<venue>.ws_url / rest_url from the config. Each venue writes the ring
`ring_name(prefix, "md-<venue>")` and the counters block `counters_name(prefix, "feed-<venue>")`.
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
from feeds.base import CTRL_ROTATE, LIVE, REASON_RECONNECT, REASON_STALE, VenueFeed
from feeds.errors import FrameError
from ringbuf.counters import Counters
from ringbuf.records import KIND_BOOK_LEVEL, KIND_BOOK_RESET
from ringbuf.ring import Ring
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


# ---- one WebSocket connection -----------------------------------------------------------
def _listener_class():
    from picows import WSListener, WSMsgType

    text, binary, ping = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING

    class Listener(WSListener):
        """Per connection: the hot path is `on_ws_frame` -> feed.on_frame -> ring.write."""

        def __init__(self, runner: VenueRunner, conn_id: int) -> None:
            self.runner = runner
            self.conn_id = conn_id
            self.transport = None
            self.last_rx_ns = time.monotonic_ns()
            self.closing = False
            self.data_frames = 0
            self.hold: list | None = None  # frames held while this connection waits to take over

        def on_ws_connected(self, transport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport, frame) -> None:
            t = frame.msg_type
            if t is text or t is binary:
                recv_ns = time.monotonic_ns()
                self.last_rx_ns = recv_ns
                r = self.runner
                mv = frame.get_payload_as_memoryview()
                r.messages += 1
                r.nbytes += len(mv)
                if self.hold is not None:
                    self.hold.append((bytes(mv), recv_ns))
                    return
                try:
                    n = r.feed.on_frame(mv, recv_ns, r.write)
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
                self.last_rx_ns = time.monotonic_ns()

        def on_ws_disconnected(self, transport) -> None:
            self.runner.on_disconnected(self)

    return Listener


class VenueRunner:
    """Connections, sync side tasks and counters of one venue inside the feed process."""

    def __init__(self, venue: str, ws_url: str, rest_url: str, symbols: list[str], instruments: Instruments,
                 prefix: str, ring_capacity: int = 1 << 16, stale_after_s: float = 30.0,
                 rotate_after_s: float | None = None, snapshot_timeout_s: float = 3.0) -> None:
        self.venue = venue
        self.exchange = Exchange.from_name(venue)
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.symbols = symbols
        self.instruments = instruments
        self.feed: VenueFeed = FEEDS[venue](instruments)
        self.iids = [instruments.id_for(s) for s in symbols]
        self.ring = Ring.create(ring_name(prefix, f"md-{venue}"), ring_capacity, 64, replace=True)
        self.ring.claim_producer()
        self.write = self.ring.write
        self.counters = Counters(counters_name(prefix, f"feed-{venue}"), f"feed-{venue}")
        self.ctr = {label: self.counters.add(label) for label in COUNTER_LABELS}
        self.ctr_sym = {iid: self.counters.add(f"last_recv_ns:{instruments.name(iid)}") for iid in self.iids}
        self.stale_after_ns = int(stale_after_s * 1e9)
        rot = ROTATE_AFTER_S[venue] if rotate_after_s is None else rotate_after_s
        self.rotate_after_ns = int(rot * 1e9)
        self.snapshot_timeout_ns = int(snapshot_timeout_s * 1e9)
        self.rotate_overlap_s = 0.5  # the old connection keeps streaming this long after the new one starts
        # hot-path counters: plain ints, copied into the counters block by housekeeping
        self.messages = self.nbytes = self.parse_errors = self.records = 0
        self.reconnects = self.rotations = self.stale_reconnects = self.rest_errors = 0
        self.primary = None  # Listener of the connection that owns the streams
        self.secondary = None  # the connection opened for a rotation, before the old one closes
        self.connected_ns = 0
        self.attempt = 0
        self._conn_seq = 0
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._rotating = False
        self._last_ping_ns = 0

    # ---- life cycle ---------------------------------------------------------------
    async def run(self) -> None:
        self._tasks = [asyncio.ensure_future(self._connect_loop()), asyncio.ensure_future(self._snapshot_loop()),
                       asyncio.ensure_future(self._housekeeping())]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            pass

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for lst in (self.primary, self.secondary):
            if lst is not None and lst.transport is not None:
                lst.closing = True
                lst.transport.disconnect()
        self._flush_counters()

    def close(self) -> None:
        self.counters.close()
        self.ring.close()

    # ---- connections ------------------------------------------------------------------
    def _subscribe(self, transport) -> None:
        from picows import WSMsgType

        syms = self.symbols
        if self.venue == "binance":
            msgs = [binance.subscribe_message(syms)]
        elif self.venue == "okx":
            msgs = [okx.subscribe_message(syms)]
        else:
            msgs = gate.subscribe_messages(syms)
        for m in msgs:
            transport.send(WSMsgType.TEXT, m)

    async def _open(self):
        from picows import ws_connect

        self._conn_seq += 1
        cid = self._conn_seq
        listener_cls = _listener_class()
        transport, listener = await ws_connect(lambda: listener_cls(self, cid), self.ws_url,
                                               enable_auto_ping=True, auto_ping_idle_timeout=10,
                                               auto_ping_reply_timeout=10, enable_auto_pong=False,
                                               websocket_handshake_timeout=10)
        listener.transport = transport
        return listener

    async def _connect_loop(self) -> None:
        while not self._stopping:
            if self.primary is None:
                try:
                    lst = await self._open()
                except (TimeoutError, OSError, Exception) as e:  # noqa: B014 - picows raises its own
                    self.attempt += 1
                    delay = min(30.0, 0.1 * 2 ** min(self.attempt, 10)) * (0.5 + random.random())
                    log.warning("%s: connect to %s failed (%s); retry in %.2fs", self.venue, self.ws_url, e, delay)
                    await asyncio.sleep(delay)
                    continue
                self.primary = lst
                self.connected_ns = time.monotonic_ns()
                self._subscribe(lst.transport)
                self._after_subscribe()
                log.info("%s: connected to %s", self.venue, self.ws_url)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.5)
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
        if lst is self.secondary:
            self.secondary = None
            return
        if lst is not self.primary:
            return
        self.primary = None
        if self.secondary is not None:  # rotation in progress: the new connection takes over
            self.primary, self.secondary = self.secondary, None
            return
        if self._stopping:
            return
        if not lst.closing:
            self.reconnects += 1
            log.warning("%s: connection lost; reconnecting", self.venue)
        # whatever arrives next starts a new sequence: consumers must drop their books now
        self.feed.reset_books(REASON_RECONNECT, time.monotonic_ns(), self.write)
        if lst.data_frames > 0:
            self.attempt = 0
        else:
            self.attempt += 1
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        delay = 0.0 if self.attempt == 0 else min(30.0, 0.1 * 2 ** min(self.attempt, 10)) * (0.5 + random.random())
        asyncio.get_event_loop().call_later(delay, self._wake.set)

    def on_rotate_notice(self, lst) -> None:
        if lst is self.primary and not self._rotating:
            log.info("%s: venue announced a shutdown/upgrade; rotating the connection", self.venue)
            asyncio.ensure_future(self._rotate())

    async def _rotate(self) -> None:
        """Open and subscribe the new connection while the old one keeps streaming; hold the new
        one's frames until the old one has caught up past the new subscription point, then close
        the old one and replay the held frames: book diffs already applied are dropped by update
        id, later ones continue the sequence (no gap, no resync). Held quotes and trades are not
        replayed (they duplicate what the old connection delivered)."""
        if self._rotating or self.primary is None:
            return
        self._rotating = True
        old = self.primary
        try:
            new = await self._open()
        except Exception as e:  # noqa: BLE001 - the old connection keeps working
            log.warning("%s: rotation connect failed: %s", self.venue, e)
            self._rotating = False
            return
        new.hold = []
        self.secondary = new
        self._subscribe(new.transport)
        deadline = time.monotonic() + 5.0
        while len(new.hold) < 2 and time.monotonic() < deadline and not new.transport.is_disconnected:
            await asyncio.sleep(0.01)
        await asyncio.sleep(self.rotate_overlap_s)
        if new.transport.is_disconnected or self.primary is not old:
            self.secondary = None
            self._rotating = False
            return
        # switch without yielding to the loop: nothing from either socket interleaves here
        held, new.hold = new.hold, None
        self.primary, self.secondary = new, None
        self.connected_ns = time.monotonic_ns()
        old.closing = True
        if old.transport is not None:
            old.transport.disconnect()
        write = self.write

        def books_only(packer, *values):
            if values[0] == KIND_BOOK_LEVEL or values[0] == KIND_BOOK_RESET:
                return write(packer, *values)
            return True

        for raw, recv_ns in held:
            try:
                n = self.feed.on_frame(raw, recv_ns, books_only)
            except FrameError:
                self.parse_errors += 1
                continue
            if n > 0:
                self.records += n
        self.rotations += 1
        self._rotating = False

    def _reconnect_now(self, reason: int) -> None:
        lst = self.primary
        if lst is None:
            return
        if reason == REASON_STALE:
            self.stale_reconnects += 1
        lst.closing = True
        self.feed.reset_books(reason, time.monotonic_ns(), self.write)
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
                n = feed.on_snapshot(iid, body, time.monotonic_ns(), self.write)
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
            lst = self.primary
            if lst is None or lst.transport is None:
                continue
            feed = self.feed
            # keepalive: OKX wants a text "ping" before 30 s of silence; Gate an app-level spot.ping
            if self.venue == "okx" and now - lst.last_rx_ns > 20e9 and now - self._last_ping_ns > 5e9:
                lst.transport.send(WSMsgType.TEXT, b"ping")
                self._last_ping_ns = now
            elif self.venue == "gate" and now - self._last_ping_ns > 10e9:
                lst.transport.send(WSMsgType.TEXT, gate.ping_message())
                self._last_ping_ns = now
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
            # stale-stream watchdog: a subscribed symbol silent for too long -> reconnect + resync
            if self.stale_after_ns and now - self.connected_ns > self.stale_after_ns:
                last = feed.last_recv_ns
                for iid in self.iids:
                    t = last.get(iid, self.connected_ns)
                    if now - max(t, self.connected_ns) > self.stale_after_ns:
                        log.warning("%s: no data for %s in %.1fs; reconnecting", self.venue,
                                    self.instruments.name(iid), (now - t) / 1e9)
                        self._reconnect_now(REASON_STALE)
                        break
            if self.rotate_after_ns and now - self.connected_ns > self.rotate_after_ns and not self._rotating:
                asyncio.ensure_future(self._rotate())

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
        last = f.last_recv_ns
        newest = 0
        for iid, idx in self.ctr_sym.items():
            t = last.get(iid, 0)
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
                  rotate_after_s: float | None = None, ring_capacity: int = 1 << 16) -> list[VenueRunner]:
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
                                       rotate_after_s))
    except Exception:
        for r in runners:
            r.close()
        raise
    return runners


async def run_runners(runners: list[VenueRunner], stop_event=None) -> None:
    tasks = [asyncio.ensure_future(r.run()) for r in runners]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
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
    for r in runners:
        await r.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_feed_process(venues: list[str], config_path: str | None, prefix: str, cpu: int | None,
                     symbols: list[str], urls: dict | None = None, *, stale_after_s: float | None = None,
                     rotate_after_s: float | None = None, ring_capacity: int = 1 << 16, stop_event=None) -> int:
    """Run the feeds of `venues` in this process until SIGINT/SIGTERM (or `stop_event`).
    Returns the exit code: 0, or 2 after printing a one-line error for bad arguments/config."""
    try:
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})
            except (OSError, ValueError) as e:
                raise FeedError(f"cannot pin the feed process to cpu {cpu}: {e}") from None
        runners = build_runners(venues, config_path, prefix, symbols, urls, stale_after_s, rotate_after_s,
                                ring_capacity)
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
        asyncio.run(run_runners(runners, stop_event))
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
                            rotate_after_s=a.rotate_s, ring_capacity=a.ring_capacity)


if __name__ == "__main__":
    sys.exit(main())
