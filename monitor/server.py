"""Monitoring HTTP service (binds 127.0.0.1:8080 unless `[monitor]` says otherwise).

    GET  /health              200 or 503 with per-component status and active alerts
    GET  /metrics             Prometheus text exposition from the shared-memory counters
    GET  /strategies/status   JSON per strategy: state, parameters, positions, PnL, open orders
    GET  /orders/stats        JSON: counts by status and venue, success and fill rates, latency
    POST /halt, POST /resume  bearer token from [monitor].auth_token (or MONITOR_TOKEN)

    python -m monitor.server [--config config.toml] [--prefix hft]

Runs in its own low-priority process; reads shared memory and the database, and writes
only the control segment (halt/resume requests). Secrets never appear in responses.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import signal
import sys
import time
import urllib.parse

import orjson

from common.config import Config, ConfigError, load
from monitor import health as H
from monitor import metrics as M
from monitor import sources as S

log = logging.getLogger("monitor")
MAX_BODY = 64 * 1024


class Monitor:
    def __init__(self, cfg: Config, prefix: str, database_url: str | None = None,
                 venues: list[str] | None = None) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.database_url = database_url or cfg.database.url
        self.venues = venues if venues is not None else [v.key for v in cfg.enabled_venues()]
        self.alerts = H.AlertEngine(reject_rate_alert=cfg.monitor.reject_rate_alert,
                                    latency_p99_alert_us=cfg.monitor.latency_p99_alert_us,
                                    webhook_url=cfg.monitor.webhook_url)
        self._stats_cache: tuple[float, dict] | None = None
        self.requests = 0
        self.started = time.time()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    # ---- data ---------------------------------------------------------------------
    def _persist(self) -> dict | None:
        try:
            from persist.process import status

            return status(self.prefix)
        except Exception as e:  # persist not importable or no block: report down, never crash
            return {"alive": False, "db_up": False, "error": str(e)}

    def health(self) -> dict:
        counters = S.counters_by_role(self.prefix)
        inp = H.HealthInputs(
            venues=self.venues, counters=counters, control=S.control_status(self.prefix),
            persist=self._persist() if self.cfg.persist.enabled else None,
            stale_feed_s=max(self.cfg.risk.stale_md_ms / 1000.0, 1.0),
            expect_persist=self.cfg.persist.enabled,
            supervisor=S.read_status(S.status_path(self.cfg.system.data_dir, self.prefix, "supervisor"),
                                     max_age_s=30),
        )
        h = H.evaluate(inp)
        h["alerts"] = self.alerts.active()
        h["uptime_s"] = round(time.time() - self.started, 1)
        return h

    def metrics(self) -> str:
        counters = S.counters_by_role(self.prefix)
        pids = [b["pid"] for b in counters.values() if b["alive"]]
        sup = S.read_status(S.status_path(self.cfg.system.data_dir, self.prefix, "supervisor"), max_age_s=30)
        if sup:
            pids += [p.get("pid", 0) for p in sup.get("processes", {}).values() if p.get("pid")]
            pids.append(sup.get("pid", 0))
        rss = S.rss_by_pid([p for p in pids if p])
        extra = {"monitor_requests_total": self.requests, "alerts_firing": len(self.alerts.active())}
        return M.build(counters, S.rings(self.prefix), S.control_status(self.prefix), rss, extra)

    def strategies_status(self) -> dict:
        st = S.read_status(S.status_path(self.cfg.system.data_dir, self.prefix, "strategy"))
        ctl = S.control_status(self.prefix)
        blk = S.counters_by_role(self.prefix).get("strategy")
        out = {"strategies": [], "trading_state": None}
        if ctl:
            out["trading_state"] = {1: "ACTIVE", 2: "REDUCING", 3: "HALTED"}.get(ctl.get("state_code"), "UNKNOWN")
            out["trading_reason"] = ctl.get("reason", "")
        if st:
            out["strategies"] = st.get("strategies", [])
            out["updated_ts"] = st.get("ts")
        out["process"] = {"alive": bool(blk and blk["alive"]), "pid": blk["pid"] if blk else None}
        return out

    def _db_stats(self) -> dict:
        import psycopg

        from persist import queries

        with psycopg.connect(self.database_url, connect_timeout=3) as conn:
            return {"by_status": queries.orders_by_status(conn), "rates": queries.rates(conn),
                    "fills": queries.fill_totals(conn)}

    async def orders_stats(self) -> dict:
        now = time.monotonic()
        if self._stats_cache and now - self._stats_cache[0] < 1.0:
            return self._stats_cache[1]
        out: dict = {}
        if self.database_url:
            try:
                out.update(await asyncio.wait_for(asyncio.to_thread(self._db_stats), 5))
                out["database"] = "ok"
            except Exception as e:
                out["database"] = f"unreachable: {type(e).__name__}"
        else:
            out["database"] = "not configured"
        st = S.read_status(S.status_path(self.cfg.system.data_dir, self.prefix, "strategy"))
        if st and "orders" in st:
            out["live"] = st["orders"]  # the OMS's own view: counts, rejects by reason, latency percentiles
        c = (S.counters_by_role(self.prefix).get("strategy") or {}).get("counters", {})
        out["latency_us"] = {k[len("oms_ack_"):-3]: v for k, v in c.items()
                             if k.startswith("oms_ack_p") and k.endswith("_us")}
        self._stats_cache = (now, out)
        return out

    # ---- alerts -------------------------------------------------------------------
    async def alert_loop(self, every_s: float = 1.0) -> None:
        while True:
            try:
                h = await asyncio.to_thread(self.health)
                trans = self.alerts.evaluate(h, S.counters_by_role(self.prefix))
                for t in trans:
                    if self.cfg.monitor.webhook_url:
                        await self._post_webhook(t)
            except Exception:
                log.exception("alert evaluation failed")
            await asyncio.sleep(every_s)

    async def _post_webhook(self, payload: dict) -> None:
        url = urllib.parse.urlsplit(self.cfg.monitor.webhook_url)
        body = orjson.dumps(payload)
        host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
        try:
            if url.scheme == "https":
                import ssl

                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=ssl.create_default_context()), 5)
            else:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
            await asyncio.wait_for(reader.read(1024), 5)
            writer.close()
            self.alerts.sent += 1
        except Exception as e:
            self.alerts.send_errors += 1
            log.warning("alert webhook failed: %s", type(e).__name__)

    # ---- HTTP ---------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break
                try:
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ver = lines[0].split(" ", 2)
                    headers = {}
                    for ln in lines[1:]:
                        if ":" in ln:
                            k, v = ln.split(":", 1)
                            headers[k.strip().lower()] = v.strip()
                    n = int(headers.get("content-length", "0") or 0)
                except ValueError:
                    await self._send(writer, 400, {"error": "malformed request"}, close=True)
                    break
                if n > MAX_BODY or n < 0:
                    await self._send(writer, 413, {"error": "body too large"}, close=True)
                    break
                if n:
                    await reader.readexactly(n)
                self.requests += 1
                status, body, ctype = await self.route(method.upper(), target, headers)
                keep = headers.get("connection", "").lower() != "close"
                await self._send(writer, status, body, ctype=ctype, close=not keep)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _send(self, writer, status: int, body, ctype: str = "application/json", close: bool = False) -> None:
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                                | orjson.OPT_SERIALIZE_NUMPY)
        reason = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                  404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
                  503: "Service Unavailable"}.get(status, "OK")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                     f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode() + data)
        await writer.drain()

    def _authorized(self, headers: dict) -> bool:
        token = self.cfg.monitor.auth_token
        got = headers.get("authorization", "")
        if not token or not got.startswith("Bearer "):
            return False
        return hmac.compare_digest(got[7:].strip().encode(), token.encode())

    async def route(self, method: str, target: str, headers: dict):
        path = urllib.parse.urlsplit(target).path.rstrip("/") or "/"
        try:
            if path == "/health" and method == "GET":
                h = await asyncio.to_thread(self.health)
                return (200 if h["status"] == "ok" else 503), h, "application/json"
            if path == "/metrics" and method == "GET":
                return 200, await asyncio.to_thread(self.metrics), "text/plain; version=0.0.4"
            if path == "/strategies/status" and method == "GET":
                return 200, await asyncio.to_thread(self.strategies_status), "application/json"
            if path == "/orders/stats" and method == "GET":
                return 200, await self.orders_stats(), "application/json"
            if path in ("/halt", "/resume"):
                if method != "POST":
                    return 405, {"error": f"use POST {path}"}, "application/json"
                if not self.cfg.monitor.auth_token:
                    return 403, {"error": "no monitor.auth_token configured; halt/resume are disabled"}, \
                        "application/json"
                if not self._authorized(headers):
                    return 401, {"error": "missing or wrong bearer token"}, "application/json"
                cmd = path[1:]
                try:
                    seq = S.control_request(self.prefix, cmd, f"monitor {cmd}")
                except Exception as e:
                    return 503, {"error": f"strategy control segment unavailable: {type(e).__name__}"}, \
                        "application/json"
                log.warning("%s requested through the monitor", cmd)
                return 202, {"requested": cmd, "request_seq": seq}, "application/json"
            if path == "/":
                return 200, {"endpoints": ["/health", "/metrics", "/strategies/status", "/orders/stats",
                                           "POST /halt", "POST /resume"]}, "application/json"
            return 404, {"error": f"no route {path}"}, "application/json"
        except Exception as e:
            log.exception("monitor route %s failed", path)
            return 503, {"error": type(e).__name__}, "application/json"

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        host = host or self.cfg.monitor.host
        port = self.cfg.monitor.port if port is None else port
        self.server = await asyncio.start_server(self.handle, host, port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("monitor listening on http://%s:%d", host, self.port)
        return self.port


async def serve(cfg: Config, prefix: str, database_url: str | None, venues: list[str] | None,
                port: int | None = None, ready_file: str | None = None) -> None:
    mon = Monitor(cfg, prefix, database_url, venues)
    p = await mon.start(port=port)
    if ready_file:
        S.write_status(ready_file, {"port": p, "pid": os.getpid()})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(mon.alert_loop())
    await stop.wait()
    task.cancel()
    mon.server.close()


def run_monitor_process(config_path: str | None, prefix: str, database_url: str | None,
                        venues: list[str] | None = None, port: int | None = None, nice: int = 19,
                        ready_file: str | None = None) -> int:
    """Entry point for the launcher: low priority, never on a trading core's budget."""
    try:
        os.nice(nice)
    except OSError:
        pass
    try:
        cfg = load(config_path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from common.logs import setup_logging

    setup_logging(cfg)
    try:
        asyncio.run(serve(cfg, prefix, database_url, venues, port, ready_file))
    except OSError as e:
        print(f"monitor: cannot listen on {cfg.monitor.host}:{port or cfg.monitor.port}: {e.strerror}",
              file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitor.server")
    ap.add_argument("--config", default=None)
    ap.add_argument("--prefix", default="hft")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--venues", default=None, help="comma-separated venues whose feeds are expected")
    args = ap.parse_args(argv)
    venues = args.venues.split(",") if args.venues else None
    return run_monitor_process(args.config, args.prefix, args.database_url, venues, args.port, nice=0)


if __name__ == "__main__":
    sys.exit(main())
