"""Fault injection: one-shot or scheduled faults per venue, applied through the venue apps."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.core import Simulator

FAULTS = {
    "drop": "close every WS connection abruptly (params: scope=all|md|orders)",
    "stall": "stop market data without closing (params: duration_s=5)",
    "skip_seq": "skip a sequence number in the next book frame of each symbol",
    "bad_checksum": "wrong checksum in the next OKX books frame of each symbol (legacy mode)",
    "malformed": "send a malformed text frame on every md connection",
    "delay_ack": "delay the next order replies (params: ms=2000, count=1)",
    "drop_ack": "never send the next order replies (params: count=1)",
    "rate_limit": "answer order requests with rate-limit errors (params: count=1 or duration_s)",
    "restart": "close all connections, refuse new ones for down_s, listen again (params: down_s=1)",
    "server_shutdown": "send the venue's shutdown / upgrade notice",
}
VENUE_NAMES = ("binance", "okx", "gate")


class FaultError(ValueError):
    pass


class FaultManager:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.schedules: dict[int, dict] = {}
        self._ids = itertools.count(1)
        self.history: list[dict] = []

    def add(self, venue: str, name: str, params: dict | None = None, every_s: float | None = None) -> dict:
        params = dict(params or {})
        if name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; known: {sorted(FAULTS)}")
        if venue not in VENUE_NAMES + ("all",):
            raise FaultError(f"unknown venue {venue!r}; use one of {VENUE_NAMES + ('all',)}")
        if every_s is not None:
            every_s = float(every_s)
            if not every_s > 0:
                raise FaultError("every_s must be > 0")
            fid = next(self._ids)
            entry = {"id": fid, "venue": venue, "name": name, "params": params, "every_s": every_s, "fired": 0}
            entry["task"] = self.sim.spawn(self._run_schedule(entry))
            self.schedules[fid] = entry
            return {"id": fid, "scheduled": True}
        return {"id": next(self._ids), "result": self.fire(venue, name, params)}

    def fire(self, venue: str, name: str, params: dict) -> Any:
        venues = VENUE_NAMES if venue == "all" else (venue,)
        out = {}
        for v in venues:
            try:
                out[v] = self.sim.venues[v].fault(name, params)
            except (TypeError, ValueError) as e:
                raise FaultError(f"fault {name} on {v}: {e}") from None
        self.history.append({"venue": venue, "name": name, "params": params})
        del self.history[:-200]
        return out

    async def _run_schedule(self, entry: dict) -> None:
        while True:
            await asyncio.sleep(entry["every_s"])
            try:
                self.fire(entry["venue"], entry["name"], entry["params"])
                entry["fired"] += 1
            except FaultError:
                return

    def clear(self, venue: str | None = None) -> int:
        n = 0
        for fid, e in list(self.schedules.items()):
            if venue is None or e["venue"] == venue:
                e["task"].cancel()
                del self.schedules[fid]
                n += 1
        for v, app in self.sim.venues.items():
            if venue is None or venue == v:
                app.clear_faults()
        return n

    def describe(self) -> dict:
        return {"names": FAULTS,
                "scheduled": [{k: v for k, v in e.items() if k != "task"} for e in self.schedules.values()],
                "history": self.history[-50:]}
