"""Idle strategies (Agrona style): what a polling loop does when a poll found no work.

`idle(work_count)` is called once per loop iteration; any work resets the back-off.
Chosen by config (`[system] idle_strategy`), never `sleep()` scattered in loops.
"""

from __future__ import annotations

import os
import time


class BusySpin:
    name = "busy_spin"

    def idle(self, work_count: int) -> None:
        pass

    def reset(self) -> None:
        pass


class Yielding:
    name = "yielding"

    def idle(self, work_count: int) -> None:
        if work_count <= 0:
            os.sched_yield()

    def reset(self) -> None:
        pass


class BackOff:
    """Spin, then yield, then sleep with doubling periods up to `max_sleep_ns`."""

    name = "backoff"

    def __init__(self, max_spins: int = 2000, max_yields: int = 200,
                 min_sleep_ns: int = 20_000, max_sleep_ns: int = 1_000_000) -> None:
        self.max_spins = max_spins
        self.max_yields = max_yields
        self.min_sleep_ns = min_sleep_ns
        self.max_sleep_ns = max_sleep_ns
        self.reset()

    def reset(self) -> None:
        self._spins = 0
        self._yields = 0
        self._sleep_ns = self.min_sleep_ns

    def idle(self, work_count: int) -> None:
        if work_count > 0:
            if self._spins:
                self.reset()
            return
        if self._spins < self.max_spins:
            self._spins += 1
            return
        if self._yields < self.max_yields:
            self._yields += 1
            os.sched_yield()
            return
        time.sleep(self._sleep_ns / 1e9)
        self._sleep_ns = min(self._sleep_ns * 2, self.max_sleep_ns)


IDLE_STRATEGIES = {"busy_spin": BusySpin, "yielding": Yielding, "backoff": BackOff}


def make_idle_strategy(name: str):
    try:
        return IDLE_STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown idle strategy {name!r}; choose one of {', '.join(IDLE_STRATEGIES)}") from None


LOOP_IDLE = ("backoff", "busy_spin", "yielding")


def spin_event_loop(loop, name: str):
    """Keep an asyncio loop from sleeping in epoll when it has nothing to do.

    `backoff` (the default) changes nothing: the loop blocks in epoll and the kernel wakes it
    when a socket has data (cheap on CPU, but on a VM a wake-up costs a few hundred µs).
    `busy_spin` schedules a callback that re-schedules itself, so every loop turn polls the
    sockets with a zero timeout and a frame is read as soon as it lands (the core stays at 100 %).
    `yielding` does the same and calls sched_yield() each turn, so another process pinned to the
    same core (the strategy process on a small host) runs whenever it is ready.
    Returns a callable that stops the spin (None for backoff)."""
    if name not in LOOP_IDLE:
        raise ValueError(f"unknown loop idle strategy {name!r}; choose one of {', '.join(LOOP_IDLE)}")
    if name == "backoff":
        return None
    state = {"on": True}
    yield_ = os.sched_yield if name == "yielding" else None

    def turn() -> None:
        if state["on"]:
            if yield_ is not None:
                yield_()
            loop.call_soon(turn)

    loop.call_soon(turn)

    def stop() -> None:
        state["on"] = False

    return stop
