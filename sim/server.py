"""HTTP/1.1 + RFC 6455 WebSocket server on one asyncio port, written for the simulator.

Owning the framing lets the simulator batch preformatted frames per
connection, stall or reset a stream on demand and survive any client input.
It knows nothing about venues: an App routes requests and WebSocket sessions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
import time
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

log = logging.getLogger("sim.server")

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_WS_MESSAGE_BYTES = 1024 * 1024
MAX_OUTBOUND_BYTES = 32 * 1024 * 1024

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

REASONS = {200: "OK", 101: "Switching Protocols", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           418: "I'm a teapot", 426: "Upgrade Required", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


# precomputed 2-byte headers of FIN text frames shorter than 126 bytes
_SHORT_TEXT_HDR = [bytes((0x81, n)) for n in range(126)]
_pack_hdr16 = struct.Struct("!BBH").pack
_pack_hdr64 = struct.Struct("!BBQ").pack


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return _pack_hdr16(0x80 | opcode, 126, n) + payload
    return _pack_hdr64(0x80 | opcode, 127, n) + payload


def text_frame(text: str | bytes) -> bytes:
    payload = text.encode() if text.__class__ is str else text
    n = len(payload)
    if n < 126:
        return _SHORT_TEXT_HDR[n] + payload  # type: ignore[operator]
    if n < 65536:
        return _pack_hdr16(0x81, 126, n) + payload  # type: ignore[operator]
    return _pack_hdr64(0x81, 127, n) + payload  # type: ignore[operator]


def unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


SCAN_MIN_FRAMES = 4  # fewer complete frames than this in a read: unmask them one by one (unmask())
_ZEROS = [bytes(n) for n in range(15)]


def scan_frames(buf: bytearray, pos: int) -> list[tuple[int, bytes, int]]:
    """The complete, well-formed client frames from pos on, unmasked in one numpy XOR:
    [(first header byte, payload, end position)]. It stops before the first frame that is
    incomplete or whose header is bad (reserved bits, unmasked, too long), which the caller
    parses (and rejects) itself. Empty when fewer than SCAN_MIN_FRAMES frames are found.

    Unmasking a 230-byte order request with Python ints (unmask()) costs ~14k instructions, as
    much as parsing its JSON; one XOR over a read's frames costs ~5k a frame, most of it
    building the mask stream."""
    n = len(buf)
    heads: list[tuple[int, int, int]] = []
    p = pos
    while n - p >= 6:
        b0, b1 = buf[p], buf[p + 1]
        if b0 & 0x70 or not b1 & 0x80:
            break
        ln = b1 & 0x7F
        if ln < 126:
            start = p + 6
        elif ln == 126:
            ln = (buf[p + 2] << 8) | buf[p + 3]
            start = p + 8
        else:
            if n - p < 14:
                break
            ln = struct.unpack_from("!Q", buf, p + 2)[0]
            if ln > MAX_WS_MESSAGE_BYTES:
                break
            start = p + 14
        end = start + ln
        if end > n:
            break
        heads.append((b0, start, end))
        p = end
    if len(heads) < SCAN_MIN_FRAMES:
        return []
    masks: list[bytes | bytearray] = []
    p = pos
    for _b0, start, end in heads:
        masks.append(_ZEROS[start - p])  # header bytes: left as they are, never read back
        masks.append((buf[start - 4:start] * (((end - start) >> 2) + 1))[:end - start])
        p = end
    stream = b"".join(masks)
    plain = np.bitwise_xor(np.frombuffer(buf, np.uint8, len(stream), pos),
                           np.frombuffer(stream, np.uint8)).tobytes()
    return [(b0, plain[start - pos:end - pos], end) for b0, start, end in heads]


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[:120]


class Request:
    __slots__ = ("method", "target", "path", "query", "args", "headers", "body", "peer")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes, peer: Any) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.args: dict[str, str] = dict(parse_qsl(query, keep_blank_values=True))
        self.headers = headers
        self.body = body
        self.peer = peer


class Response:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes | str, headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers or []


class WsSession:
    """Per-connection WebSocket handler; venues subclass it."""

    conn: Conn

    def on_open(self) -> None:
        pass

    def on_text(self, data: bytes) -> None:
        pass

    def on_binary(self, data: bytes) -> None:
        self.conn.close(1003, "binary frames not supported")

    def on_close(self) -> None:
        pass


class App:
    """Routes one port's HTTP requests and WebSocket upgrades."""

    def handle_http(self, req: Request) -> Response:
        return Response(404, b'{"error":"not found"}')

    def open_ws(self, req: Request) -> WsSession | Response | None:
        return None


class Conn(asyncio.Protocol):
    """One client connection: HTTP until upgraded, then WebSocket."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ws: WsSession | None = None
        self.closed = False
        self.close_sent = False
        self.frag_op = 0
        self.frag: list[bytes] = []
        self.frag_len = 0
        self.outbox: list[bytes] = []
        self.flush_scheduled = False
        self.probes: list[dict] = []
        self.stalled_until_ns = 0
        self.paused_writing = False
        self.peer: Any = None
        self.kind = "http"  # venue sessions set "md" / "orders" for fault scoping
        self.frames_sent = 0
        self.batching = False  # while handling one read, replies are gathered into one write
        self.last_pong_ns = 0  # when the client last answered a server ping (Binance keep-alive)
        self.ping_sent_ns = 0  # when the oldest unanswered server ping went out (0: none pending)

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.server.conns.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
        if self.ws is not None:
            ws, self.ws = self.ws, None
            try:
                ws.on_close()
            except Exception:
                log.exception("ws on_close failed")

    def eof_received(self) -> bool | None:
        # half-closed client: finish what we were doing and close
        if self.ws is not None and not self.close_sent:
            self.close(1000, "")
        return False

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        self.server.reads_in += 1
        self.batching = True
        try:
            if self.ws is None:
                self._process_http()
            if self.ws is not None:
                self._process_ws()
        except Exception:
            log.exception("connection handler failed; closing connection")
            self.abort()
        finally:
            self.batching = False
            if self.outbox:
                self.flush()

    # -- HTTP -------------------------------------------------------------
    def _process_http(self) -> None:
        while self.ws is None and not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    self._http_error(431, "request header too large")
                return
            if end > MAX_HEADER_BYTES:
                self._http_error(431, "request header too large")
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._http_error(400, "bad request line")
                return
            method, target, _version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, sep, v = line.partition(":")
                if not sep:
                    self._http_error(400, "bad header line")
                    return
                headers[k.strip().lower()] = v.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._http_error(400, "chunked bodies are not supported")
                return
            try:
                clen = int(headers.get("content-length", "0") or 0)
            except ValueError:
                self._http_error(400, "bad content-length")
                return
            if clen < 0 or clen > MAX_BODY_BYTES:
                self._http_error(413, "body too large")
                return
            if len(self.buf) < end + 4 + clen:
                return
            body = bytes(self.buf[end + 4:end + 4 + clen])
            del self.buf[:end + 4 + clen]
            req = Request(method.upper(), target, headers, body, self.peer)
            if headers.get("upgrade", "").lower() == "websocket":
                self._upgrade(req)
                continue
            try:
                resp = self.app.handle_http(req)
            except Exception:
                log.exception("http handler failed for %s %s", method, target)
                resp = Response(500, b'{"error":"internal error"}')
            keep = headers.get("connection", "").lower() != "close"
            self.write_response(resp, keep)
            if not keep:
                self.closed = True
                return

    def write_response(self, resp: Response, keep_alive: bool = True) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        hdr = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}",
               f"Content-Length: {len(resp.body)}"]
        if not any(k.lower() == "content-type" for k, _ in resp.headers):
            hdr.append("Content-Type: application/json")
        hdr += [f"{k}: {v}" for k, v in resp.headers]
        if not keep_alive:
            hdr.append("Connection: close")
        self.transport.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + resp.body)
        if not keep_alive:
            self.transport.close()

    def _http_error(self, status: int, msg: str) -> None:
        self.write_response(Response(status, b'{"error":"' + msg.encode() + b'"}'), keep_alive=False)
        self.closed = True
        self.buf.clear()

    def _upgrade(self, req: Request) -> None:
        key = req.headers.get("sec-websocket-key", "")
        if req.method != "GET" or not key or "upgrade" not in req.headers.get("connection", "").lower():
            self._http_error(400, "bad websocket upgrade")
            return
        if self.server.refusing:
            self._http_error(503, "venue restarting")
            return
        try:
            result = self.app.open_ws(req)
        except Exception:
            log.exception("open_ws failed for %s", req.target)
            result = Response(500, b'{"error":"internal error"}')
        if result is None:
            self._http_error(404, "no websocket at this path")
            return
        if isinstance(result, Response):
            self.write_response(result, keep_alive=False)
            self.closed = True
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        assert self.transport is not None
        self.transport.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n").encode())
        self.ws = result
        result.conn = self
        result.on_open()

    # -- WebSocket --------------------------------------------------------
    def _process_ws(self) -> None:
        """Parse every complete frame in the buffer; the consumed bytes are cut once at the end
        (cutting per frame is quadratic in a read that carries hundreds of pipelined requests).
        A run of well-formed frames is unmasked in one pass first (scan_frames); what it leaves
        (a partial or bad frame, or too few frames) is parsed here one frame at a time."""
        buf = self.buf
        pos = 0
        try:
            while not self.closed and self.ws is not None:
                run = scan_frames(buf, pos)
                if run:
                    for b0, payload, end in run:
                        if self.closed or self.ws is None:
                            return
                        pos = end
                        if b0 == 0x81 and not self.frag_op:  # a whole text message: the usual case
                            self.server.msgs_in += 1
                            if not payload.isascii():
                                try:
                                    payload.decode("utf-8")
                                except UnicodeDecodeError:
                                    self.close(1007, "invalid utf-8")
                                    return
                            self.ws.on_text(payload)
                        elif not self._on_frame(b0 & 0x80, b0 & 0x0F, payload):
                            return
                    continue
                n = len(buf) - pos
                if n < 2:
                    return
                b0, b1 = buf[pos], buf[pos + 1]
                fin = b0 & 0x80
                opcode = b0 & 0x0F
                if b0 & 0x70:
                    self.close(1002, "reserved bits set")
                    return
                if not b1 & 0x80:
                    self.close(1002, "client frames must be masked")
                    return
                ln = b1 & 0x7F
                hdr = 2
                if ln == 126:
                    if n < 4:
                        return
                    ln = (buf[pos + 2] << 8) | buf[pos + 3]
                    hdr = 4
                elif ln == 127:
                    if n < 10:
                        return
                    ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                    hdr = 10
                if ln > MAX_WS_MESSAGE_BYTES:
                    self.close(1009, "message too big")
                    return
                if n < hdr + 4 + ln:
                    return
                start = pos + hdr + 4
                mask = bytes(buf[start - 4:start])
                payload = unmask(bytes(buf[start:start + ln]), mask) if mask != b"\0\0\0\0" \
                    else bytes(buf[start:start + ln])
                pos = start + ln
                if not self._on_frame(fin, opcode, payload):
                    return
        finally:
            if pos:
                del buf[:pos]

    def _on_frame(self, fin: int, opcode: int, payload: bytes) -> bool:
        """One unmasked frame whose header passed the checks; False when parsing must stop."""
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                self.close(1002, "bad control frame")
                return False
            if opcode == OP_PING:
                self.send_now(encode_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                if not self.close_sent:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                    self.close(code if 1000 <= code < 5000 else 1000, "")
                elif self.transport is not None:
                    self.transport.close()
                return False
            elif opcode == OP_PONG:
                self.last_pong_ns = time.monotonic_ns()
                self.ping_sent_ns = 0  # the outstanding ping(s) are answered
            else:
                self.close(1002, "unknown opcode")
                return False
            return True
        if opcode == OP_CONT:
            if not self.frag_op:
                self.close(1002, "unexpected continuation")
                return False
            self.frag.append(payload)
            self.frag_len += len(payload)
            if self.frag_len > MAX_WS_MESSAGE_BYTES:
                self.close(1009, "message too big")
                return False
            if not fin:
                return True
            opcode, payload = self.frag_op, b"".join(self.frag)
            self.frag_op, self.frag, self.frag_len = 0, [], 0
        elif opcode == OP_TEXT or opcode == OP_BIN:
            if self.frag_op:
                self.close(1002, "expected continuation")
                return False
            if not fin:
                self.frag_op, self.frag, self.frag_len = opcode, [payload], len(payload)
                return True
        else:
            self.close(1002, "unknown opcode")
            return False
        self.server.msgs_in += 1
        ws = self.ws
        assert ws is not None
        if opcode == OP_TEXT:
            if not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.close(1007, "invalid utf-8")
                    return False
            ws.on_text(payload)
        else:
            ws.on_binary(payload)
        return True

    def send_now(self, frame: bytes) -> None:
        """Write a frame immediately (order replies, control frames)."""
        t = self.transport
        if t is None or self.closed or self.close_sent:
            return
        if self.batching:
            self.outbox.append(frame)
            return
        if self.outbox:
            self.flush()
        t.write(frame)
        self.frames_sent += 1
        if t.get_write_buffer_size() > MAX_OUTBOUND_BYTES:
            self.abort()

    def send_text(self, text: str | bytes) -> None:
        """send_now(text_frame(text)), inlined for the common case of a reply or push made while
        one read's requests are handled (three to four per order)."""
        if self.batching and self.transport is not None and not self.closed and not self.close_sent:
            payload = text.encode() if text.__class__ is str else text
            n = len(payload)
            if n < 126:
                self.outbox.append(_SHORT_TEXT_HDR[n] + payload)  # type: ignore[operator]
            elif n < 65536:
                self.outbox.append(_pack_hdr16(0x81, 126, n) + payload)  # type: ignore[operator]
            else:
                self.outbox.append(text_frame(payload))
            return
        self.send_now(text_frame(text))

    def send_md(self, frame: bytes, probe: dict | None = None) -> None:
        """Queue a market-data frame; frames queued in one loop turn go out in one write."""
        if self.closed or self.close_sent:
            return
        if self.stalled_until_ns:
            if time.monotonic_ns() < self.stalled_until_ns:
                return
            self.stalled_until_ns = 0
        self.outbox.append(frame)
        if probe is not None:
            self.probes.append(probe)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.server.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if not self.outbox:
            return
        t = self.transport
        out = self.outbox
        self.outbox = []
        if t is None or self.closed or t.is_closing():
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        if self.probes:
            now = time.monotonic_ns()
            for p in self.probes:
                if not p.get("send_ns"):
                    p["send_ns"] = now
            self.probes = []
        t.write(data)
        self.frames_sent += len(out)
        self.server.frames_out += len(out)
        if t.get_write_buffer_size() > MAX_OUTBOUND_BYTES:
            log.warning("slow consumer %s: outbound buffer over %d bytes, dropping", self.peer,
                        MAX_OUTBOUND_BYTES)
            self.abort()

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.transport is None or self.closed:
            return
        if not self.close_sent:
            self.flush()
            self.close_sent = True
            self.transport.write(encode_frame(close_payload(code, reason), OP_CLOSE))
        # give the client a moment to answer the close, then drop the socket
        self.server.loop.call_later(2.0, self._force_close)

    def _force_close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a reset)."""
        self.outbox = []
        if self.transport is not None:
            self.transport.abort()
        self.closed = True


class Server:
    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.loop = asyncio.get_event_loop()
        self.srv: asyncio.base_events.Server | None = None
        self.conns: set[Conn] = set()
        self.refusing = False
        self.frames_out = 0
        self.msgs_in = 0
        self.reads_in = 0  # data_received calls: messages_received / reads_in is the batching a client gets

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.srv = await self.loop.create_server(lambda: Conn(self), self.host, self.port,
                                                 reuse_address=True, backlog=512)
        self.port = self.srv.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.srv is not None:
            self.srv.close()
            self.srv = None
        for c in list(self.conns):
            c.abort()

    def drop_all(self, kinds: tuple[str, ...] | None = None) -> int:
        n = 0
        for c in list(self.conns):
            if c.ws is not None and (kinds is None or c.kind in kinds):
                c.abort()
                n += 1
        return n

    async def restart(self, down_s: float) -> None:
        """Close the listener and every connection, stay down for down_s, listen again."""
        if self.srv is not None:
            self.srv.close()
            self.srv = None
        for c in list(self.conns):
            c.abort()
        await asyncio.sleep(down_s)
        self.srv = await self.loop.create_server(lambda: Conn(self), self.host, self.port,
                                                 reuse_address=True, backlog=512)
