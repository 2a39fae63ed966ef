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
