"""Read-side queries for /orders/stats and reports: orders by status and venue, fills, rates.

Plain dicts and lists (JSON-ready), names instead of small ints. Read-only; each
function takes an open psycopg connection (or a URL via `order_stats_url`).
Rates: success = orders the venue accepted (not REJECTED) / orders with a final or
live venue answer; fill rate = orders with any fill / accepted orders.
"""

from __future__ import annotations

import psycopg

from common.enums import Exchange, OrderState

_VENUE = {int(v): v.key for v in Exchange}
_STATE = {int(s): s.name for s in OrderState}


def _venue(v: int) -> str:
    return _VENUE.get(int(v), str(v))


def orders_by_status(conn: psycopg.Connection, since_ns: int = 0) -> list[dict]:
    rows = conn.execute(
        "SELECT venue, state, count(*) FROM orders WHERE last_ts_ns >= %s GROUP BY venue, state ORDER BY 1, 2",
        (since_ns,),
    ).fetchall()
    return [{"venue": _venue(v), "state": _STATE.get(int(s), str(s)), "count": int(c)} for v, s, c in rows]


def fill_stats(conn: psycopg.Connection, since_ns: int = 0) -> list[dict]:
    rows = conn.execute(
        """SELECT venue, instr_id, side, count(*), sum(qty), sum(px * qty), sum(fee),
                  sum(CASE WHEN liquidity = 1 THEN 1 ELSE 0 END)
           FROM fills WHERE event_ts_ns >= %s GROUP BY venue, instr_id, side ORDER BY 1, 2, 3""",
        (since_ns,),
    ).fetchall()
    return [
        {"venue": _venue(v), "instr_id": int(i), "side": "BUY" if s > 0 else "SELL", "fills": int(n),
         "qty": float(q or 0), "notional": float(nt or 0), "fees": float(f or 0), "maker_fills": int(mk or 0)}
        for v, i, s, n, q, nt, f, mk in rows
    ]


def rates(conn: psycopg.Connection, since_ns: int = 0) -> dict:
    """Per venue and overall: orders, accepted, rejected, filled (any fill), success and fill rates."""
    rej = int(OrderState.REJECTED)
    pending = (int(OrderState.PENDING_NEW), int(OrderState.UNKNOWN))
    rows = conn.execute(
        """SELECT venue, count(*),
                  sum(CASE WHEN state = %s THEN 1 ELSE 0 END),
                  sum(CASE WHEN state = ANY(%s) THEN 1 ELSE 0 END),
                  sum(CASE WHEN filled_qty > 0 THEN 1 ELSE 0 END),
                  sum(CASE WHEN state = %s THEN 1 ELSE 0 END)
           FROM orders WHERE last_ts_ns >= %s GROUP BY venue ORDER BY 1""",
        (rej, list(pending), int(OrderState.FILLED), since_ns),
    ).fetchall()
    out: dict = {"venues": {}}
    tot = [0, 0, 0, 0, 0]
    for v, n, r, p, f, full in rows:
        vals = [int(n), int(r or 0), int(p or 0), int(f or 0), int(full or 0)]
        out["venues"][_venue(v)] = _rate_dict(*vals)
        tot = [a + b for a, b in zip(tot, vals, strict=True)]
    out["total"] = _rate_dict(*tot)
    return out


def _rate_dict(n: int, rejected: int, pending: int, filled_any: int, filled_full: int) -> dict:
    answered = n - pending
    accepted = answered - rejected
    return {
        "orders": n, "rejected": rejected, "pending": pending, "accepted": accepted,
        "filled": filled_any, "fully_filled": filled_full,
        "success_rate": (accepted / answered) if answered > 0 else None,
        "fill_rate": (filled_any / accepted) if accepted > 0 else None,
    }


def fill_totals(conn: psycopg.Connection, since_ns: int = 0) -> dict:
    n, q, nt, f = conn.execute(
        "SELECT count(*), sum(qty), sum(px * qty), sum(fee) FROM fills WHERE event_ts_ns >= %s", (since_ns,)
    ).fetchone()
    return {"fills": int(n), "qty": float(q or 0), "notional": float(nt or 0), "fees": float(f or 0)}


def order_stats(conn: psycopg.Connection, since_ns: int = 0) -> dict:
    """Everything /orders/stats shows, in one dict."""
    return {
        "orders_by_status": orders_by_status(conn, since_ns),
        "fills": fill_totals(conn, since_ns),
        "fills_by_instrument": fill_stats(conn, since_ns),
        "rates": rates(conn, since_ns),
    }


def order_stats_url(url: str, since_ns: int = 0, timeout_s: float = 3.0) -> dict:
    """`order_stats` over a short-lived connection (for an HTTP handler)."""
    with psycopg.connect(url, connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
        return order_stats(conn, since_ns)


# ---- start-up reads for the strategy process (never on the hot path) ----------------------------

def latest_positions(conn: psycopg.Connection, since_ns: int = 0
                     ) -> dict[tuple[int, int], tuple[float, float, float, float, int]]:
    """The newest persisted snapshot per (venue, instr_id) taken at or after `since_ns`: (qty,
    avg_px, realized_pnl, fees, event_ts_ns). Empty when the schema is not there yet (a new
    database). `since_ns` is the run's start: a new run does not inherit an old run's books."""
    try:
        rows = conn.execute(
            "SELECT venue, instr_id, position, avg_px, realized_pnl, fees, event_ts_ns FROM positions "
            "WHERE event_ts_ns >= %s", (since_ns,)).fetchall()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return {}
    return {(int(v), int(i)): (float(q), float(a), float(r), float(f), int(t)) for v, i, q, a, r, f, t in rows}


def persisted_trade_ids(conn: psycopg.Connection, since_ns: int) -> dict[tuple[int, str], int]:
    """(venue, trade_id) -> event_ts_ns of every fill stored with event_ts_ns >= since_ns (the OMS's
    write time; its POSITION snapshot carries the same time, so a fill is in a snapshot exactly when
    its event_ts_ns is not after the snapshot's)."""
    try:
        rows = conn.execute("SELECT venue, trade_id, event_ts_ns FROM fills WHERE event_ts_ns >= %s",
                            (since_ns,)).fetchall()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return {}
    return {(int(v), str(t)): int(ts) for v, t, ts in rows}


def position_source(url: str, timeout_s: float = 5.0, run_start_ns: int = 0):
    """A callable for `OrderManager(position_source=...)`: `fn(since_ns)` -> (latest_positions,
    persisted_trade_ids since `since_ns`), read over one short-lived connection. Raises when the
    database cannot be reached (the OMS then rebuilds positions from the venues' fills)."""
    def read(since_ns: int) -> tuple[dict, dict]:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
            return latest_positions(conn, run_start_ns), persisted_trade_ids(conn, since_ns)
    return read
