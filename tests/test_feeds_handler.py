"""Feed process entry point: bad arguments or config give one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from feeds.handler import main

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv, needle", [
    ([], "no venue"),
    (["--venue", "kraken"], "unknown venue"),
    (["--venue", "okx"], "no market-data URLs for okx"),
    (["--venue", "gate", "--config", "/nonexistent/config.toml"], "not found"),
    (["--venue", "okx", "--urls", "[1,2]"], "--urls"),
    (["--venue", "okx", "--urls", '{"okx":{"ws":"ws://127.0.0.1:1","rest":"http://127.0.0.1:1"}}',
      "--symbols", "BTCUSDT"], "BASE-QUOTE"),
    (["--venue", "okx", "--ring-capacity", "1000", "--urls", '{"okx":{"ws":"ws://x","rest":"http://x"}}'],
     "power of two"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys, shm_prefix):
    assert main(argv + ["--prefix", shm_prefix]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_module_exit_code():
    r = subprocess.run([sys.executable, "-m", "feeds.handler", "--venue", "nope"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 2 and r.stderr.strip().startswith("feeds: unknown venue")
