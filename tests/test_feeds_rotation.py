"""Connection groups and rotation against a small in-process venue (picows on loopback).

The venue publishes Binance bookTicker, trade and depth events with consecutive ids to every
subscribed connection; the oldest connection lags (its frames go out in 30 ms bursts, as a
slower path to the venue would), so at any moment it has events in flight that the newer
connection already delivered. Rotations must neither lose nor duplicate a quote or a trade, and
must keep the book's update-id chain (no gap, no resync)."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from common.instruments import Instruments
from feeds import handler
from feeds.base import LIVE
from ringbuf.records import KIND_BOOK_LEVEL, KIND_QUOTE, KIND_TRADE, MD_DTYPE
from ringbuf.ring import Ring
from ringbuf.ringstat import ring_name

pytestmark = pytest.mark.unit


class Venue:
    def __init__(self) -> None:
        self.sessions: list = []  # [listener, streams, lagging, pending frames]
        self.seq = 0
        self.conns = 0
        self.subscribed: list[tuple[str, ...]] = []

    def listener(self):
        from picows import WSListener, WSMsgType

        venue = self

        class Srv(WSListener):
            def on_ws_connected(self, transport):
                self.transport = transport
                self.sess = [self, set(), venue.conns % 2 == 0, []]
                venue.conns += 1

            def on_ws_frame(self, transport, frame):
                if frame.msg_type == WSMsgType.TEXT:
                    msg = orjson.loads(frame.get_payload_as_bytes())
                    if msg.get("method") == "SUBSCRIBE":
                        self.sess[1].update(msg["params"])
                        venue.subscribed.append(tuple(msg["params"]))
                        venue.sessions.append(self.sess)
                        transport.send(WSMsgType.TEXT, orjson.dumps({"result": None, "id": msg["id"]}))
                elif frame.msg_type == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()

            def on_ws_disconnected(self, transport):
                if self.sess in venue.sessions:
                    venue.sessions.remove(self.sess)

        return Srv()

    def publish(self) -> None:
        from picows import WSMsgType

        self.seq += 1
        s = self.seq
        frames = [("btcusdt@bookTicker", b'{"u":%d,"s":"BTCUSDT","b":"100.%d","B":"1","a":"101","A":"2"}' % (s, s % 10)),
                  ("btcusdt@depth@100ms", b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":%d,"u":%d,'
                                          b'"b":[["99.%d","%d"]],"a":[]}' % (s, s, s % 10, s % 3))]
        if s % 3 == 0:
            frames.append(("btcusdt@trade", b'{"e":"trade","E":1,"s":"BTCUSDT","t":%d,"p":"100.5","q":"1",'
                                            b'"T":1,"m":false,"M":true}' % (s // 3)))
        for sess in self.sessions:
            lst, streams, lagging, pending = sess
            for stream, raw in frames:
                if stream in streams:
                    if lagging:
                        pending.append(raw)
                    else:
                        lst.transport.send(WSMsgType.TEXT, raw)

    def flush_lagging(self) -> None:
        from picows import WSMsgType

        for lst, _streams, lagging, pending in self.sessions:
            if lagging and pending:
                for raw in pending:
                    lst.transport.send(WSMsgType.TEXT, raw)
                pending.clear()


def run_venue_and_feed(shm_prefix, groups, rotations: int):
    from picows import ws_create_server

    venue = Venue()
    ins = Instruments(["BTC-USDT"])

    async def main():
        server = await ws_create_server(lambda _r: venue.listener(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        runner = handler.VenueRunner("binance", f"ws://127.0.0.1:{port}/ws", "http://127.0.0.1:1", ["BTC-USDT"],
                                     ins, shm_prefix, ring_capacity=1 << 16, stale_after_s=0,
                                     rotate_after_s=0.4, stream_groups=groups)
        runner.rotate_overlap_s = 0.05
        st = runner.feed.state(1)  # a live book at update id 0: no REST snapshot in this test
        st.state = LIVE
        st.book.valid = True
        runner.iids = []
        task = asyncio.ensure_future(runner.run())

        async def publisher():
            k = 0
            while True:
                venue.publish()
                k += 1
                if k % 30 == 0:
                    venue.flush_lagging()
                await asyncio.sleep(0.001)

        pub = None
        try:
            for _ in range(500):
                if len(venue.sessions) >= len(runner.groups):
                    break
                await asyncio.sleep(0.01)
            pub = asyncio.ensure_future(publisher())
            for _ in range(3000):
                if runner.rotations >= rotations:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
        finally:
            if pub is not None:
                pub.cancel()
            venue.flush_lagging()
            await asyncio.sleep(0.2)
            await runner.stop()
            task.cancel()
            server.close()
        return runner

    runner = asyncio.run(main())
    try:
        ring = Ring.attach(ring_name(shm_prefix, "md-binance"), 64)
        out = np.zeros(1 << 16, dtype=MD_DTYPE)
        ring.claim_consumer()
        n = ring.read_batch(out)
        ring.close()
    finally:
        runner.close()
    return venue, runner, out[:n]


def contiguous_once(seqs: list[int]) -> bool:
    return len(seqs) > 0 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.parametrize("groups", [handler.STREAM_GROUPS, handler.SINGLE_GROUPS], ids=["grouped", "single"])
def test_rotation_loses_and_duplicates_nothing(shm_prefix, groups):
    venue, runner, recs = run_venue_and_feed(shm_prefix, groups, rotations=4)
    assert runner.rotations >= 4
    quotes = recs[recs["kind"] == KIND_QUOTE]["venue_seq"].tolist()
    trades = recs[recs["kind"] == KIND_TRADE]["venue_seq"].tolist()
    levels = recs[recs["kind"] == KIND_BOOK_LEVEL]["venue_seq"].tolist()
    assert len(quotes) > 300 and len(trades) > 100
    assert contiguous_once(quotes), [q for a, q in zip(quotes, quotes[1:], strict=False) if q != a + 1][:10]
    assert contiguous_once(trades), [t for a, t in zip(trades, trades[1:], strict=False) if t != a + 1][:10]
    assert levels == list(range(1, len(levels) + 1))  # every diff once, in order, from the first one
    assert runner.feed.resyncs == 0 and runner.feed.gaps == 0 and runner.reconnects == 0


def test_binance_streams_are_split_by_group(shm_prefix):
    venue, runner, _recs = run_venue_and_feed(shm_prefix, handler.STREAM_GROUPS, rotations=0)
    subs = set(venue.subscribed)
    assert ("btcusdt@bookTicker", "btcusdt@trade") in subs and ("btcusdt@depth@100ms",) in subs
    assert [g.name for g in runner.groups] == ["bbo", "depth"]
