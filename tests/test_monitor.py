"""Monitor HTTP service against real shared-memory counters, control segment and status files."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request

import pytest

from common.config import load
from monitor.metrics import metric_name
from monitor.server import Monitor
from monitor.sources import status_path, write_status
from ringbuf.counters import Counters
from ringbuf.ring import Ring
from ringbuf.ringstat import counters_name, ring_name
from rms.control import ControlBlock

pytestmark = pytest.mark.unit

PROM_LINE = re.compile(r'^(# (HELP|TYPE) .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                       r'(-?[0-9.e+]+|NaN|\+Inf|-Inf))$')


class System:
    """Counters blocks and a control segment as the real processes create them."""

    def __init__(self, prefix: str, venues=("binance", "okx")) -> None:
        self.prefix = prefix
        self.feeds = {}
        for v in venues:
            c = Counters(counters_name(prefix, f"feed-{v}"), f"feed-{v}")
            c.inc(c.add("messages"), 100)
            c.set(c.add("last_recv_ns:BTC-USDT"), time.monotonic_ns())
            c.touch()
            self.feeds[v] = c
        self.strategy = Counters(counters_name(prefix, "strategy"), "strategy")
        self.strategy.inc(self.strategy.add("oms_sent"), 10)
        self.strategy.set(self.strategy.add("oms_ack_p99_us"), 120)
        self.strategy.touch()
        self.control = ControlBlock.create(prefix)
        self.control.publish(1, "start")
        self.ring = Ring.create(ring_name(prefix, "md-binance"), 64, 64)

    def close(self) -> None:
        for c in self.feeds.values():
            c.close()
        self.strategy.close()
        self.control.close()
        self.ring.close()


def _cfg(tmp_path, token="s3cret", webhook=""):
    text = f'[system]\ndata_dir = "{tmp_path}"\n[persist]\nenabled = false\n[monitor]\nauth_token = "{token}"\n' \
           f'webhook_url = "{webhook}"\n'
    return load(text=text, env={})


def _get(port: int, path: str, method: str = "GET", token: str | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def _serve(mon: Monitor, fn):
    """Run the monitor on an ephemeral loopback port in a background loop while fn(port) runs."""
    import threading

    loop = asyncio.new_event_loop()
    started = threading.Event()
    port_box = {}

    def run():
        asyncio.set_event_loop(loop)
        port_box["port"] = loop.run_until_complete(mon.start(host="127.0.0.1", port=0))
        started.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert started.wait(30)
    try:
        return fn(port_box["port"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


def test_health_ok_then_degraded_by_stale_feed_and_halt(shm_prefix, tmp_path):
    sysm = System(shm_prefix)
    mon = Monitor(_cfg(tmp_path), shm_prefix, venues=["binance", "okx"])

    def check(port):
        code, ctype, body = _get(port, "/health")
        h = json.loads(body)
        assert code == 200, h
        assert ctype.startswith("application/json")
        assert set(h["components"]) >= {"feed_binance", "feed_okx", "strategy", "trading"}
        assert h["components"]["trading"]["state"] == "ACTIVE"
        # a feed whose symbol has not updated for longer than the limit makes the system degraded
        sysm.feeds["okx"].set(sysm.feeds["okx"].index("last_recv_ns:BTC-USDT"), time.monotonic_ns() - 60 * 10**9)
        code, _, body = _get(port, "/health")
        h = json.loads(body)
        assert code == 503 and "feed_okx" in h["degraded"]
        assert h["components"]["feed_okx"]["status"] == "stale"
        sysm.feeds["okx"].set(sysm.feeds["okx"].index("last_recv_ns:BTC-USDT"), time.monotonic_ns())
        sysm.control.publish(3, "kill switch")
        code, _, body = _get(port, "/health")
        assert code == 503 and json.loads(body)["components"]["trading"]["status"] == "halted"

    try:
        _serve(mon, check)
    finally:
        sysm.close()


def test_health_reports_strategy_down(shm_prefix, tmp_path):
    mon = Monitor(_cfg(tmp_path), shm_prefix, venues=[])
    code, _, body = _serve(mon, lambda port: _get(port, "/health"))
    h = json.loads(body)
    assert code == 503 and h["components"]["strategy"]["status"] == "down"


def test_metrics_are_valid_prometheus_text_from_counters(shm_prefix, tmp_path):
    sysm = System(shm_prefix)
    mon = Monitor(_cfg(tmp_path), shm_prefix, venues=["binance", "okx"])
    try:
        code, ctype, body = _serve(mon, lambda port: _get(port, "/metrics"))
    finally:
        sysm.close()
    text = body.decode()
    assert code == 200 and ctype.startswith("text/plain")
    for line in text.strip().splitlines():
        assert PROM_LINE.match(line), line
    assert 'hft_messages{role="feed-binance"} 100' in text
    assert 'hft_last_recv_ns{role="feed-okx",key="BTC-USDT"}' in text
    assert 'hft_oms_sent{role="strategy"} 10' in text
    assert 'hft_trading_state{state="ACTIVE"} 1' in text
    assert f'hft_ring_tail_position{{ring="{ring_name(shm_prefix, "md-binance")}",mode="lossy"}} 0' in text
    assert "hft_process_rss_bytes" in text
    assert metric_name("a.b:c") == "hft_a_b_c"


def test_halt_and_resume_need_the_bearer_token(shm_prefix, tmp_path):
    sysm = System(shm_prefix)
    mon = Monitor(_cfg(tmp_path, token="s3cret"), shm_prefix, venues=[])
    host_view = ControlBlock.attach(shm_prefix)
    host_view._seen = host_view._q[64 // 8]

    def check(port):
        assert _get(port, "/halt", "POST")[0] == 401
        assert _get(port, "/halt", "POST", token="wrong")[0] == 401
        assert _get(port, "/halt")[0] == 405
        code, _, body = _get(port, "/halt", "POST", token="s3cret")
        assert code == 202 and json.loads(body)["requested"] == "halt"
        assert host_view.poll()[0] == 1  # CMD_HALT reached the strategy's control segment
        code, _, _ = _get(port, "/resume", "POST", token="s3cret")
        assert code == 202 and host_view.poll()[0] == 2

    try:
        _serve(mon, check)
    finally:
        host_view.close()
        sysm.close()


def test_halt_is_refused_when_no_token_is_configured(shm_prefix, tmp_path):
    mon = Monitor(_cfg(tmp_path, token=""), shm_prefix, venues=[])
    assert _serve(mon, lambda port: _get(port, "/halt", "POST", token="x"))[0] == 403


def test_strategies_status_and_order_stats_shapes(shm_prefix, tmp_path):
    sysm = System(shm_prefix)
    cfg = _cfg(tmp_path)
    write_status(status_path(str(tmp_path), shm_prefix, "strategy"), {
        "pid": 1, "ts": time.time(), "ready": True,
        "strategies": [{"name": "market_making", "state": "ACTIVE", "parameters": {"spread_bps": 10.0},
                        "positions": [], "open_orders": [], "pnl": {"total": 0.0}}],
        "orders": {"sent": 3, "acked": 3, "rejected": 0, "ack_latency_us": {"p50": 80.0}}})
    mon = Monitor(cfg, shm_prefix, database_url="", venues=[])

    def check(port):
        code, _, body = _get(port, "/strategies/status")
        st = json.loads(body)
        assert code == 200
        assert st["trading_state"] == "ACTIVE"
        assert st["strategies"][0]["name"] == "market_making"
        assert st["strategies"][0]["parameters"]["spread_bps"] == 10.0
        assert "secret" not in body.decode().lower()
        code, _, body = _get(port, "/orders/stats")
        os_ = json.loads(body)
        assert code == 200 and os_["live"]["sent"] == 3 and os_["database"] == "not configured"
        assert os_["latency_us"] == {"p99": 120}
        assert _get(port, "/nope")[0] == 404

    try:
        _serve(mon, check)
    finally:
        sysm.close()


def test_malformed_requests_do_not_kill_the_server(shm_prefix, tmp_path):
    import socket

    mon = Monitor(_cfg(tmp_path), shm_prefix, venues=[])

    def check(port):
        for junk in (b"\x00\x01garbage\r\n\r\n", b"GET\r\n\r\n", b"POST /halt HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(junk)
            s.recv(1024)
            s.close()
        return _get(port, "/")[0]

    assert _serve(mon, check) == 200


def test_alerts_fire_resolve_and_post_to_webhook(shm_prefix, tmp_path):
    received = []

    async def scenario():
        async def hook(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            received.append(json.loads(await reader.readexactly(n)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(hook, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        sysm = System(shm_prefix)
        try:
            mon = Monitor(_cfg(tmp_path, webhook=f"http://127.0.0.1:{port}/alerts"), shm_prefix,
                          venues=["binance", "okx"])
            sysm.control.publish(3, "limit breach")
            h = mon.health()
            trans = mon.alerts.evaluate(h, {})
            assert {t["alert"] for t in trans if t["state"] == "firing"} == {"halt"}
            for t in trans:
                await mon._post_webhook(t)
            assert [a["alert"] for a in mon.alerts.active()] == ["halt"]
            sysm.control.publish(1, "resumed")
            trans = mon.alerts.evaluate(mon.health(), {})
            assert [(t["alert"], t["state"]) for t in trans] == [("halt", "resolved")]
            assert mon.alerts.active() == []
        finally:
            sysm.close()
            srv.close()

    asyncio.run(scenario())
    assert received and received[0]["alert"] == "halt" and received[0]["state"] == "firing"
