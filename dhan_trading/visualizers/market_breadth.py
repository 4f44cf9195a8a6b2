"""Market breadth of the Nifty 50: counts, A/D line against the index, points contributed by
each constituent and a heatmap by weight.

`python -m dhan_trading.visualizers.market_breadth [--screenshot FILE --after S]`

Two halves, as every window: `BreadthModel` (uses no Qt) folds quote, ticker and prev_close events
into `analytics.breadth.Breadth` and keeps the index's line; `MarketBreadthWindow` draws the
model from the repaint timer. Inputs:

* the constituents and weights: `instruments.nifty50` (the bundled file or DHAN_NIFTY50_CSV);
* each constituent's NSE_EQ share from the catalog by trading symbol, with its own tick (NSE
  stocks below Rs 250 tick at 0.01); a symbol the catalog lacks is named on the message line;
* a stock's previous close: its `prev_close` event when one arrived, else the quote's `close`
  (Dhan streams the previous close there for NSE_EQ, dhan-protocol.md §1), else the last price
  stored for the previous session (said on the message line; a constituent with none of the
  three counts as missing);
* the index (IDX_I 13): its ticker events; its previous close from its `prev_close` event
  (Dhan sends code 6 for indices), else the last stored price of the previous session, else
  none: the residual is then not checked and the points are scaled by the index's first price
  of the day, and the message line says so.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Mapping, Sequence

import pyqtgraph as pg
from PyQt6.QtCore import QEvent, QRectF, Qt
from PyQt6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PyQt6.QtWidgets import QFrame, QGridLayout, QLabel, QSplitter, QToolTip, QVBoxLayout, QWidget

from .. import bus
from ..analytics.breadth import (VWAP_TICK, Breadth, BreadthSnapshot, ContributionCheck,
                                 check_contributions, compare_prices)
from ..analytics.clock import IST_OFFSET_S, bucket_start
from ..analytics.volume import valid_price
from ..config import NIFTY50_CSV, ConfigError, Settings
from ..gui import bridge, theme
from ..gui.catalog import Catalog
from ..gui.crosshair import Crosshair
from ..gui.window import LiveWindow
from ..instruments.master import Instrument
from ..instruments.nifty50 import Constituents, read_constituents
from ..instruments.universe import nse_shares
from ..scheduler.calendar import IST, ist_today

log = logging.getLogger(__name__)

INDEX_KEY = ("IDX_I", 13)  # NIFTY 50 in Dhan's scrip master
PCT_SCALE = 2.0  # % change at which a heatmap tile is fully green or red (intensity ~ sqrt)


# ---- pure helpers ------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """One rectangle of the heatmap, in the coordinates the layout was asked for."""

    symbol: str
    x: float
    y: float
    w: float
    h: float


def squarify(weights: Sequence[tuple[str, float]], x: float, y: float, w: float, h: float) -> list[Tile]:
    """A squarified treemap (Bruls, Huizing, van Wijk 2000): each tile's area is proportional
    to its weight and tiles stay close to squares. Largest first; weights <= 0 get no tile."""
    items = sorted(((s, float(v)) for s, v in weights if v > 0), key=lambda sv: -sv[1])
    total = sum(v for _, v in items)
    if not items or w <= 0 or h <= 0:
        return []
    scale = w * h / total
    areas = [(s, v * scale) for s, v in items]

    def worst(row: list[float], side: float) -> float:
        s = sum(row)
        return max(max(side * side * a / (s * s), s * s / (side * side * a)) for a in row)

    tiles: list[Tile] = []
    while areas:
        side = min(w, h)
        n = 1
        while n < len(areas) and worst([a for _, a in areas[:n + 1]], side) <= worst([a for _, a in areas[:n]], side):
            n += 1
        row, areas = areas[:n], areas[n:]
        s = sum(a for _, a in row)
        if w >= h:  # a column on the left
            cw = s / h
            yy = y
            for symbol, a in row:
                tiles.append(Tile(symbol, x, yy, cw, a / cw))
                yy += a / cw
            x, w = x + cw, w - cw
        else:  # a row along the top
            rh = s / w
            xx = x
            for symbol, a in row:
                tiles.append(Tile(symbol, xx, y, a / rh, rh))
                xx += a / rh
            y, h = y + rh, h - rh
    return tiles


def load_constituents(settings: Settings) -> tuple[Constituents, str | None]:
    """The configured constituents file; a broken user file falls back to the bundled one, and
    the second value says so (None when the configured file was used)."""
    try:
        return read_constituents(settings.nifty50_csv), None
    except ConfigError as exc:
        if settings.nifty50_csv == NIFTY50_CSV:
            raise
        return read_constituents(NIFTY50_CSV), f"{exc}; showing the bundled list instead"


def previous_session_closes(engine, today: date, keys: Iterable[tuple[str, int]]
                            ) -> dict[tuple[str, int], tuple[float, date]]:
    """Per instrument, the last price stored before `today` (IST) and its day: the fallback for
    a previous close that no packet has brought yet. Blocking (database): run in a worker.

    The last traded price of the previous session is the index's close; for a stock it only
    approximates NSE's close (a 30-minute VWAP), which is why the window says when it uses it."""
    from sqlalchemy import select

    from ..live import day_start_ns
    from ..schema import quotes, ticks
    start = day_start_ns(today)
    best: dict[tuple[str, int], tuple[int, float]] = {}
    with engine.connect() as conn:
        for table in (quotes, ticks):
            for segment, security_id in keys:
                row = conn.execute(
                    select(table.c.recv_ts, table.c.ltp)
                    .where(table.c.security_id == security_id, table.c.recv_ts < start,
                           table.c.exchange_segment == segment, table.c.ltp.is_not(None), table.c.ltp > 0)
                    .order_by(table.c.recv_ts.desc()).limit(1)).first()
                key = (segment, security_id)
                if row is not None and (key not in best or row[0] > best[key][0]):
                    best[key] = (row[0], float(row[1]))
    return {k: (price, datetime.fromtimestamp(ts / 1e9, IST).date()) for k, (ts, price) in best.items()}


def fmt_ratio(value: float | None, undefined: str) -> str:
    return f"{value:.2f}" if value is not None else f"—, {undefined}"


def fmt_signed(value: float, decimals: int = 2) -> str:
    return f"{value:+,.{decimals}f}"


# ---- the model -----------------------------------------------------------------------------
class _Stock:
    __slots__ = ("symbol", "tick", "ltp", "atp", "volume", "quote_close", "packet_close")

    def __init__(self, symbol: str, tick: float):
        self.symbol, self.tick = symbol, tick
        self.ltp: float | None = None
        self.atp: float | None = None
        self.volume = 0
        self.quote_close: float | None = None   # the quote's `close`: the previous close, live
        self.packet_close: float | None = None  # a prev_close event (code 6)


@dataclass(frozen=True)
class StockView:
    """What a tile and its tooltip show for one constituent."""

    symbol: str
    company: str
    weight: float
    ltp: float | None
    prev_close: float | None
    change_pct: float | None
    points: float | None
    vs_vwap: int | None  # 1 above, -1 below, 0 at; None without an ATP
    atp: float | None


class BreadthModel:
    """The Nifty 50's breadth from events (no Qt). `apply(events)` folds a batch in; everything
    else reads the state."""

    def __init__(self, constituents: Constituents, shares: Mapping[str, Instrument],
                 index: Instrument | None):
        self.constituents = constituents
        self.weights = dict(constituents.weights)
        self.symbols = [s for s in constituents.symbols if s in shares]
        self.unknown = [s for s in constituents.symbols if s not in shares]
        self.index = index
        self.shares = {s: shares[s] for s in self.symbols}
        self.by_key: dict[tuple[str, int], str] = {shares[s].key: s for s in self.symbols}
        self.key_of = {s: k for k, s in self.by_key.items()}
        self.stocks = {s: _Stock(s, shares[s].tick_size) for s in self.symbols}
        self.breadth = Breadth(self.symbols, ticks={s: shares[s].tick_size for s in self.symbols},
                               weights={s: self.weights[s] for s in self.symbols}) if self.symbols else None
        self.index_key = index.key if index is not None else None
        self.index_ltp: float | None = None
        self.index_first: float | None = None
        self.index_packet_close: float | None = None
        self.index_line: list[tuple[int, float]] = []  # (IST minute start, last index price in it)
        self.previous: dict[tuple[str, int], tuple[float, date]] = {}
        self.previous_problem: str | None = None
        self.bad = 0
        self.last_problem: str | None = None

    @property
    def keys(self) -> list[tuple[str, int]]:
        """Every instrument the window reads: the constituents' shares, then the index."""
        return list(self.by_key) + ([self.index_key] if self.index_key else [])

    # ---- folding events ------------------------------------------------------------------
    def apply(self, events: Iterable[dict]) -> None:
        for event in events:
            try:
                self._apply_one(event)
            except (KeyError, TypeError, ValueError) as exc:  # one bad event never stops the rest
                self.bad += 1
                self.last_problem = f"{type(exc).__name__}: {exc}"

    def _apply_one(self, event: dict) -> None:
        kind = event["type"]
        key = (event["exchange_segment"], int(event["security_id"]))
        recv_ts = event.get("recv_ts")
        ts = recv_ts / 1e9 if isinstance(recv_ts, (int, float)) and math.isfinite(recv_ts) else None
        if key == self.index_key:
            self._apply_index(kind, event, ts)
            return
        symbol = self.by_key.get(key)
        if symbol is None:
            return
        stock = self.stocks[symbol]
        if kind == "prev_close":
            price = _price(event.get("prev_close"))
            if price is None:
                raise ValueError(f"prev_close event of {symbol} without a usable prev_close")
            stock.packet_close = price
        elif kind in ("quote", "full", "ticker"):
            ltp = event.get("ltp")
            if _price(ltp) is None:
                if ltp == 0:  # Dhan's "no trade yet": nothing to count
                    return
                raise ValueError(f"{kind} event of {symbol} without a usable ltp ({ltp!r})")
            stock.ltp = float(ltp)
            if kind != "ticker":
                stock.atp = _price(event.get("atp"))
                volume = event.get("volume")
                stock.volume = int(volume) if isinstance(volume, (int, float)) and volume >= 0 else stock.volume
                close = _price(event.get("close"))
                if close is not None:
                    stock.quote_close = close
        else:
            return
        self._push(stock, ts)

    def _apply_index(self, kind: str, event: dict, ts: float | None) -> None:
        if kind == "prev_close":
            price = _price(event.get("prev_close"))
            if price is None:
                raise ValueError("prev_close event of the index without a usable prev_close")
            self.index_packet_close = price
            return
        if kind not in ("ticker", "quote", "full"):
            return
        ltp = _price(event.get("ltp"))
        if ltp is None:
            raise ValueError(f"{kind} event of the index without a usable ltp ({event.get('ltp')!r})")
        self.index_ltp = ltp
        if self.index_first is None:
            self.index_first = ltp
        if ts is not None:
            minute = bucket_start(ts, 60, IST_OFFSET_S)
            if self.index_line and self.index_line[-1][0] == minute:
                self.index_line[-1] = (minute, ltp)
            elif not self.index_line or minute > self.index_line[-1][0]:
                self.index_line.append((minute, ltp))

    def _push(self, stock: _Stock, ts: float | None) -> None:
        if stock.ltp is None or self.breadth is None:
            return
        self.breadth.update(stock.symbol, stock.ltp, self.prev_close(stock.symbol)[0], stock.atp,
                            stock.volume, ts)

    def set_previous(self, closes: Mapping[tuple[str, int], tuple[float, date]] | None,
                     problem: str | None = None) -> None:
        """The previous session's last prices (a worker read them); constituents that lacked a
        previous close are counted again with it."""
        self.previous = dict(closes or {})
        self.previous_problem = problem
        for stock in self.stocks.values():
            if stock.packet_close is None and stock.quote_close is None:
                self._push(stock, None)

    # ---- reading the state ---------------------------------------------------------------
    def prev_close(self, symbol: str) -> tuple[float | None, str]:
        """A constituent's previous close and where it came from: 'packet', 'quote',
        'previous session' or 'none'."""
        stock = self.stocks[symbol]
        if stock.packet_close is not None:
            return stock.packet_close, "packet"
        if stock.quote_close is not None:
            return stock.quote_close, "quote"
        previous = self.previous.get(self.key_of[symbol])
        if previous is not None:
            return previous[0], "previous session"
        return None, "none"

    def index_prev_close(self) -> tuple[float | None, str]:
        """The index's previous close: its prev_close packet, else the last price stored for
        the previous session ('previous session DATE'), else (None, 'none')."""
        if self.index_packet_close is not None:
            return self.index_packet_close, "packet"
        if self.index_key is not None and self.index_key in self.previous:
            price, day = self.previous[self.index_key]
            return price, f"previous session {day}"
        return None, "none"

    def snapshot(self) -> BreadthSnapshot | None:
        return self.breadth.snapshot() if self.breadth is not None else None

    def ad_line(self) -> list[tuple[int, int]]:
        return self.breadth.ad_line() if self.breadth is not None else []

    def points_base(self) -> tuple[float | None, str]:
        """The index level that scales the points: its previous close, else (approximate) its
        first price today."""
        prev, source = self.index_prev_close()
        if prev is not None:
            return prev, source
        if self.index_first is not None:
            return self.index_first, "first price today"
        return None, "none"

    def contributions(self) -> dict[str, float]:
        base, _ = self.points_base()
        if base is None or self.breadth is None:
            return {}
        return self.breadth.contributions(base)

    def check(self, contributions: Mapping[str, float]) -> ContributionCheck | None:
        """The points against the index's move; None until the index has a price and a
        previous close."""
        prev, _ = self.index_prev_close()
        if prev is None or self.index_ltp is None:
            return None
        return check_contributions(contributions, self.index_ltp, prev)

    def stock_views(self, contributions: Mapping[str, float] | None = None) -> dict[str, StockView]:
        contributions = self.contributions() if contributions is None else contributions
        out = {}
        for symbol in self.symbols:
            stock = self.stocks[symbol]
            prev, _ = self.prev_close(symbol)
            change = None
            ltp = None
            if stock.ltp is not None:
                ltp = round(round(stock.ltp / stock.tick) * stock.tick, 10)
                if prev is not None and prev > 0:
                    prev = round(round(prev / stock.tick) * stock.tick, 10)
                    change = (ltp - prev) / prev * 100.0
            vs = compare_prices(stock.ltp, stock.atp, VWAP_TICK) if stock.ltp is not None and stock.atp else None
            out[symbol] = StockView(symbol, self.constituents.companies.get(symbol, ""), self.weights[symbol],
                                    ltp, prev, change, contributions.get(symbol), vs, stock.atp)
        return out

    def notes(self) -> list[str]:
        """What the trader should know about the inputs, one sentence each."""
        out = []
        if self.unknown:
            out.append(f"not in the scrip master's NSE_EQ rows, so left out of breadth: {', '.join(self.unknown)}")
        if self.index is None:
            out.append("NIFTY (IDX_I 13) is not in the scrip master: no index line and no check of the points")
        sources: dict[str, list[str]] = {}
        for symbol in self.symbols:
            if self.stocks[symbol].ltp is not None:
                sources.setdefault(self.prev_close(symbol)[1], []).append(symbol)
        if sources.get("previous session"):
            names = sources["previous session"]
            out.append(f"{len(names)} constituent(s) have no previous close from the feed yet; using the last "
                       f"stored price of the previous session (approximate): {', '.join(names[:8])}"
                       + (" …" if len(names) > 8 else ""))
        if sources.get("none"):
            names = sources["none"]
            out.append(f"{len(names)} constituent(s) have no previous close yet, counted as missing: "
                       f"{', '.join(names[:8])}" + (" …" if len(names) > 8 else ""))
        if self.index is not None and self.index_ltp is not None:
            prev, source = self.index_prev_close()
            if source.startswith("previous session"):
                out.append(f"no prev_close packet for NIFTY yet: its previous close {prev:,.2f} is the last price "
                           f"stored for the {source}")
            elif prev is None:
                out.append("no previous close for NIFTY yet (no prev_close packet, no stored previous session): "
                           "the index move is not checked and points are scaled by its first price today "
                           f"{self.index_first:,.2f} (approximate)")
        elif self.index is not None:
            out.append("no NIFTY price yet: points and the index line wait for its first tick")
        if self.previous_problem and (sources.get("none") or (
                self.index_ltp is not None and self.index_prev_close()[0] is None)):
            out.append(f"previous session not read: {self.previous_problem}")
        if self.bad:
            out.append(f"skipped {self.bad} events that could not be read (last: {self.last_problem})")
        return out


def _price(value) -> float | None:
    """A positive finite price, else None (Dhan's 0 means none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if valid_price(value) and value > 0 else None


# ---- the window ----------------------------------------------------------------------------
FLAT = "#37474f"  # a heatmap tile at 0 % change


def mix(a: str, b: str, t: float) -> QColor:
    """The colour `t` of the way from `a` to `b` (t clamped to 0..1)."""
    ca, cb = QColor(a), QColor(b)
    t = max(0.0, min(1.0, t))
    return QColor(round(ca.red() + (cb.red() - ca.red()) * t), round(ca.green() + (cb.green() - ca.green()) * t),
                  round(ca.blue() + (cb.blue() - ca.blue()) * t))


def tile_colour(change: float | None) -> QColor:
    """Grey at 0, towards green or red with the square root of |change| (full at PCT_SCALE)."""
    if change is None:
        return QColor(theme.PANEL)
    end = theme.UP if change > 0 else theme.DOWN
    return mix(FLAT, end, math.sqrt(abs(change) / PCT_SCALE))  # sqrt: a quiet day still shows


class Heatmap(QWidget):
    """The constituents as a treemap, area by weight, colour by % change; a tooltip per tile."""

    def __init__(self):
        super().__init__()
        self.setMouseTracking(True)
        self.setMinimumHeight(180)
        self.views: dict[str, StockView] = {}
        self._tiles: list[Tile] = []
        self._size = (0, 0)
        self._weights: list[tuple[str, float]] = []

    def set_views(self, views: dict[str, StockView]) -> None:
        weights = [(s, v.weight) for s, v in views.items()]
        if weights != self._weights:
            self._weights, self._size = weights, (0, 0)
        self.views = views
        self.update()

    def tiles(self) -> list[Tile]:
        size = (self.width(), self.height())
        if size != self._size:
            self._size = size
            self._tiles = squarify(self._weights, 0, 0, size[0], size[1])
        return self._tiles

    def tile_at(self, x: float, y: float) -> Tile | None:
        for tile in self.tiles():
            if tile.x <= x < tile.x + tile.w and tile.y <= y < tile.y + tile.h:
                return tile
        return None

    def tooltip(self, symbol: str) -> str:
        v = self.views[symbol]
        lines = [f"<b>{v.symbol}</b> {v.company}", f"weight {v.weight:.2f}%"]
        if v.ltp is None:
            lines.append("no quote yet")
        else:
            lines.append(f"LTP {v.ltp:,.2f}")
            lines.append(f"change {v.change_pct:+.2f}% (prev close {v.prev_close:,.2f})" if v.change_pct is not None
                         else "change —, no previous close yet")
            lines.append(f"points {v.points:+.2f}" if v.points is not None else "points —")
            where = {1: "above", -1: "below", 0: "at"}.get(v.vs_vwap)
            lines.append(f"{where} VWAP {v.atp:,.2f}" if where else "VWAP —, no ATP yet")
        return "<br>".join(lines)

    def event(self, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ToolTip:
            pos = event.pos()
            tile = self.tile_at(pos.x(), pos.y())
            if tile is not None and tile.symbol in self.views:
                QToolTip.showText(event.globalPos(), self.tooltip(tile.symbol), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    @staticmethod
    def _fitting(painter, fonts, text: str, width: float):
        """The first font in which `text` fits `width`, else None."""
        for font in fonts:
            if QFontMetrics(font).horizontalAdvance(text) <= width:
                return font
        return None

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(theme.BACKGROUND))
        bold = QFont(self.font())
        bold.setBold(True)
        small = QFont(self.font())
        small.setPointSizeF(max(7.5, self.font().pointSizeF() - 1.5))
        tiny = QFont(self.font())
        tiny.setPointSizeF(6.5)
        for tile in self.tiles():
            view = self.views.get(tile.symbol)
            rect = QRectF(tile.x, tile.y, tile.w, tile.h).adjusted(1, 1, -1, -1)
            painter.fillRect(rect, tile_colour(view.change_pct if view else None))
            painter.setPen(QPen(QColor(theme.BACKGROUND), 1))
            painter.drawRect(rect)
            painter.setPen(QColor(theme.TEXT if view and view.ltp is not None else theme.MUTED))
            change = "—" if view is None or view.change_pct is None else f"{view.change_pct:+.2f}%"
            name_font = self._fitting(painter, (bold, small, tiny), tile.symbol, rect.width() - 4)
            if name_font is None or rect.height() < 14:
                continue  # too small to label: the tooltip still names it
            two_lines = rect.height() >= 2 * QFontMetrics(name_font).height() + 2 and \
                QFontMetrics(small).horizontalAdvance(change) <= rect.width() - 4
            if two_lines:
                painter.setFont(name_font)
                painter.drawText(rect.adjusted(0, 0, 0, -rect.height() / 2 + 1),
                                 Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, tile.symbol)
                painter.setFont(small)
                painter.drawText(rect.adjusted(0, rect.height() / 2 + 1, 0, 0),
                                 Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, change)
            else:
                painter.setFont(name_font)
                painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, tile.symbol)
        painter.end()


class Stat(QFrame):
    """A caption above a value in the header."""

    def __init__(self, caption: str, tip: str):
        super().__init__()
        self.setObjectName("stat")
        self.setStyleSheet(f"QFrame#stat {{ background: {theme.PANEL}; border-radius: 4px; }}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 3, 8, 3)
        layout.setSpacing(0)
        self.caption = QLabel(caption)
        self.caption.setStyleSheet(f"color: {theme.MUTED}; font-size: 8pt;")
        self.value = QLabel("—")
        self.value.setStyleSheet(f"color: {theme.TEXT}; font-size: 12pt; font-weight: bold;")
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        self.setToolTip(tip)

    def set_value(self, text: str, colour: str = theme.TEXT) -> None:
        self.value.setText(text)
        self.value.setStyleSheet(f"color: {colour}; font-size: 12pt; font-weight: bold;")


STATS = (
    ("advances", "Advances", "constituents above their previous close (on the tick grid)"),
    ("declines", "Declines", "constituents below their previous close"),
    ("unchanged", "Unchanged", "constituents at their previous close"),
    ("missing", "Missing", "constituents without a last price and a previous close yet"),
    ("ad_ratio", "A/D ratio", "advances / declines"),
    ("pct_advancing", "A/(A+D)", "advances as % of the constituents that moved"),
    ("trin", "TRIN", "(A/D) / (advancing volume / declining volume): below 1 volume favours the advancers"),
    ("above_vwap", "Above VWAP", "% of the constituents with an ATP whose last price is above it"),
    ("highs_lows", "New highs / lows", "constituents at a new intraday high / low (above / below their "
                                        "first price of the day)"),
    ("index", "NIFTY", "the index (IDX_I 13), its change from the previous close"),
)


class MarketBreadthWindow(LiveWindow):
    title = "Market breadth"
    streams = (bus.STREAM_QUOTES, bus.STREAM_TICKS)

    def __init__(self, settings: Settings, initial: str | None = None, *, feed=None):
        super().__init__(settings, None, feed=feed)  # no search: the list is the file's
        self.model: BreadthModel | None = None
        self.setup_notes: list[str] = []
        if initial:
            self.setup_notes.append(f"this window always shows the Nifty 50 (DHAN_NIFTY50_CSV); "
                                    f"ignored {initial!r}")
        self._previous_future: Future | None = None
        # The picker is for one instrument; this window always shows the constituents
        # file's list, so the file (and how old its weights are) stands in its place.
        self.picker.hide()
        self.file_label = QLabel("")
        self.file_label.setStyleSheet(f"color: {theme.MUTED};")
        self.file_label.setWordWrap(True)
        self.top.insertWidget(1, self.file_label, 1)
        self.heading.setText("Nifty 50 breadth — loading instruments…")

        header = QGridLayout()
        header.setSpacing(4)
        self.stats: dict[str, Stat] = {}
        for column, (key, caption, tip) in enumerate(STATS):
            self.stats[key] = Stat(caption, tip)
            header.addWidget(self.stats[key], 0, column)
        header.setColumnStretch(len(STATS) - 1, 2)
        header_widget = QWidget()
        header_widget.setLayout(header)
        self.add_body(header_widget, 0)

        date_axis = pg.DateAxisItem(orientation="bottom", utcOffset=0)  # x: IST wall clock as UTC
        self.ad_plot = pg.PlotWidget(axisItems={"bottom": date_axis})
        item = self.ad_plot.getPlotItem()
        item.setTitle("A/D line (advances − declines, per minute) and NIFTY", color=theme.TEXT)
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setLabel("left", "A − D", color=theme.VALUE_AREA)
        item.getAxis("left").enableAutoSIPrefix(False)
        item.getAxis("right").enableAutoSIPrefix(False)
        item.showAxis("right")
        item.setLabel("right", "NIFTY", color=theme.ACCENT)
        self.index_vb = pg.ViewBox()
        item.scene().addItem(self.index_vb)
        item.getAxis("right").linkToView(self.index_vb)
        self.index_vb.setXLink(item.vb)
        item.vb.sigResized.connect(lambda: self.index_vb.setGeometry(item.vb.sceneBoundingRect()))
        item.addLine(y=0, pen=pg.mkPen(theme.MUTED, width=1))
        self.ad_curve = pg.PlotDataItem(pen=pg.mkPen(theme.VALUE_AREA, width=2))
        item.addItem(self.ad_curve)
        self.index_curve = pg.PlotCurveItem(pen=pg.mkPen(theme.ACCENT, width=2))
        self.index_vb.addItem(self.index_curve)
        legend = item.addLegend(offset=(10, -10), brush=pg.mkBrush(theme.PANEL + "d0"),
                                labelTextColor=theme.TEXT)
        legend.addItem(self.ad_curve, "A − D (left)")
        legend.addItem(self.index_curve, "NIFTY (right)")
        self.ad_cross = Crosshair(item, self._describe_ad)
        self._ad_empty = True

        self.heatmap = Heatmap()
        heat_box = QWidget()
        heat_layout = QVBoxLayout(heat_box)
        heat_layout.setContentsMargins(0, 0, 0, 0)
        heat_title = QLabel("Heatmap: area = index weight, colour = % change from the previous close "
                            f"(full colour at ±{PCT_SCALE:g}%); hover a tile for details")
        heat_title.setStyleSheet(f"color: {theme.MUTED};")
        heat_layout.addWidget(heat_title)
        heat_layout.addWidget(self.heatmap, 1)

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.ad_plot)
        left.addWidget(heat_box)
        left.setSizes([380, 420])

        self.points_plot = pg.PlotWidget()
        pitem = self.points_plot.getPlotItem()
        pitem.setTitle("Index points by constituent", color=theme.TEXT)
        pitem.invertY(True)
        pitem.showGrid(x=True, alpha=0.25)
        pitem.setMouseEnabled(x=False, y=False)
        pitem.addLine(x=0, pen=pg.mkPen(theme.MUTED, width=1))
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.72, width=[], pen=pg.mkPen(None))
        pitem.addItem(self.bars)
        self.points_cross = Crosshair(pitem, self._describe_points)
        self.points_order: list[tuple[str, float]] = []
        self.check_label = QLabel("")
        self.check_label.setWordWrap(True)
        self.check_label.setStyleSheet(f"color: {theme.TEXT};")
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.points_plot, 1)
        right_layout.addWidget(self.check_label)

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setSizes([860, 520])
        self.add_body(main, 1)
        self.finish_layout()
        self.resize(1440, 900)

    # ---- LiveWindow ----------------------------------------------------------------
    def default_instruments(self, catalog: Catalog) -> list[Instrument]:
        try:
            constituents, problem = load_constituents(self.settings)
        except ConfigError as exc:
            self.setup_notes.append(str(exc))
            self.dirty = True  # redraw says it (the base class says only "not in the master")
            return []
        if problem:
            self.setup_notes.append(problem)
        shares = nse_shares(catalog.instruments)
        index = catalog.get(*INDEX_KEY)
        self.model = BreadthModel(constituents, shares, index)
        self._show_file(constituents)
        return [shares[s] for s in self.model.symbols] + ([index] if index else [])

    def select(self, instruments: list[Instrument]) -> None:
        super().select(instruments)
        self.heading.setText(f"Nifty 50 breadth — {len(self.model.symbols) if self.model else 0} "
                             "constituents vs NIFTY")
        self.setWindowTitle(f"{self.title} — Nifty 50")
        self._previous_future = bridge.background().submit(self._read_previous)

    def reset(self, instruments: list[Instrument]) -> None:
        if self.model is not None:  # a fresh model for the same lists (the reader starts over)
            self.model = BreadthModel(self.model.constituents, self.model.shares, self.model.index)

    def apply(self, events: list[dict]) -> None:
        if self.model is not None:
            self.model.apply(events)

    def tick(self) -> None:
        if self._previous_future is not None and self.model is not None and bridge.when_done(
                self._previous_future, self._previous_ready, self._previous_failed):
            self._previous_future = None
            self.dirty = True
        super().tick()

    # ---- previous session -----------------------------------------------------------
    def _read_previous(self):
        engine = self.feed.engine
        if engine is None or self.model is None:
            return {}
        return previous_session_closes(engine, ist_today(), self.model.keys)

    def _previous_ready(self, closes) -> None:
        self.model.set_previous(closes)

    def _previous_failed(self, exc: BaseException) -> None:
        log.info("previous session not read: %s", exc)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:120]
        self.model.set_previous({}, f"database: {reason}")

    # ---- drawing --------------------------------------------------------------------
    def _show_file(self, constituents: Constituents) -> None:
        source = "bundled file" if constituents.path == NIFTY50_CSV else str(constituents.path)
        stale = constituents.stale_warning(ist_today())
        age = (ist_today() - constituents.as_of).days
        text = f"{len(constituents.symbols)} constituents, weights as of {constituents.as_of} ({source})"
        if stale:
            text += f" — {age} days old, may be out of date"
        self.file_label.setText(text)
        self.file_label.setStyleSheet(f"color: {theme.VALUE_AREA if stale else theme.MUTED};")
        tip = [f"source: {constituents.source}"]
        if constituents.metadata.get("weights"):
            tip.append(f"weights: {constituents.metadata['weights']}")
        if stale:
            tip.append(stale)
        self.file_label.setToolTip("\n".join(tip))

    def redraw(self) -> None:
        model = self.model
        if model is None:
            if self.setup_notes:
                self.say(" · ".join(self.setup_notes))
            return
        snap = model.snapshot()
        contributions = model.contributions()
        self._draw_header(model, snap)
        self._draw_lines(model)
        self._draw_points(model, contributions)
        self.heatmap.set_views(model.stock_views(contributions))
        self.say(" · ".join(self.setup_notes + model.notes()))

    def _draw_header(self, model: BreadthModel, snap: BreadthSnapshot | None) -> None:
        s = self.stats
        if snap is None:
            return
        s["advances"].set_value(str(snap.advances), theme.UP)
        s["declines"].set_value(str(snap.declines), theme.DOWN)
        s["unchanged"].set_value(str(snap.unchanged), theme.NEUTRAL)
        s["missing"].set_value(str(snap.missing), theme.VALUE_AREA if snap.missing else theme.MUTED)
        s["ad_ratio"].set_value(fmt_ratio(snap.ad_ratio, "no declines"))
        s["pct_advancing"].set_value(f"{snap.pct_advancing:.1f}%" if snap.pct_advancing is not None
                                else "—, nothing moved")
        if snap.trin is not None:
            s["trin"].set_value(f"{snap.trin:.2f}", theme.UP if snap.trin < 1 else theme.DOWN)
        else:
            s["trin"].set_value("—, " + ("no declines" if not snap.declines else
                                    "no advances" if not snap.advances else "no volume"))
        s["above_vwap"].set_value(f"{snap.pct_above_vwap:.1f}%" if snap.pct_above_vwap is not None
                             else "—, no ATP yet")
        s["highs_lows"].set_value(f"{snap.new_highs} / {snap.new_lows}")
        prev, _ = model.index_prev_close()
        if model.index_ltp is None:
            s["index"].set_value("—, no tick yet")
        elif prev is None:
            s["index"].set_value(f"{model.index_ltp:,.2f} (no prev close)")
        else:
            move = model.index_ltp - prev
            s["index"].set_value(f"{model.index_ltp:,.2f}  {fmt_signed(move)} ({move / prev * 100:+.2f}%)",
                            theme.UP if move > 0 else theme.DOWN if move < 0 else theme.TEXT)

    def _draw_lines(self, model: BreadthModel) -> None:
        line = model.ad_line()
        if line:
            if self._ad_empty:  # the first data: back to auto range (after that, the trader's zoom)
                self._ad_empty = False
                self.ad_plot.getPlotItem().enableAutoRange()
            self.ad_curve.setData([m + IST_OFFSET_S for m, _ in line], [v for _, v in line])
        else:  # nothing yet: the session's hours and a few constituents either way
            self._ad_empty = True
            self.ad_curve.setData([], [])
            day = datetime.combine(ist_today(), datetime.min.time()).replace(tzinfo=IST).timestamp()
            item = self.ad_plot.getPlotItem()
            item.setXRange(day + IST_OFFSET_S + 9.25 * 3600, day + IST_OFFSET_S + 15.5 * 3600, padding=0)
            item.setYRange(-10, 10, padding=0)
        if model.index_line:
            self.index_curve.setData([m + IST_OFFSET_S for m, _ in model.index_line],
                                     [p for _, p in model.index_line])
        else:
            self.index_curve.setData([], [])
        self.index_vb.enableAutoRange(axis=pg.ViewBox.YAxis)

    def _draw_points(self, model: BreadthModel, contributions: dict[str, float]) -> None:
        order = sorted(contributions.items(), key=lambda sv: -sv[1])
        self.points_order = order
        values = [v for _, v in order]
        self.bars.setOpts(x0=[min(0.0, v) for v in values], width=[abs(v) for v in values],
                          y=list(range(len(order))), height=0.72,
                          brushes=[pg.mkBrush(theme.UP if v > 0 else theme.DOWN if v < 0 else theme.NEUTRAL)
                                   for v in values])
        item = self.points_plot.getPlotItem()
        item.getAxis("left").setTicks([[(i, s) for i, (s, _) in enumerate(order)]])
        if order:
            span = max(abs(v) for v in values) or 1.0
            item.setXRange(min(0.0, min(values)) - 0.05 * span, max(0.0, max(values)) + 0.05 * span, padding=0)
            item.setYRange(-0.6, len(order) - 0.4, padding=0)
        base, source = model.points_base()
        check = model.check(contributions)
        if base is None:
            self.check_label.setText("Points wait for a NIFTY price (they are weight × % change × index level).")
        elif check is None:
            self.check_label.setText(f"Σ constituents {fmt_signed(sum(values))} pts, scaled by NIFTY's {source} "
                                     f"{base:,.2f}; the index move is not checked (no previous close of NIFTY).")
        else:
            colour = theme.MUTED if abs(check.residual) < 0.1 * max(1.0, abs(check.actual)) else theme.VALUE_AREA
            self.check_label.setText(
                f"Σ constituents <b>{fmt_signed(check.total)}</b> pts · NIFTY moved "
                f"<b>{fmt_signed(check.actual)}</b> · residual <b><span style='color:{colour}'>"
                f"{fmt_signed(check.residual)}</span></b> (what the weights and the quoted constituents "
                f"do not explain)")

    def _describe_ad(self, x: float, _y: float) -> str:
        model = self.model
        if model is None:
            return ""
        minute = bucket_start(x - IST_OFFSET_S, 60)
        clock = datetime.fromtimestamp(minute, IST).strftime("%H:%M")
        parts = [clock]
        ad = [v for m, v in model.ad_line() if m <= minute]
        if ad:
            parts.append(f"A−D {ad[-1]:+d}")
        index = [p for m, p in model.index_line if m <= minute]
        if index:
            parts.append(f"NIFTY {index[-1]:,.2f}")
        return " · ".join(parts)

    def _describe_points(self, x: float, y: float) -> str:
        row = round(y)
        if 0 <= row < len(self.points_order):
            symbol, points = self.points_order[row]
            return f"{symbol} {points:+.2f} pts"
        return f"{x:+.2f} pts"



def main(argv: list[str] | None = None) -> int:
    from ..gui.app import run_window, window_parser
    parser = window_parser("market_breadth", "Market breadth of the Nifty 50 against the NIFTY index")

    def make(settings: Settings, args):
        return MarketBreadthWindow(settings, " ".join(args.search) or None)

    return run_window("market_breadth", make, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
