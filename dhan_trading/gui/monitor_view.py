"""The FNO Services Monitor view: a tab of the control center and, alone, the window of
`python -m dhan_trading.services.monitor`.

Two `Poller` threads read Redis once a second and the database every 10 s (services.monitor's
`Collector`); a 1 Hz timer on the GUI thread drains what they queued into the pure
`MonitorModel` and repaints. No Redis or database call ever runs on the GUI thread, so Redis
going away shows "disconnected" (or "not answering for N s" when it hangs) instead of freezing.
Each figure has its value, coloured by the thresholds of `services.monitor.THRESHOLDS`, and a
sparkline of the last 10 minutes.
"""
from __future__ import annotations

import math
import threading
import time

import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..config import Settings, mask_url
from ..services.monitor import (
    BAD,
    DB_COUNT_EVERY_S,
    GROUPS,
    IDLE,
    METRICS,
    OK,
    SAMPLE_EVERY_S,
    WARN,
    Collector,
    GroupStatus,
    Metric,
    MonitorModel,
    Poller,
    thresholds_for,
)
from . import theme

REFRESH_MS = 1000
_LINE = {OK: theme.ACCENT, WARN: theme.STATE[WARN], BAD: theme.STATE[BAD], IDLE: theme.MUTED}


class Sparkline(pg.PlotWidget):
    """A small plot without axes: the last `window_s` seconds of one figure."""

    def __init__(self, window_s: float, parent=None):
        super().__init__(parent=parent, background=theme.PANEL)
        self.setFixedHeight(34)
        self.setMinimumWidth(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseEnabled(False, False)
        self.setMenuEnabled(False)
        self.hideButtons()
        for axis in ("left", "bottom"):
            self.hideAxis(axis)
        self.getPlotItem().setContentsMargins(0, 2, 0, 2)
        self.setXRange(-window_s, 0, padding=0)
        self.enableAutoRange(axis="y")
        self.curve = self.plot([], [], connect="finite")
        self.level = None

    def show_points(self, xs: list[float], ys: list[float], level: str) -> None:
        if level != self.level:
            self.level = level
            colour = _LINE[level]
            self.curve.setPen(pg.mkPen(colour, width=1.5))
            self.curve.setFillLevel(0)
            fill = pg.mkColor(colour)
            fill.setAlpha(50)
            self.curve.setBrush(fill)
        if any(math.isfinite(y) for y in ys):
            self.curve.setData(xs, ys, connect="finite")
        else:
            self.curve.setData([], [])


class MetricRow:
    """Label, value (coloured by level) and sparkline of one metric, in a group's grid."""

    def __init__(self, metric: Metric, grid: QGridLayout, row: int, window_s: float):
        self.metric = metric
        self.name = QLabel(metric.label)
        self.name.setStyleSheet(f"color: {theme.MUTED};")
        self.value = QLabel("—")
        self.value.setObjectName("value")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.spark = Sparkline(window_s)
        rules = "; ".join(f"warn {w}, critical {c}" for w, c in (t.describe() for t in thresholds_for(metric.key)))
        self.rules = f"{metric.help}." + (f"\nThresholds: {rules}." if rules else "")
        for w in (self.name, self.value, self.spark):
            w.setToolTip(self.rules)
        grid.addWidget(self.name, row, 0)
        grid.addWidget(self.value, row, 1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(self.spark, row, 2)
        self.level = None
        self._paint(IDLE)

    def show(self, model: MonitorModel, now: float) -> None:
        judged = model.judge(self.metric.key)
        text = model.text(self.metric.key)
        if text != self.value.text():
            self.value.setText(text)
        self._paint(judged.level)
        self.value.setToolTip(self.rules + (f"\nNow: {judged.reason}" if judged.reason else ""))
        xs, ys = model.points(self.metric.key, now)
        self.spark.show_points(xs, ys, judged.level)

    def _paint(self, level: str) -> None:
        if level == self.level:
            return
        self.level = level
        if level in (WARN, BAD):
            style = (f"QLabel#value {{ background: {theme.STATE[level]}; color: white; font-weight: bold; "
                     "border-radius: 3px; padding: 1px 6px; }")
        else:
            colour = theme.TEXT if level == OK else theme.MUTED
            style = f"QLabel#value {{ color: {colour}; font-weight: bold; padding: 1px 6px; }}"
        self.value.setStyleSheet(style)


class GroupBox(QGroupBox):
    """One part of the pipeline: a status pill (heartbeat, connection) and its metrics."""

    def __init__(self, group: str, window_s: float, parent=None):
        super().__init__(GROUPS[group], parent)
        self.group = group
        self.setStyleSheet(f"QGroupBox {{ font-weight: bold; border: 1px solid {theme.GRID}; border-radius: 4px;"
                           " margin-top: 10px; padding-top: 6px; }"
                           " QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(4)
        self.pill = QLabel("…")
        self.pill.setObjectName("pill")
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {theme.MUTED};")
        self.problem.hide()
        layout.addWidget(self.pill, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.problem)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(2, 1)
        self.rows = [MetricRow(m, grid, i, window_s) for i, m in enumerate(x for x in METRICS if x.group == group)]
        layout.addLayout(grid)
        layout.addStretch(1)
        self.status = GroupStatus(IDLE, "")
        self._paint(GroupStatus(IDLE, "waiting for the first sample…"))

    def show(self, model: MonitorModel, now: float) -> None:
        self._paint(model.group_status(self.group, now))
        for row in self.rows:
            row.show(model, now)

    def _paint(self, status: GroupStatus) -> None:
        if status == self.status:
            return
        self.status = status
        self.pill.setText(status.text)
        self.pill.setStyleSheet(f"QLabel#pill {{ background: {theme.STATE[status.level]}; color: white; "
                                "border-radius: 4px; padding: 2px 8px; font-weight: bold; }")
        self.problem.setText(status.problem or "")
        self.problem.setVisible(bool(status.problem))
        self.pill.setToolTip(status.problem or status.text)


class MonitorView(QWidget):
    """The monitor: `MonitorView(settings)`. `collector` and `start=False` are for tests and
    screenshots (a model fed by hand); `heartbeat_service` makes it publish its own heartbeat
    (only when it runs as the registry's services_monitor process)."""

    def __init__(self, settings: Settings, parent=None, *, collector: Collector | None = None,
                 model: MonitorModel | None = None, heartbeat_service: str | None = None,
                 start: bool = True, refresh_ms: int = REFRESH_MS):
        super().__init__(parent)
        self.settings = settings
        self.model = model or MonitorModel()
        self.collector = collector or Collector.for_settings(settings, heartbeat_service=heartbeat_service)
        self.halt = threading.Event()
        self.pollers: list[Poller] = []

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        top = QHBoxLayout()
        heading = QLabel("FNO Services Monitor")
        heading.setStyleSheet(f"font-weight: bold; font-size: 13pt; color: {theme.TEXT};")
        self.where = QLabel(self._where())
        self.where.setStyleSheet(f"color: {theme.MUTED};")
        self.updated = QLabel("")
        self.updated.setStyleSheet(f"color: {theme.MUTED};")
        top.addWidget(heading)
        top.addSpacing(16)
        top.addWidget(self.where, 1)
        top.addWidget(self.updated)
        layout.addLayout(top)
        grid = QGridLayout()
        grid.setSpacing(8)
        self.groups = {g: GroupBox(g, self.model.window_s) for g in GROUPS}
        grid.addWidget(self.groups["feed"], 0, 0, 2, 1)
        grid.addWidget(self.groups["redis"], 0, 1)
        grid.addWidget(self.groups["writer"], 1, 1)
        grid.addWidget(self.groups["db"], 2, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid, 1)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.destroyed.connect(self.halt.set)  # a tab closed with its window: the threads end too
        if start:
            self.start(refresh_ms)

    def _where(self) -> str:
        redis_at = mask_url(self.settings.redis_url) if self.settings.redis_url else "embedded Redis"
        return f"{redis_at} · {mask_url(self.settings.database_url())}"

    def start(self, refresh_ms: int = REFRESH_MS) -> None:
        """Start the reading threads and the repaint timer."""
        if not self.pollers:
            c = self.collector
            self.pollers = [Poller("monitor-redis", c.read_redis, SAMPLE_EVERY_S, self.halt, on_exit=c.close_redis),
                            Poller("monitor-db", c.count_rows, DB_COUNT_EVERY_S, self.halt, on_exit=c.close_db)]
            for p in self.pollers:
                p.start()
        self.timer.start(refresh_ms)

    def stop(self) -> None:
        """Stop the timer and the threads (they finish their current read, in the background)."""
        self.timer.stop()
        self.halt.set()

    def refresh(self, now: float | None = None) -> None:
        """Timer tick: fold what the threads read into the model and repaint (GUI thread)."""
        for poller in self.pollers:
            for sample in poller.drain():
                self.model.add(sample)
        self.collector.gui_seen = time.time()
        self.repaint_model(now)

    def repaint_model(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for box in self.groups.values():
            box.show(self.model, now)
        if self.model.latest_ts is not None:
            self.updated.setText(f"updated {max(0.0, now - self.model.latest_ts):.0f} s ago · "
                                 f"sparklines: last {self.model.window_s / 60:.0f} min")

    # ---- for tests and the control center ---------------------------------------------------------
    def row(self, key: str) -> MetricRow:
        return next(r for box in self.groups.values() for r in box.rows if r.metric.key == key)

    def value_text(self, key: str) -> str:
        return self.row(key).value.text()

    def value_level(self, key: str) -> str:
        return self.row(key).level

    def group_text(self, group: str) -> str:
        return self.groups[group].pill.text()

    def group_level(self, group: str) -> str:
        return self.groups[group].status.level

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)
