"""The control center's Services tab: every service of the registry, its state and health,
per-row Start / Stop / Restart, and Start all / Stop all with progress.

Nothing here decides anything about services: the rows are `Supervisor.status(...).to_json()`
(the very objects `services status --json` prints) read in a worker thread once a second, and
the buttons call `Supervisor.start/stop/restart/start_all/stop_all` in worker threads too.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QListWidget, QProgressBar,
                             QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..config import Settings
from ..services.registry import SERVICES, Service
from ..services.state import (ACTIVE_STATES, BACKOFF, EXITED, FATAL, RUNNING, STARTING, STOPPED, STOPPING)
from ..services.supervisor import Supervisor
from . import theme
from .jobs import Jobs, run_in_thread

STATE_COLOUR = {RUNNING: theme.STATE["ok"], STARTING: theme.STATE["warn"], BACKOFF: theme.STATE["warn"],
                STOPPING: theme.STATE["warn"], FATAL: theme.STATE["bad"], STOPPED: theme.STATE["idle"],
                EXITED: theme.STATE["idle"]}
CAN_START = {STOPPED, EXITED, FATAL}          # as supervisord's web UI offers them
CAN_STOP = {STARTING, RUNNING, BACKOFF}
CAN_RESTART = {RUNNING}
SETTLED = {RUNNING, FATAL, EXITED, STOPPED}

COLUMNS = ("Service", "State", "Health", "Heartbeat", "PID", "Uptime", "Restarts", "Exit", "CPU %",
           "Memory", "Actions", "Problem / last message")


@dataclass
class Suite:
    """What every tab shares: the settings, the registry the supervisor runs, the latest rows."""

    settings: Settings
    services: Sequence[Service] = SERVICES
    extra_env: dict[str, str] = field(default_factory=dict)
    rows: dict[str, dict] = field(default_factory=dict)     # id -> latest status row (GUI thread)
    polled_at: float = 0.0

    def supervisor(self, health_client: Any = None) -> Supervisor:
        """A fresh Supervisor (cheap, no I/O): one per worker job, never shared across threads."""
        return Supervisor(self.services, self.settings, health_client=health_client, extra_env=self.extra_env)


# Terminal emulators tried in order for a terminal program, each with the flag before the command.
TERMINALS: tuple[tuple[str, ...], ...] = (("x-terminal-emulator", "-e"), ("gnome-terminal", "--"),
                                           ("konsole", "-e"), ("xfce4-terminal", "-x"), ("xterm", "-e"))


class StatusReader:
    """Runs in the status worker: statuses with heartbeats, plus CPU and memory from psutil."""

    def __init__(self, suite: Suite):
        self.suite = suite
        self.client: Any = None
        self.retry_at = 0.0
        self.procs: dict[int, psutil.Process] = {}

    def _health_client(self) -> Any:
        from ..services.cli import health_client

        if self.client is None and time.monotonic() >= self.retry_at:
            self.retry_at = time.monotonic() + 5.0
            try:
                self.client = health_client(self.suite.settings)
            except Exception:  # noqa: BLE001 - no Redis: health unknown, retried in 5 s
                self.client = None
        return self.client

    def read(self) -> list[dict]:
        sup = self.suite.supervisor(self._health_client())
        now = time.time()
        rows = []
        for st in sup.statuses():
            row = st.to_json(now)
            row["cpu"], row["rss"] = self._usage(st.pid)
            row["log_path"] = str(sup.log_path(st.id))
            rows.append(row)
        live = {r["pid"] for r in rows if r["pid"]}
        self.procs = {pid: p for pid, p in self.procs.items() if pid in live}
        return rows

    def _usage(self, pid: int | None) -> tuple[float | None, int | None]:
        if not pid:
            return None, None
        try:
            proc = self.procs.get(pid)
            if proc is None:
                proc = self.procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)  # the first call only sets the baseline
            rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
            return proc.cpu_percent(None), rss
        except psutil.Error:
            return None, None


def _health_detail(row: dict) -> str:
    """What a healthy running service says it is doing: its heartbeat's state word and detail."""
    record = row.get("health") or {}
    if row["state"] != RUNNING or not record:
        return ""
    return " · ".join(str(x) for x in (record.get("state"), record.get("detail")) if x)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} m"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1048576:,.1f} MiB"


def health_words(row: dict, now: float | None = None) -> tuple[str, str, str]:
    """(word, heartbeat age text, colour key) for a row: healthy / unhealthy / unknown."""
    now = time.time() if now is None else now
    record = row.get("health") or {}
    ts = record.get("ts")
    age = f"{now - ts:.1f} s ago" if isinstance(ts, (int, float)) else ""
    if row["state"] not in (RUNNING, FATAL, BACKOFF):
        return "", age if row["state"] in ACTIVE_STATES else "", "idle"
    if row["healthy"] is True:
        return "healthy", age, "ok"
    if row["healthy"] is False:
        return "unhealthy", age, "bad"
    return "unknown", age, "warn"


class ServicesView(QWidget):
    """The Services tab. `changed` fires on the GUI thread after each refresh of `suite.rows`."""

    changed = pyqtSignal()
    note = pyqtSignal(str, str)   # (level: info/warn/bad, text) for the window's event list

    def __init__(self, suite: Suite, jobs: Jobs, parent: QWidget | None = None, refresh_ms: int = 1000):
        super().__init__(parent)
        self.suite, self.jobs = suite, jobs
        self.reader = StatusReader(suite)
        self.polling = None           # the status job in flight, if any
        self.busy: dict[str, str] = {}   # id -> "starting" etc. while an action for it runs
        self.bulk: dict | None = None    # the Start all / Stop all in progress
        self.bulk_future = None          # its Future (the demo waits for it before stopping all)
        self.order = [s.id for s in suite.services]
        self.by_id = {s.id: s for s in suite.services}

        self.start_all_button = QPushButton("Start all")
        self.stop_all_button = QPushButton("Stop all")
        self.start_all_button.setToolTip("start every available autostart service, dependencies first")
        self.stop_all_button.setToolTip("stop every running service, dependents first")
        self.start_all_button.clicked.connect(lambda: self.start_all())
        self.stop_all_button.clicked.connect(lambda: self.stop_all())
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v / %m")
        self.progress.setMaximumWidth(180)
        self.progress.hide()
        self.progress_text = QLabel("")
        self.progress_text.setWordWrap(True)
        self.summary = QLabel("reading the services…")
        self.summary.setObjectName("summary")
        top = QHBoxLayout()
        top.addWidget(self.start_all_button)
        top.addWidget(self.stop_all_button)
        top.addWidget(self.progress)
        top.addWidget(self.progress_text, 1)
        top.addWidget(self.summary)

        self.table = QTableWidget(len(self.order), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.buttons: dict[str, dict[str, QPushButton]] = {}
        for r, sid in enumerate(self.order):
            svc = self.by_id[sid]
            for c in range(len(COLUMNS)):
                if COLUMNS[c] != "Actions":
                    self.table.setItem(r, c, QTableWidgetItem(""))
            name = self.table.item(r, 0)
            name.setText(svc.title)
            name.setToolTip(self._tooltip(svc))
            cell = QWidget()
            row_layout = QHBoxLayout(cell)
            row_layout.setContentsMargins(2, 0, 2, 0)
            row_layout.setSpacing(3)
            self.buttons[sid] = {}
            for action in ("start", "stop", "restart"):
                b = QPushButton(action.title())
                b.setFixedWidth(66)
                b.setObjectName(f"{action}:{sid}")
                b.setEnabled(False)
                b.clicked.connect(lambda _=False, a=action, i=sid: self.act(a, i))
                row_layout.addWidget(b)
                self.buttons[sid][action] = b
            self.table.setCellWidget(r, COLUMNS.index("Actions"), cell)

        self.events = QListWidget()
        self.events.setObjectName("events")
        events_box = QWidget()
        ev_layout = QVBoxLayout(events_box)
        ev_layout.setContentsMargins(0, 0, 0, 0)
        ev_layout.addWidget(QLabel("Events (state changes, actions, notifications)"))
        ev_layout.addWidget(self.events)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(events_box)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        QTimer.singleShot(0, self.refresh)

    # ---- reading ----------------------------------------------------------------------------
    def _tooltip(self, svc: Service) -> str:
        lines = [f"{svc.id}: {svc.description or svc.title}", f"kind: {svc.kind}",
                 f"depends on: {', '.join(svc.depends_on) or 'nothing'}",
                 "command: python " + " ".join(svc.command[1:])]
        if svc.session:
            lines.append(f"follows the {svc.session} session" + (" (scheduled)" if svc.scheduled else ""))
        return "\n".join(lines)

    def refresh(self) -> None:
        """Ask the worker for fresh rows, unless the last ask is still out (Redis slow)."""
        if self.polling is not None and not self.polling.done():
            self._paint()  # ages and uptimes still move
            return
        self.polling = run_in_thread(self.reader.read, name="cc-status")
        self.jobs.watch(self.polling, self._got_rows, lambda exc: self.note.emit(
            "bad", f"reading the services failed: {type(exc).__name__}: {exc}"))

    def _got_rows(self, rows: list[dict]) -> None:
        old = self.suite.rows
        self.suite.rows = {r["id"]: r for r in rows}
        self.suite.polled_at = time.time()
        if old:
            for r in rows:
                before = old.get(r["id"])
                if before and before["state"] != r["state"]:
                    detail = f" ({r['message']})" if r.get("message") else ""
                    level = "bad" if r["state"] == FATAL else "info"
                    self.note.emit(level, f"{r['id']}: {before['state']} → {r['state']}{detail}")
        self._paint()
        self._bulk_progress()
        self.changed.emit()

    # ---- painting ----------------------------------------------------------------------------
    def _paint(self) -> None:
        now = time.time()
        rows = self.suite.rows
        counts: dict[str, int] = {}
        for r, sid in enumerate(self.order):
            row = rows.get(sid)
            if row is None:
                continue
            svc = self.by_id[sid]
            available = row["available"]
            state = row["state"]
            counts[state] = counts.get(state, 0) + 1
            word, age, key = health_words(row, now)
            uptime = now - row["started_at"] if row.get("started_at") else None
            busy = self.busy.get(sid)
            detail = row.get("problem") or _health_detail(row) or row.get("message") or ""
            if not available:
                detail = row.get("unavailable_reason") or "not available"
            if busy:
                detail = f"{busy}… " + detail
            values = {"State": state if available else "unavailable", "Health": word,
                      "Heartbeat": age, "PID": str(row["pid"] or ""), "Uptime": fmt_duration(uptime),
                      "Restarts": str(row["restarts"]),
                      "Exit": "" if row["exit_code"] is None else str(row["exit_code"]),
                      "CPU %": "" if row.get("cpu") is None else f"{row['cpu']:.1f}",
                      "Memory": fmt_bytes(row.get("rss")), "Problem / last message": detail}
            for name, text in values.items():
                item = self.table.item(r, COLUMNS.index(name))
                if item.text() != text:
                    item.setText(text)
            self._colour(r, state, key, available)
            tip = self._tooltip(svc)
            if row.get("problem"):
                tip += f"\nproblem: {row['problem']}"
            self.table.item(r, COLUMNS.index("Problem / last message")).setToolTip(detail)
            self.table.item(r, 0).setToolTip(tip)
            b = self.buttons[sid]
            b["start"].setEnabled(available and not busy and state in CAN_START)
            b["stop"].setEnabled(not busy and state in CAN_STOP)
            b["restart"].setEnabled(available and not busy and state in CAN_RESTART)
        if rows:
            parts = [f"{counts[s]} {s.lower()}" for s in (RUNNING, STARTING, BACKOFF, STOPPING, FATAL)
                     if counts.get(s)]
            self.summary.setText(" · ".join(parts) or "nothing running")
        bulk = self.bulk is not None
        self.start_all_button.setEnabled(bool(rows) and not bulk)
        self.stop_all_button.setEnabled(bool(rows) and not bulk and any(
            r["state"] in ACTIVE_STATES for r in rows.values()))

    def _colour(self, r: int, state: str, health_key: str, available: bool) -> None:
        grey = QBrush(QColor(theme.MUTED))
        text = QBrush(QColor(theme.TEXT))
        for c in range(len(COLUMNS)):
            item = self.table.item(r, c)
            if item is not None:
                item.setForeground(text if available else grey)
        state_item = self.table.item(r, COLUMNS.index("State"))
        if available:
            state_item.setBackground(QBrush(QColor(STATE_COLOUR.get(state, theme.STATE["idle"]))))
            state_item.setForeground(QBrush(QColor("white")))
        else:
            state_item.setBackground(QBrush())
        health_item = self.table.item(r, COLUMNS.index("Health"))
        if health_key != "idle":
            health_item.setForeground(QBrush(QColor(
                {"ok": "#66bb6a", "bad": "#ef5350", "warn": theme.STATE["warn"]}[health_key])))

    # ---- actions ---------------------------------------------------------------------------------
    def act(self, action: str, service_id: str) -> None:
        """Start / stop / restart one service (with its dependencies or dependents) in a worker."""
        service = next((s for s in self.suite.services if s.id == service_id), None)
        if action == "start" and service is not None and service.kind == "terminal":
            self.open_in_terminal(service)
            return
        self.busy[service_id] = {"start": "starting", "stop": "stopping", "restart": "restarting"}[action]
        self.note.emit("info", f"{action} {service_id}")
        self._paint()

        def work() -> dict:
            sup = self.suite.supervisor()
            return getattr(sup, action)(service_id).to_json()

        def done(row: dict) -> None:
            self.busy.pop(service_id, None)
            level = "info" if row["state"] in (RUNNING, STOPPED, EXITED) else "bad"
            self.note.emit(level, f"{action} {service_id}: {row['state']}"
                            + (f" ({row['message']})" if row.get("message") else ""))
            self.refresh()

        def failed(exc: BaseException) -> None:
            self.busy.pop(service_id, None)
            self.note.emit("bad", f"{action} {service_id} failed: {exc}")
            self.refresh()

        self.jobs.run(work, done=done, error=failed, name=f"cc-{action}-{service_id}")

    def open_in_terminal(self, service: Service) -> None:
        """A terminal program (the quote board, the instrument display) belongs to a terminal,
        not to the supervisor: open it in the desktop's terminal emulator, or say the command."""
        command = shlex.join(service.command)
        terminal = next((t for t in TERMINALS if shutil.which(t[0])), None)
        if terminal is None:
            self.note.emit("warn", f"{service.title}: no terminal emulator found; run it in a terminal: {command}")
            return
        env = {**os.environ, **self.suite.extra_env}
        subprocess.Popen([*terminal, *service.command], env=env, start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.note.emit("info", f"{service.title}: opened in {terminal[0]} ({command})")

    def start_all(self, ids: list[str] | None = None) -> None:
        """Supervisor.start_all in a worker; progress from the rows as they reach a settled state."""
        if self.bulk is not None:
            return
        clicked = time.time()
        bulk: dict = {"kind": "start", "clicked": clicked, "targets": None, "result": None}
        self.bulk = bulk

        def work() -> list[dict]:
            sup = self.suite.supervisor()
            wanted = ids if ids is not None else [i for i in sup.order if sup.services[i].autostart
                                                  and sup.services[i].available]
            bulk["targets"] = sup.dependency_order(wanted)
            return [st.to_json() for st in sup.start_all(wanted)]

        self.note.emit("info", "start all")
        self._bulk_begin(work)

    def stop_all(self) -> None:
        if self.bulk is not None:
            return
        bulk: dict = {"kind": "stop", "clicked": time.time(), "targets": None, "result": None}
        self.bulk = bulk
        bulk["targets"] = [i for i in self.order if (self.suite.rows.get(i) or {}).get("state") in ACTIVE_STATES]

        def work() -> list[dict]:
            return [st.to_json() for st in self.suite.supervisor().stop_all()]

        self.note.emit("info", "stop all")
        self._bulk_begin(work)

    def _bulk_begin(self, work: Callable[[], list[dict]]) -> None:
        self.progress.setRange(0, 0)
        self.progress.show()
        self.progress_text.setText(f"{self.bulk['kind']} all: preparing…")
        self._paint()
        self.bulk_future = self.jobs.run(work, done=self._bulk_done, error=self._bulk_failed, name="cc-bulk")

    def _bulk_progress(self) -> None:
        bulk = self.bulk
        if bulk is None or bulk["targets"] is None:
            return
        targets = bulk["targets"]
        words, done = [], 0
        for sid in targets:
            row = self.suite.rows.get(sid) or {}
            state = row.get("state", "?")
            if bulk["kind"] == "start":
                settled = state == RUNNING or (state in SETTLED and (row.get("since") or 0) >= bulk["clicked"])
            else:
                settled = state not in ACTIVE_STATES
            done += settled
            words.append(f"{sid} {state}")
        self.progress.setRange(0, max(1, len(targets)))
        self.progress.setValue(done)
        self.progress_text.setText(f"{bulk['kind']} all: " + " · ".join(words))

    def _bulk_done(self, rows: list[dict]) -> None:
        kind = self.bulk["kind"] if self.bulk else "?"
        self.bulk = None
        self.progress.hide()
        if kind == "start":
            bad = [r for r in rows if r["state"] != RUNNING]
            text = "start all: " + (f"{len(rows)} running" if not bad else ", ".join(
                f"{r['id']} {r['state']} ({r['message'] or r['problem'] or 'see its log'})" for r in bad))
        else:
            bad = [r for r in rows if r["state"] in ACTIVE_STATES]
            text = "stop all: " + (f"{len(rows)} stopped" if not bad else ", ".join(
                f"{r['id']} still {r['state']}" for r in bad))
        self.progress_text.setText(text)
        self.note.emit("bad" if bad else "info", text)
        self.refresh()

    def _bulk_failed(self, exc: BaseException) -> None:
        kind = self.bulk["kind"] if self.bulk else "?"
        self.bulk = None
        self.progress.hide()
        self.progress_text.setText(f"{kind} all failed: {exc}")
        self.note.emit("bad", f"{kind} all failed: {type(exc).__name__}: {exc}")
        self.refresh()
