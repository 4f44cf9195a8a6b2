"""The bundled sample scrip master: a small, realistic universe for the simulator, demo and tests.

It is written in Dhan's compact format (dhan-protocol.md §6.2) so it goes through exactly the
reader the real file does. Expiries follow NSE's rules as of a given day (index and stock
derivatives expire on Tuesdays since September 2025: NIFTY weekly every Tuesday, everything
monthly on the last Tuesday); exchange holidays are ignored, and MCX expiry days are plausible
rather than exact. Security ids are SAMPLES: deterministic numbers from 70,000,000 up, derived
from the trading symbol, so a contract keeps its id when the file is regenerated on a later day.
Only the index ids (NIFTY 13, BANKNIFTY 25, FINNIFTY 27, MIDCPNIFTY 442, INDIA VIX 21) are
Dhan's real ones.

`python -m dhan_trading.instruments.sample [DATE]` rewrites the bundled file.
"""
from __future__ import annotations

import calendar
import csv
import logging
import math
import re
import sys
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

from ..config import NIFTY50_CSV, SAMPLE_INSTRUMENTS_CSV
from .columns import COMPACT_COLUMNS
from .nifty50 import read_constituents
from ..scheduler.calendar import IST

log = logging.getLogger(__name__)

TUESDAY = 1
_MONTHS = calendar.month_abbr  # 'Jan' ... 'Dec'


@dataclass(frozen=True)
class IndexSpec:
    symbol: str
    security_id: int  # Dhan's real, stable IDX_I id
    name: str
    price: float
    lot: int = 0  # 0: no derivatives in the sample
    strike_step: int = 0  # 0: no options in the sample
    weekly: bool = False


INDICES: tuple[IndexSpec, ...] = (
    IndexSpec("NIFTY", 13, "Nifty 50", 26000.0, lot=65, strike_step=50, weekly=True),
    IndexSpec("BANKNIFTY", 25, "Nifty Bank", 59000.0, lot=30, strike_step=100),
    IndexSpec("FINNIFTY", 27, "Nifty Fin Service", 27500.0, lot=60),
    IndexSpec("MIDCPNIFTY", 442, "NIFTY MID SELECT", 13500.0, lot=120),
    IndexSpec("INDIA VIX", 21, "India VIX", 12.0),
)

# symbol -> (company name, late-2025 price level in rupees); covers every symbol of the bundled
# Nifty 50 file (dhan_trading/data/nifty50.csv), whose NSE_EQ rows the sample lists
STOCKS: dict[str, tuple[str, float]] = {
    "ADANIENT": ("Adani Enterprises", 2400.0), "ADANIPORTS": ("Adani Ports and SEZ", 1480.0),
    "APOLLOHOSP": ("Apollo Hospitals", 7500.0), "ASIANPAINT": ("Asian Paints", 2850.0),
    "AXISBANK": ("Axis Bank", 1250.0), "BAJAJ-AUTO": ("Bajaj Auto", 9000.0),
    "BAJFINANCE": ("Bajaj Finance", 1020.0), "BAJAJFINSV": ("Bajaj Finserv", 2050.0),
    "BEL": ("Bharat Electronics", 410.0), "BHARTIARTL": ("Bharti Airtel", 2100.0),
    "CIPLA": ("Cipla", 1520.0), "COALINDIA": ("Coal India", 380.0),
    "DRREDDY": ("Dr. Reddy's Laboratories", 1250.0), "EICHERMOT": ("Eicher Motors", 7000.0),
    "ETERNAL": ("Eternal", 300.0), "GRASIM": ("Grasim Industries", 2750.0),
    "HCLTECH": ("HCL Technologies", 1600.0), "HDFCBANK": ("HDFC Bank", 990.0),
    "HDFCLIFE": ("HDFC Life Insurance", 760.0), "HINDALCO": ("Hindalco Industries", 800.0),
    "HINDUNILVR": ("Hindustan Unilever", 2450.0), "ICICIBANK": ("ICICI Bank", 1370.0),
    "INDIGO": ("InterGlobe Aviation", 5700.0), "INFY": ("Infosys", 1550.0),
    "ITC": ("ITC", 405.0), "JIOFIN": ("Jio Financial Services", 305.0),
    "JSWSTEEL": ("JSW Steel", 1150.0), "KOTAKBANK": ("Kotak Mahindra Bank", 2100.0),
    "LT": ("Larsen & Toubro", 4000.0), "M&M": ("Mahindra & Mahindra", 3700.0),
    "MARUTI": ("Maruti Suzuki India", 16000.0), "MAXHEALTH": ("Max Healthcare Institute", 1100.0),
    "NESTLEIND": ("Nestle India", 1270.0), "NTPC": ("NTPC", 325.0),
    "ONGC": ("Oil and Natural Gas Corporation", 245.0), "POWERGRID": ("Power Grid Corporation", 270.0),
    "RELIANCE": ("Reliance Industries", 1520.0), "SBILIFE": ("SBI Life Insurance", 2000.0),
    "SBIN": ("State Bank of India", 970.0), "SHRIRAMFIN": ("Shriram Finance", 800.0),
    "SUNPHARMA": ("Sun Pharmaceutical Industries", 1780.0), "TATACONSUM": ("Tata Consumer Products", 1170.0),
    "TMPV": ("Tata Motors Passenger Vehicles", 400.0), "TATASTEEL": ("Tata Steel", 170.0),
    "TCS": ("Tata Consultancy Services", 3150.0), "TECHM": ("Tech Mahindra", 1450.0),
    "TITAN": ("Titan Company", 3850.0), "TRENT": ("Trent", 4300.0),
    "ULTRACEMCO": ("UltraTech Cement", 11800.0), "WIPRO": ("Wipro", 245.0),
    # F&O favourites outside the Nifty 50
    "BSE": ("BSE", 2600.0), "DIXON": ("Dixon Technologies", 15500.0), "VEDL": ("Vedanta", 500.0),
    "BANKBARODA": ("Bank of Baroda", 280.0), "TATAPOWER": ("Tata Power", 390.0),
}

# Stocks whose futures the sample lists: a superset of universe.LIQUID_STOCKS.
FNO_STOCKS: tuple[str, ...] = tuple(s for s in STOCKS if s not in (
    "APOLLOHOSP", "CIPLA", "EICHERMOT", "GRASIM", "HDFCLIFE", "JIOFIN", "MAXHEALTH", "NESTLEIND",
    "SBILIFE", "TATACONSUM"))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _weekday_on_or_before(day: date) -> date:
    """Expiries that fall on a weekend move to the Friday before."""
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _on_day(day_of_month: int, months: tuple[int, ...] = tuple(range(1, 13))) -> Callable[[int, int], date | None]:
    def rule(year: int, month: int) -> date | None:
        return _weekday_on_or_before(date(year, month, day_of_month)) if month in months else None
    return rule


def _last_business_day(months: tuple[int, ...] = tuple(range(1, 13))) -> Callable[[int, int], date | None]:
    def rule(year: int, month: int) -> date | None:
        if month not in months:
            return None
        return _weekday_on_or_before(date(year, month, calendar.monthrange(year, month)[1]))
    return rule


def nse_monthly_expiry(year: int, month: int) -> date:
    """NSE index and stock derivatives: the last Tuesday of the month (holidays ignored)."""
    return _last_weekday(year, month, TUESDAY)


def _expiries(rule: Callable[[int, int], date | None], today: date, count: int) -> list[date]:
    out: list[date] = []
    year, month = today.year, today.month
    while len(out) < count:
        day = rule(year, month)
        if day is not None and day >= today:
            out.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def monthly_expiries(today: date, count: int = 3) -> list[date]:
    """The next `count` NSE monthly expiries on or after `today`."""
    return _expiries(nse_monthly_expiry, today, count)


def weekly_expiries(today: date, count: int = 4) -> list[date]:
    """The next `count` Tuesdays on or after `today` (NIFTY weekly options)."""
    first = today + timedelta(days=(TUESDAY - today.weekday()) % 7)
    return [first + timedelta(weeks=i) for i in range(count)]


@dataclass(frozen=True)
class CommoditySpec:
    symbol: str
    price: float
    tick_paise: int
    lot: int
    expiry: Callable[[int, int], date | None]


# Plausible MCX expiry days (holidays ignored): crude around the 19th, natural gas around the
# 26th, gold on the 5th of even months, silver on the 5th of Mar/May/Jul/Sep/Dec, copper on the
# last business day. Lots are the contract multipliers (Dhan's own file often shows 1.0).
COMMODITIES: tuple[CommoditySpec, ...] = (
    CommoditySpec("CRUDEOIL", 5200.0, 100, 100, _on_day(19)),
    CommoditySpec("CRUDEOILM", 5200.0, 100, 10, _on_day(19)),
    CommoditySpec("GOLD", 125000.0, 100, 100, _on_day(5, (2, 4, 6, 8, 10, 12))),
    CommoditySpec("GOLDM", 125000.0, 100, 10, _on_day(5)),
    CommoditySpec("SILVER", 150000.0, 100, 30, _on_day(5, (3, 5, 7, 9, 12))),
    CommoditySpec("SILVERM", 150000.0, 100, 5, _last_business_day((2, 4, 6, 8, 11))),
    CommoditySpec("NATURALGAS", 400.0, 10, 1250, _on_day(26)),
    CommoditySpec("NATGASMINI", 400.0, 10, 250, _on_day(26)),
    CommoditySpec("COPPER", 1000.0, 5, 2500, _last_business_day()),
)

REFERENCE_PRICES: dict[str, float] = {
    **{i.symbol: i.price for i in INDICES},
    **{s: p for s, (_, p) in STOCKS.items()},
    **{c.symbol: c.price for c in COMMODITIES},
}

_DERIVATIVE_RE = re.compile(
    r"^(?P<u>.+?)-(?:\d{1,2})?[A-Z][a-z]{2}\d{4}-(?:FUT|(?P<k>\d+(?:\.\d+)?)-(?P<t>CE|PE))$")


def reference_price(underlying_or_symbol: str, default: float | None = None) -> float:
    """A believable price for the simulator: an underlying's level, a future's underlying level,
    or an option premium (intrinsic value plus a time value that fades away from the money)."""
    key = underlying_or_symbol.strip().upper()
    if key in REFERENCE_PRICES:
        return REFERENCE_PRICES[key]
    m = _DERIVATIVE_RE.match(underlying_or_symbol.strip())
    if m and m.group("u").upper() in REFERENCE_PRICES:
        spot = REFERENCE_PRICES[m.group("u").upper()]
        if not m.group("k"):
            return spot
        strike = float(m.group("k"))
        intrinsic = max(0.0, spot - strike) if m.group("t") == "CE" else max(0.0, strike - spot)
        time_value = spot * 0.006 * math.exp(-abs(strike - spot) / (spot * 0.02))
        return max(0.05, round((intrinsic + time_value) * 20) / 20)
    if default is not None:
        return default
    raise KeyError(f"no reference price for {underlying_or_symbol!r}")


def _equity_tick_paise(price: float) -> int:
    """NSE's price-banded tick sizes (in paise) for equities and stock futures."""
    for limit, tick in ((250, 1), (1000, 5), (5000, 10), (10000, 50), (20000, 100)):
        if price < limit:
            return tick
    return 500


def _nice_lot(raw: float) -> int:
    for floor, unit in ((1000, 50), (100, 25), (10, 5)):
        if raw >= floor:
            return max(unit, int(round(raw / unit)) * unit)
    return max(1, int(round(raw)))


def stock_lot(price: float) -> int:
    """A plausible stock-futures lot: about Rs 8 lakh of stock, rounded like NSE's lots."""
    return _nice_lot(800_000 / price)


def _strike_text(strike: float) -> str:
    return str(int(strike)) if strike == int(strike) else f"{strike:g}"


class _Ids:
    """Deterministic sample ids from the symbol, so regenerating keeps a contract's id."""

    BASES = {"NSE_EQ": 70_000_000, "NSE_FNO": 80_000_000, "MCX_COMM": 90_000_000}

    def __init__(self) -> None:
        self.used: set[int] = set()

    def __call__(self, segment: str, symbol: str) -> int:
        sid = self.BASES[segment] + zlib.crc32(symbol.encode()) % 10_000_000
        while sid in self.used:
            sid += 1
        self.used.add(sid)
        return sid


def _row(exch, seg, sid, instrument, code, symbol, lot, custom, expiry, strike, opt, tick_paise,
         flag, exch_type, series, name) -> list[str]:
    return [exch, seg, str(sid), instrument, str(code), symbol, f"{float(lot):.1f}", custom,
            expiry, f"{strike:.5f}", opt, f"{float(tick_paise):.4f}", flag, exch_type, series, name]


def sample_rows(today: date) -> Iterator[list[str]]:
    """Every row of the sample master for `today`, in Dhan's compact column order."""
    ids = _Ids()
    for spec in INDICES:
        # Index rows reproduce Dhan's quirk: their tick is written in rupees (0.0500), not paise.
        yield ["NSE", "I", str(spec.security_id), "INDEX", "0", spec.symbol, "1.0", spec.name,
               "0001-01-01", "-0.01000", "XX", "0.0500", "NA", "INDEX", "X", spec.symbol]
    nifty50 = read_constituents(NIFTY50_CSV).symbols  # the one list of constituents
    for symbol in sorted(set(nifty50) | set(FNO_STOCKS)):
        name, price = STOCKS[symbol]
        yield _row("NSE", "E", ids("NSE_EQ", symbol), "EQUITY", "", symbol, 1, name, "", -0.01, "XX",
                   _equity_tick_paise(price), "NA", "ES", "EQ", name.upper())
    months = monthly_expiries(today, 3)
    for spec in INDICES:
        if spec.lot:
            for code, expiry in enumerate(months):
                yield _future("NSE", spec.symbol, expiry, code, spec.lot, 10, "FUTIDX", ids)
    for symbol in FNO_STOCKS:
        price = STOCKS[symbol][1]
        for code, expiry in enumerate(months):
            yield _future("NSE", symbol, expiry, code, stock_lot(price), _equity_tick_paise(price),
                          "FUTSTK", ids)
    for spec in INDICES:
        if spec.strike_step:
            expiries = sorted(set(weekly_expiries(today, 4)) | set(months[:2])) if spec.weekly else months[:2]
            yield from _options(spec, expiries, today, ids)
    for spec in COMMODITIES:
        for code, expiry in enumerate(_expiries(spec.expiry, today, 3)):
            yield _future("MCX", spec.symbol, expiry, code, spec.lot, spec.tick_paise, "FUTCOM", ids)


def _future(exch: str, underlying: str, expiry: date, code: int, lot: int, tick_paise: int,
            instrument: str, ids: _Ids) -> list[str]:
    mon = _MONTHS[expiry.month]
    if exch == "MCX":
        symbol = f"{underlying}-{expiry.day:02d}{mon}{expiry.year}-FUT"
        return _row("MCX", "M", ids("MCX_COMM", symbol), instrument, code, symbol, lot,
                    f"{underlying} {mon.upper()} FUT", f"{expiry.isoformat()} 23:30:00", -0.01, "XX",
                    tick_paise, "M", "FUTCOM", "", underlying)
    symbol = f"{underlying}-{mon}{expiry.year}-FUT"
    # NSE FUTIDX/FUTSTK rows leave SM_SYMBOL_NAME blank, as Dhan's file does.
    return _row("NSE", "D", ids("NSE_FNO", symbol), instrument, code, symbol, lot,
                f"{underlying} {mon.upper()} FUT", f"{expiry.isoformat()} 14:30:00", -0.01, "XX",
                tick_paise, "M", "FUT", "", "")


def _options(spec: IndexSpec, expiries: list[date], today: date, ids: _Ids) -> Iterator[list[str]]:
    atm = round(spec.price / spec.strike_step) * spec.strike_step
    strikes = [atm + i * spec.strike_step for i in range(-20, 21)]
    for code, expiry in enumerate(expiries):
        monthly = expiry == nse_monthly_expiry(expiry.year, expiry.month)
        mon = _MONTHS[expiry.month]
        stamp = f"{mon}{expiry.year}" if monthly else f"{expiry.day:02d}{mon}{expiry.year}"
        label = mon.upper() if monthly else f"{expiry.day:02d} {mon.upper()}"
        for strike in strikes:
            for opt, word in (("CE", "CALL"), ("PE", "PUT")):
                symbol = f"{spec.symbol}-{stamp}-{_strike_text(strike)}-{opt}"
                yield _row("NSE", "D", ids("NSE_FNO", symbol), "OPTIDX", code, symbol, spec.lot,
                           f"{spec.symbol} {label} {_strike_text(strike)} {word}",
                           f"{expiry.isoformat()} 14:30:00", float(strike), opt, 5,
                           "M" if monthly else "W", "OP", "", "")


def write_sample_master(path: str | Path, today: date) -> Path:
    """Write the sample master for `today` to `path` (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COMPACT_COLUMNS)
        writer.writerows(sample_rows(today))
    tmp.replace(path)
    return path


def nearest_future_expiry(path: str | Path) -> date | None:
    """The earliest futures expiry in a compact master (None if it lists no futures)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        days = [row["SEM_EXPIRY_DATE"][:10] for row in csv.DictReader(fh)
                if row["SEM_INSTRUMENT_NAME"].startswith("FUT")]
    return date.fromisoformat(min(days)) if days else None


def current_sample(data_dir: str | Path, today: date) -> Path:
    """The bundled sample while its nearest futures are live, else a fresh one for `today`.

    Keeps the demo working long after the bundled file was generated: the regenerated file
    lives under DATA_DIR and is reused for the rest of the day.
    """
    nearest = nearest_future_expiry(SAMPLE_INSTRUMENTS_CSV)
    if nearest is not None and nearest >= today:
        return SAMPLE_INSTRUMENTS_CSV
    fresh = Path(data_dir) / f"sample-scrip-master-{today.isoformat()}.csv"
    if not fresh.is_file():
        write_sample_master(fresh, today)
        log.info("bundled sample master's nearest futures expired on %s; generated a fresh "
                 "sample for %s at %s", nearest, today, fresh)
    return fresh


def main(argv: list[str] | None = None) -> int:
    """Regenerate the bundled sample (for maintainers): `python -m dhan_trading.instruments.sample [DATE]`."""
    argv = sys.argv[1:] if argv is None else argv
    today = date.fromisoformat(argv[0]) if argv else datetime.now(IST).date()
    write_sample_master(SAMPLE_INSTRUMENTS_CSV, today)
    return 0


if __name__ == "__main__":
    sys.exit(main())
