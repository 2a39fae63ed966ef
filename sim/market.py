"""Seeded market generator: per-symbol fair price, per-venue books of integer ticks and lots.

Prices are integer ticks and quantities integer lots on every venue; strings
are made only when a frame is formatted. Frame contents depend on the seed
alone (never on wall time or on who is subscribed).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

# canonical symbol -> start price, typical level size (base units), per-venue (tick, lot, min qty, min notional)
KNOWN = {
    "BTC-USDT": (60000.0, 0.4, {"binance": ("0.01", "0.00001", "0.00001", "5"),
                                "okx": ("0.1", "0.00000001", "0.00001", "0"),
                                "gate": ("0.1", "0.000001", "0.00001", "3")}),
    "ETH-USDT": (3000.0, 4.0, {"binance": ("0.01", "0.0001", "0.0001", "5"),
                               "okx": ("0.01", "0.000001", "0.001", "0"),
                               "gate": ("0.01", "0.0001", "0.001", "3")}),
    "SOL-USDT": (150.0, 40.0, {"binance": ("0.01", "0.001", "0.001", "5"),
                               "okx": ("0.01", "0.000001", "0.01", "0"),
                               "gate": ("0.01", "0.001", "0.01", "3")}),
}
DEFAULT_SPEC = (100.0, 50.0, {"binance": ("0.01", "0.001", "0.001", "5"),
                              "okx": ("0.01", "0.0001", "0.001", "0"),
                              "gate": ("0.01", "0.001", "0.001", "3")})
VENUE_OFFSET_BPS = {"binance": 0.0, "okx": 0.6, "gate": -0.9}


def decimals(s: str) -> int:
    return len(s.split(".")[1].rstrip("0")) if "." in s else 0


def to_units(s: str, dec: int) -> int:
    """Decimal string -> integer count of 10^-dec, exactly."""
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    ip, _, fp = s.partition(".")
    if len(fp) > dec and fp[dec:].strip("0"):
        raise ValueError("too many decimals")
    fp = (fp + "0" * dec)[:dec]
    v = int(ip or "0") * 10 ** dec + (int(fp) if fp else 0)
    return -v if neg else v


def fmt_units(v: int, dec: int, pad: int | None = None) -> str:
    """Integer count of 10^-dec -> decimal string; pad=None strips trailing zeros."""
    if dec == 0:
        s = str(v)
        return s + ("." + "0" * pad if pad else "")
    neg = v < 0
    s = str(-v if neg else v).rjust(dec + 1, "0")
    ip, fp = s[:-dec], s[-dec:]
    if pad is None:
        fp = fp.rstrip("0")
    elif pad > dec:
        fp = fp + "0" * (pad - dec)
    out = ip + "." + fp if fp else ip
    return "-" + out if neg else out


def units_formatter(dec: int, pad: int | None):
    """fmt_units(v, dec, pad) specialised for one (dec, pad): the same strings, fewer steps."""
    if dec == 0:
        return lambda v: fmt_units(v, dec, pad)
    scale = 10 ** dec
    if pad is not None:
        pattern = "%d.%0" + str(dec) + "d" + "0" * max(0, pad - dec)

        def fmt_padded(v: int) -> str:
            if v < 0:
                return fmt_units(v, dec, pad)
            return pattern % divmod(v, scale)
        return fmt_padded
    frac = "%0" + str(dec) + "d"

    def fmt_stripped(v: int) -> str:
        if v < 0:
            return fmt_units(v, dec, pad)
        ip, fp = divmod(v, scale)
        if not fp:
            return str(ip)
        return f"{ip}.{(frac % fp).rstrip('0')}"
    return fmt_stripped


class Instrument:
    """One symbol on one venue: tick/lot in exact integer units and cached string formats."""

    def __init__(self, venue: str, symbol: str, index: int) -> None:
        start_px, level_qty, per_venue = KNOWN.get(symbol, DEFAULT_SPEC)
        tick_s, lot_s, min_qty_s, min_notional_s = per_venue[venue]
        self.venue = venue
        self.symbol = symbol
        self.base, self.quote = symbol.split("-")
        self.venue_symbol = {"binance": symbol.replace("-", ""), "okx": symbol,
                             "gate": symbol.replace("-", "_")}[venue]
        self.index = index
        self.inst_id_code = 100000 + index * 7 + 1  # OKX instIdCode: stable small ints
        self.tick_str, self.lot_str = tick_s, lot_s
        self.min_qty_str, self.min_notional_str = min_qty_s, min_notional_s
        self.px_dec = decimals(tick_s)
        self.qty_dec = decimals(lot_s)
        self.tick = float(tick_s)
        self.lot = float(lot_s)
        self.tick_units = to_units(tick_s, self.px_dec)
        self.lot_units = to_units(lot_s, self.qty_dec)
        self.min_lots = to_units(min_qty_s, self.qty_dec) // self.lot_units
        self.min_notional = float(min_notional_s)
        self.start_px = start_px
        self.level_lots = max(1, int(level_qty / self.lot))
        # Binance pads to 8 decimals; OKX and Gate send the shortest exact string
        self.pad = 8 if venue == "binance" else None
        self._px_cache: dict[int, str] = {}
        self._qty_cache: dict[int, str] = {}
        self._fmt_px = units_formatter(self.px_dec, self.pad)
        self._fmt_qty = units_formatter(self.qty_dec, self.pad)
        self._parse_px_cache: dict[str, int | None] = {}
        self._zero_level_cache: dict[int, str] = {}  # ticks -> '["px","0"]' (venue modules' frames)
        self._parse_qty_cache: dict[str, int | None] = {}

    def px(self, ticks: int) -> str:
        s = self._px_cache.get(ticks)
        if s is None:
            if len(self._px_cache) > 200_000:
                self._px_cache.clear()
            s = self._px_cache[ticks] = self._fmt_px(ticks * self.tick_units)
        return s

    def qty(self, lots: int) -> str:
        s = self._qty_cache.get(lots)
        if s is None:
            if len(self._qty_cache) > 200_000:
                self._qty_cache.clear()
            s = self._qty_cache[lots] = self._fmt_qty(lots * self.lot_units)
        return s

    def parse_px(self, s: str) -> int | None:
        """Decimal string -> ticks; None when not a multiple of the tick or not a positive number."""
        try:
            return self._parse_px_cache[s]
        except (KeyError, TypeError):
            pass
        try:
            units = to_units(s.strip(), self.px_dec)
        except (ValueError, AttributeError):
            return None
        v = None if units <= 0 or units % self.tick_units else units // self.tick_units
        if len(self._parse_px_cache) > 100_000:
            self._parse_px_cache.clear()
        self._parse_px_cache[s] = v
        return v

    def parse_qty(self, s: str) -> int | None:
        try:
            return self._parse_qty_cache[s]
        except (KeyError, TypeError):
            pass
        try:
            units = to_units(s.strip(), self.qty_dec)
        except (ValueError, AttributeError):
            return None
        v = None if units <= 0 or units % self.lot_units else units // self.lot_units
        if len(self._parse_qty_cache) > 100_000:
            self._parse_qty_cache.clear()
        self._parse_qty_cache[s] = v
        return v

    def px_float(self, ticks: int) -> float:
        return ticks * self.tick

    def qty_float(self, lots: int) -> float:
        return lots * self.lot


SIZE_TABLE_BITS = 12  # 4,096 pre-drawn level sizes per book

_NV_MAGICCONST = 4 * math.exp(-0.5) / math.sqrt(2.0)


def lots_sampler(rng: random.Random, level_lots: int):
    """max(1, int(level_lots * rng.lognormvariate(-0.5, 0.9))) with random.normalvariate's
    algorithm inlined: the same numbers from the same seed, without three Python calls a draw."""
    rnd = rng.random
    log, exp = math.log, math.exp
    nv = _NV_MAGICCONST

    def rand_lots() -> int:
        while True:
            u1 = rnd()
            u2 = 1.0 - rnd()
            z = nv * (u1 - 0.5) / u2
            if z * z / 4.0 <= -log(u2):
                break
        v = int(level_lots * exp(-0.5 + z * 0.9))
        return v if v > 1 else 1
    return rand_lots


def parse_decimal(s: object) -> float | None:
    if not isinstance(s, str | int | float) or isinstance(s, bool):
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


class Book:
    """One venue's book for one symbol. Bids and asks: ticks -> lots, with sorted key lists."""

    def __init__(self, inst: Instrument, rng: random.Random, depth: int) -> None:
        self.inst = inst
        self.rng = rng
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_keys: list[int] = []  # negative ticks, ascending => best bid first
        self.ask_keys: list[int] = []  # ticks ascending => best ask first
        self.chg_bids: dict[int, int] = {}
        self.chg_asks: dict[int, int] = {}
        self.trades: list[tuple[int, int, int, int]] = []  # (taker side +1 buy/-1 sell, ticks, lots, trade id)
        self.update_id = 1_000_000 + rng.randrange(1_000_000)  # Binance/Gate u
        self.first_update_id = self.update_id + 1
        self.seq_id = 5_000_000 + rng.randrange(1_000_000)  # OKX seqId
        self.prev_seq_id = -1
        self.trade_id = 10_000_000 + rng.randrange(1_000_000)
        self.last_top = (0, 0, 0, 0)
        self.top_changed = False
        self.steps = 0
        self.sweep_overflow: dict[tuple[int, int], int] = {}  # (maker side, ticks) -> lots beyond displayed
        # level sizes come from a table of seeded log-normal draws, picked by one C-level RNG
        # call: a few thousand distinct sizes look the same to a client as fresh draws, cost a
        # third of the generator's time less, and keep their strings in the instrument's cache
        draw = lots_sampler(rng, self.inst.level_lots)
        self.size_table = [draw() for _ in range(1 << SIZE_TABLE_BITS)]
        self._getrandbits = rng.getrandbits
        # when a consumer asks for it (OKX checksum), every key touched since it last looked:
        # bids as -ticks, asks as +ticks (the bid_keys / ask_keys convention)
        self.dirty: set[int] | None = None

    # -- levels -----------------------------------------------------------
    def set_bid(self, t: int, lots: int) -> None:
        if self.dirty is not None:
            self.dirty.add(-t)
        if lots > 0:
            if t not in self.bids:
                bisect.insort(self.bid_keys, -t)
            self.bids[t] = lots
        elif t in self.bids:
            del self.bids[t]
            i = bisect.bisect_left(self.bid_keys, -t)
            del self.bid_keys[i]
        else:
            return
        self.chg_bids[t] = lots

    def set_ask(self, t: int, lots: int) -> None:
        if self.dirty is not None:
            self.dirty.add(t)
        if lots > 0:
            if t not in self.asks:
                bisect.insort(self.ask_keys, t)
            self.asks[t] = lots
        elif t in self.asks:
            del self.asks[t]
            i = bisect.bisect_left(self.ask_keys, t)
            del self.ask_keys[i]
        else:
            return
        self.chg_asks[t] = lots

    def best_bid(self) -> int:
        return -self.bid_keys[0] if self.bid_keys else 0

    def best_ask(self) -> int:
        return self.ask_keys[0] if self.ask_keys else 0

    def top_bids(self, n: int) -> list[tuple[int, int]]:
        b = self.bids
        return [(-k, b[-k]) for k in self.bid_keys[:n]]

    def top_asks(self, n: int) -> list[tuple[int, int]]:
        a = self.asks
        return [(k, a[k]) for k in self.ask_keys[:n]]

    def rand_lots(self) -> int:
        return self.size_table[self._getrandbits(SIZE_TABLE_BITS)]

    # -- generation -------------------------------------------------------
    def seed_levels(self, mid_px: float) -> None:
        r = self.rng
        tick = self.inst.tick
        mid_t = mid_px / tick
        bb = math.floor(mid_t - 0.5)
        t = bb
        for _ in range(self.depth + 10):
            self.set_bid(t, self.rand_lots())
            t -= 1 + (r.random() < 0.35) + (r.random() < 0.15)
        t = bb + 1 + (r.random() < 0.3)
        for _ in range(self.depth + 10):
            self.set_ask(t, self.rand_lots())
            t += 1 + (r.random() < 0.35) + (r.random() < 0.15)
        self.chg_bids.clear()
        self.chg_asks.clear()
        self.last_top = self.top()

    def top(self) -> tuple[int, int, int, int]:
        bb, ba = self.best_bid(), self.best_ask()
        return (bb, self.bids.get(bb, 0), ba, self.asks.get(ba, 0))

    def begin_step(self) -> None:
        self.chg_bids.clear()
        self.chg_asks.clear()
        self.trades.clear()
        self.sweep_overflow.clear()

    def step(self, mid_px: float, trade_rate: float, noise: bool = True) -> None:
        """Move the book toward mid_px, change a few levels, print Poisson trades.

        Hot: written with locals and inlined helpers; it draws from the RNG in the order of the
        straightforward version (rand_lots() being sizes[grb(nb)]), so a seed gives fixed frames."""
        rnd = self.rng.random
        bk, ak = self.bid_keys, self.ask_keys
        bids, asks = self.bids, self.asks
        chg_b, chg_a = self.chg_bids, self.chg_asks
        set_bid, set_ask = self.set_bid, self.set_ask
        sizes, grb, nb = self.size_table, self._getrandbits, SIZE_TABLE_BITS
        mid_t = mid_px / self.inst.tick
        spread = 1 + (rnd() < 0.25) + (rnd() < 0.1)
        tb = math.floor(mid_t - spread / 2.0)
        ta = tb + spread
        # levels the new top crosses are gone
        dirty = self.dirty
        while bk and -bk[0] > tb:
            t = -bk[0]
            del bids[t]
            del bk[0]
            chg_b[t] = 0
            if dirty is not None:
                dirty.add(-t)
        while ak and ak[0] < ta:
            t = ak[0]
            del asks[t]
            del ak[0]
            chg_a[t] = 0
            if dirty is not None:
                dirty.add(t)
        if not bk or -bk[0] < tb - 2 or (noise and rnd() < 0.2 and -bk[0] < tb):
            set_bid(tb, sizes[grb(nb)])
        if not ak or ak[0] > ta + 2 or (noise and rnd() < 0.2 and ak[0] > ta):
            set_ask(ta, sizes[grb(nb)])
        if noise:
            last = self.depth - 1
            log = math.log
            for _ in range(1 + (rnd() < 0.5) + (rnd() < 0.25)):
                i = int(-log(1.0 - rnd()) / 0.15)  # random.expovariate(0.15), inlined
                if i > last:
                    i = last
                if rnd() < 0.5:
                    if i < len(bk):
                        t = -bk[i]
                        set_bid(t, 0 if (i > 0 and rnd() < 0.15) else sizes[grb(nb)])
                elif i < len(ak):
                    t = ak[i]
                    set_ask(t, 0 if (i > 0 and rnd() < 0.15) else sizes[grb(nb)])
            # Poisson trade arrivals
            n = 0
            if trade_rate > 0:
                lim = math.exp(-trade_rate)
                p = rnd()
                while p > lim and n < 8:
                    n += 1
                    p *= rnd()
            for _ in range(n):
                self.print_trade(1 if rnd() < 0.5 else -1)
        d = self.depth
        if len(bk) < d + 5 or len(ak) < d + 5 or len(bk) > d + 20 or len(ak) > d + 20:
            self._keep_depth()
        bb = -bk[0] if bk else 0
        ba = ak[0] if ak else 0
        top = (bb, bids.get(bb, 0), ba, asks.get(ba, 0))
        self.top_changed = top != self.last_top
        self.last_top = top
        self.steps += 1

    def print_trade(self, taker_side: int) -> None:
        r = self.rng
        if taker_side > 0:
            if not self.ask_keys:
                return
            t = self.ask_keys[0]
            avail = self.asks[t]
        else:
            if not self.bid_keys:
                return
            t = -self.bid_keys[0]
            avail = self.bids[t]
        lots = max(1, int(avail * r.random() * 0.6))
        sweep = r.random() < 0.15
        if sweep:
            lots = avail + max(1, int(avail * r.random() * 0.5))
        left = max(0, avail - lots)
        if taker_side > 0:
            self.set_ask(t, left)
        else:
            self.set_bid(t, left)
        if lots > avail:
            self.sweep_overflow[(-taker_side, t)] = lots - avail
        self.trade_id += 1
        self.trades.append((taker_side, t, lots, self.trade_id))

    def _keep_depth(self) -> None:
        r = self.rng
        d = self.depth
        while len(self.bid_keys) < d + 5:
            t = -self.bid_keys[-1] - 1 - (r.random() < 0.35) if self.bid_keys else self.best_ask() - 1
            self.set_bid(t, self.rand_lots())
        while len(self.ask_keys) < d + 5:
            t = self.ask_keys[-1] + 1 + (r.random() < 0.35) if self.ask_keys else self.best_bid() + 1
            self.set_ask(t, self.rand_lots())
        while len(self.bid_keys) > d + 20:
            self.set_bid(-self.bid_keys[-1], 0)
        while len(self.ask_keys) > d + 20:
            self.set_ask(self.ask_keys[-1], 0)


@dataclass
class SymbolState:
    symbol: str
    fair_px: float
    rng: random.Random
    books: dict[str, Book]
    step: int = 0


class Market:
    """All symbols' fair prices and per-venue books, stepped deterministically."""

    def __init__(self, symbols: list[str], venues: tuple[str, ...], seed: int, depth: int) -> None:
        self.symbols: dict[str, SymbolState] = {}
        self.instruments: dict[tuple[str, str], Instrument] = {}
        for i, sym in enumerate(symbols):
            srng = random.Random(f"{seed}/{sym}")
            start = KNOWN.get(sym, DEFAULT_SPEC)[0]
            books = {}
            for v in venues:
                inst = Instrument(v, sym, i)
                self.instruments[(v, sym)] = inst
                b = Book(inst, random.Random(f"{seed}/{sym}/{v}"), depth)
                b.seed_levels(start * (1 + VENUE_OFFSET_BPS[v] * 1e-4))
                books[v] = b
            self.symbols[sym] = SymbolState(sym, start, srng, books)
        self.trade_rate = 0.35  # mean generated trades per book step
        self.jump_prob = 0.002
        self.vol_bps = 0.8

    def advance_fair(self, st: SymbolState, jump_bps: float | None = None) -> float:
        r = st.rng
        if jump_bps is not None:
            st.fair_px *= 1 + jump_bps * 1e-4
        else:
            ret = r.gauss(0.0, self.vol_bps * 1e-4)
            if r.random() < self.jump_prob:
                ret += (1 if r.random() < 0.5 else -1) * r.uniform(10, 40) * 1e-4
            # weak pull toward the start price keeps long runs bounded
            start = KNOWN.get(st.symbol, DEFAULT_SPEC)[0]
            ret -= 0.001 * math.log(st.fair_px / start)
            st.fair_px *= math.exp(ret)
        st.step += 1
        return st.fair_px

    def venue_mid(self, st: SymbolState, venue: str) -> float:
        return st.fair_px * (1 + VENUE_OFFSET_BPS[venue] * 1e-4)
