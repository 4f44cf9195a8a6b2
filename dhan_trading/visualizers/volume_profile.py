"""Today's volume profile of one instrument (issue 10): `python -m dhan_trading.visualizers.volume_profile [SEARCH]`.

What a trader sees (docs/VISUALIZERS.md has the picture and every element):

- a horizontal histogram of the day's volume per price row (rows of N ticks, default 1), each
  row split into bought / sold / unknown volume (quote rule when the best bid/ask is known from
  depth, else the tick rule: analytics.volume.TradeSide), rows inside the value area bright;
- the POC, VAH and VAL as lines and the value area shaded; the previous stored session's POC,
  VAH and VAL as dashed lines (read from the database in a worker thread);
- beside it, on the same price axis, the developing POC/VAH/VAL minute by minute and the price;
- an info box: POC, VAH, VAL, total volume, range, VWAP, last price and its distance from the
  POC in points and ticks.

`VolumeProfileModel` is the pure part (no Qt calls): it keeps the day's tape (price, cumulative volume,
best bid/ask of every update, and the reconnect gaps) so that a change of settings (ticks per
row, value-area %, dual or single rule) rebuilds the profile from memory, and it folds events
into `analytics.profile.ProfileBuilder`. `VolumeProfileWindow` draws the model from the
LiveWindow repaint timer.
"""
from __future__ import annotations

import bisect
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QSpinBox, QToolBar, QVBoxLayout, QWidget

from .. import bus
from ..analytics.clock import IST_OFFSET_S, bucket_start
from ..analytics.grid import grid_price, units
from ..analytics.profile import LevelsAt, Profile, ProfileBuilder
from ..gui import bridge, theme
from ..gui.crosshair import Crosshair
from ..gui.window import LiveWindow
from ..scheduler.calendar import IST, ist_today

log = logging.getLogger(__name__)

QUOTE_TYPES = frozenset({"quote", "full"})
DEFAULT_TICK = 0.05        # rupees, when the master has no usable tick for the instrument
DEPTH_FRESH_S = 10.0       # a best bid/ask older than this (vs the trade) is not used (quote rule)
GAP = "gap"
REDRAW_EVERY_S = 0.2       # a profile repaints at most 5 times a second (the badge still at 20 Hz)
APPLY_CHUNK = 10_000       # events folded per repaint tick: a day of history loads without a freeze


# ---- reading events (shared with volume_profile_chart) -------------------------------------
def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} is not a number: {value!r:.40}")
    return value


def read_update(event: dict) -> tuple[int, float, float | None, int]:
    """(event_id, ts seconds, price, cumulative volume) of a quote/full event, or ValueError.

    `price` may be None (the analytics skip and count it); a missing or negative cumulative
    volume, or a missing receive time, is garbage."""
    cum = event.get("volume")
    if isinstance(cum, bool) or not isinstance(cum, int) or cum < 0:
        if isinstance(cum, float) and cum.is_integer() and cum >= 0:
            cum = int(cum)
        else:
            raise ValueError(f"volume is not a cumulative volume: {cum!r:.40}")
    ts = _number(event.get("recv_ts"), "recv_ts") / 1e9
    price = event.get("ltp")
    if price is not None:
        price = _number(price, "ltp")
    return int(event.get("event_id") or 0), ts, price, cum


def best_prices(event: dict) -> tuple[float | None, float | None]:
    """The best bid and ask of a depth event (None for an empty side)."""
    bids, asks = event.get("bids") or [], event.get("asks") or []
    bid = _number(bids[0][0], "bid") if bids else None
    ask = _number(asks[0][0], "ask") if asks else None
    return (bid if bid and bid > 0 else None), (ask if ask and ask > 0 else None)


def usable_tick(tick) -> tuple[float, bool]:
    """The instrument's tick in rupees, or DEFAULT_TICK (and False) when the master has none."""
    try:
        tick = float(tick)
    except (TypeError, ValueError):
        return DEFAULT_TICK, False
    return (tick, True) if math.isfinite(tick) and tick > 0 else (DEFAULT_TICK, False)


class Backlog:
    """Events waiting to be folded into a model, taken APPLY_CHUNK at a time per repaint tick,
    so that loading a day of history (100,000 updates: about 2 s of Python) never freezes the
    window: it repaints, and says how far it got, between chunks."""

    def __init__(self, chunk: int = APPLY_CHUNK):
        self.items: deque[dict] = deque()
        self.chunk = chunk

    def add(self, events: Iterable[dict]) -> None:
        self.items.extend(events)

    def take(self) -> list[dict]:
        popleft = self.items.popleft
        return [popleft() for _ in range(min(self.chunk, len(self.items)))]

    def clear(self) -> None:
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)


# ---- the model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Info:
    """The numbers of the info box."""

    poc: float | None
    val: float | None
    vah: float | None
    total: int
    high: float | None
    low: float | None
    vwap: float | None
    vwap_source: str          # "exchange" (the feed's ATP) or "profile" (computed from the rows)
    last: float | None
    from_poc_points: float | None
    from_poc_ticks: int | None

    @property
    def range(self) -> float | None:
        return None if self.high is None else round(self.high - self.low, 10)


@dataclass(frozen=True)
class PreviousSession:
    """The previous stored session's levels (None: that day had no volume)."""

    day: date
    poc: float | None
    val: float | None
    vah: float | None
    updates: int


class TapeModel:
    """What the profile models share: the day's tape of updates (and gaps) in event_id order,
    folded from events of any stream. A subclass supplies `_quote(event) -> bool` (read one
    quote, `_insert` it), `_book(entry)` (add one tape entry to its builders), `rebuild()`
    (its builders anew from the tape), and `_depth(event)` if it uses the book."""

    key: tuple[str, int]
    tape: list[tuple]
    quotes: int
    gaps: int
    tickers: int
    bad: int
    last: float | None

    def apply(self, events: Iterable[dict]) -> None:
        """Fold a batch of events (any streams) into the model; garbage is counted, not raised."""
        late = False
        for event in events:
            try:
                if (event.get("exchange_segment"), event.get("security_id")) != self.key:
                    continue
                kind = event.get("type")
                if kind in QUOTE_TYPES:
                    late |= self._quote(event)
                elif kind == "depth":
                    self._depth(event)
                elif kind == GAP:
                    late |= self._insert((int(event.get("event_id") or 0), GAP))
                    self.gaps += 1
                elif kind == "ticker":
                    self.tickers += 1
                    if self.quotes == 0 and event.get("ltp") is not None:
                        self.last = _number(event["ltp"], "ltp")
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                self.bad += 1
                log.debug("unreadable event %r: %s", event, exc)
        if late:
            self.rebuild()

    def _depth(self, event: dict) -> None:
        """Depth events: ignored unless the model uses the book."""

    def _insert(self, entry: tuple) -> bool:
        """Append (and book) an entry; True when it belongs before the end (rebuild needed)."""
        if self.tape and entry[0] < self.tape[-1][0]:
            bisect.insort(self.tape, entry, key=lambda e: e[0])
            return True
        self.tape.append(entry)
        self._book(entry)
        return False


class VolumeProfileModel(TapeModel):
    """One instrument's profile for the day, rebuilt from the kept tape when a setting changes.

    The tape holds, in event_id order, one `(event_id, ts, price, cum_volume, bid, ask)` tuple
    per quote/full update (bid/ask: the best prices known from depth at that moment, or None)
    and one `(event_id, GAP)` per reconnect gap. A gap that arrives after later updates (the
    gaps stream is read from Redis after the database history) is put in its place and the
    profile rebuilt, so the volume missed during a reconnect is never attributed to a price.
    """

    def __init__(self, key: tuple[str, int], tick: float, row_ticks: int = 1, fraction: float = 0.70,
                 method: str = "dual", sample_seconds: int = 60):
        self.key = key
        self.tick = tick
        self.sample_seconds = sample_seconds
        self.tape: list[tuple] = []
        self.bid: float | None = None
        self.ask: float | None = None
        self.book_ts: float | None = None
        self.last: float | None = None
        self.atp: float | None = None
        self.high: float | None = None
        self.low: float | None = None
        self.closes: dict[int, float] = {}  # minute bucket -> last price in it
        self.bad = 0          # events that could not be read
        self.tickers = 0      # ticker events (no volume: a ticker-mode subscription)
        self.quotes = 0
        self.gaps = 0
        self.quote_ruled = 0  # updates booked with a usable best bid/ask (quote rule)
        self.previous: PreviousSession | None = None
        self._previous_tape: list[tuple] = []
        self.row_ticks, self.fraction, self.method = row_ticks, fraction, method
        self.builder = self._new_builder()

    # ---- settings ----------------------------------------------------------------------------
    def _new_builder(self) -> ProfileBuilder:
        return ProfileBuilder(self.tick, self.row_ticks, self.fraction, self.method,
                              sample_seconds=self.sample_seconds)

    def configure(self, row_ticks: int | None = None, fraction: float | None = None,
                  method: str | None = None) -> None:
        """Change a setting and rebuild today's profile and the previous session from memory."""
        new = (row_ticks or self.row_ticks, fraction or self.fraction, method or self.method)
        ProfileBuilder(self.tick, *new)  # validates: a bad setting raises before anything changes
        self.row_ticks, self.fraction, self.method = new
        self.rebuild()
        if self.previous is not None:
            self.previous = self._previous_levels(self.previous.day, self._previous_tape)

    def rebuild(self) -> None:
        self.builder = self._new_builder()
        for entry in self.tape:
            self._book(entry)

    # ---- events ------------------------------------------------------------------------------
    def _depth(self, event: dict) -> None:
        bid, ask = best_prices(event)
        self.bid, self.ask = bid, ask
        self.book_ts = _number(event.get("recv_ts"), "recv_ts") / 1e9

    def _quote(self, event: dict) -> bool:
        event_id, ts, price, cum = read_update(event)
        bid = ask = None
        if self.book_ts is not None and abs(ts - self.book_ts) <= DEPTH_FRESH_S:
            bid, ask = self.bid, self.ask
        self.quotes += 1
        if bid is not None and ask is not None:
            self.quote_ruled += 1
        atp = event.get("atp")
        if isinstance(atp, (int, float)) and not isinstance(atp, bool) and math.isfinite(atp) and atp > 0:
            self.atp = float(atp)
        if price is not None:
            self.last = price
            self.high = price if self.high is None else max(self.high, price)
            self.low = price if self.low is None else min(self.low, price)
            self.closes[bucket_start(ts, self.sample_seconds)] = price
        return self._insert((event_id, ts, price, cum, bid, ask))

    def _book(self, entry: tuple) -> None:
        if entry[1] == GAP:
            self.builder.gap()
            return
        _, ts, price, cum, bid, ask = entry
        self.builder.add(price, cum, ts=ts, bid=bid, ask=ask)

    # ---- previous session --------------------------------------------------------------------
    def set_previous(self, day: date | None, events: Sequence[dict]) -> None:
        """The previous session's stored events (quotes and gaps, event_id order); day None: none."""
        if day is None:
            self.previous, self._previous_tape = None, []
            return
        tape: list[tuple] = []
        for event in events:
            try:
                if event.get("type") == GAP:
                    tape.append((int(event.get("event_id") or 0), GAP))
                elif event.get("type") in QUOTE_TYPES:
                    event_id, ts, price, cum = read_update(event)
                    tape.append((event_id, ts, price, cum, None, None))
            except (TypeError, ValueError, KeyError):
                continue
        tape.sort(key=lambda e: e[0])
        self._previous_tape = tape
        self.previous = self._previous_levels(day, tape)

    def _previous_levels(self, day: date, tape: list[tuple]) -> PreviousSession:
        builder = ProfileBuilder(self.tick, self.row_ticks, self.fraction, self.method)
        for entry in tape:
            if entry[1] == GAP:
                builder.gap()
            else:
                builder.add(entry[2], entry[3])
        levels = builder.profile().levels
        return PreviousSession(day, *(levels or (None, None, None)), updates=len(tape))

    # ---- what the view draws -----------------------------------------------------------------
    def profile(self) -> Profile:
        return self.builder.profile()

    def developing(self) -> list[LevelsAt]:
        return self.builder.developing()

    def price_path(self) -> list[tuple[int, float]]:
        """(minute bucket start, last price in it), in time order."""
        return sorted(self.closes.items())

    @property
    def row_height(self) -> float:
        return self.row_ticks * self.tick

    def row_centre(self, price: float) -> float:
        """Where a row whose lowest price is `price` is drawn: the middle of its ticks."""
        return price + (self.row_ticks - 1) * self.tick / 2

    def info(self, profile: Profile | None = None) -> Info:
        profile = profile if profile is not None else self.profile()
        total = sum(profile.volumes)
        vwap, source = self.atp, "exchange"
        if vwap is None and total:
            vwap = sum(self.row_centre(p) * v for p, v in zip(profile.prices, profile.volumes)) / total
            source = "profile"
        points = ticks = None
        if profile.poc is not None and self.last is not None:
            ticks = units(self.last, self.tick) - units(profile.poc, self.tick)
            points = grid_price(ticks, self.tick)
        return Info(profile.poc, profile.val, profile.vah, total, self.high, self.low, vwap, source,
                    self.last, points, ticks)

    def rule(self) -> str:
        """Which rule splits bought from sold volume, in words."""
        if self.quote_ruled:
            return "quote rule (best bid/ask from depth), tick rule inside the spread"
        return "tick rule (no depth for this instrument)"


# ---- the previous session from the database (worker thread) --------------------------------
def previous_session_day(engine, key: tuple[str, int], today: date) -> date | None:
    """The IST date of the newest stored quote of `key` before `today` (None: nothing stored)."""
    from sqlalchemy import func, select

    from ..live import day_start_ns
    from ..schema import quotes

    query = select(func.max(quotes.c.recv_ts)).where(
        quotes.c.security_id == key[1], quotes.c.exchange_segment == key[0],
        quotes.c.recv_ts < day_start_ns(today))
    with engine.connect() as conn:
        newest = conn.execute(query).scalar()
    if newest is None:
        return None
    return datetime.fromtimestamp(newest / 1e9, IST).date()


def load_previous_session(engine, key: tuple[str, int], today: date | None = None
                          ) -> tuple[date | None, list[dict]]:
    """(day, its quote and gap events) of the previous stored session of `key`; (None, []) when
    none is stored. Blocking (run in a worker); raises SQLAlchemyError when the database is down.
    Gaps are read when the database has them (older databases have no gaps table)."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..live import read_history

    from sqlalchemy import inspect

    if not inspect(engine).has_table("dhan_quotes"):
        return None, []  # no writer has stored anything in this database yet
    day = previous_session_day(engine, key, today or ist_today())
    if day is None:
        return None, []
    events = read_history(engine, day, {bus.STREAM_QUOTES: None}, {key})
    try:
        events += read_history(engine, day, {bus.STREAM_GAPS: None}, {key})
    except SQLAlchemyError as exc:
        log.info("previous session: no gaps read (%s)", exc)
    events.sort(key=lambda e: e["event_id"])
    return day, events


# ---- the window ----------------------------------------------------------------------------
def _fmt_price(value: float | None, tick: float) -> str:
    if value is None:
        return "–"
    decimals = max(2, len(f"{tick:.6f}".rstrip("0").partition(".")[2]))
    return f"{value:,.{decimals}f}"


def _fmt_volume(value: int) -> str:
    return f"{value:,}"


PREV, PREV_VA = "#ba68c8", "#ce93d8"  # the previous session's lines (dashed)


def colour(hex_colour: str, alpha: int) -> pg.QtGui.QColor:
    c = pg.mkColor(hex_colour)
    c.setAlpha(alpha)
    return c

class VolumeProfileWindow(LiveWindow):
    title = "Volume profile"
    streams = (bus.STREAM_QUOTES, bus.STREAM_DEPTH, bus.STREAM_GAPS, bus.STREAM_TICKS)

    def __init__(self, settings, initial=None, *, feed=None):
        super().__init__(settings, initial, feed=feed)
        self.model: VolumeProfileModel | None = None
        self._previous_future = None
        self._previous_key = None
        self.backlog = Backlog()
        self._drawn_at = 0.0
        self._previous_note = ""
        self._tick_note = ""
        self._build_toolbar()
        self._build_plots()
        self.finish_layout()

    # ---- layout ------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QToolBar("settings", self)
        bar.setMovable(False)
        bar.addWidget(QLabel(" Ticks per row "))
        self.row_ticks_box = QSpinBox()
        self.row_ticks_box.setRange(1, 10_000)
        self.row_ticks_box.setValue(1)
        self.row_ticks_box.setKeyboardTracking(False)
        bar.addWidget(self.row_ticks_box)
        bar.addWidget(QLabel("   Value area "))
        self.fraction_box = QSpinBox()
        self.fraction_box.setRange(1, 100)
        self.fraction_box.setValue(70)
        self.fraction_box.setSuffix(" %")
        self.fraction_box.setKeyboardTracking(False)
        bar.addWidget(self.fraction_box)
        bar.addWidget(QLabel("   Rule "))
        self.method_box = QComboBox()
        self.method_box.addItem("dual (two rows at a time)", "dual")
        self.method_box.addItem("single (one row at a time)", "single")
        bar.addWidget(self.method_box)
        self.addToolBar(bar)
        self.row_ticks_box.valueChanged.connect(self._settings_changed)
        self.fraction_box.valueChanged.connect(self._settings_changed)
        self.method_box.currentIndexChanged.connect(self._settings_changed)

    def _build_plots(self) -> None:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        self.graphics = pg.GraphicsLayoutWidget()
        self.time_plot = self.graphics.addPlot(
            row=0, col=0, axisItems={"bottom": pg.DateAxisItem(utcOffset=-IST_OFFSET_S)})
        self.profile_plot = self.graphics.addPlot(row=0, col=1)
        self.graphics.ci.layout.setColumnStretchFactor(0, 2)
        self.graphics.ci.layout.setColumnStretchFactor(1, 3)
        self.time_plot.setTitle("developing POC / value area (IST)", color=theme.MUTED, size="9pt")
        self.profile_plot.setTitle("volume per price row: bought / sold / unknown", color=theme.MUTED,
                                   size="9pt")
        self.profile_plot.setYLink(self.time_plot)
        self.profile_plot.hideAxis("left")
        self.profile_plot.showAxis("right")
        self.profile_plot.setLabel("bottom", "volume")
        for plot in (self.time_plot, self.profile_plot):
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
        self.time_plot.setMouseEnabled(x=True, y=True)
        self.profile_plot.setMouseEnabled(x=False, y=True)

        # profile: value area band, bars (inside / outside the value area), level lines
        self.va_band = pg.LinearRegionItem(orientation="horizontal", movable=False,
                                           brush=colour(theme.VALUE_AREA, 28),
                                           pen=pg.mkPen(None))
        self.va_band.setZValue(-10)
        self.profile_plot.addItem(self.va_band, ignoreBounds=True)
        self.bars: dict[tuple[str, bool], pg.BarGraphItem] = {}
        for part, hex_colour in (("up", theme.UP), ("down", theme.DOWN), ("unknown", theme.NEUTRAL)):
            for inside in (True, False):
                item = pg.BarGraphItem(x0=[], y=[], width=[], height=1, pen=pg.mkPen(None),
                                       brush=colour(hex_colour, 230 if inside else 95))
                self.profile_plot.addItem(item)
                self.bars[(part, inside)] = item

        def line(hex_colour, width, style, name, position, anchor=(1, 1)):
            pen = pg.mkPen(hex_colour, width=width, style=style)
            item = pg.InfiniteLine(angle=0, movable=False, pen=pen, label=name,
                                   labelOpts={"position": position, "color": hex_colour,
                                              "anchors": [anchor, anchor],
                                              "fill": colour(theme.BACKGROUND, 190)})
            item.name = name
            item.setVisible(False)
            return item

        solid, dash, dot = Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine
        self.lines = {
            "poc": line(theme.ACCENT, 2, solid, "POC", 0.99),
            "vah": line(theme.VALUE_AREA, 1, solid, "VAH", 0.99),
            "val": line(theme.VALUE_AREA, 1, solid, "VAL", 0.99),
            "last": line(theme.TEXT, 1, dot, "last", 0.72),
        }
        self.prev_lines = {
            "poc": line(PREV, 1.5, dash, "prev POC", 0.03, (0, 1)),
            "vah": line(PREV_VA, 1, dash, "prev VAH", 0.33, (0, 1)),
            "val": line(PREV_VA, 1, dash, "prev VAL", 0.33, (0, 1)),
        }
        for item in self.lines.values():
            self.profile_plot.addItem(item, ignoreBounds=True)
        for item in self.prev_lines.values():
            self.profile_plot.addItem(item, ignoreBounds=True)
        # the previous session's levels near today's range are kept in view (auto-range)
        self.range_hint = pg.ScatterPlotItem([], [], size=1, pen=None, brush=colour(theme.BACKGROUND, 0))
        self.profile_plot.addItem(self.range_hint)
        self.time_prev_lines = {}
        for name, item in self.prev_lines.items():
            twin = pg.InfiniteLine(angle=0, movable=False, pen=item.pen)
            twin.setVisible(False)
            self.time_plot.addItem(twin, ignoreBounds=True)
            self.time_prev_lines[name] = twin

        # developing levels and the price, minute by minute
        self.dev_vah = self.time_plot.plot([], [], pen=pg.mkPen(theme.VALUE_AREA, width=1), stepMode=None)
        self.dev_val = self.time_plot.plot([], [], pen=pg.mkPen(theme.VALUE_AREA, width=1))
        self.dev_fill = pg.FillBetweenItem(self.dev_vah, self.dev_val, brush=colour(theme.VALUE_AREA, 30))
        self.time_plot.addItem(self.dev_fill)
        self.price_curve = self.time_plot.plot([], [], pen=pg.mkPen(theme.NEUTRAL, width=1))
        self.dev_poc = self.time_plot.plot([], [], pen=pg.mkPen(theme.ACCENT, width=2))

        self.profile_cross = Crosshair(self.profile_plot, self._describe_row)
        self.time_cross = Crosshair(self.time_plot, self._describe_time)

        self.info_label = QLabel()
        self.info_label.setTextFormat(Qt.TextFormat.RichText)
        self.info_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.info_label.setMinimumWidth(250)
        self.info_label.setWordWrap(True)
        panel = QFrame()
        panel.setStyleSheet(f"QFrame {{ background: {theme.PANEL}; border-radius: 6px; }}")
        panel_layout = QVBoxLayout(panel)
        panel_layout.addWidget(self.info_label)
        panel_layout.addStretch(1)
        panel.setFixedWidth(300)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(panel)
        self.add_body(row)

    # ---- LiveWindow --------------------------------------------------------------------
    def reset(self, instruments) -> None:
        instrument = instruments[0]
        tick, known = usable_tick(instrument.tick_size)
        self._tick_note = "" if known else \
            f"the scrip master has no tick size for this instrument: rows use {tick}"
        self.model = VolumeProfileModel(instrument.key, tick, self.row_ticks_box.value(),
                                        self.fraction_box.value() / 100,
                                        self.method_box.currentData())
        self.backlog.clear()
        self._previous_note = "previous session: loading…"
        self._previous_future = None
        engine = self.feed.engine
        if engine is None:
            self._previous_note = "previous session: no database configured"
        else:
            self._previous_key = instrument.key
            self._previous_future = bridge.background().submit(
                load_previous_session, engine, instrument.key, ist_today())
        self._notes()

    def apply(self, events) -> None:
        self.backlog.add(events)
        self._fold()

    def _fold(self) -> None:
        if self.model is not None and len(self.backlog):
            self.model.apply(self.backlog.take())
            self._notes()

    def tick(self) -> None:
        future = self._previous_future
        if future is not None and bridge.when_done(future, self._previous_ready, self._previous_failed):
            self._previous_future = None
        if len(self.backlog):
            self._fold()
            self.dirty = True
        super().tick()
        self._notes()

    def _previous_ready(self, result) -> None:
        if self.model is None or self._previous_key != self.model.key:
            return
        day, events = result
        self.model.set_previous(day, events)
        previous = self.model.previous
        if previous is None:
            self._previous_note = "no previous session stored"
        elif previous.poc is None:
            self._previous_note = f"previous session {day}: no volume stored"
        else:
            self._previous_note = ""
        self._notes()
        self.dirty = True

    def _previous_failed(self, exc: BaseException) -> None:
        self._previous_note = f"previous session: database unreachable ({type(exc).__name__})"
        log.warning("previous session not loaded: %s", exc)
        self._notes()
        self.dirty = True

    def _notes(self) -> None:
        """The message line: what is wrong or missing (left alone before an instrument is chosen,
        when the base window says why none is)."""
        model = self.model
        if model is None:
            return
        notes = [self._tick_note, self._previous_note]
        if len(self.backlog):
            notes.append(f"loading: {len(self.backlog):,} events still to read")
        elif not model.quotes and not model.tickers and self.feed.status.phase == "live":
            notes.append("no trade of this instrument today yet (an empty day, or the feed does not "
                         "subscribe it)")
        if model.bad:
            notes.append(f"skipped {model.bad} event{'s' if model.bad > 1 else ''} that could not be read")
        if model.tickers and not model.quotes:
            notes.append("only ticker events for this instrument: no volume, so no profile "
                         "(subscribe it in quote or full mode)")
        if model.builder.skipped:
            notes.append(f"{model.builder.skipped} updates without a price (volume in no row)")
        text = " · ".join(n for n in notes if n)
        if text != self.message.text():
            self.say(text)

    def _settings_changed(self, *_args) -> None:
        if self.model is None:
            return
        try:
            self.model.configure(self.row_ticks_box.value(), self.fraction_box.value() / 100,
                                 self.method_box.currentData())
        except ValueError as exc:
            self.say(f"setting not applied: {exc}")
            return
        self.profile_plot.enableAutoRange()
        self.time_plot.enableAutoRange()
        self.dirty = True

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self) -> None:
        model = self.model
        if model is None:
            return
        now = time.monotonic()
        if now - self._drawn_at < REDRAW_EVERY_S:
            self.dirty = True  # drawn very recently: again at a later tick
            return
        self._drawn_at = now
        profile = model.profile()
        self._draw_profile(model, profile)
        self._draw_developing(model)
        self._draw_previous(model)
        self._draw_info(model, profile)

    def _draw_profile(self, model: VolumeProfileModel, profile: Profile) -> None:
        height = model.row_height
        if not profile.prices:
            for item in self.bars.values():
                item.setOpts(x0=[], y=[], width=[], height=height)
            for item in self.lines.values():
                item.setVisible(False)
            self.va_band.setVisible(False)
            return
        prices = np.asarray(profile.prices)
        centres = prices + (model.row_ticks - 1) * model.tick / 2
        up, down = np.asarray(profile.up), np.asarray(profile.down)
        unknown = np.asarray(profile.volumes) - up - down
        inside = (prices >= profile.val - 1e-9) & (prices <= profile.vah + 1e-9)
        starts = {"up": np.zeros(len(up)), "down": up, "unknown": up + down}
        widths = {"up": up, "down": down, "unknown": unknown}
        for (part, in_va), item in self.bars.items():
            mask = (inside if in_va else ~inside) & (widths[part] > 0)
            item.setOpts(x0=starts[part][mask], y=centres[mask], width=widths[part][mask],
                         height=height * 0.9)
        for name, price in (("poc", profile.poc), ("vah", profile.vah), ("val", profile.val)):
            self._place(self.lines[name], model.row_centre(price), price)
        if model.last is not None:
            self._place(self.lines["last"], model.last, model.last)
        self.va_band.setRegion((profile.val - model.tick / 2,
                                profile.vah + (model.row_ticks - 0.5) * model.tick))
        self.va_band.setVisible(True)

    def _place(self, line, y: float, price: float) -> None:
        """Put a level line at `y` (its row's middle), labelled with the level's price."""
        line.setPos(y)
        text = f"{line.name} {_fmt_price(price, self.model.tick)}"
        line.label.setFormat(text)
        line.label.setText(text)  # the label skips its own update while hidden
        line.setVisible(True)

    def _draw_developing(self, model: VolumeProfileModel) -> None:
        developing = model.developing()
        if developing:
            # each point holds until the end of its minute: draw as steps ending "now"
            xs = [d.ts for d in developing] + [developing[-1].ts + model.sample_seconds]
            step = lambda values: values + values[-1:]  # noqa: E731
            self.dev_poc.setData(xs, step([model.row_centre(d.poc) for d in developing]),
                                 stepMode="right")
            self.dev_vah.setData(xs, step([model.row_centre(d.vah) for d in developing]),
                                 stepMode="right")
            self.dev_val.setData(xs, step([model.row_centre(d.val) for d in developing]),
                                 stepMode="right")
        else:
            for curve in (self.dev_poc, self.dev_vah, self.dev_val):
                curve.setData([], [])
        path = model.price_path()
        if path:
            self.price_curve.setData([t + model.sample_seconds for t, _ in path], [p for _, p in path])
        else:
            self.price_curve.setData([], [])

    def _draw_previous(self, model: VolumeProfileModel) -> None:
        previous = model.previous
        near = []
        if previous is not None and previous.poc is not None and model.high is not None:
            reach = max(2 * (model.high - model.low), 200 * model.tick)
            near = [model.row_centre(v) for v in (previous.val, previous.poc, previous.vah)
                    if model.low - reach <= v <= model.high + reach]
        self.range_hint.setData([0] * len(near), near)
        for name, item in self.prev_lines.items():
            price = None if previous is None else getattr(previous, name)
            twin = self.time_prev_lines[name]
            if price is None:
                item.setVisible(False)
                twin.setVisible(False)
                continue
            self._place(item, model.row_centre(price), price)
            twin.setPos(model.row_centre(price))
            twin.setVisible(True)

    def _draw_info(self, model: VolumeProfileModel, profile: Profile) -> None:
        info = model.info(profile)
        tick = model.tick
        p = lambda v: _fmt_price(v, tick)  # noqa: E731
        rows = [
            ("POC", p(info.poc), theme.ACCENT),
            ("VAH", p(info.vah), theme.VALUE_AREA),
            ("VAL", p(info.val), theme.VALUE_AREA),
            ("Total volume", _fmt_volume(info.total), theme.TEXT),
            ("Range", "–" if info.range is None else f"{p(info.range)} pts", theme.TEXT),
            ("High", p(info.high), theme.MUTED),
            ("Low", p(info.low), theme.MUTED),
            (f"VWAP ({info.vwap_source})", p(info.vwap), theme.TEXT),
            ("Last", p(info.last), theme.TEXT),
        ]
        if info.from_poc_ticks is not None:
            sign = "+" if info.from_poc_ticks > 0 else ""
            side = theme.UP if info.from_poc_ticks > 0 else theme.DOWN if info.from_poc_ticks < 0 else theme.TEXT
            rows.append(("Last − POC", f"{sign}{p(info.from_poc_points)} pts", side))
            rows.append(("", f"{sign}{info.from_poc_ticks} ticks", side))
        else:
            rows.append(("Last − POC", "–", theme.TEXT))
        previous = model.previous
        if previous is None:
            prev = [("Previous session", self._previous_note or "no previous session stored", theme.MUTED)]
        elif previous.poc is None:
            prev = [(f"Previous {previous.day:%d %b}", "no volume stored", theme.MUTED)]
        else:
            prev = [(f"Prev POC ({previous.day:%d %b})", p(previous.poc), PREV),
                    ("Prev VAH / VAL", f"{p(previous.vah)} / {p(previous.val)}", PREV_VA)]
        html = ["<table cellspacing='0' cellpadding='3' width='100%'>"]
        for name, value, hex_colour in rows + prev:
            hex_colour = theme.MUTED if value == "–" else hex_colour
            html.append(f"<tr><td style='color:{theme.MUTED}'>{name}</td>"
                        f"<td align='right' style='color:{hex_colour}; font-weight:bold'>{value}</td></tr>")
        html.append("</table>")
        html.append(f"<p style='color:{theme.MUTED}; font-size:9pt'>rows of {model.row_ticks} tick"
                    f"{'s' if model.row_ticks > 1 else ''} ({p(model.row_height)}); value area "
                    f"{model.fraction:.0%} {model.method}; up/down by {model.rule()}; "
                    f"{model.quotes:,} updates, {model.gaps} reconnect gaps</p>")
        self.info_label.setText("".join(html))
        self.info = info

    # ---- crosshair readouts ------------------------------------------------------------
    def _describe_row(self, x: float, y: float) -> str:
        model = self.model
        if model is None:
            return ""
        profile = model.profile()
        if not profile.prices:
            return _fmt_price(y, model.tick)
        row = (units(y, model.tick) // model.row_ticks) * model.row_ticks
        price = grid_price(row, model.tick)
        i = round((price - profile.prices[0]) / model.row_height)
        if not 0 <= i < len(profile.prices):
            return f"{_fmt_price(price, model.tick)}: no volume"
        return (f"{_fmt_price(price, model.tick)}: {profile.volumes[i]:,} "
                f"(bought {profile.up[i]:,}, sold {profile.down[i]:,})")

    def _describe_time(self, x: float, y: float) -> str:
        when = datetime.fromtimestamp(x, IST).strftime("%H:%M")
        return f"{when} IST  {_fmt_price(y, self.model.tick if self.model else 0.05)}"



def main(argv: list[str] | None = None) -> int:
    from ..gui.app import run_window, window_parser

    parser = window_parser("volume_profile", "Today's volume profile of one instrument: POC, value area, "
                           "developing POC and the previous session's levels.")
    return run_window("volume_profile",
                      lambda settings, args: VolumeProfileWindow(settings, " ".join(args.search) or None),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
