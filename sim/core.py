"""The simulator: wires the market generator, engines, venue servers, faults and control endpoint.

Runs inside one asyncio loop (start()/stop()); `python -m sim` and
`sim.testing.run_sim` are thin wrappers around it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import time
from typing import Any

from sim.config import VENUES, Account, SimConfig
from sim.engine import Engine
from sim.faults import FaultManager
from sim.market import VENUE_OFFSET_BPS, Market
from sim.server import Server

log = logging.getLogger("sim")

PROBE_EVERY = 64  # outside trigger mode, one md frame in this many is probed


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        from sim.control import ControlApp
        from sim.venues.binance import BinanceApp
        from sim.venues.gate import GateApp
        from sim.venues.okx import OkxApp

        self.cfg = cfg.validate()
        self.accounts: dict[str, Account] = {a.api_key: a for a in cfg.accounts}
        self.market = Market(cfg.symbols, VENUES, cfg.seed, cfg.depth_levels)
        id_base = int(time.time() * 1000) * 1_000_000  # ids unique across runs, as on a real venue
        self.engines = {v: Engine(v, {s: st.books[v] for s, st in self.market.symbols.items()},
                                  cfg.balances, cfg.default_base_balance, cfg.maker_fee, cfg.taker_fee,
                                  id_base=id_base)
                        for v in VENUES}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.venues = {"binance": BinanceApp(self), "okx": OkxApp(self), "gate": GateApp(self)}
        self.control = ControlApp(self)
        self._venue_steps = [(v, self.venues[v], self.engines[v], 1 + VENUE_OFFSET_BPS[v] * 1e-4) for v in VENUES]
        self.servers: dict[str, Server] = {}
        self.faults = FaultManager(self)
        self.urls: dict[str, Any] = {}
        self.rate = float(cfg.rate)
        self.paused = cfg.paused
        self.trigger_ms = cfg.trigger_ms
        self.trigger_jump_bps = cfg.trigger_jump_bps
        self.trigger_symbol: str | None = None
        self.trigger_sign = 1
        self.trigger_load = False  # trigger mode: the other symbols keep generating at `rate`
        self.probe_md_records: collections.deque[dict] = collections.deque(maxlen=100_000)
        self.probe_order_records: collections.deque[tuple] = collections.deque(maxlen=100_000)
        self.probe_orders_total = 0  # order records ever appended (the deque keeps the last 100k)
        self.probe_orders_written = 0  # of those, written to the probe file
        self._probe_all = False
        self._probe_counter = 0
        self.frames_generated = 0
        self.steps = 0
        self._tasks: set[asyncio.Task] = set()
        self._gen_task: asyncio.Task | None = None
        self._stopping = False
        self.started_ns = 0

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        host, base = self.cfg.host, self.cfg.port_base
        apps = [("binance", self.venues["binance"]), ("okx", self.venues["okx"]),
                ("gate", self.venues["gate"]), ("control", self.control)]
        try:
            for i, (name, app) in enumerate(apps):
                srv = Server(app, host, base + i if base else 0)
                await srv.start()
                self.servers[name] = srv
                if name in self.venues:
                    self.venues[name].server = srv
        except OSError:
            for srv in self.servers.values():
                await srv.stop()
            raise
        p = {k: s.port for k, s in self.servers.items()}
        h = host if ":" not in host else f"[{host}]"
        self.urls = {
            "binance": {"rest": f"http://{h}:{p['binance']}", "ws": f"ws://{h}:{p['binance']}/ws",
                        "stream": f"ws://{h}:{p['binance']}/stream",
                        "ws_api": f"ws://{h}:{p['binance']}/ws-api/v3"},
            "okx": {"rest": f"http://{h}:{p['okx']}", "ws": f"ws://{h}:{p['okx']}/ws/v5/public",
                    "ws_public": f"ws://{h}:{p['okx']}/ws/v5/public",
                    "ws_private": f"ws://{h}:{p['okx']}/ws/v5/private"},
            "gate": {"rest": f"http://{h}:{p['gate']}", "ws": f"ws://{h}:{p['gate']}/ws/v4/"},
            "control": f"http://{h}:{p['control']}",
        }
        for f in self.cfg.faults:
            self.faults.add(f["venue"], f["name"], f.get("params") or {}, f.get("every_s"))
        self.started_ns = time.monotonic_ns()
        self._gen_task = self.loop.create_task(self._generate())
        if self.cfg.okx_books_heartbeat_s > 0 or self.cfg.binance_ping_s > 0:
            self.spawn(self._keepalive())
        if self.cfg.probe_file:
            self.spawn(self._probe_writer())

    async def stop(self) -> None:
        self._stopping = True
        self.faults.clear()
        if self._gen_task is not None:
            self._gen_task.cancel()
            try:
                await self._gen_task
            except (asyncio.CancelledError, Exception):
                pass
        for t in list(self._tasks):
            t.cancel()
        for srv in self.servers.values():
            await srv.stop()
        if self.cfg.probe_file:
            self._write_probe_file()

    def spawn(self, coro: Any) -> asyncio.Task:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- market data --------------------------------------------------------------
    async def _generate(self) -> None:
        """Step the market so that frames/s follows self.rate; in trigger mode stay quiet and jump."""
        tick_s = 0.001
        last = time.monotonic()
        credit = 0.0
        next_jump = 0.0
        syms = list(self.market.symbols.values())
        rr = 0
        while True:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            dt = min(now - last, 0.05)
            last = now
            if self.paused:
                credit = 0.0
                continue
            gen = syms
            if self.trigger_ms > 0:
                if now >= next_jump:
                    if next_jump:
                        self._jump()
                    next_jump = now + self.trigger_ms / 1000.0
                gen = [st for st in syms if st.symbol != self.trigger_symbol] if self.trigger_load else []
                if not gen:
                    credit = 0.0
                    continue
            else:
                next_jump = 0.0
            credit += self.rate * dt
            # never spend more than ~20 ms of one loop turn generating
            budget_end = time.perf_counter() + 0.02
            while credit >= 1.0:
                rr %= len(gen)
                st = gen[rr]
                rr += 1
                credit -= self._step_symbol(st, None)
                if time.perf_counter() > budget_end:
                    credit = min(credit, self.rate * 0.05)
                    break
            self._flush_venue_events()

    def _step_symbol(self, st: Any, jump_bps: float | None, probe_all: bool = False) -> int:
        market = self.market
        market.advance_fair(st, jump_bps)
        frames = 0
        noise = jump_bps is None
        trade_rate = market.trade_rate if noise else 0.0
        symbol = st.symbol
        books = st.books
        fair_px = st.fair_px
        for v, app, engine, mid_factor in self._venue_steps:
            book = books[v]
            book.begin_step()
            book.step(fair_px * mid_factor, trade_rate, noise=noise)  # market.venue_mid(st, v)
            if engine.orders:  # resting orders are open orders: none open, none to fill
                engine.on_book_step(symbol)
            self._probe_counter += 1
            frames += app.publish(symbol, book, probe_all or self._probe_counter % PROBE_EVERY == 0)
        self.frames_generated += frames
        self.steps += 1
        return max(frames, 1)

    async def _keepalive(self) -> None:
        """OKX books heartbeats on quiet books and Binance server pings, on their own periods."""
        hb_s, ping_s = self.cfg.okx_books_heartbeat_s, self.cfg.binance_ping_s
        periods = [x for x in (hb_s, ping_s) if x > 0]
        tick_s = max(0.01, min(1.0, min(periods) / 4))
        next_ping = time.monotonic() + ping_s
        okx, binance = self.venues["okx"], self.venues["binance"]
        while True:
            await asyncio.sleep(tick_s)
            now_ns = time.monotonic_ns()
            if hb_s > 0:
                okx.send_heartbeats(now_ns, int(hb_s * 1e9))  # type: ignore[attr-defined]
            if ping_s > 0 and now_ns >= next_ping * 1e9:
                next_ping = now_ns / 1e9 + ping_s
                binance.ping_all(now_ns, int(self.cfg.binance_pong_timeout_s * 1e9))  # type: ignore[attr-defined]

    def _jump(self) -> None:
        syms = [self.market.symbols[self.trigger_symbol]] if self.trigger_symbol in self.market.symbols \
            else list(self.market.symbols.values())
        bps = self.trigger_jump_bps * self.trigger_sign
        self.trigger_sign = -self.trigger_sign
        for st in syms:
            self._step_symbol(st, bps, probe_all=True)
        self._flush_venue_events()

    def _flush_venue_events(self) -> None:
        for app in self.venues.values():
            app.dispatch_events()

    def set_trigger(self, on: bool, interval_ms: int, jump_bps: float, symbol: str | None,
                    load: bool = False) -> None:
        self.trigger_ms = int(interval_ms) if on else 0
        self.trigger_jump_bps = float(jump_bps)
        self.trigger_symbol = symbol
        self.trigger_load = bool(load) and on

    # -- probe ------------------------------------------------------------------
    def probe_md(self, venue: str, symbol: str, kind: str, seq: int) -> dict:
        rec = {"venue": venue, "symbol": symbol, "kind": kind, "seq": seq, "send_ns": 0,
               "trigger": self.trigger_ms > 0}
        self.probe_md_records.append(rec)
        return rec

    def probe_order(self, venue: str, op: str, client_id: Any, recv_ns: int) -> None:
        # a tuple per order (dicts are made when someone asks): this runs for every request
        self.probe_order_records.append((venue, op, client_id, recv_ns))
        self.probe_orders_total += 1

    def _order_records(self, skip_total: int = 0) -> list[dict]:
        recs = self.probe_order_records
        first_total = self.probe_orders_total - len(recs)  # running number of recs[0]
        start = max(0, skip_total - first_total)
        return [{"venue": v, "op": op, "client_order_id": cid, "recv_ns": ns}
                for v, op, cid, ns in itertools.islice(recs, start, None)]

    def probe_snapshot(self, clear: bool) -> dict:
        out = {"md": [r for r in self.probe_md_records if r["send_ns"]],
               "orders": self._order_records(), "clock": "monotonic_ns",
               "now_ns": time.monotonic_ns()}
        if clear:
            self.probe_md_records.clear()
            self.probe_order_records.clear()
        return out

    async def _probe_writer(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._write_probe_file()

    def _write_probe_file(self) -> None:
        try:
            with open(self.cfg.probe_file, "a") as f:
                recs = list(self.probe_md_records)
                for r in recs:
                    if r.get("send_ns") and not r.get("_written"):
                        r["_written"] = True
                        f.write(json.dumps({"type": "md", **{k: v for k, v in r.items() if k != "_written"}})
                                + "\n")
                for r in self._order_records(self.probe_orders_written):
                    f.write(json.dumps({"type": "order", **r}) + "\n")
                self.probe_orders_written = self.probe_orders_total
        except OSError as e:
            log.warning("probe file %s: %s", self.cfg.probe_file, e)

    # -- control ------------------------------------------------------------------
    def stats(self) -> dict:
        out: dict[str, Any] = {"frames_generated": self.frames_generated, "steps": self.steps,
                               "rate": self.rate, "paused": self.paused, "trigger_ms": self.trigger_ms,
                               "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9, "venues": {}}
        for v, app in self.venues.items():
            srv = self.servers.get(v)
            out["venues"][v] = {**app.stats, **self.engines[v].stats,
                                "connections": len(srv.conns) if srv else 0,
                                "frames_sent": srv.frames_out if srv else 0,
                                "messages_received": srv.msgs_in if srv else 0,
                                "reads": srv.reads_in if srv else 0,
                                "open_orders": len(self.engines[v].orders)}
        return out

    def reset(self) -> None:
        self.faults.clear()
        for v, app in self.venues.items():
            app.clear_faults()
            self.engines[v].reset()
            app.reset()
        self.probe_md_records.clear()
        self.probe_order_records.clear()
        self.paused = False
        self.trigger_ms = 0
        self.trigger_load = False
