"""`python -m sim.bench`: simulator throughput on one core, measured by a loopback client.

Starts `python -m sim` pinned to one CPU (taskset when available), then
1) market data: subscribes to every stream on all three venues, asks for a
   very high rate and counts the frames the sim wrote per second;
2) orders: pipelines signed Binance `order.place` requests (IOC, far from the
   market, so each is acknowledged and expires) and counts acks per second.
Prints the figures; timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

from sim.testing import READY_PREFIX, ControlClient


async def _ws_connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    u = urllib.parse.urlsplit(url)
    r, w = await asyncio.open_connection(u.hostname, u.port, limit=1 << 24)
    key = base64.b64encode(os.urandom(16)).decode()
    path = u.path + ("?" + u.query if u.query else "")
    w.write((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await r.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"handshake failed: {head[:100]!r}")
    return r, w


def _frame(payload: bytes) -> bytes:
    from sim.server import unmask

    n = len(payload)
    mask = os.urandom(4)
    hdr = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return hdr + mask + unmask(payload, mask)


async def _drain(r: asyncio.StreamReader, counter: list[int], pattern: bytes | None) -> None:
    try:
        while True:
            data = await r.read(1 << 20)
            if not data:
                return
            counter[0] += data.count(pattern) if pattern else len(data)
    except (ConnectionError, asyncio.CancelledError):
        return


async def bench_md(urls: dict, control: ControlClient, symbols: list[str], seconds: float) -> dict:
    conns = []
    bsyms = "/".join(f"{s.replace('-', '').lower()}@{k}" for s in symbols for k in ("bookTicker", "trade", "depth"))
    conns.append(await _ws_connect(urls["binance"]["stream"] + "?streams=" + bsyms))
    r, w = await _ws_connect(urls["okx"]["ws_public"])
    w.write(_frame(json.dumps({"op": "subscribe", "args": [{"channel": ch, "instId": s} for s in symbols
                                                           for ch in ("bbo-tbt", "books", "trades")]}).encode()))
    conns.append((r, w))
    r, w = await _ws_connect(urls["gate"]["ws"])
    t = int(time.time())
    for ch in ("spot.book_ticker", "spot.trades"):
        w.write(_frame(json.dumps({"time": t, "channel": ch, "event": "subscribe",
                                   "payload": [s.replace("-", "_") for s in symbols]}).encode()))
    for s in symbols:
        w.write(_frame(json.dumps({"time": t, "channel": "spot.order_book_update", "event": "subscribe",
                                   "payload": [s.replace("-", "_"), "100ms"]}).encode()))
    conns.append((r, w))
    counter = [0]
    tasks = [asyncio.create_task(_drain(r, counter, None)) for r, _ in conns]
    control.set_rate(5_000_000)
    await asyncio.sleep(1.0)  # warm up
    s0 = control.stats()
    b0 = counter[0]
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    s1 = control.stats()
    t1 = time.perf_counter()
    b1 = counter[0]
    control.set_rate(1000)
    for t_ in tasks:
        t_.cancel()
    for _, w in conns:
        w.close()
    sent = sum(s1["venues"][v]["frames_sent"] - s0["venues"][v]["frames_sent"] for v in s1["venues"])
    gen = s1["frames_generated"] - s0["frames_generated"]
    dt = t1 - t0
    return {"md_frames_sent_per_s": sent / dt, "md_frames_generated_per_s": gen / dt,
            "md_mbytes_received_per_s": (b1 - b0) / dt / 1e6}


async def bench_orders(urls: dict, seconds: float, window: int, signed: bool) -> dict:
    r, w = await _ws_connect(urls["binance"]["ws_api"])
    secret = b"sim-secret"
    if not signed:
        p = {"apiKey": "sim-key", "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{k}={p[k]}" for k in sorted(p))
        p["signature"] = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
        w.write(_frame(json.dumps({"id": "logon", "method": "session.logon", "params": p}).encode()))
        await r.readuntil(b'"logon"')
    acked = [0]
    drain = asyncio.create_task(_drain(r, acked, b'"status":200'))
    sent = 0
    t_end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    base = acked[0]
    while time.perf_counter() < t_end:
        while sent - (acked[0] - base) < window:
            ts = int(time.time() * 1000)
            p = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "price": "30000.00",
                 "quantity": "0.00100", "newClientOrderId": f"b{sent}", "newOrderRespType": "ACK", "timestamp": ts}
            if signed:
                p["apiKey"] = "sim-key"
                payload = "&".join(f"{k}={p[k]}" for k in sorted(p))
                p["signature"] = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
            w.write(_frame(json.dumps({"id": sent, "method": "order.place", "params": p},
                                      separators=(",", ":")).encode()))
            sent += 1
        await asyncio.sleep(0)
        await asyncio.sleep(0.0005)
    dt = time.perf_counter() - t0
    n = acked[0] - base
    drain.cancel()
    w.close()
    return {"orders_acked_per_s": n / dt, "orders_sent": sent, "orders_acked": n}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.bench")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sim-cpu", default="0", help="CPU the simulator is pinned to (taskset)")
    ap.add_argument("--client-cpu", default="1", help="CPU the client is pinned to")
    ap.add_argument("--window", type=int, default=256, help="orders in flight")
    args = ap.parse_args()
    symbols = ["BTC-USDT", "ETH-USDT"]
    cmd = [sys.executable, "-m", "sim", "--port-base", "0", "--symbols", ",".join(symbols), "--rate", "1000"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", args.sim_cpu] + cmd
        try:
            os.sched_setaffinity(0, {int(args.client_cpu)})
        except (AttributeError, OSError, ValueError):
            pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        urls = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(READY_PREFIX):
                urls = json.loads(line[len(READY_PREFIX):])
                break
        if urls is None:
            print("sim did not start", file=sys.stderr)
            return 1
        control = ControlClient(urls["control"])
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        md = asyncio.run(bench_md(urls, control, symbols, args.seconds))
        signed = asyncio.run(bench_orders(urls, args.seconds, args.window, True))
        session = asyncio.run(bench_orders(urls, args.seconds, args.window, False))
        out = {"market_data": md, "orders_signed_hmac": signed, "orders_session_logon": session,
               "sim_cpu": args.sim_cpu, "client_cpu": args.client_cpu, "seconds": args.seconds}
        print(json.dumps(out, indent=2))
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
