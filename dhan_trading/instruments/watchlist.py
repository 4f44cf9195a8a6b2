"""DHAN_WATCHLIST: the trader's own list, subscribed instead of the universe rules (DESIGN §3.2).

A CSV with the header `exchange_segment,security_id,mode`, one instrument a line; blank lines
and lines starting with `#` are ignored. Every bad line (unknown segment, an id that is not a
whole number between 1 and 2^32-1, an unknown mode, a duplicate of an earlier line, a line
beyond Dhan's limit of 5 connections x 5,000 instruments) is named with its line number in one
ConfigError, and the feed does not start: nothing is dropped behind the trader's back.
"""
from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Iterable

from ..config import ConfigError
from ..market_feed.plan import MAX_CONNECTIONS, MODES
from ..protocol.requests import MAX_PER_CONNECTION
from ..protocol.segments import SEGMENT_CODES
from .master import Instrument
from .universe import Subscription, Universe

HEADER = ("exchange_segment", "security_id", "mode")
MAX_INSTRUMENTS = MAX_CONNECTIONS * MAX_PER_CONNECTION  # 25,000
MAX_SECURITY_ID = 2**32 - 1  # the binary header's field is a u32
CATEGORY = "watchlist"


def parse_watchlist(text: str, source: str = "DHAN_WATCHLIST") -> list[tuple[int, str, int, str]]:
    """`(line, segment, security_id, mode)` for every instrument, in file order; raises one
    ConfigError naming DHAN_WATCHLIST and every bad line."""
    problems: list[str] = []
    out: list[tuple[int, str, int, str]] = []
    seen: dict[tuple[str, int], int] = {}
    header_seen = False
    beyond: list[int] = []
    for lineno, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        row = [cell.strip() for cell in next(csv.reader(io.StringIO(line)))]
        if not header_seen:
            header_seen = True
            if tuple(c.lower() for c in row) != HEADER:
                problems.append(f"line {lineno}: header {','.join(row)!r}, expected {','.join(HEADER)!r}")
            continue
        if len(row) != len(HEADER):
            problems.append(f"line {lineno}: {len(row)} fields, expected {len(HEADER)} ({','.join(HEADER)})")
            continue
        segment, raw_id, mode = row[0].upper(), row[1], row[2].lower()
        wrong = []
        if segment not in SEGMENT_CODES:
            wrong.append(f"unknown segment {row[0]!r} (use {', '.join(SEGMENT_CODES)})")
        security_id = int(raw_id) if raw_id.isdigit() else 0
        if not 1 <= security_id <= MAX_SECURITY_ID:
            wrong.append(f"security_id {raw_id!r} is not a whole number from 1 to {MAX_SECURITY_ID}")
        if mode not in MODES:
            wrong.append(f"unknown mode {row[2]!r} (use {', '.join(MODES)})")
        if wrong:
            problems.append(f"line {lineno}: " + "; ".join(wrong))
            continue
        key = (segment, security_id)
        if key in seen:
            problems.append(f"line {lineno}: {segment}:{security_id} is a duplicate of line {seen[key]}")
            continue
        seen[key] = lineno
        if len(out) == MAX_INSTRUMENTS:
            beyond.append(lineno)
            continue
        out.append((lineno, segment, security_id, mode))
    if beyond:
        span = f"line {beyond[0]}" if len(beyond) == 1 else f"lines {beyond[0]} to {beyond[-1]}"
        problems.append(f"{span} ({len(beyond)} instrument(s)) go beyond Dhan's limit of {MAX_INSTRUMENTS:,} "
                        f"instruments ({MAX_CONNECTIONS} connections x {MAX_PER_CONNECTION:,})")
    if not header_seen:
        problems.append(f"the file is empty: it needs the header {','.join(HEADER)!r} and one instrument a line")
    elif not out and not problems:
        problems.append("no instruments below the header")
    if problems:
        raise ConfigError(f"{source}: the feed will not start until these {len(problems)} problem(s) are "
                          "fixed: " + "; ".join(problems))
    return out


def read_watchlist(path: str | Path, instruments: Iterable[Instrument], today: date) -> Universe:
    """The watchlist at `path` as a Universe (category `watchlist`); symbols from the master."""
    path = Path(path)
    source = f"DHAN_WATCHLIST={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the watchlist ({exc}); fix the path or unset "
                          "DHAN_WATCHLIST to use the universe rules") from None
    rows = parse_watchlist(text, source)
    symbols = {i.key: i.trading_symbol for i in instruments}
    universe = Universe(date=today)
    unknown = 0
    for _, segment, security_id, mode in rows:
        symbol = symbols.get((segment, security_id), "")
        unknown += not symbol
        universe.subscriptions.append(Subscription(segment, security_id, mode, CATEGORY, symbol))
    universe.notes.append(f"watchlist {path}: {len(rows):,} instruments replace the universe rules")
    if unknown:
        universe.notes.append(f"{unknown:,} watchlist instrument(s) are not in today's scrip master: subscribed "
                              "anyway, with no symbol and prices rounded to 0.01")
    return universe
