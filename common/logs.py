"""Logging set-up shared by every process: level from LOG_LEVEL / [system] log_level, plain
text or one JSON object per line ([system] log_json), and a filter that masks the configured
secrets wherever they would appear in a message."""

from __future__ import annotations

import logging
import time

import orjson

_PLAIN = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
               "msg": record.getMessage(), "pid": record.process}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class RedactSecrets(logging.Filter):
    """Replaces each secret (length >= 6) with *** in the formatted message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            if any(s in msg for s in self.secrets):
                for s in self.secrets:
                    msg = msg.replace(s, "***")
                record.msg, record.args = msg, None
        return True


def secrets_of(cfg) -> list[str]:
    out = []
    for v in cfg.exchanges.values():
        out += [v.api_key, v.secret_key, v.passphrase]
    out += [cfg.monitor.auth_token]
    return out


def setup_logging(cfg, name_in_format: str | None = None) -> None:
    """Configure the root logger once per process from the Config."""
    handler = logging.StreamHandler()
    if cfg.system.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        fmt = _PLAIN if name_in_format is None else f"%(asctime)s {name_in_format} %(levelname)s %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactSecrets(secrets_of(cfg)))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(cfg.system.log_level)
