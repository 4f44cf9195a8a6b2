"""Universe selection: ~128 instruments, never an expired contract, ATM from the last price."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import orjson
import pytest

from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
from dhan_trading.instruments import sample
from dhan_trading.instruments.master import read_master
from dhan_trading.instruments.universe import (LIQUID_STOCKS, UniverseRules, index_prices_from_latest,
                                               select_universe)

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 21)


@pytest.fixture(scope="module")
def master():
    return read_master(str(SAMPLE_INSTRUMENTS_CSV))


@pytest.fixture(scope="module")
def by_key(master):
    return {i.key: i for i in master}


def strikes_of(universe, by_key, name):
    return sorted({by_key[(s.exchange_segment, s.security_id)].strike for s in universe.subscriptions
                   if s.category == "index_option" and s.symbol.startswith(name + "-")})


def test_default_universe_is_179_instruments(master):
    u = select_universe(master, today=DAY)
    assert u.counts() == {"index": 5, "index_future": 8, "stock_future": 40, "index_option": 76, "nifty50": 50}
    assert len(u.subscriptions) == 5 + 4 * 2 + 40 + 2 * 19 * 2 + 50 == 179
    assert len({(s.exchange_segment, s.security_id) for s in u.subscriptions}) == 179


def test_modes_ticker_for_spots_full_for_derivatives(master):
    u = select_universe(master, today=DAY, mcx=True)
    for s in u.subscriptions:
        assert s.mode == {"index": "ticker", "nifty50": "quote"}.get(s.category, "full"), s
    assert [s.security_id for s in u.subscriptions if s.category == "index"] == [13, 25, 27, 442, 21]


def test_mcx_adds_the_five_near_month_futures_and_never_the_minis(master, by_key):
    u = select_universe(master, today=DAY, mcx=True)
    mcx = [by_key[(s.exchange_segment, s.security_id)] for s in u.subscriptions if s.category == "mcx_future"]
    assert [i.underlying for i in mcx] == ["CRUDEOIL", "GOLD", "SILVER", "NATURALGAS", "COPPER"]
    assert [i.trading_symbol for i in mcx] == ["CRUDEOIL-18Dec2026-FUT", "GOLD-04Dec2026-FUT",
                                                "SILVER-04Dec2026-FUT", "NATURALGAS-26Nov2026-FUT",
                                                "COPPER-30Nov2026-FUT"]
    assert len(u.subscriptions) == 184
    assert "mcx_future" not in select_universe(master, today=DAY).counts()


def test_index_futures_near_and_next_and_stock_futures_current_month_in_ranking_order(master):
    u = select_universe(master, today=DAY)
    futures = [s.symbol for s in u.subscriptions if s.category == "index_future"]
    assert futures == ["NIFTY-Nov2026-FUT", "NIFTY-Dec2026-FUT", "BANKNIFTY-Nov2026-FUT", "BANKNIFTY-Dec2026-FUT",
                       "FINNIFTY-Nov2026-FUT", "FINNIFTY-Dec2026-FUT", "MIDCPNIFTY-Nov2026-FUT",
                       "MIDCPNIFTY-Dec2026-FUT"]
    stocks = [s.symbol for s in u.subscriptions if s.category == "stock_future"]
    assert stocks == [f"{name}-Nov2026-FUT" for name in LIQUID_STOCKS[:40]]


@pytest.mark.parametrize("day", [date(2026, 11, 25), date(2026, 12, 2), date(2026, 12, 30)])
def test_no_expired_contract_is_ever_selected(master, by_key, day):
    u = select_universe(master, today=day, mcx=True)
    for s in u.subscriptions:
        inst = by_key[(s.exchange_segment, s.security_id)]
        assert inst.expiry is None or inst.expiry.date() >= day, s
    assert u.counts()["index_future"] == 8 if day < date(2026, 12, 30) else 4  # only Jan is left
    assert any("wanted 2" in n for n in u.notes) == (day == date(2026, 12, 30))


def test_after_the_nov_expiry_futures_roll_and_options_take_the_next_weekly(master, by_key):
    u = select_universe(master, today=date(2026, 11, 25))
    assert [s.symbol for s in u.subscriptions if s.category == "index_future"][:2] == \
        ["NIFTY-Dec2026-FUT", "NIFTY-Jan2027-FUT"]
    nifty = {by_key[(s.exchange_segment, s.security_id)].expiry.date() for s in u.subscriptions
             if s.symbol.startswith("NIFTY-") and s.category == "index_option"}
    assert nifty == {date(2026, 12, 1)}


def test_on_expiry_day_a_contract_stays_until_the_close(master):
    def has(u, symbol):
        return any(s.symbol == symbol for s in u.subscriptions)
    day = date(2026, 11, 24)
    assert has(select_universe(master, today=day), "NIFTY-Nov2026-FUT")
    assert has(select_universe(master, today=day, now=datetime(2026, 11, 24, 15, 29)), "NIFTY-Nov2026-FUT")
    late = select_universe(master, today=day, now=datetime(2026, 11, 24, 15, 30))
    assert not has(late, "NIFTY-Nov2026-FUT") and has(late, "NIFTY-Jan2027-FUT")
    utc = datetime(2026, 11, 24, 10, 5, tzinfo=timezone.utc)  # 15:35 IST
    assert not has(select_universe(master, today=day, now=utc), "NIFTY-Nov2026-FUT")
    gas_day = date(2026, 11, 26)
    evening = datetime(2026, 11, 26, 23, 0)
    assert has(select_universe(master, today=gas_day, now=evening, mcx=True), "NATURALGAS-26Nov2026-FUT")
    night = select_universe(master, today=gas_day, now=evening + timedelta(minutes=45), mcx=True)
    assert not has(night, "NATURALGAS-26Nov2026-FUT") and has(night, "NATURALGAS-25Dec2026-FUT")


def test_atm_comes_from_the_last_index_price(master, by_key):
    u = select_universe(master, today=DAY, index_prices={"NIFTY": 26333.0, "banknifty": 58760.0})
    assert u.atm == {"NIFTY": 26350.0, "BANKNIFTY": 58800.0}
    assert strikes_of(u, by_key, "NIFTY") == [26350 + 50 * k for k in range(-9, 10)]
    assert strikes_of(u, by_key, "BANKNIFTY") == [58800 + 100 * k for k in range(-9, 10)]
    assert not u.notes
    kinds = [s.symbol.rsplit("-", 1)[1] for s in u.subscriptions if s.category == "index_option"]
    assert kinds[:4] == ["CE", "PE", "CE", "PE"]


def test_a_price_halfway_between_strikes_takes_the_lower(master):
    assert select_universe(master, today=DAY, index_prices={"NIFTY": 26325.0}).atm["NIFTY"] == 26300.0
    assert select_universe(master, today=DAY, index_prices={"NIFTY": 26325.01}).atm["NIFTY"] == 26350.0


def test_unknown_price_falls_back_to_the_middle_strike_and_says_so(master):
    u = select_universe(master, today=DAY, index_prices={"BANKNIFTY": 59000.0})
    assert u.atm["NIFTY"] == 26000.0
    assert u.notes == ["NIFTY: no last price known; ATM taken as the middle listed strike 26000 "
                       "of the 2026-11-24 expiry"]


def test_a_price_at_the_edge_of_the_chain_takes_the_strikes_there_are(master, by_key):
    u = select_universe(master, today=DAY, index_prices={"NIFTY": 30000.0, "BANKNIFTY": 59000.0})
    assert u.atm["NIFTY"] == 27000.0
    assert strikes_of(u, by_key, "NIFTY") == [26550 + 50 * k for k in range(10)]
    assert any("only 10 strikes" in n for n in u.notes)


def test_counts_are_configurable(master):
    u = select_universe(master, today=DAY, stocks=10, strikes=2)
    assert u.counts() == {"index": 5, "index_future": 8, "stock_future": 10, "index_option": 20, "nifty50": 50}
    assert select_universe(master, today=DAY, strikes=0).counts()["index_option"] == 4
    rules = UniverseRules(option_underlyings=("NIFTY",), index_futures=("NIFTY",), futures_per_index=3)
    u = select_universe(master, today=DAY, rules=rules)
    assert u.counts()["index_future"] == 3 and u.counts()["index_option"] == 38
    too_many = select_universe(master, today=DAY, stocks=60)
    assert too_many.counts()["stock_future"] == len(LIQUID_STOCKS)
    assert any("ranked" in n for n in too_many.notes)


def test_the_liquidity_ranking_is_unique_and_listed_in_the_sample():
    assert len(LIQUID_STOCKS) == len(set(LIQUID_STOCKS)) >= 40
    assert set(LIQUID_STOCKS) <= set(sample.FNO_STOCKS)


def test_missing_pieces_become_notes_not_errors(master):
    only_spots = [i for i in master if i.exchange_segment == "IDX_I" and i.trading_symbol != "INDIA VIX"]
    u = select_universe(only_spots, today=DAY, stocks=1, mcx=True)
    assert u.counts() == {"index": 4}
    text = " | ".join(u.notes)
    for piece in ("INDIA VIX is not in the master", "NIFTY: 0 live index future", "HDFCBANK: no live stock",
                  "NIFTY: no live options", "CRUDEOIL: no live MCX future"):
        assert piece in text


def test_index_prices_from_the_latest_hash(master):
    latest = {
        b"ticker:IDX_I:13": orjson.dumps({"ltp": 26010.5}),
        "full:IDX_I:25": orjson.dumps({"ltp": 58950.0}),
        b"ticker:IDX_I:21": b"not json",
        b"ticker:NSE_FNO:13": orjson.dumps({"ltp": 1.0}),
        b"prev_close:IDX_I:27": orjson.dumps({"prev_close": 27000.0}),
        b"ticker:IDX_I:442": orjson.dumps({"ltp": None}),
    }
    assert index_prices_from_latest(latest, master) == {"NIFTY": 26010.5, "BANKNIFTY": 58950.0}


def test_json_shape_is_stable(master):
    data = select_universe(master, today=DAY, index_prices={"NIFTY": 26000, "BANKNIFTY": 59000}).to_json()
    assert list(data) == ["date", "count", "counts", "notes", "warnings", "instruments"]
    assert data["date"] == "2026-11-21" and data["count"] == len(data["instruments"]) == 179
    assert data["instruments"][0] == {"exchange_segment": "IDX_I", "security_id": 13, "mode": "ticker",
                                      "category": "index", "symbol": "NIFTY"}
