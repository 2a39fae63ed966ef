"""The persist process: events ring -> PostgreSQL (outage journal), Redis hot state, md recording.

    python -m persist.process [--config FILE] [--prefix hft] [--database-url URL]
                              [--redis-url URL] [--md-venues binance,okx,gate]

Runs at nice 19 and polls with a back-off idle strategy, so it never competes with
the hot path. Stops on SIGTERM/SIGINT after a final drain and flush. Its counters
block (role "persist") and `status(prefix)` tell the monitor whether the database is up.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict

from common.config import ConfigError, load
from persist.db import DbUnavailable, ParallelWriter
from persist.drain import EventDrain
from persist.hotstate import HotState
from persist.journal import OutageJournal
from persist.recorder import MdRecorder
from ringbuf import records as R
from ringbuf.counters import Counters, read_counters
from ringbuf.idle import BackOff
from ringbuf.ring import Ring
from ringbuf.ringstat import counters_name, ring_name
from ringbuf.shm import ShmError, pid_alive

log = logging.getLogger("persist")

ROLE = "persist"
STATUS_EVERY_S = 1.0


def journal_dir(data_dir: str) -> str:
    return os.environ.get("HFT_JOURNAL_DIR") or os.path.join(data_dir, "journal")


def status(prefix: str = "hft", stale_s: float = 5.0) -> dict:
    """Persist health for the monitor: counters plus `db_up`, `alive` and `healthy`."""
    try:
        snap = read_counters(counters_name(prefix, ROLE))
    except ShmError as e:
        return {"alive": False, "healthy": False, "db_up": False, "error": str(e), "counters": {}}
    c = snap["counters"]
    alive = pid_alive(snap["pid"]) and (time.time_ns() - snap["last_update_ns"]) < stale_s * 1e9
    db_up = bool(c.get("db_up", 0))
    return {
        "alive": alive, "healthy": alive and db_up, "db_up": db_up, "pid": snap["pid"],
        "lag": c.get("lag", 0), "journal_pending": c.get("journal_pending", 0),
        "journal_bytes": c.get("journal_bytes", 0), "db_errors": c.get("db_errors", 0),
        "redis_up": bool(c.get("redis_up", 0)), "counters": c,
    }


_STOPPING = {"flag": False}


def _stop(signum, frame) -> None:
    _STOPPING["flag"] = True


def _install_stop_handlers() -> None:
    """SIGTERM/SIGINT only set a flag: the loop finishes its batch, drains and flushes."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def _try_attach_events(name: str) -> Ring | None:
    try:
        ring = Ring.attach(name, record_size=R.EVENT_RECORD_SIZE)
    except ShmError:
        return None
    ring.claim_consumer()
    return ring


def run_persist_process(config_path: str | None, prefix: str, database_url: str, redis_url: str | None,
                        md_venues: list[str]) -> int:
    """Entry point for the launcher. Returns the exit code (0 after a clean SIGTERM stop)."""
    try:
        cfg = load(config_path)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as e:
        print(f"error: database URL is not valid ({' '.join(str(e).split())[:160]}); "
              f"expected postgresql://user@host:port/db", file=sys.stderr)
        return 2
    try:
        os.nice(19)
    except OSError:
        pass
    from common.logs import setup_logging

    setup_logging(cfg, "persist")
    pc = cfg.persist
    stopping = _STOPPING
    _install_stop_handlers()

    ctr = Counters(counters_name(prefix, ROLE), ROLE)
    redis_url = redis_url if (redis_url and cfg.redis.enabled) else None
    hot = HotState(redis_url, namespace=prefix, counters=ctr) if redis_url else None
    journal = OutageJournal(os.path.join(journal_dir(cfg.system.data_dir), f"{prefix}-persist.jnl"),
                            fsync=pc.journal_fsync)
    # two connections let the server's COPY work of a large fills batch use two cores (at nice 19)
    writer = ParallelWriter(database_url, connections=min(2, cfg.database.max_connections))
    recorders = []
    md_dir = os.path.join(cfg.system.data_dir, "md") if pc.record_market_data else None
    if md_dir or hot is not None:
        for v in md_venues:
            recorders.append(MdRecorder(ring_name(prefix, f"md-{v}"), v, md_dir, pc.md_file_mb << 20,
                                        hot=hot, counters=ctr))
    c_loop_errors = ctr.add("loop_errors")
    ctr.touch()

    # connect at start: migrations are applied and db_up shows before the first event arrives
    c_db_up = ctr.add("db_up")
    try:
        writer.open()
        ctr.set(c_db_up, 1)
    except DbUnavailable as e:
        log.warning("database unavailable at start (%s); events will be journaled until it is back", e)
    ev_name = ring_name(prefix, "events")
    drain: EventDrain | None = None
    ring: Ring | None = None
    next_attach = 0.0
    log.info("persist for %s: batch %d, flush %.0f ms, journal %s (fsync %s), redis %s, recording %s",
             ev_name, pc.batch_size, pc.flush_ms, journal.path, pc.journal_fsync,
             "on" if hot else "off", ",".join(md_venues) if recorders else "off")
    idle = BackOff(max_spins=20, max_yields=20, min_sleep_ns=100_000, max_sleep_ns=min(5_000_000, int(pc.flush_ms * 1e6)))
    next_flush = 0.0
    next_status = 0.0
    try:
        while not stopping["flag"]:
            try:
                work = 0
                if drain is None and time.monotonic() >= next_attach:
                    next_attach = time.monotonic() + 0.5
                    ring = _try_attach_events(ev_name)  # the strategy process creates it
                    if ring is not None:
                        drain = EventDrain(ring, writer, journal, batch_size=pc.batch_size,
                                           flush_ms=pc.flush_ms, counters=ctr, hot=hot)
                        drain.db_up = writer.connected  # already connected at start: no reconnect
                        log.info("draining %s", ev_name)
                if drain is not None:
                    work += drain.step()
                for rec in recorders:
                    work += rec.poll()
                now = time.monotonic()
                if now >= next_flush:
                    next_flush = now + pc.flush_ms / 1e3
                    ctr.touch()  # alive for the monitor, also before the events ring exists
                    for rec in recorders:
                        rec.flush()
                    if hot is not None:
                        if now >= next_status:
                            next_status = now + STATUS_EVERY_S
                            _status_to_hot(hot, prefix)
                        hot.flush()
            except Exception:  # a bug must not take the drain down silently in a loop
                log.exception("persist loop error")
                ctr.inc(c_loop_errors)
                time.sleep(1.0)
                work = 0
            idle.idle(work)
        log.info("stopping: final drain")
        clean = drain.drain_all(deadline_s=10.0) if drain is not None else True
        for rec in recorders:
            rec.poll()
            rec.close()
        if hot is not None:
            hot.flush()
            hot.close()
        log.info("stopped (%s); %d records pending in the outage journal",
                 "all drained" if clean else "backlog left", journal.pending)
    finally:
        writer.shutdown()
        journal.close()
        if ring is not None:
            ring.close()
        ctr.close(unlink=True)
    return 0


def _status_to_hot(hot: HotState, prefix: str) -> None:
    """Strategy (and every other process's) status: the counters blocks, copied to Redis."""
    from ringbuf import shm as _shm

    for seg in _shm.list_segments(f"{prefix}-ctr-"):
        try:
            snap = read_counters(seg)
        except ShmError:
            continue
        fields = dict(snap["counters"])
        fields["pid"] = snap["pid"]
        fields["updated_ns"] = snap["last_update_ns"]
        hot.set_status(snap["role"] or seg, fields)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m persist.process", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="config.toml (default: built-in defaults)")
    ap.add_argument("--prefix", default=None, help="shared-memory prefix (default: system.shm_prefix)")
    ap.add_argument("--database-url", default=None, help="PostgreSQL URL (default: DATABASE_URL, "
                    "database.url, else the embedded server under data/pg)")
    ap.add_argument("--redis-url", default=None, help="Redis URL (default: REDIS_URL or redis.url; none: no Redis)")
    ap.add_argument("--md-venues", default="", help="comma-separated venues whose md rings are recorded")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    try:
        cfg = load(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    venues = [v.strip().lower() for v in args.md_venues.split(",") if v.strip()]
    bad = [v for v in venues if v not in ("binance", "okx", "gate")]
    if bad:
        print(f"error: unknown venue {bad[0]!r} in --md-venues; use binance, okx, gate", file=sys.stderr)
        return 2
    from persist.embedded import EmbeddedError, resolve_database_url

    _install_stop_handlers()  # a SIGTERM while the embedded server starts still stops cleanly

    embedded = None
    url = args.database_url
    if not url:
        try:
            url, embedded = resolve_database_url(cfg)
        except EmbeddedError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    try:
        return run_persist_process(args.config, args.prefix or cfg.system.shm_prefix, url,
                                   args.redis_url or cfg.redis.url or None, venues)
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
