"""Which instruments the F&O feed subscribes: every selection rule lives in `UniverseRules`.

Default universe (129 instruments, "the ~128-instrument F&O universe" of DESIGN §3.1):

    index spots      NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, INDIA VIX        5  (ticker)
    index futures    those four indices, near and next expiry              4 x 2 = 8  (full)
    stock futures    current month of the 40 most liquid F&O stocks            40  (full)
    index options    NIFTY and BANKNIFTY, nearest expiry, ATM +/- 9 strikes,
                     CE and PE                                      2 x 19 x 2 = 76  (full)
    nifty50          the Nifty 50 constituents' NSE_EQ shares, by symbol from the
                     master (breadth needs their ATP and volume)               50  (quote)
                                                                            -----
                                                                              179

`mcx=True` adds the near-month CRUDEOIL, GOLD, SILVER, NATURALGAS and COPPER futures (never the
minis): 184. A contract is never selected after its expiry; on its expiry day it stays in until
the close (NSE 15:30, MCX 23:30 IST) when the caller passes `now`.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Iterable, Literal, Mapping

import orjson

from ..config import NIFTY50_CSV, Settings
from .master import IST, Instrument
from .nifty50 import Constituents, read_constituents

Mode = Literal["ticker", "quote", "full"]

# Most liquid NSE F&O stocks by futures turnover (late 2025), best first. Fixed on purpose: a
# stable universe keeps the recorded history comparable from day to day. Review it yearly.
LIQUID_STOCKS: tuple[str, ...] = (
    "HDFCBANK", "ICICIBANK", "RELIANCE", "SBIN", "AXISBANK", "INFY", "BHARTIARTL", "KOTAKBANK",
    "BAJFINANCE", "TCS", "LT", "TMPV", "M&M", "ITC", "TATASTEEL", "ADANIENT", "BSE", "HINDALCO",
    "MARUTI", "ETERNAL", "SUNPHARMA", "BEL", "TRENT", "HCLTECH", "JSWSTEEL", "DIXON", "VEDL",
    "TITAN", "ULTRACEMCO", "BANKBARODA", "NTPC", "SHRIRAMFIN", "TATAPOWER", "ADANIPORTS",
    "POWERGRID", "ONGC", "COALINDIA", "BAJAJ-AUTO", "INDIGO", "HINDUNILVR",
    "WIPRO", "TECHM", "ASIANPAINT", "DRREDDY", "BAJAJFINSV",
)

CATEGORIES = ("index", "index_future", "stock_future", "index_option", "nifty50", "mcx_future", "watchlist")


@dataclass(frozen=True)
class UniverseRules:
    """The selection rules with their defaults (module docstring has the arithmetic)."""

    index_spots: tuple[str, ...] = ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "INDIA VIX")
    index_futures: tuple[str, ...] = ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY")
    futures_per_index: int = 2  # near and next expiry
    liquid_stocks: tuple[str, ...] = LIQUID_STOCKS
    stocks: int = 40  # how many of liquid_stocks, best first (DHAN_UNIVERSE_STOCKS)
    option_underlyings: tuple[str, ...] = ("NIFTY", "BANKNIFTY")
    strikes: int = 9  # each side of ATM (DHAN_UNIVERSE_STRIKES)
    mcx: bool = False
    mcx_commodities: tuple[str, ...] = ("CRUDEOIL", "GOLD", "SILVER", "NATURALGAS", "COPPER")
    nse_close: time = time(15, 30)
    mcx_close: time = time(23, 30)
    spot_mode: Mode = "ticker"
    derivative_mode: Mode = "full"
    nifty50: bool = True  # the constituents' shares, for breadth
    equity_mode: Mode = "quote"  # quote carries ATP and volume



@dataclass(frozen=True)
class Subscription:
    exchange_segment: str
    security_id: int
    mode: Mode
    category: str
    symbol: str


@dataclass
class Universe:
    """The selected subscriptions, plus notes on anything the rules could not satisfy."""

    date: date
    subscriptions: list[Subscription] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # things the trader must act on
    atm: dict[str, float] = field(default_factory=dict)  # option underlying -> ATM strike used

    def counts(self) -> dict[str, int]:
        counted = Counter(s.category for s in self.subscriptions)
        return {c: counted[c] for c in CATEGORIES if counted[c]}

    def to_json(self) -> dict:
        """The stable shape printed by `display_fno_instruments.py --json` (docs/INSTRUMENTS.md)."""
        return {"date": self.date.isoformat(), "count": len(self.subscriptions), "counts": self.counts(),
                "notes": list(self.notes), "warnings": list(self.warnings),
                "instruments": [{"exchange_segment": s.exchange_segment, "security_id": s.security_id,
                                 "mode": s.mode, "category": s.category, "symbol": s.symbol}
                                for s in self.subscriptions]}


def _is_live(inst: Instrument, today: date, now: datetime | None, rules: UniverseRules) -> bool:
    if inst.expiry is None:
        return True
    day = inst.expiry.date()
    if day != today:
        return day > today
    if now is None:
        return True
    close = rules.mcx_close if inst.exchange_segment == "MCX_COMM" else rules.nse_close
    return now < datetime.combine(today, close)


def select_universe(instruments: Iterable[Instrument], *, today: date,
                    index_prices: Mapping[str, float] | None = None, mcx: bool | None = None,
                    stocks: int | None = None, strikes: int | None = None, now: datetime | None = None,
                    rules: UniverseRules | None = None, constituents: Constituents | None = None) -> Universe:
    """Pick the feed's universe from the master as of `today` (and `now`, IST, if given).

    `index_prices` maps an option underlying (NIFTY, BANKNIFTY) to its last price, e.g. from
    Redis `dhan:latest` via `index_prices_from_latest`; without one, ATM is the middle listed
    strike of the nearest expiry and a note says so. `mcx`, `stocks` and `strikes` override
    the rules (None keeps the rules' value). `constituents` is the Nifty 50 list (None: the
    bundled file); a symbol missing from the master, or a list older than a quarter on `today`,
    becomes a warning.
    """
    rules = rules or UniverseRules()
    overrides = {k: v for k, v in (("mcx", mcx), ("stocks", stocks), ("strikes", strikes)) if v is not None}
    rules = replace(rules, **overrides)
    if now is not None and now.tzinfo is not None:
        now = now.astimezone(IST).replace(tzinfo=None)
    prices = {k.upper(): float(v) for k, v in (index_prices or {}).items()}
    live = [i for i in instruments if _is_live(i, today, now, rules)]
    universe = Universe(date=today)
    seen: set[tuple[str, int]] = set()

    def add(inst: Instrument, category: str, mode: Mode) -> None:
        if inst.key not in seen:
            seen.add(inst.key)
            universe.subscriptions.append(Subscription(inst.exchange_segment, inst.security_id,
                                                       mode, category, inst.trading_symbol))

    by_kind: dict[tuple[str, str], list[Instrument]] = {}
    for inst in live:
        by_kind.setdefault((inst.instrument, inst.underlying), []).append(inst)
    for group in by_kind.values():
        group.sort(key=lambda i: (i.expiry or datetime.min, i.strike or 0.0))

    spots = {i.trading_symbol: i for i in live if i.exchange_segment == "IDX_I"}
    for name in rules.index_spots:
        if name in spots:
            add(spots[name], "index", rules.spot_mode)
        else:
            universe.notes.append(f"index {name} is not in the master")

    for name in rules.index_futures:
        futures = by_kind.get(("FUTIDX", name), [])
        for inst in futures[:rules.futures_per_index]:
            add(inst, "index_future", rules.derivative_mode)
        if len(futures) < rules.futures_per_index:
            universe.notes.append(f"{name}: {len(futures)} live index future(s), wanted {rules.futures_per_index}")

    for name in rules.liquid_stocks[:rules.stocks]:
        futures = by_kind.get(("FUTSTK", name), [])
        if futures:
            add(futures[0], "stock_future", rules.derivative_mode)
        else:
            universe.notes.append(f"{name}: no live stock future in the master")
    if rules.stocks > len(rules.liquid_stocks):
        universe.notes.append(f"only {len(rules.liquid_stocks)} stocks are ranked; {rules.stocks} asked")

    for name in rules.option_underlyings:
        _select_options(by_kind.get(("OPTIDX", name), []), name, prices.get(name), rules, universe, add)

    if rules.nifty50:
        _select_nifty50(live, constituents or read_constituents(NIFTY50_CSV), today, rules, universe, add)
        if "NIFTY" in spots:  # breadth compares the constituents with the index itself
            add(spots["NIFTY"], "index", rules.spot_mode)

    if rules.mcx:
        for name in rules.mcx_commodities:
            futures = [i for i in by_kind.get(("FUTCOM", name), []) if i.exchange_segment == "MCX_COMM"]
            if futures:
                add(futures[0], "mcx_future", rules.derivative_mode)
            else:
                universe.notes.append(f"{name}: no live MCX future in the master")
    return universe


def _select_options(options: list[Instrument], name: str, price: float | None, rules: UniverseRules,
                    universe: Universe, add) -> None:
    if not options:
        universe.notes.append(f"{name}: no live options in the master")
        return
    expiry = options[0].expiry  # options are sorted by expiry: the nearest live one
    chain = [i for i in options if i.expiry == expiry and i.strike is not None]
    listed = sorted({i.strike for i in chain})
    if price is None:
        atm_index = len(listed) // 2
        universe.notes.append(f"{name}: no last price known; ATM taken as the middle listed strike "
                              f"{listed[atm_index]:g} of the {expiry:%Y-%m-%d} expiry")
    else:
        atm_index = bisect.bisect_left(listed, price)
        if atm_index == len(listed) or (atm_index > 0 and price - listed[atm_index - 1] <= listed[atm_index] - price):
            atm_index -= 1
    universe.atm[name] = listed[atm_index]
    lo, hi = max(0, atm_index - rules.strikes), min(len(listed), atm_index + rules.strikes + 1)
    if hi - lo < 2 * rules.strikes + 1:
        universe.notes.append(f"{name}: only {hi - lo} strikes listed around ATM {listed[atm_index]:g}, "
                              f"wanted {2 * rules.strikes + 1}")
    wanted = set(listed[lo:hi])
    order = {"CE": 0, "PE": 1}
    for inst in sorted((i for i in chain if i.strike in wanted),
                       key=lambda i: (i.strike, order.get(i.option_type or "", 2))):
        add(inst, "index_option", rules.derivative_mode)


def nse_shares(instruments: Iterable[Instrument]) -> dict[str, Instrument]:
    """NSE_EQ rows by trading symbol, the EQUITY row preferred (the Nifty 50's shares in the
    universe, and the breadth window's)."""
    shares: dict[str, Instrument] = {}
    for inst in instruments:
        if inst.exchange_segment == "NSE_EQ":
            current = shares.get(inst.trading_symbol)
            if current is None or (inst.instrument == "EQUITY" and current.instrument != "EQUITY"):
                shares[inst.trading_symbol] = inst
    return shares


def _select_nifty50(live: list[Instrument], constituents: Constituents, today: date, rules: UniverseRules,
                    universe: Universe, add) -> None:
    shares = nse_shares(live)
    missing = [s for s in constituents.symbols if s not in shares]
    for symbol in constituents.symbols:
        if symbol in shares:
            add(shares[symbol], "nifty50", rules.equity_mode)
    if missing:
        universe.warnings.append(f"Nifty 50: {len(missing)} constituent(s) not in the master's NSE_EQ rows, so "
                                 f"breadth will lack them: {', '.join(missing)}")
    stale = constituents.stale_warning(today)
    if stale:
        universe.warnings.append(stale)


def feed_universe(settings: Settings, instruments: list[Instrument], *, today: date,
                  index_prices: Mapping[str, float] | None = None, mcx: bool = False,
                  now: datetime | None = None) -> Universe:
    """What the feed subscribes: the watchlist when DHAN_WATCHLIST is set, else the rules with the
    configured stocks, strikes and Nifty 50 file. Raises ConfigError for a bad watchlist or file."""
    if settings.watchlist is not None:
        from .watchlist import read_watchlist  # watchlist builds on this module's Universe
        universe = read_watchlist(settings.watchlist, instruments, today)
        if mcx:
            universe.notes.append("--mcx is ignored: the watchlist lists every instrument")
        return universe
    return select_universe(instruments, today=today, index_prices=index_prices, mcx=mcx,
                           stocks=settings.universe_stocks, strikes=settings.universe_strikes, now=now,
                           constituents=read_constituents(settings.nifty50_csv))


def index_prices_from_latest(latest: Mapping[bytes | str, bytes | str],
                             instruments: Iterable[Instrument]) -> dict[str, float]:
    """Last prices of the index spots from the Redis hash `dhan:latest` (field
    `<type>:<segment>:<security_id>` -> event JSON with `ltp`), keyed by index name."""
    names = {str(i.security_id): i.trading_symbol for i in instruments if i.exchange_segment == "IDX_I"}
    prices: dict[str, float] = {}
    for raw_field, raw_value in latest.items():
        key = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        kind, _, rest = key.partition(":")
        segment, _, security_id = rest.partition(":")
        if segment != "IDX_I" or security_id not in names or kind not in ("ticker", "quote", "full"):
            continue
        try:
            ltp = orjson.loads(raw_value).get("ltp")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(ltp, (int, float)) and ltp > 0:
            prices[names[security_id]] = float(ltp)
    return prices
