"""Helpers for tests and harnesses: start the simulator and drive its control endpoint.

`run_sim` starts `python -m sim` in a subprocess on ephemeral ports (or in a
background thread with inprocess=True) and yields a handle with `.urls` and
`.control`. Nothing here is used by the simulator itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

READY_PREFIX = "SIM READY "


class ControlError(RuntimeError):
    pass


class ControlClient:
    """Small blocking JSON client for the control endpoint."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise ControlError(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}") from None

    def health(self) -> dict:
        return self._call("GET", "/health")

    def urls(self) -> dict:
        return self._call("GET", "/urls")

    def fault(self, venue: str, name: str, every_s: float | None = None, **params: Any) -> dict:
        body: dict[str, Any] = {"venue": venue, "name": name, "params": params}
        if every_s is not None:
            body["every_s"] = every_s
        return self._call("POST", "/faults", body)

    def faults(self) -> dict:
        return self._call("GET", "/faults")

    def clear_faults(self, venue: str | None = None) -> dict:
        return self._call("DELETE", "/faults", query={"venue": venue})

    def book(self, venue: str, symbol: str, depth: int = 20) -> dict:
        return self._call("GET", "/book", query={"venue": venue, "symbol": symbol, "depth": depth})

    def pause_md(self) -> dict:
        return self._call("POST", "/md/pause", {})

    def resume_md(self) -> dict:
        return self._call("POST", "/md/resume", {})

    def open_orders(self, venue: str, api_key: str = "sim-key", symbol: str | None = None) -> list:
        return self._call("GET", "/orders", query={"venue": venue, "api_key": api_key, "symbol": symbol})

    def balances(self, venue: str, api_key: str = "sim-key") -> dict:
        return self._call("GET", "/balances", query={"venue": venue, "api_key": api_key})

    def fills(self, venue: str, api_key: str = "sim-key") -> list:
        return self._call("GET", "/fills", query={"venue": venue, "api_key": api_key})

    def trigger(self, on: bool = True, interval_ms: int = 500, jump_bps: float = 50.0,
                symbol: str | None = None) -> dict:
        return self._call("POST", "/trigger", {"on": on, "interval_ms": interval_ms,
                                               "jump_bps": jump_bps, "symbol": symbol})

    def probe(self, clear: bool = False) -> dict:
        return self._call("GET", "/probe", query={"clear": 1 if clear else None})

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def set_rate(self, rate: float) -> dict:
        return self._call("POST", "/rate", {"rate": rate})

    def reset(self) -> dict:
        return self._call("POST", "/reset", {})


class SimHandle:
    def __init__(self, urls: dict, proc: subprocess.Popen | None = None) -> None:
        self.urls = urls
        self.proc = proc
        self.control = ControlClient(urls["control"])


def wait_until(cond: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.02,
               what: str = "condition") -> Any:
    """Poll `cond` until it returns something truthy; raise TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def _cli_args(opts: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in opts.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "symbols" and not isinstance(value, str):
            value = ",".join(value)
        if isinstance(value, bool):
            if value:
                args.append(flag)
            continue
        if key == "faults":
            for f in value:
                args += ["--fault", f]
            continue
        args += [flag, str(value)]
    return args


@contextlib.contextmanager
def run_sim(*, inprocess: bool = False, startup_timeout_s: float = 60.0, port_base: int = 0,
            **opts: Any) -> Iterator[SimHandle]:
    """Start the simulator on ephemeral ports; yield a SimHandle; stop it on exit."""
    if inprocess:
        with _run_sim_thread(port_base=port_base, **opts) as handle:
            yield handle
        return
    cmd = [sys.executable, "-m", "sim", "--port-base", str(port_base)] + _cli_args(opts)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, cwd=root, env=env)
    urls: dict | None = None
    lines: list[str] = []
    result: dict[str, Any] = {}

    def read_ready() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(READY_PREFIX):
                result["urls"] = json.loads(line[len(READY_PREFIX):])
                break
        # keep draining so the child never blocks on a full pipe
        for _ in proc.stdout:
            pass

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    deadline = time.monotonic() + startup_timeout_s
    try:
        while "urls" not in result:
            if proc.poll() is not None:
                raise RuntimeError(f"sim exited with {proc.returncode}: {''.join(lines)[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sim did not start within {startup_timeout_s}s")
            time.sleep(0.02)
        urls = result["urls"]
        yield SimHandle(urls, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextlib.contextmanager
def _run_sim_thread(**opts: Any) -> Iterator[SimHandle]:
    import asyncio

    from sim.config import config_from_options
    from sim.core import Simulator

    cfg = config_from_options(opts)
    sim = Simulator(cfg)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(sim.start())
        except BaseException as e:  # report start failures to the caller
            failure.append(e)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(sim.stop())
        loop.close()

    thread = threading.Thread(target=run, name="sim", daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        raise failure[0]
    try:
        yield SimHandle(sim.urls)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


class WsClosed(ConnectionError):
    pass


class WsClient:
    """Minimal blocking RFC 6455 client for tests and examples (masked frames, ping/pong, close).

    `recv_json(timeout_s)` returns the next text message parsed (answers server pings itself),
    `recv_until(pred, timeout_s)` skips messages until pred(msg) is true.
    """

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        import base64
        import socket

        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WsClosed(f"handshake failed: {self.buf[:200]!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        if self.status != 101:
            raise WsClosed(f"handshake refused: {head[:200]!r}")
        self.close_code: int | None = None

    def send_raw(self, payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True) -> None:
        import struct

        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = bytes((b0, mbit | n))
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            m = os.urandom(4)
            from sim.server import unmask

            self.sock.sendall(hdr + m + unmask(payload, m))
        else:
            self.sock.sendall(hdr + payload)

    def send_text(self, text: str | bytes) -> None:
        self.send_raw(text.encode() if isinstance(text, str) else text, 1)

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def _read(self, n: int, deadline: float) -> bytes:

        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no data from server")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                raise TimeoutError("no data from server") from None
            except OSError as e:
                raise WsClosed(f"connection error: {e}") from None
            if not chunk:
                raise WsClosed("connection closed by server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout_s: float = 30.0) -> tuple[int, bytes]:
        import struct

        deadline = time.monotonic() + timeout_s
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        return b0 & 0x0F, self._read(n, deadline)

    def recv(self, timeout_s: float = 30.0) -> bytes:
        """Next text/binary message payload; pings answered, close raises WsClosed."""
        deadline = time.monotonic() + timeout_s
        while True:
            op, payload = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if op == 0x9:
                self.send_raw(payload, 0xA)
            elif op == 0x8:
                import struct

                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise WsClosed(f"closed by server with code {self.close_code}")
            elif op in (0x1, 0x2):
                return payload

    def recv_json(self, timeout_s: float = 30.0) -> Any:
        data = self.recv(timeout_s)
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", "replace")

    def recv_until(self, pred: Callable[[Any], Any], timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching message")
            msg = self.recv_json(left)
            try:
                if pred(msg):
                    return msg
            except (KeyError, TypeError, IndexError, AttributeError):
                pass

    def close(self) -> None:
        try:
            self.send_raw(b"\x03\xe8", 0x8)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def http_json(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
              timeout_s: float = 30.0) -> tuple[int, Any]:
    """Plain HTTP request returning (status, parsed JSON or text), never raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data.decode("utf-8", "replace")
