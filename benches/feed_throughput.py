"""Feed process throughput socket -> ring, and receive -> ring latency, vs a json+Decimal handler.

    .venv/bin/python -m benches.feed_throughput [--frames 300000] [--client-cpu 1] [--server-cpu 0]

A local picows WebSocket server (its own process, pinned) pushes pre-built Binance bookTicker
frames as fast as it can after the SUBSCRIBE of the quotes connection; the client is the real
feed `VenueRunner` and listener (picows -> BinanceFeed decode -> `Ring.writer` into the
shared-memory ring). Throughput is frames / (last
receive - first receive); latency is per frame from the receive timestamp to the record being
in the ring. The baseline listener does json.loads and builds a dict of Decimals per frame,
on the same connection type, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import time
import uuid
from collections import deque
from decimal import Decimal

import numpy as np

FRAME_T = '{{"u":{u},"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}'


def _server(port_q: mp.Queue, frames: int, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from picows import WSListener, WSMsgType, ws_create_server

    payloads = [FRAME_T.format(u=400900217 + i).encode() for i in range(frames)]

    class Srv(WSListener):
        def on_ws_frame(self, transport, frame):
            msg = frame.get_payload_as_bytes() if frame.msg_type == WSMsgType.TEXT else b""
            if b"SUBSCRIBE" in msg:
                transport.send(WSMsgType.TEXT, b'{"result":null,"id":1}')
                if b"bookTicker" in msg:  # the quotes connection (depth has its own, silent here)
                    for p in payloads:
                        transport.send(WSMsgType.TEXT, p)
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    async def main():
        server = await ws_create_server(lambda _r: Srv(), "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(3600)

    asyncio.run(main())


def _run_client(url: str, frames: int, baseline: bool) -> dict:
    from common.instruments import Instruments
    from feeds import handler

    prefix = "fb" + uuid.uuid4().hex[:6]
    runner = handler.VenueRunner("binance", url, "http://127.0.0.1:1", ["BTC-USDT"], Instruments(["BTC-USDT"]),
                                 prefix, ring_capacity=1 << 20, stale_after_s=0)
    runner.iids = []  # bookTicker only: no depth snapshots to fetch in this harness
    orig_factory = handler._listener_class
    base_cls = orig_factory()
    lat = np.zeros(frames + 16, dtype=np.int64)
    recv_first = [0]
    state = {"n": 0, "done": asyncio.Event()}
    sink: deque = deque(maxlen=1024)

    class Timed(base_cls):
        def on_ws_frame(self, transport, frame):
            super().on_ws_frame(transport, frame)
            if self.group.books:  # the depth connection: only its subscribe reply comes here
                return
            t = time.monotonic_ns()
            n = state["n"]
            if n == 0:
                recv_first[0] = self.last_rx_ns
            lat[n] = t - self.last_rx_ns
            state["n"] = n + 1
            if n + 1 >= frames + 1:  # + the subscribe reply
                state["last"] = self.last_rx_ns
                state["done"].set()

    class Baseline(base_cls):
        def on_ws_frame(self, transport, frame):
            if self.group.books:
                return
            recv_ns = time.monotonic_ns()
            self.last_rx_ns = recv_ns
            o = json.loads(frame.get_payload_as_bytes())
            if "s" in o:
                sink.append({"symbol": o["s"], "bid": Decimal(o["b"]), "bid_qty": Decimal(o["B"]),
                             "ask": Decimal(o["a"]), "ask_qty": Decimal(o["A"]), "recv_ns": recv_ns})
            t = time.monotonic_ns()
            n = state["n"]
            if n == 0:
                recv_first[0] = recv_ns
            lat[n] = t - recv_ns
            state["n"] = n + 1
            if n + 1 >= frames + 1:
                state["last"] = recv_ns
                state["done"].set()

    handler._listener_class = lambda: (Baseline if baseline else Timed)

    async def main():
        task = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(state["done"].wait(), 300)
        await runner.stop()
        task.cancel()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(main())
    finally:
        handler._listener_class = orig_factory
        tail = runner.ring.tail_position
        runner.close()
        from ringbuf import shm

        for name in shm.list_segments(prefix):
            shm.unlink(name)
    n = state["n"]
    secs = (state["last"] - recv_first[0]) / 1e9
    lat_us = lat[1:n] / 1e3
    return {"frames": n - 1, "seconds": secs, "msgs_per_s": (n - 1) / secs, "ring_records": tail,
            "p50_us": float(np.percentile(lat_us, 50)), "p90_us": float(np.percentile(lat_us, 90)),
            "p99_us": float(np.percentile(lat_us, 99)), "p999_us": float(np.percentile(lat_us, 99.9))}


def _client(url: str, frames: int, baseline: bool, cpu: int | None, out: mp.Queue) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import gc

    gc.collect()
    gc.freeze()
    out.put(_run_client(url, frames, baseline))


def measure(frames: int, baseline: bool, client_cpu: int | None, server_cpu: int | None) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    srv = ctx.Process(target=_server, args=(q, frames, server_cpu), daemon=True)
    srv.start()
    port = q.get(timeout=60)
    out = ctx.Queue()
    cl = ctx.Process(target=_client, args=(f"ws://127.0.0.1:{port}/ws", frames, baseline, client_cpu, out))
    cl.start()
    res = out.get(timeout=600)
    cl.join(30)
    srv.terminate()
    srv.join(10)
    return res


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benches.feed_throughput")
    p.add_argument("--frames", type=int, default=300_000)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    ncpu = os.cpu_count() or 1
    ccpu = a.client_cpu if a.client_cpu < ncpu else None
    scpu = a.server_cpu if a.server_cpu < ncpu else None
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.processor() or platform.machine()}  "
          f"cpus={ncpu}  frames={a.frames}  client cpu={ccpu} server cpu={scpu}")
    for _ in range(a.repeat):
        for baseline in (False, True):
            r = measure(a.frames, baseline, ccpu, scpu)
            name = "json+Decimal baseline" if baseline else "feeds (picows->parse->ring)"
            print(f"{name:30s} {r['msgs_per_s']:>10,.0f} msg/s   receive->ring p50 {r['p50_us']:.2f} us  "
                  f"p90 {r['p90_us']:.2f}  p99 {r['p99_us']:.2f}  p99.9 {r['p999_us']:.2f}  "
                  f"({r['frames']} frames in {r['seconds']:.2f} s)")


if __name__ == "__main__":
    main()
