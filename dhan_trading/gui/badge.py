"""The freshness badge: live, stale for N s, loading or disconnected, always in view (§3.6)."""
from __future__ import annotations

from PyQt6.QtWidgets import QLabel

from ..live import Status
from . import theme

_COLOUR = {"live": theme.STATE["ok"], "loading": theme.STATE["idle"], "disconnected": theme.STATE["bad"]}


class FreshnessBadge(QLabel):
    def __init__(self, parent=None):
        super().__init__("starting", parent)
        self.setObjectName("freshness")
        self.word = "starting"
        self._paint(theme.STATE["idle"])

    def show_status(self, status: Status, now: float | None = None) -> None:
        word = status.freshness(now)
        text = word if not status.problem else f"{word} · {status.problem}"
        if text != self.text():
            self.word = word
            self.setText(text)
            self.setToolTip(status.problem or f"{status.delivered} events received")
            self._paint(_COLOUR.get(word, theme.STATE["warn"]))

    def _paint(self, colour: str) -> None:
        self.setStyleSheet(f"QLabel#freshness {{ background: {colour}; color: white; "
                           "border-radius: 4px; padding: 2px 8px; font-weight: bold; }")
