"""The example strategy runs under the host with real rings and a fake OMS."""

from __future__ import annotations

import pytest

from common.config import load
from common.enums import OrderSide
from examples.cross_venue_skew import CrossVenueBid
from strategy.host import StrategyHost
from strategy.orders import RequestKind
from tests.test_strategy_fakes import OX, B, FakeOMS, instruments, write_quote
from tests.test_strategy_host import rings  # noqa: F401  (fixture)

pytestmark = pytest.mark.unit


def test_example_leans_and_cancels(rings):  # noqa: F811
    md, cons, ev = rings
    oms = FakeOMS(auto_ack=True)
    s = CrossVenueBid(edge_bps=3.0)
    host = StrategyHost(load(), instruments(), s, oms, cons, events_ring=ev, venues=[B, OX])
    host.on_timer(0)
    s.on_start(host.ctx)
    host.started = True
    write_quote(md[OX], OX, 1, 60030.0, 60030.1)
    host.poll_once()
    write_quote(md[B], B, 1, 60000.0, 60001.0)  # OKX bid 5 bps higher: lean on Binance
    host.poll_once()
    host.poll_once()  # the ack is delivered on the next poll
    news = oms.new_requests(RequestKind.NEW)
    assert len(news) == 1 and news[0].side == OrderSide.BUY and news[0].px == 60000.0
    assert s.working == {(B, 1): news[0].cl_ord_id}
    write_quote(md[OX], OX, 1, 60000.0, 60000.1)  # the edge is gone
    host.poll_once()
    write_quote(md[B], B, 1, 60000.0, 60001.0)
    host.poll_once()
    host.poll_once()
    assert [r.target_cl_ord_id for r in oms.new_requests(RequestKind.CANCEL)] == [news[0].cl_ord_id]
    assert s.working == {}
