"""The dark theme every window shares: one palette, one set of colours for up/down and states."""
from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtGui import QColor, QFont, QPalette
from PyQt6.QtWidgets import QApplication

BACKGROUND = "#11161c"
PANEL = "#1a2129"
TEXT = "#d6dde4"
MUTED = "#7d8894"
GRID = "#2a333d"
UP = "#26a69a"        # advances, up ticks, buy volume
DOWN = "#ef5350"      # declines, down ticks, sell volume
NEUTRAL = "#90a4ae"
ACCENT = "#42a5f5"    # POC, the index line
VALUE_AREA = "#ffca28"
STATE = {"ok": "#2e7d32", "warn": "#f9a825", "bad": "#c62828", "idle": "#546e7a"}


def apply(app: QApplication) -> None:
    """Dark Fusion palette for Qt widgets and matching pyqtgraph defaults."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND, QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: PANEL, QPalette.ColorRole.AlternateBase: BACKGROUND,
        QPalette.ColorRole.Text: TEXT, QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT, QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT, QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: BACKGROUND, QPalette.ColorRole.PlaceholderText: MUTED,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSize(max(font.pointSize(), 10))
    app.setFont(font)
    pg.setConfigOptions(background=BACKGROUND, foreground=TEXT, antialias=True)
