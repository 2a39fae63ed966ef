"""config.toml: expansion, overrides, validation errors (one line, key and fix), CLI exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.config import ConfigError, load

pytestmark = pytest.mark.unit
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_run_against_the_simulator():
    cfg = load(env={})
    assert cfg.system.venues == "sim"
    assert [v.key for v in cfg.enabled_venues()] == ["binance", "okx", "gate"]
    assert cfg.venue("okx").passphrase == "sim-pass"
    assert cfg.monitor.host == "127.0.0.1" and cfg.monitor.port == 8080


def test_env_expansion_with_and_without_default():
    text = """
[system]
log_level = "${LVL:-debug}"
[database]
url = "${DB}"
[monitor]
port = "${PORT:-9090}"
"""
    cfg = load(text=text, env={"DB": "postgresql://u@127.0.0.1/x"})
    assert cfg.system.log_level == "DEBUG"
    assert cfg.database.url == "postgresql://u@127.0.0.1/x"
    assert cfg.monitor.port == 9090
    cfg = load(text=text, env={"DB": "postgresql://a@127.0.0.1/b", "LVL": "warning", "PORT": "81"})
    assert cfg.system.log_level == "WARNING" and cfg.monitor.port == 81


def test_environment_overrides_the_file():
    text = '[database]\nurl = "postgresql://file@127.0.0.1/f"\n[system]\nlog_level = "INFO"\n'
    cfg = load(text=text, env={"DATABASE_URL": "postgresql://env@127.0.0.1/e", "LOG_LEVEL": "error",
                               "REDIS_URL": "redis://127.0.0.1:6379/1"})
    assert cfg.database.url == "postgresql://env@127.0.0.1/e"
    assert cfg.system.log_level == "ERROR"
    assert cfg.redis.url == "redis://127.0.0.1:6379/1"


LIVE = """
[system]
venues = "live"
[exchanges.binance]
enabled = true
api_key = "${BINANCE_API_KEY}"
secret_key = "${BINANCE_SECRET_KEY}"
[exchanges.okx]
enabled = false
api_key = "${OKX_API_KEY}"
[exchanges.gate]
enabled = false
"""


def test_enabled_venue_with_unset_key_variable_is_an_error_naming_it():
    with pytest.raises(ConfigError) as e:
        load(text=LIVE, env={"BINANCE_SECRET_KEY": "s"})
    msg = str(e.value)
    assert "exchanges.binance.api_key" in msg and "BINANCE_API_KEY" in msg and "enabled = false" in msg
    assert "\n" not in msg


def test_disabled_venue_with_unset_key_is_fine_and_live_urls_are_filled():
    cfg = load(text=LIVE, env={"BINANCE_API_KEY": "k", "BINANCE_SECRET_KEY": "s"})
    assert [v.key for v in cfg.enabled_venues()] == ["binance"]
    assert cfg.venue("binance").ws_api_url.startswith("wss://")


def test_okx_passphrase_required_when_enabled_live():
    text = '[system]\nvenues = "live"\n[exchanges.binance]\nenabled = false\n[exchanges.gate]\nenabled = false\n' \
           '[exchanges.okx]\napi_key = "${OKX_API_KEY}"\nsecret_key = "${OKX_SECRET_KEY}"\npassphrase = "${OKX_PASSPHRASE}"\n'
    with pytest.raises(ConfigError, match="OKX_PASSPHRASE"):
        load(text=text, env={"OKX_API_KEY": "k", "OKX_SECRET_KEY": "s"})


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[system]\nlog_level = \"LOUD\"", "system.log_level"),
        ("[system]\nidle_strategy = \"nap\"", "system.idle_strategy"),
        ("[system]\nfeed_idle_strategy = \"nap\"", "system.feed_idle_strategy"),
        ("[system]\ncpus = [2, 2]", "system.cpus"),
        ("[system]\ncpus = \"a,b\"", "system.cpus must be an integer"),
        ("[system]\nvenues = \"paper\"", "system.venues"),
        ("[database]\nurl = \"mysql://x\"", "database.url"),
        ("[database]\nmax_connections = 0", "database.max_connections"),
        ("[redis]\nurl = \"http://x\"", "redis.url"),
        ("[monitor]\nport = 70000", "monitor.port"),
        ("[monitor]\nport = \"eighty\"", "monitor.port must be an integer"),
        ("[sim]\nokx_books = \"new\"", "sim.okx_books"),
        ("[strategy.market_making]\nspread_bps = 0", "strategy.market_making.spread_bps"),
        ("[strategy.market_making]\nsymbols = [\"btcusdt\"]", "BASE-QUOTE"),
        ("[strategy.market_making]\nvenues = [\"kraken\"]", "strategy.market_making.venues"),
        ("[strategy.market_making]\nmode = \"magic\"", "strategy.market_making.mode"),
        ("[strategy.market_making]\nlevels = 0", "levels"),
        ("[strategy.grid]\nx = 1", "unknown strategy"),
        ("[risk]\nmax_order_qty = -1", "risk.max_order_qty"),
        ("[risk]\nmax_posiiton = 1", "did you mean max_position"),
        ("[risk]\ninitial_state = \"SLEEPY\"", "risk.initial_state"),
        ("[exchanges.kraken]\nenabled = true", "unknown exchange"),
        ("[exchanges.binance]\nkey_type = \"rsa\"", "key_type"),
        ("[exchanges.binance]\nrest_url = \"ftp://x\"", "rest_url"),
        ("[exchanges.binance]\nenabled = \"maybe\"", "enabled must be true or false"),
        ("[persist]\njournal_fsync = \"sometimes\"", "persist.journal_fsync"),
        ("[sytem]\nlog_level = \"INFO\"", "did you mean [system]"),
        ("[system\nlog_level=", "not valid TOML"),
        ("system = 3", "[system] must be a table"),
    ],
)
def test_every_validation_error_is_one_line_naming_the_key(text, needle):
    with pytest.raises(ConfigError) as e:
        load(text=text, env={})
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_log_level_env_is_validated():
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load(env={"LOG_LEVEL": "chatty"})


def test_missing_file_is_an_error():
    with pytest.raises(ConfigError, match="not found"):
        load("/nonexistent/config.toml", env={})


def test_redacted_hides_secrets():
    cfg = load(env={"DATABASE_URL": "postgresql://u:pw@127.0.0.1/db"})
    red = cfg.redacted()
    assert red["exchanges"]["binance"]["secret_key"] == "***"
    assert red["database"]["url"] == "***"
    assert "sim-secret" not in repr(red)


def test_example_config_loads_with_its_variables(tmp_path):
    env = {k: "x" for k in ("BINANCE_API_KEY", "BINANCE_SECRET_KEY", "OKX_API_KEY", "OKX_SECRET_KEY",
                            "OKX_PASSPHRASE", "GATE_API_KEY", "GATE_SECRET_KEY")}
    cfg = load(os.path.join(ROOT, "config.toml.example"), env=env)
    assert cfg.source.endswith("config.toml.example")


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[risk]\nmax_order_qty = -5\n")
    p = subprocess.run([sys.executable, "run.py", "--config", str(bad), "--check-config"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "risk.max_order_qty" in lines[0]


def test_live_mode_takes_unnamed_venues_keys_from_the_environment():
    env = {"BINANCE_API_KEY": "k", "BINANCE_SECRET_KEY": "s"}
    text = '[exchanges.okx]\nenabled = false\n[exchanges.gate]\nenabled = false\n'
    cfg = load(text=text, env=env, venues="live")
    assert cfg.system.venues == "live" and cfg.venue("binance").api_key == "k"
    assert cfg.venue("binance").rest_url == "https://api.binance.com"
    with pytest.raises(ConfigError, match="OKX_API_KEY"):
        load(text="", env=env, venues="live")
    # sim mode never needs keys
    assert load(text="", env={}, venues="sim").venue("okx").api_key == "sim-key"


def test_docker_config_loads_and_binds_the_monitor_for_the_published_port():
    cfg = load(os.path.join(ROOT, "docker", "config.toml"),
               env={"DATABASE_URL": "postgresql://hft:hft@postgres:5432/hft", "REDIS_URL": "redis://redis:6379/0"})
    assert cfg.monitor.host == "0.0.0.0" and cfg.monitor.port == 8080
    assert cfg.database.url.startswith("postgresql://") and cfg.redis.url.startswith("redis://")
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = f.read()
    assert '"127.0.0.1:8080:8080"' in compose and "shm_size" in compose


def test_logging_json_lines_and_secrets_masked(capsys):
    import json as _json
    import logging

    from common.logs import setup_logging

    cfg = load(text='[system]\nlog_json = true\nlog_level = "INFO"\n[monitor]\nauth_token = "tok-123456"\n', env={})
    try:
        setup_logging(cfg)
        logging.getLogger("t").warning("key %s and token %s", "sim-secret", "tok-123456")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        rec = _json.loads(err)
        assert rec["level"] == "WARNING" and rec["logger"] == "t"
        assert "sim-secret" not in err and "tok-123456" not in err and rec["msg"].count("***") == 2
    finally:
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
