"""Versioned SQL migrations for the persistence schema, applied at start (idempotent).

Each migration runs once, in its own transaction, under an advisory lock, and is
recorded in `schema_migrations`. Tables live in the first schema of the
connection's `search_path` (a URL with `options=-csearch_path%3Dname` selects
another schema; it is created when missing). Never edit an applied migration:
add a new one.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

# Natural keys make every write idempotent: a replayed batch inserts nothing new.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "events tables",
        """
        CREATE TABLE IF NOT EXISTS fills (
            venue smallint NOT NULL,
            trade_id text COLLATE "C" NOT NULL,
            cl_ord_id text NOT NULL,
            instr_id integer NOT NULL,
            side smallint NOT NULL,
            liquidity smallint NOT NULL,
            px double precision NOT NULL,
            qty double precision NOT NULL,
            fee double precision NOT NULL,
            fee_asset text NOT NULL,
            realized_pnl double precision NOT NULL,
            event_ts_ns bigint NOT NULL,
            exch_ts_ns bigint NOT NULL,
            flags smallint NOT NULL,
            PRIMARY KEY (venue, trade_id)
        );
        CREATE TABLE IF NOT EXISTS order_events (
            venue smallint NOT NULL,
            cl_ord_id text COLLATE "C" NOT NULL,
            event_seq bigint NOT NULL,
            state smallint NOT NULL,
            reason smallint NOT NULL,
            instr_id integer NOT NULL,
            side smallint NOT NULL,
            ord_type smallint NOT NULL,
            tif smallint NOT NULL,
            strategy_id smallint NOT NULL,
            px double precision NOT NULL,
            qty double precision NOT NULL,
            filled_qty double precision NOT NULL,
            avg_px double precision NOT NULL,
            venue_ord_id text NOT NULL,
            latency_us real NOT NULL,
            event_ts_ns bigint NOT NULL,
            exch_ts_ns bigint NOT NULL,
            flags smallint NOT NULL,
            PRIMARY KEY (venue, cl_ord_id, event_seq)
        );
        CREATE TABLE IF NOT EXISTS orders (
            venue smallint NOT NULL,
            cl_ord_id text COLLATE "C" NOT NULL,
            venue_ord_id text NOT NULL,
            instr_id integer NOT NULL,
            side smallint NOT NULL,
            ord_type smallint NOT NULL,
            tif smallint NOT NULL,
            strategy_id smallint NOT NULL,
            state smallint NOT NULL,
            reason smallint NOT NULL,
            px double precision NOT NULL,
            qty double precision NOT NULL,
            filled_qty double precision NOT NULL,
            avg_px double precision NOT NULL,
            last_event_seq bigint NOT NULL,
            first_ts_ns bigint NOT NULL,
            last_ts_ns bigint NOT NULL,
            PRIMARY KEY (venue, cl_ord_id)
        );
        CREATE TABLE IF NOT EXISTS risk_events (
            venue smallint NOT NULL,
            instr_id integer NOT NULL,
            side smallint NOT NULL,
            reason integer NOT NULL,
            px double precision NOT NULL,
            qty double precision NOT NULL,
            limit_value double precision NOT NULL,
            observed_value double precision NOT NULL,
            cl_ord_id text COLLATE "C" NOT NULL,
            text text NOT NULL,
            event_ts_ns bigint NOT NULL,
            flags smallint NOT NULL,
            PRIMARY KEY (event_ts_ns, venue, instr_id, reason, cl_ord_id)
        );
        CREATE TABLE IF NOT EXISTS position_snapshots (
            venue smallint NOT NULL,
            instr_id integer NOT NULL,
            event_ts_ns bigint NOT NULL,
            position double precision NOT NULL,
            avg_px double precision NOT NULL,
            realized_pnl double precision NOT NULL,
            unrealized_pnl double precision NOT NULL,
            fees double precision NOT NULL,
            mark_px double precision NOT NULL,
            flags smallint NOT NULL,
            PRIMARY KEY (venue, instr_id, event_ts_ns)
        );
        CREATE TABLE IF NOT EXISTS positions (
            venue smallint NOT NULL,
            instr_id integer NOT NULL,
            event_ts_ns bigint NOT NULL,
            position double precision NOT NULL,
            avg_px double precision NOT NULL,
            realized_pnl double precision NOT NULL,
            unrealized_pnl double precision NOT NULL,
            fees double precision NOT NULL,
            mark_px double precision NOT NULL,
            PRIMARY KEY (venue, instr_id)
        );
        """,
    ),
    (
        2,
        "read-side indexes and names",
        """
        -- fills carry only their primary key: every extra index is paid per fill on the COPY path
        CREATE INDEX IF NOT EXISTS orders_state_venue ON orders (venue, state);
        CREATE TABLE IF NOT EXISTS venues (venue smallint PRIMARY KEY, name text NOT NULL);
        INSERT INTO venues VALUES (1, 'binance'), (2, 'okx'), (3, 'gate') ON CONFLICT DO NOTHING;
        CREATE TABLE IF NOT EXISTS order_states (state smallint PRIMARY KEY, name text NOT NULL);
        INSERT INTO order_states VALUES
            (1, 'PENDING_NEW'), (2, 'NEW'), (3, 'PARTIALLY_FILLED'), (4, 'FILLED'),
            (5, 'PENDING_CANCEL'), (6, 'CANCELED'), (7, 'REJECTED'), (8, 'EXPIRED'),
            (9, 'UNKNOWN'), (10, 'PENDING_AMEND')
        ON CONFLICT DO NOTHING;
        """,
    ),
    (
        3,
        "fills time index for restart recovery",
        """
        -- a restarted OMS asks for the fills written since a time (persisted_trade_ids): a BRIN
        -- index serves that range (fills arrive in time order) for a few pages per COPY batch
        CREATE INDEX IF NOT EXISTS fills_event_ts_brin ON fills USING brin (event_ts_ns);
        """,
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]
_LOCK_KEY = 0x48465450  # advisory lock: one migrator at a time per database


def current_schema(conn: psycopg.Connection) -> str:
    """First schema of the search path, created when the URL names one that does not exist."""
    path = conn.execute("SHOW search_path").fetchone()[0]
    first = path.split(",")[0].strip().strip('"')
    if first in ("$user", ""):
        first = "public"
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(first)))
    return first


def apply_migrations(conn: psycopg.Connection) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    prev_autocommit = conn.autocommit
    conn.autocommit = False
    applied: list[int] = []
    try:
        with conn.transaction():
            current_schema(conn)
        for version, name, ddl in MIGRATIONS:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone()
                if done:
                    continue
                conn.execute(ddl)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(version)
    finally:
        conn.autocommit = prev_autocommit
    return applied


def schema_version(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT coalesce(max(version), 0) FROM schema_migrations"
    ).fetchone()
    return int(row[0])
