"""The instrument picker: type to search ("NIFTY 24000 CE", "RELIANCE"), Enter or click to pick."""
from __future__ import annotations

from PyQt6.QtCore import QStringListModel, Qt, pyqtSignal
from PyQt6.QtWidgets import QCompleter, QLineEdit

from ..instruments.master import Instrument
from .catalog import Catalog, label


class InstrumentPicker(QLineEdit):
    chosen = pyqtSignal(object)  # Instrument

    def __init__(self, parent=None, placeholder: str = "Search: NIFTY 24000 CE, RELIANCE, CRUDEOIL FUT"):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setClearButtonEnabled(True)
        self.catalog: Catalog | None = None
        self.results: list[Instrument] = []
        self.model = QStringListModel(self)
        self.completer_ = QCompleter(self.model, self)
        self.completer_.setCompletionMode(QCompleter.CompletionMode.UnfilteredPopupCompletion)
        self.completer_.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer_.setMaxVisibleItems(15)
        self.setCompleter(self.completer_)
        self.completer_.activated[str].connect(self._activated)
        self.textEdited.connect(self._search)
        self.returnPressed.connect(self._enter)

    def set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        if self.text():
            self._search(self.text())

    def _search(self, text: str) -> None:
        if self.catalog is None:
            return
        self.results = self.catalog.search(text)
        self.model.setStringList([label(i) for i in self.results])
        if self.results:
            self.completer_.complete()

    def _activated(self, text: str) -> None:
        for instrument in self.results:
            if label(instrument) == text:
                self.chosen.emit(instrument)
                return

    def _enter(self) -> None:
        """Enter picks the best match of what was typed."""
        if self.catalog is None:
            return
        results = self.catalog.search(self.text(), limit=1)
        if results:
            self.setText(label(results[0]))
            self.chosen.emit(results[0])
