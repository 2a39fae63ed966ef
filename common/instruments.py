"""Instruments: canonical symbols, per-venue names, small-int ids and tick/lot rules.

Canonical form is `BASE-QUOTE` (e.g. BTC-USDT). Venues spell it BTCUSDT (Binance),
BTC-USDT (OKX) and BTC_USDT (Gate). Ids are small ints for the hot path, assigned
in config order so every process agrees; a symbol first seen on the wire gets the
next free id in that process. Names stay at the edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.enums import Exchange

# Quote assets tried longest first when splitting a Binance symbol such as BTCUSDT.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")


class InstrumentError(ValueError):
    """A symbol or instrument rule is malformed."""


def split_canonical(symbol: str) -> tuple[str, str]:
    parts = symbol.strip().upper().replace("_", "-").replace("/", "-").split("-")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InstrumentError(f"symbol {symbol!r} is not BASE-QUOTE (e.g. BTC-USDT)")
    return parts[0], parts[1]


def canonical(base: str, quote: str) -> str:
    return f"{base.upper()}-{quote.upper()}"


def venue_symbol(symbol: str, venue: Exchange) -> str:
    """Canonical BTC-USDT -> BTCUSDT (Binance), BTC-USDT (OKX), BTC_USDT (Gate)."""
    base, quote = split_canonical(symbol)
    if venue == Exchange.BINANCE:
        return base + quote
    if venue == Exchange.OKX:
        return f"{base}-{quote}"
    if venue == Exchange.GATE:
        return f"{base}_{quote}"
    raise InstrumentError(f"unknown venue {venue!r}")


def from_venue_symbol(vsym: str, venue: Exchange) -> str:
    """Venue spelling -> canonical BASE-QUOTE."""
    s = vsym.strip().upper()
    if venue == Exchange.BINANCE:
        for q in QUOTE_ASSETS:
            if s.endswith(q) and len(s) > len(q):
                return canonical(s[: -len(q)], q)
        raise InstrumentError(f"cannot split Binance symbol {vsym!r} into base and quote")
    if venue in (Exchange.OKX, Exchange.GATE):
        return canonical(*split_canonical(s))
    raise InstrumentError(f"unknown venue {venue!r}")


def decimals(step: float) -> int:
    """Decimal places needed to print multiples of `step` exactly (0.01 -> 2, 1e-5 -> 5)."""
    if step <= 0:
        raise InstrumentError(f"step must be positive, got {step}")
    d = 0
    while d < 12 and abs(round(step * 10**d) - step * 10**d) > 1e-9 * 10**d:
        d += 1
    return d


@dataclass(slots=True)
class InstrumentSpec:
    venue: Exchange
    symbol: str  # canonical
    instr_id: int
    tick_size: float = 0.01
    lot_size: float = 0.0001
    min_qty: float = 0.0
    min_notional: float = 0.0
    venue_code: int = 0  # OKX instIdCode
    px_decimals: int = field(init=False, default=2)
    qty_decimals: int = field(init=False, default=4)

    def __post_init__(self) -> None:
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise InstrumentError(f"{self.symbol} on {self.venue.key}: tick and lot sizes must be positive")
        self.px_decimals = decimals(self.tick_size)
        self.qty_decimals = decimals(self.lot_size)

    @property
    def venue_symbol(self) -> str:
        return venue_symbol(self.symbol, self.venue)

    def round_px(self, px: float, side: int = 0) -> float:
        """To the tick: buys round down, sells up (never more aggressive), 0 = nearest."""
        n = px / self.tick_size
        if side > 0:
            n = math.floor(n + 1e-9)
        elif side < 0:
            n = math.ceil(n - 1e-9)
        else:
            n = round(n)
        return round(n * self.tick_size, self.px_decimals)

    def round_qty(self, qty: float) -> float:
        """Down to the lot size."""
        return round(math.floor(qty / self.lot_size + 1e-9) * self.lot_size, self.qty_decimals)

    def is_on_tick(self, px: float) -> bool:
        n = px / self.tick_size
        return abs(n - round(n)) < 1e-6

    def is_on_lot(self, qty: float) -> bool:
        n = qty / self.lot_size
        return abs(n - round(n)) < 1e-6

    def fmt_px(self, px: float) -> str:
        return f"{px:.{self.px_decimals}f}"

    def fmt_qty(self, qty: float) -> str:
        return f"{qty:.{self.qty_decimals}f}"


class Instruments:
    """Registry of instrument ids (one id per canonical symbol, shared by all venues)
    and per-venue specs."""

    def __init__(self, symbols: list[str] | tuple[str, ...] = ()) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = [""]  # id 0 = unknown
        self._specs: dict[tuple[int, int], InstrumentSpec] = {}
        for s in symbols:
            self.id_for(s)

    def id_for(self, symbol: str) -> int:
        """Id of a canonical symbol, assigned on first sight."""
        i = self._ids.get(symbol)
        if i is None:
            base, quote = split_canonical(symbol)
            symbol = canonical(base, quote)
            i = self._ids.get(symbol)
            if i is None:
                i = len(self._names)
                if i > 0xFFFF:
                    raise InstrumentError("more than 65535 instruments")
                self._ids[symbol] = i
                self._names.append(symbol)
        return i

    def id_for_venue_symbol(self, vsym: str, venue: Exchange) -> int:
        return self.id_for(from_venue_symbol(vsym, venue))

    def name(self, instr_id: int) -> str:
        return self._names[instr_id] if 0 < instr_id < len(self._names) else ""

    def symbols(self) -> list[str]:
        return self._names[1:]

    def __len__(self) -> int:
        return len(self._names) - 1

    def set_spec(self, spec: InstrumentSpec) -> None:
        self._specs[(int(spec.venue), spec.instr_id)] = spec

    def spec(self, venue: Exchange | int, instr_id: int) -> InstrumentSpec | None:
        return self._specs.get((int(venue), instr_id))

    def add(self, venue: Exchange, symbol: str, **rules) -> InstrumentSpec:
        spec = InstrumentSpec(venue=venue, symbol=canonical(*split_canonical(symbol)),
                              instr_id=self.id_for(symbol), **rules)
        self.set_spec(spec)
        return spec

    def specs(self) -> list[InstrumentSpec]:
        return list(self._specs.values())
