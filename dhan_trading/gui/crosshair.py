"""A crosshair with a readout for any pyqtgraph plot: two dashed lines and a label that follow
the mouse; `describe(x, y)` turns the point under the mouse into the text a trader reads."""
from __future__ import annotations

from typing import Callable

import pyqtgraph as pg
from PyQt6.QtCore import QPointF

from . import theme


class Crosshair:
    def __init__(self, plot: pg.PlotItem, describe: Callable[[float, float], str]):
        self.plot, self.describe = plot, describe
        pen = pg.mkPen(theme.MUTED, style=pg.QtCore.Qt.PenStyle.DashLine)
        self.v = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.h = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.label = pg.TextItem(color=theme.TEXT, fill=pg.mkBrush(theme.PANEL), anchor=(0, 1))
        for item in (self.v, self.h, self.label):
            item.setZValue(100)
            item.setVisible(False)  # until the mouse is over the plot
            plot.addItem(item, ignoreBounds=True)
        self.text = ""
        self._proxy = pg.SignalProxy(plot.scene().sigMouseMoved, rateLimit=30, slot=self._moved)

    def _moved(self, event) -> None:
        pos = event[0]
        if self.plot.sceneBoundingRect().contains(pos):
            point = self.plot.vb.mapSceneToView(pos)
            self.move_to(point.x(), point.y())

    def move_to(self, x: float, y: float) -> None:
        for item in (self.v, self.h, self.label):
            item.setVisible(True)
        self.v.setPos(x)
        self.h.setPos(y)
        (x0, x1), (y0, y1) = self.plot.vb.viewRange()  # the readout goes where there is room
        self.label.setAnchor((1 if x > (x0 + x1) / 2 else 0, 1 if y < (y0 + y1) / 2 else 0))
        self.text = self.describe(x, y)
        self.label.setText(self.text)
        self.label.setPos(QPointF(x, y))
