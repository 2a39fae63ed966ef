"""Market data for a backtest: recorded md files (persist.recorder format) or a generated market
(the simulator's seeded generator), as one MD_DTYPE array in receive-time order.

Bad files raise DataError with a one-line reason; malformed records inside a good file are
counted and dropped, never fatal. Must not change the records' meaning: the strategy sees
what the live feed wrote.
"""

from __future__ import annotations

import os

import numpy as np

from common.enums import Exchange
from common.instruments import Instruments
from ringbuf import records as R

VENUE_NAMES = {1: "binance", 2: "okx", 3: "gate"}
_MD_KINDS = (R.KIND_QUOTE, R.KIND_TRADE, R.KIND_BOOK_LEVEL, R.KIND_BOOK_RESET)


class DataError(ValueError):
    """A data file or directory cannot be replayed (one-line message)."""


def _md_reader():
    try:
        from persist.recorder import MdFileError, list_md_files, open_md_file
    except ImportError as e:  # the recorder is another engineer's module: say so plainly
        raise DataError(f"the market-data recorder (persist.recorder) is not available: {e}") from None
    return MdFileError, list_md_files, open_md_file


def load_files(path: str) -> tuple[np.ndarray, dict]:
    """Every record of a .md file or of all .md files below a directory, merged in receive-time
    order (stable: a frame's records keep their order). Returns (records, info)."""
    MdFileError, list_md_files, open_md_file = _md_reader()
    if not os.path.exists(path):
        raise DataError(f"{path} does not exist; give a .md recording or a directory such as data/md")
    files = list_md_files(path)
    if not files:
        raise DataError(f"no .md recordings under {path}")
    parts = []
    for f in files:
        try:
            parts.append(np.asarray(open_md_file(f)))
        except MdFileError as e:
            raise DataError(str(e)) from None
        except (OSError, ValueError) as e:
            raise DataError(f"{f}: cannot read ({e})") from None
    recs = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0], copy=True)
    recs, dropped = clean(recs)
    order = np.argsort(recs["recv_ts_ns"], kind="stable")
    recs = np.ascontiguousarray(recs[order])
    return recs, {"source": "files", "path": path, "files": files, "records": int(recs.shape[0]),
                  "malformed": dropped}


def clean(recs: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop records a strategy host would count as malformed (unknown kind, venue or
    instrument, non-finite price); returns (kept, dropped)."""
    if recs.shape[0] == 0:
        return recs, 0
    kind = recs["kind"]
    ok = np.isin(kind, _MD_KINDS) & (recs["venue_id"] >= 1) & (recs["venue_id"] <= 3) & (recs["instr_id"] > 0)
    ok &= np.isfinite(recs["f0"]) & np.isfinite(recs["f1"]) & (recs["recv_ts_ns"] > 0)
    q = kind == R.KIND_QUOTE
    ok &= ~q | (np.isfinite(recs["f2"]) & np.isfinite(recs["f3"]) & (recs["f0"] >= 0) & (recs["f2"] >= 0))
    dropped = int((~ok).sum())
    return (recs[ok] if dropped else recs), dropped


# ---- generated market -------------------------------------------------------------------
class _Out:
    """Record sink: tuples in MD_STRUCT argument order, converted once at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, kind, flags, venue, side, instr, ts, seq, f0, f1, f2=0.0, f3=0.0) -> None:
        self.rows.append((kind, flags, venue, side, instr, 0, ts, ts, seq, f0, f1, f2, f3))

    def array(self) -> np.ndarray:
        if not self.rows:
            return np.zeros(0, dtype=R.MD_DTYPE)
        a = np.array(self.rows, dtype=[(n, R.MD_DTYPE.fields[n][0]) for n in R.packed_field_names(R.MD_DTYPE)])
        out = np.zeros(a.shape[0], dtype=R.MD_DTYPE)
        for n in a.dtype.names:
            out[n] = a[n]
        return out


def sim_instrument(venue: str, symbol: str):
    """The simulator's instrument (tick, lot, minimums) for a symbol on a venue."""
    from sim.market import Instrument

    return Instrument(venue, symbol, 0)


def generate(symbols: list[str], seconds: float, seed: int, instruments: Instruments, rate: float = 2000.0,
             venues: tuple[str, ...] = ("binance", "okx", "gate"), depth: int = 50,
             start_ns: int = 1_000_000_000_000, progress=None) -> tuple[np.ndarray, dict]:
    """Step the simulator's generator (sim.market.Market) for `seconds` of virtual time at `rate`
    frames/s across venues, as the live simulator paces it, and write what a feed would record:
    a snapshot per book first, then per step and venue the changed levels (one update), the top of
    book when it changed and the trades. Timestamps are venue times (exch = recv; the replay adds
    the feed latency). Deterministic in (symbols, seconds, seed, rate)."""
    from sim.market import Market

    if seconds <= 0:
        raise DataError(f"--generate needs a positive number of seconds, got {seconds}")
    if rate <= 0:
        raise DataError(f"generator rate must be positive, got {rate}")
    market = Market(list(symbols), tuple(venues), seed, max(50, depth))
    out = _Out()
    vid = {v: int(Exchange.from_name(v)) for v in venues}
    iid = {s: instruments.id_for(s) for s in symbols}
    seqs: dict[tuple[str, str], int] = {}
    t = start_ns
    for sym, st in market.symbols.items():
        for v, book in st.books.items():
            inst = book.inst
            levels = [(1, inst.px_float(tk), inst.qty_float(n)) for tk, n in book.top_bids(depth)]
            levels += [(-1, inst.px_float(tk), inst.qty_float(n)) for tk, n in book.top_asks(depth)]
            seq = book.update_id
            seqs[(sym, v)] = seq
            for j, (side, px, qty) in enumerate(levels):
                flags = (R.F_SNAPSHOT_START if j == 0 else 0) | (
                    R.F_SNAPSHOT_END | R.F_UPDATE_END if j == len(levels) - 1 else 0)
                out.add(R.KIND_BOOK_LEVEL, flags, vid[v], side, iid[sym], t, seq, px, qty, float(seq))
            bb, bq, ba, aq = book.top()
            out.add(R.KIND_QUOTE, 0, vid[v], 0, iid[sym], t, seq, inst.px_float(bb), inst.qty_float(bq),
                    inst.px_float(ba), inst.qty_float(aq))
    t += int(1e9 / rate)  # the first step comes after the snapshots
    end_ns = start_ns + int(seconds * 1e9)
    syms = list(market.symbols.values())
    rr = 0
    steps = 0
    next_progress = start_ns
    while t < end_ns:
        st = syms[rr]
        rr = (rr + 1) % len(syms)
        market.advance_fair(st)
        frames = 0
        for v in venues:
            book = st.books[v]
            book.begin_step()
            book.step(market.venue_mid(st, v), market.trade_rate)
            inst = book.inst
            vi = vid[v]
            ii = iid[st.symbol]
            chg = [(1, tk, n) for tk, n in book.chg_bids.items()] + [(-1, tk, n) for tk, n in book.chg_asks.items()]
            if chg:
                frames += 1
                prev = seqs[(st.symbol, v)]
                seq = prev + len(chg)
                seqs[(st.symbol, v)] = seq
                last = len(chg) - 1
                for j, (side, tk, n) in enumerate(chg):
                    out.add(R.KIND_BOOK_LEVEL, R.F_UPDATE_END if j == last else 0, vi, side, ii, t, seq,
                            inst.px_float(tk), inst.qty_float(n), float(prev + 1))
            if book.top_changed:
                frames += 1
                bb, bq, ba, aq = book.last_top
                out.add(R.KIND_QUOTE, 0, vi, 0, ii, t, seqs[(st.symbol, v)], inst.px_float(bb),
                        inst.qty_float(bq), inst.px_float(ba), inst.qty_float(aq))
            for taker, tk, lots, tid in book.trades:
                frames += 1
                out.add(R.KIND_TRADE, 0, vi, taker, ii, t, tid, inst.px_float(tk), inst.qty_float(lots))
        steps += 1
        t += int(max(frames, 1) / rate * 1e9)
        if progress is not None and t >= next_progress:
            progress(min(t, end_ns) - start_ns, end_ns - start_ns)
            next_progress = t + 1_000_000_000
    recs = out.array()
    # BOOK_LEVEL keeps the first update id in `prev_seq` (the f2 slot) as an int64
    bl = recs["kind"] == R.KIND_BOOK_LEVEL
    prev = recs["f2"][bl].astype(np.int64)
    view = recs.view(R.BOOK_LEVEL_DTYPE)
    view["prev_seq"][bl] = prev
    return recs, {"source": "generated", "seconds": seconds, "seed": seed, "rate": rate,
                  "symbols": list(symbols), "venues": list(venues), "steps": steps,
                  "records": int(recs.shape[0]), "malformed": 0}


def set_sim_specs(instruments: Instruments, symbols: list[str], venues: list[int]) -> None:
    """Tick/lot/minimum rules for backtests: the simulator's published filters (what the live
    OMS reads from the simulator's exchange info)."""
    for s in symbols:
        for v in venues:
            name = VENUE_NAMES.get(v)
            if name is None:
                continue
            inst = sim_instrument(name, s)
            instruments.add(Exchange(v), s, tick_size=inst.tick, lot_size=inst.lot,
                            min_qty=inst.min_lots * inst.lot, min_notional=inst.min_notional)

