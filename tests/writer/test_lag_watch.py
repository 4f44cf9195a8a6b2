"""The writer's "falling behind" rule (LagWatch): pure, on made-up lag samples."""
import pytest

from dhan_trading.subscribers.db_writer import LagWatch

pytestmark = pytest.mark.unit


def feed(watch: LagWatch, samples) -> list:
    return [watch.problem(lag, t) for t, lag in samples]


def test_a_lag_rising_above_the_bound_for_the_window_is_a_problem():
    out = feed(LagWatch(1000, 30, "entries"), [(t, 2000 + 100 * t) for t in range(0, 41)])
    assert all(p is None for p in out[:30]) and all(out[30:])
    assert "6,000 entries behind" in out[-1] and "up from 3,000 30 s ago" in out[-1]


def test_a_large_lag_that_shrinks_is_catching_up_not_a_problem():
    assert not any(feed(LagWatch(1000, 30, "entries"), [(t, 500_000 - 1000 * t) for t in range(120)]))


def test_a_dip_below_the_bound_starts_the_window_again():
    samples = [(t, 2000 + 100 * t) for t in range(25)] + [(25, 900)] + \
              [(t, 2000 + 100 * t) for t in range(26, 50)]
    out = feed(LagWatch(1000, 30, "entries"), samples)
    assert not any(out)  # 26..49 is only 23 s above the bound


def test_unknown_lag_is_no_problem_and_resets():
    watch = LagWatch(10, 2, "s")
    assert feed(watch, [(0, 20), (1, 30), (2, None), (3, 40), (4, 50)]) == [None] * 5
    assert watch.problem(60, 5.5) is not None
