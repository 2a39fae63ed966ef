"""Client order ids: one alphanumeric id per order, valid on every venue, unique across restarts.

The id is `<epoch><salt><counter>` in base62 (letters and digits only, at most 24
characters), so it passes OKX's `[A-Za-z0-9]{1,32}`, Binance's `[A-Za-z0-9-_]{1,36}`
and, with Gate's mandatory `t-` prefix added on the wire, Gate's `t-` + 28 rule.
The epoch is the process start in milliseconds: a restart never reuses an id.
"""

from __future__ import annotations

import os
import re
import time

from common.enums import Exchange

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 2-digit base62 string, zero-padded
_ONE_OR_TWO = [""] + [_PAIRS[i].lstrip("0") for i in range(1, 3844)]  # the same without leading zeros

OKX_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
BINANCE_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
GATE_RE = re.compile(r"^t-[0-9A-Za-z_.\-]{1,28}$")
GATE_PREFIX = "t-"


def base62(n: int, width: int = 0) -> str:
    if n < 0:
        raise ValueError("base62 of a negative number")
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    s = "".join(reversed(out)) or "0"
    return s.rjust(width, "0")


def valid_client_id(venue: Exchange, wire_id: str) -> bool:
    """Is `wire_id` (as sent on the wire, Gate ids with their `t-`) valid for `venue`?"""
    if venue == Exchange.OKX:
        return bool(OKX_RE.match(wire_id))
    if venue == Exchange.BINANCE:
        return bool(BINANCE_RE.match(wire_id))
    if venue == Exchange.GATE:
        return bool(GATE_RE.match(wire_id)) and len(wire_id.encode()) <= 30
    return False


def to_wire(venue: Exchange, cl_ord_id: str) -> str:
    return GATE_PREFIX + cl_ord_id if venue == Exchange.GATE else cl_ord_id


def from_wire(venue: Exchange, wire_id: str) -> str:
    if venue == Exchange.GATE and wire_id.startswith(GATE_PREFIX):
        return wire_id[2:]
    return wire_id


class ClOrdIdGen:
    """`next()` -> a fresh id. Prefix = start time in ms (7 base62 chars, good until 4199)
    plus 2 chars of pid/entropy so two processes started in the same millisecond differ."""

    __slots__ = ("prefix", "_n")

    def __init__(self, epoch_ms: int | None = None, salt: int | None = None) -> None:
        epoch_ms = time.time_ns() // 1_000_000 if epoch_ms is None else epoch_ms
        salt = (os.getpid() ^ int.from_bytes(os.urandom(2), "little")) % 3844 if salt is None else salt % 3844
        self.prefix = base62(epoch_ms, 7) + base62(salt, 2)
        self._n = 0

    def next(self) -> str:
        self._n += 1
        n = self._n
        # the hot path of submit(): base62 two digits at a time (same string as base62(n))
        if n < 3844:
            return self.prefix + _ONE_OR_TWO[n]
        out = ""
        while n >= 3844:
            n, r = divmod(n, 3844)
            out = _PAIRS[r] + out
        return self.prefix + (_ONE_OR_TWO[n] if n else "") + out

    @property
    def issued(self) -> int:
        return self._n
