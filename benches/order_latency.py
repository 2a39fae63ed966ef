"""Order-to-ack latency and acknowledged orders/s against the simulator, per venue.

    .venv/bin/python -m benches.order_latency [--n 3000] [--burst 30000] [--window 256]
                                              [--venues binance,okx,gate] [--png order_latency.png]

Latency: ping-pong, one order in flight; each ack (listener callback) submits the next order, so
the figure is send -> ack measured with perf_counter_ns inside the OMS (uvloop). Orders are
far-from-market IOC buys: the venue answers at once (EXPIRED) and nothing piles up on its book.
Throughput: a window of orders in flight on one connection per venue, refilled from the ack
callback, until `--burst` orders have been answered; success = acknowledged / sent.
Baseline, same run, same simulator: a naive asyncio client (stdlib loop, a params dict +
json.dumps + fresh hmac.new per order, a Future per request, json.loads per reply) over the same
picows transport, Binance order.place, one order in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import sys
import time

import numpy as np

from common.config import load
from common.enums import Exchange, OrderSide, OrderState
from common.instruments import Instruments
from oms import OrderManager, OrderRequest, Symbol, apply_sim_urls
from oms.state import EventKind

S = OrderState


SIM_PID = [0]


def proc_cpu_s(pid: int) -> float:
    """user+system CPU seconds of another process (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pct(a_us: np.ndarray) -> dict:
    return {"n": int(a_us.size), "p50": float(np.percentile(a_us, 50)), "p90": float(np.percentile(a_us, 90)),
            "p99": float(np.percentile(a_us, 99)), "p99.9": float(np.percentile(a_us, 99.9)),
            "max": float(a_us.max())}


async def run_phases(om, v: Exchange, px: float, n: int, burst: int, window: int) -> dict:
    """Ping-pong latency, then a window of orders in flight; far-from-market IOC buys at `px`."""
    sym = Symbol("BTC", "USDT", v)

    def req(sym=sym, px=px):
        return OrderRequest.new_limit(sym, OrderSide.BUY, 0.001, px, ioc=True)

    # -- latency: ping-pong ----------------------------------------------------------
    done = asyncio.get_running_loop().create_future()
    state = {"left": n, "warm": 200}
    lat: list[int] = []

    def on_event(e, state=state, lat=lat, done=done, req=req, v=v):
        o = e.order
        if o.venue != v or e.kind not in (EventKind.ACK, EventKind.EXPIRED, EventKind.CANCELED, EventKind.REJECT):
            return
        if o.event_seq != 2:  # the first venue answer only (seq 1 is the PENDING record)
            return
        if state["warm"] > 0:
            state["warm"] -= 1
        else:
            lat.append(o.acked_ns - o.sent_ns)
            state["left"] -= 1
        if state["left"] <= 0:
            if not done.done():
                done.set_result(True)
            return
        if not om.submit(req()):
            done.set_exception(RuntimeError(om.last_reject_reason))

    om.listeners[:] = [on_event]
    om.submit(req())
    await asyncio.wait_for(done, 300)
    a = np.array(lat, dtype=np.float64) / 1000.0
    res = {"latency_us": pct(a)}
    # -- throughput: a window in flight on one connection -------------------------------
    done2 = asyncio.get_running_loop().create_future()
    st = {"sent": 0, "answered": 0, "acked": 0, "rejected": 0}

    def on_event2(e, st=st, done2=done2, req=req, v=v):
        o = e.order
        if o.venue != v or o.event_seq != 2 or e.kind == EventKind.PENDING:
            return
        st["answered"] += 1
        if o.state == S.REJECTED or e.kind == EventKind.UNKNOWN:
            st["rejected"] += 1
        else:
            st["acked"] += 1
        if st["sent"] < burst:
            if om.submit(req()):
                st["sent"] += 1
        if st["answered"] >= st["sent"] and not done2.done():
            done2.set_result(True)

    om.listeners[:] = [on_event2]
    sim_cpu0, cpu0, t_os0 = proc_cpu_s(SIM_PID[0]), time.process_time(), os.times()
    t0 = time.perf_counter()
    for _ in range(min(window, burst)):
        if om.submit(req()):
            st["sent"] += 1
    try:
        await asyncio.wait_for(done2, 300)
    except TimeoutError:
        pass
    dt = time.perf_counter() - t0
    cpu_s, sim_cpu_s = time.process_time() - cpu0, proc_cpu_s(SIM_PID[0]) - sim_cpu0
    t_os1 = os.times()
    res["throughput"] = {"client_cpu_us_per_order": cpu_s / max(st["answered"], 1) * 1e6,
                         "client_user_us_per_order": (t_os1.user - t_os0.user) / max(st["answered"], 1) * 1e6,
                         "client_sys_us_per_order": (t_os1.system - t_os0.system) / max(st["answered"], 1) * 1e6,
                         "sim_cpu_us_per_order": sim_cpu_s / max(st["answered"], 1) * 1e6,
                         "sent": st["sent"], "acked": st["acked"], "rejected": st["rejected"],
                         "unanswered": st["sent"] - st["answered"], "seconds": dt,
                         "acked_per_s": st["acked"] / dt, "success": st["acked"] / max(st["sent"], 1)}
    om.listeners.clear()
    om.orders.clear()  # keep the benchmark's memory flat between venues
    om._by_vid.clear()
    return res


async def ours(urls: dict, venues: list[Exchange], n: int, burst: int, window: int, book: dict) -> dict:
    cfg = load(text="")
    apply_sim_urls(cfg, urls)
    for v in cfg.exchanges.values():
        v.order_rate, v.order_burst, v.cancel_rate, v.cancel_burst = 1e9, 10**9, 1e9, 10**9
    om = OrderManager(cfg, Instruments(["BTC-USDT"]), deadman_timeout_s=0)
    await om.start(venues)
    import gc

    gc.collect()
    gc.freeze()
    out = {}
    for v in venues:
        # far below the market: an IOC buy expires at once and nothing piles up on the book
        out[v.key] = await run_phases(om, v, book[v.key] * 0.8, n, burst, window)
    gc.unfreeze()
    await om.stop(cancel_all=False)
    return out


async def baseline(urls: dict, n: int, px: float) -> dict:
    """Naive client: what a straightforward asyncio bot does per order."""
    from picows import WSListener, WSMsgType, ws_connect

    pending: dict[str, asyncio.Future] = {}

    class L(WSListener):
        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.TEXT:
                m = json.loads(frame.get_payload_as_utf8_text())
                f = pending.pop(str(m.get("id")), None)
                if f is not None and not f.done():
                    f.set_result(m)

    transport, _ = await ws_connect(L, urls["binance"]["ws_api"])
    lat = []
    for i in range(n + 200):
        cl = f"base{os.getpid()}x{i}"
        params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                  "price": f"{px:.2f}", "quantity": "0.00100", "newClientOrderId": cl,
                  "newOrderRespType": "RESULT", "apiKey": "sim-key", "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(b"sim-secret", payload.encode(), hashlib.sha256).hexdigest()
        fut = asyncio.get_running_loop().create_future()
        pending["n" + cl] = fut
        t0 = time.perf_counter_ns()
        transport.send(WSMsgType.TEXT, json.dumps({"id": "n" + cl, "method": "order.place", "params": params}).encode())
        m = await fut
        t1 = time.perf_counter_ns()
        if m.get("status") != 200:
            raise RuntimeError(f"baseline order refused: {m}")
        if i >= 200:
            lat.append(t1 - t0)
    transport.disconnect()
    return {"latency_us": pct(np.array(lat, dtype=np.float64) / 1000.0)}


ECHO_ACK = (b'{"id":"%s","op":"order","code":"0","msg":"","data":[{"ordId":"%d","clOrdId":"%s","tag":"",'
            b'"ts":"0","sCode":"0","sMsg":""}],"inTime":"0","outTime":"0"}')


async def serve_echo() -> None:
    """A venue that does no work: answers OKX login/subscribe, and each order with a canned ack.
    Measures the OMS and the loopback transport alone (the floor under the simulator figures)."""
    import orjson
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        n = 0

        def on_ws_frame(self, transport, frame):
            if frame.msg_type != WSMsgType.TEXT:
                return
            data = frame.get_payload_as_bytes()
            if data == b"ping":
                transport.send(WSMsgType.TEXT, b"pong")
                return
            m = orjson.loads(data)
            op = m.get("op")
            if op == "order":
                Echo.n += 1
                rid = m["id"].encode()
                transport.send(WSMsgType.TEXT, ECHO_ACK % (rid, Echo.n, m["args"][0]["clOrdId"].encode()))
            elif op == "login":
                transport.send(WSMsgType.TEXT, b'{"event":"login","code":"0","msg":"","connId":"echo"}')
            elif op == "subscribe":
                transport.send(WSMsgType.TEXT, b'{"id":"sub","event":"subscribe","arg":{"channel":"orders"}}')

    server = await ws_create_server(lambda _req: Echo(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ECHO {port}", flush=True)
    await asyncio.Event().wait()


async def ours_echo(url: str, n: int, burst: int, window: int) -> dict:
    """OKX gateway + OrderManager against the echo venue (no REST: rules set by hand)."""
    from oms import manager as mgr
    from oms.ratelimit import TokenBucket

    cfg = load(text="")
    vc = cfg.venue("okx")
    vc.ws_api_url, vc.rest_url = url, ""
    ins = Instruments(["BTC-USDT"])
    ins.add(Exchange.OKX, "BTC-USDT", tick_size=0.1, lot_size=0.00000001, venue_code=10001)
    om = OrderManager(cfg, ins, deadman_timeout_s=0)
    gw = mgr.gateway_class(Exchange.OKX)(vc, ins, om, ["BTC-USDT"])
    gw.codes["BTC-USDT"] = 10001
    await gw.connect()
    st = mgr._VenueState(gw, TokenBucket(1e12, 1e12), TokenBucket(1e12, 1e12))
    st.ready = True
    om._venues[Exchange.OKX] = st
    res = await run_phases(om, Exchange.OKX, 60000.0, n, burst, window)
    await gw.close()
    return res


def run_echo(a) -> dict:
    import subprocess

    import uvloop

    proc = subprocess.Popen([sys.executable, "-m", "benches.order_latency", "--serve-echo"], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("ECHO "):
            raise RuntimeError(f"echo venue did not start: {line!r}")
        SIM_PID[0] = proc.pid
        if a.pin and (os.cpu_count() or 1) >= 2:
            try:
                for t in os.listdir(f"/proc/{proc.pid}/task"):
                    os.sched_setaffinity(int(t), {0})
                os.sched_setaffinity(0, {1})
            except OSError:
                pass
        return uvloop.run(ours_echo(f"ws://127.0.0.1:{line.split()[1]}/ws/v5/private", a.n, a.burst, a.window))
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.order_latency", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="ping-pong orders per venue (default 3000)")
    ap.add_argument("--burst", type=int, default=30000, help="orders per venue in the throughput run")
    ap.add_argument("--window", type=int, default=256, help="orders in flight in the throughput run")
    ap.add_argument("--venues", default="binance,okx,gate")
    ap.add_argument("--png", default="", help="write a latency histogram PNG here")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the sim and the client to CPUs")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    ap.add_argument("--echo", action="store_true",
                    help="also run against a venue that does no work (OKX protocol): the OMS + transport floor")
    ap.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_echo:
        import uvloop

        uvloop.run(serve_echo())
        return 0
    try:
        venues = [Exchange.from_name(x) for x in a.venues.split(",") if x]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.n < 1 or a.burst < 1 or a.window < 1:
        print("error: --n, --burst and --window must be positive", file=sys.stderr)
        return 2
    import uvloop

    from sim.testing import run_sim

    with run_sim(symbols=["BTC-USDT"], seed=3, rate=100) as s:
        SIM_PID[0] = s.proc.pid if s.proc is not None else 0
        pinned = ""
        if a.pin and (os.cpu_count() or 1) >= 2 and SIM_PID[0]:
            try:  # simulator on CPU 0, this client on CPU 1 (as sim.bench does)
                for t in os.listdir(f"/proc/{SIM_PID[0]}/task"):
                    os.sched_setaffinity(int(t), {0})
                os.sched_setaffinity(0, {1})
                pinned = "sim cpu0, client cpu1"
            except OSError as e:
                pinned = f"not pinned ({e})"
        book = {v.key: float(s.control.book(v.key, "BTC-USDT", depth=1)["bids"][0][0]) for v in venues}
        s.control.pause_md()
        res = uvloop.run(ours(s.urls, venues, a.n, a.burst, a.window, book))
        base = asyncio.run(baseline(s.urls, a.n, book.get("binance", 60000.0) * 0.8))
    echo = None
    if a.echo:
        echo = run_echo(a)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    print(f"order_latency  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  cpu: {cpu} x{os.cpu_count()}  "
          f"python {platform.python_version()}  load {os.getloadavg()[0]:.1f}  {pinned}")
    print(f"{'venue':8} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'p99.9':>8} {'max':>9}   {'acked/s':>9} {'success':>8}"
          f"  {'oms cpu/ord':>11} {'sim cpu/ord':>11}")
    for v, r in res.items():
        lt, tp = r["latency_us"], r["throughput"]
        print(f"{v:8} {lt['p50']:8.1f} {lt['p90']:8.1f} {lt['p99']:8.1f} {lt['p99.9']:8.1f} {lt['max']:9.1f}   "
              f"{tp['acked_per_s']:9.0f} {tp['success'] * 100:7.2f}%  {tp['client_cpu_us_per_order']:9.1f}us "
              f"{tp['sim_cpu_us_per_order']:9.1f}us  ({tp['acked']}/{tp['sent']} in {tp['seconds']:.2f} s)")
    bl = base["latency_us"]
    print(f"{'baseline':8} {bl['p50']:8.1f} {bl['p90']:8.1f} {bl['p99']:8.1f} {bl['p99.9']:8.1f} {bl['max']:9.1f}"
          "   (naive asyncio client, binance, same simulator)")
    if echo is not None:
        lt, tp = echo["latency_us"], echo["throughput"]
        print(f"{'echo/okx':8} {lt['p50']:8.1f} {lt['p90']:8.1f} {lt['p99']:8.1f} {lt['p99.9']:8.1f} {lt['max']:9.1f}   "
              f"{tp['acked_per_s']:9.0f} {tp['success'] * 100:7.2f}%  {tp['client_cpu_us_per_order']:9.1f}us "
              f"{tp['sim_cpu_us_per_order']:9.1f}us  (a venue that does no work: OMS + loopback floor)")
    if a.json:
        print(json.dumps({"ours": res, "baseline": base, "echo": echo}, indent=1))
    if a.png:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(7, 4))
            for v, r in res.items():
                ax.bar(v, r["latency_us"]["p50"], label=f"{v} p50")
            ax.bar("baseline", bl["p50"])
            ax.set_ylabel("order-to-ack p50 (us)")
            fig.tight_layout()
            fig.savefig(a.png)
        except Exception as e:  # a missing plotting backend must not lose the figures above
            print(f"png not written: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
