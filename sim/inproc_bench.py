"""Simulator cost without sockets: the real Conn, venue and engine code behind a recording transport.

Run as a script so that ROOT picks the tree measured (before/after a change):
  python sim/inproc_bench.py ROOT cpu [REPS N]      CPU per order for each scenario (N pipelined
                                                    requests, 256 per read, min of REPS) and per md frame
  python sim/inproc_bench.py ROOT mdcpu REPS        md CPU per frame sent after a 20,000-step warm-up
  python sim/inproc_bench.py ROOT bytes OUT         frozen clock: md steps and ~600 order-entry requests
                                                    on the three venues; every byte the sim writes -> OUT
                                                    (compare two trees' OUT files byte for byte)
  python sim/inproc_bench.py ROOT loop SCEN N       N orders of one scenario; `loopgen` only builds them
  python sim/inproc_bench.py ROOT mdloop N          N market steps with one consumer per venue
  python sim/inproc_bench.py ROOT prof SCEN|md N    cProfile of the same
Scenarios: binance_hmac, binance_session, okx, gate (what `python -m sim.bench` sends). Instructions
per order, independent of the machine's load:
  valgrind --tool=callgrind --callgrind-out-file=/dev/null python sim/inproc_bench.py ROOT loop SCEN 4096
minus the same with `loopgen`, divided by 4096. A timing here is reported, never asserted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import random
import struct
import sys
import time

ROOT = sys.argv[1]
sys.path.insert(0, ROOT)
MODE = sys.argv[2]

FROZEN = MODE == "bytes"  # a fixed clock (1 ms a call) makes the written bytes repeatable
if FROZEN:
    _T = [1_780_000_000_000_000_000]
    _M = [5_000_000_000]

    def _time_ns() -> int:
        _T[0] += 1_000_000  # 1 ms a call
        return _T[0]

    def _time() -> float:
        return _time_ns() / 1e9

    def _mono_ns() -> int:
        _M[0] += 1000
        return _M[0]

    time.time_ns = _time_ns
    time.time = _time
    time.monotonic_ns = _mono_ns

from sim import SimConfig, Simulator  # noqa: E402
from sim.server import Conn, Server  # noqa: E402

SECRET = b"sim-secret"
rng = random.Random(7)


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        hdr = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = rng.getrandbits(32).to_bytes(4, "little")
    m = (mask * (n // 4 + 1))[:n]
    return hdr + mask + (int.from_bytes(payload, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.n = 0
        self.keep = FROZEN
        self.closing = False

    def write(self, data: bytes) -> None:
        self.n += len(data)
        if self.keep:
            self.out.append(bytes(data))

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def open_conn(srv: Server, path: str) -> tuple[Conn, FakeTransport]:
    c = Conn(srv)
    t = FakeTransport()
    c.connection_made(t)
    c.data_received((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert c.ws is not None, path
    return c, t


def send(c: Conn, *msgs: bytes) -> None:
    c.data_received(b"".join(mask_frame(m) for m in msgs))


def build() -> tuple[Simulator, dict[str, Server]]:
    sim = Simulator(SimConfig(symbols=["BTC-USDT", "ETH-USDT"], seed=1, port_base=0))
    sim.loop = asyncio.get_event_loop()
    srvs = {}
    for name, app in sim.venues.items():
        srv = Server(app, "127.0.0.1", 0)
        srv.loop = sim.loop
        app.server = srv
        sim.servers[name] = srv
        srvs[name] = srv
    return sim, srvs


# -- order request builders ------------------------------------------------------------
def bin_signed(i: int, price: str = "30000.00", qty: str = "0.00100", tif: str = "IOC", side: str = "BUY",
               typ: str = "LIMIT", resp: str = "RESULT") -> bytes:
    ts = time.time_ns() // 1_000_000
    tif_part = f"&timeInForce={tif}" if typ == "LIMIT" else ""
    payload = (f"apiKey=sim-key&newClientOrderId=b{i}&newOrderRespType={resp}&price={price}&quantity={qty}"
               f"&side={side}&symbol=BTCUSDT{tif_part}&timestamp={ts}&type={typ}")
    sig = hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()
    tif_j = f'"timeInForce":"{tif}",' if typ == "LIMIT" else ""
    return (f'{{"id":{i},"method":"order.place","params":{{"symbol":"BTCUSDT","side":"{side}","type":"{typ}",'
            f'{tif_j}"price":"{price}","quantity":"{qty}","newClientOrderId":"b{i}",'
            f'"newOrderRespType":"{resp}","timestamp":{ts},"apiKey":"sim-key","signature":"{sig}"}}}}').encode()


def bin_session(i: int, price: str = "30000.00", qty: str = "0.00100", tif: str = "IOC", side: str = "BUY",
                typ: str = "LIMIT", resp: str = "RESULT") -> bytes:
    ts = time.time_ns() // 1_000_000
    tif_j = f'"timeInForce":"{tif}",' if typ == "LIMIT" else ""
    return (f'{{"id":{i},"method":"order.place","params":{{"symbol":"BTCUSDT","side":"{side}","type":"{typ}",'
            f'{tif_j}"price":"{price}","quantity":"{qty}","newClientOrderId":"b{i}",'
            f'"newOrderRespType":"{resp}","timestamp":{ts}}}}}').encode()


def bin_cancel(i: int, cid: str) -> bytes:
    ts = time.time_ns() // 1_000_000
    return (f'{{"id":"c{i}","method":"order.cancel","params":{{"symbol":"BTCUSDT","origClientOrderId":"{cid}",'
            f'"timestamp":{ts}}}}}').encode()


def okx_order(i: int, px: str = "30000", sz: str = "0.001", typ: str = "ioc", side: str = "buy") -> bytes:
    return (f'{{"id":"n{i}","op":"order","args":[{{"instIdCode":100001,"instId":"BTC-USDT","tdMode":"cash",'
            f'"side":"{side}","ordType":"{typ}","px":"{px}","sz":"{sz}","clOrdId":"o{i}"}}]}}').encode()


def okx_cancel(i: int, cl: str) -> bytes:
    return (f'{{"id":"c{i}","op":"cancel-order","args":[{{"instIdCode":100001,"instId":"BTC-USDT",'
            f'"clOrdId":"{cl}"}}]}}').encode()


def okx_amend(i: int, cl: str, px: str) -> bytes:
    return (f'{{"id":"a{i}","op":"amend-order","args":[{{"instIdCode":100001,"instId":"BTC-USDT",'
            f'"clOrdId":"{cl}","newPx":"{px}"}}]}}').encode()


def gate_order(i: int, price: str = "30000", amount: str = "0.001", tif: str = "ioc", side: str = "buy") -> bytes:
    return (f'{{"time":{int(time.time())},"channel":"spot.order_place","event":"api","payload":{{"req_id":"n{i}",'
            f'"req_param":{{"text":"t-b{i}","currency_pair":"BTC_USDT","type":"limit","account":"spot",'
            f'"side":"{side}","amount":"{amount}","price":"{price}","time_in_force":"{tif}"}}}}}}').encode()


def gate_cancel(i: int, text: str) -> bytes:
    return (f'{{"time":{int(time.time())},"channel":"spot.order_cancel","event":"api","payload":{{"req_id":"c{i}",'
            f'"req_param":{{"order_id":"{text}","currency_pair":"BTC_USDT"}}}}}}').encode()


def gate_amend(i: int, text: str, price: str) -> bytes:
    return (f'{{"time":{int(time.time())},"channel":"spot.order_amend","event":"api","payload":{{"req_id":"a{i}",'
            f'"req_param":{{"order_id":"{text}","currency_pair":"BTC_USDT","price":"{price}"}}}}}}').encode()


# -- session setup ---------------------------------------------------------------------------
def setup_binance(srvs, session: bool):
    c, t = open_conn(srvs["binance"], "/ws-api/v3")
    if session:
        ts = time.time_ns() // 1_000_000
        payload = f"apiKey=sim-key&timestamp={ts}"
        sig = hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()
        send(c, (f'{{"id":"logon","method":"session.logon","params":{{"apiKey":"sim-key","timestamp":{ts},'
                 f'"signature":"{sig}"}}}}').encode())
        send(c, b'{"id":"uds","method":"userDataStream.subscribe"}')
    return c, t


def setup_okx(srvs):
    c, t = open_conn(srvs["okx"], "/ws/v5/private")
    ts = str(int(time.time()))
    sign = base64.b64encode(hmac.new(SECRET, (ts + "GET/users/self/verify").encode(), hashlib.sha256)
                            .digest()).decode()
    send(c, (f'{{"op":"login","args":[{{"apiKey":"sim-key","passphrase":"sim-pass","timestamp":"{ts}",'
             f'"sign":"{sign}"}}]}}').encode())
    send(c, b'{"id":"sub","op":"subscribe","args":[{"channel":"orders","instType":"SPOT"}]}')
    return c, t


def setup_gate(srvs):
    c, t = open_conn(srvs["gate"], "/ws/v4/")
    ts = str(int(time.time()))
    sig = hmac.new(SECRET, f"api\nspot.login\n\n{ts}".encode(), hashlib.sha512).hexdigest()
    send(c, (f'{{"time":{ts},"channel":"spot.login","event":"api","payload":{{"api_key":"sim-key",'
             f'"timestamp":"{ts}","req_id":"login","signature":"{sig}"}}}}').encode())
    tt = int(time.time())
    sign = hmac.new(SECRET, f"channel=spot.orders&event=subscribe&time={tt}".encode(), hashlib.sha512).hexdigest()
    send(c, (f'{{"time":{tt},"id":9,"channel":"spot.orders","event":"subscribe","payload":["!all"],'
             f'"auth":{{"method":"api_key","KEY":"sim-key","SIGN":"{sign}"}}}}').encode())
    tt = int(time.time())
    sign = hmac.new(SECRET, f"channel=spot.usertrades&event=subscribe&time={tt}".encode(),
                    hashlib.sha512).hexdigest()
    send(c, (f'{{"time":{tt},"id":10,"channel":"spot.usertrades","event":"subscribe","payload":["!all"],'
             f'"auth":{{"method":"api_key","KEY":"sim-key","SIGN":"{sign}"}}}}').encode())
    return c, t


def md_conns(srvs, symbols, raw=True):
    bs = "/".join(f"{s.replace('-', '').lower()}@{k}" for s in symbols for k in ("bookTicker", "trade", "depth"))
    cb, tb = open_conn(srvs["binance"], "/stream?streams=" + bs)
    extra = []
    if raw:
        extra = [open_conn(srvs["binance"], "/ws/btcusdt@depth/btcusdt@bookTicker/btcusdt@trade/btcusdt@aggTrade")]
    co, to = open_conn(srvs["okx"], "/ws/v5/public")
    args = ",".join(f'{{"channel":"{ch}","instId":"{s}"}}' for s in symbols for ch in ("bbo-tbt", "books", "trades"))
    send(co, f'{{"op":"subscribe","args":[{args}]}}'.encode())
    cg, tg = open_conn(srvs["gate"], "/ws/v4/")
    t = int(time.time())
    for ch in ("spot.book_ticker", "spot.trades"):
        pl = ",".join(f'"{s.replace("-", "_")}"' for s in symbols)
        send(cg, f'{{"time":{t},"channel":"{ch}","event":"subscribe","payload":[{pl}]}}'.encode())
    for s in symbols:
        send(cg, f'{{"time":{t},"channel":"spot.order_book_update","event":"subscribe","payload":["{s.replace("-", "_")}","100ms"]}}'.encode())
    return [(cb, tb), *extra, (co, to), (cg, tg)]


SCEN = {
    "binance_hmac": (lambda srvs: setup_binance(srvs, False), bin_signed),
    "binance_session": (lambda srvs: setup_binance(srvs, True), bin_session),
    "okx": (setup_okx, okx_order),
    "gate": (setup_gate, gate_order),
}


def run_orders(sim, srvs, scen: str, n: int, per_read: int = 256) -> float:
    setup, req = SCEN[scen]
    c, t = setup(srvs)
    # warm the lean paths
    send(c, *[req(i) for i in range(8)])
    base = 1000
    reqs = [mask_frame(req(base + i)) for i in range(n)]
    chunks = [b"".join(reqs[i:i + per_read]) for i in range(0, n, per_read)]
    t0 = time.thread_time()
    for ch in chunks:
        c.data_received(ch)
    dt = time.thread_time() - t0
    sim.reset()
    return dt / n


async def md_steps(sim, n: int) -> int:
    syms = list(sim.market.symbols.values())
    frames = 0
    for i in range(n):
        frames += sim._step_symbol(syms[i % len(syms)], None)
        if i % 8 == 7:
            sim._flush_venue_events()
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    return frames


def main() -> None:
    if os.environ.get("NOGC"):
        import gc
        gc.disable()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if MODE == "cpu":
        reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
        n = int(sys.argv[4]) if len(sys.argv) > 4 else 4096
        sim, srvs = build()
        res = {}
        for scen in SCEN:
            best = min(run_orders(sim, srvs, scen, n) for _ in range(reps))
            res[scen] = best * 1e6
        sim2, srvs2 = build()
        md_conns(srvs2, list(sim2.market.symbols), raw=False)
        loop.run_until_complete(md_steps(sim2, 500))
        best_md = 1e9
        for _ in range(reps):
            f0 = sum(s.frames_out for s in srvs2.values())
            t0 = time.thread_time()
            loop.run_until_complete(md_steps(sim2, 2000))
            dt = time.thread_time() - t0
            f1 = sum(s.frames_out for s in srvs2.values())
            best_md = min(best_md, dt / (f1 - f0))
        gen_frames = sim2.frames_generated
        print(" ".join(f"{k}={v:.1f}us" for k, v in res.items()),
              f"md={best_md * 1e6:.2f}us/frame-sent ({1 / best_md:,.0f} frames sent per CPU-s) gen={gen_frames}")
    elif MODE == "mdcpu":
        reps = int(sys.argv[3])
        sim2, srvs2 = build()
        md_conns(srvs2, list(sim2.market.symbols), raw=False)
        loop.run_until_complete(md_steps(sim2, 20000))
        best_md = 1e9
        for _ in range(reps):
            f0 = sum(s.frames_out for s in srvs2.values())
            t0 = time.thread_time()
            loop.run_until_complete(md_steps(sim2, 1000))
            dt = time.thread_time() - t0
            f1 = sum(s.frames_out for s in srvs2.values())
            best_md = min(best_md, dt / (f1 - f0))
        print(f"md warm {best_md * 1e6:.2f} us/frame-sent ({1 / best_md:,.0f} frames sent per CPU-s)")
    elif MODE == "loopgen":
        scen, n = sys.argv[3], int(sys.argv[4])
        sim, srvs = build()
        setup, req = SCEN[scen]
        reqs = [mask_frame(req(1000 + i)) for i in range(n)]
        _chunks = [b"".join(reqs[i:i + 256]) for i in range(0, n, 256)]  # the client's share of `loop`
    elif MODE == "loop":
        scen, n = sys.argv[3], int(sys.argv[4])
        sim, srvs = build()
        run_orders(sim, srvs, scen, n)
    elif MODE == "prof":
        import cProfile
        import pstats
        what, n = sys.argv[3], int(sys.argv[4])
        sim, srvs = build()
        pr = cProfile.Profile()
        if what == "md":
            md_conns(srvs, list(sim.market.symbols), raw=False)
            loop.run_until_complete(md_steps(sim, int(os.environ.get("WARM", "200"))))
            pr.enable()
            loop.run_until_complete(md_steps(sim, n))
            pr.disable()
        else:
            pr.enable()
            run_orders(sim, srvs, what, n)
            pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(35)
    elif MODE == "mdloop":
        n = int(sys.argv[3])
        sim, srvs = build()
        md_conns(srvs, list(sim.market.symbols), raw=False)
        loop.run_until_complete(md_steps(sim, n))
        print("frames", sum(s.frames_out for s in srvs.values()))
    elif MODE == "bytes":
        out = sys.argv[3]
        sim, srvs = build()
        conns = md_conns(srvs, list(sim.market.symbols))
        loop.run_until_complete(md_steps(sim, 400))
        bh, _ = setup_binance(srvs, False)
        bs, _ = setup_binance(srvs, True)
        ok, _ = setup_okx(srvs)
        gt, _ = setup_gate(srvs)
        conns += [(bh, bh.transport), (bs, bs.transport), (ok, ok.transport), (gt, gt.transport)]
        bk = sim.market.symbols["BTC-USDT"].books
        i = 0
        for _round in range(6):
            bbo = {v: (bk[v].best_bid(), bk[v].best_ask()) for v in bk}
            bi = sim.venues["binance"].instruments["BTC-USDT"]
            oi = sim.venues["okx"].instruments["BTC-USDT"]
            gi = sim.venues["gate"].instruments["BTC-USDT"]
            bbid, bask = bi.px(bbo["binance"][0]), bi.px(bbo["binance"][1])
            obid, oask = oi.px(bbo["okx"][0]), oi.px(bbo["okx"][1])
            gbid, gask = gi.px(bbo["gate"][0]), gi.px(bbo["gate"][1])
            for c, req in ((bh, bin_signed), (bs, bin_session)):
                reqs = [req(i + 1), req(i + 2, price=bask, tif="IOC", qty="0.01000"),
                        req(i + 3, price=bbid, tif="GTC"), req(i + 4, price=bbid, tif="GTC", resp="FULL"),
                        req(i + 5, price=bask, typ="LIMIT_MAKER"), req(i + 6, price=bask, tif="FOK", qty="500.00000"),
                        req(i + 7, price="30000.001"), req(i + 8, side="SELL", price=bbid, qty="0.02000", resp="FULL"),
                        req(i + 9, price=bbid, tif="GTC", resp="ACK"), req(i + 10, qty="99999.00000", tif="GTC")]
                send(c, *reqs)
                send(c, bin_cancel(i, f"b{i + 3}"), bin_cancel(i + 1, f"b{i + 1}"))
                i += 20
            send(ok, okx_order(i), okx_order(i + 1, px=oask, sz="0.01"), okx_order(i + 2, px=obid, typ="limit"),
                 okx_order(i + 3, px=oask, typ="post_only"), okx_order(i + 4, px=oask, typ="fok", sz="500"),
                 okx_order(i + 5, px=obid, typ="limit", side="sell", sz="0.02"), okx_order(i + 6, px="30000.05"),
                 okx_order(i + 7, px=obid, typ="limit"))
            send(ok, okx_cancel(i, f"o{i + 2}"), okx_cancel(i + 1, f"o{i}"), okx_amend(i, f"o{i + 7}", oask))
            i += 20
            send(gt, gate_order(i), gate_order(i + 1, price=gask, amount="0.01"),
                 gate_order(i + 2, price=gbid, tif="gtc"), gate_order(i + 3, price=gask, tif="poc"),
                 gate_order(i + 4, price=gask, tif="fok", amount="500"),
                 gate_order(i + 5, price=gbid, tif="gtc", side="sell", amount="0.02"),
                 gate_order(i + 6, price="30000.05"), gate_order(i + 7, price=gbid, tif="gtc"))
            send(gt, gate_cancel(i, f"t-b{i + 2}"), gate_cancel(i + 1, f"t-b{i}"), gate_amend(i, f"t-b{i + 7}", gask))
            i += 20
            loop.run_until_complete(md_steps(sim, 200))
        with open(out, "wb") as f:
            for c, t in conns:
                data = b"".join(t.out)
                cid = getattr(c.ws, "conn_id", None) if c.ws else None
                if cid:
                    data = data.replace(cid.encode(), b"CONNID")
                f.write(len(data).to_bytes(8, "little"))
                f.write(data)
        print("bytes", out, sum(len(b"".join(t.out)) for _, t in conns))


main()
