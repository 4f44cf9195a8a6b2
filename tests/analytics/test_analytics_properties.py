"""Invariants of the analytics core, and batch functions against live builders (hypothesis)."""
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_trading.analytics import (Breadth, BucketProfiles, ProfileBuilder, TickBarBuilder,
                                    TimeBarBuilder, advance_decline, build_profile,
                                    compare_prices, poc_index, tick_bars, time_bars, trin,
                                    value_area, volume_deltas)

pytestmark = pytest.mark.unit

volumes_st = st.lists(st.integers(0, 50), min_size=1, max_size=40).filter(any)
fraction_st = st.sampled_from([0.5, 0.68, 0.7, 0.8, 0.95, 1.0]) | st.floats(0.01, 1.0)
method_st = st.sampled_from(["dual", "single"])


def reference_value_area(volumes, fraction, method):
    """The §3.5 rule written out step by step, as a second implementation to compare with."""
    total = sum(volumes)
    poc = poc_index(volumes)
    lo = hi = poc
    step = 2 if method == "dual" else 1
    share = Fraction(fraction).limit_denominator(10**6)  # the documented reading of `fraction`
    while sum(volumes[lo:hi + 1]) < share * total:
        up_rows = [r for r in range(hi + 1, hi + 1 + step) if r < len(volumes)]
        down_rows = [r for r in range(lo - step, lo) if r >= 0]
        up_sum = sum(volumes[r] for r in up_rows)
        down_sum = sum(volumes[r] for r in down_rows)
        if up_rows and (not down_rows or up_sum >= down_sum):
            hi = max(up_rows)
        else:
            lo = min(down_rows)
    return lo, hi


@given(volumes_st, fraction_st, method_st)
def test_value_area_contains_poc_holds_the_fraction_and_follows_the_rule(volumes, fraction, method):
    lo, hi = value_area(volumes, fraction, method)
    poc = poc_index(volumes)
    assert 0 <= lo <= poc <= hi < len(volumes)  # contiguous rows lo..hi around the POC
    area, total = sum(volumes[lo:hi + 1]), sum(volumes)
    assert area >= fraction * total * (1 - 1e-9) or (lo, hi) == (0, len(volumes) - 1)
    assert (lo, hi) == reference_value_area(volumes, fraction, method)


@given(volumes_st)
def test_poc_tie_rule(volumes):
    poc = poc_index(volumes)
    traded = [i for i, v in enumerate(volumes) if v]
    centre2 = traded[0] + traded[-1]
    assert volumes[poc] == max(volumes)
    for i, v in enumerate(volumes):
        if v == volumes[poc] and i != poc:
            # every other tied row is farther from the centre, or as far and lower
            assert abs(2 * i - centre2) > abs(2 * poc - centre2) or (
                abs(2 * i - centre2) == abs(2 * poc - centre2) and i < poc)


def cumulative_walk(steps):
    """Cumulative volumes from (rise or reset) steps: mostly rises, sometimes a fall."""
    cum, out = 1000, []
    for step in steps:
        cum = step if step < 0 else cum + step
        out.append(abs(cum))
    return out


price_st = st.one_of(st.integers(1900, 2100).map(lambda n: n * 0.05),
                     st.sampled_from([None, math.nan]))
updates_st = st.lists(st.tuples(price_st, st.integers(-5, 40)), max_size=60).map(
    lambda xs: list(zip([p for p, _ in xs], cumulative_walk([s for _, s in xs]))))


@settings(max_examples=200)
@given(updates_st, st.integers(1, 3), fraction_st, method_st)
def test_profile_builder_agrees_with_build_profile(updates, row_ticks, fraction, method):
    batch = build_profile(updates, 0.05, row_ticks, fraction, method)
    live = ProfileBuilder(0.05, row_ticks, fraction, method)
    for price, cum in updates:
        live.add(price, cum)
    assert live.profile() == batch
    assert live.poc() == batch.poc
    booked = sum(d for (p, _), d in zip(updates, volume_deltas([c for _, c in updates]))
                 if p is not None and not math.isnan(p))
    assert sum(batch.volumes) == booked
    assert all(u + d <= v for u, d, v in zip(batch.up, batch.down, batch.volumes))


@given(updates_st)
def test_five_minute_profiles_add_up_to_the_day(updates):
    day = build_profile(updates, 0.05)
    buckets = BucketProfiles(0.05, seconds=300)
    for i, (price, cum) in enumerate(updates):
        buckets.add(1_700_000_000 + 37 * i, price, cum)
    summed = {}
    for _, profile in buckets.profiles():
        assert profile.volumes[0] and profile.volumes[-1]
        for price, volume in zip(profile.prices, profile.volumes):
            if volume:  # a bucket's rows are dense too
                summed[price] = summed.get(price, 0) + volume
    assert summed == {p: v for p, v in zip(day.prices, day.volumes) if v}


bar_updates_st = st.lists(st.tuples(st.integers(0, 30), price_st, st.integers(-5, 40)),
                          max_size=60).map(
    lambda xs: list(zip(_times([t for t, _, _ in xs]), [p for _, p, _ in xs],
                        cumulative_walk([s for _, _, s in xs]))))


def _times(gaps):
    out, t = [], 1_700_000_000
    for gap in gaps:
        t += gap
        out.append(t)
    return out


@given(bar_updates_st, st.integers(1, 5))
def test_tick_bars_sum_to_the_volume_added_and_agree_with_the_builder(updates, n):
    bars = tick_bars(updates, n)
    builder = TickBarBuilder(n)
    for update in updates:
        builder.add(*update)
    assert builder.bars() == bars
    added = sum(d for (_, p, _), d in zip(updates, volume_deltas([c for _, _, c in updates]))
                if p is not None and not math.isnan(p))
    assert sum(b.volume for b in bars) == added
    assert all(b.ticks == n for b in bars[:-1])
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)


@given(bar_updates_st)
def test_time_bars_sum_to_the_volume_added_and_agree_with_the_builder(updates):
    bars = time_bars(updates)
    builder = TimeBarBuilder()
    for update in updates:
        builder.add(*update)
    assert builder.bars() == bars
    added = sum(d for (_, p, _), d in zip(updates, volume_deltas([c for _, _, c in updates]))
                if p is not None and not math.isnan(p))
    assert sum(b.volume for b in bars) == added
    assert [b.start_ts for b in bars] == sorted({b.start_ts for b in bars})


SYMBOLS = [f"S{i}" for i in range(50)]
quote_st = st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 60).map(lambda n: n * 0.05 + 99),
                     st.sampled_from([None, 100.0, 100.05, 99.95]),
                     st.sampled_from([None, 100.0, 100.02]), st.integers(0, 10_000))


@given(st.lists(quote_st, max_size=200))
def test_breadth_counts_every_constituent_once_and_agrees_with_the_batch(quotes):
    breadth = Breadth(SYMBOLS)
    last = {}
    for symbol, ltp, prev_close, atp, volume in quotes:
        breadth.update(symbol, ltp, prev_close, atp, volume)
        if ltp > 0:
            last[symbol] = (ltp, prev_close, volume)
    s = breadth.snapshot()
    assert s.advances + s.declines + s.unchanged + s.missing == len(SYMBOLS)
    known = [(ltp, pc) for ltp, pc, _ in last.values() if pc is not None]
    assert (s.advances, s.declines, s.unchanged) == advance_decline(known)
    adv_volume = sum(v for ltp, pc, v in last.values() if pc is not None
                     and compare_prices(ltp, pc) > 0)
    decl_volume = sum(v for ltp, pc, v in last.values() if pc is not None
                      and compare_prices(ltp, pc) < 0)
    assert s.trin == trin(s.advances, s.declines, adv_volume, decl_volume)


@given(st.integers(-10**6, 10**6), st.floats(-0.02, 0.02), st.sampled_from([0.05, 0.01, 1.0, 0.1]))
def test_compare_prices_is_exact_on_the_grid(n, noise, tick):
    price = n * tick
    assert compare_prices(price + noise * tick, price, tick) == 0
    assert compare_prices(price + tick, price, tick) == 1
    assert compare_prices(price - tick, price, tick) == -1


@given(bar_updates_st)
def test_each_developing_point_is_the_profile_of_the_day_up_to_its_minute(updates):
    builder = ProfileBuilder(0.05, offset=0)
    for ts, price, cum in updates:
        builder.add(price, cum, ts=ts)
    points = builder.developing()
    for point in points:
        so_far = [(price, cum) for ts, price, cum in updates if ts < point.ts + 60]
        assert build_profile(so_far, 0.05).levels == point[1:]
    minutes_with_volume = {ts // 60 * 60 for ts, price, cum in updates}
    assert {p.ts for p in points} <= minutes_with_volume
