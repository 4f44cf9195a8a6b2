"""The local Dhan-protocol exchange simulator (synthetic market) and raw-capture replay (docs/SIMULATOR.md)."""
from .replay import ReplaySource
from .server import Simulator, SimulatorConfig, running_simulator

__all__ = ["ReplaySource", "Simulator", "SimulatorConfig", "running_simulator"]
