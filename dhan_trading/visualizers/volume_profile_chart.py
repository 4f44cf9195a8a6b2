"""Candles with a volume profile beside each bucket (issue 10):
`python -m dhan_trading.visualizers.volume_profile_chart [SEARCH]`.

Each bucket of the IST clock (5 minutes by default) is one candle (analytics.bars time bars)
and, to its right, that bucket's own volume profile (analytics.profile BucketProfiles, rolling:
the newest bucket grows as trades come). The POC of each bucket is marked, and a line joins the
bucket POCs, each segment coloured by where the POC went (up green, down red, unchanged grey):
POC migration. Volume per bucket is drawn underneath. Settings: bucket minutes, ticks per row
(auto: a round row size near 0.005% of the price), value-area %.

`ProfileChartModel` is the pure part (no Qt calls): it keeps the day's tape, folds it into the
builders and knows which buckets changed since the last repaint, so the view redraws only the
growing bucket's profile, not the day's.
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtGui import QPainter, QPicture
from PyQt6.QtWidgets import QCheckBox, QComboBox, QLabel, QSpinBox, QToolBar

from .. import bus
from ..analytics.bars import Bar, TimeBarBuilder
from ..analytics.clock import IST_OFFSET_S, bucket_start
from ..analytics.grid import units
from ..analytics.profile import BucketProfiles, Profile
from ..gui import theme
from ..gui.crosshair import Crosshair
from ..gui.window import LiveWindow
from ..scheduler.calendar import IST
from .volume_profile import (GAP, REDRAW_EVERY_S, Backlog, TapeModel, _fmt_price, colour,
                             read_update, usable_tick)

log = logging.getLogger(__name__)

BUCKET_MINUTES = (1, 3, 5, 10, 15, 30, 60)
ROW_SHARE = 0.00005  # auto rows: about 0.005% of the price (NIFTY 24,000: 1 point)
FOLLOW_BUCKETS = 16  # buckets in view while following the latest (room for each profile)


def auto_row_ticks(price: float, tick: float) -> int:
    """Ticks per row for a round row size near ROW_SHARE of `price` (1, 2, 2.5 or 5 x 10^k):
    a 5-minute bucket of an index future then has some ten to thirty rows."""
    target = abs(price) * ROW_SHARE
    if not math.isfinite(target) or target <= tick:
        return 1
    power = 10 ** math.floor(math.log10(target))
    size = min((m * power for m in (1, 2, 2.5, 5, 10)), key=lambda s: abs(s - target))
    return max(1, round(size / tick))


class TrackedBucketProfiles(BucketProfiles):
    """BucketProfiles that also tells which buckets changed and gives one bucket's profile
    (BucketProfiles.profiles() builds every bucket: O(day) per repaint)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed: set[int] = set()

    def add(self, ts, price, cum_volume, bid=None, ask=None) -> int:
        volume = super().add(ts, price, cum_volume, bid, ask)
        if volume:
            self.changed.add(bucket_start(ts, self.seconds, self.offset))
        return volume

    def starts(self) -> list[int]:
        return sorted(self._rows)

    def profile(self, start: int) -> Profile:
        rows = self._rows.get(start)
        if rows is None:
            return Profile()
        return rows.profile(self.tape.tick, self.row_ticks, self.fraction, self.method)


class ProfileChartModel(TapeModel):
    """Candles and per-bucket profiles of one instrument for the day, rebuilt from the kept
    tape when a setting changes (same tape and gap rules as volume_profile.VolumeProfileModel)."""

    def __init__(self, key: tuple[str, int], tick: float, minutes: int = 5, row_ticks: int | None = None,
                 fraction: float = 0.70, method: str = "dual"):
        self.key, self.tick = key, tick
        self.minutes, self.fixed_row_ticks, self.fraction, self.method = minutes, row_ticks, fraction, method
        self.tape: list[tuple] = []
        self.bad = self.tickers = self.quotes = self.gaps = 0
        self.last: float | None = None
        self.row_ticks = row_ticks
        self._reset_builders()

    @property
    def seconds(self) -> int:
        return self.minutes * 60

    def _reset_builders(self) -> None:
        if self.fixed_row_ticks:
            self.row_ticks = self.fixed_row_ticks
        elif self.tape:
            first = next((e[2] for e in self.tape if e[1] != GAP and e[2] is not None), None)
            self.row_ticks = auto_row_ticks(first, self.tick) if first is not None else None
        else:
            self.row_ticks = None
        self.bars_builder = TimeBarBuilder(self.seconds)
        self.profiles: TrackedBucketProfiles | None = None
        if self.row_ticks:
            self._new_profiles()
        self.generation = getattr(self, "generation", 0) + 1  # the view drops its cached buckets

    def _new_profiles(self) -> None:
        self.profiles = TrackedBucketProfiles(self.tick, self.seconds, self.row_ticks, self.fraction,
                                              self.method)

    def configure(self, minutes: int | None = None, row_ticks: int | None = None,
                  fraction: float | None = None) -> None:
        """Change settings (row_ticks 0 or None: auto) and rebuild from the tape."""
        minutes = minutes or self.minutes
        fraction = fraction or self.fraction
        TrackedBucketProfiles(self.tick, minutes * 60, row_ticks or 1, fraction, self.method)  # validates
        self.minutes, self.fixed_row_ticks, self.fraction = minutes, row_ticks or None, fraction
        self.rebuild()

    def rebuild(self) -> None:
        self._reset_builders()
        for entry in self.tape:
            self._book(entry)

    def _quote(self, event: dict) -> bool:
        event_id, ts, price, cum = read_update(event)
        self.quotes += 1
        if price is not None:
            self.last = price
        return self._insert((event_id, ts, price, cum))

    def _book(self, entry: tuple) -> None:
        if entry[1] == GAP:
            self.bars_builder.gap()
            if self.profiles is not None:
                self.profiles.gap()
            return
        _, ts, price, cum = entry
        if self.profiles is None and price is not None and math.isfinite(price):
            self.row_ticks = auto_row_ticks(price, self.tick)  # auto: decided by the first price
            self._new_profiles()
        if self.profiles is not None:
            self.profiles.add(ts, price, cum)
        self.bars_builder.add(ts, price, cum)

    # ---- what the view draws -----------------------------------------------------------------
    def bars(self) -> list[Bar]:
        return self.bars_builder.bars()

    def take_changed(self) -> set[int]:
        """Buckets whose profile changed since the last call."""
        if self.profiles is None:
            return set()
        changed, self.profiles.changed = self.profiles.changed, set()
        return changed

    def profile(self, start: int) -> Profile:
        return self.profiles.profile(start) if self.profiles is not None else Profile()

    def pocs(self) -> list[tuple[int, float]]:
        """(bucket start, POC price) of every bucket with volume, in time order."""
        if self.profiles is None:
            return []
        out = []
        for start in self.profiles.starts():
            poc = self.profile(start).poc
            if poc is not None:
                out.append((start, poc))
        return out

    def row_centre(self, price: float) -> float:
        return price + ((self.row_ticks or 1) - 1) * self.tick / 2


# ---- drawing ---------------------------------------------------------------------------------
# Where things sit inside a bucket of width W starting at S: the candle, then the profile.
CANDLE_AT, CANDLE_W = 0.16, 0.20
PROFILE_AT, PROFILE_W = 0.32, 0.62


class CandlesItem(pg.GraphicsObject):
    """All candles in one QPicture (a day has at most a few hundred), rebuilt when bars change."""

    def __init__(self):
        super().__init__()
        self.picture = QPicture()
        self._rect = QRectF()

    def set_bars(self, bars: list[Bar], seconds: int) -> None:
        self.picture = QPicture()
        painter = QPainter(self.picture)
        up, down = pg.mkColor(theme.UP), pg.mkColor(theme.DOWN)
        for bar in bars:
            c = up if bar.close >= bar.open else down
            x = bar.start_ts + seconds * CANDLE_AT
            w = seconds * CANDLE_W
            painter.setPen(pg.mkPen(c, width=1))
            painter.drawLine(pg.QtCore.QPointF(x, bar.low), pg.QtCore.QPointF(x, bar.high))
            painter.setBrush(pg.mkBrush(c))
            top, bottom = max(bar.open, bar.close), min(bar.open, bar.close)
            painter.drawRect(QRectF(x - w / 2, bottom, w, max(top - bottom, 1e-9)))
        painter.end()
        if bars:
            self._rect = QRectF(bars[0].start_ts, min(b.low for b in bars), bars[-1].end_ts - bars[0].start_ts,
                                max(b.high for b in bars) - min(b.low for b in bars))
        else:
            self._rect = QRectF()
        self.prepareGeometryChange()
        self.update()

    def paint(self, painter, *args) -> None:
        painter.drawPicture(0, 0, self.picture)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return QRectF(self.picture.boundingRect()) if not self._rect.isValid() else self._rect


class VolumeProfileChartWindow(LiveWindow):
    title = "Volume profile chart"
    streams = (bus.STREAM_QUOTES, bus.STREAM_GAPS, bus.STREAM_TICKS)

    def __init__(self, settings, initial=None, *, feed=None):
        super().__init__(settings, initial, feed=feed)
        self.model: ProfileChartModel | None = None
        self.profile_items: dict[int, pg.BarGraphItem] = {}
        self.poc_by_bucket: dict[int, float] = {}
        self._generation = None
        self._tick_note = ""
        self.backlog = Backlog()
        self._drawn_at = 0.0
        self._build_toolbar()
        self._build_plots()
        self.finish_layout()

    def _build_toolbar(self) -> None:
        bar = QToolBar("settings", self)
        bar.setMovable(False)
        bar.addWidget(QLabel(" Bucket "))
        self.minutes_box = QComboBox()
        for m in BUCKET_MINUTES:
            self.minutes_box.addItem(f"{m} min", m)
        self.minutes_box.setCurrentIndex(BUCKET_MINUTES.index(5))
        bar.addWidget(self.minutes_box)
        bar.addWidget(QLabel("   Ticks per row "))
        self.row_ticks_box = QSpinBox()
        self.row_ticks_box.setRange(0, 100_000)
        self.row_ticks_box.setSpecialValueText("auto")
        self.row_ticks_box.setValue(0)
        self.row_ticks_box.setKeyboardTracking(False)
        bar.addWidget(self.row_ticks_box)
        bar.addWidget(QLabel("   Value area "))
        self.fraction_box = QSpinBox()
        self.fraction_box.setRange(1, 100)
        self.fraction_box.setValue(70)
        self.fraction_box.setSuffix(" %")
        self.fraction_box.setKeyboardTracking(False)
        bar.addWidget(self.fraction_box)
        self.follow_box = QCheckBox("follow latest")
        self.follow_box.setChecked(True)
        self.follow_box.setToolTip(f"keep the newest {FOLLOW_BUCKETS} buckets in view; "
                                   "panning or zooming the chart stops following")
        bar.addWidget(QLabel("   "))
        bar.addWidget(self.follow_box)
        self.summary = QLabel("")
        self.summary.setStyleSheet(f"color: {theme.MUTED};")
        self.addToolBar(bar)
        self.follow_box.toggled.connect(lambda on: setattr(self, "dirty", self.dirty or on))
        self.minutes_box.currentIndexChanged.connect(self._settings_changed)
        self.row_ticks_box.valueChanged.connect(self._settings_changed)
        self.fraction_box.valueChanged.connect(self._settings_changed)

    def _build_plots(self) -> None:
        self.graphics = pg.GraphicsLayoutWidget()
        self.price_plot = self.graphics.addPlot(
            row=0, col=0, axisItems={"bottom": pg.DateAxisItem(utcOffset=-IST_OFFSET_S)})
        self.volume_plot = self.graphics.addPlot(
            row=1, col=0, axisItems={"bottom": pg.DateAxisItem(utcOffset=-IST_OFFSET_S)})
        self.graphics.ci.layout.setRowStretchFactor(0, 4)
        self.graphics.ci.layout.setRowStretchFactor(1, 1)
        self.volume_plot.setXLink(self.price_plot)
        self.price_plot.hideAxis("bottom")
        self.price_plot.showAxis("right")
        self.volume_plot.showAxis("right")
        self.volume_plot.setLabel("left", "volume")
        for plot in (self.price_plot, self.volume_plot):
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
        self.volume_plot.setMouseEnabled(x=True, y=False)
        for plot in (self.price_plot, self.volume_plot):
            plot.vb.sigRangeChangedManually.connect(lambda *_: self.follow_box.setChecked(False))
        self.candles = CandlesItem()
        self.price_plot.addItem(self.candles)
        self.poc_marks = pg.PlotDataItem([], [], pen=pg.mkPen(theme.ACCENT, width=3), connect="pairs")
        self.price_plot.addItem(self.poc_marks)
        self.migration = {
            "up": pg.PlotDataItem([], [], pen=pg.mkPen(theme.UP, width=2), connect="pairs"),
            "down": pg.PlotDataItem([], [], pen=pg.mkPen(theme.DOWN, width=2), connect="pairs"),
            "flat": pg.PlotDataItem([], [], pen=pg.mkPen(theme.NEUTRAL, width=2), connect="pairs"),
        }
        for item in self.migration.values():
            item.setZValue(20)
            self.price_plot.addItem(item)
        self.poc_points = pg.ScatterPlotItem([], [], size=7, symbol="d", pen=pg.mkPen(theme.BACKGROUND),
                                             brush=pg.mkBrush(theme.ACCENT))
        self.poc_points.setZValue(21)
        self.price_plot.addItem(self.poc_points)
        self.last_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(theme.TEXT, style=Qt.PenStyle.DotLine),
                                         label="last", labelOpts={"position": 0.02, "color": theme.TEXT,
                                                                  "anchors": [(0, 1), (0, 1)],
                                                                  "fill": colour(theme.BACKGROUND, 190)})
        self.last_line.setVisible(False)
        self.price_plot.addItem(self.last_line, ignoreBounds=True)
        self.volume_up = pg.BarGraphItem(x0=[], height=[], width=1, y0=0, pen=pg.mkPen(None),
                                         brush=colour(theme.UP, 200))
        self.volume_down = pg.BarGraphItem(x0=[], height=[], width=1, y0=0, pen=pg.mkPen(None),
                                           brush=colour(theme.DOWN, 200))
        self.volume_plot.addItem(self.volume_up)
        self.volume_plot.addItem(self.volume_down)
        self.crosshair = Crosshair(self.price_plot, self._describe)
        self.add_body(self.summary, 0)
        self.add_body(self.graphics)

    # ---- LiveWindow ----------------------------------------------------------------------------
    def reset(self, instruments) -> None:
        instrument = instruments[0]
        tick, known = usable_tick(instrument.tick_size)
        self._tick_note = "" if known else f"the scrip master has no tick size for this instrument: rows use {tick}"
        self.model = ProfileChartModel(instrument.key, tick, self.minutes_box.currentData(),
                                       self.row_ticks_box.value() or None, self.fraction_box.value() / 100)
        self.backlog.clear()
        self._clear_profiles()
        self._notes()

    def apply(self, events) -> None:
        self.backlog.add(events)
        self._fold()

    def _fold(self) -> None:
        if self.model is not None and len(self.backlog):
            self.model.apply(self.backlog.take())
            self._notes()

    def tick(self) -> None:
        if len(self.backlog):
            self._fold()
            self.dirty = True
        super().tick()
        self._notes()

    def _notes(self) -> None:
        """The message line: what is wrong or missing (left alone before an instrument is chosen,
        when the base window says why none is)."""
        model = self.model
        if model is None:
            return
        notes = [self._tick_note]
        if len(self.backlog):
            notes.append(f"loading: {len(self.backlog):,} events still to read")
        elif not model.quotes and not model.tickers and self.feed.status.phase == "live":
            notes.append("no trade of this instrument today yet (an empty day, or the feed does not "
                         "subscribe it)")
        if model.bad:
            notes.append(f"skipped {model.bad} event{'s' if model.bad > 1 else ''} that could not be read")
        if model.tickers and not model.quotes:
            notes.append("only ticker events for this instrument: no volume, so no profiles "
                         "(subscribe it in quote or full mode)")
        text = " · ".join(n for n in notes if n)
        if text != self.message.text():
            self.say(text)

    def _settings_changed(self, *_args) -> None:
        if self.model is None:
            return
        try:
            self.model.configure(self.minutes_box.currentData(), self.row_ticks_box.value() or None,
                                 self.fraction_box.value() / 100)
        except ValueError as exc:
            self.say(f"setting not applied: {exc}")
            return
        self.dirty = True

    # ---- drawing -------------------------------------------------------------------------------
    def _clear_profiles(self) -> None:
        for item in self.profile_items.values():
            self.price_plot.removeItem(item)
        self.profile_items.clear()
        self.poc_by_bucket.clear()
        self._generation = None

    def redraw(self) -> None:
        model = self.model
        if model is None:
            return
        now = time.monotonic()
        if now - self._drawn_at < REDRAW_EVERY_S:
            self.dirty = True  # drawn very recently: again at a later tick
            return
        self._drawn_at = now
        if self._generation != model.generation:
            self._clear_profiles()
            self._generation = model.generation
            changed = set(model.profiles.starts()) if model.profiles is not None else set()
            model.take_changed()
        else:
            changed = model.take_changed()
        seconds = model.seconds
        bars = model.bars()
        self.candles.set_bars(bars, seconds)
        for start in sorted(changed):
            self._draw_bucket(model, start)
        self._draw_pocs(model)
        self._draw_volume(bars, seconds)
        if model.last is not None:
            self.last_line.setPos(model.last)
            text = f"last {_fmt_price(model.last, model.tick)}"
            self.last_line.label.setFormat(text)
            self.last_line.label.setText(text)
            self.last_line.setVisible(True)
        else:
            self.last_line.setVisible(False)
        if bars and self.follow_box.isChecked():
            self._follow(bars, seconds)
        self._summary(model, bars)

    def _follow(self, bars: list[Bar], seconds: int) -> None:
        """Keep the newest FOLLOW_BUCKETS buckets in view, the axes fitted to them."""
        end = bars[-1].start_ts + seconds * 1.02
        start = end - seconds * FOLLOW_BUCKETS
        shown = [b for b in bars if b.start_ts >= start - 1]
        low, high = min(b.low for b in shown), max(b.high for b in shown)
        pad = max((high - low) * 0.06, self.model.tick * (self.model.row_ticks or 1))
        self.price_plot.setXRange(start, end, padding=0)
        self.price_plot.setYRange(low - pad, high + pad, padding=0)
        self.volume_plot.setYRange(0, max(b.volume for b in shown) * 1.08, padding=0)

    def _draw_bucket(self, model: ProfileChartModel, start: int) -> None:
        """One bucket's profile: rows scaled so its largest row fills the space beside the candle."""
        profile = model.profile(start)
        item = self.profile_items.get(start)
        if not profile.prices:
            return
        seconds = model.seconds
        prices = np.asarray(profile.prices)
        volumes = np.asarray(profile.volumes, dtype=float)
        keep = volumes > 0
        centres = prices + (model.row_ticks - 1) * model.tick / 2
        widths = volumes / volumes.max() * seconds * PROFILE_W
        inside = (prices >= profile.val - 1e-9) & (prices <= profile.vah + 1e-9)
        poc = np.isclose(prices, profile.poc)
        brushes = [pg.mkBrush(colour(theme.ACCENT, 235)) if p else
                   pg.mkBrush(colour(theme.NEUTRAL, 170 if i else 70)) for p, i in zip(poc[keep], inside[keep])]
        opts = dict(x0=np.full(int(keep.sum()), start + seconds * PROFILE_AT), y=centres[keep],
                    width=widths[keep], height=model.row_ticks * model.tick * 0.85, brushes=brushes,
                    pen=pg.mkPen(None))
        if item is None:
            item = pg.BarGraphItem(**opts)
            self.price_plot.addItem(item)
            self.profile_items[start] = item
        else:
            item.setOpts(**opts)
        self.poc_by_bucket[start] = profile.poc

    def _draw_pocs(self, model: ProfileChartModel) -> None:
        seconds = model.seconds
        pocs = sorted(self.poc_by_bucket.items())
        if not pocs:
            for item in (self.poc_marks, *self.migration.values()):
                item.setData([], [])
            self.poc_points.setData([], [])
            return
        xs, ys = [], []
        for start, poc in pocs:  # a mark across each bucket's profile space at its POC
            y = model.row_centre(poc)
            xs += [start + seconds * PROFILE_AT, start + seconds * (PROFILE_AT + PROFILE_W)]
            ys += [y, y]
        self.poc_marks.setData(xs, ys)
        mid = PROFILE_AT + PROFILE_W / 2
        points = [(start + seconds * mid, model.row_centre(poc)) for start, poc in pocs]
        self.poc_points.setData([p[0] for p in points], [p[1] for p in points])
        segments = {"up": ([], []), "down": ([], []), "flat": ([], [])}
        for (start_a, poc_a), (start_b, poc_b), a, b in zip(pocs, pocs[1:], points, points[1:]):
            step = units(poc_b, model.tick) - units(poc_a, model.tick)
            xs_, ys_ = segments["up" if step > 0 else "down" if step < 0 else "flat"]
            xs_ += [a[0], b[0]]
            ys_ += [a[1], b[1]]
        for name, (xs_, ys_) in segments.items():
            self.migration[name].setData(xs_, ys_)

    def _draw_volume(self, bars: list[Bar], seconds: int) -> None:
        for item, rising in ((self.volume_up, True), (self.volume_down, False)):
            chosen = [b for b in bars if (b.close >= b.open) == rising]
            item.setOpts(x0=[b.start_ts + seconds * 0.06 for b in chosen], height=[b.volume for b in chosen],
                         width=seconds * 0.88, y0=0)

    def _summary(self, model: ProfileChartModel, bars: list[Bar]) -> None:
        rows = f"rows of {model.row_ticks} ticks" if model.row_ticks else "rows: auto"
        if not bars:
            self.summary.setText(f"{model.minutes}-minute buckets, {rows}; no trades yet")
            return
        pocs = sorted(self.poc_by_bucket.items())
        move = ""
        if len(pocs) >= 2:
            diff = pocs[-1][1] - pocs[-2][1]
            arrow = "↑" if diff > 0 else "↓" if diff < 0 else "→"
            move = f", POC {arrow} {diff:+.2f} from the previous bucket"
        last = bars[-1]
        when = datetime.fromtimestamp(last.start_ts, IST).strftime("%H:%M")
        poc = f"POC {_fmt_price(pocs[-1][1], model.tick)}" if pocs else ""
        size = _fmt_price(model.row_ticks * model.tick, model.tick)
        self.summary.setText(f"{model.minutes}-minute buckets, {rows} ({size}"
                             f" pts) · {when} bucket: {last.volume:,} traded, {poc}{move}")

    def _describe(self, x: float, y: float) -> str:
        model = self.model
        if model is None:
            return ""
        price = _fmt_price(y, model.tick)
        start = bucket_start(x, model.seconds)
        bar = next((b for b in model.bars() if b.start_ts == start), None)
        when = datetime.fromtimestamp(start, IST).strftime("%H:%M")
        if bar is None:
            return f"{when} IST  {price}"
        poc = self.poc_by_bucket.get(start)
        p = lambda v: _fmt_price(v, model.tick)  # noqa: E731
        return (f"{when} IST · {price}\nO {p(bar.open)}  H {p(bar.high)}\nL {p(bar.low)}  C {p(bar.close)}\n"
                f"volume {bar.volume:,}\nPOC {p(poc)}")


def main(argv: list[str] | None = None) -> int:
    from ..gui.app import run_window, window_parser

    parser = window_parser("volume_profile_chart", "Candles with each bucket's volume profile beside it, "
                           "bucket POCs marked and their migration highlighted.")
    return run_window("volume_profile_chart",
                      lambda settings, args: VolumeProfileChartWindow(settings, " ".join(args.search) or None),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
