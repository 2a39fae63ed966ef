"""Market maker quote maths: fixed spread and skew, Avellaneda-Stoikov reservation price and
spread, rounding to tick/lot, never crossing, max_position counting open orders, minimal
requotes (keep / amend / cancel+new), minimum lifetime, pulling on stale or resyncing books."""

from __future__ import annotations

import math
import random

import pytest

from common.config import MarketMakingConfig
from common.enums import Exchange, OrderSide, TimeInForce, TradingState
from strategy.api import StrategyContext
from strategy.market_making import LIVE, MarketMaker, VolEstimator, as_quotes, fixed_quotes
from strategy.orders import RequestKind
from strategy.state import MarketState
from tests.test_strategy_fakes import OX, B, FakeOMS, instruments

pytestmark = pytest.mark.unit

T0 = 1_000_000_000_000


class Harness:
    def __init__(self, amend=True, venues=("binance",), symbols=("BTC-USDT",), **mm):
        base = dict(spread_bps=10.0, order_size=0.001, max_position=0.003, symbols=list(symbols),
                    venues=list(venues), levels=1, skew_bps=5.0, requote_threshold_bps=2.0,
                    min_order_lifetime_ms=0.0)
        base.update(mm)
        self.cfg = MarketMakingConfig(**base)
        self.ins = instruments()
        self.state = MarketState(8)
        self.now = T0
        self.pos = {}
        self.tstate = TradingState.ACTIVE
        self.oms = FakeOMS()
        self.oms.add_listener(self._event)
        self.events = []
        self.mm = MarketMaker(self.cfg, stale_ms=2000.0, amend_venues=(1, 2, 3) if amend else ())
        ctx = StrategyContext(self.ins, self.state, clock=lambda: self.now,
                              position_fn=lambda v, i: self.pos.get((v, i), 0.0),
                              trading_state_fn=lambda: self.tstate, venues=[1, 2, 3])
        self.mm.on_start(ctx)

    def _event(self, ev):
        self.events.append(ev)
        return self.mm.on_order_event(ev)

    def quote(self, bid, ask, venue=B, instr=1):
        self.state.set_quote(venue, instr, bid, 1.0, ask, 1.0, self.now)

    def requote(self, p=0):
        reqs = self.mm.requote(p, self.now) or []
        for r in reqs:  # what the host does after risk accepted the request
            cid = self.oms.submit(r)
            if r.kind == RequestKind.NEW:
                r.cl_ord_id = cid
        return reqs

    def ack_all(self):
        for o in list(self.oms.orders.values()):
            if o.state.name == "PENDING_NEW":
                self.oms.ack(o.cl_ord_id)
            elif o.state.name == "PENDING_CANCEL":
                self.oms.cancel_ack(o.cl_ord_id)
            elif o.state.name == "PENDING_AMEND":
                self.oms.amend_ack(o.cl_ord_id)


def sides(reqs):
    return {("buy" if r.side == OrderSide.BUY else "sell"): r for r in reqs}


def test_avellaneda_stoikov_formula():
    s, q, gamma, sigma, tau, k = 100.0, 2.0, 0.1, 2.0, 10.0, 1.5
    r, delta = as_quotes(s, q, gamma, sigma, tau, k)
    assert r == pytest.approx(s - q * gamma * sigma**2 * tau)  # 92
    assert delta == pytest.approx(gamma * sigma**2 * tau + (2 / gamma) * math.log(1 + gamma / k))
    assert r == pytest.approx(92.0)
    assert delta == pytest.approx(4.0 + 20.0 * math.log(1.0 + 0.1 / 1.5))
    r0, d0 = as_quotes(s, 0.0, gamma, sigma, tau, k)
    assert r0 == s and d0 == delta  # inventory moves the reservation price, not the spread
    assert as_quotes(s, -2.0, gamma, sigma, tau, k)[0] == pytest.approx(108.0)


def test_fixed_quotes_skew():
    r, spread = fixed_quotes(60000.0, 0.0, 10.0, 5.0, 0.01)
    assert r == 60000.0 and spread == pytest.approx(60.0)
    r_long, _ = fixed_quotes(60000.0, 0.01, 10.0, 5.0, 0.01)
    assert r_long == pytest.approx(60000.0 - 30.0)  # long max_position: 5 bps lower
    r_short, _ = fixed_quotes(60000.0, -0.005, 10.0, 5.0, 0.01)
    assert r_short == pytest.approx(60000.0 + 15.0)


def test_vol_estimator():
    v = VolEstimator(10)
    assert v.sigma() == 0.0
    mid = 100.0
    for n in range(30):
        v.update(mid + (0.5 if n % 2 else 0.0), T0 + n * 250_000_000)  # +-0.5 every 0.25 s
    assert v.sigma() == pytest.approx(0.5 / math.sqrt(0.25))


def test_first_quotes_rounded_post_only():
    h = Harness()
    h.quote(60000.0, 60001.0)
    q = sides(h.requote())
    mid = 60000.5
    assert q["buy"].px == pytest.approx(math.floor((mid - mid * 5e-4) / 0.01) * 0.01)  # 59970.49
    assert q["sell"].px == pytest.approx(math.ceil((mid + mid * 5e-4) / 0.01) * 0.01)  # 60030.51
    assert q["buy"].px == 59970.49 and q["sell"].px == 60030.51
    for r in q.values():
        assert r.tif == TimeInForce.POST_ONLY and r.qty == 0.001
        assert r.venue == Exchange.BINANCE and r.instr_id == 1


def test_skew_lowers_quotes_when_long():
    flat = Harness()
    flat.quote(60000.0, 60001.0)
    q0 = sides(flat.requote())
    long_ = Harness()
    long_.pos[(B, 1)] = 0.002
    long_.quote(60000.0, 60001.0)
    q1 = sides(long_.requote())
    assert q1["buy"].px < q0["buy"].px and q1["sell"].px < q0["sell"].px
    # 5 bps per max_position (0.003): 0.002 long moves by 3.33 bps of the mid
    assert q0["buy"].px - q1["buy"].px == pytest.approx(60000.5 * 5e-4 * 2 / 3, abs=0.011)


def test_never_crosses_random_books():
    rng = random.Random(7)
    for _ in range(400):
        h = Harness(spread_bps=rng.choice([0.1, 1.0, 10.0]), skew_bps=rng.choice([0.0, 50.0, 500.0]),
                    levels=rng.choice([1, 3]), max_position=0.01)
        h.pos[(B, 1)] = rng.uniform(-0.01, 0.01)
        bid = round(rng.uniform(100.0, 70000.0), 2)
        ask = round(bid + 0.01 * rng.randint(1, 20), 2)
        h.quote(bid, ask)
        for r in h.requote():
            assert r.kind == RequestKind.NEW
            assert r.tif == TimeInForce.POST_ONLY
            if r.side == OrderSide.BUY:
                assert r.px < ask
            else:
                assert r.px > bid
            spec = h.ins.spec(B, 1)
            assert spec.is_on_tick(r.px) and spec.is_on_lot(r.qty)


def test_levels_are_spaced_and_ordered():
    h = Harness(levels=3, max_position=1.0, level_spacing_bps=5.0)
    h.quote(60000.0, 60001.0)
    reqs = h.requote()
    buys = sorted((r.px for r in reqs if r.side == OrderSide.BUY), reverse=True)
    sells = sorted(r.px for r in reqs if r.side == OrderSide.SELL)
    assert len(buys) == 3 and len(sells) == 3
    assert buys[0] - buys[1] == pytest.approx(30.0, abs=0.02)
    assert sells[1] - sells[0] == pytest.approx(30.0, abs=0.02)


def test_max_position_counts_open_orders():
    h = Harness(levels=3, max_position=0.0025)
    h.quote(60000.0, 60001.0)
    reqs = h.requote()
    buy_qty = sum(r.qty for r in reqs if r.side == OrderSide.BUY)
    assert buy_qty == pytest.approx(0.0025)  # 0.001 + 0.001 + 0.0005
    h2 = Harness(max_position=0.003)
    h2.pos[(B, 1)] = 0.003
    h2.quote(60000.0, 60001.0)
    q = sides(h2.requote())
    assert "buy" not in q and q["sell"].qty == 0.001
    h3 = Harness(max_position=0.003)
    h3.pos[(B, 1)] = -0.0025
    h3.quote(60000.0, 60001.0)
    q = sides(h3.requote())
    assert q["sell"].qty == pytest.approx(0.0005) and q["buy"].qty == 0.001


def test_fill_moves_inventory_and_shrinks_the_side():
    h = Harness(max_position=0.0015)
    h.quote(60000.0, 60001.0)
    q = sides(h.requote())
    h.ack_all()
    h.oms.fill(q["buy"].cl_ord_id, 0.001)
    h.pos[(B, 1)] = 0.001
    h.now += 10_000_000
    reqs = h.requote()
    new_buys = [r for r in reqs if r.kind == RequestKind.NEW and r.side == OrderSide.BUY]
    assert len(new_buys) == 1 and new_buys[0].qty == pytest.approx(0.0005)
    # the sell side had room 0.0015 + 0.001 but keeps its resting 0.001 order
    assert not [r for r in reqs if r.side == OrderSide.SELL and r.kind == RequestKind.NEW]


def test_requote_keeps_close_orders_and_amends_far_ones():
    h = Harness()
    h.quote(60000.0, 60001.0)
    h.requote()
    h.ack_all()
    assert all(w[3] == LIVE for w in h.mm.working())
    h.now += 10_000_000
    h.quote(60006.0, 60007.0)  # 1 bps: within the 2 bps threshold
    assert h.requote() == []
    h.quote(60060.0, 60061.0)  # 10 bps
    reqs = h.requote()
    assert [r.kind for r in reqs] == [RequestKind.AMEND, RequestKind.AMEND]
    assert all(r.target_cl_ord_id for r in reqs)
    h.ack_all()
    assert sorted(w[5] for w in h.mm.working()) == sorted(r.px for r in reqs)
    assert h.requote() == []


def test_cancel_then_new_without_amend():
    h = Harness(amend=False)
    h.quote(60000.0, 60001.0)
    h.requote()
    h.ack_all()
    h.now += 10_000_000
    h.quote(60060.0, 60061.0)
    reqs = h.requote()
    assert [r.kind for r in reqs] == [RequestKind.CANCEL, RequestKind.CANCEL]
    assert h.requote() == []  # nothing new while the cancels are in flight
    h.ack_all()
    reqs = h.requote()
    assert [r.kind for r in reqs] == [RequestKind.NEW, RequestKind.NEW]


def test_min_order_lifetime():
    h = Harness(min_order_lifetime_ms=1000.0)
    h.quote(60000.0, 60001.0)
    h.requote()
    h.ack_all()
    h.now += 500_000_000
    h.quote(60060.0, 60061.0)
    assert h.requote() == []
    h.now += 600_000_000
    h.quote(60060.0, 60061.0)
    assert [r.kind for r in h.requote()] == [RequestKind.AMEND, RequestKind.AMEND]


def test_pulls_quotes_on_stale_resync_and_halt():
    for how in ("stale", "resync", "halt", "crossed"):
        h = Harness()
        h.quote(60000.0, 60001.0)
        h.requote()
        h.ack_all()
        if how == "stale":
            h.now += 3_000_000_000
        elif how == "resync":
            h.state.set_resync(B, 1, True)
        elif how == "halt":
            h.tstate = TradingState.HALTED
        else:
            h.state.set_quote(B, 1, 60001.0, 1.0, 60000.0, 1.0, h.now)
        reqs = h.requote()
        assert [r.kind for r in reqs] == [RequestKind.CANCEL, RequestKind.CANCEL], how
        assert h.requote() == [], how  # once
        h.ack_all()
        assert h.mm.working() == [], how


def test_reducing_quotes_only_the_reducing_side():
    h = Harness()
    h.tstate = TradingState.REDUCING
    h.pos[(B, 1)] = 0.0015
    h.quote(60000.0, 60001.0)
    q = sides(h.requote())
    assert "buy" not in q and q["sell"].qty == 0.001


def test_denied_new_frees_the_slot():
    h = Harness()
    h.quote(60000.0, 60001.0)
    reqs = h.mm.requote(0, h.now)
    for r in reqs:
        h.mm.on_request_denied(r, 20, "max_position")
    assert h.mm.working() == []
    assert len(h.mm.requote(0, h.now)) == 2


def test_avellaneda_stoikov_mode_quotes():
    h = Harness(mode="avellaneda_stoikov", risk_aversion=0.1, intensity=1.5, horizon_s=60.0,
                spread_bps=1.0, max_position=1.0)
    vol = h.mm.vol[0]
    for n in range(20):
        vol.update(60000.0 + (3.0 if n % 2 else 0.0), T0 + n * 1_000_000_000)  # sigma = 3 / s^0.5
    sigma = vol.sigma()
    assert sigma == pytest.approx(3.0)
    h.pos[(B, 1)] = 0.5
    h.quote(60000.0, 60001.0)
    q = sides(h.requote())
    r, delta = as_quotes(60000.5, 0.5, 0.1, sigma, 60.0, 1.5)
    assert q["buy"].px == pytest.approx(math.floor((r - delta / 2) / 0.01) * 0.01)
    assert q["sell"].px == pytest.approx(math.ceil((r + delta / 2) / 0.01) * 0.01)
    assert q["buy"].px < q["sell"].px


def test_amend_by_cancel_replace_follows_the_new_id():
    for ack_new_first in (False, True):
        h = Harness()
        h.oms.replace_on_amend = True
        h.quote(60000.0, 60001.0)
        h.requote()
        h.ack_all()
        old_ids = sorted(w[4] for w in h.mm.working())
        h.now += 10_000_000
        h.quote(60060.0, 60061.0)
        reqs = h.requote()
        assert [r.kind for r in reqs] == [RequestKind.AMEND, RequestKind.AMEND]
        for r in reqs:  # what the host does: the OMS returned the replacement's id
            r.cl_ord_id = h.oms.replaced[r.target_cl_ord_id]
        for old, new in h.oms.replaced.items():
            if ack_new_first:
                h.oms.ack(new)
                h.oms.cancel_ack(old)
            else:
                h.oms.cancel_ack(old)
                h.oms.ack(new)
        work = h.mm.working()
        assert len(work) == 2 and all(w[3] == LIVE for w in work)
        assert sorted(w[4] for w in work) == sorted(h.oms.replaced.values())
        assert not set(old_ids) & {w[4] for w in work}
        assert h.requote() == []  # nothing is re-placed: no duplicate quotes


def test_cancel_replace_venue_amends_only_with_room_for_both():
    h = Harness(max_position=0.003)
    h.pos[(B, 1)] = 0.002  # buy room 0.001: the resting buy alone fills it
    h.quote(60000.0, 60001.0)
    h.requote()
    h.ack_all()
    h.now += 10_000_000
    h.quote(60060.0, 60061.0)
    kinds = {("buy" if r.side == OrderSide.BUY else "sell"): r.kind for r in h.requote()}
    assert kinds == {"buy": RequestKind.CANCEL, "sell": RequestKind.AMEND}
    h2 = Harness(max_position=0.003)
    h2.mm.replace_venues = frozenset()  # a venue that amends in place needs no extra room
    h2.pos[(B, 1)] = 0.002
    h2.quote(60000.0, 60001.0)
    h2.requote()
    h2.ack_all()
    h2.now += 10_000_000
    h2.quote(60060.0, 60061.0)
    assert [r.kind for r in h2.requote()] == [RequestKind.AMEND, RequestKind.AMEND]


def test_unanswered_request_gets_a_cancel_after_the_timeout():
    h = Harness()
    h.quote(60000.0, 60001.0)
    reqs = h.requote()  # never acknowledged by the venue
    ids = sorted(r.cl_ord_id for r in reqs)
    h.now += 2_000_000_000
    h.quote(60000.0, 60001.0)
    assert h.requote() == []
    h.now += 4_000_000_000
    h.quote(60000.0, 60001.0)
    nudges = h.requote()
    assert sorted(r.target_cl_ord_id for r in nudges) == ids
    assert all(r.kind == RequestKind.CANCEL for r in nudges)
    for cid in ids:  # the OMS resolved them: never reached the venue
        h.oms.reject(cid)
    assert h.mm.working() == []
    assert [r.kind for r in h.requote()] == [RequestKind.NEW, RequestKind.NEW]


def test_one_level_inline_ladder_matches_the_general_ladder():
    """requote() computes a one-level ladder straight-line; its first quotes must be exactly
    what ladder() wants."""
    rng = random.Random(5)
    for _ in range(300):
        h = Harness(spread_bps=rng.choice([0.1, 1.0, 10.0, 40.0]), skew_bps=rng.choice([0.0, 50.0, 500.0]),
                    max_position=rng.choice([0.001, 0.0025, 0.01]), order_size=rng.choice([0.001, 0.002]))
        mm = h.mm
        q = rng.uniform(-0.012, 0.012)
        h.pos[(B, 1)] = q
        bid = round(rng.uniform(10.0, 70000.0), 2)
        h.quote(bid, round(bid + 0.01 * rng.randint(1, 20), 2))
        r, half, b, a = mm.targets(0, h.now)
        mp = h.cfg.max_position
        mm.ladder(0, r, half, b, a, mp - q, mp + q)
        want = (list(mm.s_want_px), list(mm.s_want_qty))
        placed = sorted((int(x.side), x.px, x.qty) for x in h.requote())
        expect = sorted((1 if s == 0 else -1, want[0][s], want[1][s]) for s in (0, 1) if want[1][s] > 0.0)
        assert placed == expect


def _sent(h, reqs):
    """What the host does with accepted requests: the OMS's id goes back on NEW and AMEND."""
    out = []
    for r in reqs:
        cid = h.oms.submit(r)
        if r.kind in (RequestKind.NEW, RequestKind.AMEND):
            r.cl_ord_id = cid
        out.append((int(r.kind), int(r.side), r.px, r.qty, r.target_cl_ord_id, cid))
    return out


def test_one_level_straight_line_matches_the_general_path():
    """With one level per side requote() decides straight-line; on random books (near and far
    from the touch), inventories, order states (live, in flight, partly filled, unanswered) and
    venue kinds (amend in place, cancel-replace, no amend) it must send exactly what the
    general path (ladder() and the slot loop) sends, and leave the same slots."""
    rng = random.Random(11)
    ms = 1_000_000
    for _ in range(300):
        params = dict(spread_bps=rng.choice([0.1, 1.0, 4.0, 10.0, 40.0]),
                      skew_bps=rng.choice([0.0, 5.0, 50.0, 500.0]),
                      max_position=rng.choice([0.001, 0.0025, 0.01]), order_size=rng.choice([0.001, 0.002]),
                      requote_threshold_bps=rng.choice([0.0, 0.5, 2.0]),
                      min_order_lifetime_ms=rng.choice([0.0, 0.0, 5.0]))
        # okx (tick 0.1, no minimum notional) at low prices puts quotes within a few ticks of
        # the touch, where the clamps bind; binance (min notional 5) at high prices
        venue, tick, lo, hi = rng.choice([(B, 0.01, 10.0, 70000.0), (OX, 0.1, 1.0, 40.0), (OX, 0.1, 100.0, 70000.0)])
        amend = rng.random() < 0.8
        replace = rng.random() < 0.4
        kw = dict(amend=amend, venues=(Exchange(venue).key,), **params)
        fast, ref = Harness(**kw), Harness(**kw)
        ref.mm.inline_one_level = False
        ref.mm._set_spec(0, ref.ins.spec(venue, 1))
        assert fast.mm.pconst[0][-1] and not ref.mm.pconst[0][-1]
        for h in (fast, ref):
            h.oms.replace_on_amend = replace
            h.mm.replace_venues = frozenset({venue}) if replace else frozenset()
        bid_ticks = int(rng.uniform(lo, hi) / tick)
        q = rng.choice([0.0, rng.uniform(-0.012, 0.012)])
        for _step in range(8):
            bid_ticks = max(1, bid_ticks + rng.choice([0, 1, -1, 3, -3, 60, -60, 700, -700]))
            bid = round(bid_ticks * tick, 2)
            ask = round((bid_ticks + rng.choice([1, 1, 2, 5, 20])) * tick, 2)
            dt = rng.choice([1, 3, 10, 6000]) * ms  # 6 s: requests in flight time out
            answer = rng.random()
            fill = rng.random() < 0.2
            got = []
            for h in (fast, ref):
                h.now += dt
                h.pos[(venue, 1)] = q
                h.quote(bid, ask, venue=venue)
                sent = _sent(h, h.requote())
                if answer < 0.7:
                    h.ack_all()
                if fill:
                    live = [w for w in h.mm.working() if w[3] == LIVE]
                    if live:
                        h.oms.fill(live[0][4], live[0][6] * 0.5)
                got.append((sent, h.mm.working()))
            assert got[0] == got[1]
            if fill:
                q += 0.0005 * rng.choice([1, -1])
