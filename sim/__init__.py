"""Wire-level venue simulator (Binance, OKX, Gate spot) for tests, demos and benchmarks.

See sim/README.md. Production code reaches the simulator only through its URLs.
"""

from sim.config import SimConfig
from sim.core import Simulator

__all__ = ["SimConfig", "Simulator"]
