"""The terminal quote board (issue 10): `python -m dhan_trading.visualizers.quote_visualizer`.

A live board of the instruments the feed records, for a plain terminal (works over SSH, no
mouse, no Qt): symbol, LTP, change and % change against the previous close, best bid/ask with
quantities, day volume, OI and its change against the previous day's OI, VWAP (Dhan's ATP) and
the last trade time. The LTP cell flashes green or red for half a second on an up or down tick.

Keys (when stdin is a terminal): `s` symbol order, `c` % change, `v` volume, `o` OI change,
`r` reverse, `f` cycle the underlying filter, `/` type an underlying (Enter applies, Esc
cancels, an empty Enter shows all), PgDn/PgUp or `n`/`p` page, `q` quit.

Layers: `QuoteBoard` is the pure model (no I/O: events and the clock come in as arguments, rows
and the view state go out; unit tested); `render` turns it into rich renderables; `KeyReader`
reads stdin in cbreak mode in a thread; `run` wires the history-then-live reader
(`SnapshotReader`, a `live.LiveReader` that starts from the feed's latest-event hash; or the
plain day-history reader with `--full-history`) to a `rich.live.Live` loop that folds the
queued events and repaints at `--refresh` Hz (never once per event). Nothing here imports Qt.

Rules (docs/VISUALIZERS.md):
- previous close: the `prev_close` event's, else the `close` of quote/full events (Dhan streams
  the previous close there during the session); change = LTP - previous close on the tick grid;
- OI change = OI - `prev_oi` of the `prev_close` event (blank when the instrument has no OI);
- bid/ask: level 1 of the newest `depth` event (5 levels from a full packet or 20-level depth);
- LTT: Dhan's last trade time is IST wall-clock seconds encoded as if UTC (dhan-protocol.md
  §2.9), so it is formatted as UTC to read IST, never shifted by the local time zone;
- a flash marks an LTP that moved on the tick grid in an event received in the last
  `FRESH_S` seconds: replayed history (the day loaded at start, a catch-up after a
  reconnect) does not flash.
"""
from __future__ import annotations

import argparse
import math
import os
import queue
import select
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Iterable, Mapping, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from .. import bus
from ..config import finite_number
from ..analytics.clock import IST_OFFSET_S
from ..analytics.grid import grid_price, units
from ..live import Event, LiveReader, Status, day_start_ns

PROG = "python -m dhan_trading.visualizers.quote_visualizer"
STREAMS = (bus.STREAM_QUOTES, bus.STREAM_TICKS, bus.STREAM_DEPTH)
FLASH_S = 0.5          # how long an up/down tick colours the LTP cell
FRESH_S = 5.0          # an event received longer ago than this is history: it does not flash
DEFAULT_TICK = 0.05    # rupees, for an instrument the catalog does not know
PRICE_TYPES = frozenset({"ticker", "quote", "full"})
SHOWN_TYPES = PRICE_TYPES | {"depth", "oi", "prev_close"}
SORTS = {"s": "symbol", "c": "change", "v": "volume", "o": "oi"}
SORT_TITLES = {"symbol": "symbol", "change": "% change", "volume": "volume", "oi": "OI change"}
_KIND_ORDER = {"INDEX": 0, "EQUITY": 1, "FUTIDX": 2, "FUTSTK": 3, "FUTCOM": 3, "OPTIDX": 4,
               "OPTSTK": 5, "OPTFUT": 5}
INDEX_ORDER = ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX", "INDIA VIX")
# Lines around the table: title, status line, table header + rule, "N more", key help.
CHROME_LINES = 6
LOADING = "loading instruments…"

Key = tuple[str, int]


# ---- numbers ---------------------------------------------------------------------------------
def _num(value) -> float | None:
    """A finite number from an event field, else None (missing, null, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def decimals_for(tick: float) -> int:
    """Decimals that show every price on the tick grid: 2 for 0.05 or 1, 4 for 0.0025."""
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(2, -exponent if isinstance(exponent, int) else 2)


def indian(n: int) -> str:
    """Digits grouped the Indian way, as Dhan and NSE print them: 1,23,45,678."""
    sign, digits = ("-" if n < 0 else ""), str(abs(int(n)))
    if len(digits) <= 3:
        return sign + digits
    head, tail = digits[:-3], digits[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return sign + ",".join(groups + [tail])


def ltt_text(ltt) -> str:
    """Dhan's LTT (IST wall-clock encoded as if UTC, dhan-protocol.md §2.9) as IST HH:MM:SS."""
    value = _num(ltt)
    if value is None or value <= 0:
        return ""
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return ""


# ---- the model -------------------------------------------------------------------------------
class Row:
    """One instrument's latest state, and what the board derives from it."""

    __slots__ = ("key", "symbol", "underlying", "kind", "expiry", "strike", "option_type", "tick",
                 "decimals", "ltp", "prev_close", "close", "volume", "atp", "oi", "prev_oi",
                 "bid", "bid_qty", "ask", "ask_qty", "ltt", "flash_dir", "flash_until", "updates")

    def __init__(self, key: Key):
        self.key = key
        self.symbol = f"{key[0]}:{key[1]}"
        self.underlying: str | None = None
        self.kind = ""
        self.expiry = None
        self.strike: float | None = None
        self.option_type = ""
        self.tick = DEFAULT_TICK
        self.decimals = 2
        self.ltp = self.prev_close = self.close = self.atp = None
        self.volume = self.oi = self.prev_oi = None
        self.bid = self.bid_qty = self.ask = self.ask_qty = None
        self.ltt = None
        self.flash_dir = 0
        self.flash_until = 0.0
        self.updates = 0

    def describe(self, instrument) -> None:
        """Take the symbol, underlying and tick from a catalog Instrument."""
        self.symbol = instrument.trading_symbol
        self.underlying = instrument.underlying
        self.kind = instrument.instrument
        self.expiry, self.strike = instrument.expiry, instrument.strike
        self.option_type = instrument.option_type or ""
        tick = instrument.tick_size
        if isinstance(tick, (int, float)) and 0 < tick < math.inf:
            self.tick = tick
        self.decimals = decimals_for(self.tick)

    # derived values (None when unknown) -------------------------------------------------------
    @property
    def reference(self) -> float | None:
        """The previous close: the prev_close event's, else the quote's `close`."""
        for value in (self.prev_close, self.close):
            if value is not None and value > 0:
                return value
        return None

    @property
    def change(self) -> float | None:
        ref = self.reference
        if self.ltp is None or ref is None:
            return None
        return grid_price(units(self.ltp, self.tick) - units(ref, self.tick), self.tick)

    @property
    def pct_change(self) -> float | None:
        change, ref = self.change, self.reference
        return None if change is None else change / ref * 100.0

    @property
    def oi_change(self) -> int | None:
        if self.oi is None or self.prev_oi is None or (self.oi == 0 and self.prev_oi == 0):
            return None
        return int(self.oi - self.prev_oi)

    def flash(self, now: float) -> int:
        """1 (up tick), -1 (down tick) while the flash lasts, else 0."""
        return self.flash_dir if now < self.flash_until else 0

    def natural_key(self):
        """Symbol order: by underlying, then index, equity, future, option, expiry, strike."""
        known = self.underlying is not None
        return (not known, self.underlying or "", _KIND_ORDER.get(self.kind, 9),
                self.expiry or datetime.max, self.strike or 0.0, self.option_type, self.symbol)


class QuoteBoard:
    """The board's state: rows per instrument, the sort, the filter and the typing line. Pure:
    events and `now` (epoch seconds) come in as arguments; nothing here reads a clock or I/O."""

    def __init__(self, *, flash_s: float = FLASH_S, fresh_s: float = FRESH_S):
        self.flash_s, self.fresh_s = flash_s, fresh_s
        self.rows: dict[Key, Row] = {}
        self.instruments: Mapping[Key, object] = {}
        self.sort = "symbol"
        self.descending = False
        self.filter: str | None = None
        self.typing: str | None = None  # the text after "/" while an underlying is typed
        self.offset = 0                 # first row shown (paging)
        self.applied = 0
        self.bad = 0
        self.last_bad: str | None = None

    # ---- instruments -------------------------------------------------------------------------
    def set_catalog(self, instruments: Iterable) -> None:
        """Instrument descriptions (symbol, underlying, tick) by key, for rows now and later."""
        self.instruments = {i.key: i for i in instruments}
        for key, row in self.rows.items():
            if key in self.instruments:
                row.describe(self.instruments[key])

    def add_keys(self, keys: Iterable[Key]) -> None:
        """Rows for instruments the feed records, shown before any event of theirs arrives."""
        for seg, sid in keys:
            self._row((str(seg), int(sid)))

    def _row(self, key: Key) -> Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(key)
            instrument = self.instruments.get(key)
            if instrument is not None:
                row.describe(instrument)
        return row

    # ---- events ------------------------------------------------------------------------------
    def apply(self, events: Sequence[dict], now: float) -> None:
        """Fold a batch of events (DESIGN §3.3 shape) in order; a bad one is counted, never fatal."""
        for event in events:
            try:
                self._apply(event, now)
                self.applied += 1
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.bad += 1
                self.last_bad = f"{type(exc).__name__}: {exc}"[:80]

    def _apply(self, event: dict, now: float) -> None:
        kind = event.get("type")
        seg, sid = event["exchange_segment"], event["security_id"]
        if not isinstance(seg, str) or isinstance(sid, bool) or not isinstance(sid, int):
            raise ValueError(f"bad instrument {seg!r}:{sid!r}")
        if kind not in SHOWN_TYPES:
            return  # market_status and types this board does not show
        row = self._row((seg, sid))
        row.updates += 1
        if kind == "depth":
            row.bid, row.bid_qty = _level(event.get("bids"))
            row.ask, row.ask_qty = _level(event.get("asks"))
            return
        if kind == "prev_close":
            prev_close, prev_oi = _num(event.get("prev_close")), _num(event.get("prev_oi"))
            if prev_close is not None and prev_close > 0:
                row.prev_close = prev_close
            if prev_oi is not None and prev_oi >= 0:
                row.prev_oi = int(prev_oi)
            return
        oi = _num(event.get("oi"))
        if oi is not None and oi >= 0:
            row.oi = int(oi)
        if kind == "oi":
            return
        ltp = _num(event.get("ltp"))
        if ltp is None or ltp <= 0:
            raise ValueError(f"{kind} event without a price: ltp={event.get('ltp')!r:.20}")
        if row.ltp is not None:
            move = units(ltp, row.tick) - units(row.ltp, row.tick)
            recv = _num(event.get("recv_ts"))
            fresh = recv is not None and recv / 1e9 >= now - self.fresh_s
            if move and fresh:
                row.flash_dir, row.flash_until = (1 if move > 0 else -1), now + self.flash_s
        row.ltp = ltp
        ltt = _num(event.get("ltt"))
        if ltt is not None:
            row.ltt = int(ltt)
        if kind == "ticker":
            return
        for name in ("volume", "atp", "close"):
            value = _num(event.get(name))
            if value is not None and value >= 0:
                setattr(row, name, int(value) if name == "volume" else value)

    # ---- the view state ----------------------------------------------------------------------
    def set_sort(self, sort: str) -> None:
        """Choose an order; choosing the current one again keeps it (r reverses)."""
        if sort not in SORT_TITLES:
            raise ValueError(f"unknown sort {sort!r}")
        if sort != self.sort:
            self.sort, self.descending, self.offset = sort, sort != "symbol", 0

    def reverse(self) -> None:
        self.descending = not self.descending
        self.offset = 0

    def set_filter(self, text: str | None) -> None:
        self.filter = text.strip().upper() or None if text else None
        self.offset = 0

    def _underlying_rank(self) -> Callable[[str | None], tuple]:
        """Indices first, in the feed's order (NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, INDIA
        VIX), then other underlyings with index derivatives, then the rest; alphabetical within."""
        index_like = {r.underlying for r in self.rows.values()
                      if r.underlying and r.kind in ("INDEX", "FUTIDX", "OPTIDX")}

        def rank(u: str | None) -> tuple:
            if u in INDEX_ORDER:
                return (0, INDEX_ORDER.index(u), u)
            if u is None:
                return (3, 0, "")  # not in the catalog: last
            return (1 if u in index_like else 2, 0, u)
        return rank

    def underlyings(self) -> list[str]:
        """The underlyings on the board, in symbol order (what `f` cycles through)."""
        names = {r.underlying for r in self.rows.values() if r.underlying}
        return sorted(names, key=self._underlying_rank())

    def cycle_filter(self) -> None:
        """All -> first underlying -> ... -> last -> all."""
        names = self.underlyings()
        if not names:
            self.set_filter(None)
            return
        if self.filter not in names:
            self.set_filter(names[0] if self.filter is None else None)
        else:
            i = names.index(self.filter) + 1
            self.set_filter(names[i] if i < len(names) else None)

    def _matches(self) -> Callable[[Row], bool]:
        if self.filter is None:
            return lambda row: True
        wanted = self.filter
        exact = any(row.underlying == wanted for row in self.rows.values())
        if exact:
            return lambda row: row.underlying == wanted
        return lambda row: row.underlying is not None and row.underlying.startswith(wanted)

    def visible(self) -> list[Row]:
        """The filtered rows in the chosen order; rows without the sorted value go last."""
        matches = self._matches()
        rows = [r for r in self.rows.values() if matches(r)]
        if self.sort == "symbol":
            rank = self._underlying_rank()
            return sorted(rows, key=lambda r: (rank(r.underlying), r.natural_key()),
                          reverse=self.descending)
        value = {"change": lambda r: r.pct_change, "volume": lambda r: r.volume,
                 "oi": lambda r: r.oi_change}[self.sort]
        known = [r for r in rows if value(r) is not None]
        unknown = [r for r in rows if value(r) is None]
        known.sort(key=lambda r: (value(r), _reverse_tiebreak(r, self.descending)),
                   reverse=self.descending)
        unknown.sort(key=Row.natural_key)
        return known + unknown

    def page(self, step: int, page_rows: int) -> None:
        """Move the first shown row by `step` pages (clamped to the rows there are)."""
        total = len(self.visible())
        self.offset = max(0, min(self.offset + step * max(1, page_rows), max(0, total - 1)))

    # ---- keys --------------------------------------------------------------------------------
    def handle_key(self, key: str, page_rows: int = 20) -> bool:
        """Apply one key (see the module docstring); True when the board should quit."""
        if self.typing is not None:
            if key == "ENTER":
                self.set_filter(self.typing)
                self.typing = None
            elif key == "ESC":
                self.typing = None
            elif key == "BACKSPACE":
                self.typing = self.typing[:-1]
            elif len(key) == 1 and key.isprintable():
                self.typing = (self.typing + key.upper())[:30]
            return False
        if key in ("q", "Q", "CTRL_C"):
            return True
        if key in SORTS:
            self.set_sort(SORTS[key])
        elif key == "r":
            self.reverse()
        elif key == "f":
            self.cycle_filter()
        elif key == "/":
            self.typing = ""
        elif key in ("PGDN", "n", " "):
            self.page(1, page_rows)
        elif key in ("PGUP", "p"):
            self.page(-1, page_rows)
        elif key == "ESC":
            self.set_filter(None)
        return False


def _reverse_tiebreak(row: Row, descending: bool):
    """Equal values keep symbol order whichever way the sort runs."""
    key = row.natural_key()
    return _Inverted(key) if descending else key


class _Inverted:
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __lt__(self, other: "_Inverted") -> bool:
        return other.key < self.key

    def __eq__(self, other) -> bool:
        return isinstance(other, _Inverted) and other.key == self.key


def _level(levels) -> tuple[float | None, int | None]:
    """(price, quantity) of the best level of a depth side; (None, None) when it is empty."""
    if not isinstance(levels, list) or not levels or not isinstance(levels[0], (list, tuple)):
        return None, None
    price, qty = _num(levels[0][0]), _num(levels[0][1]) if len(levels[0]) > 1 else None
    if price is None or price <= 0:
        return None, None
    return price, None if qty is None else int(qty)


# ---- keys from a terminal --------------------------------------------------------------------
_SEQUENCES = {"\x1b[5~": "PGUP", "\x1b[6~": "PGDN", "\x1b[A": "UP", "\x1b[B": "DOWN",
              "\x1b[C": "RIGHT", "\x1b[D": "LEFT", "\x1b[H": "HOME", "\x1b[F": "END"}


def parse_keys(data: str) -> list[str]:
    """What a read of a cbreak terminal holds, as key names: characters, ENTER, ESC, BACKSPACE,
    CTRL_C, PGUP, PGDN (other escape sequences are dropped whole)."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\x1b":
            if i + 1 < len(data) and data[i + 1] in "[O":
                j = i + 2
                while j < len(data) and not (data[j].isalpha() or data[j] == "~"):
                    j += 1
                seq = data[i:j + 1]
                name = _SEQUENCES.get(seq.replace("\x1bO", "\x1b["))
                if name:
                    keys.append(name)
                i = j + 1
                continue
            keys.append("ESC")
        elif ch in "\r\n":
            keys.append("ENTER")
        elif ch in "\x7f\x08":
            keys.append("BACKSPACE")
        elif ch == "\x03":
            keys.append("CTRL_C")
        elif ch.isprintable():
            keys.append(ch)
        i += 1
    return keys


class KeyReader(threading.Thread):
    """Reads a terminal's keys in cbreak mode (no Enter needed, no echo) without blocking the
    board: `select` with a timeout, so `stop()` ends it; the caller restores the terminal."""

    def __init__(self, fd: int, keys: "queue.Queue[str]"):
        super().__init__(name="quote-keys", daemon=True)
        self.fd, self.keys = fd, keys
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self.fd, 256)
            except (OSError, ValueError):
                return
            if not data:
                return  # end of input: keys are off
            for key in parse_keys(data.decode("utf-8", "replace")):
                self.keys.put(key)

    def stop(self) -> None:
        self.halt.set()


# ---- rendering -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    title: str
    width: int
    priority: int  # lower goes first when the terminal is too narrow


COLUMNS = (Column("Symbol", 24, 0), Column("LTP", 10, 0), Column("Chg", 9, 1), Column("%Chg", 7, 0),
           Column("Bid Qty", 8, 5), Column("Bid", 10, 2), Column("Ask", 10, 2), Column("Ask Qty", 8, 5),
           Column("Volume", 12, 3), Column("OI", 11, 4), Column("OI Chg", 10, 4),
           Column("VWAP", 10, 6), Column("LTT", 8, 6))
_GAP = 1  # the table's divider between columns


SORT_COLUMN = {"symbol": "Symbol", "change": "%Chg", "volume": "Volume", "oi": "OI Chg"}


def columns_for(width: int, symbol_width: int = 24, keep: str = "Symbol") -> list[Column]:
    """The columns that fit `width` with a symbol column `symbol_width` wide (the longest symbol
    shown): the least important are dropped first (never `keep`, the column sorted on), then
    the symbol column gives up what is still missing (down to 12 characters, the end of a long
    symbol shown as …)."""
    chosen = [Column("Symbol", max(12, symbol_width), 0)] + [
        Column(c.title, c.width, 0) if c.title == keep else c for c in COLUMNS[1:]]
    for level in (6, 5, 4, 3, 2, 1):
        if _needed(chosen) <= width:
            break
        chosen = [c for c in chosen if c.priority < level]
    short = _needed(chosen) - width
    if short > 0:
        chosen[0] = Column("Symbol", max(12, chosen[0].width - short), 0)
    return chosen


def _needed(columns: Sequence[Column]) -> int:
    return sum(c.width for c in columns) + _GAP * (len(columns) - 1)


def _price(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:,.{decimals}f}"


def _signed(value: float | None, decimals: int) -> str:
    if value is None:
        return ""
    return f"{value:+,.{decimals}f}" if round(value, decimals) else f"{0:.{decimals}f}"


def fit_qty(value: int | None, width: int, sign: bool = False) -> str:
    """A quantity in Indian digits, or in lakh (L) / crore (Cr) when the digits would not fit
    `width` (OI of 23,97,51,750 in a 10-wide column: 23.98Cr)."""
    if value is None:
        return ""
    plus = "+" if sign and value > 0 else ""
    text = plus + indian(value)
    if len(text) <= width:
        return text
    for unit, name in ((10**7, "Cr"), (10**5, "L")):
        if abs(value) >= unit:
            text = f"{plus}{value / unit:.2f}{name}"
            if len(text) <= width:
                return text
            return f"{plus}{value / unit:.0f}{name}"
    return text


def _colour(value: float | None) -> str:
    if value is None or value == 0:
        return ""
    return "green" if value > 0 else "red"


def _fit(text: str, width: int, left: bool) -> str:
    if len(text) > width:
        return text[:width - 1] + "…"
    return text.ljust(width) if left else text.rjust(width)


class Lines:
    """Table lines as (text, style) cells, rendered straight to segments (cropped to the
    width): a rich Table or Text per line costs several times more per frame for this fixed
    layout, and the board repaints several times a second."""

    def __init__(self, lines: list[list[tuple[str, str]]]):
        self.lines = lines

    def __rich_console__(self, console, options):
        width = options.max_width
        for cells_ in self.lines:
            line = [Segment(text, _style(style)) for text, style in cells_]
            yield from Segment.adjust_line_length(line, width)
            yield Segment.line()

    def plain(self) -> list[str]:
        return ["".join(text for text, _ in cells_) for cells_ in self.lines]


_STYLES: dict[str, Style] = {}


def _style(name: str) -> Style | None:
    if not name:
        return None
    style = _STYLES.get(name)
    if style is None:
        style = _STYLES[name] = Style.parse(name)
    return style


def _line(values: Sequence[tuple[str, str]], columns: Sequence[Column]) -> list[tuple[str, str]]:
    """One table line: each (text, style) fitted to its column (Symbol left, numbers right)."""
    line: list[tuple[str, str]] = []
    for i, ((value, style), column) in enumerate(zip(values, columns, strict=True)):
        if i:
            line.append((" ", ""))
        line.append((_fit(value, column.width, column.title == "Symbol"), style))
    return line


def cells(row: Row, now: float, widths: Mapping[str, int] | None = None) -> dict[str, tuple[str, str]]:
    """The (text, style) of each column of a row: the flash on LTP, sign colours on changes."""
    d = row.decimals
    change, pct, oi_change = row.change, row.pct_change, row.oi_change
    flash = row.flash(now)
    w = {c.title: c.width for c in COLUMNS}
    w.update(widths or {})
    ltp_style = {1: "bold white on green4", -1: "bold white on red3"}.get(flash, "bold")
    return {
        "Symbol": (row.symbol, "cyan" if row.underlying else "yellow"),
        "LTP": (_price(row.ltp, d), ltp_style),
        "Chg": (_signed(change, d), _colour(change)),
        "%Chg": ("" if pct is None else f"{_signed(pct, 2)}%",
                 _colour(None if pct is None else round(pct, 2))),
        "Bid Qty": (fit_qty(row.bid_qty, w["Bid Qty"]), "dim"),
        "Bid": (_price(row.bid, d), "green"),
        "Ask": (_price(row.ask, d), "red"),
        "Ask Qty": (fit_qty(row.ask_qty, w["Ask Qty"]), "dim"),
        "Volume": (fit_qty(row.volume, w["Volume"]), ""),
        "OI": (fit_qty(row.oi, w["OI"]), ""),
        "OI Chg": (fit_qty(oi_change, w["OI Chg"], sign=True), _colour(oi_change)),
        "VWAP": (_price(row.atp, d) if row.atp else "", ""),
        "LTT": (ltt_text(row.ltt), "dim"),
    }


FRESHNESS_STYLE = {"live": "bold white on green4", "loading": "bold black on grey70",
                   "disconnected": "bold white on red3"}


def render(board: QuoteBoard, status: Status, now: float, width: int, height: int | None,
           note: str | None = None, keys_on: bool = True):
    """The whole screen: title and freshness, the status line, the table, "N more", the keys.
    `height` None: every row (--once); else the rows that fit, from `board.offset`."""
    word = status.freshness(now)
    title = Text()
    title.append(" Dhan quote board ", style="bold white on blue")
    title.append(" ")
    title.append(f" {word} ", style=FRESHNESS_STYLE.get(word, "bold black on dark_orange"))
    title.append(f"  {datetime.fromtimestamp(now + IST_OFFSET_S, tz=timezone.utc):%H:%M:%S} IST",
                 style="dim")
    if status.problem:
        title.append(f"  {status.problem}", style="bold red")

    rows = board.visible()
    line = Text(style="dim")
    line.append(f"{len(rows)} of {len(board.rows)} instruments", style="")
    line.append(f" · sort {SORT_TITLES[board.sort]} {'↓' if board.descending else '↑'}")
    line.append(" · underlying ")
    line.append(board.filter or "all", style="bold yellow" if board.filter else "")
    line.append(f" · {indian(board.applied)} updates")
    if board.bad:
        line.append(f" · {board.bad} bad events skipped ({board.last_bad})", style="red")
    if note:
        line.append(f" · {note}", style="yellow")

    if height is None:
        shown = rows
        board.offset = 0
    else:
        fit = max(1, height - CHROME_LINES)
        board.offset = max(0, min(board.offset, max(0, len(rows) - fit)))
        shown = rows[board.offset:board.offset + fit]
    symbol_width = min(28, max([len(r.symbol) for r in rows] + [12]))  # steady while paging
    columns = columns_for(width, symbol_width, SORT_COLUMN[board.sort])
    widths = {c.title: c.width for c in columns}
    table = [_line([(c.title, "bold") for c in columns], columns),
             [("─" * _needed(columns), "dim")]]
    for row in shown:
        text = cells(row, now, widths)
        table.append(_line([text[c.title] for c in columns], columns))

    parts: list = [title, line, Lines(table)]
    more = len(rows) - board.offset - len(shown)
    if board.filter and not rows:
        parts.append(Text(f"no instrument of underlying {board.filter} on the board "
                          f"(f cycles the underlyings, / types one, Esc shows all)", style="yellow"))
    elif not board.rows:
        parts.append(Text("no instruments yet: is the feed running? (python -m dhan_trading demo)",
                          style="yellow"))
    if height is not None:
        tail = Text(style="dim")
        if board.offset:
            tail.append(f"{board.offset} above · ")
        tail.append(f"{more} more" if more > 0 else "end of list")
        parts.append(tail)
        if board.typing is not None:
            parts.append(Text(f"underlying: {board.typing}▏  (Enter applies, Esc cancels)", style="bold yellow"))
        elif keys_on:
            parts.append(Text("s symbol  c %chg  v volume  o OI chg  r reverse  f underlying  "
                              "/ type one  PgDn/PgUp page  q quit" if width >= 100 else
                              "sort s c v o  r rev  f / underlying  PgDn PgUp  q quit", style="dim"))
        else:
            parts.append(Text("keys off (stdin is not a terminal)", style="dim"))
    elif more > 0:
        parts.append(Text(f"{more} more", style="dim"))
    for part in parts:  # one line each, whatever the width: the row budget counts on it
        if isinstance(part, Text):
            part.no_wrap, part.overflow = True, "ellipsis"
    return Group(*parts)


# ---- reading ---------------------------------------------------------------------------------
REPLAY_MS = 2_000  # the snapshot start re-reads this much of each stream (see SnapshotReader)


class SnapshotReader(LiveReader):
    """The board's fast start: "history" is the newest event per instrument and type (the
    feed's `dhan:latest` hash, today's entries only) instead of every row of the day, then the
    streams are followed live like `LiveReader` does (reconnects, status, malformed entries).

    Why it is exact for this board: every value on it is last-value-wins (the latest LTP,
    volume, OI, depth, previous close), so applying an event twice, or an older one just before
    a newer one, ends in the same state. The stream ends are taken *before* the hash and live
    reading resumes `REPLAY_MS` before them: the feed writes an event's XADD before its HSET, so
    an event whose HSET had not landed when the hash was read is replayed from the stream.
    Opening the board late in a heavy day costs one hash read, not the day's millions of rows;
    `--full-history` uses the plain reader (the day from the database, then the streams)."""

    def _load_history(self) -> None:
        self._set(phase="history")
        got = self._with_redis(self._snapshot)
        if got is None:
            return  # stopped while Redis was down
        events, starts, malformed = got
        self.last_ids.update(starts)
        self._set(history_events=len(events), malformed=self.status.malformed + malformed)
        if events:
            self._deliver(events)
        self._set(phase="live")

    def _snapshot(self, client) -> tuple[list[Event], dict[str, str], int]:
        day_ns = day_start_ns(self.day)
        day_id = (day_ns // 1_000_000 - 1, 2**64 - 1)  # just before today's first entry id
        starts = {}
        for stream in self.streams:
            newest = client.xrevrange(stream, count=1)
            start = day_id
            if newest:
                ms = _id_key(bus.text(newest[0][0]))[0] - REPLAY_MS
                start = max(day_id, (ms, 0))
            starts[stream] = f"{start[0]}-{start[1]}"
        events, malformed = [], 0
        for raw in client.hgetall(bus.LATEST_HASH).values():
            try:
                event = bus.decode(raw)
                stream = bus.EVENT_STREAM.get(event.get("type"))
                recv = event.get("recv_ts")
            except (ValueError, AttributeError):
                malformed += 1
                continue
            if stream not in self.streams or not isinstance(recv, int) or recv < day_ns:
                continue  # another stream's, or not today's (yesterday's last quote)
            if self._wanted(event):
                event["stream"] = stream
                events.append(event)
        events.sort(key=lambda e: e["recv_ts"])
        return events, starts, malformed


class BoardFeed:
    """The reader thread and the queue the render loop drains (gui.bridge.LiveFeed's job, with
    the board's choice of reader)."""

    def __init__(self, connect, engine, full_history: bool = False):
        self.queue: deque[list[Event]] = deque()
        self.status = Status()
        reader_class = LiveReader if full_history else SnapshotReader
        self.reader = reader_class(streams=STREAMS, instruments=None, on_events=self.queue.append,
                                   on_status=self._on_status, connect=connect,
                                   engine=engine if full_history else None)

    def _on_status(self, status: Status) -> None:
        self.status = status

    def start(self) -> None:
        self.reader.start()

    def drain(self) -> list[Event]:
        out: list[Event] = []
        while self.queue:
            out.extend(self.queue.popleft())
        return out

    def stop(self) -> None:
        self.reader.stop(timeout=2.0)


# ---- wiring ----------------------------------------------------------------------------------
def recorded_keys(fields: Iterable[bytes | str]) -> set[Key]:
    """The instruments of `dhan:latest` field names (`<type>:<segment>:<security_id>`) whose
    type the board shows: not `market_status` (no instrument) nor a malformed field."""
    keys: set[Key] = set()
    for field in fields:
        text = field.decode() if isinstance(field, bytes) else str(field)
        kind, _, rest = text.partition(":")
        segment, _, security_id = rest.partition(":")
        if kind in SHOWN_TYPES and segment and security_id.isdigit():
            keys.add((segment, int(security_id)))
    return keys


def load_rows(settings, engine, connect) -> tuple[list, set[Key], str | None]:
    """(catalog instruments, the keys to show before any event, a note). Blocking: a worker.
    The keys are what the feed records (the fields of dhan:latest), else the universe the feed
    would subscribe from the master."""
    from ..gui.bridge import load_catalog  # no Qt in bridge or catalog
    catalog = load_catalog(settings, engine, None)
    keys: set[Key] = set()
    note = None
    try:
        client = connect()
        try:
            keys = recorded_keys(client.hkeys(bus.LATEST_HASH))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - Redis down: the reader shows it; rows from events
        note = f"could not read what the feed records ({type(exc).__name__})"
    if not keys and note is None:
        try:
            from ..instruments.master import ist_today
            from ..instruments.universe import feed_universe
            universe = feed_universe(settings, list(catalog.instruments), today=ist_today())
            keys = {(s.exchange_segment, s.security_id) for s in universe.subscriptions}
            note = "nothing recorded yet: showing the universe the feed would subscribe"
        except Exception as exc:  # noqa: BLE001 - a bad watchlist or file: rows come from events
            note = f"no universe ({type(exc).__name__}: {exc})"[:100]
    return list(catalog.instruments), keys, note


def _stream_ends(connect) -> dict[str, str]:
    """The newest entry id of each stream now (for --once: what 'caught up' means)."""
    client = connect()
    try:
        ends = {}
        for stream in STREAMS:
            newest = client.xrevrange(stream, count=1)
            if newest:
                raw = newest[0][0]
                ends[stream] = raw.decode() if isinstance(raw, bytes) else raw
        return ends
    finally:
        client.close()


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _caught_up(feed, ends: dict[str, str]) -> bool:
    reader = feed.reader
    if reader is None or feed.status.phase != "live":
        return False
    return all(_id_key(reader.last_ids.get(s, "0-0")) >= _id_key(end) for s, end in ends.items())


def in_background(call: Callable, *args) -> Future:
    """`call(*args)` in a daemon thread: quitting never waits for it (a scrip master download
    can take a minute; a ThreadPoolExecutor would hold the exit until it ends)."""
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the render loop
            future.set_exception(exc)
    threading.Thread(target=work, name="quote-instruments", daemon=True).start()
    return future


def run(args: argparse.Namespace, settings) -> int:
    from ..gui.bridge import database_engine, redis_connector

    connect = redis_connector(settings)
    engine = database_engine(settings)
    board = QuoteBoard()
    board.set_filter(args.underlying)
    board.set_sort(args.sort)
    feed = BoardFeed(connect, engine, full_history=args.full_history)
    rows_future = in_background(load_rows, settings, engine, connect)
    note: str | None = LOADING
    feed.start()

    def take_rows() -> None:
        nonlocal rows_future, note
        if rows_future is None or not rows_future.done():
            return
        try:
            instruments, keys, note = rows_future.result()
            board.set_catalog(instruments)
            board.add_keys(keys)
        except Exception as exc:  # noqa: BLE001 - symbols missing is not fatal: keys shown
            note = f"instrument list unavailable ({type(exc).__name__}: {exc})"[:100]
        rows_future = None

    try:
        if args.once:
            return _once(args, board, feed, connect, take_rows, lambda: note)
        return _live(args, board, feed, take_rows, lambda: note)
    finally:
        feed.stop()


def _once(args, board, feed, connect, take_rows, note) -> int:
    """Wait (up to --wait s) until the reader has delivered every entry the streams held when we
    started, and the instrument list is loaded; print the board once. 1: not caught up."""
    deadline = time.monotonic() + args.wait
    ends = None
    caught = False
    while time.monotonic() < deadline:
        take_rows()
        if ends is None:
            try:
                ends = _stream_ends(connect)
            except Exception:  # noqa: BLE001 - Redis down: the reader says so; keep waiting
                ends = None
        if ends is not None and _caught_up(feed, ends):
            time.sleep(0.3 + feed.reader.block_ms / 1000)  # the batch behind last_ids lands
            caught = True
            break
        time.sleep(0.05)
    while note() == LOADING and time.monotonic() < deadline:
        take_rows()
        time.sleep(0.05)
    take_rows()
    now = time.time()
    board.apply(feed.drain(), now)
    console = Console(width=args.width or _default_width(), highlight=False)
    console.print(render(board, feed.status, now, console.width, None, note=note()))
    return 0 if caught else 1


def _default_width() -> int:
    """The terminal's width; 160 in a pipe or a file (a script reads every column)."""
    return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 160


def _live(args, board, feed, take_rows, note) -> int:
    console = Console(highlight=False)
    keys: "queue.Queue[str]" = queue.Queue()
    reader = None
    saved = None
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    keys_on = fd >= 0 and os.isatty(fd)
    if keys_on:
        import termios
        import tty
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        reader = KeyReader(fd, keys)
        reader.start()
    period = 1.0 / max(0.5, min(args.refresh, 30.0))

    def leave(signum, frame):  # kill or a closed SSH session: restore the terminal on the way out
        raise SystemExit(0)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)
    try:
        with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            while True:
                started = time.monotonic()
                width, height = console.size
                page = max(1, height - CHROME_LINES)
                quit_ = False
                while not keys.empty():
                    quit_ = board.handle_key(keys.get_nowait(), page) or quit_
                if quit_:
                    return 0
                take_rows()
                now = time.time()
                board.apply(feed.drain(), now)
                current = note()
                live.update(render(board, feed.status, now, width, height,
                                   note=current, keys_on=keys_on), refresh=True)
                time.sleep(max(0.0, period - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
    finally:
        if reader is not None:
            reader.stop()
        if saved is not None:
            import termios
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="A live quote board of the instruments the "
                                "feed records, in the terminal (works over SSH).")
    p.add_argument("--underlying", metavar="NAME", help="show only this underlying (e.g. NIFTY)")
    p.add_argument("--refresh", type=finite_number, default=5.0, metavar="HZ",
                   help="repaints per second (default 5; events are folded in between)")
    p.add_argument("--once", action="store_true",
                   help="print one snapshot (today's history and what the streams hold) and exit: "
                        "exit 1 when Redis could not be read within --wait")
    p.add_argument("--wait", type=finite_number, default=20.0, metavar="S",
                   help="with --once: seconds to wait for the data (default 20)")
    p.add_argument("--width", type=int, default=0, metavar="COLUMNS",
                   help="with --once: print this wide (default: the terminal, or 160 in a pipe)")
    p.add_argument("--full-history", action="store_true",
                   help="start from every event of the day (database, then streams) instead of the "
                        "latest event per instrument: the same board, slower to open late in a day")
    p.add_argument("--sort", choices=sorted(SORT_TITLES), default="symbol",
                   help="initial order: symbol, change (%% change), volume, oi (OI change)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .. import exitcodes
    from ..config import ConfigError, get_settings
    from ..logs import setup_logging

    args = parser().parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        sys.stderr.write(f"{PROG}: configuration error: {exc}\n")
        return exitcodes.FATAL
    # Live mode owns the screen: log lines go to the file only (a warning would tear the board).
    setup_logging("quote_visualizer", settings, console=args.once)
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
