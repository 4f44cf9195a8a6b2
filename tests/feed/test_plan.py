"""Connection planning and backoff: pure functions, Dhan's limits."""
from __future__ import annotations

import math
import random

import orjson
import pytest

from dhan_trading.market_feed.backoff import Backoff
from dhan_trading.market_feed.plan import PlanError, choose_mode, plan_connections, plan_depth
from dhan_trading.market_feed.reasons import FATAL, describe

pytestmark = pytest.mark.unit


def _universe(n: int) -> list[tuple[str, int, str]]:
    spots = [("IDX_I", i, "ticker") for i in range(1, 6)]
    return spots + [("NSE_FNO", 100_000 + i, "full") for i in range(n - len(spots))]


def test_12000_instruments_use_3_connections_of_4000_and_messages_of_at_most_100():
    plans = plan_connections(_universe(12_000))
    assert [len(p.instruments) for p in plans] == [4000, 4000, 4000]
    seen = []
    for plan in plans:
        messages = [orjson.loads(m) for m in plan.messages]
        assert all(1 <= m["InstrumentCount"] == len(m["InstrumentList"]) <= 100 for m in messages)
        assert sum(m["InstrumentCount"] for m in messages) == len(plan.instruments)
        for m in messages:
            mode = {15: "ticker", 21: "full"}[m["RequestCode"]]
            for item in m["InstrumentList"]:
                seen.append((item["ExchangeSegment"], int(item["SecurityId"]), mode))
    assert sorted(seen) == sorted(_universe(12_000))  # every instrument exactly once, in its mode


def test_the_index_spots_are_dealt_round_robin_not_piled_on_one_socket():
    plans = plan_connections(_universe(12_000))
    spots_per_socket = [sum(seg == "IDX_I" for seg, _, _ in p.instruments) for p in plans]
    assert max(spots_per_socket) - min(spots_per_socket) <= 1


@pytest.mark.parametrize("n, sockets", [(1, 1), (5000, 1), (5001, 2), (25_000, 5)])
def test_the_fewest_sockets_that_hold_the_universe(n, sockets):
    plans = plan_connections(_universe(n))
    assert len(plans) == sockets
    assert all(len(p.instruments) <= 5000 for p in plans)


def test_more_than_25000_instruments_is_an_error_that_states_the_limit():
    with pytest.raises(PlanError, match="25000 .*5 connections x 5000"):
        plan_connections(_universe(25_001))


def test_duplicates_are_subscribed_once_and_bad_modes_refused():
    plans = plan_connections([("NSE_FNO", 1, "full"), ("NSE_FNO", 1, "ticker"), ("IDX_I", 13, "ticker")])
    assert plans[0].instruments == (("NSE_FNO", 1, "full"), ("IDX_I", 13, "ticker"))
    with pytest.raises(PlanError, match="unknown mode"):
        plan_connections([("NSE_FNO", 1, "depth")])
    assert plan_connections([]) == []


def test_mode_choice_ticker_for_index_spots_full_for_contracts():
    assert choose_mode("IDX_I") == "ticker"
    assert choose_mode("NSE_FNO") == choose_mode("MCX_COMM") == "full"


def test_depth_plan_limits():
    plan = plan_depth([("NSE_FNO", i) for i in range(50)])
    assert len(plan.messages) == 1 and orjson.loads(plan.messages[0])["RequestCode"] == 23
    assert plan_depth([]) is None
    with pytest.raises(PlanError, match="at most 50"):
        plan_depth([("NSE_FNO", i) for i in range(51)])
    with pytest.raises(PlanError, match="NSE_EQ and NSE_FNO"):
        plan_depth([("MCX_COMM", 1)])


def test_backoff_doubles_from_about_one_second_to_a_cap_with_jitter():
    b = Backoff(initial=1.0, cap=60.0, jitter=0.2, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(10)]
    for i, d in enumerate(delays):
        base = min(60.0, 2.0 ** i)
        assert base * 0.8 <= d <= min(60.0, base * 1.2)
    assert delays[-1] <= 60.0 and delays[0] < 1.3


def test_backoff_resets_only_after_a_stable_connection():
    b = Backoff(initial=1.0, cap=60.0, jitter=0.0, stable_after=30.0)
    for _ in range(4):
        b.next_delay()
    b.connected(100.0)
    b.disconnected(105.0)  # flapping: keeps growing
    assert b.next_delay() == 16.0
    b.connected(200.0)
    b.disconnected(240.0)  # stayed up 40 s: start again
    assert b.next_delay() == 1.0


def test_fatal_reasons_say_how_to_fix():
    assert set(FATAL) == {806, 807, 808, 809, 810}
    assert "DHAN_ACCESS_TOKEN" in FATAL[807] and "web.dhan.co" in FATAL[807]
    assert "805" in describe(805) and "unknown" in describe(999)


@pytest.mark.parametrize("initial, cap", [(0.1, 5.0), (1.0, 60.0), (0.0, 5.0), (1e-3, 1e6)])
def test_backoff_stays_finite_and_capped_for_10000_attempts(initial, cap):
    b = Backoff(initial=initial, cap=cap, jitter=0.2, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(10_000)]
    assert all(math.isfinite(d) and 0.0 <= d <= cap for d in delays)
    if initial:
        assert delays[-1] >= cap * 0.8  # still at the cap, not reset or stuck low


def test_backoff_refuses_settings_that_make_no_sense():
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError, match="cap"):
        Backoff(cap=float("inf"))
