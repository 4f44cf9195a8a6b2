"""The Nifty 50 in the universe: 50 NSE_EQ quotes by symbol from the master, weights, staleness."""
from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest

from dhan_trading.config import NIFTY50_CSV, SAMPLE_INSTRUMENTS_CSV, ConfigError
from dhan_trading.instruments import sample
from dhan_trading.instruments.master import read_master
from dhan_trading.instruments.nifty50 import STALE_AFTER, parse_constituents, read_constituents
from dhan_trading.instruments.universe import UniverseRules, feed_universe, select_universe

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 21)
HEAD = "# as_of: {day}\n# source: a test\nsymbol,company,weight\n"


@pytest.fixture(scope="module")
def master():
    return read_master(str(SAMPLE_INSTRUMENTS_CSV))


def small(day: date, rows: str = "HDFCBANK,HDFC Bank,60\nRELIANCE,,40\n"):
    return parse_constituents(HEAD.format(day=day) + rows)


def test_the_bundled_file_lists_50_constituents_with_weights_date_and_source():
    bundled = read_constituents(NIFTY50_CSV)
    assert len(bundled.symbols) == 50 and bundled.as_of == date(2025, 11, 28)
    assert sum(bundled.weights.values()) == pytest.approx(100, abs=0.01)
    assert bundled.symbols[0] == "HDFCBANK" and bundled.weights["HDFCBANK"] > 10
    assert "NSE" in bundled.source and "APPROXIMATE" in bundled.metadata["weights"]
    assert set(bundled.symbols) <= set(sample.STOCKS)  # the sample generator can write each one


def test_the_constituents_are_subscribed_as_nse_eq_quotes_with_ids_from_the_master(master):
    u = select_universe(master, today=DAY)
    ids = {i.trading_symbol: i.security_id for i in master if i.exchange_segment == "NSE_EQ"}
    stocks = [s for s in u.subscriptions if s.category == "nifty50"]
    assert [s.symbol for s in stocks] == list(read_constituents(NIFTY50_CSV).symbols)
    assert all(s.exchange_segment == "NSE_EQ" and s.mode == "quote" and s.security_id == ids[s.symbol]
               for s in stocks)
    assert ("IDX_I", 13, "ticker") in {(s.exchange_segment, s.security_id, s.mode) for s in u.subscriptions}
    without = select_universe(master, today=DAY, rules=UniverseRules(nifty50=False))
    assert "nifty50" not in without.counts() and not without.warnings


def test_the_nifty_index_stays_when_the_spot_rules_leave_it_out(master):
    u = select_universe(master, today=DAY, rules=UniverseRules(index_spots=("BANKNIFTY",)))
    assert [(s.symbol, s.mode) for s in u.subscriptions if s.category == "index"] == \
           [("BANKNIFTY", "ticker"), ("NIFTY", "ticker")]


def test_a_constituent_missing_from_the_master_is_named_in_a_warning_not_dropped_silently(master):
    listed = small(DAY, "HDFCBANK,,50\nNEWCO,New Co,30\nRELIANCE,,20\n")
    u = select_universe(master, today=DAY, constituents=listed)
    assert [s.symbol for s in u.subscriptions if s.category == "nifty50"] == ["HDFCBANK", "RELIANCE"]
    assert u.warnings == ["Nifty 50: 1 constituent(s) not in the master's NSE_EQ rows, so breadth will "
                          "lack them: NEWCO"]


def test_a_list_older_than_a_quarter_is_warned_about(master):
    assert STALE_AFTER == timedelta(days=90)
    fresh = select_universe(master, today=DAY, constituents=small(DAY - timedelta(days=90)))
    assert fresh.warnings == []
    stale = select_universe(master, today=DAY, constituents=small(DAY - timedelta(days=91)))
    assert len(stale.warnings) == 1 and "91 days old" in stale.warnings[0]
    assert "DHAN_NIFTY50_CSV" in stale.warnings[0]
    assert any("2025-11-28" in w for w in select_universe(master, today=DAY).warnings)  # the bundled file


def test_every_problem_of_a_bad_file_is_named_in_one_error():
    text = ("symbol,company,weight\n"            # no as_of, no source above it
            "HDFCBANK,,50\n"
            "HDFCBANK,,10\n"                     # line 3: duplicate
            "RELIANCE,,lots\n"                   # line 4: not a number
            "ITC,,-1\n"                          # line 5: not above 0
            "TCS,extra,1,2\n")                   # line 6: four fields
    with pytest.raises(ConfigError) as err:
        parse_constituents(text)
    message = str(err.value)
    for piece in ("DHAN_NIFTY50_CSV", "as_of", "source", "line 3: HDFCBANK is a duplicate of line 2",
                  "line 4: RELIANCE", "line 5: ITC", "line 6: 4 fields"):
        assert piece in message, piece
    with pytest.raises(ConfigError, match="sum to 90.00, not 100"):
        small(DAY, "HDFCBANK,,50\nRELIANCE,,40\n")
    with pytest.raises(ConfigError, match="line 3: header 'sym,w'"):
        parse_constituents("# as_of: 2026-01-01\n# source: x\nsym,w\nA,1\n")


def test_the_user_points_at_a_newer_file(settings_env, tmp_path, master):
    mine = tmp_path / "nifty50.csv"
    mine.write_text(HEAD.format(day=DAY - timedelta(days=10)) + "RELIANCE,,55.5\nHDFCBANK,,44.5\n")
    settings = settings_env(DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_NIFTY50_CSV=str(mine))
    u = feed_universe(settings, master, today=DAY)
    assert [s.symbol for s in u.subscriptions if s.category == "nifty50"] == ["RELIANCE", "HDFCBANK"]
    assert u.warnings == []
    missing = settings_env(DHAN_NIFTY50_CSV=str(tmp_path / "none.csv"))
    with pytest.raises(ConfigError, match="DHAN_NIFTY50_CSV: cannot read .*none.csv"):
        feed_universe(missing, master, today=DAY)


def test_the_launcher_logs_the_warnings(settings_env, master, monkeypatch, caplog):
    from dhan_trading.market_feed import launcher
    monkeypatch.setattr(launcher, "_instruments", lambda settings: master)
    monkeypatch.setattr(launcher, "_index_prices", lambda settings, instruments: {})
    args = launcher.parse_args(["--no-capture"])
    with caplog.at_level(logging.WARNING, logger="fno_feed"):
        feed = launcher.build_feed(settings_env(DHAN_FEED_URL="ws://127.0.0.1:9"), args)
    assert feed.instruments == 179
    assert "Nifty 50 constituents file" in caplog.text and "days old" in caplog.text


@pytest.mark.parametrize("text, piece", [
    ("# as_of: 2026-01-01\n# source: x\n\n", "no header line 'symbol,company,weight'"),
    ("# as_of: 2026-01-01\n# source: x\nsymbol,company,weight\n", "no constituents below the header"),
    ("# as_of: 2026-01-01\n# source: x\nsymbol,company,weight\n,Nameless,100\n", "line 4: no symbol"),
])
def test_files_without_constituents_are_refused(text, piece):
    with pytest.raises(ConfigError, match=piece):
        parse_constituents(text)
