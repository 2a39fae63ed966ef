"""A small asyncio HTTP/1.1 client for the OMS's REST calls (reconciliation, dead-man
switches, instrument rules): one keep-alive connection per host, JSON bodies.

It never blocks the event loop (unlike urllib) and never logs headers, which carry keys.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import orjson


class HttpError(Exception):
    """Transport failure or malformed response (the status of a well-formed response is not an error)."""


class HttpResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError as e:
            raise HttpError(f"response is not JSON (status {self.status}): {e}") from None

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {len(self.body)} bytes)"


class HttpClient:
    """`await client.request("GET", "/api/v3/openOrders?x=1", headers={...})`. Requests on one
    client are serialised (one connection, HTTP/1.1 without pipelining)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"REST URL must be http(s)://host[:port], got {base_url!r}")
        self.host = u.hostname
        self.tls = u.scheme == "https"
        self.port = u.port or (443 if self.tls else 80)
        self.prefix = u.path.rstrip("/")
        self.host_header = u.netloc
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> None:
        ctx = ssl.create_default_context() if self.tls else None
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=ctx)

    def _drop(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
        self._reader = self._writer = None

    async def close(self) -> None:
        self._drop()

    async def request(self, method: str, path: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> HttpResponse:
        async with self._lock:
            for attempt in (0, 1):
                fresh = self._writer is None
                try:
                    if fresh:
                        await asyncio.wait_for(self._connect(), self.timeout_s)
                    return await asyncio.wait_for(self._roundtrip(method, path, body, headers), self.timeout_s)
                except (OSError, asyncio.IncompleteReadError, ConnectionError) as e:
                    self._drop()
                    if fresh or attempt:  # a reused keep-alive connection may have been closed: retry once
                        raise HttpError(f"{method} {self.host}:{self.port}{path.split('?')[0]}: {e!r}") from None
                except TimeoutError:
                    self._drop()
                    raise HttpError(f"{method} {self.host}:{self.port}{path.split('?')[0]}: timed out") from None
        raise HttpError("unreachable")

    async def _roundtrip(self, method: str, path: str, body: bytes | None,
                         headers: dict[str, str] | None) -> HttpResponse:
        assert self._writer is not None and self._reader is not None
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host_header}",
                 "Connection: keep-alive", "Accept: application/json", "User-Agent: hft-oms"]
        if headers:
            lines.extend(f"{k}: {v}" for k, v in headers.items())
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method in ("POST", "PUT", "DELETE"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._writer.write(head + body if body else head)
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("connection closed before the response")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            self._drop()
            raise HttpError(f"malformed status line {status_line[:60]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            self._drop()
            raise HttpError(f"malformed status line {status_line[:60]!r}") from None
        hdrs: dict[str, str] = {}
        while True:
            line = await self._reader.readline()
            if not line:
                raise ConnectionError("connection closed in the headers")
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = await self._reader.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await self._reader.readline()
                    break
                chunks.append(await self._reader.readexactly(size))
                await self._reader.readexactly(2)
            data = b"".join(chunks)
        elif "content-length" in hdrs:
            data = await self._reader.readexactly(int(hdrs["content-length"]))
        else:
            data = await self._reader.read()
            self._drop()
        if hdrs.get("connection", "").lower() == "close":
            self._drop()
        return HttpResponse(status, hdrs, data)
