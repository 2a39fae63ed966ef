"""Risk check path written for speed: the float-remainder tick/lot tests agree with the
round()-based rule they replace, and the amend check's `amend_grows` tells the host exactly
when `on_amend_sent` has something to do."""

from __future__ import annotations

import random

import pytest

from common.enums import OrderSide
from rms.engine import RiskEngine
from rms.reasons import Reason
from strategy.orders import OrderRequest
from tests.test_rms_checks import NOW, OX, SYM, SYM_OKX, B, buy, make, opened

pytestmark = pytest.mark.unit


def off_step(x: float, inv_step: float) -> bool:
    """The rule as first written: more than 1e-6 of a step away from a whole step."""
    n = x * inv_step
    return abs(n - round(n)) > 1e-6


FRACTIONS = (0.0, 1e-9, 5e-7, 9.9e-7, 1.01e-6, 2e-6, 1e-4, 0.25, 0.5, 0.75, 1 - 2e-6, 1 - 1.01e-6,
             1 - 9.9e-7, 1 - 5e-7, 1 - 1e-9)


@pytest.mark.parametrize("venue,sym,tick", [(B, SYM, 0.01), (OX, SYM_OKX, 0.1)])
def test_tick_rule_matches_the_rounding_rule(venue, sym, tick):
    rms, _, _ = make(max_orders_per_s=1e12)
    rnd = random.Random(7)
    inv = rms.inv_tick[venue * rms.n_instr + 1]
    seen = set()
    for _ in range(400):
        ticks = rnd.randint(int(59_500 / tick), int(60_000 / tick) - 1)
        px = (ticks + rnd.choice(FRACTIONS)) * tick
        req = buy(px=px, sym=sym)
        code = rms.check(req, NOW)
        want_bad = off_step(px, inv)
        seen.add(want_bad)
        assert (code == Reason.BAD_TICK) == want_bad, (px, code)
        if not want_bad:
            assert code == 0, (px, code)
    assert seen == {True, False}  # both sides of the rule were exercised


def test_lot_rule_matches_the_rounding_rule():
    rms, _, _ = make(max_orders_per_s=1e12, max_position=1e9, max_venue_notional=1e12,
                     max_total_notional=1e12)
    rnd = random.Random(11)
    inv = rms.inv_lot[B * rms.n_instr + 1]
    seen = set()
    for _ in range(400):
        lots = rnd.randint(100, 5000)
        qty = (lots + rnd.choice(FRACTIONS)) * 0.00001
        code = rms.check(buy(qty=qty), NOW)
        want_bad = off_step(qty, inv)
        seen.add(want_bad)
        assert (code == Reason.BAD_LOT) == want_bad, (qty, code)
    assert seen == {True, False}


def test_amend_tick_rule_matches_the_rounding_rule():
    rms, _, _ = make(max_orders_per_s=1e12)
    r = buy()
    opened(rms, r, "t1")
    inv = rms.inv_tick[B * rms.n_instr + 1]
    for f in FRACTIONS:
        px = (5_999_000 + f) * 0.01
        code = rms.check(OrderRequest.amend(SYM, "t1", price=px), NOW)
        assert (code == Reason.BAD_TICK) == off_step(px, inv), (px, code)


def grown(rms: RiskEngine, req: OrderRequest) -> float:
    """What the host does after an allowed amend went to the OMS in place."""
    assert rms.check(req, NOW) == 0
    flag = rms.amend_grows
    if flag:
        rms.on_amend_sent(req)
    return flag


def test_amend_grows_marks_exactly_the_amends_that_raise_the_open_quantity():
    rms, _, _ = make(max_position=1.0, max_orders_per_s=1e12)
    r = buy(qty=0.002)
    opened(rms, r, "g1")
    assert not grown(rms, OrderRequest.amend(SYM, "g1", price=59995.0))  # price only
    assert not grown(rms, OrderRequest.amend(SYM, "g1", qty=0.002, price=59996.0))  # same quantity
    assert not grown(rms, OrderRequest.amend(SYM, "g1", qty=0.001))  # smaller: counted once acked
    assert rms.open_qty(B, 1)[0] == pytest.approx(0.002)
    assert grown(rms, OrderRequest.amend(SYM, "g1", qty=0.003))
    assert rms.open_qty(B, 1)[0] == pytest.approx(0.003)  # the larger quantity until the ack
    # a denied amend leaves the flag of no use: the host only reads it after an allowed check
    assert rms.check(OrderRequest.amend(SYM, "g1", qty=2.0), NOW) == Reason.MAX_QTY


def test_amend_grows_agrees_with_on_amend_sent_on_random_quantities():
    rnd = random.Random(3)
    for _ in range(200):
        rms, _, _ = make(max_position=1.0, max_orders_per_s=1e12)
        base = rnd.randint(1, 50) * 0.0001
        r = buy(qty=base)
        opened(rms, r, "x1")
        new_qty = rnd.choice((0.0, base, base + 0.0001, base - 0.00005 if base > 0.0001 else base,
                              rnd.randint(1, 60) * 0.0001))
        req = OrderRequest(r.kind.AMEND, SYM, OrderSide.BUY, qty=new_qty, px=59995.0, target_cl_ord_id="x1")
        assert rms.check(req, NOW) == 0
        before = rms.open_qty(B, 1)[0]
        rms.on_amend_sent(req)  # always called here: it must change something iff the flag says so
        assert (rms.open_qty(B, 1)[0] != before) == rms.amend_grows, (base, new_qty)
