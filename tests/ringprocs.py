"""Producer and consumer bodies for multi-process ring tests (spawned processes)."""

from __future__ import annotations

import os
import time
import zlib

from ringbuf.records import (
    FILL_STRUCT,
    KIND_FILL,
    KIND_QUOTE,
    QUOTE_STRUCT,
)
from ringbuf.ring import Ring


def quote_values(i: int) -> tuple:
    # bid/ask derived from i so a reader can verify a record is whole, not torn
    px = 100.0 + (i % 1000) * 0.01
    chk = zlib.crc32(i.to_bytes(8, "little"))
    return (KIND_QUOTE, 0, 1, 0, 7, 0, i, i * 3, i, px, float(chk), px + 0.01, float(i % 977))


def check_quote(v: tuple) -> bool:
    i = v[6]
    return v[7] == i * 3 and v[8] == i and v[10] == float(zlib.crc32(i.to_bytes(8, "little"))) \
        and v[12] == float(i % 977) and abs(v[11] - v[9] - 0.01) < 1e-9


def produce_events(name: str, n: int, journal_path: str) -> None:
    r = Ring.attach(name)
    r.claim_producer(journal_path=journal_path)
    pack = FILL_STRUCT
    for i in range(n):
        r.write(pack, KIND_FILL, 0, 1, 1, 3, 1, 0, i, i, 1.5, 0.25, 0.001, b"USDT", b"%d" % i, b"c%d" % i, 0.0, 0)
    r.close()


def produce_quotes(name: str, n: int, pace_every: int = 0) -> None:
    r = Ring.attach(name)
    r.claim_producer()
    for i in range(n):
        r.write(QUOTE_STRUCT, *quote_values(i))
        if pace_every and i % pace_every == 0:
            time.sleep(0)
    r.close()


def produce_forever(name: str, ready_path: str) -> None:
    r = Ring.attach(name)
    r.claim_producer()
    i = 0
    open(ready_path, "w").close()
    while True:
        r.write(QUOTE_STRUCT, *quote_values(i))
        i += 1


def pid() -> int:
    return os.getpid()
