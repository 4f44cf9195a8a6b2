"""Calendar facts: 2026 holidays, the US DST switch days, weekends, MCX evenings, gap years."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from dhan_trading.config import ConfigError
from dhan_trading.scheduler.calendar import (IST, CalendarGapWarning, MarketCalendar, mcx_close,
                                             us_dst_end, us_dst_start, us_observes_dst)

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit

NSE_HOLIDAYS_2026 = ["01-15", "01-26", "03-03", "03-26", "03-31", "04-03", "04-14", "05-01",
                     "05-28", "06-26", "09-14", "10-02", "10-20", "11-10", "11-24", "12-25"]
MCX_FULL_CLOSURES_2026 = {"01-26", "04-03", "10-02", "12-25"}


@pytest.fixture
def cal(settings_env):
    return MarketCalendar(settings_env())


def no_base(year: int):
    """An NSE base that covers no year: the tests below never depend on the installed
    exchange_calendars' data, which grows a year with each release."""
    return None


def weekday_base(year: int, *holidays: date) -> frozenset[date]:
    """A base that covers `year` with every weekday trading except `holidays`."""
    days, day = set(), date(year, 1, 1)
    while day.year == year:
        if day.weekday() < 5 and day not in holidays:
            days.add(day)
        day += timedelta(days=1)
    return frozenset(days)


def at(d: str, hm: str) -> datetime:
    return datetime.combine(date.fromisoformat(d), time.fromisoformat(hm), IST)


@pytest.mark.parametrize("mmdd", NSE_HOLIDAYS_2026)
def test_nse_2026_holidays_have_no_nse_session(cal, mmdd):
    day = date.fromisoformat(f"2026-{mmdd}")
    assert cal.exchange_sessions(day, "NSE") == []
    mcx = cal.exchange_sessions(day, "MCX")
    if mmdd in MCX_FULL_CLOSURES_2026:
        assert mcx == []
    else:  # MCX keeps its evening session on the other NSE holidays
        assert [(s.kind, s.open.time()) for s in mcx] == [("evening", time(17, 0))]
        assert mcx[0].close.time() == mcx_close(day)


def test_regular_day_sessions(cal):
    nse, mcx = cal.sessions(date(2026, 3, 9))
    assert (nse.exchange, nse.pre_open, nse.open, nse.close, nse.kind) == (
        "NSE", at("2026-03-09", "09:00"), at("2026-03-09", "09:15"), at("2026-03-09", "15:30"), "regular")
    assert nse.open.utcoffset() == timedelta(hours=5, minutes=30)
    assert (mcx.exchange, mcx.open, mcx.pre_open) == ("MCX", at("2026-03-09", "09:00"), None)


def test_weekends_are_closed(cal):
    assert cal.sessions(date(2026, 11, 21)) == [] and cal.sessions(date(2026, 11, 22)) == []


@pytest.mark.parametrize("day,close", [
    ("2026-03-06", "23:55"),  # Friday before the US switch on Sunday 2026-03-08
    ("2026-03-09", "23:30"),  # first Indian trading day under US DST
    ("2026-10-30", "23:30"),  # last Friday under US DST
    ("2026-11-02", "23:55"),  # after the switch back on 2026-11-01
    ("2025-03-10", "23:30"), ("2025-11-03", "23:55"),
])
def test_mcx_close_follows_us_dst(cal, day, close):
    (mcx,) = cal.exchange_sessions(date.fromisoformat(day), "MCX")
    assert mcx.close == at(day, close)


def test_us_dst_rule_matches_the_tz_database():
    new_york = ZoneInfo("America/New_York")
    for year in range(2007, 2040):
        assert us_dst_start(year).weekday() == 6 and us_dst_end(year).weekday() == 6
        day = date(year, 1, 1)
        while day.year == year:
            noon = datetime.combine(day, time(12), new_york)
            assert us_observes_dst(day) == bool(noon.dst()), day
            day += timedelta(days=1)


def test_the_bundled_table_alone_gives_2026(settings_env):
    """2026 comes from the bundled table (checked against the circulars), not from the library."""
    cal = MarketCalendar(settings_env(), nse_base=no_base)
    day, closed = date(2026, 1, 1), []
    while day.year == 2026:
        if day.weekday() < 5 and not cal.exchange_sessions(day, "NSE"):
            closed.append(day.strftime("%m-%d"))
        day += timedelta(days=1)
    assert closed == NSE_HOLIDAYS_2026
    assert cal.covers(date(2026, 6, 1))


def test_2026_special_sessions_from_the_circulars(cal):
    # Sunday 2026-02-01, Union Budget: NSE at standard timings (NSE circular of 2026-01-16), MCX
    # morning session only (MCX circular of 2026-01-16)
    nse, mcx = cal.sessions(date(2026, 2, 1))
    assert (nse.kind, nse.pre_open, nse.open, nse.close) == (
        "special", at("2026-02-01", "09:00"), at("2026-02-01", "09:15"), at("2026-02-01", "15:30"))
    assert (mcx.exchange, mcx.open, mcx.close) == ("MCX", at("2026-02-01", "09:00"), at("2026-02-01", "17:00"))
    # New Year Day: NSE trades, MCX morning open and evening closed (MCX 2026 holiday list)
    nse, mcx = cal.sessions(date(2026, 1, 1))
    assert nse.kind == "regular" and (mcx.open, mcx.close) == (at("2026-01-01", "09:00"), at("2026-01-01", "17:00"))
    # 2026-01-15, Maharashtra municipal elections (NSE/CMTR/72260): NSE shut, MCX evening only
    assert cal.exchange_sessions(date(2026, 1, 15), "NSE") == []
    (evening,) = cal.exchange_sessions(date(2026, 1, 15), "MCX")
    assert (evening.kind, evening.open, evening.close) == ("evening", at("2026-01-15", "17:00"), at("2026-01-15", "23:55"))
    assert cal.next_open(at("2026-01-30", "16:00"), "NSE").open == at("2026-02-01", "09:15")


def test_one_added_user_holiday_never_switches_a_years_holidays_off(settings_env, tmp_path):
    f = tmp_path / "hol.csv"
    f.write_text("2026-03-09,NSE,closed\n2025-03-10,NSE,closed\n")
    holi_2025 = date(2025, 3, 14)
    cal = MarketCalendar(settings_env(DHAN_HOLIDAYS_FILE=f),
                         nse_base=lambda y: weekday_base(2025, holi_2025) if y == 2025 else None)
    # 2026 (the bundled table's year): the added date is closed, Republic Day stays closed
    assert cal.exchange_sessions(date(2026, 3, 9), "NSE") == []
    assert cal.exchange_sessions(date(2026, 1, 26), "NSE") == []
    assert cal.exchange_sessions(date(2026, 1, 26), "MCX") == []
    assert [s.kind for s in cal.exchange_sessions(date(2026, 3, 9), "MCX")] == ["evening"]
    assert [s.kind for s in cal.exchange_sessions(date(2026, 3, 10), "NSE")] == ["regular"]
    # 2025 (a year the library covers): the added date is closed, the library's holiday too
    assert cal.exchange_sessions(date(2025, 3, 10), "NSE") == []
    assert cal.exchange_sessions(holi_2025, "NSE") == []
    assert [s.kind for s in cal.exchange_sessions(date(2025, 3, 11), "NSE")] == ["regular"]


def test_uncovered_year_warns_and_says_how_to_fix(settings_env):
    cal = MarketCalendar(settings_env(), nse_base=no_base)
    day = date(2027, 1, 4)
    assert not cal.covers(day)
    with pytest.warns(CalendarGapWarning, match="DHAN_HOLIDAYS_FILE"):
        sessions = cal.sessions(day)
    assert [s.exchange for s in sessions] == ["NSE", "MCX"]  # assumed open, but never silently
    assert cal.covers(date(2026, 12, 31))


def test_is_open_and_next_open(cal):
    lead = timedelta(minutes=15)
    assert not cal.is_open(at("2026-11-20", "08:44"), "NSE", lead=lead)
    assert cal.is_open(at("2026-11-20", "08:45"), "NSE", lead=lead)
    assert cal.is_open(at("2026-11-20", "15:29"), "NSE")
    assert not cal.is_open(at("2026-11-20", "15:30"), "NSE")
    assert cal.is_open(at("2026-11-20", "23:54"), "MCX")
    assert not cal.is_open(at("2026-11-21", "10:00"), "NSE")
    # Saturday -> Monday; on the 2026-11-24 holiday the next NSE open is the 25th
    assert cal.next_open(at("2026-11-21", "10:00"), "NSE").open == at("2026-11-23", "09:15")
    assert cal.next_open(at("2026-11-23", "16:00"), "NSE").open == at("2026-11-25", "09:15")
    assert cal.next_open(at("2026-11-23", "16:00"), "MCX").open == at("2026-11-24", "17:00")
    assert cal.is_open(datetime(2026, 11, 20, 4, 0, tzinfo=ZoneInfo("UTC")), "NSE")  # 09:30 IST
    with pytest.raises(ValueError):
        cal.is_open(datetime(2026, 11, 20, 10, 0), "NSE")


def test_user_file_adds_a_year_special_and_muhurat_sessions(settings_env, tmp_path):
    f = tmp_path / "hol.csv"
    f.write_text("date,exchange,kind,open,close\n# 2027 list\n"
                 "2027-01-26,NSE,closed\n2027-01-26,MCX,closed\n"
                 "2026-11-10,NSE,muhurat,18:00,19:00\n2026-11-10,MCX,muhurat,18:00,19:15\n"
                 "2026-11-21,NSE,special,09:15,15:30\n"
                 "2026-11-24,MCX,evening,17:30,23:55\n")
    cal = MarketCalendar(settings_env(DHAN_HOLIDAYS_FILE=f), nse_base=no_base)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalendarGapWarning)  # 2027 is now covered: no warning
        assert cal.covers(date(2027, 3, 1))
        assert cal.sessions(date(2027, 1, 26)) == []
        assert [s.exchange for s in cal.sessions(date(2027, 1, 27))] == ["NSE", "MCX"]
    (muhurat,) = cal.exchange_sessions(date(2026, 11, 10), "NSE")
    assert (muhurat.kind, muhurat.pre_open, muhurat.close) == (
        "muhurat", at("2026-11-10", "17:45"), at("2026-11-10", "19:00"))
    assert cal.exchange_sessions(date(2026, 11, 21), "NSE")[0].kind == "special"  # a Saturday
    assert cal.exchange_sessions(date(2026, 11, 24), "MCX")[0].open == at("2026-11-24", "17:30")


def test_a_muhurat_row_alone_does_not_cover_a_year(settings_env, tmp_path):
    f = tmp_path / "hol.csv"
    f.write_text("2027-10-29,NSE,muhurat,18:00,19:00\n")
    assert not MarketCalendar(settings_env(DHAN_HOLIDAYS_FILE=f), nse_base=no_base).covers(date(2027, 10, 29))


@pytest.mark.parametrize("row,msg", [
    ("2027-13-01,NSE,closed", "not a date"),
    ("2027-01-26,BSE,closed", "NSE or MCX"),
    ("2027-01-26,NSE,holiday", "must be one of"),
    ("2027-01-26,NSE,muhurat", "open and close"),
    ("2027-01-26,NSE,closed,10:00", "fields"),
    ("2027-01-26,NSE,special,10:00,", "open and close"),
    ("2027-01-26,NSE,evening", "only MCX"),
    ("2027-01-26,NSE,special,15:00,10:00", "not before"),
    ("2027-01-26,MCX,special,9am,10:00", "HH:MM"),
])
def test_bad_rows_name_the_line_and_the_fix(settings_env, tmp_path, row, msg):
    f = tmp_path / "hol.csv"
    f.write_text("# header comment\n" + row + "\n")
    with pytest.raises(ConfigError, match=f"hol.csv:2: .*{msg}"):
        MarketCalendar(settings_env(DHAN_HOLIDAYS_FILE=f))


def test_missing_user_file_is_a_clear_error(settings_env, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        MarketCalendar(settings_env(DHAN_HOLIDAYS_FILE=tmp_path / "nope.csv"))


# ---- the IST date, whatever the machine's time zone ------------------------------------------
def _tz_on_another_date() -> str:
    """A POSIX TZ (no tz database needed) whose date differs from India's right now: UTC-12 or
    UTC+14, one of which always does. In POSIX notation 'XXX+12' is 12 hours behind UTC."""
    ist = datetime.now(IST).date()
    for posix, hours in (("XXX+12", -12), ("XXX-14", 14)):
        if datetime.now(timezone(timedelta(hours=hours))).date() != ist:
            return posix
    raise AssertionError("no time zone on another date")  # cannot happen: they are 26 h apart


def _run_in_tz(tz: str, args: list[str], tmp_path) -> str:
    env = {**os.environ, "TZ": tz, "PYTHONPATH": str(REPO), "DHAN_DATA_DIR": str(tmp_path / "var")}
    env.pop("DHAN_HOLIDAYS_FILE", None)
    return subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=True).stdout


@pytest.mark.integration
def test_plan_today_and_capture_files_use_the_ist_date(tmp_path):
    tz = _tz_on_another_date()
    ist = datetime.now(IST).date()
    plan = json.loads(_run_in_tz(tz, ["-m", "dhan_trading", "scheduler", "--plan", "today", "--json"], tmp_path))
    code = ("import sys, time; from pathlib import Path; from dhan_trading.capture import CaptureWriter; "
            "w = CaptureWriter(Path(sys.argv[1])); w.write([(time.time_ns(), b'x')]); w.close(); "
            "print(time.strftime('%Y-%m-%d'), *sorted(p.name for p in Path(sys.argv[1]).iterdir()))")
    local, *files = _run_in_tz(tz, ["-c", code, str(tmp_path / "captures")], tmp_path).split()
    if datetime.now(IST).date() != ist:
        pytest.skip("India's date changed while the test ran")  # one minute a day; run it again
    assert local != ist.isoformat()  # the child's local date really was another day
    assert plan["date"] == ist.isoformat()
    assert files == [f"{ist.isoformat()}.dcap"]
