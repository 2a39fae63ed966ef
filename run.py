"""Launcher and supervisor: `python run.py [--config config.toml] [--cpus 2,3,4]`.

Loads and validates the configuration (one-line error, exit code 2 on bad config).
The process supervisor is built in issue 9.
"""

from __future__ import annotations

import argparse
import sys

from common.config import load_or_exit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python run.py")
    ap.add_argument("--config", default=None, help="config.toml path (default: built-in simulator setup)")
    ap.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    args = ap.parse_args(argv)
    cfg = load_or_exit(args.config)
    if args.check_config:
        print(f"config {cfg.source}: ok")
        return 0
    print(f"config {cfg.source}: venues {', '.join(v.key for v in cfg.enabled_venues())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
