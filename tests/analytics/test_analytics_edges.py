"""Edge cases a trader hits: baselines, reconnects, empty days, bad input, memory bounds."""
import math

import numpy as np
import pytest

from dhan_trading.analytics import (Bar, Breadth, BucketProfiles, CumulativeVolume, LevelsAt,
                                    Profile, ProfileBuilder, TickBarBuilder, TimeBarBuilder,
                                    bucket_start, build_profile, check_contributions,
                                    compare_prices, pct_advancing, poc_index,
                                    point_contributions, session_levels, tick_bars, time_bars,
                                    trin, value_area)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("tick", [0, -0.05, math.nan, math.inf, None, True, "0.05"])
def test_a_bad_tick_is_refused_with_the_fix(tick):
    with pytest.raises(ValueError, match=r"tick must be a positive price step in rupees \(e.g. 0.05\)"):
        build_profile([(100, 1)], tick)
    with pytest.raises(ValueError, match="tick must be a positive price step"):
        ProfileBuilder(tick)
    with pytest.raises(ValueError, match="tick must be a positive price step"):
        compare_prices(1, 2, tick)


def test_a_bad_tick_of_one_symbol_names_it():
    with pytest.raises(ValueError, match="tick of INFY must be"):
        Breadth(["TCS", "INFY"], ticks={"INFY": 0})


@pytest.mark.parametrize("kwargs, message", [
    ({"row_ticks": 0}, "row_ticks must be a whole number of ticks >= 1"),
    ({"row_ticks": 1.5}, "row_ticks must be"),
    ({"fraction": 0}, r"fraction must be in \(0, 1\]"),
    ({"fraction": 1.2}, r"fraction must be in \(0, 1\]"),
    ({"method": "triple"}, r"method must be one of \('dual', 'single'\)"),
])
def test_bad_profile_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_profile([], 0.05, **kwargs)
    with pytest.raises(ValueError, match=message):
        ProfileBuilder(0.05, **kwargs)
    with pytest.raises(ValueError, match=message):
        BucketProfiles(0.05, **kwargs)


@pytest.mark.parametrize("seconds", [0, -60, 1.5, True])
def test_bad_bucket_widths_are_refused(seconds):
    with pytest.raises(ValueError, match="sample_seconds must be a positive whole number"):
        ProfileBuilder(0.05, sample_seconds=seconds)
    with pytest.raises(ValueError, match="seconds must be a positive whole number"):
        TimeBarBuilder(seconds)
    with pytest.raises(ValueError, match="seconds must be a positive whole number"):
        time_bars([], seconds)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_bad_bar_sizes_are_refused(n):
    with pytest.raises(ValueError, match="n must be a whole number of ticks per bar >= 1"):
        tick_bars([], n)
    with pytest.raises(ValueError, match="n must be"):
        TickBarBuilder(n)


@pytest.mark.parametrize("max_bars", [0, 2.5, True])
def test_bad_max_bars_is_refused(max_bars):
    with pytest.raises(ValueError, match="max_bars must be None"):
        TickBarBuilder(5, max_bars=max_bars)


@pytest.mark.parametrize("ts", [None, math.nan])
def test_a_bucket_needs_a_finite_time(ts):
    with pytest.raises(ValueError, match="ts must be a finite epoch time"):
        bucket_start(ts, 60)


@pytest.mark.parametrize("cum", [None, math.nan, -1])
def test_a_missing_cumulative_volume_is_a_callers_mistake(cum):
    with pytest.raises(ValueError, match="cum_volume must"):
        ProfileBuilder(0.05).add(100.0, cum)
    with pytest.raises(ValueError, match="cum_volume must"):
        TickBarBuilder(5).add(0, 100.0, cum)
    with pytest.raises(ValueError, match="cum_volume must"):
        build_profile([(100.0, 10), (100.0, cum)], 0.05)
    with pytest.raises(ValueError, match="cum_volume must"):
        tick_bars([(0, 100.0, 10), (1, 100.0, cum)], 5)


def test_no_volume_has_no_poc_and_no_value_area():
    for volumes in ([], [0, 0, 0]):
        with pytest.raises(ValueError, match="no volume"):
            poc_index(volumes)
        with pytest.raises(ValueError, match="no volume"):
            value_area(volumes)


def test_an_empty_day_gives_an_empty_profile_everywhere():
    assert build_profile([], 0.05) == Profile()
    assert build_profile([(100.0, 5000)], 0.05).levels is None  # one update: a baseline only
    assert session_levels([], 0.05) is None
    builder = ProfileBuilder(0.05)
    assert (builder.profile(), builder.poc(), builder.developing()) == (Profile(), None, [])
    builder.add(100.0, 5000, ts=1_700_000_000)
    assert builder.developing() == []
    assert BucketProfiles(0.05).profiles() == []
    assert tick_bars([], 3) == [] and time_bars([]) == [] and TickBarBuilder(3).bars() == []


def test_all_volume_at_one_price_is_a_one_row_profile():
    p = build_profile([(250.0, 0), (250.0, 10), (250.0, 40)], 0.05)
    assert (p.prices, p.volumes, p.poc, p.val, p.vah) == ([250.0], [40], 250.0, 250.0, 250.0)
    assert value_area([40]) == (0, 0)


def test_value_area_of_exactly_the_fraction_stops_there():
    assert value_area([3, 4, 3]) == (1, 2)  # 7 of 10 is 70%: no third row
    assert value_area([3, 4, 3], fraction=1.0) == (0, 2)


def test_numpy_rows_are_accepted():
    rows = np.array([10, 20, 50, 20, 10])
    assert poc_index(rows) == 2
    assert value_area(rows) == (2, 4)


def test_negative_prices_have_rows_too():
    # MCX crude settled below zero in April 2020; floor division keeps each row's lowest price
    p = build_profile([(-1.0, 0), (-1.0, 5), (-0.5, 10), (0.5, 12)], 0.5, row_ticks=2)
    assert (p.prices, p.volumes) == ([-1.0, 0.0], [10, 2])


def test_a_reconnect_makes_the_next_update_a_baseline():
    builder = ProfileBuilder(1)
    builder.add(100, 1000)
    builder.add(101, 1010)
    builder.gap()
    assert builder.add(105, 1500) == 0  # the 490 traded during the gap go to no price
    assert builder.add(105, 1520) == 20
    assert builder.profile().volumes == [10, 0, 0, 0, 20]
    buckets = BucketProfiles(1)
    buckets.add(0, 100, 1000)
    buckets.gap()
    assert buckets.add(1, 101, 2000) == 0
    bars = TickBarBuilder(2)
    bars.add(0, 100, 1000)
    bars.gap()
    bars.add(1, 101, 2000)
    assert bars.bars() == []


def test_a_fall_in_cumulative_volume_is_a_new_session():
    volume = CumulativeVolume()
    assert [volume.delta(c) for c in (900, 950, 30, 45)] == [None, 50, None, 15]
    p = build_profile([(100, 900), (101, 950), (100, 30), (100, 45)], 1)
    # after the fall the tick rule restarts: the 15 at 100 have no known side
    assert (p.volumes, p.up, p.down) == ([15, 50], [0, 50], [0, 0])


def test_rows_grow_at_both_ends():
    builder = ProfileBuilder(1)
    builder.add(100, 0)
    for i, price in enumerate([100, 90, 130, 50, 200, 1], start=1):
        builder.add(price, i)
    p = builder.profile()
    assert (p.prices[0], p.prices[-1], len(p.prices)) == (1, 200, 200)
    # six rows tied at 1; the traded range 1-200 has its centre at 100.5, and 100 is nearest
    assert sum(p.volumes) == 6 and p.poc == 100


def test_a_late_update_stays_in_the_current_sample():
    builder = ProfileBuilder(1, offset=0)
    builder.add(100, 0, ts=120)
    builder.add(101, 10, ts=125)
    builder.add(102, 15, ts=60)  # late: still the 120 bucket
    assert builder.developing() == [LevelsAt(120, 101, 101, 102)]


def test_ltt_times_use_offset_zero():
    ltt = 9 * 3600 + 17 * 60 + 42  # 09:17:42 IST as Dhan encodes it (IST as if UTC)
    assert bucket_start(ltt, 300, offset=0) == 9 * 3600 + 15 * 60
    utc = ltt - 19_800  # the same instant as a true UTC epoch
    assert bucket_start(utc, 300) == 9 * 3600 + 15 * 60 - 19_800
    assert bucket_start(utc, 3600) == 9 * 3600 - 19_800  # an hour bucket starts at 09:00 IST


def test_bars_skip_bad_prices_and_count_them():
    updates = [(0, 100, 0), (1, math.nan, 10), (2, 101, 15), (3, None, 20)]
    assert tick_bars(updates, 5) == [Bar(101, 101, 101, 101, 5, 1, 2, 2)]
    builder = TickBarBuilder(5)
    for update in updates:
        builder.add(*update)
    assert builder.skipped == 2 and builder.bars() == tick_bars(updates, 5)


def test_max_bars_keeps_the_newest_closed_bars():
    builder = TickBarBuilder(1, max_bars=2)
    for i in range(6):
        builder.add(i, 100 + i, i * 10)
    assert [b.open for b in builder.bars()] == [104, 105]


def test_a_late_tick_joins_the_current_time_bar():
    updates = [(0, 100, 0), (65, 101, 10), (30, 99, 20), (70, 102, 30)]
    expected = [Bar(101, 102, 99, 102, 30, 3, 60, 120)]
    assert time_bars(updates, offset=0) == expected
    builder = TimeBarBuilder(offset=0)
    for update in updates:
        builder.add(*update)
    assert builder.bars() == expected


def test_breadth_refuses_unknown_symbols_and_no_constituents():
    with pytest.raises(ValueError, match="at least one symbol"):
        Breadth([])
    with pytest.raises(ValueError, match="'WIPRO' is not a constituent"):
        Breadth(["TCS"]).update("WIPRO", 250.0, 245.0, 248.0, 10)


def test_breadth_before_and_without_prices():
    breadth = Breadth(["TCS", "INFY"])
    empty = breadth.snapshot()
    assert (empty.missing, empty.ad_ratio, empty.pct_advancing, empty.pct_above_vwap,
            empty.trin) == (2, None, None, None, None)
    assert breadth.ad_line() == []
    breadth.update("TCS", 0.0, 3500.0, 0.0, 0)  # Dhan's "no trade yet"
    breadth.update("TCS", math.nan, 3500.0, None, 0)
    breadth.update("INFY", 1500.0, None, None, 100)  # no previous close yet: missing
    s = breadth.snapshot()
    assert (breadth.skipped, s.missing, s.pct_above_vwap) == (2, 2, None)
    breadth.update("INFY", 1500.0, 1490.0, 1499.99, 100)
    assert (breadth.snapshot().advances, breadth.snapshot().pct_above_vwap) == (1, 100.0)


def test_breadth_uses_each_symbols_tick():
    breadth = Breadth(["ITC", "TCS"], ticks={"ITC": 0.01})
    breadth.update("ITC", 240.01, 240.00, None, 5)  # one ₹0.01 tick up: an advance
    breadth.update("TCS", 3500.01, 3500.00, None, 5)  # below half a ₹0.05 tick: unchanged
    s = breadth.snapshot()
    assert (s.advances, s.unchanged) == (1, 1)


def test_undefined_ratios_are_none():
    assert pct_advancing(0, 0) is None and pct_advancing(1, 3) == 25.0
    assert trin(3, 0, 100, 0) is None  # no decliners
    assert trin(3, 2, 100, 0) is None  # decliners without volume
    assert trin(0, 2, 0, 100) is None  # no advancing volume
    assert trin(3, 1, 300, 50) == 0.5


def test_contributions_leave_out_what_cannot_be_computed():
    prices = {"A": (101.0, 100.0), "B": (50.0, None), "C": (10.0, 0.0), "D": (20.0, 19.0)}
    points = point_contributions(prices, {"A": 10.0, "B": 5.0, "C": 1.0}, 20000)
    assert points == pytest.approx({"A": 20.0})  # D has no weight, B and C no usable close
    assert check_contributions({}, 20000, 20000) == (0, 0, 0)


def test_an_empty_depth_side_is_no_quote():
    builder = ProfileBuilder(0.05)
    builder.add(100.00, 1000)
    builder.add(99.95, 1010, bid=0.0, ask=0.0)  # empty book: the tick rule says sell
    builder.add(99.95, 1020, bid=math.nan, ask=None)  # zero tick: still a sell
    builder.add(99.95, 1030, bid=99.90, ask=0.0)  # only the bid known: a trade above it, tick rule
    assert (builder.profile().up, builder.profile().down) == ([0], [30])


def test_the_core_imports_nothing_but_the_standard_library_and_itself():
    import ast
    import sys
    from pathlib import Path

    import dhan_trading.analytics as analytics
    for path in Path(analytics.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # a sibling module of analytics/
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "numpy", f"{path.name} imports {name}"
