"""Per-update volume from Dhan's cumulative day volume, and the side of the book that traded it.

Why: Dhan sends each instrument's cumulative volume of the day, not the size of each trade. An
update's volume is the rise since the previous update. The first update after a start or a
reconnect carries the whole day so far and a fall means a new session or a reset: both are
baselines, attributed to no price (the old system dumped the first packet's day volume into one
price row, DESIGN §4).
"""
from __future__ import annotations

import math
from typing import Iterable

BUY, SELL, UNKNOWN = 1, -1, 0


def volume_deltas(cumulative: Iterable[int]) -> list[int]:
    """Each update's volume: 0 for the first and for every fall (baselines), else the rise."""
    out: list[int] = []
    last = None
    for cum in cumulative:
        out.append(0 if last is None or cum < last else cum - last)
        last = cum
    return out


def check_cum_volume(cum_volume) -> None:
    """A missing cumulative volume is a caller's mistake, not market data: say which."""
    if cum_volume is None or (isinstance(cum_volume, float) and not math.isfinite(cum_volume)):
        raise ValueError(f"cum_volume must be the cumulative day volume, got {cum_volume!r} "
                         "(ticker events carry no volume: use quote or full events)")
    if cum_volume < 0:
        raise ValueError(f"cum_volume must not be negative, got {cum_volume!r}")


def valid_price(price) -> bool:
    """A price that can be placed on the tick grid (None, NaN and infinities cannot)."""
    return price is not None and math.isfinite(price)


class CumulativeVolume:
    """The volume rule of `volume_deltas`, one update at a time, plus a reconnect baseline."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def delta(self, cum_volume: int) -> int | None:
        """The rise since the previous update; None when this update is a baseline."""
        check_cum_volume(cum_volume)
        last, self.last = self.last, cum_volume
        if last is None or cum_volume < last:
            return None
        return cum_volume - last

    def gap(self) -> None:
        """After a reconnect the next update is a baseline: the volume traded during the gap
        happened at prices nobody saw."""
        self.last = None


class TradeSide:
    """Which side traded: the quote rule when the book is known, else the tick rule.

    Quote rule: a trade at or above the best ask was a buy, at or below the best bid a sell
    (not used when the book is locked or crossed, bid >= ask, which a stale depth snapshot
    gives). Otherwise the tick rule: above the previous price a buy, below a sell, at the same
    price the side of the last price change (zero tick), UNKNOWN before any change.
    Prices are tick-grid integers.
    """

    __slots__ = ("last", "tick_side")

    def __init__(self) -> None:
        self.last: int | None = None
        self.tick_side = UNKNOWN

    def reset(self) -> None:
        """A new session: the previous session's last price says nothing about this one."""
        self.last = None
        self.tick_side = UNKNOWN

    def observe(self, units: int, bid: int | None = None, ask: int | None = None) -> int:
        """Move the tick rule on to `units` and return BUY, SELL or UNKNOWN for a trade there."""
        if self.last is not None and units != self.last:
            self.tick_side = BUY if units > self.last else SELL
        self.last = units
        if bid is not None and ask is not None and bid >= ask:
            return self.tick_side
        if ask is not None and units >= ask:
            return BUY
        if bid is not None and units <= bid:
            return SELL
        return self.tick_side
