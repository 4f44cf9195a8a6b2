"""Volume profile: rows, POC, value area (DESIGN §3.5), built in one pass or live.

Rows are ordered by ascending price and dense (empty rows count 0). A price's row is
`round(price / tick) // row_ticks`; a row's price is its lowest price.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, NamedTuple, Sequence

from .clock import IST_OFFSET_S, bucket_start, check_seconds
from .grid import check_tick, grid_price, units
from .volume import (BUY, SELL, CumulativeVolume, TradeSide, check_cum_volume, valid_price,
                     volume_deltas)

METHODS = ("dual", "single")


class ValueArea(NamedTuple):
    """Inclusive row indices of the value area."""

    lo: int
    hi: int


class Levels(NamedTuple):
    """A profile's point of control and value area, as prices (each its row's lowest price)."""

    poc: float
    val: float
    vah: float


class LevelsAt(NamedTuple):
    """Developing levels: the levels as of the end of the bucket starting at `ts`."""

    ts: int
    poc: float
    val: float
    vah: float


@dataclass(frozen=True)
class Profile:
    """One profile: rows from the lowest to the highest row with volume.

    `up`/`down` are each row's volume classified as bought/sold (volume minus both is UNKNOWN);
    `skipped` counts updates whose price was None or NaN (their volume went to no row).
    """

    prices: list[float] = field(default_factory=list)
    volumes: list[int] = field(default_factory=list)
    up: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)
    poc: float | None = None
    val: float | None = None
    vah: float | None = None
    skipped: int = 0

    @property
    def levels(self) -> Levels | None:
        """POC/VAL/VAH, or None for a profile with no volume."""
        return None if self.poc is None else Levels(self.poc, self.val, self.vah)


def _plain(volumes: Sequence[int]) -> list[int]:
    """Rows as a list of Python numbers (a numpy array's slices have no truth value and its
    int64 products can overflow)."""
    return volumes.tolist() if hasattr(volumes, "tolist") else list(volumes)


def poc_index(volumes: Sequence[int]) -> int:
    """The row with the most volume; a tie goes to the row nearest the centre of the traded
    range (midway between the first and last row with volume); still tied, the higher row."""
    volumes = _plain(volumes)
    traded = [i for i, v in enumerate(volumes) if v > 0]
    if not traded:
        raise ValueError("poc_index: the profile has no volume")
    centre2 = traded[0] + traded[-1]  # twice the centre, so distances stay integers
    top = max(volumes)
    return max((i for i in traded if volumes[i] == top), key=lambda i: (-abs(2 * i - centre2), i))


def _check_area_args(fraction: float, method: str) -> Fraction:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], e.g. 0.70, got {fraction!r}")
    # 0.70 means exactly 7/10: integer comparisons, no float rounding at the boundary.
    return Fraction(fraction).limit_denominator(10**6)


def value_area(volumes: Sequence[int], fraction: float = 0.70, method: str = "dual") -> ValueArea:
    """Grow from the POC until the area holds `fraction` of the volume (CBOT/Dalton).

    "dual" compares the next two rows above with the next two below (fewer at the ends) and
    adds the larger pair whole, a tie going up; "single" goes one row at a time. A side with
    no rows left is never chosen.
    """
    share = _check_area_args(fraction, method)
    volumes = _plain(volumes)
    poc = poc_index(volumes)
    step = 2 if method == "dual" else 1
    total = sum(volumes)
    lo = hi = poc
    area = volumes[poc]
    while area * share.denominator < share.numerator * total:
        above = volumes[hi + 1:hi + 1 + step]
        below = volumes[max(lo - step, 0):lo]
        if above and (not below or sum(above) >= sum(below)):
            hi += len(above)
            area += sum(above)
        else:
            lo -= len(below)
            area += sum(below)
    return ValueArea(lo, hi)


def _levels(prices: list[float], volumes: list[int], fraction: float, method: str) -> Levels:
    lo, hi = value_area(volumes, fraction, method)
    return Levels(prices[poc_index(volumes)], prices[lo], prices[hi])


def build_profile(updates: Iterable[tuple[float, int]], tick: float, row_ticks: int = 1,
                  fraction: float = 0.70, method: str = "dual") -> Profile:
    """A whole profile from (price, cumulative day volume) pairs in arrival order.

    Each update's volume is the rise of the cumulative volume (`volume_deltas`); baselines go
    to no price. Up/down by the tick rule. An update with a None/NaN price is skipped and
    counted; its volume goes to no row. A day without volume gives an empty Profile.
    """
    check_tick(tick)
    _check_row_ticks(row_ticks)
    _check_area_args(fraction, method)
    updates = list(updates)
    for _, cum in updates:
        check_cum_volume(cum)
    deltas = volume_deltas([cum for _, cum in updates])
    rows: dict[int, list[int]] = {}
    skipped, last, side, prev_cum = 0, None, 0, None
    for (price, cum), volume in zip(updates, deltas):
        if prev_cum is not None and cum < prev_cum:
            last, side = None, 0
        prev_cum = cum
        if not valid_price(price):
            skipped += 1
            continue
        u = units(price, tick)
        if last is not None and u != last:
            side = 1 if u > last else -1
        last = u
        if volume:
            row = rows.setdefault(u // row_ticks, [0, 0, 0])
            row[0] += volume
            if side:
                row[1 if side > 0 else 2] += volume
    if not rows:
        return Profile(skipped=skipped)
    first, end = min(rows), max(rows) + 1
    dense = [rows.get(r, [0, 0, 0]) for r in range(first, end)]
    prices = [grid_price(r * row_ticks, tick) for r in range(first, end)]
    volumes = [row[0] for row in dense]
    return Profile(prices, volumes, [row[1] for row in dense], [row[2] for row in dense],
                   *_levels(prices, volumes, fraction, method), skipped=skipped)


def session_levels(updates: Iterable[tuple[float, int]], tick: float, row_ticks: int = 1,
                   fraction: float = 0.70, method: str = "dual") -> Levels | None:
    """The previous session's POC/VAL/VAH from that day's updates (None for a day with no
    volume): the reference lines a trader carries into today."""
    return build_profile(updates, tick, row_ticks, fraction, method).levels


def _check_row_ticks(row_ticks: int) -> None:
    if isinstance(row_ticks, bool) or not isinstance(row_ticks, int) or row_ticks < 1:
        raise ValueError(f"row_ticks must be a whole number of ticks >= 1, got {row_ticks!r}")


class Rows:
    """Dense rows that grow at either end (amortised O(1)) with the POC tracked as volume comes.

    The rows with the top volume are kept sorted, so the POC (nearest the centre of the traded
    range, then higher) is a bisection, not a scan of the day.
    """

    __slots__ = ("base", "volumes", "up", "down", "first", "last", "top", "tied")

    def __init__(self) -> None:
        self.base = 0  # row number of index 0
        self.volumes: list[int] = []
        self.up: list[int] = []
        self.down: list[int] = []
        self.first: int | None = None  # lowest and highest row with volume
        self.last: int | None = None
        self.top = 0
        self.tied: list[int] = []

    def add(self, row: int, volume: int, side: int) -> None:
        """Book `volume` (> 0) at `row` on `side` (BUY, SELL or UNKNOWN)."""
        self._reach(row)
        i = row - self.base
        v = self.volumes[i] = self.volumes[i] + volume
        if side == BUY:
            self.up[i] += volume
        elif side == SELL:
            self.down[i] += volume
        if self.first is None:
            self.first = self.last = row
        else:
            self.first, self.last = min(self.first, row), max(self.last, row)
        if v > self.top:
            self.top, self.tied = v, [row]
        elif v == self.top:
            insort(self.tied, row)

    def _reach(self, row: int) -> None:
        size = len(self.volumes)
        if not size:
            self.base, grow_below, grow_above = row, 0, 1
        else:
            # Grow by at least the current size so that growth is amortised O(1) per row.
            grow_below = max(self.base - row, size) if row < self.base else 0
            grow_above = max(row - self.base - size + 1, size) if row >= self.base + size else 0
        if grow_below:
            for column in (self.volumes, self.up, self.down):
                column[:0] = [0] * grow_below
            self.base -= grow_below
        if grow_above:
            for column in (self.volumes, self.up, self.down):
                column.extend([0] * grow_above)

    def poc_row(self) -> int | None:
        """The POC's row number (the `poc_index` rule), or None without volume."""
        if not self.tied:
            return None
        centre2 = self.first + self.last
        j = bisect_left(self.tied, (centre2 + 1) // 2)  # first tied row r with 2r >= centre2
        best = self.tied[j] if j < len(self.tied) else self.tied[j - 1]
        if j and abs(2 * self.tied[j - 1] - centre2) < abs(2 * best - centre2):
            best = self.tied[j - 1]
        return best

    def profile(self, tick: float, row_ticks: int, fraction: float, method: str,
                skipped: int = 0) -> Profile:
        """The rows as a Profile: O(rows), for a repaint, not for every update."""
        if self.first is None:
            return Profile(skipped=skipped)
        a, b = self.first - self.base, self.last - self.base + 1
        prices = [grid_price(r * row_ticks, tick) for r in range(self.first, self.last + 1)]
        volumes = self.volumes[a:b]
        lo, hi = value_area(volumes, fraction, method)
        poc = self.poc_row() - self.first
        return Profile(prices, volumes, self.up[a:b], self.down[a:b], prices[poc], prices[lo],
                       prices[hi], skipped)


class Tape:
    """One instrument's updates read in order: volume rise, grid price and side of each.

    Shared by the live builders so that they all apply the same baseline, skip and side rules.
    The tick rule restarts at every baseline (start, fall, reconnect).
    """

    __slots__ = ("tick", "volume", "side", "skipped")

    def __init__(self, tick: float):
        self.tick = check_tick(tick)
        self.volume = CumulativeVolume()
        self.side = TradeSide()
        self.skipped = 0

    def read(self, price: float, cum_volume: int, bid: float | None = None,
             ask: float | None = None) -> tuple[int, int, int] | None:
        """(grid units, volume, side) of a trade to book, or None when there is none."""
        volume = self.volume.delta(cum_volume)
        if volume is None:
            self.side.reset()
        if not valid_price(price):
            self.skipped += 1
            return None
        u = units(price, self.tick)
        side = self.side.observe(u, self._quote(bid), self._quote(ask))
        return (u, volume, side) if volume else None

    def _quote(self, price: float | None) -> int | None:
        """A best bid/ask on the grid; None when that side is unknown. Dhan fills an empty depth
        level with price 0, which is no quote (an ask of 0 would make every trade a buy)."""
        if not valid_price(price):
            return None
        n = units(price, self.tick)
        return n if n else None

    def gap(self) -> None:
        """A reconnect: the next update is a baseline."""
        self.volume.gap()


class ProfileBuilder:
    """A live profile: `add` each update as it arrives (O(1) amortised, O(log n) on POC ties).

    Same rules as `build_profile`. With `ts`, the developing POC/VAL/VAH is sampled once per
    `sample_seconds` bucket of the IST clock; with `bid`/`ask` (best prices from depth) the
    up/down split uses the quote rule, else the tick rule.
    """

    def __init__(self, tick: float, row_ticks: int = 1, fraction: float = 0.70,
                 method: str = "dual", sample_seconds: int = 60, offset: int = IST_OFFSET_S):
        self.tape = Tape(tick)
        _check_row_ticks(row_ticks)
        _check_area_args(fraction, method)
        self.row_ticks, self.fraction, self.method = row_ticks, fraction, method
        self.sample_seconds = check_seconds(sample_seconds, "sample_seconds")
        self.offset = offset
        self.rows = Rows()
        self._samples: list[LevelsAt] = []
        self._bucket: int | None = None

    def add(self, price: float, cum_volume: int, ts: float | None = None,
            bid: float | None = None, ask: float | None = None) -> int:
        """Add one update; returns the volume booked at its price (0 for none)."""
        if ts is not None:
            bucket = bucket_start(ts, self.sample_seconds, self.offset)
            if self._bucket is None or bucket > self._bucket:  # a late update stays in its bucket
                self._close_sample()
                self._bucket = bucket
        trade = self.tape.read(price, cum_volume, bid, ask)
        if trade is None:
            return 0
        u, volume, side = trade
        self.rows.add(u // self.row_ticks, volume, side)
        return volume

    def gap(self) -> None:
        """Call on a reconnect (a gap event): the next update is a baseline."""
        self.tape.gap()

    @property
    def skipped(self) -> int:
        """Updates whose price was None or NaN."""
        return self.tape.skipped

    def poc(self) -> float | None:
        """The POC price now, without building the profile (O(log n))."""
        row = self.rows.poc_row()
        return None if row is None else grid_price(row * self.row_ticks, self.tape.tick)

    def profile(self) -> Profile:
        """The profile now (O(rows))."""
        return self.rows.profile(self.tape.tick, self.row_ticks, self.fraction, self.method,
                                 self.tape.skipped)

    def _close_sample(self) -> None:
        levels = self.profile().levels if self._bucket is not None else None
        if levels is not None:
            self._samples.append(LevelsAt(self._bucket, *levels))

    def developing(self) -> list[LevelsAt]:
        """Developing POC/VAL/VAH: one point per IST-clock bucket that had volume so far,
        each the levels at the end of its bucket (the last one: as of now)."""
        levels = self.profile().levels if self._bucket is not None else None
        now = [LevelsAt(self._bucket, *levels)] if levels is not None else []
        return self._samples + now


class BucketProfiles:
    """Rolling profiles, one per `seconds` bucket of the IST clock (5 minutes by default).

    One volume baseline runs across buckets: a bucket boundary is not a baseline, so a
    bucket's first update books its rise. An update is filed under the bucket of its own `ts`.
    """

    def __init__(self, tick: float, seconds: int = 300, row_ticks: int = 1,
                 fraction: float = 0.70, method: str = "dual", offset: int = IST_OFFSET_S):
        self.tape = Tape(tick)
        _check_row_ticks(row_ticks)
        _check_area_args(fraction, method)
        self.seconds = check_seconds(seconds)
        self.row_ticks, self.fraction, self.method, self.offset = row_ticks, fraction, method, offset
        self._rows: dict[int, Rows] = {}

    def add(self, ts: float, price: float, cum_volume: int, bid: float | None = None,
            ask: float | None = None) -> int:
        """Add one update; returns the volume booked (0 for none)."""
        bucket = bucket_start(ts, self.seconds, self.offset)
        trade = self.tape.read(price, cum_volume, bid, ask)
        if trade is None:
            return 0
        u, volume, side = trade
        rows = self._rows.get(bucket)
        if rows is None:
            rows = self._rows[bucket] = Rows()
        rows.add(u // self.row_ticks, volume, side)
        return volume

    def gap(self) -> None:
        """Call on a reconnect (a gap event): the next update is a baseline."""
        self.tape.gap()

    def profiles(self) -> list[tuple[int, Profile]]:
        """(bucket start, profile) for every bucket with volume, in time order."""
        return [(start, self._rows[start].profile(self.tape.tick, self.row_ticks,
                                                  self.fraction, self.method))
                for start in sorted(self._rows)]
