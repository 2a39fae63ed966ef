"""Simulator configuration: defaults, TOML config file, CLI options.

Errors are raised as ConfigError with a one-line message; __main__ turns them
into exit code 2.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

VENUES = ("binance", "okx", "gate")


class ConfigError(ValueError):
    pass


@dataclass
class Account:
    api_key: str
    secret: str = ""
    passphrase: str = ""
    ed25519_public_key: str = ""  # PEM or base64 of the raw 32 bytes; makes the key an Ed25519 key


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port_base: int = 18000
    symbols: list[str] = field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"])
    seed: int = 1
    rate: float = 1000.0  # market-data frames per second generated across all venues
    okx_books: str = "legacy"
    depth_levels: int = 100
    accounts: list[Account] = field(default_factory=list)
    balances: dict[str, float] = field(default_factory=lambda: {"USDT": 1_000_000.0, "BTC": 100.0,
                                                                "ETH": 1000.0})
    default_base_balance: float = 10_000.0
    maker_fee: float = 0.0008
    taker_fee: float = 0.001
    faults: list[dict] = field(default_factory=list)
    paused: bool = False  # start with market data paused (resume via control)
    trigger_ms: int = 0
    trigger_jump_bps: float = 50.0
    probe_file: str = ""
    ready_file: str = ""
    okx_require_inst_id_code: bool = True
    max_connections: int = 1000
    max_subscriptions: int = 1024
    okx_books_heartbeat_s: float = 60.0  # a quiet OKX books channel gets an empty update this often (0: never)
    binance_ping_s: float = 20.0  # Binance server ping period on every WS connection (0: never)
    binance_pong_timeout_s: float = 60.0  # no pong for this long after a ping: the connection is closed (0: never)

    def __post_init__(self) -> None:
        if not self.accounts:
            self.accounts = default_accounts()

    def validate(self) -> SimConfig:
        if self.okx_books not in ("legacy", "current"):
            raise ConfigError(f"okx_books must be 'legacy' or 'current', got {self.okx_books!r}")
        if not self.symbols:
            raise ConfigError("symbols must not be empty")
        for s in self.symbols:
            base, sep, quote = s.partition("-")
            if not sep or not base.isalnum() or not quote.isalnum() or s.upper() != s:
                raise ConfigError(f"symbol {s!r} is not canonical BASE-QUOTE (e.g. BTC-USDT)")
        if not 0 <= self.port_base <= 65532:
            raise ConfigError(f"port_base {self.port_base} out of range (0 for ephemeral ports)")
        if self.rate < 0:
            raise ConfigError("rate must be >= 0")
        if self.depth_levels < 50:
            raise ConfigError("depth_levels must be >= 50")
        for name in ("okx_books_heartbeat_s", "binance_ping_s", "binance_pong_timeout_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0 (0 turns it off)")
        for f in self.faults:
            if f.get("venue") not in VENUES + ("all",):
                raise ConfigError(f"fault venue must be one of {VENUES + ('all',)}: {f}")
        return self


def default_accounts() -> list[Account]:
    from sim.auth import TEST_ED25519_PUBLIC_KEY_B64

    return [Account("sim-key", "sim-secret", "sim-pass"),
            Account("sim-ed25519-key", "", "sim-pass", TEST_ED25519_PUBLIC_KEY_B64)]


def parse_fault_spec(spec: str) -> dict:
    """VENUE:NAME[@EVERY_S][,k=v...] -> fault dict."""
    head, *kvs = spec.split(",")
    venue, sep, rest = head.partition(":")
    if not sep or not rest:
        raise ConfigError(f"bad --fault {spec!r}: expected VENUE:NAME[@EVERY_S][,k=v...]")
    name, _, every = rest.partition("@")
    out: dict[str, Any] = {"venue": venue, "name": name, "params": {}}
    if every:
        try:
            out["every_s"] = float(every)
        except ValueError:
            raise ConfigError(f"bad --fault {spec!r}: EVERY_S must be a number") from None
    for kv in kvs:
        k, sep, v = kv.partition("=")
        if not sep:
            raise ConfigError(f"bad --fault {spec!r}: parameter {kv!r} is not k=v")
        try:
            out["params"][k] = float(v) if "." in v else int(v)
        except ValueError:
            out["params"][k] = v
    return out


def load_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"bad config {path}: {e}") from None


def config_from_options(opts: dict[str, Any]) -> SimConfig:
    """Build a config from a TOML file (opts['config']) overlaid with explicit options."""
    data: dict[str, Any] = {}
    if opts.get("config"):
        data = load_toml(opts["config"])
    cfg = SimConfig()
    known = set(SimConfig.__dataclass_fields__)
    for k, v in data.items():
        if k == "credentials":
            creds = dict(v)
            acc = Account(creds.pop("api_key", "sim-key"), creds.pop("secret", "sim-secret"),
                          creds.pop("passphrase", "sim-pass"))
            ed_key = creds.pop("ed25519_api_key", "sim-ed25519-key")
            ed_pub = creds.pop("ed25519_public_key", "")
            if creds:
                raise ConfigError(f"unknown [credentials] keys: {sorted(creds)}")
            accounts = [acc]
            from sim.auth import TEST_ED25519_PUBLIC_KEY_B64
            accounts.append(Account(ed_key, "", acc.passphrase, ed_pub or TEST_ED25519_PUBLIC_KEY_B64))
            cfg.accounts = accounts
        elif k == "accounts":
            cfg.accounts = [Account(**a) for a in v]
        elif k == "fees":
            cfg.maker_fee = float(v.get("maker", cfg.maker_fee))
            cfg.taker_fee = float(v.get("taker", cfg.taker_fee))
        elif k == "balances":
            cfg.balances = {str(a).upper(): float(x) for a, x in v.items()}
        elif k == "trigger":
            cfg.trigger_ms = int(v.get("interval_ms", 0))
            cfg.trigger_jump_bps = float(v.get("jump_bps", cfg.trigger_jump_bps))
        elif k in known:
            setattr(cfg, k, v)
        else:
            raise ConfigError(f"unknown config key {k!r} in {opts['config']}")
    for k, v in opts.items():
        if v is None or k in ("config",):
            continue
        if k == "symbols":
            cfg.symbols = [s.strip() for s in (v.split(",") if isinstance(v, str) else v) if s.strip()]
        elif k == "faults":
            cfg.faults = cfg.faults + [parse_fault_spec(f) if isinstance(f, str) else f for f in v]
        elif k in known:
            setattr(cfg, k, type(getattr(cfg, k))(v) if not isinstance(getattr(cfg, k), list) else v)
        else:
            raise ConfigError(f"unknown option {k!r}")
    return cfg.validate()
