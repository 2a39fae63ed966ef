"""The tick-to-trade floor: one process that answers every market-data frame with a prebuilt
order frame, parsing nothing (two loopback hops, the WebSocket framing, and nothing else).

    python -m benches.baselines.floor --urls SIM_READY.json [--cpu N] [--symbols BTC-USDT,ETH-USDT]
                                      [--idle backoff|busy_spin|yielding]

Same transport as the pipeline (picows on uvloop), same streams subscribed as the feed handler,
one market-data and one order connection per venue. The order frames are built once at start:
they are not authenticated, so the simulator notes their arrival (the probe) and then refuses
them; the replies are read and dropped. Prints READY when every connection is open.
`--idle busy_spin` polls the sockets without sleeping in epoll (ringbuf.idle.spin_event_loop),
the floor to compare a pipeline against whose processes do the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from benches.baselines.venue_wire import VENUES, OrderWire, md_url, order_url, subscribe_frames

PREBUILT = 4096


def prebuilt_frames(venue: str, symbol: str) -> list[bytes]:
    wire = OrderWire(venue, "floor-key", "floor-secret", symbol, inst_id_code=1)
    return [wire.new_post_only(f"fl{venue[0]}{i}", "buy", "1000.0", "0.001").encode() for i in range(PREBUILT)]


def _factory(cls, out, frames):
    return lambda: cls(out, frames)


async def run(urls: dict, symbols: list[str], trigger_symbol: str, idle: str = "backoff") -> None:
    from picows import WSListener, WSMsgType, ws_connect

    from ringbuf.idle import spin_event_loop

    text, binary, ping = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    class Sink(WSListener):
        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type is ping:
                transport.send_pong(frame.get_payload_as_bytes())

    class Answer(WSListener):
        def __init__(self, out, frames: list[bytes]) -> None:
            self.order_tr = out
            self.frames = frames
            self.i = 0

        def on_ws_frame(self, transport, frame) -> None:
            t = frame.msg_type
            if t is text or t is binary:
                self.order_tr.send(text, self.frames[self.i])
                self.i = (self.i + 1) % PREBUILT
            elif t is ping:
                transport.send_pong(frame.get_payload_as_bytes())

    conns = []
    for v in VENUES:
        out, _ = await ws_connect(Sink, order_url(v, urls), enable_auto_ping=False)
        frames = prebuilt_frames(v, trigger_symbol)
        # a factory with parameters would be handed the upgrade request: bind by closure instead
        md, _ = await ws_connect(_factory(Answer, out, frames), md_url(v, urls), enable_auto_ping=False)
        for f in subscribe_frames(v, symbols):
            md.send(text, f.encode())
        conns += [out, md]
    stop_spin = spin_event_loop(loop, idle)
    print("READY", flush=True)
    await stop.wait()
    if stop_spin is not None:
        stop_spin()
    for c in conns:
        c.disconnect()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches.baselines.floor", description=__doc__.splitlines()[0])
    ap.add_argument("--urls", required=True, help="the simulator's ready-file JSON")
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--symbols", default="BTC-USDT,ETH-USDT")
    ap.add_argument("--trigger-symbol", default="BTC-USDT")
    ap.add_argument("--idle", choices=["backoff", "busy_spin", "yielding"], default="backoff",
                    help="between frames: sleep in epoll (backoff) or poll without sleeping")
    a = ap.parse_args(argv)
    try:
        with open(a.urls) as f:
            urls = json.load(f)
    except (OSError, ValueError) as e:
        print(f"floor: cannot read --urls {a.urls}: {e}", file=sys.stderr)
        return 2
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    import uvloop

    uvloop.run(run(urls, [s for s in a.symbols.split(",") if s], a.trigger_symbol, a.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
