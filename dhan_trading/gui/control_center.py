"""The Qt control center: `python launch_dhan_control_center.py` (and `demo --gui`).

Tabs: Services (state, health, start/stop), Logs (live tail), Schedule (today's plan),
Configuration (settings, connection tests), Monitor (the FNO Services Monitor view). It is a
face on the supervisor, never a second one: services run under their own runner processes
(services/runner.py), so closing this window leaves them running and opening it again
re-attaches to them. One control center per data folder: a second start raises the first.
Every supervisor, Redis, database and file call runs in a worker thread (jobs.py); the GUI
thread only paints what the workers hand back, from timers.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PyQt6.QtNetwork import QLocalServer, QLocalSocket
from PyQt6.QtWidgets import (QApplication, QLabel, QListWidgetItem, QMainWindow, QMenu, QSystemTrayIcon,
                             QTabWidget, QVBoxLayout, QWidget)

from ..config import DEFAULT_DATA_DIR, DOTENV_PATH, ConfigError, Settings, finite_number, get_settings
from ..services.registry import SERVICES, Service
from ..services.state import FATAL, RUNNING
from . import theme
from .config_view import ConfigView
from .jobs import Jobs
from .logs_view import LogsView
from .schedule_view import ScheduleView
from .services_view import ServicesView, Suite

log = logging.getLogger(__name__)
TABS = ("Services", "Logs", "Schedule", "Configuration", "Monitor")
EVENT_COLOUR = {"info": theme.TEXT, "warn": theme.VALUE_AREA, "bad": theme.DOWN}


def app_icon(colour: str = theme.ACCENT) -> QIcon:
    pix = QPixmap(64, 64)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(colour))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(4, 4, 56, 56)
    p.setPen(QColor("white"))
    font = p.font()
    font.setPixelSize(34)
    font.setBold(True)
    p.setFont(font)
    p.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, "D")
    p.end()
    return QIcon(pix)


class ControlCenter(QMainWindow):
    """The window. `settings` None with `error` set: only the Configuration tab, showing why."""

    notified = pyqtSignal(str, str)   # (title, text) of each desktop notification

    def __init__(self, settings: Settings | None, error: str | None = None, *,
                 services: Sequence[Service] = SERVICES, extra_env: dict[str, str] | None = None,
                 dotenv_path: Path | None = DOTENV_PATH, refresh_ms: int = 1000,
                 on_close: Callable[[ControlCenter], object] | None = None):
        super().__init__()
        self.setWindowTitle("Dhan Trading System · Control Center")
        self.setWindowIcon(app_icon())
        self.resize(1360, 760)
        self.setStyleSheet("QPushButton:disabled { color: #4f5b66; }")
        self.jobs = Jobs(self)
        self.settings, self.config_error = settings, error
        self.on_close = on_close          # demo --gui: stop what the demo started, then close
        self.closing = None
        self.notes: list[tuple[str, str]] = []
        self.last_seen: dict[str, tuple[str, object]] = {}   # id -> (state, healthy) already notified
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        self.suite = Suite(settings, tuple(services), dict(extra_env or {})) if settings else None
        self.services_view = self.logs_view = self.schedule_view = None
        if self.suite is not None:
            self.services_view = ServicesView(self.suite, self.jobs, refresh_ms=refresh_ms)
            self.services_view.note.connect(self.add_event)
            self.services_view.changed.connect(self._check_transitions)
            self.logs_view = LogsView(self.suite, self.jobs)
            self.schedule_view = ScheduleView(self.suite, self.jobs, self.services_view)
            self.services_view.table.cellDoubleClicked.connect(self._open_log)
            self.tabs.addTab(self.services_view, "Services")
            self.tabs.addTab(self.logs_view, "Logs")
            self.tabs.addTab(self.schedule_view, "Schedule")
        self.config_view = ConfigView(settings, error, self.jobs, dotenv_path)
        self.tabs.addTab(self.config_view, "Configuration")
        self.monitor_holder = QWidget()
        QVBoxLayout(self.monitor_holder)
        self.monitor = None
        if settings is not None:
            self.tabs.addTab(self.monitor_holder, "Monitor")
        self.tabs.currentChanged.connect(self._tab_changed)
        if error:
            self.tabs.setCurrentWidget(self.config_view)
        closing = ("demo: closing this window stops the demo's services" if on_close
                   else "closing this window leaves the services running")
        self.statusBar().showMessage(f"data: {Path(settings.data_dir).resolve()} · {closing}"
                                     if settings else "configuration error: see the Configuration tab")
        self.tray = self._make_tray()

    # ---- tabs ------------------------------------------------------------------------------------
    def tab(self, name: str) -> QWidget | None:
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == name:
                return self.tabs.widget(i)
        return None

    def show_tab(self, name: str) -> None:
        widget = self.tab(name)
        if widget is not None:
            self.tabs.setCurrentWidget(widget)

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.monitor_holder and self.monitor is None:
            self.monitor = self._load_monitor()
            self.monitor_holder.layout().addWidget(self.monitor)

    def _load_monitor(self) -> QWidget:
        """The FNO Services Monitor view, imported only when its tab is first opened."""
        try:
            from .monitor_view import MonitorView
        except ImportError as exc:
            label = QLabel(f"The FNO Services Monitor view is not in this checkout yet "
                           f"(dhan_trading/gui/monitor_view.py: {exc}).")
            label.setObjectName("monitor_placeholder")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
            return label
        return MonitorView(self.settings, self.monitor_holder)

    def _open_log(self, row: int, _column: int) -> None:
        self.logs_view.show_service(self.services_view.order[row])
        self.show_tab("Logs")

    # ---- events and notifications -----------------------------------------------------------------
    def add_event(self, level: str, text: str) -> None:
        from datetime import datetime

        item = QListWidgetItem(f"{datetime.now():%H:%M:%S}  {text}")
        item.setForeground(QColor(EVENT_COLOUR.get(level, theme.TEXT)))
        events = self.services_view.events
        events.addItem(item)
        while events.count() > 500:
            events.takeItem(0)
        events.scrollToBottom()

    def _make_tray(self) -> QSystemTrayIcon | None:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return None
        tray = QSystemTrayIcon(app_icon(), self)
        tray.setToolTip("Dhan Control Center")
        menu = QMenu(self)
        show = QAction("Show control center", menu)
        show.triggered.connect(self.bring_to_front)
        menu.addAction(show)
        tray.setContextMenu(menu)
        tray.activated.connect(lambda _reason: self.bring_to_front())
        tray.show()
        return tray

    def notify(self, title: str, text: str, bad: bool = True) -> None:
        """A desktop notification when a tray exists, and always a line in the event list."""
        self.notes.append((title, text))
        self.add_event("bad" if bad else "warn", f"⚠ {title}: {text}")
        if self.tray is not None:
            icon = QSystemTrayIcon.MessageIcon.Critical if bad else QSystemTrayIcon.MessageIcon.Warning
            self.tray.showMessage(title, text, icon, 10_000)
        self.notified.emit(title, text)

    def _check_transitions(self) -> None:
        """Notify once per transition into FATAL, and into unhealthy while RUNNING."""
        first = not self.last_seen
        for sid, row in self.suite.rows.items():
            state, healthy = row["state"], row["healthy"]
            before = self.last_seen.get(sid)
            self.last_seen[sid] = (state, healthy)
            if first or before is None:
                continue
            if state == FATAL and before[0] != FATAL:
                self.notify(f"{row['title']} is FATAL", row.get("message") or "see its log")
            elif state == RUNNING and healthy is False and (before[0] != RUNNING or before[1] is not False):
                self.notify(f"{row['title']} is unhealthy", row.get("problem") or "see its log", bad=False)

    # ---- window --------------------------------------------------------------------------------------
    def bring_to_front(self) -> None:
        self.setWindowState((self.windowState() & ~Qt.WindowState.WindowMinimized) | Qt.WindowState.WindowActive)
        self.show()
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event) -> None:
        if self.on_close is not None and self.closing is not True:
            event.ignore()
            if self.closing is None:  # first close: run the hook in a worker, then close for real
                self.closing = False
                self.tabs.setEnabled(False)
                self.statusBar().showMessage("stopping the demo's services…")

                def finished(_result=None) -> None:
                    self.closing = True
                    self.close()

                self.jobs.run(self.on_close, self, done=finished,
                              error=lambda exc: (log.error("stopping failed: %s", exc), finished()))
            return
        for view in (self.logs_view, self.monitor):
            if view is not None and hasattr(view, "stop"):
                view.stop()
        if self.services_view is not None:
            self.services_view.timer.stop()
        if self.tray is not None:
            self.tray.hide()
        event.accept()


# ---- one control center per data folder -----------------------------------------------------------------
def instance_name(data_dir: Path) -> str:
    """The local socket of the data folder's control center: under DATA_DIR/run when the path
    fits a unix socket, else a name derived from it (Qt puts it in the temp folder)."""
    path = Path(data_dir).resolve() / "run" / "control_center.sock"
    if len(str(path)) < 100:
        return str(path)
    return "dhan-control-center-" + hashlib.sha1(str(path).encode()).hexdigest()[:16]


class SingleInstance(QObject):
    """Claim the name, or tell the one who holds it to raise its window."""

    raise_requested = pyqtSignal()

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.server: QLocalServer | None = None

    def tell_running(self, timeout_ms: int = 1000) -> bool:
        """True if a control center already listens on the name (it was told to raise)."""
        sock = QLocalSocket()
        sock.connectToServer(self.name)
        if not sock.waitForConnected(timeout_ms):
            return False
        sock.write(b"raise\n")
        sock.flush()
        sock.waitForBytesWritten(timeout_ms)
        sock.waitForReadyRead(timeout_ms)  # the first answers "ok" once it has the message
        sock.disconnectFromServer()
        return True

    def claim(self) -> bool:
        if self.tell_running():
            return False
        if self.name.startswith("/"):
            Path(self.name).parent.mkdir(parents=True, exist_ok=True)
        QLocalServer.removeServer(self.name)  # a stale socket of a crashed control center
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not self.server.listen(self.name):
            log.warning("single instance: cannot listen on %s: %s", self.name, self.server.errorString())
            return True
        self.server.newConnection.connect(self._connection)
        return True

    def _connection(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()

            def read(s=sock) -> None:
                if b"raise" in bytes(s.readAll()):
                    s.write(b"ok\n")
                    s.flush()
                    self.raise_requested.emit()

            sock.readyRead.connect(read)
            sock.disconnected.connect(sock.deleteLater)


# ---- entry points ----------------------------------------------------------------------------------------------
def load_config(loader: Callable[[], Settings] = get_settings) -> tuple[Settings | None, str | None]:
    try:
        return loader(), None
    except ConfigError as exc:
        return None, str(exc)


def application() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Dhan Control Center")
    app.setQuitOnLastWindowClosed(True)
    theme.apply(app)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python launch_dhan_control_center.py",
                                     description="The Qt control center of the Dhan Trading System.")
    parser.add_argument("--tab", choices=[t.lower() for t in TABS], help="open on this tab")
    parser.add_argument("--screenshot", metavar="FILE", help="save the window as a PNG after --after seconds, "
                        "then exit (a check on a headless machine; the services keep running)")
    parser.add_argument("--after", type=finite_number, default=5.0, help="seconds before --screenshot (default 5)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    app = application()
    settings, error = load_config()
    if settings is not None:
        from ..logs import setup_logging
        setup_logging("control_center", settings)
    instance = SingleInstance(instance_name(settings.data_dir if settings else DEFAULT_DATA_DIR))
    if not instance.claim():
        print("the control center is already open for this data folder: brought it to the front")
        return 0
    window = ControlCenter(settings, error)
    instance.raise_requested.connect(window.bring_to_front)
    if args.tab and not error:
        window.show_tab(args.tab.title())
    window.show()
    if args.screenshot:
        def shoot() -> None:
            window.grab().save(args.screenshot)
            window.close()
        QTimer.singleShot(int(args.after * 1000), shoot)
    return app.exec()


# ---- demo --gui ----------------------------------------------------------------------------------------------
def demo_services(port: int, rate: int, mcx: bool) -> tuple[Service, ...]:
    """The registry as the demo runs it: the simulator on `port` started with the rest, the
    feed pointed at it and ordered after it."""
    feed_id = "fno_mcx_feed" if mcx else "fno_feed"
    out = []
    for s in SERVICES:
        if s.id == "simulator":
            s = replace(s, command=s.command + ("--port", str(port), "--seed", "1", "--rate", str(rate)),
                        autostart=True)
        elif s.id in ("fno_feed", "fno_mcx_feed"):
            s = replace(s, command=s.command + ("--force",), depends_on=s.depends_on + ("simulator",),
                        autostart=s.id == feed_id)
        out.append(s)
    return tuple(out)


def run_demo(duration: float | None = None, mcx: bool = False, rate: int = 2000) -> int:
    """`python -m dhan_trading demo --gui`: the demo pipeline under the supervisor, the control
    center open on it; closing the window (or `duration` seconds) stops every service it ran."""
    from .. import bus, exitcodes
    from ..config import load_settings
    from ..demo import _free_port
    from ..logs import setup_logging

    app = application()
    settings, error = load_config()
    if settings is None:
        window = ControlCenter(None, error)
        window.show()
        app.exec()
        return exitcodes.FATAL
    setup_logging("demo", settings, console=False)
    data_dir = settings.data_dir.resolve()
    embedded = None
    redis_url = settings.redis_url
    if not redis_url:
        try:
            embedded = bus.EmbeddedRedis.ensure(data_dir)
        except (ConfigError, RuntimeError, OSError) as exc:
            sys.stderr.write(f"demo --gui: the embedded Redis did not start: {exc}\n")
            return 1
        redis_url = embedded.url
    port = _free_port()
    demo_env = {"REDIS_URL": redis_url, "DHAN_DATA_DIR": str(data_dir), "DHAN_FEED_URL": f"ws://127.0.0.1:{port}",
                "DHAN_CLIENT_ID": settings.client_id or "1000000001", "DHAN_ACCESS_TOKEN": "demo-token"}
    os.environ.update(demo_env)  # this process is the demo's: every child it starts inherits it
    settings = load_settings()
    services = demo_services(port, rate, mcx)
    feed_id = "fno_mcx_feed" if mcx else "fno_feed"

    def stop_demo(window: ControlCenter) -> None:
        starting = window.services_view.bulk_future
        if starting is not None:  # closed during Start all: let it finish, or it starts one after the stop
            concurrent.futures.wait([starting], timeout=180)
        sup = window.suite.supervisor()
        sup.stop(feed_id)  # the feed first: it flushes, and the writer stores what it sent
        sup.stop_all()
        if embedded is not None and embedded.started:
            embedded.stop()

    window = ControlCenter(settings, services=services, on_close=stop_demo)
    window.add_event("info", f"demo: simulator on ws://127.0.0.1:{port}, Redis {redis_url}, "
                             f"database {settings.database_url().split('://')[0]}: starting every service")
    window.show()
    window.services_view.start_all()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C in the terminal ends the demo like closing it
        signal.signal(sig, lambda *_: window.close())
    python_ticks = QTimer(window)  # lets Python run its signal handlers while Qt waits
    python_ticks.timeout.connect(lambda: None)
    python_ticks.start(200)
    if duration:
        QTimer.singleShot(int(duration * 1000), window.close)
    return app.exec()
