"""The bundled sample master: NSE/MCX expiry rules, realistic contents, renewal when stale."""
from __future__ import annotations

import calendar
import logging
from collections import defaultdict
from datetime import date

import pytest

from dhan_trading.config import NIFTY50_CSV, SAMPLE_INSTRUMENTS_CSV
from dhan_trading.instruments import sample
from dhan_trading.instruments.columns import COMPACT_COLUMNS
from dhan_trading.instruments.master import load_master, read_master
from dhan_trading.instruments.nifty50 import read_constituents
from dhan_trading.instruments.universe import LIQUID_STOCKS

pytestmark = pytest.mark.unit

BUNDLED_DAY = date(2026, 11, 21)


@pytest.fixture(scope="module")
def bundled():
    return read_master(str(SAMPLE_INSTRUMENTS_CSV))


def expiries(instruments, underlying, kind):
    return sorted({i.expiry.date() for i in instruments if i.underlying == underlying and i.instrument == kind})


def test_the_bundled_file_is_what_the_generator_writes_for_its_day(tmp_path):
    fresh = sample.write_sample_master(tmp_path / "s.csv", BUNDLED_DAY)
    assert fresh.read_bytes() == SAMPLE_INSTRUMENTS_CSV.read_bytes()
    assert fresh.read_text().splitlines()[0] == ",".join(COMPACT_COLUMNS)


def test_nse_monthly_expiry_is_the_last_tuesday():
    assert sample.nse_monthly_expiry(2026, 11) == date(2026, 11, 24)
    assert sample.nse_monthly_expiry(2026, 12) == date(2026, 12, 29)
    assert sample.nse_monthly_expiry(2027, 3) == date(2027, 3, 30)
    for month in range(1, 13):
        day = sample.nse_monthly_expiry(2027, month)
        assert day.weekday() == calendar.TUESDAY and (day.day + 7) > calendar.monthrange(2027, month)[1]


def test_expiry_lists_start_on_or_after_today():
    assert sample.monthly_expiries(date(2026, 11, 24)) == [date(2026, 11, 24), date(2026, 12, 29), date(2027, 1, 26)]
    assert sample.monthly_expiries(date(2026, 11, 25))[0] == date(2026, 12, 29)
    assert sample.weekly_expiries(date(2026, 11, 21)) == [date(2026, 11, 24), date(2026, 12, 1),
                                                          date(2026, 12, 8), date(2026, 12, 15)]
    assert sample.weekly_expiries(date(2026, 11, 24))[0] == date(2026, 11, 24)  # expiry day itself


def test_nse_derivatives_expire_on_tuesdays_with_weeklies_only_for_nifty(bundled):
    nse = [i for i in bundled if i.exchange_segment == "NSE_FNO"]
    assert all(i.expiry.weekday() == calendar.TUESDAY and i.expiry.date() >= BUNDLED_DAY for i in nse)
    months = [date(2026, 11, 24), date(2026, 12, 29), date(2027, 1, 26)]
    for name in ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "RELIANCE", "BAJAJ-AUTO"):
        kind = "FUTSTK" if name in sample.STOCKS else "FUTIDX"
        assert expiries(bundled, name, kind) == months
    assert expiries(bundled, "NIFTY", "OPTIDX") == [date(2026, 11, 24), date(2026, 12, 1), date(2026, 12, 8),
                                                    date(2026, 12, 15), date(2026, 12, 29)]
    assert expiries(bundled, "BANKNIFTY", "OPTIDX") == months[:2]
    flags = {(i.underlying, i.expiry.date()): i.expiry_flag for i in nse if i.instrument == "OPTIDX"}
    assert flags[("NIFTY", date(2026, 12, 1))] == "W" and flags[("NIFTY", date(2026, 12, 29))] == "M"
    assert {f for (u, _), f in flags.items() if u == "BANKNIFTY"} == {"M"}


def test_options_cover_twenty_strikes_each_side_with_calls_and_puts(bundled):
    chain = defaultdict(set)
    for i in bundled:
        if i.instrument == "OPTIDX" and i.expiry.date() == date(2026, 12, 29):
            chain[i.underlying].add((i.strike, i.option_type))
    nifty = sorted({k for k, _ in chain["NIFTY"]})
    assert nifty == [25000 + 50 * n for n in range(41)] and len(chain["NIFTY"]) == 82
    banknifty = sorted({k for k, _ in chain["BANKNIFTY"]})
    assert banknifty[0] == 57000 and banknifty[-1] == 61000 and len(chain["BANKNIFTY"]) == 82


def test_universe_contents_are_realistic(bundled):
    spots = {i.trading_symbol: i.security_id for i in bundled if i.exchange_segment == "IDX_I"}
    assert spots == {"NIFTY": 13, "BANKNIFTY": 25, "FINNIFTY": 27, "MIDCPNIFTY": 442, "INDIA VIX": 21}
    equities = {i.trading_symbol for i in bundled if i.exchange_segment == "NSE_EQ"}
    nifty50 = read_constituents(NIFTY50_CSV).symbols  # the generator takes its NSE_EQ rows from this file
    assert len(nifty50) == 50 and set(nifty50) <= equities
    assert all(i.instrument == "EQUITY" for i in bundled if i.exchange_segment == "NSE_EQ")
    for name in LIQUID_STOCKS:
        assert len(expiries(bundled, name, "FUTSTK")) == 3, name
    mcx = {i.underlying for i in bundled if i.exchange_segment == "MCX_COMM"}
    assert mcx == {"CRUDEOIL", "GOLD", "SILVER", "NATURALGAS", "COPPER",
                   "CRUDEOILM", "GOLDM", "SILVERM", "NATGASMINI"}
    for i in bundled:
        if i.exchange_segment == "MCX_COMM":
            assert i.expiry.weekday() < 5 and i.expiry.hour == 23 and i.expiry.minute == 30
    lots = {i.underlying: i.lot_size for i in bundled if i.instrument == "FUTIDX"}
    assert lots == {"NIFTY": 65, "BANKNIFTY": 30, "FINNIFTY": 60, "MIDCPNIFTY": 120}


def test_sample_ids_are_obviously_artificial_and_stable_across_days(bundled, tmp_path):
    assert all(i.security_id >= 70_000_000 for i in bundled if i.exchange_segment != "IDX_I")
    later = read_master(str(sample.write_sample_master(tmp_path / "later.csv", date(2026, 12, 2))))
    before = {i.trading_symbol: i.security_id for i in bundled}
    after = {i.trading_symbol: i.security_id for i in later}
    common = set(before) & set(after)
    assert "NIFTY-Dec2026-FUT" in common and "CRUDEOIL-18Dec2026-FUT" in common
    assert all(before[s] == after[s] for s in common)


def test_reference_prices_are_believable():
    assert sample.reference_price("NIFTY") == 26000 and sample.reference_price("banknifty") == 59000
    assert sample.reference_price("INDIA VIX") == 12 and sample.reference_price("CRUDEOIL") == 5200
    assert 100_000 < sample.reference_price("GOLD") < 150_000
    assert sample.reference_price("NIFTY-Dec2026-FUT") == 26000
    assert sample.reference_price("RELIANCE-Dec2026-FUT") == sample.reference_price("RELIANCE")
    itm = sample.reference_price("NIFTY-Dec2026-25000-CE")
    atm = sample.reference_price("NIFTY-Dec2026-26000-CE")
    otm = sample.reference_price("NIFTY-Dec2026-27000-CE")
    assert itm > 1000 > atm > otm > 0
    assert sample.reference_price("NIFTY-01Dec2026-25000-PE") == pytest.approx(otm, rel=0.01)
    for name in [*sample.STOCKS, *(c.symbol for c in sample.COMMODITIES)]:
        assert sample.reference_price(name) > 0
    with pytest.raises(KeyError):
        sample.reference_price("NOSUCHSTOCK")
    assert sample.reference_price("NOSUCHSTOCK", default=100.0) == 100.0


def test_the_bundled_sample_is_used_while_its_futures_are_live(tmp_path):
    assert sample.current_sample(tmp_path, BUNDLED_DAY) == SAMPLE_INSTRUMENTS_CSV
    assert sample.current_sample(tmp_path, date(2026, 11, 24)) == SAMPLE_INSTRUMENTS_CSV
    assert not list(tmp_path.iterdir())


def test_a_stale_sample_is_regenerated_for_today_logged_and_reused(tmp_path, caplog):
    day = date(2027, 3, 10)
    with caplog.at_level(logging.INFO, logger="dhan_trading.instruments.sample"):
        fresh = sample.current_sample(tmp_path, day)
    assert fresh == tmp_path / "sample-scrip-master-2027-03-10.csv" and fresh.is_file()
    assert "generated a fresh sample" in caplog.text
    stamp = fresh.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dhan_trading.instruments.sample"):
        assert sample.current_sample(tmp_path, day) == fresh
    assert fresh.stat().st_mtime_ns == stamp and "generated" not in caplog.text


def test_load_master_renews_the_sample_only_when_it_is_the_source(settings_env, tmp_path):
    settings = settings_env(DHAN_FEED_URL="ws://127.0.0.1:9")
    assert settings.instruments_csv == str(SAMPLE_INSTRUMENTS_CSV)
    day = date(2027, 3, 10)
    found = load_master(settings, today=day)
    futures = [i for i in found if i.instrument.startswith("FUT")]
    assert futures and min(i.expiry.date() for i in futures) >= day
    assert (settings.data_dir / "sample-scrip-master-2027-03-10.csv").is_file()

    copy = tmp_path / "my-master.csv"
    copy.write_bytes(SAMPLE_INSTRUMENTS_CSV.read_bytes())
    mine = settings_env(DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_INSTRUMENTS_CSV=str(copy))
    found = load_master(mine, today=day)
    assert min(i.expiry.date() for i in found if i.instrument.startswith("FUT")) == date(2026, 11, 24)
