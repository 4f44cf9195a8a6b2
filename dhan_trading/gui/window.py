"""The base of every chart window: picker, freshness badge, message line, repaint timer.

A window subclasses `LiveWindow` and supplies the analytics: `streams`, `default_instruments`
(what it opens on), `reset(instruments)` (a new selection: start an empty model), `apply(events)`
(fold a batch into the model: pure analytics calls, no drawing) and `redraw()` (paint the
model). The timer drains the reader's queue at `REPAINT_HZ`, so the screen repaints at most that
often whatever the event rate, and only when something changed (DESIGN §3.6).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Sequence

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QVBoxLayout, QWidget

from ..config import Settings
from ..instruments.master import Instrument
from ..live import Event
from . import bridge, theme
from .badge import FreshnessBadge
from .catalog import Catalog, label
from .picker import InstrumentPicker

log = logging.getLogger(__name__)
REPAINT_HZ = 20
# Events folded into the model per timer tick: a day of history loads in chunks, repainting
# between them, instead of freezing the window for the seconds it takes.
APPLY_CHUNK = 20_000


class LiveWindow(QMainWindow):
    title = "Dhan"
    streams: Sequence[str] = ()

    def __init__(self, settings: Settings, initial: str | None = None, *, feed: bridge.LiveFeed | None = None):
        super().__init__()
        self.settings = settings
        self.initial = initial
        self.catalog: Catalog | None = None
        self.instruments: list[Instrument] = []
        self.events_applied = 0
        self.bad_events = 0
        self.dirty = False
        engine = bridge.database_engine(settings) if feed is None else None
        self.feed = feed or bridge.LiveFeed(self.streams, bridge.redis_connector(settings), engine)
        self._catalog_future: Future | None = bridge.background().submit(
            bridge.load_catalog, settings, engine, bridge.redis_connector(settings))

        central = QWidget()
        self.body = QVBoxLayout(central)
        self.body.setContentsMargins(6, 6, 6, 6)
        self.top = top = QHBoxLayout()  # heading, picker, badge: a window may add to it
        self.picker = InstrumentPicker()
        self.picker.chosen.connect(lambda i: self.select([i]))
        self.heading = QLabel("loading instruments…")
        self.heading.setStyleSheet(f"font-weight: bold; font-size: 13pt; color: {theme.TEXT};")
        self.badge = FreshnessBadge()
        top.addWidget(self.heading, 1)
        top.addWidget(self.picker, 1)
        top.addWidget(self.badge)
        self.body.addLayout(top)
        self.message = QLabel("")
        self.message.setStyleSheet(f"color: {theme.VALUE_AREA};")
        self.message.setWordWrap(True)
        self.setCentralWidget(central)
        self.setWindowTitle(self.title)
        self.resize(1280, 800)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(1000 // REPAINT_HZ)

    def add_body(self, widget: QWidget, stretch: int = 1) -> None:
        self.body.addWidget(widget, stretch)

    def finish_layout(self) -> None:
        self.body.addWidget(self.message)

    # ---- what a window supplies ------------------------------------------------------------
    def default_instruments(self, catalog: Catalog) -> list[Instrument]:
        future = catalog.near_future("NIFTY")
        return [future] if future else []

    def reset(self, instruments: list[Instrument]) -> None:
        raise NotImplementedError

    def apply(self, events: list[Event]) -> None:
        raise NotImplementedError

    def redraw(self) -> None:
        raise NotImplementedError

    # ---- plumbing --------------------------------------------------------------------------
    def select(self, instruments: list[Instrument]) -> None:
        self.instruments = instruments
        self.heading.setText(", ".join(label(i) for i in instruments[:3]) +
                             (f" and {len(instruments) - 3} more" if len(instruments) > 3 else ""))
        self.setWindowTitle(f"{self.title} — {self.heading.text()}")
        self.events_applied = 0
        self.reset(instruments)
        self.dirty = True
        self.feed.switch([i.key for i in instruments])
        self.say("")

    def say(self, text: str) -> None:
        """Tell the trader what is wrong (or clear it): bad input never closes a window."""
        self.message.setText(text)

    def _catalog_ready(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.picker.set_catalog(catalog)
        chosen = self.default_instruments(catalog)
        if self.initial:
            chosen = catalog.search(self.initial, limit=1)
            if not chosen:
                self.say(f"no instrument matches {self.initial!r}; type another in the search box")
                self.heading.setText("no instrument")
                return
        if not chosen:
            self.say("the default instrument is not in the scrip master; pick one in the search box")
            self.heading.setText("no instrument")
            return
        self.select(chosen)

    def _catalog_failed(self, exc: BaseException) -> None:
        self.heading.setText("no instruments")
        self.say(f"could not load the instruments: {exc}")

    def tick(self) -> None:
        if self._catalog_future is not None and bridge.when_done(
                self._catalog_future, self._catalog_ready, self._catalog_failed):
            self._catalog_future = None
        events = self.feed.drain(APPLY_CHUNK)
        if events:
            try:
                self.apply(events)
            except Exception as exc:  # noqa: BLE001 - garbage in one event must not kill the window
                log.exception("could not apply %d events", len(events))
                self.bad_events += len(events)
                self.say(f"skipped {self.bad_events} events that could not be read ({type(exc).__name__}: {exc})")
            self.events_applied += len(events)
            self.dirty = True
        self.badge.show_status(self.feed.status, time.time())
        if self.dirty:
            self.dirty = False
            self.redraw()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()
        self.feed.stop()
        super().closeEvent(event)
