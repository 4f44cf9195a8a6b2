"""The instrument (scrip) master: read Dhan's compact CSV, store it, refresh it once a day.

Columns are selected by name (Dhan has reordered and renamed them before). A row that cannot be
read is counted and logged, never fatal: one odd row among 200,000 must not stop the feed.
Tick sizes are converted to rupees: the file writes them in paise (`5.0000` = Rs 0.05), except on
index rows, which carry rupees (`0.0500`); see `tick_to_rupees`.
"""
from __future__ import annotations

import csv
import logging
import math
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Iterable, TextIO
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ..config import DEFAULT_DATA_DIR, SAMPLE_INSTRUMENTS_CSV, Settings, mask_url
from ..schema import instruments as instruments_table
from . import sample
from .columns import COMPACT_COLUMNS, CSV_SEGMENTS, OPTION_TYPES, REQUIRED_COLUMNS
from ..scheduler.calendar import IST, ist_today

log = logging.getLogger(__name__)

CACHE_PREFIX = "scrip-master-"
CACHE_KEEP = 3  # cached daily downloads kept under DATA_DIR (the real file is ~30 MB)
DOWNLOAD_TIMEOUT_S = 60.0
UNKNOWN_TICK = 0.01  # rupees: prices then keep two decimals, as DESIGN §3.3 asks for unknown ticks

class MasterError(RuntimeError):
    """The scrip master cannot be used at all (missing columns, unreachable with no cache)."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable (or index) row of the scrip master, with the tick already in rupees."""

    exchange_segment: str
    security_id: int
    exchange: str
    instrument: str
    trading_symbol: str
    custom_symbol: str
    underlying: str
    expiry: datetime | None = None
    strike: float | None = None
    option_type: str | None = None
    lot_size: int = 1
    tick_size: float = UNKNOWN_TICK
    expiry_flag: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.exchange_segment, self.security_id)


@dataclass
class MasterParse:
    """What a parse produced: the instruments and the count of rows it had to skip, by reason."""

    instruments: list[Instrument] = field(default_factory=list)
    bad_rows: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # a few bad rows' descriptions, for the log
    unknown_ticks: list[str] = field(default_factory=list)  # rows whose tick fell back to UNKNOWN_TICK

    @property
    def bad_count(self) -> int:
        return sum(self.bad_rows.values())


def usable_tick(tick: float | None) -> bool:
    """A tick prices can be rounded to: finite and above zero (0 would divide by zero, NaN or a
    negative tick would turn every price into null)."""
    return tick is not None and 0 < tick < math.inf


def tick_to_rupees(raw: str, is_index: bool) -> float:
    """Dhan's SEM_TICK_SIZE -> rupees.

    Rule: the file writes ticks in paise (`5.0000` -> 0.05, `1.0000` -> 0.01, `100.0` -> 1.00;
    currency rows legitimately go below one paisa, `0.2500` -> 0.0025). Index rows are the
    exception and carry rupees (`0.0500`); no index ticks in whole paise below one, so on an
    index row a value below 1 is read as rupees and anything else as paise (in case Dhan fixes
    the quirk). A blank, zero, negative or non-finite tick is unknown and becomes Rs 0.01.
    """
    value = float(raw) if raw.strip() else 0.0
    if not usable_tick(value):
        return UNKNOWN_TICK
    if is_index and value < 1:
        return value
    return round(value / 100, 6)


_EXPIRY_PART = re.compile(r"(?:\d{1,2})?[A-Z][a-z]{2}\d{4}")  # Dec2026, 02Dec2026
_STRIKE_PART = re.compile(r"\d+(?:\.\d+)?")


def derive_underlying(trading_symbol: str, symbol_name: str, is_derivative: bool) -> str:
    """The underlying's name (NIFTY, RELIANCE, CRUDEOIL, BAJAJ-AUTO ...).

    Derivatives: the trading symbol before its expiry part (`BAJAJ-AUTO-Dec2026-FUT` ->
    `BAJAJ-AUTO`, `NIFTY-Dec2026-26000-CE` -> `NIFTY`), because SM_SYMBOL_NAME is blank on NSE
    FUTIDX rows; SM_SYMBOL_NAME when the symbol has an unexpected shape. Cash and index rows:
    the trading symbol itself, because SM_SYMBOL_NAME there is a company name.
    """
    if not is_derivative:
        return trading_symbol
    if trading_symbol.endswith("-FUT"):
        parts = trading_symbol.rsplit("-", 2)
        if len(parts) == 3 and parts[0] and _EXPIRY_PART.fullmatch(parts[1]):
            return parts[0]
    elif trading_symbol.endswith(("-CE", "-PE")):
        parts = trading_symbol.rsplit("-", 3)
        if len(parts) == 4 and parts[0] and _EXPIRY_PART.fullmatch(parts[1]) and _STRIKE_PART.fullmatch(parts[2]):
            return parts[0]
    return symbol_name or trading_symbol.split("-", 1)[0]


def _expiry(raw: str, cache: dict[str, datetime | None]) -> datetime | None:
    try:
        return cache[raw]
    except KeyError:
        pass
    text = raw.strip()
    value = None
    if text:
        value = datetime.fromisoformat(text)  # ValueError -> a bad row
        if value.year < 1900:  # index rows use 0001-01-01 for "no expiry"
            value = None
    cache[raw] = value
    return value


def parse_master(lines: Iterable[str]) -> MasterParse:
    """Parse a compact scrip master (header first) into instruments; pure, never raises on a row."""
    reader = csv.reader(lines)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise MasterError("the scrip master is empty") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise MasterError(f"the scrip master lacks column(s) {', '.join(missing)}; expected Dhan's "
                          f"compact file with columns {', '.join(COMPACT_COLUMNS)}")
    index = {name: header.index(name) for name in COMPACT_COLUMNS if name in header}
    blank = len(header)  # rows are padded with one extra "" so an absent column reads as blank
    (c_exch, c_seg, c_id, c_ins, c_sym, c_lot, c_custom, c_exp, c_strike, c_opt, c_tick, c_flag,
     c_name) = (index.get(n, blank) for n in (
        "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME",
        "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL", "SEM_EXPIRY_DATE",
        "SEM_STRIKE_PRICE", "SEM_OPTION_TYPE", "SEM_TICK_SIZE", "SEM_EXPIRY_FLAG", "SM_SYMBOL_NAME"))
    result = MasterParse()
    out = result.instruments
    expiries: dict[str, datetime | None] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < blank:
            result.bad_rows["too few columns"] += 1
            if len(result.examples) < 5:
                result.examples.append(f"row {lineno}: {len(row)} columns instead of {blank}")
            continue
        row.append("")
        exch = row[c_exch].strip()
        segment = CSV_SEGMENTS.get((exch, row[c_seg].strip()))
        if segment is None:
            result.bad_rows["unknown segment"] += 1
            if len(result.examples) < 5:
                result.examples.append(f"row {lineno}: unknown segment {exch}/{row[c_seg]!r}")
            continue
        try:
            instrument = row[c_ins].strip()
            symbol = row[c_sym].strip()
            option = row[c_opt].strip()
            is_option = option in OPTION_TYPES
            is_index = segment == "IDX_I"
            lot = row[c_lot].strip()
            tick = row[c_tick]
            out.append(Instrument(
                exchange_segment=segment,
                security_id=int(row[c_id]),
                exchange=exch,
                instrument=instrument,
                trading_symbol=symbol,
                custom_symbol=row[c_custom].strip(),
                underlying=derive_underlying(symbol, row[c_name].strip(),
                                             not is_index and instrument[:3] in ("FUT", "OPT")),
                expiry=_expiry(row[c_exp], expiries),
                strike=float(row[c_strike]) if is_option else None,
                option_type=option if is_option else None,
                lot_size=int(float(lot)) if lot else 1,
                tick_size=tick_to_rupees(tick, is_index),
                expiry_flag=row[c_flag].strip(),
            ))
            if not usable_tick(float(tick) if tick.strip() else 0.0):
                result.unknown_ticks.append(f"{segment} {out[-1].security_id} ({symbol}): {tick.strip() or 'blank'}")
        except ValueError as exc:
            result.bad_rows["bad value"] += 1
            if len(result.examples) < 5:
                result.examples.append(f"row {lineno}: {exc}")
    return result


def _read_text(fh: TextIO, source: str) -> list[Instrument]:
    parsed = parse_master(fh)
    if parsed.bad_count:
        log.warning("scrip master %s: skipped %d bad row(s) (%s); e.g. %s", mask_url(source),
                    parsed.bad_count, ", ".join(f"{n} {r}" for r, n in parsed.bad_rows.items()),
                    "; ".join(parsed.examples))
    if parsed.unknown_ticks:
        log.warning("scrip master %s: %d instrument(s) have no usable tick size, e.g. %s; their prices "
                    "are rounded to Rs %g instead", mask_url(source), len(parsed.unknown_ticks),
                    "; ".join(parsed.unknown_ticks[:5]), UNKNOWN_TICK)
    log.info("scrip master %s: %d instruments", mask_url(source), len(parsed.instruments))
    return parsed.instruments


def _is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def read_master(source: str, *, progress: bool = False, cache_dir: str | Path | None = None,
                today: date | None = None) -> list[Instrument]:
    """Instruments from a path or an http(s) URL.

    A URL is downloaded once a day to `cache_dir/scrip-master-YYYY-MM-DD.csv` (default the
    project's `var/`, config.DEFAULT_DATA_DIR) and that file is reused for the rest of the day;
    if the download fails, the newest earlier download is used (with a warning) rather than running with no instruments.
    """
    if _is_url(source):
        path = fetch_master(source, Path(cache_dir or DEFAULT_DATA_DIR), today or ist_today(), progress=progress)
    else:
        path = Path(source)
        if not path.is_file():
            raise MasterError(f"scrip master file {path} does not exist: set DHAN_INSTRUMENTS_CSV "
                              "to a readable file or URL, or unset it for the default")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return _read_text(fh, source)


def fetch_master(url: str, cache_dir: Path, today: date, *, progress: bool = False) -> Path:
    """The day's cached copy of the master at `url`, downloading it if needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{CACHE_PREFIX}{today.isoformat()}.csv"
    if target.is_file() and target.stat().st_size > 0:
        log.info("scrip master: using today's cached copy %s", target)
        return target
    part = target.with_name(target.name + ".part")
    try:
        _download(url, part, progress)
        part.replace(target)
    except (OSError, urllib.error.URLError) as exc:
        part.unlink(missing_ok=True)
        older = sorted(p for p in cache_dir.glob(f"{CACHE_PREFIX}*.csv") if p != target)
        if not older:
            raise MasterError(f"could not download the scrip master from {mask_url(url)} ({exc}) "
                              "and no earlier copy is cached; check the network or set "
                              "DHAN_INSTRUMENTS_CSV to a local file") from None
        log.warning("could not download the scrip master from %s (%s); using the cached copy %s",
                    mask_url(url), exc, older[-1])
        return older[-1]
    for old in sorted(cache_dir.glob(f"{CACHE_PREFIX}*.csv"))[:-CACHE_KEEP]:
        old.unlink(missing_ok=True)
    log.info("scrip master: downloaded %s to %s (%d bytes)", mask_url(url), target, target.stat().st_size)
    return target


def _download(url: str, dest: Path, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "dhan-trading/1.0"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        if not progress:
            while chunk := response.read(1 << 16):
                out.write(chunk)
            return
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)
        columns = (TextColumn("scrip master"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("download", total=total)
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.advance(task, len(chunk))


def load_master(settings: Settings, *, today: date | None = None, progress: bool = False) -> list[Instrument]:
    """The configured master (DHAN_INSTRUMENTS_CSV); the bundled sample is renewed when stale."""
    today = today or ist_today()
    source = settings.instruments_csv or str(SAMPLE_INSTRUMENTS_CSV)
    if source == str(SAMPLE_INSTRUMENTS_CSV):
        source = str(sample.current_sample(settings.data_dir, today))
    return read_master(source, progress=progress, cache_dir=settings.data_dir, today=today)


def tick_sizes(instruments: Iterable[Instrument]) -> dict[tuple[str, int], float]:
    """(exchange_segment, security_id) -> tick in rupees, for rounding prices. An unusable tick
    (0, negative, NaN: a bad master row or table row) becomes UNKNOWN_TICK, logged once per call
    (the feed calls it once per start) with a count and a few examples, not once per packet."""
    ticks: dict[tuple[str, int], float] = {}
    bad: list[str] = []
    for i in instruments:
        if usable_tick(i.tick_size):
            ticks[i.key] = i.tick_size
        else:
            ticks[i.key] = UNKNOWN_TICK
            bad.append(f"{i.exchange_segment} {i.security_id} ({i.trading_symbol}): {i.tick_size!r}")
    if bad:
        log.warning("%d instrument(s) have no usable tick size, e.g. %s; their prices are rounded to "
                    "Rs %g instead", len(bad), "; ".join(bad[:5]), UNKNOWN_TICK)
    return ticks


# ---- database -------------------------------------------------------------------------------
STORE_CHUNK = 5000


def _record(i: Instrument, updated_at: datetime) -> dict:
    return {"exchange_segment": i.exchange_segment, "security_id": i.security_id,
            "exchange": i.exchange, "instrument": i.instrument, "trading_symbol": i.trading_symbol,
            "custom_symbol": i.custom_symbol, "underlying": i.underlying, "expiry": i.expiry,
            "strike": i.strike, "option_type": i.option_type, "lot_size": i.lot_size,
            "tick_size": i.tick_size, "expiry_flag": i.expiry_flag, "updated_at": updated_at}


def _upsert_statement(dialect: str):
    table = instruments_table
    keys = {c.name for c in table.primary_key.columns}
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert
        stmt = insert(table)
        return stmt.on_duplicate_key_update(
            {c.name: stmt.inserted[c.name] for c in table.columns if c.name not in keys})
    raise MasterError(f"storing instruments is not supported on the {dialect} database")


def store_instruments(engine: Engine, instruments: Iterable[Instrument],
                      updated_at: datetime | None = None) -> int:
    """Insert or update every instrument (keyed by segment and id) in chunks; returns the count."""
    updated_at = (updated_at or datetime.now(IST).replace(tzinfo=None)).replace(microsecond=0)
    stmt = _upsert_statement(engine.dialect.name)
    count = 0
    chunk: list[dict] = []
    with engine.begin() as conn:
        for inst in instruments:
            chunk.append(_record(inst, updated_at))
            if len(chunk) >= STORE_CHUNK:
                conn.execute(stmt, chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            conn.execute(stmt, chunk)
            count += len(chunk)
    return count


def last_refresh(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(instruments_table.c.updated_at))).scalar()


def load_instruments(engine: Engine, since: datetime | None = None) -> list[Instrument]:
    """Instruments from the table; with `since`, only rows refreshed since then (today's master)."""
    t = instruments_table
    query = select(t)
    if since is not None:
        query = query.where(t.c.updated_at >= since)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [Instrument(
        exchange_segment=r["exchange_segment"], security_id=int(r["security_id"]), exchange=r["exchange"],
        instrument=r["instrument"], trading_symbol=r["trading_symbol"],
        custom_symbol=r["custom_symbol"] or "", underlying=r["underlying"] or "",
        expiry=r["expiry"], strike=float(r["strike"]) if r["strike"] is not None else None,
        option_type=r["option_type"], lot_size=int(r["lot_size"] or 1),
        tick_size=float(r["tick_size"]) if usable_tick(r["tick_size"]) else UNKNOWN_TICK,
        expiry_flag=r["expiry_flag"] or "") for r in rows]


def refresh_instruments(engine: Engine, settings: Settings, today: date | None = None,
                        force: bool = False, progress: bool = False) -> list[Instrument]:
    """Today's instruments: read and stored once a trading day, then served from the table.

    The refresh date is the day of the newest `updated_at` (every row of one refresh gets the
    same stamp: `today` at the current IST time), so a restart later that day reuses the table
    and returns only the rows of that refresh, i.e. what today's master lists.
    """
    today = today or ist_today()
    last = last_refresh(engine)
    if not force and last is not None and last.date() == today:
        loaded = load_instruments(engine, since=datetime.combine(today, time()))
        if loaded:
            log.info("instruments: %d from the table (refreshed %s)", len(loaded), last)
            return loaded
    found = load_master(settings, today=today, progress=progress)
    stamp = datetime.combine(today, datetime.now(IST).time().replace(microsecond=0))
    store_instruments(engine, found, updated_at=stamp)
    log.info("instruments: refreshed %d rows from the scrip master", len(found))
    return found

