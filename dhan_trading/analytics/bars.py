"""Tick bars (every N ticks) and time bars (every minute of the IST clock), batch and live.

A tick is an update whose cumulative volume rose: a Dhan "tick" is a feed update, and an
update without a rise (a quote refresh, a baseline) is no trade. Only ticks move a bar's
OHLC; a bar's volume is the sum of its ticks' rises.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Iterable

from .clock import IST_OFFSET_S, bucket_start, check_seconds
from .volume import CumulativeVolume, check_cum_volume, valid_price, volume_deltas


@dataclass(slots=True)
class Bar:
    """OHLCV of a run of ticks. Tick bars: `start_ts`/`end_ts` are the first and last tick's
    times. Time bars: the bucket's start and end (end exclusive), what a chart's x-axis needs."""

    open: float
    high: float
    low: float
    close: float
    volume: int
    ticks: int
    start_ts: float
    end_ts: float

    def extend(self, ts: float, price: float, volume: int) -> None:
        """One more tick."""
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.close = price
        self.volume += volume
        self.ticks += 1
        self.end_ts = max(self.end_ts, ts)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of ticks per bar >= 1, got {n!r}")
    return n


def _ticks(updates: Iterable[tuple[float, float, int]]):
    """(ts, price, volume) of the updates that are ticks with a usable price."""
    updates = list(updates)
    for _, _, cum in updates:
        check_cum_volume(cum)
    for (ts, price, _), volume in zip(updates, volume_deltas([u[2] for u in updates])):
        if volume and valid_price(price):
            yield ts, price, volume


def tick_bars(updates: Iterable[tuple[float, float, int]], n: int) -> list[Bar]:
    """Bars of `n` ticks from (ts, price, cumulative volume) updates; the first update is a
    baseline; the last, unfinished bar is included."""
    _check_n(n)
    bars: list[Bar] = []
    for ts, price, volume in _ticks(updates):
        if bars and bars[-1].ticks < n:
            bars[-1].extend(ts, price, volume)
        else:
            bars.append(Bar(price, price, price, price, volume, 1, ts, ts))
    return bars


def time_bars(updates: Iterable[tuple[float, float, int]], seconds: int = 60,
              offset: int = IST_OFFSET_S) -> list[Bar]:
    """Bars of the IST clock's `seconds` buckets (1-minute bars by default); a bucket without
    ticks has no bar; a tick timed before the last bar's bucket (a late packet) joins the last
    bar rather than reopening a closed one."""
    check_seconds(seconds)
    bars: list[Bar] = []
    for ts, price, volume in _ticks(updates):
        start = bucket_start(ts, seconds, offset)
        if bars and start <= bars[-1].start_ts:  # same bucket, or a late packet: never reopen
            bars[-1].extend(bars[-1].start_ts, price, volume)
        else:
            bars.append(Bar(price, price, price, price, volume, 1, start, start + seconds))
    return bars


class _BarBuilder:
    """What the live builders share: the volume baseline, skipped prices, the kept bars."""

    def __init__(self, max_bars: int | None):
        if max_bars is not None and (isinstance(max_bars, bool) or not isinstance(max_bars, int)
                                     or max_bars < 1):
            raise ValueError(f"max_bars must be None (keep all) or a whole number >= 1, "
                             f"got {max_bars!r}")
        self.closed: deque[Bar] = deque(maxlen=max_bars)
        self.current: Bar | None = None
        self.volume = CumulativeVolume()
        self.skipped = 0

    def _tick(self, price: float, cum_volume: int) -> int:
        """The update's rise when it is a tick with a usable price, else 0."""
        volume = self.volume.delta(cum_volume)
        if not valid_price(price):
            self.skipped += 1
            return 0
        return volume or 0

    def _close(self) -> Bar | None:
        bar, self.current = self.current, None
        if bar is not None:
            self.closed.append(bar)
        return bar

    def gap(self) -> None:
        """Call on a reconnect (a gap event): the next update is a baseline."""
        self.volume.gap()

    def bars(self) -> list[Bar]:
        """The kept closed bars and a copy of the unfinished one."""
        out = list(self.closed)
        if self.current is not None:
            out.append(replace(self.current))
        return out


class TickBarBuilder(_BarBuilder):
    """`tick_bars`, one update at a time (O(1)); keeps the last `max_bars` closed bars."""

    def __init__(self, n: int, max_bars: int | None = None):
        super().__init__(max_bars)
        self.n = _check_n(n)

    def add(self, ts: float, price: float, cum_volume: int) -> Bar | None:
        """Add one update; returns the bar it closed, if any."""
        volume = self._tick(price, cum_volume)
        if not volume:
            return None
        if self.current is None:
            self.current = Bar(price, price, price, price, volume, 1, ts, ts)
        else:
            self.current.extend(ts, price, volume)
        return self._close() if self.current.ticks == self.n else None


class TimeBarBuilder(_BarBuilder):
    """`time_bars`, one update at a time (O(1)). A tick timed before the current bar's bucket
    (a late packet) is added to the current bar rather than reopening a closed one."""

    def __init__(self, seconds: int = 60, offset: int = IST_OFFSET_S, max_bars: int | None = None):
        super().__init__(max_bars)
        self.seconds, self.offset = check_seconds(seconds), offset

    def add(self, ts: float, price: float, cum_volume: int) -> Bar | None:
        """Add one update; returns the bar it closed (the previous bucket's), if any."""
        volume = self._tick(price, cum_volume)
        if not volume:
            return None
        start = bucket_start(ts, self.seconds, self.offset)
        closed = None
        if self.current is not None and start > self.current.start_ts:
            closed = self._close()
        if self.current is None:
            self.current = Bar(price, price, price, price, volume, 1, start, start + self.seconds)
        else:
            self.current.extend(self.current.start_ts, price, volume)
        return closed
