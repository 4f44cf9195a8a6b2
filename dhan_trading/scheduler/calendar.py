"""NSE and MCX trading sessions by date, with holidays, special sessions and the MCX DST close.

Sources, in order of precedence for one (date, exchange):
1. the user's override file (`DHAN_HOLIDAYS_FILE`): its rows add or override single dates,
2. the bundled table `dhan_trading/data/holidays.csv` (checked against the exchanges' circulars),
3. the base rules: NSE's year list from the first of the bundled table, exchange_calendars'
   XBOM (BSE, same trading holidays) or the user file that lists the year's NSE holidays;
   MCX from the NSE holidays (see `_mcx_base`).

A user file never replaces a year another source covers: one added `NSE,closed` row in 2026 closes
that day and leaves every other 2026 holiday closed. Only for a year nothing else covers does the
user file's list become the year's list.

A year that none of them covers is *not* silently treated as open: every lookup in it raises a
`CalendarGapWarning` and logs how to add the holidays, and `covers()` says False. The sessions
returned for it assume every weekday trades, because a recorder that runs on an unknown holiday
wastes a little power while one that sleeps through a trading day loses the day's data.
"""
from __future__ import annotations

import csv
import functools
import logging
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from ..config import ConfigError, Settings, get_settings

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
EXCHANGES = ("NSE", "MCX")
BUNDLED_HOLIDAYS = Path(__file__).resolve().parent.parent / "data" / "holidays.csv"
KINDS = ("closed", "special", "muhurat", "evening")

NSE_PRE_OPEN = time(9, 0)
NSE_OPEN = time(9, 15)
NSE_CLOSE = time(15, 30)
# A special or muhurat NSE session has the usual 15-minute pre-open block before it.
NSE_PRE_OPEN_LEAD = timedelta(minutes=15)
MCX_OPEN = time(9, 0)
MCX_EVENING_OPEN = time(17, 0)
MCX_CLOSE_US_DST = time(23, 30)
MCX_CLOSE_US_STANDARD = time(23, 55)

HOW_TO_ADD = ("add that year's trading holidays to a CSV file (date,exchange,kind[,open,close], "
              "e.g. '2027-01-26,NSE,closed'), point DHAN_HOLIDAYS_FILE at it, and restart; "
              "see docs/SCHEDULER.md")


class CalendarGapWarning(UserWarning):
    """No holiday table covers the date: the sessions given for it are an assumption."""


def ist_today() -> date:
    """Today's date in India: the trading day, whatever the machine's time zone."""
    return datetime.now(IST).date()


def gap_message(year: int) -> str:
    return (f"no holiday table covers {year}: NSE/MCX sessions for it ASSUME every weekday is a "
            f"trading day. To fix, {HOW_TO_ADD}")


@dataclass(frozen=True)
class Session:
    """One trading session of one exchange on one day; times are tz-aware IST."""

    exchange: str
    open: datetime
    close: datetime
    pre_open: datetime | None = None
    kind: str = "regular"

    @property
    def start(self) -> datetime:
        """When orders can first be entered: the pre-open if there is one, else the open."""
        return self.pre_open or self.open

    def to_json(self) -> dict:
        out = {"exchange": self.exchange, "open": self.open.isoformat(),
               "close": self.close.isoformat(), "kind": self.kind}
        if self.pre_open is not None:
            out["pre_open"] = self.pre_open.isoformat()
        return out


@dataclass(frozen=True)
class HolidayRow:
    """One row of a holidays CSV: a closure or a session that replaces the base rule that day."""

    day: date
    exchange: str
    kind: str
    open: time | None = None
    close: time | None = None
    source: str = ""


# ---- the US daylight-saving rule (Energy Policy Act of 2005, in force since 2007) ------------
def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def us_dst_start(year: int) -> date:
    """Second Sunday of March."""
    return _nth_sunday(year, 3, 2)


def us_dst_end(year: int) -> date:
    """First Sunday of November."""
    return _nth_sunday(year, 11, 1)


def us_observes_dst(day: date) -> bool:
    """True on the Indian trading days for which the US is on daylight-saving time.

    The US switches at 02:00 local time on a Sunday, i.e. while India is closed, so the whole
    Indian day that follows is on the new footing.
    """
    return us_dst_start(day.year) <= day < us_dst_end(day.year)


def mcx_close(day: date) -> time:
    """MCX's close for non-agri commodities: 23:30 under US DST, 23:55 otherwise (§10.4)."""
    return MCX_CLOSE_US_DST if us_observes_dst(day) else MCX_CLOSE_US_STANDARD


# ---- holiday files -----------------------------------------------------------------------------
def _parse_time(text: str, where: str) -> time | None:
    text = text.strip()
    if not text:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a time; use HH:MM (IST)") from None


def load_holiday_file(path: Path) -> list[HolidayRow]:
    """Parse a holidays CSV; a bad row is a ConfigError that names the file, line and fix.

    Blank lines and lines starting with '#' are ignored; a header line starting with 'date' too.
    """
    if not path.is_file():
        raise ConfigError(f"holidays file {path} does not exist (DHAN_HOLIDAYS_FILE): "
                          "fix the path or unset the variable")
    rows: list[HolidayRow] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, fields in enumerate(csv.reader(fh), start=1):
            fields = [f.strip() for f in fields]
            if not fields or not any(fields) or fields[0].startswith("#") or fields[0].lower() == "date":
                continue
            where = f"{path}:{lineno}"
            if len(fields) not in (3, 5):
                raise ConfigError(f"{where}: expected date,exchange,kind[,open,close], got {len(fields)} fields")
            try:
                day = date.fromisoformat(fields[0])
            except ValueError:
                raise ConfigError(f"{where}: {fields[0]!r} is not a date; use YYYY-MM-DD") from None
            exchange, kind = fields[1].upper(), fields[2].lower()
            if exchange not in EXCHANGES:
                raise ConfigError(f"{where}: exchange {fields[1]!r} must be NSE or MCX")
            if kind not in KINDS:
                raise ConfigError(f"{where}: kind {fields[2]!r} must be one of {', '.join(KINDS)}")
            opens = _parse_time(fields[3], where) if len(fields) == 5 else None
            closes = _parse_time(fields[4], where) if len(fields) == 5 else None
            if kind in ("special", "muhurat") and (opens is None or closes is None):
                raise ConfigError(f"{where}: a {kind} session needs its open and close times (HH:MM)")
            if kind == "closed" and (opens or closes):
                raise ConfigError(f"{where}: a closed day takes no open/close times")
            if kind == "evening" and exchange != "MCX":
                raise ConfigError(f"{where}: only MCX has evening-only sessions")
            if opens and closes and opens >= closes:
                raise ConfigError(f"{where}: open {opens} is not before close {closes}")
            rows.append(HolidayRow(day, exchange, kind, opens, closes, where))
    return rows


@functools.lru_cache(maxsize=1)
def _xbom():
    import exchange_calendars  # pulls pandas: imported only when a date needs it

    return exchange_calendars.get_calendar("XBOM")


@functools.lru_cache(maxsize=64)
def _xbom_sessions(year: int) -> frozenset[date] | None:
    """XBOM's trading days of a year, or None when its table does not cover the whole year."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecation chatter from inside the package
        cal = _xbom()
        if date(year, 1, 1) < cal.first_session.date() or date(year, 12, 31) > cal.last_session.date():
            return None
        return frozenset(ts.date() for ts in cal.sessions_in_range(f"{year}-01-01", f"{year}-12-31"))


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, IST)


class MarketCalendar:
    """Sessions of NSE (F&O and equity share hours) and MCX for any date, holidays applied."""

    def __init__(self, settings: Settings | None = None, *, bundled_file: Path | None = BUNDLED_HOLIDAYS,
                 nse_base: Callable[[int], frozenset[date] | None] | None = None):
        """`nse_base(year)` gives NSE's trading days of a year or None (default: XBOM's)."""
        settings = settings or get_settings()
        self.user_file = settings.holidays_file
        self._nse_base = nse_base or _xbom_sessions
        self._rows: dict[tuple[date, str], list[HolidayRow]] = {}
        # years whose NSE holiday list a file gives (it lists at least one NSE 'closed' day)
        self._bundled_years: set[int] = set()
        self._user_years: set[int] = set()
        # bundled first, then the user's: a user row for a (date, exchange) replaces the bundled ones
        for path, years in ((bundled_file, self._bundled_years), (self.user_file, self._user_years)):
            if path is None or (years is self._bundled_years and not path.is_file()):
                continue
            seen: set[tuple[date, str]] = set()
            for row in load_holiday_file(path):
                key = (row.day, row.exchange)
                if key not in seen:
                    seen.add(key)
                    self._rows[key] = []
                self._rows[key].append(row)
                if row.exchange == "NSE" and row.kind == "closed":
                    years.add(row.day.year)
        self._warned: set[int] = set()

    # ---- coverage --------------------------------------------------------------------------
    def covers(self, day: date) -> bool:
        """True when a holiday table (bundled, XBOM or user file) covers the date's year.

        A file covers a year once it lists at least one NSE 'closed' day in it: every real
        holiday list has one, and a lone muhurat row must not pass for a whole year's list.
        """
        return self._year_source(day.year) is not None

    def _year_source(self, year: int) -> str | frozenset[date] | None:
        """Where NSE's holiday list for `year` comes from: 'file' (the listed rows are the
        holidays), XBOM's trading days, or None (nothing covers the year).

        The bundled table wins over XBOM (it is checked against NSE's circulars); a user file
        gives a year's list only when neither covers the year, so its rows elsewhere are
        single-date additions and overrides, never a replacement of a year.
        """
        if year in self._bundled_years:
            return "file"
        base = self._nse_base(year)
        if base is not None:
            return base
        return "file" if year in self._user_years else None

    def _warn_gap(self, day: date) -> None:
        if day.year in self._warned:
            return
        self._warned.add(day.year)
        message = gap_message(day.year)
        log.warning(message)
        warnings.warn(message, CalendarGapWarning, stacklevel=3)

    # ---- sessions ---------------------------------------------------------------------------
    def sessions(self, day: date) -> list[Session]:
        """Every session of both exchanges on `day`, NSE first."""
        return self.exchange_sessions(day, "NSE") + self.exchange_sessions(day, "MCX")

    def exchange_sessions(self, day: date, exchange: str) -> list[Session]:
        exchange = exchange.upper()
        if exchange not in EXCHANGES:
            raise ValueError(f"unknown exchange {exchange!r}: use NSE or MCX")
        rows = self._rows.get((day, exchange))
        if rows is not None:
            return sorted((s for r in rows if (s := self._from_row(r)) is not None), key=lambda s: s.open)
        if exchange == "NSE":
            return [self._nse_regular(day)] if self._nse_trades(day) else []
        return self._mcx_base(day)

    def _nse_trades(self, day: date) -> bool:
        """Whether NSE has its regular session on `day` by the base rules (no file rows)."""
        if day.weekday() >= 5:
            return False
        source = self._year_source(day.year)
        if source is None:
            self._warn_gap(day)
            return True
        return source == "file" or day in source

    def _nse_holiday(self, day: date) -> bool:
        """A weekday on which NSE has no regular or special session (muhurat does not count)."""
        if day.weekday() >= 5:
            return False
        if (day, "NSE") in self._rows:
            return not any(s.kind in ("regular", "special") for s in self.exchange_sessions(day, "NSE"))
        return not self._nse_trades(day)

    def _mcx_base(self, day: date) -> list[Session]:
        """MCX by rule: weekdays 09:00 to the DST close; on an NSE holiday, the evening only.

        MCX keeps its evening session on NSE holidays unless it closes fully that day; full
        closures (Republic Day, Good Friday, ...) come from the bundled table or the user file.
        """
        if day.weekday() >= 5:
            return []
        close = _at(day, mcx_close(day))
        if self._nse_holiday(day):
            return [Session("MCX", _at(day, MCX_EVENING_OPEN), close, None, "evening")]
        return [Session("MCX", _at(day, MCX_OPEN), close, None, "regular")]

    def _nse_regular(self, day: date) -> Session:
        return Session("NSE", _at(day, NSE_OPEN), _at(day, NSE_CLOSE), _at(day, NSE_PRE_OPEN), "regular")

    def _from_row(self, row: HolidayRow) -> Session | None:
        if row.kind == "closed":
            return None
        day = row.day
        if row.kind == "evening":
            opens = _at(day, row.open or MCX_EVENING_OPEN)
            return Session("MCX", opens, _at(day, row.close or mcx_close(day)), None, "evening")
        opens, closes = _at(day, row.open), _at(day, row.close)
        pre_open = opens - NSE_PRE_OPEN_LEAD if row.exchange == "NSE" else None
        return Session(row.exchange, opens, closes, pre_open, row.kind)

    # ---- questions the services ask ----------------------------------------------------------
    def is_open(self, now: datetime, exchange: str, lead: timedelta = timedelta(0)) -> bool:
        """True from the session's pre-open (or open) minus `lead` until its close."""
        if now.tzinfo is None:
            raise ValueError("is_open needs a timezone-aware datetime")
        now = now.astimezone(IST)
        for day in (now.date(), now.date() + timedelta(days=1)):
            for s in self.exchange_sessions(day, exchange):
                if s.start - lead <= now < s.close:
                    return True
        return False

    def next_open(self, now: datetime, exchange: str, horizon_days: int = 31) -> Session:
        """The first session of `exchange` that opens after `now`."""
        if now.tzinfo is None:
            raise ValueError("next_open needs a timezone-aware datetime")
        now = now.astimezone(IST)
        for offset in range(horizon_days + 1):
            for s in self.exchange_sessions(now.date() + timedelta(days=offset), exchange):
                if s.open > now:
                    return s
        raise LookupError(f"no {exchange} session within {horizon_days} days of {now.isoformat()}")
