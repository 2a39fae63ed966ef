"""config.toml loading: `${VAR}` / `${VAR:-default}` expansion, env overrides, validation.

Every error is one line naming the key and the fix (`ConfigError`); CLIs print it and
exit with code 2. Secrets are held here and never printed: `redacted()` gives a
loggable copy. Sections: [system] [database] [redis] [sim] [exchanges.*]
[strategy.market_making] [risk] [monitor] [persist].
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from typing import Any

from common.enums import Exchange


class ConfigError(Exception):
    """Bad configuration: one line saying what is wrong and how to fix it."""


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECRET_KEYS = ("api_key", "secret_key", "passphrase", "auth_token", "url", "webhook_url")

SIM_API_KEY = "sim-key"
SIM_SECRET = "sim-secret"
SIM_PASSPHRASE = "sim-pass"


@dataclass
class SystemConfig:
    log_level: str = "INFO"
    log_json: bool = False
    cpus: list[int] = field(default_factory=list)
    idle_strategy: str = "backoff"
    feed_idle_strategy: str = "backoff"
    shm_prefix: str = "hft"
    data_dir: str = "data"
    gc_freeze: bool = True
    venues: str = "sim"  # sim: the built-in simulator; live: the URLs below


@dataclass
class DatabaseConfig:
    url: str = ""  # empty: embedded PostgreSQL under data/pg
    max_connections: int = 4


@dataclass
class RedisConfig:
    url: str = ""  # empty: no Redis (hot state is optional)
    enabled: bool = True


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port_base: int = 18000
    symbols: list[str] = field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"])
    seed: int = 1
    rate: float = 2000.0  # market-data messages/s across venues
    okx_books: str = "legacy"


@dataclass
class VenueConfig:
    enabled: bool = True
    api_key: str = ""
    secret_key: str = ""
    passphrase: str = ""  # OKX only
    testnet: bool = False
    key_type: str = "hmac"  # Binance: hmac | ed25519
    rest_url: str = ""
    ws_url: str = ""  # market data (OKX: public)
    ws_api_url: str = ""  # order entry (Binance WS API, OKX private, Gate same as ws_url)
    symbols: list[str] = field(default_factory=list)  # empty: the strategy's symbols
    # client-side order rate limits (0: the venue's published default, see oms/ratelimit.py)
    order_rate: float = 0.0  # new + amend requests per second
    order_burst: int = 0
    cancel_rate: float = 0.0
    cancel_burst: int = 0


LIVE_URLS = {
    "binance": {
        "rest_url": "https://api.binance.com",
        "ws_url": "wss://stream.binance.com:9443",
        "ws_api_url": "wss://ws-api.binance.com:443/ws-api/v3",
    },
    "okx": {
        "rest_url": "https://www.okx.com",
        "ws_url": "wss://ws.okx.com:8443/ws/v5/public",
        "ws_api_url": "wss://ws.okx.com:8443/ws/v5/private",
    },
    "gate": {
        "rest_url": "https://api.gateio.ws",
        "ws_url": "wss://api.gateio.ws/ws/v4/",
        "ws_api_url": "wss://api.gateio.ws/ws/v4/",
    },
}
TESTNET_URLS = {
    "binance": {
        "rest_url": "https://testnet.binance.vision",
        "ws_url": "wss://stream.testnet.binance.vision:9443",
        "ws_api_url": "wss://ws-api.testnet.binance.vision/ws-api/v3",
    },
    "okx": {
        "rest_url": "https://www.okx.com",
        "ws_url": "wss://wspap.okx.com:8443/ws/v5/public",
        "ws_api_url": "wss://wspap.okx.com:8443/ws/v5/private",
    },
    "gate": {
        "rest_url": "https://api-testnet.gateapi.io",
        "ws_url": "wss://ws-testnet.gate.com/v4/ws/spot",
        "ws_api_url": "wss://ws-testnet.gate.com/v4/ws/spot",
    },
}
KEY_ENV = {
    "binance": ("BINANCE_API_KEY", "BINANCE_SECRET_KEY", None),
    "okx": ("OKX_API_KEY", "OKX_SECRET_KEY", "OKX_PASSPHRASE"),
    "gate": ("GATE_API_KEY", "GATE_SECRET_KEY", None),
}


@dataclass
class MarketMakingConfig:
    enabled: bool = True
    spread_bps: float = 10.0
    order_size: float = 0.002  # base units; 0.002 ETH clears the 5 USDT minimum notional
    max_position: float = 0.01
    symbols: list[str] = field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"])
    venues: list[str] = field(default_factory=lambda: ["binance", "okx", "gate"])
    levels: int = 1
    level_spacing_bps: float = 5.0
    skew_bps: float = 5.0  # quote shift per max_position of inventory
    requote_threshold_bps: float = 2.0
    min_order_lifetime_ms: float = 50.0
    mode: str = "fixed"  # fixed | avellaneda_stoikov
    risk_aversion: float = 0.1  # gamma
    intensity: float = 1.5  # k, order-book intensity
    horizon_s: float = 60.0
    volatility_window: int = 100


@dataclass
class RiskConfig:
    price_band_bps: float = 200.0
    max_order_qty: float = 1.0
    max_order_notional: float = 50_000.0
    max_position: float = 0.05  # per instrument per venue, base units
    max_venue_notional: float = 200_000.0
    max_total_notional: float = 500_000.0
    max_open_orders: int = 50
    max_orders_per_s: float = 50.0  # per venue
    daily_loss_limit: float = 1_000.0
    max_drawdown: float = 1_000.0
    max_reject_rate: float = 0.5  # over the last reject_window orders
    reject_window: int = 50
    stale_md_ms: float = 2_000.0
    initial_state: str = "ACTIVE"


@dataclass
class MonitorConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    auth_token: str = ""  # bearer token for POST /halt and /resume
    webhook_url: str = ""
    latency_p99_alert_us: float = 5_000.0
    reject_rate_alert: float = 0.2


@dataclass
class PersistConfig:
    enabled: bool = True
    batch_size: int = 5_000
    flush_ms: float = 50.0
    journal_fsync: str = "batch"  # every | batch | off
    record_market_data: bool = True
    md_file_mb: int = 64


@dataclass
class Config:
    system: SystemConfig = field(default_factory=SystemConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    exchanges: dict[str, VenueConfig] = field(default_factory=dict)
    market_making: MarketMakingConfig = field(default_factory=MarketMakingConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    persist: PersistConfig = field(default_factory=PersistConfig)
    source: str = "<defaults>"

    def venue(self, name: str | Exchange) -> VenueConfig:
        key = name.key if isinstance(name, Exchange) else name
        return self.exchanges[key]

    def enabled_venues(self) -> list[Exchange]:
        return [Exchange.from_name(k) for k, v in self.exchanges.items() if v.enabled]

    def redacted(self) -> dict:
        """A loggable dict with every secret replaced."""
        d = dataclasses.asdict(self)

        def scrub(o: Any) -> Any:
            if isinstance(o, dict):
                return {k: ("***" if k in SECRET_KEYS and v else scrub(v)) for k, v in o.items()}
            return o

        return scrub(d)


SECTIONS = {
    "system": SystemConfig,
    "database": DatabaseConfig,
    "redis": RedisConfig,
    "sim": SimConfig,
    "risk": RiskConfig,
    "monitor": MonitorConfig,
    "persist": PersistConfig,
}


def expand_env(value: str, env: dict[str, str], where: str, unset: dict[str, str]) -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset ${VAR} becomes "" and is remembered
    (by key path) so validation can name the variable when the value is required."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        v = env.get(name)
        if v is None or (v == "" and default is not None):
            if default is None:
                unset[where] = name
                return ""
            return default
        return v

    return _VAR.sub(sub, value)


def _expand_tree(obj: Any, env: dict[str, str], path: str, unset: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return expand_env(obj, env, path, unset)
    if isinstance(obj, dict):
        return {k: _expand_tree(v, env, f"{path}.{k}" if path else k, unset) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_tree(v, env, path, unset) for v in obj]
    return obj


def _coerce(value: Any, typ: Any, key: str) -> Any:
    t = typ if isinstance(typ, type) else None
    typ_s = str(typ)
    if typ is bool or typ_s == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if typ is int or typ_s == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if typ is float or typ_s == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if typ is str or typ_s == "str":
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if typ_s.startswith("list[int]"):
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of integers such as [2, 3, 4], got {value!r}")
        return [_coerce(v, int, key) for v in value]
    if typ_s.startswith("list[str]"):
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of strings, got {value!r}")
        return [_coerce(v, str, key) for v in value]
    del t
    return value


def _build(cls: type, data: dict, prefix: str, base: Any = None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix}] must be a table")
    obj = base if base is not None else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in data.items():
        if k not in fields:
            near = difflib.get_close_matches(k, list(fields), n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"unknown key {prefix}.{k}{hint}")
        setattr(obj, k, _coerce(v, fields[k].type, f"{prefix}.{k}"))
    return obj


def default_venues(mode: str = "sim", env: dict[str, str] | None = None) -> dict[str, VenueConfig]:
    """Venues not named in the file: the simulator's credentials in sim mode; in live mode
    the standard variables (BINANCE_API_KEY, ...), so a missing one is reported by name."""
    out = {}
    env = env or {}
    for name in ("binance", "okx", "gate"):
        if mode == "sim":
            out[name] = VenueConfig(api_key=SIM_API_KEY, secret_key=SIM_SECRET,
                                    passphrase=SIM_PASSPHRASE if name == "okx" else "")
        else:
            k, sk, pp = KEY_ENV[name]
            out[name] = VenueConfig(api_key=env.get(k, ""), secret_key=env.get(sk, ""),
                                    passphrase=env.get(pp, "") if pp else "")
    return out


def load(path: str | None = None, env: dict[str, str] | None = None,
         text: str | None = None, venues: str | None = None) -> Config:
    """Load and validate. No path and no text: defaults (the simulator, sim credentials).
    `venues` ("sim" / "live") overrides [system].venues, as `run.py --venues` does."""
    env = dict(os.environ) if env is None else env
    raw: dict = {}
    source = "<defaults>"
    if text is not None:
        source = "<text>"
    elif path:
        source = path
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found; copy config.toml.example to {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} cannot be read: {e}") from None
    if text is not None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source} is not valid TOML: {e}") from None
    unset: dict[str, str] = {}
    raw = _expand_tree(raw, env, "", unset)

    cfg = Config(source=source)
    mode = venues or (raw.get("system", {}) if isinstance(raw.get("system"), dict) else {}).get("venues", "sim")
    cfg.exchanges = default_venues(mode if mode in ("sim", "live") else "sim", env)
    for key, value in raw.items():
        if key in SECTIONS:
            setattr(cfg, key, _build(SECTIONS[key], value, key))
        elif key == "exchanges":
            if not isinstance(value, dict):
                raise ConfigError("[exchanges] must hold tables such as [exchanges.binance]")
            for vname, vdata in value.items():
                if vname not in KEY_ENV:
                    raise ConfigError(f"unknown exchange [exchanges.{vname}]; supported: binance, okx, gate")
                # a venue section in a file starts empty: keys must come from the file or env
                cfg.exchanges[vname] = _build(VenueConfig, vdata, f"exchanges.{vname}", base=VenueConfig())
        elif key == "strategy":
            if not isinstance(value, dict):
                raise ConfigError("[strategy] must hold tables such as [strategy.market_making]")
            for sname, sdata in value.items():
                if sname != "market_making":
                    raise ConfigError(f"unknown strategy [strategy.{sname}]; built in: market_making")
                cfg.market_making = _build(MarketMakingConfig, sdata, "strategy.market_making")
        else:
            near = difflib.get_close_matches(key, [*SECTIONS, "exchanges", "strategy"], n=1)
            hint = f"; did you mean [{near[0]}]?" if near else ""
            raise ConfigError(f"unknown section [{key}]{hint}")

    if venues is not None:
        cfg.system.venues = venues
    # environment overrides win over the file
    if env.get("DATABASE_URL"):
        cfg.database.url = env["DATABASE_URL"]
    if env.get("REDIS_URL"):
        cfg.redis.url = env["REDIS_URL"]
    if env.get("LOG_LEVEL"):
        cfg.system.log_level = env["LOG_LEVEL"]
    if env.get("MONITOR_TOKEN") and not cfg.monitor.auth_token:
        cfg.monitor.auth_token = env["MONITOR_TOKEN"]
    _validate(cfg, unset)
    return cfg


def _need(cfg_key: str, unset: dict[str, str], env_name: str | None, venue: str) -> str:
    var = unset.get(cfg_key) or env_name
    how = f"set {var}" if var else f"set {cfg_key}"
    return f"{cfg_key} is empty but [exchanges.{venue}] is enabled: {how}, or set exchanges.{venue}.enabled = false"


def _validate(cfg: Config, unset: dict[str, str]) -> None:
    s = cfg.system
    s.log_level = s.log_level.upper()
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(f"system.log_level (or LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}, got {s.log_level!r}")
    if s.idle_strategy not in ("busy_spin", "yielding", "backoff"):
        raise ConfigError(f"system.idle_strategy must be busy_spin, yielding or backoff, got {s.idle_strategy!r}")
    if s.feed_idle_strategy not in ("busy_spin", "yielding", "backoff"):
        raise ConfigError("system.feed_idle_strategy must be busy_spin, yielding or backoff, "
                          f"got {s.feed_idle_strategy!r}")
    if s.venues not in ("sim", "live"):
        raise ConfigError(f"system.venues must be 'sim' or 'live', got {s.venues!r}")
    if len(set(s.cpus)) != len(s.cpus) or any(c < 0 for c in s.cpus):
        raise ConfigError(f"system.cpus must list distinct core numbers, got {s.cpus}")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,16}", s.shm_prefix):
        raise ConfigError(f"system.shm_prefix must be 1-16 letters, digits or _, got {s.shm_prefix!r}")
    if cfg.database.max_connections < 1:
        raise ConfigError("database.max_connections must be at least 1")
    db = cfg.database.url
    if db and not db.startswith(("postgresql://", "postgres://")):
        raise ConfigError("database.url (or DATABASE_URL) must start with postgresql://, e.g. postgresql://user@127.0.0.1:5432/db")
    if cfg.redis.url and not cfg.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis.url (or REDIS_URL) must start with redis://, e.g. redis://127.0.0.1:6379/0")
    if not 0 <= cfg.sim.port_base <= 65532:
        raise ConfigError(f"sim.port_base must be between 0 and 65532, got {cfg.sim.port_base}")
    if cfg.sim.okx_books not in ("legacy", "current"):
        raise ConfigError(f"sim.okx_books must be legacy or current, got {cfg.sim.okx_books!r}")
    if not 1 <= cfg.monitor.port <= 65535:
        raise ConfigError(f"monitor.port must be between 1 and 65535, got {cfg.monitor.port}")
    if cfg.persist.journal_fsync not in ("every", "batch", "off"):
        raise ConfigError(f"persist.journal_fsync must be every, batch or off, got {cfg.persist.journal_fsync!r}")

    for name, v in cfg.exchanges.items():
        if v.key_type not in ("hmac", "ed25519"):
            raise ConfigError(f"exchanges.{name}.key_type must be hmac or ed25519, got {v.key_type!r}")
        if not v.enabled:
            continue
        key_env, secret_env, pass_env = KEY_ENV[name]
        if s.venues == "live":
            if not v.api_key:
                raise ConfigError(_need(f"exchanges.{name}.api_key", unset, key_env, name))
            if not v.secret_key:
                raise ConfigError(_need(f"exchanges.{name}.secret_key", unset, secret_env, name))
            if pass_env and not v.passphrase:
                raise ConfigError(_need(f"exchanges.{name}.passphrase", unset, pass_env, name))
            urls = (TESTNET_URLS if v.testnet else LIVE_URLS)[name]
            for k, u in urls.items():
                if not getattr(v, k):
                    setattr(v, k, u)
        for k in ("rest_url", "ws_url", "ws_api_url"):
            u = getattr(v, k)
            if u and not u.startswith(("http://", "https://", "ws://", "wss://")):
                raise ConfigError(f"exchanges.{name}.{k} must be an http(s):// or ws(s):// URL, got {u!r}")
        for sym in v.symbols:
            _check_symbol(sym, f"exchanges.{name}.symbols")

    mm = cfg.market_making
    for k in ("spread_bps", "order_size", "max_position"):
        if getattr(mm, k) <= 0:
            raise ConfigError(f"strategy.market_making.{k} must be positive, got {getattr(mm, k)}")
    if mm.levels < 1:
        raise ConfigError("strategy.market_making.levels must be at least 1")
    if mm.mode not in ("fixed", "avellaneda_stoikov"):
        raise ConfigError(f"strategy.market_making.mode must be fixed or avellaneda_stoikov, got {mm.mode!r}")
    for sym in mm.symbols:
        _check_symbol(sym, "strategy.market_making.symbols")
    for vn in mm.venues:
        if vn not in KEY_ENV:
            raise ConfigError(f"strategy.market_making.venues has {vn!r}; supported: binance, okx, gate")
    r = cfg.risk
    for f in dataclasses.fields(RiskConfig):
        v = getattr(r, f.name)
        if isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            raise ConfigError(f"risk.{f.name} must not be negative, got {v}")
    if r.initial_state.upper() not in ("ACTIVE", "REDUCING", "HALTED"):
        raise ConfigError(f"risk.initial_state must be ACTIVE, REDUCING or HALTED, got {r.initial_state!r}")


def _check_symbol(sym: str, key: str) -> None:
    if not re.fullmatch(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}", sym):
        raise ConfigError(f"{key} has {sym!r}; write symbols as BASE-QUOTE in capitals, e.g. BTC-USDT")


def load_or_exit(path: str | None = None) -> Config:
    """For CLIs: load, or print the one-line error and exit with code 2."""
    try:
        return load(path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
