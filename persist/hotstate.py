"""Optional Redis hot state: positions, open orders, last best bid/ask, process status.

Updates are collected in dicts (latest value per key wins) and written with one
pipelined round trip per `flush()`. Redis absent is normal (no URL: nothing is
done); Redis lost is logged once and retried with back-off, never fatal. Keys
(`<ns>` is the shared-memory prefix, e.g. `hft`):
  <ns>:positions      hash  "<venue>:<instr_id>" -> JSON position snapshot
  <ns>:orders:open    hash  "<venue>:<cl_ord_id>" -> JSON latest order event (removed when terminal)
  <ns>:bbo            hash  "<venue>:<instr_id>" -> JSON {bid_px, bid_qty, ask_px, ask_qty, exch_ts_ns}
  <ns>:status:<role>  hash  counter label -> value, plus "updated_ns"
"""

from __future__ import annotations

import logging
import time

import numpy as np
import orjson

from common.enums import Exchange, OrderState
from ringbuf import records as R

log = logging.getLogger("persist.hotstate")

_TERMINAL = {int(s) for s in OrderState if s.is_terminal}
_VENUES = {int(v): v.key for v in Exchange}


def _venue(v: int) -> str:
    return _VENUES.get(int(v), str(int(v)))


def _s(b: bytes) -> str:
    return b.rstrip(b"\0").decode("utf-8", "replace")


class HotState:
    def __init__(self, url: str | None, namespace: str = "hft", max_backoff_s: float = 10.0,
                 counters=None) -> None:
        self.url = url or ""
        self.ns = namespace
        self.client = None
        self.up = False
        self.errors = 0
        self.writes = 0
        self._backoff_s = 0.2
        self._max_backoff_s = max_backoff_s
        self._next_try = 0.0
        self._positions: dict[str, bytes] = {}
        self._open: dict[str, bytes | None] = {}
        self._bbo: dict[str, bytes] = {}
        self._status: dict[str, dict] = {}
        self._ctr = counters
        self._c_up = counters.add("redis_up") if counters is not None else -1
        self._c_err = counters.add("redis_errors") if counters is not None else -1

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    # ---- collecting (cheap, no I/O) ---------------------------------------
    def on_events(self, raw: np.ndarray) -> None:
        if not self.url or raw.shape[0] == 0:
            return
        kinds = raw[:, 0]
        m = kinds == R.KIND_POSITION
        if m.any():
            for p in np.ascontiguousarray(raw[m]).view(R.POSITION_DTYPE).reshape(-1):
                key = f"{_venue(p['venue_id'])}:{int(p['instr_id'])}"
                self._positions[key] = orjson.dumps({
                    "venue": _venue(p["venue_id"]), "instr_id": int(p["instr_id"]),
                    "position": float(p["position"]), "avg_px": float(p["avg_px"]),
                    "realized_pnl": float(p["realized_pnl"]), "unrealized_pnl": float(p["unrealized_pnl"]),
                    "fees": float(p["fees"]), "mark_px": float(p["mark_px"]), "ts_ns": int(p["event_ts_ns"]),
                })
        m = kinds == R.KIND_ORDER_EVENT
        if m.any():
            for o in np.ascontiguousarray(raw[m]).view(R.ORDER_EVENT_DTYPE).reshape(-1):
                cl = _s(o["cl_ord_id"])
                if not cl:
                    continue
                key = f"{_venue(o['venue_id'])}:{cl}"
                state = int(o["state"])
                if state in _TERMINAL:
                    self._open[key] = None
                else:
                    self._open[key] = orjson.dumps({
                        "venue": _venue(o["venue_id"]), "cl_ord_id": cl, "venue_ord_id": _s(o["venue_ord_id"]),
                        "instr_id": int(o["instr_id"]), "side": int(o["side"]), "state": state,
                        "px": float(o["px"]), "qty": float(o["qty"]), "filled_qty": float(o["filled_qty"]),
                        "event_seq": int(o["event_seq"]), "ts_ns": int(o["event_ts_ns"]),
                    })

    def on_quotes(self, quotes: np.ndarray) -> None:
        """Latest best bid/ask from QUOTE_DTYPE records (only the last per instrument is kept)."""
        if not self.url or quotes.shape[0] == 0:
            return
        # last occurrence per (venue, instr): walk the unique keys from the end
        keys = quotes["venue_id"].astype(np.int64) << 16 | quotes["instr_id"].astype(np.int64)
        _, idx = np.unique(keys[::-1], return_index=True)
        for i in (quotes.shape[0] - 1 - idx):
            q = quotes[i]
            self._bbo[f"{_venue(q['venue_id'])}:{int(q['instr_id'])}"] = orjson.dumps({
                "bid_px": float(q["bid_px"]), "bid_qty": float(q["bid_qty"]), "ask_px": float(q["ask_px"]),
                "ask_qty": float(q["ask_qty"]), "exch_ts_ns": int(q["exch_ts_ns"]),
                "recv_ts_ns": int(q["recv_ts_ns"]),
            })

    def set_status(self, role: str, fields: dict) -> None:
        if self.url:
            self._status[role] = fields

    @property
    def dirty(self) -> bool:
        return bool(self._positions or self._open or self._bbo or self._status)

    # ---- writing ------------------------------------------------------------
    def _connect(self) -> None:
        import redis

        self.client = redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                           health_check_interval=0)
        self.client.ping()

    def flush(self) -> bool:
        """Write what was collected in one pipeline. Returns True when written (or nothing to do)."""
        if not self.url or not self.dirty:
            return True
        now = time.monotonic()
        if not self.up and now < self._next_try:
            return False
        try:
            if self.client is None or not self.up:
                self._connect()
                if self.errors:
                    log.warning("redis is back at %s", self.url)
            pipe = self.client.pipeline(transaction=False)
            ns = self.ns
            if self._positions:
                pipe.hset(f"{ns}:positions", mapping=self._positions)
            if self._open:
                live = {k: v for k, v in self._open.items() if v is not None}
                gone = [k for k, v in self._open.items() if v is None]
                if live:
                    pipe.hset(f"{ns}:orders:open", mapping=live)
                if gone:
                    pipe.hdel(f"{ns}:orders:open", *gone)
            if self._bbo:
                pipe.hset(f"{ns}:bbo", mapping=self._bbo)
            for role, fields in self._status.items():
                pipe.hset(f"{ns}:status:{role}", mapping={k: str(v) for k, v in fields.items()})
            pipe.execute()
        except Exception as e:  # redis.ConnectionError, TimeoutError, OSError, ResponseError
            self._lost(now, e)
            return False
        self._positions.clear()
        self._open.clear()
        self._bbo.clear()
        self._status.clear()
        self.writes += 1
        if not self.up:
            self.up = True
            self._backoff_s = 0.2
            if self._ctr is not None:
                self._ctr.set(self._c_up, 1)
        return True

    def _lost(self, now: float, e: Exception) -> None:
        if self.up or self.errors == 0:
            log.warning("redis unavailable at %s (%s); hot state kept in memory and retried",
                        self.url, " ".join(str(e).split())[:200])
        self.up = False
        self.errors += 1
        if self._ctr is not None:
            self._ctr.set(self._c_up, 0)
            self._ctr.inc(self._c_err)
        try:
            if self.client is not None:
                self.client.close()
        except Exception:
            pass
        self.client = None
        self._next_try = now + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self._max_backoff_s)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None
