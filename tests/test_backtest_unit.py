"""Backtest: queue-position model, latency model, determinism, user strategies by module:Class,
bad data files and arguments (one-line error, exit 2), report files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backtest.data import load_files
from backtest.latency import Dist, LatencyError, LatencyModel
from backtest.venue import FILL, VenueSim
from common.enums import OrderSide
from ringbuf import records as R
from strategy.api import Strategy
from strategy.orders import OrderRequest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

# BTC-USDT on the simulator's Binance: tick 0.01, lot 0.00001
TICK = 0.01
LOT = 0.00001


def md(rows) -> np.ndarray:
    """rows: (kind, flags, side, px, qty[, ask_px, ask_qty]) for venue 1 / instrument 1, times 1000 ns apart."""
    a = np.zeros(len(rows), dtype=R.MD_DTYPE)
    for j, r in enumerate(rows):
        kind, flags, side, px, qty = r[:5]
        a[j]["kind"] = kind
        a[j]["flags"] = flags
        a[j]["venue_id"] = 1
        a[j]["side"] = side
        a[j]["instr_id"] = 1
        a[j]["exch_ts_ns"] = a[j]["recv_ts_ns"] = 1_000_000 + 1000 * j
        a[j]["f0"] = px
        a[j]["f1"] = qty
        if len(r) > 5:
            a[j]["f2"], a[j]["f3"] = r[5], r[6]
    return a


def level(side, px, lots, flags=R.F_UPDATE_END):
    return (R.KIND_BOOK_LEVEL, flags, side, px, lots * LOT)


def trade(taker, px, lots):
    return (R.KIND_TRADE, 0, taker, px, lots * LOT)


SNAP = [level(1, 100.00, 5, R.F_SNAPSHOT_START), level(1, 99.99, 7, 0),
        level(-1, 100.02, 4, 0), level(-1, 100.03, 9, R.F_SNAPSHOT_END | R.F_UPDATE_END)]


def venue_with(rows):
    recs = md(SNAP + rows)
    vs = VenueSim(1, "binance", recs, {1: "BTC-USDT"}, 0.0008, 0.001)
    return vs, recs


def place_buy(vs, px, lots, upto=len(SNAP), post_only=True):
    out = []
    vs.place("c1", 1, 1, px, lots * LOT, "GTC", post_only, False, upto, 0, out)
    return out


def replay(vs, recs, start=len(SNAP)):
    out = []
    for j in range(start, recs.shape[0]):
        if vs.resting(1):
            vs.on_record(j, 1_000_000 + 1000 * j, out)
    return out


def filled_lots(out):
    return round(sum(r.fill_qty for r in out if r.kind == FILL) / LOT)


# ---- queue position -----------------------------------------------------------------------
@pytest.mark.unit
def test_order_joins_behind_displayed_quantity():
    vs, recs = venue_with([])
    out = place_buy(vs, 100.00, 3)
    assert [r.kind for r in out] == ["ACK"]
    o = vs.engine.by_client[("backtest", "c1")]
    assert o.queue_ahead == 5  # the 5 lots shown at 100.00 are ahead of us


@pytest.mark.unit
def test_trades_consume_queue_then_fill_partially():
    vs, recs = venue_with([trade(-1, 100.00, 3), trade(-1, 100.00, 3), trade(-1, 100.00, 4)])
    place_buy(vs, 100.00, 3)
    out = replay(vs, recs)
    # 3 lots: queue 5 -> 2; 3 lots: 2 ahead then 1 for us; 4 lots: the remaining 2
    fills = [round(r.fill_qty / LOT) for r in out if r.kind == FILL]
    assert fills == [1, 2]
    assert all(r.liquidity == 1 for r in out if r.kind == FILL)  # maker
    assert abs(out[-1].fee - 2 * LOT * 100.0 * 0.0008) < 1e-15


@pytest.mark.unit
def test_trade_on_the_other_side_does_not_move_queue():
    vs, recs = venue_with([trade(1, 100.02, 50), trade(1, 100.03, 50)])
    place_buy(vs, 100.00, 3)
    out = replay(vs, recs)
    assert filled_lots(out) == 0
    assert vs.engine.by_client[("backtest", "c1")].queue_ahead == 5


@pytest.mark.unit
def test_trade_through_our_price_fills_us_first():
    # a seller printed below our bid: our better price was hit before that level
    vs, recs = venue_with([trade(-1, 99.99, 2)])
    place_buy(vs, 100.00, 3)
    out = replay(vs, recs)
    assert filled_lots(out) == 2


@pytest.mark.unit
def test_cancel_ahead_shortens_queue():
    # the level shrinks 5 -> 1 with no trade: cancels ahead of us; a later 2-lot trade fills 1 of ours
    later = [(R.KIND_QUOTE, 0, 0, 100.00, 0.0, 100.02, 0.0)] * 30  # time passes (30 us each is not enough)
    vs, recs = venue_with([level(1, 100.00, 1)] + later + [trade(-1, 100.00, 2)])
    place_buy(vs, 100.00, 3)
    out = []
    for j in range(len(SNAP), recs.shape[0]):
        t = 1_000_000 + 1000 * j + (100_000_000 if j == recs.shape[0] - 1 else 0)  # the trade comes 100 ms later
        vs.on_record(j, t, out)
    assert filled_lots(out) == 1


@pytest.mark.unit
def test_depth_before_trade_is_not_counted_twice():
    # the simulator sends the depth diff (5 -> 2) before the trade of 3 that caused it:
    # the queue ahead is 2, not 5 - 3 - 3
    vs, recs = venue_with([level(1, 100.00, 2), trade(-1, 100.00, 3), trade(-1, 100.00, 2)])
    place_buy(vs, 100.00, 3)
    out = replay(vs, recs)
    assert filled_lots(out) == 0  # the second trade (2 lots) only clears the 2 ahead
    assert vs.engine.by_client[("backtest", "c1")].queue_ahead == 0


@pytest.mark.unit
def test_growth_behind_us_does_not_move_queue():
    vs, recs = venue_with([level(1, 100.00, 50), trade(-1, 100.00, 4)])
    place_buy(vs, 100.00, 3)
    out = replay(vs, recs)
    assert filled_lots(out) == 0
    assert vs.engine.by_client[("backtest", "c1")].queue_ahead == 1


@pytest.mark.unit
def test_book_through_our_price_fills_as_maker():
    vs, recs = venue_with([level(-1, 100.00, 6)])  # an ask at our bid price
    place_buy(vs, 100.00, 3)
    out = replay(vs, recs)
    assert filled_lots(out) == 3
    assert [r.liquidity for r in out if r.kind == FILL] == [1]


@pytest.mark.unit
def test_post_only_that_would_take_is_rejected_and_taker_walks_the_book():
    vs, recs = venue_with([])
    out = place_buy(vs, 100.02, 3)
    assert out[0].kind == "REJECT" and out[0].reason == "post_only_would_take"
    out = []
    vs.place("c2", 1, 1, 100.03, 6 * LOT, "IOC", False, False, len(SNAP), 0, out)
    fills = [(round(r.fill_qty / LOT), r.fill_px, r.liquidity) for r in out if r.kind == FILL]
    assert fills == [(4, 100.02, 2), (2, 100.03, 2)]  # partial fills across two levels, taker


@pytest.mark.unit
def test_lazy_book_catches_up_to_the_arrival_time():
    # levels change before the order arrives; the queue is the size shown at arrival
    vs, recs = venue_with([level(1, 100.00, 8), level(1, 100.00, 11)])
    place_buy(vs, 100.00, 3, upto=recs.shape[0])
    assert vs.engine.by_client[("backtest", "c1")].queue_ahead == 11


# ---- latency model --------------------------------------------------------------------------
@pytest.mark.unit
def test_constant_latency():
    m = LatencyModel.constant(250.0, seed=3)
    assert m.next_order_ns() == 250_000 and m.next_ack_ns() == 250_000
    assert set(m.feed_ns_array(10).tolist()) == {250_000}


@pytest.mark.unit
def test_sampled_latency_is_deterministic_and_from_the_samples():
    samples = [100, 200, 300, 400]
    a = LatencyModel.from_obj({"samples_us": samples}, "t", seed=5)
    b = LatencyModel.from_obj({"samples_us": samples}, "t", seed=5)
    c = LatencyModel.from_obj({"samples_us": samples}, "t", seed=6)
    xa = [a.next_order_ns() for _ in range(200)]
    assert xa == [b.next_order_ns() for _ in range(200)]
    assert xa != [c.next_order_ns() for _ in range(200)]
    assert set(xa) <= {100_000, 200_000, 300_000, 400_000} and len(set(xa)) == 4


@pytest.mark.unit
def test_percentile_latency_matches_its_percentiles():
    d = Dist.from_percentiles({"p50": 100, "p90": 300, "p99": 1000})
    x = d.sample_ns(np.random.default_rng(1), 200_000) / 1000.0
    assert abs(np.percentile(x, 50) - 100) < 5
    assert abs(np.percentile(x, 90) - 300) < 15
    assert 100 > x.min() * 0 and x.max() <= 1000.0 + 1e-6
    assert d.percentile_us(90) == pytest.approx(300)


@pytest.mark.unit
def test_latency_file_per_leg_and_run_summary_shapes(tmp_path):
    p = tmp_path / "lat.json"
    p.write_text(json.dumps({"latency": {"feed_us": 50, "order_us": {"p50": 200, "p99": 400}, "ack_us": [70]}}))
    m = LatencyModel.from_file(str(p))
    assert m.feed.kind == "constant" and m.feed.value_us == 50
    assert m.order.kind == "percentiles" and m.ack.value_us == 70
    p.write_text(json.dumps({"order_to_ack_us": {"p50": 400, "p99": 800}}))
    m = LatencyModel.from_file(str(p))
    assert m.order.percentile_us(50) == pytest.approx(200)  # a round trip: half each way
    for bad in ("not json", json.dumps({"p50": "x"}), json.dumps([]), json.dumps({"nothing": 1})):
        p.write_text(bad)
        with pytest.raises(LatencyError):
            LatencyModel.from_file(str(p))
    with pytest.raises(LatencyError):
        LatencyModel.from_file(str(tmp_path / "missing.json"))


@pytest.mark.unit
def test_latency_changes_what_the_strategy_sees():
    """A longer feed latency delays every record's local time by exactly the difference."""
    from backtest.api import run_backtest

    s1, bt1 = run_backtest(generate_s=2, seed=2, latency_us=100, strategy=Strategy(), progress=False)
    s2, bt2 = run_backtest(generate_s=2, seed=2, latency_us=900, strategy=Strategy(), progress=False)
    assert np.array_equal(bt2.L - bt1.L, np.full(bt1.n, 800_000))
    assert np.array_equal(bt1.V, bt2.V)


# ---- determinism, user strategy, CLI ----------------------------------------------------------------
class OneShotTaker(Strategy):
    """A user strategy: buys 0.001 BTC with a marketable IOC once, sells it back 2 s later."""

    name = "one_shot"

    def __init__(self, cfg=None) -> None:
        self.done = 0
        self.t0 = 0
        self.events: list[str] = []

    def on_market_data(self, md):
        if md.venue_id != 1 or md.instr_id != 1 or not md.book_valid or md.ask_px <= 0:
            return None
        sym = self.ctx.symbol(1, 1)
        if self.done == 0:
            self.done = 1
            self.t0 = md.now_ns
            px = round(md.ask_px * 1.002, 2)  # 20 bps through the ask: fills even if the market moved
            r = OrderRequest.new_limit(sym, OrderSide.BUY, 0.001, px, ioc=True)
            r.instr_id = 1
            return [r]
        if self.done == 1 and md.now_ns - self.t0 > 2_000_000_000:
            self.done = 2
            r = OrderRequest.new_limit(sym, OrderSide.SELL, 0.001, round(md.bid_px * 0.998, 2), ioc=True)
            r.instr_id = 1
            return [r]
        return None

    def on_order_event(self, ev):
        self.events.append(ev.kind.name)
        return None


def run_cli(*args, timeout=300):
    return subprocess.run([PY, "-m", "backtest", "--no-progress", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.unit
def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    from backtest.api import run_backtest

    a, bta = run_backtest(generate_s=8, seed=4, progress=False)
    b, btb = run_backtest(generate_s=8, seed=4, progress=False)
    c, _ = run_backtest(generate_s=8, seed=5, progress=False)
    for k in ("wall_s", "events_per_s", "setup_s"):
        a.pop(k), b.pop(k), c.pop(k)
    assert a["fills"] > 0  # the market maker traded, so the comparison means something
    assert a == b and bta.oms.fills == btb.oms.fills
    assert (a["fills"], a["pnl"]) != (c["fills"], c["pnl"])


@pytest.mark.unit
def test_user_strategy_by_module_class(tmp_path):
    r = run_cli("--generate", "5", "--strategy", "tests.test_backtest_unit:OneShotTaker", "--report",
                str(tmp_path / "rep"), "--latency-us", "200")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s["fills"] >= 2 and s["taker_fills"] == s["fills"]
    assert s["final_position_by_symbol"]["BTC-USDT"] == pytest.approx(0.0, abs=1e-12)
    assert s["fees"] > 0
    rows = (tmp_path / "rep" / "fills.csv").read_text().splitlines()
    assert rows[0].startswith("local_ts_ns,") and len(rows) == s["fills"] + 1
    for f in ("mid_quotes_fills.png", "inventory.png", "pnl.png", "latency.png", "report.md"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    assert "![pnl.png](pnl.png)" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.unit
def test_bad_strategy_and_arguments_exit_2():
    for args in (["--strategy", "nosuch.module:Thing"], ["--strategy", "justaname"],
                 ["--latency-us", "-5"], ["--fees", "binance=8"], ["--generate", "-1"],
                 ["--generate", "5", "--data", "x"], ["--bogus"]):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
    r = run_cli("--latency-from", "/nonexistent/lat.json")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "lat.json" in r.stderr


# ---- bad data files ---------------------------------------------------------------------------------
def write_md(path, recs, header=None):
    from persist.recorder import make_header

    with open(path, "wb") as f:
        f.write(make_header("binance") if header is None else header)
        f.write(recs.tobytes())


@pytest.mark.unit
def test_recorded_file_round_trip(tmp_path):
    from backtest.api import run_backtest

    recs = md(SNAP + [(R.KIND_QUOTE, 0, 0, 100.00, 5 * LOT, 100.02, 4 * LOT)] * 3)
    p = tmp_path / "binance-1.md"
    write_md(p, recs)
    got, info = load_files(str(tmp_path))
    assert got.shape[0] == recs.shape[0] and info["malformed"] == 0
    s, _ = run_backtest(data=str(p), strategy=Strategy(), progress=False)
    assert s["records"] == recs.shape[0]


@pytest.mark.unit
def test_bad_data_files_give_one_line_and_exit_2(tmp_path):
    import struct

    from persist.recorder import HEADER, MAGIC, make_header

    recs = md(SNAP)
    cases = {}
    cases["truncated.md"] = make_header("binance") + recs.tobytes()[:-10]
    cases["version.md"] = HEADER.pack(MAGIC, 99, 64, 0, 0, 0, b"binance", b"MD_DTYPE") + recs.tobytes()
    hdr = bytearray(make_header("binance"))
    struct.pack_into("<I", hdr, 16, 0xDEAD)  # dtype crc of another layout
    cases["dtype.md"] = bytes(hdr) + recs.tobytes()
    cases["magic.md"] = b"NOTOURS!" + bytes(56) + recs.tobytes()
    cases["short.md"] = b"HFTMD"
    for name, blob in cases.items():
        d = tmp_path / name.replace(".md", "")
        d.mkdir()
        (d / name).write_bytes(blob)
        r = run_cli("--data", str(d / name), "--strategy", "strategy.api:Strategy")
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        err = r.stderr.strip()
        assert err.count("\n") == 0 and name in err and "Traceback" not in err, (name, err)
    r = run_cli("--data", str(tmp_path / "nothing-here"))
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.unit
def test_malformed_records_are_counted_and_skipped(tmp_path):
    recs = md(SNAP + [(R.KIND_QUOTE, 0, 0, 100.00, 5 * LOT, 100.02, 4 * LOT)] * 4)
    recs[4]["kind"] = 99
    recs[5]["venue_id"] = 9
    recs[6]["f0"] = np.nan
    write_md(tmp_path / "x.md", recs)
    got, info = load_files(str(tmp_path / "x.md"))
    assert info["malformed"] == 3 and got.shape[0] == recs.shape[0] - 3
