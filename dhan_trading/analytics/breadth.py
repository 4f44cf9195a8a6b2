"""Market breadth over an index's constituents (the Nifty 50): advances and declines on the
tick grid, A/D ratio and line, % above VWAP, TRIN, new intraday highs/lows, and each
constituent's contribution to the index move in index points.

Every ratio whose denominator can be zero returns None ("undefined") instead of dividing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple

from .clock import IST_OFFSET_S, bucket_start
from .grid import check_tick, grid_price, units
from .volume import valid_price

VWAP_TICK = 0.01  # ATP is an average, not on the tick grid: compared in paise (2 decimals)


def compare_prices(a: float, b: float, tick: float = 0.05) -> int:
    """-1, 0 or 1 comparing `a` with `b` on the tick grid, never with float `==`."""
    check_tick(tick)
    ua, ub = units(a, tick), units(b, tick)
    return (ua > ub) - (ua < ub)


def advance_decline(pairs: Iterable[tuple[float, float]], tick: float = 0.05) -> tuple[int, int, int]:
    """(advances, declines, unchanged) over (last price, previous close) pairs."""
    counts = [0, 0, 0]
    for ltp, prev_close in pairs:
        counts[(1, 2, 0)[compare_prices(ltp, prev_close, tick) + 1]] += 1  # -1 D, 0 U, 1 A
    return counts[0], counts[1], counts[2]


def ad_ratio(advances: int, declines: int) -> float | None:
    """Advances / declines; None when nothing declines."""
    return advances / declines if declines else None


def pct_advancing(advances: int, declines: int) -> float | None:
    """A / (A + D) in %; None when nothing moved."""
    return 100.0 * advances / (advances + declines) if advances + declines else None


def trin(advances: int, declines: int, adv_volume: int, decl_volume: int) -> float | None:
    """Arms index (A / D) / (advancing volume / declining volume); below 1 the volume is in
    the advancers. None when D, the declining volume or the advancing volume is 0."""
    if not declines or not decl_volume or not adv_volume:
        return None
    return (advances / declines) / (adv_volume / decl_volume)


def point_contributions(prices: Mapping[str, tuple[float, float]], weights: Mapping[str, float],
                        prev_index: float) -> dict[str, float]:
    """Index points each constituent added: weight/100 x % change/100 x previous index level.

    `prices`: symbol -> (last price, previous close); `weights`: symbol -> weight in % of the
    index (the Nifty 50 weights sum to 100); `prev_index`: the index's previous close, in points.
    A symbol without a weight, or without a usable previous close, is left out.
    """
    out = {}
    for symbol, (ltp, prev_close) in prices.items():
        weight = weights.get(symbol)
        if weight is None or not valid_price(ltp) or not valid_price(prev_close) or prev_close <= 0:
            continue
        change_pct = (ltp - prev_close) / prev_close * 100.0
        out[symbol] = weight * change_pct * prev_index / 100.0 / 100.0
    return out


class ContributionCheck(NamedTuple):
    """The constituents' points against the index's own move; the residual is what the
    weights do not explain (weights older than the previous close, missing quotes)."""

    total: float
    actual: float
    residual: float


def check_contributions(contributions: Mapping[str, float], index_ltp: float,
                        index_prev_close: float) -> ContributionCheck:
    """Sum the contributions and compare with the index move (residual = actual - total)."""
    total = sum(contributions.values())
    actual = index_ltp - index_prev_close
    return ContributionCheck(total, actual, actual - total)


@dataclass(frozen=True)
class BreadthSnapshot:
    """Breadth now. A constituent is `missing` until it has a positive last price and previous
    close, so advances + declines + unchanged + missing = constituents."""

    advances: int
    declines: int
    unchanged: int
    missing: int
    ad_ratio: float | None
    pct_advancing: float | None
    pct_above_vwap: float | None
    trin: float | None
    new_highs: int
    new_lows: int


class _Stock:
    """One constituent's last state and what it counts for in the totals."""

    __slots__ = ("sign", "above", "volume", "ltp", "prev_close", "high", "low", "first",
                 "at_high", "at_low")

    def __init__(self) -> None:
        self.sign: int | None = None  # 1, -1, 0 against the previous close; None = missing
        self.above: bool | None = None  # last price above ATP; None = no ATP
        self.volume = 0
        self.ltp: float | None = None
        self.prev_close: float | None = None
        self.high = self.low = self.first = 0  # grid units of the day's prices seen
        self.at_high = self.at_low = False


class Breadth:
    """Live breadth over fixed constituents: `update` and `snapshot` are O(1).

    Ticks may differ per symbol (NSE stocks below ₹250 trade in ₹0.01 since 2025): `ticks`
    maps symbol -> tick, the others use `tick`. With `ts`, the A/D line (advances - declines)
    is sampled per IST minute.
    """

    def __init__(self, constituents: Iterable[str], tick: float = 0.05,
                 ticks: Mapping[str, float] | None = None,
                 weights: Mapping[str, float] | None = None, offset: int = IST_OFFSET_S):
        self._stocks = {symbol: _Stock() for symbol in constituents}
        if not self._stocks:
            raise ValueError("constituents must name at least one symbol")
        ticks = ticks or {}
        self._ticks = {s: check_tick(ticks.get(s, tick), f"tick of {s}") for s in self._stocks}
        self.weights = dict(weights or {})
        self.offset = offset
        self.skipped = 0
        self._signs = {1: 0, -1: 0, 0: 0}
        self._volume = {1: 0, -1: 0, 0: 0}
        self._above = self._with_atp = self._highs = self._lows = 0
        self._line: list[tuple[int, int]] = []
        self._minute: int | None = None

    def update(self, symbol: str, ltp: float, prev_close: float | None, atp: float | None,
               volume: int, ts: float | None = None) -> None:
        """One quote of a constituent: last price, previous close, ATP (Dhan's VWAP), day volume.

        A last price of 0 (Dhan's "no trade yet"), None or NaN is skipped and counted.
        """
        stock = self._stocks.get(symbol)
        if stock is None:
            raise ValueError(f"{symbol!r} is not a constituent of this breadth")
        if ts is not None:
            minute = bucket_start(ts, 60, self.offset)
            if self._minute is None or minute > self._minute:
                if self._minute is not None:
                    self._line.append((self._minute, self._net()))
                self._minute = minute
        if not valid_price(ltp) or ltp <= 0:
            self.skipped += 1
            return
        self._count(stock, -1)
        tick = self._ticks[symbol]
        u = units(ltp, tick)
        if stock.ltp is None:  # the first price of the day seen: the reference for highs/lows
            stock.first = stock.high = stock.low = u
        # kept on the grid, so a contribution agrees with the advance/decline count
        stock.ltp, stock.prev_close, stock.volume = grid_price(u, tick), None, volume or 0
        stock.sign = None
        if valid_price(prev_close) and prev_close > 0:
            pc = units(prev_close, tick)
            stock.prev_close, stock.sign = grid_price(pc, tick), (u > pc) - (u < pc)
        has_atp = valid_price(atp) and atp > 0
        stock.above = units(ltp, VWAP_TICK) > units(atp, VWAP_TICK) if has_atp else None
        stock.high, stock.low = max(stock.high, u), min(stock.low, u)
        stock.at_high = u == stock.high > stock.first
        stock.at_low = u == stock.low < stock.first
        self._count(stock, 1)

    def _count(self, stock: _Stock, k: int) -> None:
        """Add (k=1) or remove (k=-1) what `stock` counts for."""
        if stock.sign is not None:
            self._signs[stock.sign] += k
            self._volume[stock.sign] += k * stock.volume
        if stock.above is not None:
            self._with_atp += k
            self._above += k * stock.above
        self._highs += k * stock.at_high
        self._lows += k * stock.at_low

    def _net(self) -> int:
        return self._signs[1] - self._signs[-1]

    def snapshot(self) -> BreadthSnapshot:
        """Breadth now."""
        a, d, u = self._signs[1], self._signs[-1], self._signs[0]
        return BreadthSnapshot(
            advances=a, declines=d, unchanged=u, missing=len(self._stocks) - a - d - u,
            ad_ratio=ad_ratio(a, d), pct_advancing=pct_advancing(a, d),
            pct_above_vwap=100.0 * self._above / self._with_atp if self._with_atp else None,
            trin=trin(a, d, self._volume[1], self._volume[-1]),
            new_highs=self._highs, new_lows=self._lows)

    def ad_line(self) -> list[tuple[int, int]]:
        """(minute start, advances - declines at the end of that minute) per IST minute that
        had an update; the last point is the current minute, as of now."""
        if self._minute is None:
            return []
        return self._line + [(self._minute, self._net())]

    def contributions(self, prev_index: float) -> dict[str, float]:
        """`point_contributions` of the constituents quoted so far (needs `weights`), from
        their prices on the tick grid."""
        return point_contributions({s: (st.ltp, st.prev_close) for s, st in self._stocks.items()
                                    if st.ltp is not None}, self.weights, prev_index)
