"""The control center's Schedule tab: today's plan from the market scheduler, a countdown to its
next action, the scheduler service's state (start/stop it here) and the calendar warning.

The plan is `scheduler.plan.day_plan`, the function behind `market_scheduler --plan DATE --json`,
run in a worker (the calendar reads its holiday files) for the services the scheduler schedules
by default (the registry's `scheduled` rows), so what is shown is what the scheduler executes.
"""
from __future__ import annotations

from datetime import datetime

from PyQt6.QtCore import QTimer
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                             QTableWidgetItem, QVBoxLayout, QWidget)

from ..scheduler.calendar import IST
from ..services.state import ACTIVE_STATES, RUNNING
from . import theme
from .jobs import Jobs

SCHEDULER_ID = "market_scheduler"


def compute_plan(settings, services, now: datetime | None = None) -> dict:
    """Today's plan (IST) plus the next window edge after now; blocking, run in a worker."""
    from ..scheduler.calendar import MarketCalendar
    from ..scheduler.plan import day_plan, next_change

    now = (now or datetime.now(IST)).astimezone(IST)
    scheduled = [s for s in services if s.scheduled]
    calendar = MarketCalendar(settings)
    plan = day_plan(calendar, now.date(), scheduled)
    nxt = next_change(calendar, now, scheduled)
    plan["next_change"] = nxt.isoformat() if nxt else None
    plan["computed_at"] = now.isoformat()
    return plan


def countdown(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ScheduleView(QWidget):
    def __init__(self, suite, jobs: Jobs, services_view, parent: QWidget | None = None):
        super().__init__(parent)
        self.suite, self.jobs, self.services_view = suite, jobs, services_view
        self.plan: dict | None = None
        self.loading = False

        self.title = QLabel("Today's plan: loading…")
        self.title.setStyleSheet("font-size: 15px; font-weight: bold")
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"background: {theme.STATE['warn']}; color: black; padding: 6px; "
                                   "border-radius: 4px")
        self.warning.hide()
        self.sessions = QLabel("")
        self.sessions.setWordWrap(True)
        self.next = QLabel("")
        self.next.setStyleSheet(f"font-size: 15px; color: {theme.ACCENT}")
        self.scheduler_state = QLabel("scheduler: ?")
        self.start_button = QPushButton("Start scheduler")
        self.stop_button = QPushButton("Stop scheduler")
        self.start_button.clicked.connect(lambda: services_view.act("start", SCHEDULER_ID))
        self.stop_button.clicked.connect(lambda: services_view.act("stop", SCHEDULER_ID))
        self.reload_button = QPushButton("Reload plan")
        self.reload_button.clicked.connect(self.load)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(("Time (IST)", "Action", "Service", "When"))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)

        sched = QHBoxLayout()
        sched.addWidget(self.scheduler_state, 1)
        sched.addWidget(self.start_button)
        sched.addWidget(self.stop_button)
        sched.addWidget(self.reload_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.warning)
        layout.addWidget(self.sessions)
        layout.addWidget(self.next)
        layout.addLayout(sched)
        layout.addWidget(self.table, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        services_view.changed.connect(self.tick)  # the scheduler's state as soon as it is read
        self.load()

    def load(self) -> None:
        if self.loading:
            return
        self.loading = True
        self.jobs.run(compute_plan, self.suite.settings, self.suite.services, done=self._got,
                      error=self._failed, name="cc-plan")

    def _failed(self, exc: BaseException) -> None:
        self.loading = False
        self.title.setText(f"Today's plan: could not be computed ({type(exc).__name__}: {exc})")

    def _got(self, plan: dict) -> None:
        self.loading = False
        self.plan = plan
        sessions = plan["sessions"]
        self.title.setText(f"Today's plan · {plan['date']} (IST)" + ("" if sessions else " · markets closed"))
        self.sessions.setText("Sessions: " + (", ".join(
            f"{s['exchange']} {s['kind']} {s.get('pre_open', s['open'])[11:16]}"
            f"{' pre-open, ' + s['open'][11:16] + ' open' if s.get('pre_open') else ''} – {s['close'][11:16]}"
            for s in sessions) or "none today"))
        warnings = plan.get("warnings") or []
        self.warning.setText("Calendar: " + " ".join(warnings))
        self.warning.setVisible(bool(warnings))
        self.table.setRowCount(len(plan["actions"]))
        for r, a in enumerate(plan["actions"]):
            at = datetime.fromisoformat(a["at"])
            when = a["at"][11:16] if a["at"].startswith(plan["date"]) else a["at"][:16].replace("T", " ")
            for c, text in enumerate((when, a["action"], a["service"], "")):
                self.table.setItem(r, c, QTableWidgetItem(text))
            self.table.item(r, 0).setData(256, at.timestamp())
        self.tick()

    def tick(self) -> None:
        row = self.suite.rows.get(SCHEDULER_ID)
        if row is not None:
            state = row["state"]
            colour = "#66bb6a" if state == RUNNING else theme.VALUE_AREA
            self.scheduler_state.setText(
                f"Market scheduler: <b style='color:{colour}'>{state}</b>"
                + ("" if state == RUNNING else " — services are not started or stopped at session times "
                   "while it is not running"))
            busy = SCHEDULER_ID in self.services_view.busy
            self.start_button.setEnabled(row["available"] and not busy and state not in ACTIVE_STATES)
            self.stop_button.setEnabled(not busy and state in ACTIVE_STATES)
        if self.plan is None:
            return
        now = datetime.now(IST)
        if now.date().isoformat() != self.plan["date"] and not self.loading:
            self.load()  # a new day in India: its plan
        upcoming = None
        for r in range(self.table.rowCount()):
            ts = self.table.item(r, 0).data(256)
            left = ts - now.timestamp()
            item = self.table.item(r, 3)
            item.setText("done" if left <= 0 else f"in {countdown(left)}")
            nxt = left > 0 and upcoming is None
            if nxt:
                upcoming = r
            colour = QColor(theme.MUTED if left <= 0 else theme.ACCENT if nxt else theme.TEXT)
            for c in range(4):
                self.table.item(r, c).setForeground(colour)
        if upcoming is not None:
            a = self.plan["actions"][upcoming]
            left = self.table.item(upcoming, 0).data(256) - now.timestamp()
            self.next.setText(f"Next: {a['action']} {a['service']} in {countdown(left)}")
        elif self.plan.get("next_change"):
            at = datetime.fromisoformat(self.plan["next_change"])
            self.next.setText(f"No more actions today · next change {at:%a %d %b %H:%M} IST "
                              f"(in {countdown(at.timestamp() - now.timestamp())})")
        else:
            self.next.setText("No scheduled action in the coming week")
