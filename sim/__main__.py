"""`python -m sim`: run the venue simulator until SIGINT/SIGTERM.

Prints its URLs, then `SIM READY {json}`. Bad arguments or config: one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys

from sim.config import ConfigError, config_from_options
from sim.testing import READY_PREFIX


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"sim: {message} (see python -m sim --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str]) -> dict:
    p = _Parser(prog="python -m sim", description="Binance/OKX/Gate venue simulator on loopback")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port-base", type=int, help="Binance on +0, OKX +1, Gate +2, control +3; 0 = ephemeral")
    p.add_argument("--symbols", help="canonical symbols, comma separated (default BTC-USDT,ETH-USDT)")
    p.add_argument("--seed", type=int, help="generator seed (default 1)")
    p.add_argument("--rate", type=float, help="market-data frames per second across venues (default 1000)")
    p.add_argument("--okx-books", choices=["legacy", "current"], help="OKX books channel behaviour")
    p.add_argument("--depth-levels", type=int, help="book levels kept per side (>= 50, default 100)")
    p.add_argument("--fault", action="append", dest="faults", metavar="VENUE:NAME[@EVERY_S][,k=v]",
                   help="inject a fault (repeatable)")
    p.add_argument("--paused", action="store_true", default=None, help="start with market data paused")
    p.add_argument("--trigger-ms", type=int, help="trigger mode: quiet book, jump every N ms")
    p.add_argument("--trigger-jump-bps", type=float, help="trigger jump size in bps (default 50)")
    p.add_argument("--okx-books-heartbeat-s", type=float,
                   help="empty OKX books update on a quiet book every N s (default 60, 0: never)")
    p.add_argument("--binance-ping-s", type=float, help="Binance server ping period (default 20, 0: never)")
    p.add_argument("--binance-pong-timeout-s", type=float,
                   help="close a Binance connection with no pong for N s after a ping (default 60, 0: never)")
    p.add_argument("--probe-file", help="append timing-probe records as JSON lines")
    p.add_argument("--ready-file", help="write the URL JSON here once listening")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    ns = p.parse_args(argv)
    return vars(ns)


async def _run(cfg) -> int:
    from sim.core import Simulator

    sim = Simulator(cfg)
    try:
        await sim.start()
    except OSError as e:
        print(f"sim: cannot listen on {cfg.host}:{cfg.port_base}..+3: {e.strerror}", file=sys.stderr)
        return 2
    # start-up objects (modules, the generator's tables) never die: out of the collector's sight,
    # a full collection walks only what the run made (it was ~2.4 % of the CPU of an order burst,
    # 35 ms a full collection with ~30k start-up objects in it)
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    u = sim.urls
    print(f"binance  rest {u['binance']['rest']}  ws {u['binance']['ws']}  stream {u['binance']['stream']}  "
          f"ws-api {u['binance']['ws_api']}")
    print(f"okx      rest {u['okx']['rest']}  public {u['okx']['ws_public']}  private {u['okx']['ws_private']}")
    print(f"gate     rest {u['gate']['rest']}  ws {u['gate']['ws']}")
    print(f"control  {u['control']}")
    print(READY_PREFIX + json.dumps(u), flush=True)
    if cfg.ready_file:
        with open(cfg.ready_file, "w") as f:
            json.dump(u, f)
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=opts.pop("log_level").upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = config_from_options(opts)
    except ConfigError as e:
        print(f"sim: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(_run(cfg))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
