"""Client-side token buckets and rate-limit back-off, one set per venue.

Defaults are each venue's published spot limits; config raises them (the simulator
benchmark needs far more than any real venue allows). Pure arithmetic on a
caller-supplied monotonic clock, so it costs nothing to test.
"""

from __future__ import annotations

import time

# published defaults: (orders per second, burst) for new/amend, and for cancels
VENUE_LIMITS = {
    # Binance: ORDERS 50 per 10 s per account (unfilled-order count); cancels cost 0 since 2026-04
    "binance": {"order_rate": 5.0, "order_burst": 50, "cancel_rate": 100.0, "cancel_burst": 100},
    # OKX: 60 requests per 2 s per instrument for place, amend and cancel (independent)
    "okx": {"order_rate": 30.0, "order_burst": 60, "cancel_rate": 30.0, "cancel_burst": 60},
    # Gate: spot place + amend 10/s per UID and market; cancel 200/s
    "gate": {"order_rate": 10.0, "order_burst": 10, "cancel_rate": 200.0, "cancel_burst": 200},
}


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "last_ns", "blocked_until_ns", "backoff_s", "denied")

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last_ns = time.monotonic_ns()
        self.blocked_until_ns = 0
        self.backoff_s = 0.0
        self.denied = 0

    def try_acquire(self, now_ns: int, n: float = 1.0) -> bool:
        if now_ns < self.blocked_until_ns:
            self.denied += 1
            return False
        t = self.tokens + (now_ns - self.last_ns) * 1e-9 * self.rate
        self.last_ns = now_ns
        if t > self.burst:
            t = self.burst
        if t < n:
            self.tokens = t
            self.denied += 1
            return False
        self.tokens = t - n
        return True

    def on_rate_limited(self, now_ns: int, retry_after_s: float = 0.0) -> float:
        """The venue said "too many": empty the bucket and block for an exponential back-off
        (or the venue's Retry-After). Returns the back-off in seconds."""
        self.backoff_s = min(max(self.backoff_s * 2, 0.05), 5.0)
        wait = max(self.backoff_s, retry_after_s)
        self.tokens = 0.0
        self.last_ns = now_ns
        self.blocked_until_ns = now_ns + int(wait * 1e9)
        return wait

    def on_success(self) -> None:
        self.backoff_s = 0.0
