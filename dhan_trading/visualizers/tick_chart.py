"""N-tick candles of one instrument (issue 10): `python -m dhan_trading.visualizers.tick_chart [SEARCH]`.

What a trader sees (docs/VISUALIZERS.md has the picture and every element):

- candles of N ticks (presets 100/233/500/1000/2000 or any typed number), a tick being an update
  whose cumulative day volume rose (analytics.bars.TickBarBuilder); the forming bar is the last;
- volume bars below, green when the bar closed at or above its open, red below;
- the tick counter of the forming bar ("143 / 233 ticks"), the bars kept (a cap, 10,000 by
  default: older bars are dropped), and a thin dotted vertical line where a reconnect gap was;
- a crosshair whose readout gives the bar's time range (IST), OHLC, volume and ticks.

Drawing is the fast kind: `BarsItem` is a pyqtgraph GraphicsObject that records each finished
bar once into its own QPicture (lazily, the first time it is painted) and, in `paint`, replays
only the bars inside the rectangle Qt asks for (`option.exposedRect`). A new tick invalidates
only the forming bar's rectangle, so an update repaints one bar, not the day.

`TickChartModel` is the pure part (no Qt): it keeps the day's updates compactly (for re-binning
when N or the cap changes) and folds quote/full and gap events into the builder.
"""
from __future__ import annotations

import logging
import math
from array import array
from collections import deque
from collections.abc import Callable
from datetime import datetime

import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QPainter, QPicture
from PyQt6.QtWidgets import (
    QComboBox,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .. import bus
from ..analytics.bars import Bar, TickBarBuilder
from ..gui import theme
from ..gui.app import run_window, window_parser
from ..gui.crosshair import Crosshair
from ..gui.window import LiveWindow
from ..scheduler.calendar import IST

log = logging.getLogger(__name__)

PRESETS = (100, 233, 500, 1000, 2000)
DEFAULT_TICKS = 233
DEFAULT_MAX_BARS = 10_000
DEFAULT_VISIBLE = 150       # bars in view while following the live bar
QUOTE_TYPES = frozenset({"quote", "full"})
BODY = 0.35                 # half the width of a candle body, in bars
MAX_GAP_MARKS = 500


# ---- the model (no Qt) ---------------------------------------------------------------------
def read_quote(event: dict) -> tuple[float, float | None, int]:
    """(ts seconds, price, cumulative volume) of a quote/full event, or ValueError naming what
    is wrong. `ts` is the receive time (recv_ts, true UTC); a missing price is passed on (the
    builder skips and counts it)."""
    cum = event.get("volume")
    if isinstance(cum, float) and math.isfinite(cum) and cum.is_integer():
        cum = int(cum)
    if isinstance(cum, bool) or not isinstance(cum, int) or cum < 0:
        raise ValueError(f"volume is not a cumulative day volume: {cum!r:.40}")
    ts = event.get("recv_ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise ValueError(f"recv_ts is not a time: {ts!r:.40}")
    price = event.get("ltp")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))):
        raise ValueError(f"ltp is not a price: {price!r:.40}")
    return ts / 1e9, price, cum


class TickChartModel:
    """Tick bars of one instrument, live. Bars are numbered from 0 (the day's first) for ever:
    with the cap, `first_index` is the oldest bar still kept and `forming_index` the forming
    one's number (equal to the number of bars closed so far)."""

    def __init__(self, ticks_per_bar: int = DEFAULT_TICKS, max_bars: int = DEFAULT_MAX_BARS):
        self.ticks_per_bar, self.max_bars = ticks_per_bar, max_bars
        self.builder = TickBarBuilder(ticks_per_bar, max_bars)  # raises ValueError on bad values
        self.closed_total = 0
        self.gaps: deque[float] = deque(maxlen=MAX_GAP_MARKS)  # x of each gap mark
        self.updates = 0              # quote/full events applied
        self.bad = 0                  # events that could not be read
        self.last_problem: str | None = None
        self.generation = 0           # bumps when the bars are rebuilt (the view drops its cache)
        # the day's updates, for re-binning: ts, price (NaN when missing), cumulative volume;
        # a gap is stored as cumulative volume -1
        self._ts, self._price, self._cum = array("d"), array("d"), array("q")

    # ---- folding events ------------------------------------------------------------------
    def apply(self, events) -> int:
        """Fold a batch (quote/full and gap events of this instrument); returns how many could
        not be read (counted in `bad`, described in `last_problem`)."""
        bad = 0
        for event in events:
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "gap":
                self._store(0.0, math.nan, -1)
                self._gap()
                continue
            if kind not in QUOTE_TYPES:
                continue
            try:
                ts, price, cum = read_quote(event)
                self._add(ts, price, cum)
            except (ValueError, TypeError) as exc:
                bad += 1
                self.last_problem = str(exc)
                continue
            self._store(ts, math.nan if price is None else price, cum)
            self.updates += 1
        self.bad += bad
        return bad

    def _add(self, ts: float, price, cum: int) -> None:
        if self.builder.add(ts, price, cum) is not None:
            self.closed_total += 1

    def _gap(self) -> None:
        """A reconnect: the next update is a baseline; mark where it happened."""
        self.builder.gap()
        self.gaps.append(self.forming_index - (0.5 if self.builder.current is None else 0.0))

    def _store(self, ts: float, price: float, cum: int) -> None:
        self._ts.append(ts)
        self._price.append(price)
        self._cum.append(cum)

    def rebuild(self, ticks_per_bar: int, max_bars: int) -> None:
        """New settings: re-bin the day's updates (ValueError on bad settings, model unchanged)."""
        builder = TickBarBuilder(ticks_per_bar, max_bars)
        self.builder, self.ticks_per_bar, self.max_bars = builder, ticks_per_bar, max_bars
        self.closed_total = 0
        self.gaps.clear()
        self.generation += 1
        for ts, price, cum in zip(self._ts, self._price, self._cum):
            if cum < 0:
                self._gap()
            else:
                self._add(ts, None if math.isnan(price) else price, cum)

    # ---- reading the bars ----------------------------------------------------------------
    @property
    def first_index(self) -> int:
        return self.closed_total - len(self.builder.closed)

    @property
    def forming_index(self) -> int:
        return self.closed_total

    @property
    def forming(self) -> Bar | None:
        return self.builder.current

    @property
    def last_index(self) -> int:
        """The newest bar's number (the forming one if any), -1 before any."""
        return self.closed_total if self.builder.current is not None else self.closed_total - 1

    @property
    def forming_ticks(self) -> int:
        return self.builder.current.ticks if self.builder.current is not None else 0

    @property
    def ticks(self) -> int:
        return sum(b.ticks for b in self.builder.closed) + self.forming_ticks

    def bar_at(self, index: int) -> Bar | None:
        if index == self.closed_total:
            return self.builder.current
        if self.first_index <= index < self.closed_total:
            return self.builder.closed[index - self.first_index]
        return None

    def bars_between(self, lo: int, hi: int):
        """(index, bar) of the kept bars with lo <= index <= hi, oldest first."""
        first = self.first_index
        start, stop = max(lo, first), min(hi, self.closed_total - 1)
        closed = self.builder.closed
        if start <= stop:
            if stop - first < len(closed) // 2 or start - first < 64:
                for i in range(start, stop + 1):
                    yield i, closed[i - first]
            else:  # near the end of a long deque: walk it backwards, not from the middle
                out = []
                for k, bar in enumerate(reversed(closed)):
                    i = self.closed_total - 1 - k
                    if i < start:
                        break
                    if i <= stop:
                        out.append((i, bar))
                yield from reversed(out)
        if lo <= self.closed_total <= hi and self.builder.current is not None:
            yield self.closed_total, self.builder.current


def describe_bar(index: int, bar: Bar, ticks_per_bar: int) -> str:
    """The crosshair readout of one bar."""
    start = datetime.fromtimestamp(bar.start_ts, IST).strftime("%H:%M:%S")
    end = datetime.fromtimestamp(bar.end_ts, IST).strftime("%H:%M:%S")
    state = "" if bar.ticks >= ticks_per_bar else " (forming)"
    return (f"bar {index}{state}  {start} – {end} IST\n"
            f"O {bar.open:,.2f}  H {bar.high:,.2f}  L {bar.low:,.2f}  C {bar.close:,.2f}\n"
            f"volume {bar.volume:,}  ·  {bar.ticks} / {ticks_per_bar} ticks")


# ---- drawing -------------------------------------------------------------------------------
def draw_candle(p: QPainter, i: int, bar: Bar, pens: dict) -> None:
    up = bar.close >= bar.open
    p.setPen(pens["up_pen" if up else "down_pen"])
    p.drawLine(QPointF(i, bar.low), QPointF(i, bar.high))
    p.setBrush(pens["up_brush" if up else "down_brush"])
    top, bottom = max(bar.open, bar.close), min(bar.open, bar.close)
    if top > bottom:
        p.drawRect(QRectF(i - BODY, bottom, 2 * BODY, top - bottom))
    else:
        p.drawLine(QPointF(i - BODY, top), QPointF(i + BODY, top))


def draw_volume(p: QPainter, i: int, bar: Bar, pens: dict) -> None:
    up = bar.close >= bar.open
    p.setPen(pens["up_pen" if up else "down_pen"])
    p.setBrush(pens["up_brush" if up else "down_brush"])
    p.drawRect(QRectF(i - BODY, 0, 2 * BODY, bar.volume))


def _pens() -> dict:
    up, down = pg.mkColor(theme.UP), pg.mkColor(theme.DOWN)
    out = {"up_pen": pg.mkPen(up, width=1), "down_pen": pg.mkPen(down, width=1),
           "up_brush": pg.mkBrush(up), "down_brush": pg.mkBrush(down)}
    for key in ("up_pen", "down_pen"):
        out[key].setCosmetic(True)
    return out


def candle_extent(bar: Bar) -> tuple[float, float]:
    return bar.low, bar.high


def volume_extent(bar: Bar) -> tuple[float, float]:
    return 0.0, float(bar.volume)


class BarsItem(pg.GraphicsObject):
    """The model's bars, one cached QPicture per finished bar, painted only where exposed.

    `sync()` (from the window's repaint timer) invalidates only what changed: the forming bar's
    rectangle, plus the bar that just closed. Qt then repaints that region and calls `paint`
    with it as `option.exposedRect`; `paint` replays the cached pictures of the bars inside it
    and draws the forming bar fresh."""

    def __init__(self, model: TickChartModel, draw: Callable = draw_candle,
                 extent: Callable = candle_extent):
        super().__init__()
        self.model, self.draw, self.extent = model, draw, extent
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.pens = _pens()
        self.pictures: dict[int, QPicture] = {}
        self._bounds = QRectF()
        self._seen = (-1, -1, None)   # generation, closed_total, forming bar (copy) at last sync
        self.painted = 0              # bars drawn or replayed by the last paint (tests, benchmark)

    def set_model(self, model: TickChartModel) -> None:
        self.model = model
        self.pictures.clear()
        self._seen = (-1, -1, None)
        self.prepareGeometryChange()
        self._bounds = QRectF()
        self.update()

    # ---- what changed since the last sync ------------------------------------------------
    def sync(self) -> None:
        m = self.model
        generation, closed, forming = self._seen
        current = m.forming
        snapshot = None if current is None else (current.ticks, current.high, current.low, current.close)
        if generation != m.generation:
            self.pictures.clear()
            self.prepareGeometryChange()
            self._bounds = QRectF()
            self._grow_bounds()
            self.update()
        elif closed != m.closed_total or forming != snapshot:
            for i in [i for i in self.pictures if i < m.first_index]:
                del self.pictures[i]
            if self._grow_bounds():
                self.update()
            else:
                lo = closed if closed >= 0 else m.first_index
                for i in range(max(lo, m.first_index), m.last_index + 1):
                    self.update(self._bar_rect(i))
        self._seen = (m.generation, m.closed_total, snapshot)

    def _bar_rect(self, i: int) -> QRectF:
        bar = self.model.bar_at(i)
        if bar is None:
            return QRectF()
        y0, y1 = self.extent(bar)
        pad_x = 0.5 - BODY
        pad_y = max((y1 - y0) * 0.02, abs(self.pixelHeight() or 0.0) * 3, 1e-9)
        return QRectF(i - BODY - pad_x, y0 - pad_y, 2 * (BODY + pad_x), (y1 - y0) + 2 * pad_y)

    def _grow_bounds(self) -> bool:
        """Grow the bounding rect in steps (a change of geometry repaints the whole item, so it
        must be rare): x 256 bars ahead, y 10% of the range beyond the extremes."""
        m = self.model
        if m.last_index < m.first_index:
            return False
        b = self._bounds
        lo_x, hi_x = m.first_index - 1, m.last_index + 1
        new = None
        lows, highs = [], []
        for i in range(max(m.first_index, self._seen[1] if b.isValid() else m.first_index), m.last_index + 1):
            bar = m.bar_at(i)
            y0, y1 = self.extent(bar)
            lows.append(y0)
            highs.append(y1)
        if not b.isValid():
            y0, y1 = min(lows), max(highs)
            span = max(y1 - y0, abs(y1) * 0.01, 1.0)
            new = QRectF(lo_x, y0 - span * 0.1, (hi_x + 256) - lo_x, span * 1.2)
        else:
            y0, y1 = min(lows + [b.top()]), max(highs + [b.bottom()])
            if hi_x > b.right() or y0 < b.top() or y1 > b.bottom():
                span = max(y1 - y0, 1.0)
                left = min(b.left(), lo_x)
                new = QRectF(left, min(b.top(), y0 - span * 0.1), max(b.right(), hi_x + 256) - left,
                             0)
                new.setBottom(max(b.bottom(), y1 + span * 0.1))
        if new is None:
            return False
        self.prepareGeometryChange()
        self._bounds = new
        return True

    # ---- Qt --------------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)

    def paint(self, p: QPainter, option, widget=None) -> None:
        m = self.model
        rect = option.exposedRect if option is not None else self._bounds
        lo = math.ceil(rect.left() - BODY)     # bar i covers [i - BODY, i + BODY]
        hi = math.floor(rect.right() + BODY)
        painted = 0
        forming = m.forming_index if m.forming is not None else None
        for i, bar in m.bars_between(lo, hi):
            if i == forming:
                self.draw(p, i, bar, self.pens)
            else:
                picture = self.pictures.get(i)
                if picture is None:
                    picture = self.pictures[i] = self._record(i, bar)
                p.drawPicture(0, 0, picture)
            painted += 1
        self.painted = painted

    def _record(self, i: int, bar: Bar) -> QPicture:
        picture = QPicture()
        painter = QPainter(picture)
        self.draw(painter, i, bar, self.pens)
        painter.end()
        return picture


class GridItem(pg.GraphicsObject):
    """Faint grid lines at the axes' major ticks, painted only inside the exposed rectangle.

    pyqtgraph's own grid (`showGrid`) is drawn by the axes over the whole view and replays
    every line and label on any repaint, even of one bar: about 5 ms each time, which would
    be most of a window's CPU at a high tick rate."""

    def __init__(self, plot: pg.PlotItem, x_axis: str = "bottom", y_axis: str = "right"):
        super().__init__()
        self.plot, self.x_axis, self.y_axis = plot, plot.getAxis(x_axis), plot.getAxis(y_axis)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(-10)
        self.pen = pg.mkPen(theme.GRID, width=1)
        self.pen.setCosmetic(True)
        self.xs: list[float] = []
        self.ys: list[float] = []
        self._bounds = QRectF()
        plot.vb.sigRangeChanged.connect(self.refresh)
        plot.vb.sigResized.connect(self.refresh)

    def refresh(self, *_) -> None:
        (x0, x1), (y0, y1) = self.plot.vb.viewRange()
        size = self.plot.vb.size()
        self.xs = self._major(self.x_axis, x0, x1, size.width())
        self.ys = self._major(self.y_axis, y0, y1, size.height())
        self.prepareGeometryChange()
        self._bounds = QRectF(x0, y0, x1 - x0, y1 - y0)
        self.update()

    @staticmethod
    def _major(axis: pg.AxisItem, lo: float, hi: float, pixels: float) -> list[float]:
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or pixels <= 0:
            return []
        levels = axis.tickValues(lo, hi, pixels)
        return [float(v) for v in levels[0][1]] if levels else []

    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)

    def paint(self, p: QPainter, option, widget=None) -> None:
        rect = option.exposedRect
        p.setPen(self.pen)
        for x in self.xs:
            if rect.left() <= x <= rect.right():
                p.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        for y in self.ys:
            if rect.top() <= y <= rect.bottom():
                p.drawLine(QPointF(rect.left(), y), QPointF(rect.right(), y))


class LastPriceItem(pg.GraphicsObject):
    """The last price: a dotted line from the newest bar to the right edge, and a price tag on
    the price axis. Short, so a tick repaints a strip beside the forming bar, not the view's
    width (an InfiniteLine would repaint every bar on the price's row at each tick)."""

    def __init__(self, plot: pg.PlotItem, axis: str = "right"):
        super().__init__()
        self.plot, self.axis = plot, plot.getAxis(axis)
        self.pen = pg.mkPen(theme.ACCENT, width=1, style=Qt.PenStyle.DotLine)
        self.pen.setCosmetic(True)
        self.label = pg.TextItem(color=theme.BACKGROUND, fill=pg.mkBrush(theme.ACCENT), anchor=(0, 0.5))
        self.label.setParentItem(self.axis)      # on the axis, never over a candle
        self.label.setZValue(50)
        self.label.setVisible(False)
        self.at: tuple[float, float, float] | None = None   # x from, x to, price
        self._bounds = QRectF()
        plot.vb.sigRangeChanged.connect(self._place_label)
        plot.vb.sigResized.connect(self._place_label)

    def set(self, x: float | None, price: float | None) -> None:
        if x is None or price is None:
            self.at = None
            self.label.setVisible(False)
            self.prepareGeometryChange()
            self._bounds = QRectF()
            return
        right = self.plot.vb.viewRange()[0][1]
        at = (x + BODY, max(right, x + BODY), price)
        if at == self.at:
            return
        if self.at is None or self.at[2] != price:
            self.label.setText(f"{price:,.2f}")
        self.at = at
        self._place_label()
        pad = abs(self.pixelHeight() or 0.0) * 2 + 1e-9
        self.prepareGeometryChange()
        self._bounds = QRectF(at[0], price - pad, at[1] - at[0], 2 * pad)

    def _place_label(self, *_) -> None:
        if self.at is None:
            return
        (_, _), (y0, y1) = self.plot.vb.viewRange()
        inside = y0 <= self.at[2] <= y1
        self.label.setVisible(inside)
        if inside:
            scene = self.plot.vb.mapViewToScene(QPointF(self.at[0], self.at[2]))
            self.label.setPos(0, self.axis.mapFromScene(scene).y())

    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)

    def paint(self, p: QPainter, option, widget=None) -> None:
        if self.at is not None:
            p.setPen(self.pen)
            p.drawLine(QPointF(self.at[0], self.at[2]), QPointF(self.at[1], self.at[2]))


class BarTimeAxis(pg.AxisItem):
    """The x axis of bar numbers, labelled with each bar's start time (IST) at whole bars far
    enough apart for the labels not to overlap."""

    LABEL_PX = 90

    def __init__(self, label_for: Callable[[int], str | None], **kwargs):
        super().__init__(orientation="bottom", **kwargs)
        self.label_for = label_for
        self._major = 1.0

    def tickSpacing(self, minVal, maxVal, size):
        if not (size > 0 and maxVal > minVal):
            return [(1.0, 0.0)]
        need = self.LABEL_PX * (maxVal - minVal) / size      # bars between two labels
        major = next(step * 10 ** e for e in range(9) for step in (1, 2, 5) if step * 10 ** e >= need)
        self._major = float(major)
        minor = major / 5 if major >= 5 else (1 if major > 1 else None)
        return [(float(major), 0.0)] + ([(float(minor), 0.0)] if minor else [])

    def tickStrings(self, values, scale, spacing):
        if spacing != self._major:
            return [""] * len(values)
        return [self.label_for(round(v)) or "" for v in values]


# ---- the window ----------------------------------------------------------------------------
class TickChartWindow(LiveWindow):
    title = "Tick chart"
    streams = (bus.STREAM_QUOTES, bus.STREAM_GAPS)

    def __init__(self, settings, initial: str | None = None, *, feed=None,
                 ticks_per_bar: int = DEFAULT_TICKS, max_bars: int = DEFAULT_MAX_BARS,
                 visible_bars: int = DEFAULT_VISIBLE):
        super().__init__(settings, initial, feed=feed)
        self.model = TickChartModel(ticks_per_bar, max_bars)
        self.visible_bars = visible_bars
        self.following = True
        self._ranges = None
        self._follow_x = None
        self._gap_lines: list[pg.InfiniteLine] = []
        self._gaps_drawn = None
        self._said_empty = False
        self._bad_said = 0

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Ticks per bar"))
        self.ticks_box = QComboBox()
        self.ticks_box.setEditable(True)
        self.ticks_box.addItems([str(n) for n in PRESETS])
        self.ticks_box.setCurrentText(str(ticks_per_bar))
        self.ticks_box.setToolTip("a preset, or type any whole number and press Enter")
        self.ticks_box.lineEdit().returnPressed.connect(self._settings_changed)
        self.ticks_box.activated.connect(lambda _: self._settings_changed())
        controls.addWidget(self.ticks_box)
        controls.addWidget(QLabel("Bars kept"))
        self.cap_box = QSpinBox()
        self.cap_box.setRange(10, 1_000_000)
        self.cap_box.setSingleStep(1000)
        self.cap_box.setGroupSeparatorShown(True)
        self.cap_box.setValue(max_bars)
        self.cap_box.setToolTip("older bars are dropped beyond this many")
        self.cap_box.editingFinished.connect(self._settings_changed)
        controls.addWidget(self.cap_box)
        self.counter = QLabel(f"0 / {ticks_per_bar} ticks")
        self.counter.setToolTip("ticks in the forming bar")
        self.counter.setStyleSheet(f"font-weight: bold; color: {theme.ACCENT}; padding: 0 12px;")
        controls.addWidget(self.counter)
        self.summary = QLabel("")
        self.summary.setStyleSheet(f"color: {theme.MUTED};")
        controls.addWidget(self.summary, 1)
        self.follow_button = QPushButton("Follow live")
        self.follow_button.setCheckable(True)
        self.follow_button.setChecked(True)
        self.follow_button.setToolTip("keep the newest bar in view (panning the chart turns this off)")
        self.follow_button.toggled.connect(self._follow_toggled)
        controls.addWidget(self.follow_button)
        holder = QWidget()
        holder.setLayout(controls)
        self.add_body(holder, 0)

        self.plots = pg.GraphicsLayoutWidget()
        self.price_plot = self.plots.addPlot(row=0, col=0, axisItems={"bottom": BarTimeAxis(self._bar_label)})
        self.volume_plot = self.plots.addPlot(row=1, col=0, axisItems={"bottom": BarTimeAxis(self._bar_label)})
        self.plots.ci.layout.setRowStretchFactor(0, 3)
        self.plots.ci.layout.setRowStretchFactor(1, 1)
        self.plots.ci.layout.setVerticalSpacing(4)
        for plot in (self.price_plot, self.volume_plot):
            plot.disableAutoRange()
            plot.setMouseEnabled(x=True, y=False)
            plot.showAxis("right")
            plot.hideAxis("left")
            plot.getAxis("right").setWidth(72)
        self.price_plot.getAxis("bottom").setStyle(showValues=False)
        self.volume_plot.setXLink(self.price_plot)
        self.volume_plot.getAxis("right").setLabel("volume")
        self.candles = BarsItem(self.model, draw_candle, candle_extent)
        self.volumes = BarsItem(self.model, draw_volume, volume_extent)
        self.price_plot.addItem(self.candles)
        self.volume_plot.addItem(self.volumes)
        self.grids = [GridItem(self.price_plot), GridItem(self.volume_plot)]
        for plot, grid in zip((self.price_plot, self.volume_plot), self.grids):
            plot.addItem(grid, ignoreBounds=True)
        self.last_price = LastPriceItem(self.price_plot)
        self.price_plot.addItem(self.last_price, ignoreBounds=True)
        self.crosshair = Crosshair(self.price_plot, self._describe)
        for item in (self.crosshair.v, self.crosshair.h, self.crosshair.label):
            item.setVisible(False)   # until the mouse is over the chart
        self.price_plot.vb.sigRangeChangedManually.connect(self._panned)
        self.volume_plot.vb.sigRangeChangedManually.connect(self._panned)
        self.price_plot.vb.sigXRangeChanged.connect(lambda *_: self._fit_y())
        self.add_body(self.plots, 1)
        self.finish_layout()

    # ---- LiveWindow ----------------------------------------------------------------------
    def reset(self, instruments) -> None:
        self.model = TickChartModel(self.model.ticks_per_bar, self.model.max_bars)
        self.candles.set_model(self.model)
        self.volumes.set_model(self.model)
        self._said_empty = False
        self._bad_said = 0
        self._gaps_drawn = None
        self._ranges = self._follow_x = None
        self.following = True
        self.follow_button.setChecked(True)
        self.last_price.set(None, None)
        self.instrument = instruments[0] if instruments else None

    def select(self, instruments) -> None:
        super().select(instruments)
        i = self.instrument
        if i is not None and i.instrument == "INDEX":
            self.say(f"{i.trading_symbol} is an index: it has no traded volume, so no ticks to "
                     "make bars of; pick its future (e.g. \"NIFTY FUT\")")

    def apply(self, events) -> None:
        self.model.apply(events)
        if self.model.bad != self._bad_said:
            self._bad_said = self.model.bad
            self.say(f"skipped {self.model.bad:,} updates that could not be read "
                     f"(last: {self.model.last_problem})")
        elif self._said_empty and self.model.forming_ticks + self.model.closed_total:
            self._said_empty = False
            self.say("")

    def tick(self) -> None:
        super().tick()
        status = self.feed.status
        if (not self._said_empty and self.instruments and status.phase == "live"
                and self.model.updates == 0 and not self.message.text()):
            self._said_empty = True
            self.say("no trades of this instrument today yet: waiting for the first update")

    def redraw(self) -> None:
        m = self.model
        self.candles.sync()
        self.volumes.sync()
        self.counter.setText(f"{m.forming_ticks} / {m.ticks_per_bar} ticks")
        kept = m.closed_total - m.first_index
        self.summary.setText(f"{kept:,} bar{'' if kept == 1 else 's'} kept (cap {m.max_bars:,})"
                             + (f" · {m.first_index:,} older dropped" if m.first_index else "")
                             + (f" · {len(m.gaps)} gap{'s' if len(m.gaps) != 1 else ''}" if m.gaps else ""))
        self._draw_gaps()
        if self.following and m.last_index >= 0:
            # The view jumps an eighth of its width ahead when the forming bar reaches its right
            # edge: the whole chart repaints once per jump, not once per bar. Early in the day
            # (fewer bars than the view holds) it zooms to the bars there are.
            width = min(self.visible_bars, max(40, int((m.last_index - m.first_index + 1) * 1.2) + 4))
            view = self._follow_x
            if view is None or view[1] - view[0] != width \
                    or not (view[0] + 1 <= m.last_index <= view[1] - 1.5):
                hi = m.last_index + max(3, width // 8) + 0.5
                self._follow_x = (hi - width, hi)
                self.price_plot.setXRange(*self._follow_x, padding=0)
        self._fit_y()
        last = m.bar_at(m.last_index)
        self.last_price.set(m.last_index if last else None, last.close if last else None)

    # ---- the view ------------------------------------------------------------------------
    def _fit_y(self) -> None:
        """Price and volume ranges fit the bars in view; set only when they change (a range
        change repaints the whole plot, a tick alone repaints only its bar)."""
        lo, hi = self.price_plot.vb.viewRange()[0]
        low = high = None
        top = 0
        for _, bar in self.model.bars_between(math.floor(lo), math.ceil(hi)):
            low = bar.low if low is None else min(low, bar.low)
            high = bar.high if high is None else max(high, bar.high)
            top = max(top, bar.volume)
        if low is None:
            return
        x = (lo, hi)
        old = self._ranges
        if old is not None and old[0] == x and old[1][0] <= low and high <= old[1][1] and top <= old[2] \
                and (old[1][1] - old[1][0]) <= 3 * max(high - low, 1e-9):
            return
        span = max(high - low, abs(high) * 1e-4, 1e-6)
        y = (low - span * 0.08, high + span * 0.08)
        self.price_plot.setYRange(*y, padding=0)
        self.volume_plot.setYRange(0, top * 1.15 or 1, padding=0)
        self._ranges = (x, y, top * 1.15 or 1)

    def _draw_gaps(self) -> None:
        gaps = tuple(self.model.gaps)
        if gaps == self._gaps_drawn:
            return
        self._gaps_drawn = gaps
        for line in self._gap_lines:
            self.price_plot.removeItem(line)
        pen = pg.mkPen(theme.VALUE_AREA, width=1, style=Qt.PenStyle.DotLine)
        self._gap_lines = []
        for x in gaps:
            line = pg.InfiniteLine(pos=x, angle=90, movable=False, pen=pen)
            line.setToolTip("reconnect gap: the volume traded while disconnected is in no bar")
            self.price_plot.addItem(line, ignoreBounds=True)
            self._gap_lines.append(line)

    def _bar_label(self, index: int) -> str | None:
        bar = self.model.bar_at(index)
        if bar is None:
            return None
        return datetime.fromtimestamp(bar.start_ts, IST).strftime("%H:%M:%S")

    def _describe(self, x: float, y: float) -> str:
        for item in (self.crosshair.v, self.crosshair.h, self.crosshair.label):
            item.setVisible(True)
        lo, hi = self.price_plot.vb.viewRange()[0]
        # the readout sits on the side of the cursor with room for it
        self.crosshair.label.setAnchor((1 if x > (lo + hi) / 2 else 0, 1))
        index = round(x)
        bar = self.model.bar_at(index)
        price = f"{y:,.2f}"
        if bar is None:
            return price
        return f"{describe_bar(index, bar, self.model.ticks_per_bar)}\ncursor {price}"

    def _panned(self, *_) -> None:
        if self.following:
            self.following = False
            self.follow_button.setChecked(False)

    def _follow_toggled(self, on: bool) -> None:
        self.following = on
        if on:
            self._ranges = self._follow_x = None
            self.redraw()

    def _settings_changed(self) -> None:
        text = self.ticks_box.currentText().strip().replace(",", "")
        try:
            n = int(text)
            if n < 1:
                raise ValueError
        except ValueError:
            self.say(f"ticks per bar must be a whole number of at least 1, not {text!r}")
            return
        cap = self.cap_box.value()
        if (n, cap) == (self.model.ticks_per_bar, self.model.max_bars):
            return
        self.set_bar_settings(n, cap)

    def set_bar_settings(self, ticks_per_bar: int, max_bars: int) -> None:
        """Re-bin the day's updates into bars of `ticks_per_bar` ticks, keeping `max_bars`."""
        self.model.rebuild(ticks_per_bar, max_bars)
        self.ticks_box.setCurrentText(str(ticks_per_bar))
        self.cap_box.setValue(max_bars)
        self._ranges = self._follow_x = None
        self._gaps_drawn = None
        self.following = True
        self.follow_button.setChecked(True)
        self.say("")
        self.redraw()


def main(argv: list[str] | None = None) -> int:
    prog = "python -m dhan_trading.visualizers.tick_chart"
    parser = window_parser(prog, "N-tick candles with volume of one instrument (default: the "
                                 "NIFTY near-month future), history then live.")
    parser.add_argument("--ticks", type=int, default=DEFAULT_TICKS,
                        help=f"ticks per bar (default {DEFAULT_TICKS}; presets {', '.join(map(str, PRESETS))})")
    parser.add_argument("--max-bars", type=int, default=DEFAULT_MAX_BARS,
                        help=f"bars kept; older ones are dropped (default {DEFAULT_MAX_BARS:,})")
    parser.add_argument("--visible", type=int, default=DEFAULT_VISIBLE,
                        help=f"bars in view while following the live bar (default {DEFAULT_VISIBLE})")

    def make(settings, args):
        if args.ticks < 1 or args.max_bars < 1:
            parser.error("--ticks and --max-bars must be at least 1")
        return TickChartWindow(settings, " ".join(args.search) or None, ticks_per_bar=args.ticks,
                               max_bars=args.max_bars, visible_bars=max(args.visible, 10))

    return run_window(prog, make, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
