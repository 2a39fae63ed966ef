"""The naive baseline: a single-process asyncio market maker as a typical user writes it.

    python -m benches.baselines.naive_bot --urls SIM_READY.json [--cpu N] [--symbols ...]

One WebSocket client library (`websockets`), one persistent market-data connection and one
persistent, logged-in order connection per venue, `json.loads` per frame, dict order books,
order JSON built per request with `json.dumps` and an HMAC signature per signed request. It
quotes the trigger symbol on every venue: when the mid moves more than `--threshold-bps` from
the mid it last quoted, it places a new post-only bid and ask around the mid and cancels the
previous pair. Nothing is sabotaged: the good habits (persistent connections, one task per
connection, no per-message logging) are kept. Prints READY when every venue is logged in and
has a best bid/offer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys

from benches.baselines.venue_wire import (
    TICK,
    VENUES,
    OrderWire,
    binance_sym,
    gate_login,
    md_url,
    okx_inst_id_code,
    okx_login,
    order_url,
    subscribe_frames,
)


class NaiveBot:
    def __init__(self, urls: dict, symbols: list[str], trigger_symbol: str, spread_bps: float,
                 threshold_bps: float, qty: str, api_key: str, secret: str, passphrase: str) -> None:
        self.urls = urls
        self.symbols = symbols
        self.trigger_symbol = trigger_symbol
        self.half = spread_bps * 0.5e-4
        self.threshold = threshold_bps * 1e-4
        self.qty = qty
        self.api_key, self.secret, self.passphrase = api_key, secret, passphrase
        self.books: dict = {v: {s: {"bids": {}, "asks": {}} for s in symbols} for v in VENUES}
        self.bbo: dict = {v: {} for v in VENUES}
        self.quoted_mid: dict = {v: 0.0 for v in VENUES}
        self.live: dict = {v: [] for v in VENUES}
        self.order_ws: dict = {}
        self.wires: dict = {}
        self.logged_in: dict = {v: asyncio.Event() for v in VENUES}
        self.n = 0
        self.messages = 0
        self.replies = 0

    # ---- market data -------------------------------------------------------------------
    def on_md(self, venue: str, raw) -> None:
        self.messages += 1
        msg = json.loads(raw)
        if venue == "binance":
            if "data" in msg:
                msg = msg["data"]
            e = msg.get("e")
            if e == "depthUpdate":
                self.apply_depth(venue, msg["s"], msg["b"], msg["a"])
            elif e is None and "b" in msg and "a" in msg:
                self.on_bbo(venue, msg["s"], float(msg["b"]), float(msg["a"]))
        elif venue == "okx":
            arg = msg.get("arg")
            if not arg or "data" not in msg:
                return
            ch = arg["channel"]
            for d in msg["data"]:
                if ch == "books":
                    if msg.get("action") == "snapshot":
                        self.books[venue][arg["instId"]] = {"bids": {}, "asks": {}}
                    self.apply_depth(venue, arg["instId"], d["bids"], d["asks"])
                elif ch == "bbo-tbt" and d["bids"] and d["asks"]:
                    self.on_bbo(venue, arg["instId"], float(d["bids"][0][0]), float(d["asks"][0][0]))
        else:
            ch = msg.get("channel")
            r = msg.get("result")
            if msg.get("event") != "update" or not isinstance(r, dict):
                return
            if ch == "spot.order_book_update":
                if r.get("full"):
                    self.books[venue][r["s"]] = {"bids": {}, "asks": {}}
                self.apply_depth(venue, r["s"], r.get("b", []), r.get("a", []))
            elif ch == "spot.book_ticker":
                self.on_bbo(venue, r["s"], float(r["b"]), float(r["a"]))

    def canonical(self, venue: str, vsym: str) -> str:
        if venue == "binance":
            for s in self.symbols:
                if binance_sym(s) == vsym:
                    return s
        if venue == "gate":
            return vsym.replace("_", "-")
        return vsym

    def apply_depth(self, venue: str, vsym: str, bids, asks) -> None:
        book = self.books[venue].setdefault(self.canonical(venue, vsym), {"bids": {}, "asks": {}})
        for side, levels in (("bids", bids), ("asks", asks)):
            b = book[side]
            for lvl in levels:
                px, qty = float(lvl[0]), float(lvl[1])
                if qty == 0.0:
                    b.pop(px, None)
                else:
                    b[px] = qty

    def on_bbo(self, venue: str, vsym: str, bid: float, ask: float) -> None:
        sym = self.canonical(venue, vsym)
        self.bbo[venue][sym] = (bid, ask)
        if sym != self.trigger_symbol or not self.logged_in[venue].is_set():
            return
        mid = (bid + ask) / 2
        last = self.quoted_mid[venue]
        if last and abs(mid - last) < self.threshold * last:
            return
        self.quoted_mid[venue] = mid
        self.requote(venue, mid, bid, ask)

    def requote(self, venue: str, mid: float, bid: float, ask: float) -> None:
        tick = TICK[venue]
        buy_px = min(math.floor(mid * (1 - self.half) / tick) * tick, bid)
        sell_px = max(math.ceil(mid * (1 + self.half) / tick) * tick, ask)
        wire = self.wires[venue]
        ws = self.order_ws[venue]
        old = self.live[venue]
        new = []
        for side, px in (("buy", buy_px), ("sell", sell_px)):
            self.n += 1
            cid = f"nb{self.n}"
            asyncio.ensure_future(ws.send(wire.new_post_only(cid, side, f"{px:.2f}", self.qty)))
            new.append(cid)
        for cid in old:
            asyncio.ensure_future(ws.send(wire.cancel(cid)))
        self.live[venue] = new

    # ---- connections -------------------------------------------------------------------
    async def md_loop(self, venue: str) -> None:
        from websockets.asyncio.client import connect

        async with connect(md_url(venue, self.urls), max_size=None) as ws:
            for f in subscribe_frames(venue, self.symbols):
                await ws.send(f)
            async for raw in ws:
                self.on_md(venue, raw)

    async def order_loop(self, venue: str) -> None:
        from websockets.asyncio.client import connect

        code = okx_inst_id_code(self.urls["okx"]["rest"], self.trigger_symbol) if venue == "okx" else 0
        self.wires[venue] = OrderWire(venue, self.api_key, self.secret, self.trigger_symbol, code)
        async with connect(order_url(venue, self.urls), max_size=None) as ws:
            self.order_ws[venue] = ws
            if venue == "okx":
                await ws.send(okx_login(self.api_key, self.secret, self.passphrase))
            elif venue == "gate":
                await ws.send(gate_login(self.api_key, self.secret))
            else:
                self.logged_in[venue].set()  # Binance: every request is signed
            async for raw in ws:
                self.replies += 1
                if not self.logged_in[venue].is_set():
                    msg = json.loads(raw)
                    if venue == "okx" and msg.get("event") == "login" and msg.get("code") == "0":
                        self.logged_in[venue].set()
                    elif venue == "gate" and (msg.get("header") or {}).get("channel") == "spot.login" \
                            and (msg.get("header") or {}).get("status") == "200":
                        self.logged_in[venue].set()

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.ensure_future(self.order_loop(v)) for v in VENUES]
        tasks += [asyncio.ensure_future(self.md_loop(v)) for v in VENUES]
        for v in VENUES:
            await asyncio.wait_for(self.logged_in[v].wait(), 30)
        while not all(self.trigger_symbol in self.bbo[v] for v in VENUES):
            await asyncio.sleep(0.05)
        print("READY", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print(json.dumps({"md_messages": self.messages, "orders": self.n, "replies": self.replies}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.baselines.naive_bot", description=__doc__.splitlines()[0])
    ap.add_argument("--urls", required=True, help="the simulator's ready-file JSON")
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--symbols", default="BTC-USDT,ETH-USDT")
    ap.add_argument("--trigger-symbol", default="BTC-USDT")
    ap.add_argument("--spread-bps", type=float, default=20.0)
    ap.add_argument("--threshold-bps", type=float, default=2.0)
    ap.add_argument("--qty", default="0.001")
    a = ap.parse_args(argv)
    try:
        with open(a.urls) as f:
            urls = json.load(f)
    except (OSError, ValueError) as e:
        print(f"naive_bot: cannot read --urls {a.urls}: {e}", file=sys.stderr)
        return 2
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    bot = NaiveBot(urls, [s for s in a.symbols.split(",") if s], a.trigger_symbol, a.spread_bps,
                   a.threshold_bps, a.qty, "sim-key", "sim-secret", "sim-pass")
    asyncio.run(bot.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
