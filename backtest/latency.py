"""Latency model of a backtest: feed latency (venue -> us), order latency (us -> venue) and
ack latency (venue -> us), each constant or sampled from a recorded distribution.

Sampling is driven by one seeded numpy Generator, so the same seed gives the same run.
Must not read the clock: every time here is virtual.
"""

from __future__ import annotations

import json
import math

import numpy as np


class LatencyError(ValueError):
    """A latency file or value is unusable (one-line message)."""


_PCT_KEYS = ("p0", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p999", "p99.9", "p9999",
             "p100", "min", "max", "median")


def _pct_of(key: str) -> float | None:
    k = key.lower().replace("_us", "").replace("_", ".")
    if k == "min":
        return 0.0
    if k == "max":
        return 100.0
    if k == "median":
        return 50.0
    if not k.startswith("p"):
        return None
    digits = k[1:]
    try:
        if digits in ("999", "9999"):
            return float("99." + digits[2:])
        return float(digits)
    except ValueError:
        return None


class Dist:
    """One latency leg in microseconds: constant, empirical samples, or percentile points
    (sampled by linear interpolation of the inverse CDF between the given points)."""

    def __init__(self, kind: str, value_us: float = 0.0, samples_us: np.ndarray | None = None,
                 q: np.ndarray | None = None, v_us: np.ndarray | None = None, source: str = "") -> None:
        self.kind = kind
        self.value_us = float(value_us)
        self.samples_us = samples_us
        self.q = q
        self.v_us = v_us
        self.source = source

    # ---- constructors --------------------------------------------------------------
    @classmethod
    def constant(cls, us: float, source: str = "constant") -> Dist:
        if not (isinstance(us, int | float) and math.isfinite(us) and us >= 0):
            raise LatencyError(f"latency must be a finite number of microseconds >= 0, got {us!r}")
        return cls("constant", value_us=float(us), source=source)

    @classmethod
    def from_samples(cls, samples, source: str = "samples") -> Dist:
        try:
            a = np.asarray(samples, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise LatencyError(f"{source}: latency samples must be numbers (microseconds)") from None
        a = a[np.isfinite(a) & (a >= 0)]
        if a.size == 0:
            raise LatencyError(f"{source}: no usable latency samples (finite numbers >= 0 in microseconds)")
        if a.size == 1:
            return cls.constant(float(a[0]), source)
        return cls("samples", samples_us=np.sort(a), source=source)

    @classmethod
    def from_percentiles(cls, pcts: dict, source: str = "percentiles") -> Dist:
        pts = []
        for k, v in pcts.items():
            p = _pct_of(str(k))
            if p is None:
                continue
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise LatencyError(f"{source}: percentile {k!r} is not a number: {v!r}") from None
            if not (math.isfinite(fv) and fv >= 0) or not 0.0 <= p <= 100.0:
                raise LatencyError(f"{source}: percentile {k!r}={v!r} is out of range")
            pts.append((p / 100.0, fv))
        if not pts:
            raise LatencyError(f"{source}: no percentile keys (p50, p90, p99, ...) found")
        pts.sort()
        q = np.array([p for p, _ in pts])
        v = np.maximum.accumulate(np.array([x for _, x in pts]))  # a CDF never decreases
        if q[0] > 0.0:  # below the lowest given percentile: flat down to p0
            q = np.concatenate(([0.0], q))
            v = np.concatenate(([v[0]], v))
        if q[-1] < 1.0:
            q = np.concatenate((q, [1.0]))
            v = np.concatenate((v, [v[-1]]))
        if len(pts) == 1:
            return cls.constant(float(v[0]), source)
        return cls("percentiles", q=q, v_us=v, source=source)

    @classmethod
    def parse(cls, obj, source: str) -> Dist:
        """A number, a list of samples, or a dict of percentiles / {"samples_us": [...]}."""
        if isinstance(obj, bool):
            raise LatencyError(f"{source}: expected microseconds, got {obj!r}")
        if isinstance(obj, int | float):
            return cls.constant(float(obj), source)
        if isinstance(obj, list):
            return cls.from_samples(obj, source)
        if isinstance(obj, dict):
            for key in ("samples_us", "samples"):
                if key in obj:
                    return cls.from_samples(obj[key], f"{source}.{key}")
            for key in ("percentiles_us", "percentiles"):
                if isinstance(obj.get(key), dict):
                    return cls.from_percentiles(obj[key], f"{source}.{key}")
            return cls.from_percentiles(obj, source)
        raise LatencyError(f"{source}: expected a number, a list of samples or a dict of percentiles")

    # ---- use -----------------------------------------------------------------------
    def sample_ns(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n samples in integer nanoseconds (at least 1 ns: nothing travels instantly)."""
        if self.kind == "constant":
            out = np.full(n, self.value_us * 1000.0)
        elif self.kind == "samples":
            out = self.samples_us[rng.integers(0, self.samples_us.size, n)] * 1000.0
        else:
            out = np.interp(rng.random(n), self.q, self.v_us) * 1000.0
        return np.maximum(np.rint(out), 1).astype(np.int64)

    def percentile_us(self, p: float) -> float:
        if self.kind == "constant":
            return self.value_us
        if self.kind == "samples":
            return float(np.percentile(self.samples_us, p))
        return float(np.interp(p / 100.0, self.q, self.v_us))

    def scaled(self, f: float) -> Dist:
        src = f"{self.source} x{f:g}"
        if self.kind == "constant":
            return Dist("constant", value_us=self.value_us * f, source=src)
        if self.kind == "samples":
            return Dist("samples", samples_us=self.samples_us * f, source=src)
        return Dist("percentiles", q=self.q, v_us=self.v_us * f, source=src)

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.source,
                **{f"p{p}": round(self.percentile_us(p), 3) for p in (50, 90, 99)}}


class LatencyModel:
    """Three legs. `next_*_ns()` draw from pre-sampled blocks (one numpy call per 4096 draws)."""

    BLOCK = 4096

    def __init__(self, feed: Dist, order: Dist, ack: Dist, seed: int = 0) -> None:
        self.feed = feed
        self.order = order
        self.ack = ack
        self.seed = seed
        # one generator per leg: adding feed records never changes the order latencies drawn
        ss = np.random.SeedSequence(seed)
        self._rngs = [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(3)]
        self._blocks = [np.empty(0, dtype=np.int64)] * 3
        self._pos = [0, 0, 0]

    @classmethod
    def constant(cls, us: float, seed: int = 0) -> LatencyModel:
        d = Dist.constant(us, f"--latency-us {us:g}")
        return cls(d, d, d, seed)

    @classmethod
    def from_file(cls, path: str, seed: int = 0) -> LatencyModel:
        """JSON: a list of samples (all legs), {"samples_us": [...]}, percentiles {"p50": .., "p99": ..}
        (all legs), or per leg {"feed_us": X, "order_us": Y, "ack_us": Z} with X a number, samples or
        percentiles; a run summary's {"latency": {...}} section is read the same way. Order-only
        files (a tick-to-trade or order-to-ack distribution) give order and ack each half the value
        and feed the same half."""
        try:
            with open(path, "rb") as f:
                obj = json.loads(f.read())
        except OSError as e:
            raise LatencyError(f"cannot read latency file {path}: {e.strerror or e}") from None
        except ValueError as e:
            raise LatencyError(f"latency file {path} is not JSON: {e}") from None
        return cls.from_obj(obj, path, seed)

    @classmethod
    def from_obj(cls, obj, source: str, seed: int = 0) -> LatencyModel:
        if isinstance(obj, dict) and isinstance(obj.get("orders"), dict) and \
                isinstance(obj["orders"].get("ack_latency_us"), dict):
            # a run.py --summary: order -> ack percentiles measured live (a round trip)
            d = Dist.parse(obj["orders"]["ack_latency_us"], f"{source}.orders.ack_latency_us")
            half = d.scaled(0.5)
            return cls(half, half, half, seed)
        if isinstance(obj, dict) and isinstance(obj.get("latency"), dict | list):
            obj = obj["latency"]
            source += ".latency"
        if isinstance(obj, dict) and any(k in obj for k in ("feed_us", "order_us", "ack_us", "feed", "order",
                                                             "ack")):
            legs = {}
            for leg in ("feed", "order", "ack"):
                v = obj.get(f"{leg}_us", obj.get(leg))
                legs[leg] = Dist.parse(v, f"{source}.{leg}_us") if v is not None else None
            known = [d for d in legs.values() if d is not None]
            fallback = legs["order"] or known[0]
            return cls(legs["feed"] or fallback, legs["order"] or fallback, legs["ack"] or legs["order"] or fallback,
                       seed)
        round_trip_keys = ("order_to_ack_us", "tick_to_trade_us", "round_trip_us")
        if isinstance(obj, dict):
            for key in round_trip_keys:
                if key in obj:
                    d = Dist.parse(obj[key], f"{source}.{key}")
                    half = d.scaled(0.5)
                    return cls(half, half, half, seed)
        d = Dist.parse(obj, source)
        return cls(d, d, d, seed)

    def _next(self, leg: int, dist: Dist) -> int:
        p = self._pos[leg]
        b = self._blocks[leg]
        if p >= b.size:
            b = self._blocks[leg] = dist.sample_ns(self._rngs[leg], self.BLOCK)
            p = 0
        self._pos[leg] = p + 1
        return int(b[p])

    def feed_ns_array(self, n: int) -> np.ndarray:
        return self.feed.sample_ns(self._rngs[0], n)

    def next_order_ns(self) -> int:
        return self._next(1, self.order)

    def next_ack_ns(self) -> int:
        return self._next(2, self.ack)

    def describe(self) -> dict:
        return {"seed": self.seed, "feed_us": self.feed.describe(), "order_us": self.order.describe(),
                "ack_us": self.ack.describe()}

    def plot_samples_us(self, n: int = 20000) -> dict[str, np.ndarray]:
        """Samples of each leg for the report's latency plot (own generator: no effect on the run)."""
        rng = np.random.Generator(np.random.PCG64(self.seed + 7919))
        return {name: d.sample_ns(rng, n) / 1000.0 for name, d in
                (("feed", self.feed), ("order", self.order), ("ack", self.ack))}

