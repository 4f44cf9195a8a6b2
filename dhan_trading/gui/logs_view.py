"""The control center's Logs tab: a live tail of any service's rotated log.

The runner of each service is the one writer of DATA_DIR/logs/<id>.log (state.py, runner.py):
the program's own output, line by line, and the supervisor's events in the same file, as
`<date> <time> [supervisor] <id>: <STATE>: <why>` (started, exited with code N, retry N in S s,
FATAL ...). So the events show inline, in time order with what the program said before them;
they are drawn in the accent colour and pass every level filter.

The file is read in a worker (`LogFollower.read`, polled 4 times a second); rotation (the
RotatingFileHandler renames the file to .1) is followed without losing the lines written
just before it: the open handle is read to its end before the new file is opened.
"""
from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path

from PyQt6.QtCore import QRegularExpression, QTimer
from PyQt6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextCursor
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                             QPushButton, QVBoxLayout, QWidget)

from . import theme
from .jobs import Jobs, run_in_thread

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
RANK = {"DEBUG": 0, "INFO": 1, "WARNING": 2, "ERROR": 3, "CRITICAL": 3, "EVENT": 9}
_LEVEL_RE = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
SUPERVISOR_MARK = "[supervisor]"
MAX_LINES = 20_000


def line_level(line: str, previous: str = "INFO") -> str:
    """The level of a log line; EVENT for the supervisor's own lines; a line without a level
    and no timestamp (a traceback, plain program output) keeps the level of the line before it."""
    if SUPERVISOR_MARK in line[:40]:
        return "EVENT"
    m = _LEVEL_RE.search(line[:80])
    if m:
        return "ERROR" if m.group(1) == "CRITICAL" else m.group(1)
    if line[:1].isdigit():  # a timestamped line without a level
        return "INFO"
    return previous if previous != "EVENT" else "INFO"


class LogFollower:
    """New whole lines of a log file since the last read; survives rotation and truncation."""

    def __init__(self, path: Path, backlog_bytes: int = 256_000):
        self.path = Path(path)
        self.backlog = backlog_bytes
        self.fh = None
        self.partial = b""

    def _open(self, first: bool) -> bool:
        try:
            self.fh = open(self.path, "rb")  # noqa: SIM115 - held open across reads to follow rotation
        except OSError:
            self.fh = None
            return False
        if first:
            size = os.fstat(self.fh.fileno()).st_size
            if size > self.backlog:
                self.fh.seek(size - self.backlog)
                self.fh.readline()  # start at a whole line
        return True

    def read(self) -> list[str]:
        """Blocking file I/O: call from a worker."""
        if self.fh is None and not self._open(first=True):
            return []
        data = self.fh.read()
        try:
            st = os.stat(self.path)
            here = os.fstat(self.fh.fileno())
            if st.st_ino != here.st_ino or st.st_size < self.fh.tell():
                data += self.fh.read()  # the rest of the rotated file, then the new one from 0
                self.fh.close()
                if self._open(first=False):
                    data += self.fh.read()
        except FileNotFoundError:
            pass
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class LogHighlighter(QSyntaxHighlighter):
    """Colours by level, the supervisor's events in the accent colour, search matches marked."""

    def __init__(self, document):
        super().__init__(document)
        self.search = ""
        self.formats = {}
        for level, colour in (("DEBUG", theme.MUTED), ("WARNING", theme.VALUE_AREA), ("ERROR", theme.DOWN),
                              ("EVENT", theme.ACCENT)):
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(colour))
            if level == "EVENT":
                fmt.setFontWeight(QFont.Weight.Bold)
            self.formats[level] = fmt
        self.match = QTextCharFormat()
        self.match.setBackground(QColor("#6d4c00"))
        self.match.setForeground(QColor("white"))

    def highlightBlock(self, text: str) -> None:
        level = line_level(text, "INFO")
        if level in self.formats:
            self.setFormat(0, len(text), self.formats[level])
        if self.search:
            expr = QRegularExpression(QRegularExpression.escape(self.search),
                                      QRegularExpression.PatternOption.CaseInsensitiveOption)
            it = expr.globalMatch(text)
            while it.hasNext():
                m = it.next()
                self.setFormat(m.capturedStart(), m.capturedLength(), self.match)


class LogsView(QWidget):
    def __init__(self, suite, jobs: Jobs, parent: QWidget | None = None, interval_ms: int = 250):
        super().__init__(parent)
        self.suite, self.jobs = suite, jobs
        self.follower: LogFollower | None = None
        self.reading = None
        self.lines: deque[tuple[str, str]] = deque(maxlen=MAX_LINES)   # (level, text)
        self.unseen = 0

        self.service = QComboBox()
        for svc in suite.services:
            self.service.addItem(f"{svc.title} ({svc.id})", svc.id)
        self.service.currentIndexChanged.connect(self._switch)
        self.follow = QPushButton("Following")
        self.follow.setCheckable(True)
        self.follow.setChecked(True)
        self.follow.setToolTip("follow the end of the log; click to pause (lines keep being read)")
        self.follow.toggled.connect(self._toggle_follow)
        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.level.setCurrentText("DEBUG")
        self.level.setToolTip("lowest level shown; the supervisor's events are always shown")
        self.level.currentIndexChanged.connect(self.rebuild)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search (Enter: next match)")
        self.search.textChanged.connect(self._search_changed)
        self.search.returnPressed.connect(self.find_next)
        self.only_matches = QCheckBox("only matching lines")
        self.only_matches.toggled.connect(self.rebuild)
        self.where = QLabel("")
        self.where.setStyleSheet(f"color: {theme.MUTED}")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setPointSize(9)
        self.text.setFont(font)
        self.highlighter = LogHighlighter(self.text.document())

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Service"))
        bar.addWidget(self.service)
        bar.addWidget(self.follow)
        bar.addWidget(QLabel("Level ≥"))
        bar.addWidget(self.level)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.only_matches)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.where)

        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        self._switch()

    # ---- which file -------------------------------------------------------------------------
    def log_path(self, service_id: str) -> Path:
        return self.suite.supervisor().log_path(service_id)

    def show_service(self, service_id: str) -> None:
        index = self.service.findData(service_id)
        if index >= 0:
            self.service.setCurrentIndex(index)

    def _switch(self) -> None:
        if self.follower is not None:
            old = self.follower
            run_in_thread(old.close)
        sid = self.service.currentData()
        self.follower = LogFollower(self.log_path(sid)) if sid else None
        self.reading = None
        self.lines.clear()
        self.unseen = 0
        self.text.clear()
        self.where.setText(f"{self.follower.path} (rotated to .1 … .5)" if self.follower else "no service")

    # ---- reading ----------------------------------------------------------------------------
    def tick(self) -> None:
        if self.reading is not None and not self.reading.done():
            return
        follower = self.follower
        if follower is None:
            return
        self.reading = run_in_thread(follower.read, name="cc-log")
        self.jobs.watch(self.reading, lambda lines, f=follower: self._got(f, lines))

    def _got(self, follower: LogFollower, lines: list[str]) -> None:
        if follower is not self.follower or not lines:
            return
        previous = self.lines[-1][0] if self.lines else "INFO"
        new = []
        for line in lines:
            previous = line_level(line, previous)
            new.append((previous, line))
        self.lines.extend(new)
        if not self.follow.isChecked():
            self.unseen += len(new)
            self.follow.setText(f"Paused ({self.unseen} new)")
            return
        self._append([t for lv, t in new if self._passes(lv, t)])

    def _passes(self, level: str, text: str) -> bool:
        if RANK[level] < RANK[self.level.currentText()]:
            return False
        term = self.search.text()
        return not (self.only_matches.isChecked() and term and term.lower() not in text.lower())

    def _append(self, texts: list[str]) -> None:
        if not texts:
            return
        bar = self.text.verticalScrollBar()
        cursor = self.text.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        for t in texts:
            self.text.appendPlainText(t)
        if self.follow.isChecked():
            bar.setValue(bar.maximum())

    def rebuild(self) -> None:
        self.text.clear()
        self._append([t for lv, t in self.lines if self._passes(lv, t)])

    def shown_lines(self) -> list[str]:
        return self.text.toPlainText().splitlines()

    # ---- follow, search ---------------------------------------------------------------------
    def _toggle_follow(self, on: bool) -> None:
        self.follow.setText("Following" if on else "Paused")
        if on:
            self.unseen = 0
            self.rebuild()

    def _search_changed(self, term: str) -> None:
        self.highlighter.search = term
        if self.only_matches.isChecked():
            self.rebuild()
        else:
            self.highlighter.rehighlight()

    def find_next(self) -> None:
        term = self.search.text()
        if term and not self.text.find(term):
            self.text.moveCursor(QTextCursor.MoveOperation.Start)
            self.text.find(term)

    def stop(self) -> None:
        self.timer.stop()
        if self.follower is not None:
            self.follower.close()
