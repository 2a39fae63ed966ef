"""Risk reason codes: small ints on the hot path and in RISK_EVENT records, names at the edges.

Code 0 means "allowed". Codes are stable: persist and monitor store and show them.
"""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    OK = 0
    # layer 1: per order
    BAD_REQUEST = 1  # quantity/price not positive or not finite, unknown request kind
    UNKNOWN_INSTRUMENT = 2  # no tick/lot rules for (venue, instrument)
    NO_REFERENCE = 3  # no two-sided book to check the price against
    PRICE_BAND = 4
    MAX_QTY = 5
    MAX_NOTIONAL = 6
    BAD_TICK = 7
    BAD_LOT = 8
    MIN_QTY = 9
    MIN_NOTIONAL = 10
    POST_ONLY_CROSS = 11
    DUPLICATE_ID = 12
    UNKNOWN_ORDER = 13  # amend of an order risk does not know
    # layer 2: exposure
    MAX_POSITION = 20
    MAX_VENUE_NOTIONAL = 21
    MAX_TOTAL_NOTIONAL = 22
    MAX_OPEN_ORDERS = 23
    RATE_LIMIT = 24
    # layer 3: account
    DAILY_LOSS = 30
    DRAWDOWN = 31
    REJECT_RATE = 32
    # layer 4: system
    STALE_MD = 40
    BOOK_RESYNC = 41
    HALTED = 42
    REDUCING = 43  # state REDUCING and the order would not reduce the position
    VENUE_NOT_READY = 44
    # not denials: events written to the events ring
    OMS_REJECT = 50  # the OMS refused the request (reason text from the OMS)
    KILL_SWITCH = 60  # kill switch fired (text says why)
    MANUAL_HALT = 61  # halt requested by the monitor / operator
    SIGNAL = 62  # SIGTERM / SIGINT
    RESUMED = 63
    STATE_CHANGE = 64
    STALE_PULL = 65  # resting orders cancelled on a stale or resyncing book


N_REASONS = 80
REASON_NAMES = ["" for _ in range(N_REASONS)]
for _r in Reason:
    REASON_NAMES[_r.value] = _r.name.lower()
REASON_TEXT = [n.encode()[:48] for n in REASON_NAMES]


def reason_name(code: int) -> str:
    """Lower-case name of a reason code ("unknown_<n>" for a code this build does not know)."""
    if 0 <= code < N_REASONS and REASON_NAMES[code]:
        return REASON_NAMES[code]
    return f"unknown_{code}"
