"""Instruments, counters block, idle strategies and ringstat."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.enums import Exchange, OrderState
from common.instruments import (
    InstrumentError,
    Instruments,
    decimals,
    from_venue_symbol,
    venue_symbol,
)
from ringbuf.counters import Counters, read_counters
from ringbuf.idle import BackOff, BusySpin, Yielding, make_idle_strategy, spin_event_loop
from ringbuf.ring import Ring
from ringbuf.ringstat import counters_name, ring_name, snapshot

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("venue, name", [(Exchange.BINANCE, "BTCUSDT"), (Exchange.OKX, "BTC-USDT"),
                                         (Exchange.GATE, "BTC_USDT")])
def test_symbol_naming_round_trips(venue, name):
    assert venue_symbol("BTC-USDT", venue) == name
    assert from_venue_symbol(name, venue) == "BTC-USDT"


def test_binance_symbol_split_prefers_longest_quote():
    assert from_venue_symbol("ETHFDUSD", Exchange.BINANCE) == "ETH-FDUSD"
    assert from_venue_symbol("ethbtc", Exchange.BINANCE) == "ETH-BTC"
    with pytest.raises(InstrumentError):
        from_venue_symbol("USDT", Exchange.BINANCE)


def test_instrument_ids_follow_config_order_then_first_sight():
    ins = Instruments(["BTC-USDT", "ETH-USDT"])
    assert ins.id_for("BTC-USDT") == 1 and ins.id_for("ETH-USDT") == 2
    assert ins.id_for_venue_symbol("SOL_USDT", Exchange.GATE) == 3
    assert ins.id_for("sol-usdt") == 3
    assert ins.name(3) == "SOL-USDT" and ins.name(0) == "" and ins.name(99) == ""
    with pytest.raises(InstrumentError):
        ins.id_for("BTCUSDT")


def test_rounding_never_more_aggressive():
    ins = Instruments()
    s = ins.add(Exchange.BINANCE, "BTC-USDT", tick_size=0.01, lot_size=0.00001, min_notional=5.0)
    assert s.round_px(100.019, side=1) == 100.01
    assert s.round_px(100.011, side=-1) == 100.02
    assert s.round_px(100.0149) == 100.01
    assert s.round_px(100.02, side=1) == 100.02 and s.round_px(100.02, side=-1) == 100.02
    assert s.round_qty(0.123456) == 0.12345
    assert s.fmt_px(100.1) == "100.10" and s.fmt_qty(0.5) == "0.50000"
    assert s.is_on_tick(100.01) and not s.is_on_tick(100.015)
    assert decimals(0.5) == 1 and decimals(1.0) == 0 and decimals(1e-8) == 8


def test_order_state_classes():
    assert OrderState.FILLED.is_terminal and not OrderState.UNKNOWN.is_terminal
    assert OrderState.PARTIALLY_FILLED.is_open and not OrderState.PENDING_NEW.is_open


def test_counters_block_is_readable_from_outside(shm_prefix):
    c = Counters(counters_name(shm_prefix, "feed"), "feed")
    a = c.add("messages")
    b = c.add("errors")
    assert c.add("messages") == a
    c.inc(a, 5)
    c.inc(b)
    c.set(b, 7)
    c.touch()
    snap = read_counters(counters_name(shm_prefix, "feed"))
    assert snap["role"] == "feed" and snap["counters"] == {"messages": 5, "errors": 7}
    assert snap["last_update_ns"] > 0
    c.close()


def test_ringstat_shows_rings_and_counters(shm_prefix):
    r = Ring.create(ring_name(shm_prefix, "md-okx"), 64, 64)
    r.claim_producer()
    c = Counters(counters_name(shm_prefix, "strategy"), "strategy")
    c.inc(c.add("orders"), 3)
    snap = snapshot(shm_prefix)
    ring = snap["rings"][ring_name(shm_prefix, "md-okx")]
    assert ring["capacity"] == 64 and ring["mode"] == "lossy" and ring["producer_alive"]
    assert snap["counters"][counters_name(shm_prefix, "strategy")]["counters"]["orders"] == 3
    out = subprocess.run([sys.executable, "-m", "ringbuf.ringstat", "--prefix", shm_prefix],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "md-okx" in out.stdout and "orders" in out.stdout
    r.close()
    c.close()


def test_idle_strategies():
    assert isinstance(make_idle_strategy("busy_spin"), BusySpin)
    assert isinstance(make_idle_strategy("yielding"), Yielding)
    b = make_idle_strategy("backoff")
    assert isinstance(b, BackOff)
    b.max_spins, b.max_yields = 2, 1
    for _ in range(5):
        b.idle(0)
    assert b._sleep_ns > b.min_sleep_ns  # reached the sleeping phase and doubled
    b.idle(1)
    assert b._spins == 0 and b._sleep_ns == b.min_sleep_ns
    with pytest.raises(ValueError, match="unknown idle strategy"):
        make_idle_strategy("nap")


def test_spin_event_loop(monkeypatch):
    """busy_spin / yielding keep the loop turning while every task waits (no epoll sleep);
    yielding gives the core away each turn; stop() ends it; backoff leaves the loop alone."""
    import asyncio

    yields = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(1))

    async def go(name):
        loop = asyncio.get_running_loop()
        stop = spin_event_loop(loop, name)
        await asyncio.sleep(0.05)  # nothing else to do: only the spin turns the loop
        turned = len(yields)
        if stop is not None:
            stop()
        await asyncio.sleep(0.02)
        return stop, turned, len(yields)

    stop, turned, after = asyncio.run(go("backoff"))
    assert stop is None and turned == 0 and after == 0
    stop, turned, after = asyncio.run(go("yielding"))
    assert turned > 10  # many loop turns during one 50 ms sleep
    assert after - turned <= 1  # stopped
    with pytest.raises(ValueError, match="unknown loop idle strategy"):
        spin_event_loop(None, "nap")
