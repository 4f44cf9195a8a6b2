"""DHAN_WATCHLIST: the trader's own list replaces the rules; every bad line is named, none dropped."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from dhan_trading import exitcodes
from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV, ConfigError
from dhan_trading.instruments.master import read_master
from dhan_trading.instruments.universe import feed_universe
from dhan_trading.instruments.watchlist import MAX_INSTRUMENTS, parse_watchlist, read_watchlist
from dhan_trading.market_feed.plan import plan_connections

DAY = date(2026, 11, 21)
REPO = Path(__file__).resolve().parents[2]
HEADER = "exchange_segment,security_id,mode\n"


@pytest.fixture(scope="module")
def master():
    return read_master(str(SAMPLE_INSTRUMENTS_CSV))


@pytest.mark.unit
def test_a_good_watchlist_replaces_the_rules(settings_env, tmp_path, master):
    fut = next(i for i in master if i.trading_symbol == "NIFTY-Dec2026-FUT")
    path = tmp_path / "mine.csv"
    path.write_text("\ufeff" + HEADER + "# my list\nIDX_I,13,ticker\n\n"
                    f"NSE_FNO,{fut.security_id},full\nnse_eq, 4242 ,QUOTE\n")
    settings = settings_env(DHAN_WATCHLIST=str(path))
    assert settings.watchlist == path
    u = feed_universe(settings, master, today=DAY, mcx=True)
    assert [(s.exchange_segment, s.security_id, s.mode, s.category, s.symbol) for s in u.subscriptions] == [
        ("IDX_I", 13, "ticker", "watchlist", "NIFTY"), ("NSE_FNO", fut.security_id, "full", "watchlist",
                                                         "NIFTY-Dec2026-FUT"),
        ("NSE_EQ", 4242, "quote", "watchlist", "")]
    assert u.counts() == {"watchlist": 3}
    text = " | ".join(u.notes)
    assert "3 instruments replace the universe rules" in text and "1 watchlist instrument(s) are not in" in text
    assert "--mcx is ignored" in text


@pytest.mark.unit
def test_every_bad_line_is_named_in_one_error():
    text = (HEADER +
            "NSE_FNO,1001,full\n"          # 2: fine
            "NSE_FOO,1002,full\n"          # 3: unknown segment
            "NSE_FNO,12a,full\n"           # 4: non-numeric id
            "NSE_FNO,1004,depth\n"         # 5: unknown mode
            "NSE_FNO,1001,quote\n"         # 6: duplicate of line 2 (even with another mode)
            "NSE_FNO,0,full\n"             # 7: id out of range
            "NSE_FNO,4294967296,full\n"    # 8: beyond u32
            "NSE_FNO,1008\n"               # 9: two fields
            "BAD,x,y\n")                   # 10: three things wrong at once
    with pytest.raises(ConfigError) as err:
        parse_watchlist(text)
    message = str(err.value)
    assert message.startswith("DHAN_WATCHLIST: the feed will not start until these 8 problem(s)")
    for piece in ("line 3: unknown segment 'NSE_FOO'", "line 4: security_id '12a'", "line 5: unknown mode 'depth'",
                  "line 6: NSE_FNO:1001 is a duplicate of line 2", "line 7: security_id '0'",
                  "line 8: security_id '4294967296'", "line 9: 2 fields",
                  "line 10: unknown segment 'BAD'", "security_id 'x' is not a whole number from 1 to 4294967295",
                  "unknown mode 'y' (use ticker, quote, full)"):
        assert piece in message, piece
    assert "line 2" not in message.replace("duplicate of line 2", "")


@pytest.mark.unit
def test_more_than_25000_instruments_are_refused_naming_the_lines_beyond():
    assert MAX_INSTRUMENTS == 25_000
    rows = "".join(f"NSE_FNO,{1_000_000 + i},full\n" for i in range(25_003))
    with pytest.raises(ConfigError, match=r"lines 25002 to 25004 \(3 instrument\(s\)\) go beyond Dhan's limit "
                                          r"of 25,000 instruments \(5 connections x 5,000\)"):
        parse_watchlist(HEADER + rows)
    exactly = parse_watchlist(HEADER + rows[: rows.index("NSE_FNO,1025000")])
    assert len(exactly) == 25_000
    plans = plan_connections([(seg, sid, mode) for _, seg, sid, mode in exactly])
    assert [len(p.instruments) for p in plans] == [5000] * 5
    assert all(len(p.messages) == 50 for p in plans)  # at most 100 instruments a subscribe message


@pytest.mark.unit
@pytest.mark.parametrize("text, piece", [
    ("", "the file is empty"),
    (HEADER, "no instruments below the header"),
    ("segment,id,mode\nNSE_FNO,1,full\n", "line 1: header 'segment,id,mode'"),
])
def test_empty_or_headless_files_are_refused(text, piece):
    with pytest.raises(ConfigError, match=piece):
        parse_watchlist(text)


@pytest.mark.unit
def test_an_unreadable_watchlist_names_the_variable(tmp_path, master):
    with pytest.raises(ConfigError, match=r"DHAN_WATCHLIST=.*none.csv: cannot read the watchlist"):
        read_watchlist(tmp_path / "none.csv", master, DAY)


def _display(tmp_path, watchlist: Path, *args):
    env = {"PATH": os.environ.get("PATH", ""), "DHAN_DATA_DIR": str(tmp_path / "var"),
           "DHAN_FEED_URL": "ws://127.0.0.1:9", "DHAN_WATCHLIST": str(watchlist)}
    return subprocess.run([sys.executable, str(REPO / "display_fno_instruments.py"), "--date", "2026-11-21", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_display_shows_what_the_watchlist_gives(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text(HEADER + "IDX_I,13,ticker\nNSE_FNO,1000001,full\nNSE_FNO,1000002,quote\n")
    done = _display(tmp_path, path, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["count"] == 3 and data["counts"] == {"watchlist": 3} and "nifty50" not in data
    assert [i["security_id"] for i in data["instruments"]] == [13, 1000001, 1000002]
    table = _display(tmp_path, path)
    assert table.returncode == 0, table.stderr
    assert f"watchlist {path}" in table.stdout and "per segment and mode" in table.stdout
    path.write_text(HEADER + "IDX_I,13,ticker\nNSE_FNO,x,full\n")
    bad = _display(tmp_path, path, "--json")
    assert bad.returncode == exitcodes.FATAL and not bad.stdout
    assert "DHAN_WATCHLIST" in bad.stderr and "line 3: security_id 'x'" in bad.stderr


@pytest.mark.integration
def test_the_feed_refuses_to_start_on_a_bad_watchlist(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text(HEADER + "NSE_FNO,1,full\nNSE_FNO,1,full\n")
    env = {"PATH": os.environ.get("PATH", ""), "DHAN_DATA_DIR": str(tmp_path / "var"),
           "DHAN_FEED_URL": "ws://127.0.0.1:9", "DHAN_CLIENT_ID": "1", "DHAN_ACCESS_TOKEN": "t",
           "DHAN_WATCHLIST": str(path), "REDIS_URL": "redis://127.0.0.1:9/0"}
    done = subprocess.run([sys.executable, str(REPO / "launch_fno_feed.py"), "--force"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == exitcodes.FATAL, done.stdout + done.stderr
    assert "DHAN_WATCHLIST" in done.stdout + done.stderr and "line 3: NSE_FNO:1 is a duplicate of line 2" in \
        done.stdout + done.stderr
