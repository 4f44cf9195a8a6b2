"""The Nifty 50 constituents and their index weights: the file breadth is computed over.

The file (bundled `dhan_trading/data/nifty50.csv`, or DHAN_NIFTY50_CSV) is a CSV
`symbol,company,weight` (weight in percent; `company` may be blank) preceded by comment lines
`# as_of: YYYY-MM-DD` and `# source: ...`; any other `# key: value` line is kept as metadata.
NSE reviews the index every March and September, so a file more than `STALE_AFTER` old is
probably out of date: `stale_warning` says so (the universe shows it as a warning).
Security ids are never stored here: they come from the day's scrip master, by symbol.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from ..config import ConfigError

STALE_AFTER = timedelta(days=90)  # a quarter: NSE changes the index twice a year
WEIGHT_SUM_TOLERANCE = 0.5  # percentage points; published weights are rounded to 2 decimals
HEADER = ("symbol", "company", "weight")


@dataclass(frozen=True)
class Constituents:
    """The index's constituents in file order, with weights in percent and where they came from."""

    as_of: date
    source: str
    weights: dict[str, float]
    companies: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def stale_warning(self, today: date) -> str | None:
        """A sentence when the file is older than STALE_AFTER on `today` (IST), else None."""
        age = today - self.as_of
        if age <= STALE_AFTER:
            return None
        return (f"the Nifty 50 constituents file {self.path} is as of {self.as_of} ({age.days} days old, more "
                f"than {STALE_AFTER.days}): NSE reviews the index every March and September, so its "
                "list or weights may be out of date; point DHAN_NIFTY50_CSV at a current file "
                "(format in docs/INSTRUMENTS.md)")


def parse_constituents(text: str, path: Path | None = None) -> Constituents:
    """Parse the file's text; every problem, with its line number, in one ConfigError."""
    where = f"Nifty 50 constituents file {path}" if path else "Nifty 50 constituents"
    problems: list[str] = []
    meta: dict[str, str] = {}
    rows: list[tuple[int, list[str]]] = []
    header_seen = False
    for lineno, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            key, sep, value = stripped[1:].partition(":")
            if sep and key.strip() and not header_seen:
                meta[key.strip().lower()] = value.strip()
            continue
        row = [cell.strip() for cell in next(csv.reader(io.StringIO(line)))]
        if not header_seen:
            header_seen = True
            if tuple(c.lower() for c in row) != HEADER:
                problems.append(f"line {lineno}: header {','.join(row)!r}, expected {','.join(HEADER)!r}")
            continue
        rows.append((lineno, row))

    as_of = None
    try:
        as_of = date.fromisoformat(meta.get("as_of", ""))
    except ValueError:
        problems.append(f"no '# as_of: YYYY-MM-DD' line above the header (got {meta.get('as_of')!r})")
    source = meta.get("source", "")
    if not source:
        problems.append("no '# source: ...' line above the header (say where the list and weights come from)")
    if not header_seen:
        problems.append(f"no header line {','.join(HEADER)!r}")

    weights: dict[str, float] = {}
    companies: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, row in rows:
        if len(row) != len(HEADER):
            problems.append(f"line {lineno}: {len(row)} fields, expected {len(HEADER)} ({','.join(HEADER)})")
            continue
        symbol, company, raw = row
        symbol = symbol.upper()
        try:
            weight = float(raw)
        except ValueError:
            weight = -1.0
        if not symbol:
            problems.append(f"line {lineno}: no symbol")
        elif symbol in first_line:
            problems.append(f"line {lineno}: {symbol} is a duplicate of line {first_line[symbol]}")
        elif not 0 < weight <= 100:
            problems.append(f"line {lineno}: {symbol}: weight {raw!r} is not a percentage above 0")
        else:
            first_line[symbol] = lineno
            weights[symbol] = weight
            companies[symbol] = company
    total = sum(weights.values())
    if weights and not problems and abs(total - 100) > WEIGHT_SUM_TOLERANCE:
        problems.append(f"the weights sum to {total:.2f}, not 100 (within {WEIGHT_SUM_TOLERANCE})")
    if header_seen and not rows:
        problems.append("no constituents below the header")
    if problems or as_of is None:
        raise ConfigError(f"{where} cannot be used (DHAN_NIFTY50_CSV): " + "; ".join(problems))
    return Constituents(as_of=as_of, source=source, weights=weights, companies=companies, path=path,
                        metadata=meta)


def read_constituents(path: str | Path) -> Constituents:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"DHAN_NIFTY50_CSV: cannot read the Nifty 50 constituents file {path} "
                          f"({exc.strerror or exc}); unset it to use the bundled file") from None
    return parse_constituents(text, path)
