"""The worked examples of docs/ANALYTICS.md, with the doc's numbers."""
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dhan_trading.analytics.grid import grid_price, units
from dhan_trading.analytics import (Bar, Breadth, BucketProfiles, Levels, LevelsAt,
                                    ProfileBuilder, TickBarBuilder, TimeBarBuilder, advance_decline,
                                    build_profile,
                                    check_contributions, poc_index, session_levels, tick_bars,
                                    time_bars, value_area, volume_deltas)

pytestmark = pytest.mark.unit

IST = ZoneInfo("Asia/Kolkata")


def ist(hh: int, mm: int, ss: int = 0) -> float:
    """True UTC epoch seconds of an IST wall-clock time (what `recv_ts` carries)."""
    return datetime(2026, 12, 3, hh, mm, ss, tzinfo=IST).timestamp()


EXAMPLE_P = [(100.00, 10000), (100.05, 10030), (100.10, 10050), (100.05, 10100),
             (100.00, 10110), (100.20, 10150), (100.20, 10150)]


def test_grid_prices_print_without_float_noise():
    assert 2006 * 0.05 == 100.30000000000001
    assert grid_price(2006, 0.05) == 100.3
    assert units(200.3000030517578, 0.05) == units(200.30, 0.05) == 4006


def test_example_v_volume_deltas():
    assert volume_deltas([5000, 5000, 5040, 5100, 120, 150]) == [0, 0, 40, 60, 0, 30]


def test_example_t_poc_ties():
    assert poc_index([5, 9, 2, 9, 9, 1]) == 3
    assert poc_index([0, 7, 3, 7, 0]) == 3


def test_example_a_value_area_dual_and_single():
    assert value_area([10, 20, 50, 20, 10]) == (2, 4)
    assert value_area([10, 20, 50, 20, 10], method="single") == (1, 3)


def test_example_p_profile_dual():
    p = build_profile(EXAMPLE_P, tick=0.05)
    assert p.prices == [100.0, 100.05, 100.1, 100.15, 100.2]
    assert p.volumes == [10, 80, 20, 0, 40]
    assert p.up == [0, 30, 20, 0, 40]
    assert p.down == [10, 50, 0, 0, 0]
    assert (p.poc, p.val, p.vah) == (100.05, 100.05, 100.2)
    assert sum(p.volumes) == 150  # the first update's 10,000 are in no row


def test_example_p_profile_single():
    p = build_profile(EXAMPLE_P, tick=0.05, method="single")
    assert (p.poc, p.val, p.vah) == (100.05, 100.0, 100.1)


def test_example_p_rows_of_two_ticks():
    p = build_profile(EXAMPLE_P, tick=0.05, row_ticks=2)
    assert p.prices == [100.0, 100.1, 100.2]
    assert p.volumes == [90, 20, 40]
    assert (p.poc, p.val, p.vah) == (100.0, 100.0, 100.2)


def test_example_p_previous_session_levels():
    assert session_levels(EXAMPLE_P, tick=0.05) == Levels(poc=100.05, val=100.05, vah=100.2)


def test_example_q_quote_rule():
    b = ProfileBuilder(tick=0.05)
    b.add(100.00, 1000)
    assert b.add(100.05, 1010, bid=100.00, ask=100.05) == 10
    b.add(100.05, 1030, bid=100.05, ask=100.10)
    b.add(100.05, 1035, bid=100.00, ask=100.10)
    b.add(100.00, 1045, bid=100.05, ask=100.00)
    p = b.profile()
    assert p.prices == [100.0, 100.05]
    assert (p.up, p.down) == ([0, 15], [10, 20])


def test_example_s_skipped_price():
    updates = [(100.00, 1000), (None, 1010), (100.05, 1030)]
    p = build_profile(updates, tick=0.05)
    assert (p.prices, p.volumes, p.skipped) == ([100.05], [20], 1)
    b = ProfileBuilder(tick=0.05)
    for price, cum in updates:
        b.add(price, cum)
    assert b.profile() == p
    assert b.skipped == 1


def test_example_d_developing_levels():
    b = ProfileBuilder(tick=1)
    rows_at_minute_end = {}
    for (hh, mm, ss), price, cum in [((9, 15, 0), 100, 500), ((9, 15, 20), 101, 520),
                                     ((9, 15, 40), 100, 530), ((9, 16, 5), 102, 560),
                                     ((9, 16, 30), 101, 565), ((9, 17, 10), 102, 700)]:
        b.add(price, cum, ts=ist(hh, mm, ss))
        rows_at_minute_end[mm] = b.profile().volumes
    assert rows_at_minute_end == {15: [10, 20], 16: [10, 25, 30], 17: [10, 25, 165]}
    assert b.developing() == [LevelsAt(ist(9, 15), 101, 100, 101),
                              LevelsAt(ist(9, 16), 102, 100, 102),
                              LevelsAt(ist(9, 17), 102, 102, 102)]
    assert b.profile().volumes == [10, 25, 165]


def test_example_f_five_minute_profiles():
    bp = BucketProfiles(tick=1)
    for (hh, mm, ss), price, cum in [((9, 19, 50), 100, 1000), ((9, 19, 55), 100, 1010),
                                     ((9, 20, 0), 101, 1025), ((9, 24, 59), 101, 1030),
                                     ((9, 25, 0), 99, 1040)]:
        bp.add(ist(hh, mm, ss), price, cum)
    assert [(start, p.prices, p.volumes) for start, p in bp.profiles()] == [
        (ist(9, 15), [100], [10]), (ist(9, 20), [101], [20]), (ist(9, 25), [99], [10])]


WEIGHTS = {"A": 10, "B": 5, "C": 3, "D": 2, "E": 1}
EXAMPLE_B = [("A", 101.00, 100.00, 100.50, 1000), ("B", 48.00, 50.00, 49.00, 3000),
             ("C", 200.3000030517578, 200.30, 200.10, 500), ("D", 75.75, 75.00, 76.00, 2000)]


def test_example_b_breadth():
    br = Breadth("ABCDE", weights=WEIGHTS)
    for row in EXAMPLE_B:
        br.update(*row)
    s = br.snapshot()
    assert (s.advances, s.declines, s.unchanged, s.missing) == (2, 1, 1, 1)
    assert s.ad_ratio == 2.0
    assert s.pct_advancing == pytest.approx(66.67, abs=0.005)
    assert s.pct_above_vwap == 50.0
    assert s.trin == 2.0


def test_example_b_advance_decline_of_pairs():
    pairs = [(ltp, prev_close) for _, ltp, prev_close, _, _ in EXAMPLE_B]
    assert advance_decline(pairs) == (2, 1, 1)


def test_example_b_without_decliners_ratios_are_undefined():
    br = Breadth("ABCDE")
    for row in EXAMPLE_B:
        if row[0] != "B":
            br.update(*row)
    s = br.snapshot()
    assert s.declines == 0
    assert s.ad_ratio is None and s.trin is None


def test_example_b_points_contribution():
    br = Breadth("ABCDE", weights=WEIGHTS)
    for row in EXAMPLE_B:
        br.update(*row)
    points = br.contributions(prev_index=24000)
    assert points == pytest.approx({"A": 24.0, "B": -48.0, "C": 0.0, "D": 4.8})
    check = check_contributions(points, index_ltp=23980.0, index_prev_close=24000.0)
    assert check.total == pytest.approx(-19.2)
    assert check.actual == -20.0
    assert check.residual == pytest.approx(-0.8)


def test_example_h_ad_line_and_new_highs_lows():
    br = Breadth("ABCD")
    br.update("A", 101.00, 100.00, None, 0, ts=ist(9, 15, 10))
    br.update("B", 48.00, 50.00, None, 0, ts=ist(9, 15, 40))
    br.update("D", 75.75, 75.00, None, 0, ts=ist(9, 16, 5))
    br.update("B", 50.00, 50.00, None, 0, ts=ist(9, 18, 0))
    assert br.ad_line() == [(ist(9, 15), 0), (ist(9, 16), 1), (ist(9, 18), 2)]

    highs = Breadth("AB")
    seen = []
    for price in (100.00, 101.00, 100.50, 101.50):
        highs.update("A", price, 100.00, None, 0)
        seen.append(highs.snapshot().new_highs)
    assert seen == [0, 1, 0, 1]
    highs.update("B", 50.00, 50.00, None, 0)
    highs.update("B", 49.00, 50.00, None, 0)
    assert highs.snapshot().new_lows == 1


EXAMPLE_K = [(1, 100.0, 1000), (2, 100.5, 1010), (3, 100.5, 1010), (4, 99.5, 1030),
             (5, 101.0, 1035), (6, 100.0, 1050)]


def test_example_k_tick_bars():
    expected = [Bar(100.5, 101.0, 99.5, 101.0, 35, 3, 2, 5), Bar(100.0, 100.0, 100.0, 100.0, 15, 1, 6, 6)]
    assert tick_bars(EXAMPLE_K, 3) == expected
    builder = TickBarBuilder(3)
    closed = [builder.add(*u) for u in EXAMPLE_K]
    assert closed == [None, None, None, None, expected[0], None]
    assert builder.bars() == expected


def test_example_m_one_minute_bars():
    updates = [(ist(9, 15, 5), 100, 1000), (ist(9, 15, 30), 101, 1010), (ist(9, 15, 59), 99, 1020),
               (ist(9, 16, 0), 100, 1050), (ist(9, 17, 30), 102, 1050)]
    expected = [Bar(101, 101, 99, 99, 20, 2, ist(9, 15), ist(9, 16)),
                Bar(100, 100, 100, 100, 30, 1, ist(9, 16), ist(9, 17))]
    assert time_bars(updates) == expected
    builder = TimeBarBuilder()
    closed = [builder.add(*u) for u in updates]
    assert closed == [None, None, None, expected[0], None]
    assert builder.bars() == expected
