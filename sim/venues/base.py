"""What every simulated venue shares: subscriptions, fault state, probe hooks, order-reply faults.

A venue module subclasses VenueApp and implements routing, frame formats and
order entry in its own wire format.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import orjson

from sim.engine import Engine, Order
from sim.market import Book, Instrument
from sim.server import App, Conn, Request, Response, WsSession, text_frame

if TYPE_CHECKING:
    from sim.core import Simulator

MAX_SUBS_PER_CONN = 1024

_PLAIN_STR = re.compile(r"[A-Za-z0-9 ._:/@#+=,;!?*()<>|~^$%&'\[\]{}-]*").fullmatch


def json_str(s: str) -> str:
    """orjson.dumps(s).decode(): a JSON string literal, without the call for plain ASCII text
    (what byte templates of order pushes put client-chosen strings through)."""
    if s.isalnum() or _PLAIN_STR(s):  # non-ASCII letters pass isalnum: orjson writes them raw too
        return '"' + s + '"'
    return orjson.dumps(s).decode()


def pair_levels(inst: Instrument, levels: Any) -> str:
    """`["px","qty"],...` for (ticks, lots) pairs, from the instrument's string caches
    (a removed level's whole fragment is cached: they come back on every book move)."""
    pxc, qc, px, qty = inst._px_cache, inst._qty_cache, inst.px, inst.qty
    zf = inst._zero_level_cache
    out = []
    for t, q in levels:
        if q:
            out.append(f'["{pxc.get(t) or px(t)}","{qc.get(q) or qty(q)}"]')
        else:
            f = zf.get(t)
            if f is None:
                if len(zf) > 100_000:
                    zf.clear()
                f = zf[t] = f'["{px(t)}","{qty(0)}"]'
            out.append(f)
    return ",".join(out)


class VenueSession(WsSession):
    kind = "md"

    def __init__(self, app: VenueApp) -> None:
        self.app = app
        self.subs: set[str] = set()
        self.api_key: str | None = None  # set after a successful login

    def on_close(self) -> None:
        self.app.unsubscribe_all(self)


class VenueApp(App):
    name = "venue"

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.cfg = sim.cfg
        self.engine: Engine = sim.engines[self.name]
        self.books: dict[str, Book] = {s: st.books[self.name] for s, st in sim.market.symbols.items()}
        self.instruments: dict[str, Instrument] = {s: b.inst for s, b in self.books.items()}
        self.by_venue_symbol: dict[str, Instrument] = {i.venue_symbol: i for i in self.instruments.values()}
        self.subs: dict[str, set[VenueSession]] = {}
        self.server: Any = None
        # fault state
        self.skip_seq: set[str] = set()
        self.bad_checksum: set[str] = set()
        self.delay_acks: list[float] = []  # one entry (seconds) per delayed reply
        self.drop_acks = 0
        self.rate_limit_count = 0
        self.rate_limit_until_ns = 0
        self.dispatch_seq = 0  # batches of engine events dispatched (pushes formatted within one may be reused)
        self.stats = {"orders_received": 0, "orders_acked": 0, "orders_rejected": 0,
                      "rate_limited": 0, "md_frames": 0, "bad_requests": 0}

    # -- subscriptions ------------------------------------------------------
    def subscribe(self, sess: VenueSession, key: str) -> bool:
        if key in sess.subs:
            return True
        if len(sess.subs) >= MAX_SUBS_PER_CONN:
            return False
        sess.subs.add(key)
        self.subs.setdefault(key, set()).add(sess)
        return True

    def unsubscribe(self, sess: VenueSession, key: str) -> None:
        sess.subs.discard(key)
        s = self.subs.get(key)
        if s is not None:
            s.discard(sess)
            if not s:
                del self.subs[key]

    def unsubscribe_all(self, sess: VenueSession) -> None:
        for key in list(sess.subs):
            self.unsubscribe(sess, key)

    def instrument(self, venue_symbol: Any) -> Instrument | None:
        if not isinstance(venue_symbol, str):
            return None
        return self.by_venue_symbol.get(venue_symbol)

    # -- publishing -----------------------------------------------------------
    def publish(self, symbol: str, book: Book, probe: bool) -> int:
        """Format and send this step's frames; return how many stream frames it produced."""
        raise NotImplementedError

    def probe_record(self, symbol: str, kind: str, seq: int) -> dict:
        return self.sim.probe_md(self.name, symbol, kind, seq)

    def book_view(self, symbol: str, depth: int) -> dict:
        b = self.books[symbol]
        inst = b.inst
        return {"venue": self.name, "symbol": symbol, "seq": self.book_seq(b),
                "bids": [[inst.px(t), inst.qty(n)] for t, n in b.top_bids(depth)],
                "asks": [[inst.px(t), inst.qty(n)] for t, n in b.top_asks(depth)]}

    def book_seq(self, b: Book) -> int:
        return b.update_id

    # -- faults -----------------------------------------------------------------
    def fault(self, name: str, params: dict) -> dict:
        if name == "drop":
            scope = params.get("scope", "all")
            kinds = None if scope == "all" else ((scope,) if scope in ("md", "orders") else ())
            return {"dropped": self.server.drop_all(kinds)}
        if name == "stall":
            until = time.monotonic_ns() + int(float(params.get("duration_s", 5)) * 1e9)
            n = 0
            for c in list(self.server.conns):
                if c.ws is not None and c.kind == "md":
                    c.stalled_until_ns = until
                    n += 1
            return {"stalled": n}
        if name == "skip_seq":
            self.skip_seq.update(self.books)
            return {}
        if name == "bad_checksum":
            self.bad_checksum.update(self.books)
            return {}
        if name == "malformed":
            n = 0
            for c in self.md_conns():
                c.send_md(text_frame(b'{"malformed":tr'))
                n += 1
            return {"sent": n}
        if name == "delay_ack":
            self.delay_acks += [float(params.get("ms", 2000)) / 1000.0] * int(params.get("count", 1))
            return {}
        if name == "drop_ack":
            self.drop_acks += int(params.get("count", 1))
            return {}
        if name == "rate_limit":
            if "duration_s" in params:
                self.rate_limit_until_ns = time.monotonic_ns() + int(float(params["duration_s"]) * 1e9)
            else:
                self.rate_limit_count += int(params.get("count", 1))
            return {}
        if name == "restart":
            self.sim.spawn(self.server.restart(float(params.get("down_s", 1.0))))
            return {}
        if name == "server_shutdown":
            n = 0
            for c in list(self.server.conns):
                if c.ws is not None:
                    frame = self.shutdown_frame(c)
                    if frame:
                        c.send_text(frame)
                        n += 1
            return {"sent": n}
        raise ValueError(f"unknown fault {name!r}")

    def shutdown_frame(self, conn: Conn) -> str:
        return ""

    def clear_faults(self) -> None:
        self.skip_seq.clear()
        self.bad_checksum.clear()
        self.delay_acks.clear()
        self.drop_acks = 0
        self.rate_limit_count = 0
        self.rate_limit_until_ns = 0

    def md_conns(self) -> list[Conn]:
        return [c for c in self.server.conns if c.ws is not None and c.kind == "md"]

    def rate_limited(self) -> bool:
        """True when an injected rate-limit fault answers this order request."""
        if self.rate_limit_count > 0:
            self.rate_limit_count -= 1
            self.stats["rate_limited"] += 1
            return True
        if self.rate_limit_until_ns and time.monotonic_ns() < self.rate_limit_until_ns:
            self.stats["rate_limited"] += 1
            return True
        return False

    def reply(self, sess: WsSession, text: str | bytes) -> None:
        """Send an order reply, honouring delay/drop faults."""
        if self.drop_acks > 0:
            self.drop_acks -= 1
            return
        if self.delay_acks:
            delay = self.delay_acks.pop(0)
            conn = sess.conn
            self.sim.loop.call_later(delay, conn.send_text, text)
            return
        sess.conn.send_text(text)

    def note_order(self, op: str, client_id: Any, recv_ns: int) -> None:
        self.stats["orders_received"] += 1
        sim = self.sim  # sim.probe_order(...) inlined: this runs for every order request
        sim.probe_order_records.append((self.name, op, client_id, recv_ns))
        sim.probe_orders_total += 1

    # -- private events ---------------------------------------------------------
    def dispatch_events(self) -> None:
        ev = self.engine.events
        if not ev:
            return
        self.engine.events = []
        self.dispatch_seq += 1  # no order changes while one batch of events is pushed
        for kind, order, fill in ev:
            self.on_order_event(kind, order, fill)

    def on_order_event(self, kind: str, order: Order, fill: Any) -> None:
        pass

    def handle_http(self, req: Request) -> Response:
        return Response(404, b'{"error":"not found"}')
