"""Prices on the instrument's tick grid as integers, so no comparison is ever a float `==`."""
from __future__ import annotations

import math


def check_tick(tick: float, name: str = "tick") -> float:
    """A tick size must be a positive finite price step (the scrip master's, in rupees)."""
    if isinstance(tick, bool) or not isinstance(tick, (int, float)) or not math.isfinite(tick) \
            or tick <= 0:
        raise ValueError(f"{name} must be a positive price step in rupees (e.g. 0.05), got {tick!r}")
    return tick


def units(price: float, tick: float) -> int:
    """The price's position on the grid: `round(price / tick)`."""
    return round(price / tick)


def grid_price(n: int, tick: float) -> float:
    """The price of grid position `n`, without the float noise of n * tick (0.30000000000000004)."""
    return round(n * tick, 10)
