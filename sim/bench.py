"""`python -m sim.bench`: simulator throughput on one core, measured by a loopback client on another.

Starts `python -m sim` pinned to one CPU (taskset when available), pins itself to another, then
1) market data: subscribes to every stream of every symbol on all three venues (`--md-conns`
   consumers per venue), asks for a very high rate, and counts the WebSocket frames it actually
   receives per second (parsed, not estimated), beside the sim's own frames-sent counter;
2) orders: a raw asyncio (uvloop) WebSocket client pipelines order requests (`--window` in flight,
   many requests per socket write) and counts replies: acknowledged (success) and rejected.
   Binance `order.place` LIMIT IOC far from the market with `newOrderRespType=RESULT`, each
   request HMAC-signed, then the same after `session.logon` with the user data stream subscribed
   (what oms/ does); OKX `order` after login with the orders channel subscribed; Gate
   `spot.order_place` after `spot.login` with `spot.orders` subscribed (ack + result per order;
   the result is counted).
For each phase it prints the sim's CPU seconds and the client's, so a figure bounded by the client
or by a loaded machine is visible as such. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.parse
from typing import Any

from sim.testing import READY_PREFIX, ControlClient

SECRET = b"sim-secret"
API_KEY = "sim-key"
PASSPHRASE = "sim-pass"


def _proc_user_sys_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds (Linux /proc), zeros when unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tck, int(fields[12]) / tck
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame with a random mask, like any RFC 6455 client sends."""
    n = len(payload)
    if n < 126:
        hdr = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = random.getrandbits(32).to_bytes(4, "little")
    m = (mask * (n // 4 + 1))[:n]
    return hdr + mask + (int.from_bytes(payload, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


class WsCounter(asyncio.Protocol):
    """Client side of one WebSocket: parses server frames, counts them, hands text payloads
    to `on_message` when set (orders), answers pings."""

    def __init__(self, keep_payloads: bool) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshake = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.frames = 0
        self.bytes = 0
        self.keep = keep_payloads
        self.on_message: Any = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(True)
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        self.bytes += len(data)
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[:end + 4]
            self.upgraded = True
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.handshake.set_exception(RuntimeError(f"handshake failed: {head[:100]!r}"))
                return
            self.handshake.set_result(True)
        pos, n = 0, len(buf)
        frames = 0
        keep = self.keep
        msgs = []
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                start, ln = pos + 2, b1
            elif b1 == 126:
                if n - pos < 4:
                    break
                start, ln = pos + 4, (buf[pos + 2] << 8) | buf[pos + 3]
            else:
                if n - pos < 10:
                    break
                start, ln = pos + 10, int.from_bytes(buf[pos + 2:pos + 10], "big")
            end = start + ln
            if end > n:
                break
            op = buf[pos] & 0x0F
            if op == 0x9 and self.transport is not None:
                self.transport.write(mask_frame(bytes(buf[start:end]), 0xA))
            elif op == 0x1:
                frames += 1
                if keep:
                    msgs.append(bytes(buf[start:end]))
            pos = end
        if pos:
            del buf[:pos]
        self.frames += frames
        if msgs and self.on_message is not None:
            self.on_message(msgs)


async def ws_connect(url: str, keep_payloads: bool = False) -> WsCounter:
    u = urllib.parse.urlsplit(url)
    loop = asyncio.get_running_loop()
    _t, proto = await loop.create_connection(lambda: WsCounter(keep_payloads), u.hostname, u.port)
    key = base64.b64encode(os.urandom(16)).decode()
    path = u.path + ("?" + u.query if u.query else "")
    assert proto.transport is not None
    proto.transport.write((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
    await asyncio.wait_for(proto.handshake, 10)
    return proto


# -- market data ----------------------------------------------------------------------------------
async def bench_md(urls: dict, control: ControlClient, symbols: list[str], seconds: float, conns_per_venue: int,
                   sim_pid: int) -> dict:
    t = int(time.time())
    bsyms = "/".join(f"{s.replace('-', '').lower()}@{k}" for s in symbols for k in ("bookTicker", "trade", "depth"))
    okx_sub = json.dumps({"op": "subscribe", "args": [{"channel": ch, "instId": s} for s in symbols
                                                       for ch in ("bbo-tbt", "books", "trades")]}).encode()
    gate_subs = [json.dumps({"time": t, "channel": ch, "event": "subscribe",
                             "payload": [s.replace("-", "_") for s in symbols]}).encode()
                 for ch in ("spot.book_ticker", "spot.trades")]
    gate_subs += [json.dumps({"time": t, "channel": "spot.order_book_update", "event": "subscribe",
                              "payload": [s.replace("-", "_"), "100ms"]}).encode() for s in symbols]
    conns: list[WsCounter] = []
    for _ in range(conns_per_venue):
        conns.append(await ws_connect(urls["binance"]["stream"] + "?streams=" + bsyms))
        c = await ws_connect(urls["okx"]["ws_public"])
        c.transport.write(mask_frame(okx_sub))  # type: ignore[union-attr]
        conns.append(c)
        c = await ws_connect(urls["gate"]["ws"])
        c.transport.write(b"".join(mask_frame(m) for m in gate_subs))  # type: ignore[union-attr]
        conns.append(c)
    await asyncio.to_thread(control.set_rate, 10_000_000)
    await asyncio.sleep(1.5)  # warm up
    s0 = await asyncio.to_thread(control.stats)
    f0 = sum(c.frames for c in conns)
    b0 = sum(c.bytes for c in conns)
    us0, ccpu0 = _proc_user_sys_s(sim_pid), time.process_time()
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    t1 = time.perf_counter()
    f1 = sum(c.frames for c in conns)
    b1 = sum(c.bytes for c in conns)
    us1, ccpu1 = _proc_user_sys_s(sim_pid), time.process_time()
    cpu0, cpu1 = sum(us0), sum(us1)
    s1 = await asyncio.to_thread(control.stats)
    await asyncio.to_thread(control.set_rate, 1000)
    for c in conns:
        c.transport.close()  # type: ignore[union-attr]
    dt = t1 - t0
    sent = sum(s1["venues"][v]["frames_sent"] - s0["venues"][v]["frames_sent"] for v in s1["venues"])
    gen = s1["frames_generated"] - s0["frames_generated"]
    sim_cpu = cpu1 - cpu0
    return {"md_frames_received_per_s": round((f1 - f0) / dt), "md_frames_sent_per_s": round(sent / dt),
            "md_frames_generated_per_s": round(gen / dt), "md_mbytes_received_per_s": round((b1 - b0) / dt / 1e6, 2),
            "consumers_per_venue": conns_per_venue, "sim_cpu_s": round(sim_cpu, 2),
            "sim_sys_cpu_s": round(us1[1] - us0[1], 2),
            "sim_cpu_util": round(sim_cpu / dt, 2),
            "md_frames_sent_per_sim_cpu_s": round(sent / sim_cpu) if sim_cpu > 0 else None,
            "client_cpu_s": round(ccpu1 - ccpu0, 2), "seconds": round(dt, 2)}


# -- orders ---------------------------------------------------------------------------------------------
class OrderVenue:
    """Builds one venue's order requests and classifies its replies."""

    name = ""
    url_key = ("", "")

    def __init__(self, urls: dict) -> None:
        self.url = urls[self.url_key[0]][self.url_key[1]]
        self.venue = self.url_key[0]
        self.n = 0

    async def setup(self, c: WsCounter) -> None:
        pass

    def request(self) -> bytes:
        raise NotImplementedError

    def classify(self, msg: bytes) -> int:
        """1 acked, -1 rejected, 0 not a final order reply (push, ack-before-result, ...)."""
        raise NotImplementedError


async def _wait_for(c: WsCounter, pred: Any, timeout_s: float = 10.0) -> bytes:
    fut = asyncio.get_running_loop().create_future()

    def on_message(msgs: list[bytes]) -> None:
        for m in msgs:
            if pred(m) and not fut.done():
                fut.set_result(m)
    c.on_message = on_message
    try:
        return await asyncio.wait_for(fut, timeout_s)
    finally:
        c.on_message = None


class BinanceOrders(OrderVenue):
    url_key = ("binance", "ws_api")

    def __init__(self, urls: dict, session: bool) -> None:
        super().__init__(urls)
        self.session = session
        self.name = "binance_session_logon" if session else "binance_hmac_signed"
        self.mac = hmac.new(SECRET, digestmod=hashlib.sha256)

    async def setup(self, c: WsCounter) -> None:
        if not self.session:
            return
        p = {"apiKey": API_KEY, "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{k}={p[k]}" for k in sorted(p))
        p["signature"] = hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()
        c.transport.write(mask_frame(json.dumps({"id": "logon", "method": "session.logon",  # type: ignore[union-attr]
                                                 "params": p}).encode()))
        await _wait_for(c, lambda m: b'"logon"' in m)
        c.transport.write(mask_frame(b'{"id":"uds","method":"userDataStream.subscribe"}'))  # type: ignore[union-attr]
        await _wait_for(c, lambda m: b'"uds"' in m)

    def request(self) -> bytes:
        i = self.n = self.n + 1
        ts = time.time_ns() // 1_000_000
        if self.session:
            return (b'{"id":%d,"method":"order.place","params":{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT",'
                    b'"timeInForce":"IOC","price":"30000.00","quantity":"0.00100","newClientOrderId":"b%d",'
                    b'"newOrderRespType":"RESULT","timestamp":%d}}' % (i, i, ts))
        payload = (b"apiKey=%s&newClientOrderId=b%d&newOrderRespType=RESULT&price=30000.00&quantity=0.00100"
                   b"&side=BUY&symbol=BTCUSDT&timeInForce=IOC&timestamp=%d&type=LIMIT" % (API_KEY.encode(), i, ts))
        m = self.mac.copy()
        m.update(payload)
        return (b'{"id":%d,"method":"order.place","params":{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT",'
                b'"timeInForce":"IOC","price":"30000.00","quantity":"0.00100","newClientOrderId":"b%d",'
                b'"newOrderRespType":"RESULT","timestamp":%d,"apiKey":"%s","signature":"%s"}}'
                % (i, i, ts, API_KEY.encode(), m.hexdigest().encode()))

    def classify(self, msg: bytes) -> int:
        if msg.startswith(b'{"id":') and b'"status":' in msg[:40]:
            return 1 if b'"status":200' in msg[:40] else -1
        return 0


class OkxOrders(OrderVenue):
    name = "okx_login"
    url_key = ("okx", "ws_private")

    async def setup(self, c: WsCounter) -> None:
        ts = str(int(time.time()))
        sign = base64.b64encode(hmac.new(SECRET, (ts + "GET/users/self/verify").encode(), hashlib.sha256)
                                .digest()).decode()
        c.transport.write(mask_frame(json.dumps({"op": "login", "args": [{  # type: ignore[union-attr]
            "apiKey": API_KEY, "passphrase": PASSPHRASE, "timestamp": ts, "sign": sign}]}).encode()))
        await _wait_for(c, lambda m: b'"login"' in m)
        c.transport.write(mask_frame(b'{"id":"sub","op":"subscribe","args":[{"channel":"orders",'  # type: ignore
                                     b'"instType":"SPOT"}]}'))
        await _wait_for(c, lambda m: b'"subscribe"' in m)

    def request(self) -> bytes:
        i = self.n = self.n + 1
        return (b'{"id":"n%d","op":"order","args":[{"instIdCode":100001,"instId":"BTC-USDT","tdMode":"cash",'
                b'"side":"buy","ordType":"ioc","px":"30000","sz":"0.001","clOrdId":"o%d"}]}' % (i, i))

    def classify(self, msg: bytes) -> int:
        if msg.startswith(b'{"id":"n'):
            return 1 if b'"code":"0"' in msg else -1
        return 0


class GateOrders(OrderVenue):
    name = "gate_login"
    url_key = ("gate", "ws")

    async def setup(self, c: WsCounter) -> None:
        ts = str(int(time.time()))
        sig = hmac.new(SECRET, f"api\nspot.login\n\n{ts}".encode(), hashlib.sha512).hexdigest()
        c.transport.write(mask_frame(json.dumps({"time": int(ts), "channel": "spot.login",  # type: ignore
                                                 "event": "api", "payload": {"api_key": API_KEY, "timestamp": ts,
                                                                             "req_id": "login",
                                                                             "signature": sig}}).encode()))
        await _wait_for(c, lambda m: b'"login"' in m)
        t = int(time.time())
        sign = hmac.new(SECRET, f"channel=spot.orders&event=subscribe&time={t}".encode(), hashlib.sha512).hexdigest()
        c.transport.write(mask_frame(json.dumps({"time": t, "id": 9, "channel": "spot.orders",  # type: ignore
                                                 "event": "subscribe", "payload": ["!all"],
                                                 "auth": {"method": "api_key", "KEY": API_KEY,
                                                          "SIGN": sign}}).encode()))
        await _wait_for(c, lambda m: b'"subscribe"' in m)

    def request(self) -> bytes:
        i = self.n = self.n + 1
        return (b'{"time":%d,"channel":"spot.order_place","event":"api","payload":{"req_id":"n%d",'
                b'"req_param":{"text":"t-b%d","currency_pair":"BTC_USDT","type":"limit","account":"spot",'
                b'"side":"buy","amount":"0.001","price":"30000","time_in_force":"ioc"}}}'
                % (int(time.time()), i, i))

    def classify(self, msg: bytes) -> int:
        if msg.startswith(b'{"request_id":"n'):
            if b'"ack":true' in msg[:60]:
                return 0
            return -1 if b'"errs"' in msg else 1
        return 0


async def bench_orders(v: OrderVenue, seconds: float, window: int, batch: int, sim_pid: int,
                       control: ControlClient) -> dict:
    c = await ws_connect(v.url, keep_payloads=True)
    await v.setup(c)
    counts = [0, 0, 0]  # acked, rejected, other messages (pushes, acks before results)
    wake = asyncio.Event()
    classify = v.classify

    def on_message(msgs: list[bytes]) -> None:
        for m in msgs:
            k = classify(m)
            if k > 0:
                counts[0] += 1
            elif k < 0:
                counts[1] += 1
            else:
                counts[2] += 1
        wake.set()
    c.on_message = on_message
    assert c.transport is not None
    write = c.transport.write
    sent = 0
    t_end = time.perf_counter() + seconds
    s0 = (await asyncio.to_thread(control.stats))["venues"][v.venue]
    us0, ccpu0 = _proc_user_sys_s(sim_pid), time.process_time()
    t0 = time.perf_counter()
    while time.perf_counter() < t_end:
        room = window - (sent - counts[0] - counts[1])
        if room >= batch or sent == 0:
            k = min(room, window)
            write(b"".join([mask_frame(v.request()) for _ in range(k)]))
            sent += k
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), 1.0)
        except TimeoutError:
            pass
    t1 = time.perf_counter()
    acked_in_window, replies_in_window = counts[0], counts[0] + counts[1]
    # let the replies in flight land (not counted in the rate)
    deadline = time.perf_counter() + 5
    while counts[0] + counts[1] < sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    us1, ccpu1 = _proc_user_sys_s(sim_pid), time.process_time()
    cpu0, cpu1 = sum(us0), sum(us1)
    s1 = (await asyncio.to_thread(control.stats))["venues"][v.venue]
    reads = s1.get("reads", 0) - s0.get("reads", 0)  # absent from an older sim (--sim-root)
    c.transport.close()
    dt = t1 - t0
    total = counts[0] + counts[1]
    return {"orders_acked_per_s": round(acked_in_window / dt), "replies_per_s": round(replies_in_window / dt),
            "orders_sent": sent, "acked": counts[0], "rejected": counts[1],
            "unanswered": sent - total, "success_rate": round(counts[0] / sent, 5) if sent else None,
            "other_messages": counts[2], "sim_cpu_s": round(cpu1 - cpu0, 2),
            "sim_sys_cpu_s": round(us1[1] - us0[1], 2),
            "sim_messages_per_read": round((s1["messages_received"] - s0["messages_received"]) / reads, 1)
            if reads else None,
            "orders_answered_per_sim_cpu_s": round(total / (cpu1 - cpu0)) if cpu1 > cpu0 else None,
            "client_cpu_s": round(ccpu1 - ccpu0, 2), "seconds": round(dt, 2), "window": window}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.bench")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase")
    ap.add_argument("--sim-cpu", default="0", help="CPU the simulator is pinned to (taskset)")
    ap.add_argument("--client-cpu", default="1", help="CPU this client is pinned to")
    ap.add_argument("--window", type=int, default=512, help="orders in flight")
    ap.add_argument("--batch", type=int, default=64, help="refill the window once this many replies are in")
    ap.add_argument("--md-conns", type=int, default=1, help="market-data consumers per venue")
    ap.add_argument("--symbols", default="BTC-USDT,ETH-USDT")
    ap.add_argument("--phases", default="md,binance_hmac,binance_session,okx,gate",
                    help="comma-separated subset of md,binance_hmac,binance_session,okx,gate")
    ap.add_argument("--profile", help="run the sim under cProfile and write its stats to this file")
    ap.add_argument("--sim-root", help=argparse.SUPPRESS)  # run another checkout's sim (before/after)
    args = ap.parse_args()
    symbols = [s for s in args.symbols.split(",") if s]
    phases = [p for p in args.phases.split(",") if p]
    prof = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    cmd = [sys.executable, *prof, "-m", "sim", "--port-base", "0", "--symbols", ",".join(symbols), "--rate", "1000"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", args.sim_cpu] + cmd
        try:
            os.sched_setaffinity(0, {int(args.client_cpu)})
        except (AttributeError, OSError, ValueError):
            pass
    root = args.sim_root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root, env=env)
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
        out: dict[str, Any] = {"load_avg_before": _loadavg()}
        if "md" in phases:
            out["market_data"] = asyncio.run(bench_md(urls, control, symbols, args.seconds, args.md_conns, proc.pid))
        venues = {"binance_hmac": lambda: BinanceOrders(urls, False),
                  "binance_session": lambda: BinanceOrders(urls, True),
                  "okx": lambda: OkxOrders(urls), "gate": lambda: GateOrders(urls)}
        for p in phases:
            if p in venues:
                v = venues[p]()
                out["orders_" + v.name] = asyncio.run(bench_orders(v, args.seconds, args.window, args.batch,
                                                                   proc.pid, control))
                control.reset()
        out.update({"load_avg_after": _loadavg(), "sim_cpu": args.sim_cpu, "client_cpu": args.client_cpu,
                    "cpu_model": _cpu_model(), "cores": os.cpu_count()})
        print(json.dumps(out, indent=2))
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    sys.exit(main())
