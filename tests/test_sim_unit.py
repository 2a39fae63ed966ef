"""Simulator unit tests: signing rules (verified vectors), checksum, number formats, generator
determinism and matching-engine rules. No sockets."""

from __future__ import annotations

import pytest

from sim import auth
from sim.engine import BUY, SELL, UNKNOWN_ORDER, WOULD_TAKE, Engine
from sim.market import Book, Instrument, Market, fmt_units, to_units
from sim.venues.okx import checksum_of

pytestmark = pytest.mark.unit

BIN_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BIN_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"


# -- signatures (vectors from shared/PROTOCOLS.md, verified there) ----------------------
def test_binance_rest_vector():
    q = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    payload = auth.binance_rest_payload(q + "&signature=abc", b"")
    assert payload == q
    assert auth.binance_hmac_hex(BIN_SECRET, payload) == \
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_binance_rest_vector_percent_encoded():
    q = ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC"
         "&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
    assert auth.binance_hmac_hex(BIN_SECRET, auth.binance_rest_payload(q, b"")) == \
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"


def test_binance_ws_vector_sorted_params():
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
              "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532, "apiKey": BIN_KEY,
              "signature": "ignored"}
    payload = auth.binance_ws_payload(params)
    assert payload.startswith("apiKey=") and "signature" not in payload
    assert auth.binance_hmac_hex(BIN_SECRET, payload) == \
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    assert auth.hmac_hex_equal(auth.binance_hmac_hex(BIN_SECRET, payload),
                               "AA1B5712C094BC4E57C05A1A5C1FD8D88DCD628338EA863FEC7B88E59FE2DB24")


def test_binance_ws_vector_non_ascii():
    params = {"symbol": "１２３４５６", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "1.00000000", "price": "0.10000000", "recvWindow": 5000, "timestamp": 1645423376532,
              "apiKey": BIN_KEY}
    assert auth.binance_hmac_hex(BIN_SECRET, auth.binance_ws_payload(params)) == \
        "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"


def test_binance_session_logon_vector():
    payload = auth.binance_ws_payload({"apiKey": BIN_KEY, "timestamp": 1649729878532})
    assert auth.binance_hmac_hex(BIN_SECRET, payload) == \
        "1cf54395b336b0a9727ef27d5d98987962bc47aca6e13fe978612d0adee066ed"


def test_ed25519_accept_and_reject():
    payload = "apiKey=sim-ed25519-key&timestamp=1"
    sig = auth.ed25519_sign_b64(auth.TEST_ED25519_PRIVATE_KEY_B64, payload)
    assert auth.ed25519_verify_b64(auth.TEST_ED25519_PUBLIC_KEY_B64, payload, sig)
    assert not auth.ed25519_verify_b64(auth.TEST_ED25519_PUBLIC_KEY_B64, payload + "0", sig)
    assert not auth.ed25519_verify_b64(auth.TEST_ED25519_PUBLIC_KEY_B64, payload, "not base64!")


def test_gate_rest_vectors():
    assert auth.gate_rest_sign("secret", "GET", "/api/v4/futures/orders", "contract=BTC_USD&status=finished&limit=50",
                               b"", "1541993715") == (
        "55f84ea195d6fe57ce62464daaa7c3c02fa9d1dde954e4c898289c9a2407a3d6fb3faf24deff16790d726b66ac9f7452"
        "6668b13bd01029199cc4fcc522418b8a")
    body = b'{"contract":"BTC_USD","type":"limit","size":100,"price":6800,"time_in_force":"gtc"}'
    assert auth.gate_rest_sign("secret", "POST", "/api/v4/futures/orders", "", body, "1541993715") == (
        "eae42da914a590ddf727473aff25fc87d50b64783941061f47a3fdb92742541fc4c2c14017581b4199a1418d54471c26"
        "9c03a38d788d802e2c306c37636389f0")


def test_okx_login_illustration():
    assert auth.okx_ws_login_sign("22582BD0CFF14C41EDBF1AB98506286D", "1538054050") == \
        "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M="
    assert auth.okx_sign("22582BD0CFF14C41EDBF1AB98506286D",
                         "2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC") == \
        "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY="


def test_okx_checksum_vectors():
    assert checksum_of([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294
    assert checksum_of([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == 831078360


# -- number formats -------------------------------------------------------------------
@pytest.mark.parametrize("s,dec,units", [("0.1", 1, 1), ("60000.01", 2, 6000001), ("5", 3, 5000),
                                         ("0.00001", 5, 1)])
def test_units_round_trip(s, dec, units):
    assert to_units(s, dec) == units
    assert fmt_units(units, dec) == s.rstrip("0").rstrip(".") if "." in s else s


def test_instrument_formats():
    b = Instrument("binance", "BTC-USDT", 0)
    o = Instrument("okx", "BTC-USDT", 0)
    assert b.px(6000001) == "60000.01000000" and b.qty(150) == "0.00150000"
    assert o.px(600001) == "60000.1" and o.px(600000) == "60000"
    assert b.parse_px("60000.01") == 6000001 and b.parse_px("60000.015") is None
    assert b.parse_qty("0.00001") == 1 and b.parse_qty("0.000015") is None and b.parse_qty("-1") is None
    assert b.parse_px("abc") is None and b.parse_px("0") is None


# -- generator ---------------------------------------------------------------------------
def _run(seed: int, steps: int = 300) -> list:
    m = Market(["BTC-USDT", "ETH-USDT"], ("binance", "okx", "gate"), seed, 100)
    out = []
    for _ in range(steps):
        for st in m.symbols.values():
            m.advance_fair(st)
            for v, b in st.books.items():
                b.begin_step()
                b.step(m.venue_mid(st, v), m.trade_rate)
                out.append((v, st.symbol, dict(b.chg_bids), dict(b.chg_asks), list(b.trades), b.last_top))
    return out


def test_generator_deterministic_for_seed():
    assert _run(7) == _run(7)
    assert _run(7) != _run(8)


def test_generator_book_shape():
    m = Market(["BTC-USDT"], ("binance", "okx", "gate"), 3, 100)
    st = m.symbols["BTC-USDT"]
    trades = 0
    for _ in range(2000):
        m.advance_fair(st)
        for v, b in st.books.items():
            b.begin_step()
            b.step(m.venue_mid(st, v), m.trade_rate)
            trades += len(b.trades)
            assert b.best_bid() < b.best_ask()
            assert len(b.bid_keys) >= 50 and len(b.ask_keys) >= 50
            assert sorted(b.bids, reverse=True) == [-k for k in b.bid_keys]
    assert trades > 500
    mids = {v: (b.best_bid() * b.inst.tick + b.best_ask() * b.inst.tick) / 2 for v, b in st.books.items()}
    assert len({round(x, 2) for x in mids.values()}) > 1  # venues differ a little
    assert max(mids.values()) / min(mids.values()) < 1.002


# -- matching engine ---------------------------------------------------------------------
def _engine() -> tuple[Engine, Book]:
    import random

    inst = Instrument("binance", "BTC-USDT", 0)
    book = Book(inst, random.Random(1), 60)
    for i in range(60):
        book.set_bid(100000 - i, 1000)
        book.set_ask(100001 + i, 1000)
    book.begin_step()
    eng = Engine("binance", {"BTC-USDT": book}, {"USDT": 1_000_000.0, "BTC": 100.0}, 1000.0, 0.0, 0.001)
    return eng, book


def _place(eng, side, ticks, lots, tif="GTC", post_only=False, cid=""):
    inst = eng.books["BTC-USDT"].inst
    o = eng.new_order("k", inst, side, ticks, lots, tif, post_only, cid)
    return o, eng.place(o)


def _trade(book, eng, taker, ticks, lots):
    book.begin_step()
    book.trades.append((taker, ticks, lots, 1))
    eng.on_book_step("BTC-USDT")


def test_resting_order_queues_behind_displayed_then_fills_partially():
    eng, book = _engine()
    o, why = _place(eng, BUY, 100000, 500)  # behind 1000 displayed
    assert why == "" and o.status == "NEW" and o.queue_ahead == 1000
    _trade(book, eng, SELL, 100000, 800)
    assert o.filled_lots == 0 and o.queue_ahead == 200
    _trade(book, eng, SELL, 100000, 400)
    assert o.filled_lots == 200 and o.status == "PARTIALLY_FILLED"
    _trade(book, eng, SELL, 100000, 1000)
    assert o.status == "FILLED" and o.filled_lots == 500
    assert all(f.maker for f in eng.recent_fills("k"))


def test_price_time_priority_between_own_orders():
    eng, book = _engine()
    a, _ = _place(eng, SELL, 100001, 300, cid="a")
    b, _ = _place(eng, SELL, 100001, 300, cid="b")
    better, _ = _place(eng, SELL, 100002, 300, cid="c")
    _trade(book, eng, BUY, 100001, 1000 + 400)
    assert a.status == "FILLED" and b.filled_lots == 100 and better.filled_lots == 0


def test_trade_through_better_price_fills_first():
    eng, book = _engine()
    o, _ = _place(eng, BUY, 99990, 100)
    _trade(book, eng, SELL, 99980, 50)  # a sell printed below our bid: we were ahead
    assert o.filled_lots == 50


def test_book_moving_through_resting_order_fills_it():
    eng, book = _engine()
    o, _ = _place(eng, BUY, 99995, 100)
    book.begin_step()
    for t in list(book.ask_keys):
        book.set_ask(t, 0)
    book.set_ask(99995, 700)
    eng.on_book_step("BTC-USDT")
    assert o.status == "FILLED"


def test_crossing_order_takes_as_taker_and_consumes_book():
    eng, book = _engine()
    o, why = _place(eng, BUY, 100002, 1500)
    assert why == ""
    assert o.filled_lots == 1500 and o.status == "FILLED"
    assert 100001 not in book.asks and book.asks[100002] == 500
    assert not any(f.maker for f in eng.recent_fills("k"))


def test_post_only_would_cross_is_rejected():
    eng, _ = _engine()
    o, why = _place(eng, BUY, 100001, 10, post_only=True)
    assert why == WOULD_TAKE and o.status == "REJECTED" and not eng.orders
    o, why = _place(eng, BUY, 100000, 10, post_only=True)
    assert why == "" and o.status == "NEW"


def test_ioc_and_fok():
    eng, book = _engine()
    o, _ = _place(eng, BUY, 100001, 1500, tif="IOC")
    assert o.filled_lots == 1000 and o.status == "EXPIRED"
    o, _ = _place(eng, BUY, 100002, 5000, tif="FOK")
    assert o.filled_lots == 0 and o.status == "EXPIRED" and book.asks[100002] == 1000
    o, _ = _place(eng, BUY, 100002, 1000, tif="FOK")
    assert o.status == "FILLED"


def test_cancel_and_cancel_of_filled_order():
    eng, book = _engine()
    o, _ = _place(eng, BUY, 99000, 100)
    usdt_locked = eng.account("k")["USDT"][1]
    assert usdt_locked > 0
    assert eng.cancel(o) == "" and o.status == "CANCELED"
    assert eng.account("k")["USDT"][1] == pytest.approx(0.0)
    assert eng.cancel(o) == UNKNOWN_ORDER
    f, _ = _place(eng, BUY, 100001, 10)
    assert f.status == "FILLED" and eng.cancel(f) == UNKNOWN_ORDER


def test_insufficient_balance_and_duplicate_client_id():
    eng, _ = _engine()
    _o, why = _place(eng, SELL, 200000, 101 * 10**5)  # 101 BTC > 100
    assert why == "insufficient_balance"
    _o, why = _place(eng, BUY, 90000, 10, cid="x")
    assert why == ""
    _o, why = _place(eng, BUY, 90000, 10, cid="x")
    assert why == "duplicate_client_id"


def test_amend_keeps_or_loses_priority():
    eng, book = _engine()
    a, _ = _place(eng, BUY, 100000, 500)
    assert eng.amend(a, None, 400, keep_priority=True) == ""
    assert a.lots == 400 and a.queue_ahead == 1000
    assert eng.amend(a, 99999, None) == ""
    assert a.ticks == 99999 and a.queue_ahead == 1000
    assert eng.amend(a, 100001, None) == ""  # crossing amend takes liquidity
    assert a.status == "FILLED"


def test_fees_and_balances():
    eng, _ = _engine()
    o, _ = _place(eng, BUY, 100001, 1000)  # 0.01 BTC at 1000.01 as taker (fee 0.1% in BTC)
    acc = eng.account("k")
    assert o.status == "FILLED"
    assert acc["BTC"][0] == pytest.approx(100 + 0.01 - 0.00001)
    assert acc["USDT"][0] == pytest.approx(1_000_000 - 10.0001)
    assert acc["USDT"][1] == pytest.approx(0.0)


# -- hot-path helpers agree with the straightforward versions --------------------------------
def test_units_formatter_matches_fmt_units():
    import random

    from sim.market import units_formatter

    rng = random.Random(4)
    for dec in range(0, 10):
        for pad in (None, 8, 2, dec):
            f = units_formatter(dec, pad)
            for v in [0, 1, 5, 10, 99, 100, 101, 12345678, 10**12 + 7, -5, -123456] + \
                    [rng.randrange(10**14) for _ in range(300)]:
                assert f(v) == fmt_units(v, dec, pad)


def test_lots_sampler_draws_like_lognormvariate():
    import random

    from sim.market import lots_sampler

    a, b = random.Random(9), random.Random(9)
    draw = lots_sampler(b, 40_000_000)
    for _ in range(20_000):
        assert draw() == max(1, int(40_000_000 * a.lognormvariate(-0.5, 0.9)))
    assert a.random() == b.random()  # same number of draws consumed


def test_level_sizes_come_from_a_seeded_log_normal_table():
    import math
    import random

    from sim.market import SIZE_TABLE_BITS

    def book(seed):
        return Book(Instrument("okx", "BTC-USDT", 0), random.Random(seed), 50)

    a, b, c = book(5), book(5), book(6)
    assert len(a.size_table) == 1 << SIZE_TABLE_BITS
    assert a.size_table == b.size_table != c.size_table
    logs = [math.log(n / a.inst.level_lots) for n in a.size_table]
    mean = sum(logs) / len(logs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))
    assert abs(mean + 0.5) < 0.1 and abs(sd - 0.9) < 0.1  # lognormvariate(-0.5, 0.9)
    table = set(a.size_table)
    assert all(a.rand_lots() in table for _ in range(1000))
    a.seed_levels(60_000.0)
    for _ in range(200):
        a.begin_step()
        a.step(60_000.0, 0.0, noise=True)  # no trades: every size set is a fresh draw
        assert all(n in table for n in list(a.chg_bids.values()) + list(a.chg_asks.values()) if n)


def test_okx_incremental_checksum_equals_full_recompute():
    """The books checksum is kept from per-level strings refreshed where the book changed,
    including changes our own taker orders make between generator steps."""
    from sim import SimConfig, Simulator

    sim = Simulator(SimConfig(symbols=["BTC-USDT", "ETH-USDT"], seed=4, port_base=0))
    app, eng = sim.venues["okx"], sim.engines["okx"]

    def full(book):
        inst = book.inst
        return checksum_of([(inst.px(t), inst.qty(q)) for t, q in book.top_bids(25)],
                           [(inst.px(t), inst.qty(q)) for t, q in book.top_asks(25)])

    sts = list(sim.market.symbols.values())
    for i in range(600):
        st = sts[i % 2]
        sim.market.advance_fair(st)
        book = st.books["okx"]
        book.begin_step()
        book.step(sim.market.venue_mid(st, "okx"), sim.market.trade_rate)
        if i % 7 == 3:  # a taker order eats displayed levels between steps
            side = BUY if i % 2 else SELL
            ticks = book.best_ask() + 2 if side == BUY else book.best_bid() - 2
            o = eng.new_order("k", book.inst, side, ticks, book.inst.min_lots * 50, "IOC", False, "")
            eng.place(o)
        assert app.checksum(book) == full(book)


def test_engine_finds_latest_closed_order_by_client_id():
    eng, _book = _engine()
    first, _ = _place(eng, BUY, 99000, 10, cid="same")
    eng.cancel(first)
    second, _ = _place(eng, BUY, 99001, 10, cid="same")
    eng.cancel(second)
    assert eng.find("k", client_id="same") is second
    assert eng.find("k", client_id="never") is None
    assert eng.find("other", client_id="same") is None


def test_engine_many_resting_orders_trade_reaches_only_its_prefix():
    eng, book = _engine()
    far = [_place(eng, BUY, 90000 - i, 1)[0] for i in range(500)]
    near, _ = _place(eng, BUY, 99990, 100)
    _trade(book, eng, SELL, 99980, 50)
    assert near.filled_lots == 50 and all(o.filled_lots == 0 for o in far)


def test_order_push_templates_equal_dict_dumps():
    """Order pushes and results are formatted from templates on the hot path; they must be the
    bytes orjson makes of the reference dicts, for every kind of event and awkward free text."""
    import itertools

    import orjson

    from sim import SimConfig, Simulator

    sim = Simulator(SimConfig(symbols=["BTC-USDT", "ETH-USDT"], seed=4, port_base=0))
    st = sim.market.symbols["BTC-USDT"]
    cases = []
    for v in ("binance", "okx", "gate"):
        eng = sim.engines[v]
        book = st.books[v]
        inst = book.inst
        lots = inst.min_lots * 40
        orders = [
            eng.new_order("sim-key", inst, BUY, book.best_bid() - 5, lots, "GTC", False, "resting1"),
            eng.new_order("sim-key", inst, BUY, book.best_ask() + 3, lots * 50, "IOC", False, "taker-2"),
            eng.new_order("sim-key", inst, SELL, book.best_bid() - 3, lots, "GTC", False, "t-sell_3"),
            eng.new_order("sim-key", inst, BUY, book.best_ask() + 500, lots, "IOC", False, ""),
            eng.new_order("sim-key", inst, BUY, 0, 10**15, "IOC", False, "mkt", "MARKET"),
        ]
        orders[4].quote_qty = 50.0
        for o in orders:
            eng.place(o)
        orders[0].extra.update({"tag": 'we"ird\\tag\n', "reqId": "réq\u2028", "cancelSource": "1",
                                "cancelSourceReason": "Order canceled by system", "amendResult": "0",
                                "cancel_cid": 'new"cid', "amend_text": "a\tb", "amount_str": "5e1",
                                "ordType": "post_only", "tif": "poc", "finish_as": "cancelled"})
        orders[0].orig_client_id = "orig-1"
        eng.cancel(orders[0])
        orders[2].extra["tag"] = "plain"
        cases += [(v, kind, o, f) for kind, o, f in eng.events]
        eng.events = []
    assert {k for _, k, _, _ in cases} >= {"new", "trade", "canceled", "expired"}
    assert any(f is not None and f.maker is False for _, _, _, f in cases)
    bn, ok, gt = sim.venues["binance"], sim.venues["okx"], sim.venues["gate"]
    for v, kind, o, fill in cases:
        if v == "binance":
            bn._anon = itertools.count(7)
            ref = orjson.dumps(bn.execution_report(kind, o, fill, 1234))
            bn._anon = itertools.count(7)
            assert bn.execution_report_json(kind, o, fill, 1234).encode() == ref
            assert bn.cancel_result_json(o) == orjson.dumps(bn.cancel_result(o))
        elif v == "okx":
            ref = orjson.dumps({"arg": {"channel": "orders", "instType": "SPOT", "uid": o.api_key},
                                "data": [ok.order_view(o, fill)]})
            assert ok.order_push_json(o, fill).encode() == ref
        else:
            assert gt.order_view_json(o).encode() == orjson.dumps(gt.order_view(o))
            for event in ("put", "update", "finish"):
                assert gt.order_view_json(o, event).encode() == orjson.dumps(gt.push_view(o, event))
    # binance keeps the fixed part of the last executionReport: a resized order shows its new size
    o = next(o for v, _, o, _ in cases if v == "binance")
    bn.execution_report_json("new", o, None, 1)
    o.lots += 3
    bn._anon = itertools.count(7)
    ref = orjson.dumps(bn.execution_report("amended", o, None, 1))
    bn._anon = itertools.count(7)
    assert bn.execution_report_json("amended", o, None, 1).encode() == ref
    # okx reuses an orders push within one dispatched batch: the next batch shows the new state
    o = next(o for v, _, o, _ in cases if v == "okx")
    got: list = []

    class _Conn:
        def send_text(self, body):
            got.append(body)

    class _Sess:
        api_key = o.api_key
        conn = _Conn()

    ok.order_subs.add(_Sess())  # type: ignore[arg-type]
    ok.engine.events = [("new", o, None), ("canceled", o, None)]
    ok.dispatch_events()
    o.extra["reqId"] = "r2"
    o.lots += 1
    ok.engine.events = [("amended", o, None)]
    ok.dispatch_events()
    ref = orjson.dumps({"arg": {"channel": "orders", "instType": "SPOT", "uid": o.api_key},
                        "data": [ok.order_view(o, None)]})
    assert got[0] == got[1] != got[2] == ref
    o = next(o for v, _, o, _ in cases if v == "gate")
    before = gt.order_view_json(o)
    o.ticks += 1
    o.extra["amend_text"] = "moved"
    assert gt.order_view_json(o).encode() == orjson.dumps(gt.order_view(o))
    assert gt.order_view_json(o) != before


def test_lean_order_entry_matches_full_checks():
    """Order terms accepted once are looked up, not re-validated: the next order with the same
    terms must come out the same, and a bad client id or response type still fails as before."""
    from sim import SimConfig, Simulator
    from sim.venues.binance import BinanceError
    from sim.venues.gate import GateError

    sim = Simulator(SimConfig(symbols=["BTC-USDT"], seed=4, port_base=0))
    bn, ok, gt = sim.venues["binance"], sim.venues["okx"], sim.venues["gate"]
    p = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "price": "30000.00",
         "quantity": "0.00100", "newClientOrderId": "a1", "newOrderRespType": "RESULT"}
    first, _ = bn.build_order("sim-key", p)
    again, rt = bn.build_order("sim-key", dict(p, newClientOrderId="a-2"))
    assert rt == "RESULT" and again.client_id == "a-2"
    assert [(o.inst, o.side, o.ticks, o.lots, o.tif, o.post_only, o.order_type) for o in (first, again)] == \
        [(first.inst, 1, 3000000, 100, "IOC", False, "LIMIT")] * 2
    for bad in ({"newClientOrderId": "a b"}, {"newClientOrderId": "x\n"}, {"newOrderRespType": "NOPE"},
                {"newClientOrderId": 5}):
        with pytest.raises(BinanceError) as e:
            bn.build_order("sim-key", dict(p, **bad))
        assert e.value.code == -1100
    a = {"instIdCode": 100001, "tdMode": "cash", "side": "buy", "ordType": "post_only", "px": "30000",
         "sz": "0.001", "clOrdId": "k1"}
    assert ok.place("sim-key", a)["sCode"] == "0"
    assert ok.place("sim-key", dict(a, clOrdId="k2"))["sCode"] == "0"
    assert ok.engine.find("sim-key", client_id="k2").post_only
    assert ok.place("sim-key", dict(a, clOrdId="k-3"))["sCode"] == "51000"
    assert ok.place("sim-key", dict(a, clOrdId="k1"))["sCode"] == "51016"  # still open: duplicate
    r = {"text": "t-1", "currency_pair": "BTC_USDT", "type": "limit", "side": "buy", "amount": "0.001",
         "price": "30000", "time_in_force": "poc"}
    assert gt.place("sim-key", r).status == "NEW"
    o = gt.place("sim-key", dict(r, text="t-2"))
    assert o.status == "NEW" and o.post_only and o.extra["tif"] == "poc"
    with pytest.raises(GateError) as ge:
        gt.place("sim-key", dict(r, text="nope"))
    assert ge.value.label == "INVALID_TEXT"


def test_hmac_from_pad_states_equals_hmac_module():
    import hashlib
    import hmac

    for secret in ("", "k", "sim-secret", "x" * 64, "y" * 65, "z" * 200, "clé"):
        for payload in ("", "a=1", "apiKey=k&price=1.00&symbol=BTCUSDT&timestamp=1", "ü" * 100):
            assert auth.binance_hmac_hex(secret, payload) == \
                hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def test_ws_payload_sorting_kept_per_key_set():
    a = {"symbol": "BTCUSDT", "timestamp": 5, "apiKey": "k", "signature": "s", "flag": True}
    b = {"apiKey": "k", "flag": False, "timestamp": 6, "symbol": "ETHUSDT"}  # same keys, other order
    for _ in range(2):
        assert auth.binance_ws_payload(a) == "apiKey=k&flag=true&symbol=BTCUSDT&timestamp=5"
        assert auth.binance_ws_payload(b) == "apiKey=k&flag=false&symbol=ETHUSDT&timestamp=6"
        assert auth.binance_ws_payload(dict(a, recvWindow=100)) == \
            "apiKey=k&flag=true&recvWindow=100&symbol=BTCUSDT&timestamp=5"


def test_okx_order_reply_template_equals_dict_dumps(monkeypatch):
    import orjson

    import sim.venues.okx as okx_mod
    from sim import SimConfig, Simulator

    monkeypatch.setattr(okx_mod.time, "time_ns", lambda: 1_780_000_000_123_456_789)
    ok = Simulator(SimConfig(symbols=["BTC-USDT"], seed=4, port_base=0)).venues["okx"]
    sent: list = []

    class _Sess:
        class conn:  # noqa: N801
            send_text = sent.append

    good = {"ordId": "1", "clOrdId": "a", "tag": 'x"y', "ts": "1", "sCode": "0", "sMsg": "Order placed"}
    bad = {"ordId": "", "clOrdId": "b", "tag": "", "ts": "1", "sCode": "51000", "sMsg": "Parameter px error"}
    for rid in (None, "n1", "abc\u00e9"):
        for data, code, msg in (([good], "0", ""), ([bad], "1", "All operations failed"),
                                ([good, bad], "2", "Partial success"), ([], "0", "")):
            sent.clear()
            ok.op_reply(_Sess(), rid, "batch-orders", data, 1_780_000_000_000_000_000)  # type: ignore[arg-type]
            ref = {"op": "batch-orders", "code": code, "msg": msg, "data": data, "inTime": "1780000000000000",
                   "outTime": "1780000000123456"}
            if rid is not None:
                ref = {"id": rid, **ref}
            got = sent[0] if isinstance(sent[0], bytes) else sent[0].encode()
            assert got == orjson.dumps(ref)


def test_okx_orders_pushes_follow_subscribe_login_and_close():
    """Sessions with the orders channel are kept per api key: a push must still reach exactly the
    sessions subscribed under the order's key after unsubscribes, re-logins and closes."""
    import base64
    import hashlib
    import hmac
    import time

    from sim import SimConfig, Simulator
    from sim.config import Account
    from sim.venues.okx import OkxSession

    sim = Simulator(SimConfig(symbols=["BTC-USDT"], seed=4, port_base=0,
                              accounts=[Account("sim-key", "sim-secret", "sim-pass"), Account("k2", "s2", "p2")]))
    ok = sim.venues["okx"]
    inst = ok.instruments["BTC-USDT"]

    class _Conn:
        def __init__(self) -> None:
            self.got: list = []

        def send_text(self, body) -> None:
            self.got.append(body)

    def login(s: OkxSession, key: str, secret: str, pp: str) -> None:
        ts = str(int(time.time()))
        sign = base64.b64encode(hmac.new(secret.encode(), (ts + "GET/users/self/verify").encode(),
                                         hashlib.sha256).digest()).decode()
        ok.ws_login(s, None, [{"apiKey": key, "passphrase": pp, "timestamp": ts, "sign": sign}])
        assert s.api_key == key

    sessions = []
    for _ in range(2):
        s = OkxSession(ok, True)
        s.conn = _Conn()  # type: ignore[assignment]
        login(s, "sim-key", "sim-secret", "sim-pass")
        ok.ws_subscribe(s, "subscribe", None, [{"channel": "orders", "instType": "SPOT"}])
        sessions.append(s)
    s1, s2 = sessions

    def push() -> tuple[int, int]:
        n1, n2 = len(s1.conn.got), len(s2.conn.got)  # type: ignore[attr-defined]
        o = ok.engine.new_order("sim-key", inst, BUY, 1, inst.min_lots, "GTC", False, "")
        ok.engine.events = [("new", o, None)]
        ok.dispatch_events()
        return len(s1.conn.got) - n1, len(s2.conn.got) - n2  # type: ignore[attr-defined]

    assert push() == (1, 1)
    ok.ws_subscribe(s2, "unsubscribe", None, [{"channel": "orders", "instType": "SPOT"}])
    assert push() == (1, 0)
    ok.ws_subscribe(s2, "subscribe", None, [{"channel": "orders", "instType": "SPOT"}])
    assert push() == (1, 1)
    login(s1, "k2", "s2", "p2")  # the same connection now acts for another key
    assert push() == (0, 1)
    s2.on_close()
    assert push() == (0, 0)
