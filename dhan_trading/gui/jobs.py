"""Blocking work for the control center, off the GUI thread, polled back from a GUI timer.

Each job runs in a daemon thread (a start-all can take a minute; closing the window must not
wait for it: the services belong to their runners, not to us) and hands back a Future that
`Jobs` polls every 100 ms with `bridge.when_done`, calling back on the GUI thread.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from PyQt6.QtCore import QObject, QTimer

from .bridge import when_done


def run_in_thread(fn: Callable[..., Any], *args: Any, name: str = "cc-job") -> Future:
    """Run `fn(*args)` in a new daemon thread; its Future holds the result or the exception."""
    future: Future = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI's error callback
            future.set_exception(exc)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


class Jobs(QObject):
    """Futures waiting for their GUI-thread callback."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 100):
        super().__init__(parent)
        self.pending: list[tuple[Future, Callable[[Any], None], Callable[[BaseException], None]]] = []
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    def run(self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], None] | None = None,
            error: Callable[[BaseException], None] | None = None, name: str = "cc-job") -> Future:
        future = run_in_thread(fn, *args, name=name)
        self.watch(future, done, error)
        return future

    def watch(self, future: Future, done: Callable[[Any], None] | None = None,
              error: Callable[[BaseException], None] | None = None) -> None:
        self.pending.append((future, done or (lambda _r: None), error or (lambda _e: None)))

    def _poll(self) -> None:
        batch, self.pending = self.pending, []  # a callback may queue a new job meanwhile
        self.pending = [item for item in batch if not when_done(*item)] + self.pending

    def stop(self) -> None:
        self.timer.stop()
        self.pending.clear()
