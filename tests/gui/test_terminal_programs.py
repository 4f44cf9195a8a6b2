"""Terminal programs (the quote board) started from the control center open in the desktop's
terminal emulator, or the control center says the command to run; they are never run
headless under the supervisor, where nobody could see them."""
from __future__ import annotations

import os
import stat

import pytest

from dhan_trading.services.registry import SERVICES

pytestmark = pytest.mark.gui


def view(qtbot, settings_env, tmp_path):
    from dhan_trading.gui.jobs import Jobs
    from dhan_trading.gui.services_view import ServicesView, Suite
    suite = Suite(settings_env(REDIS_URL="redis://127.0.0.1:1/0"), SERVICES)
    widget = ServicesView(suite, Jobs(), refresh_ms=60_000)
    qtbot.addWidget(widget)
    notes: list[tuple[str, str]] = []
    widget.note.connect(lambda level, text: notes.append((level, text)))
    return widget, notes


def test_the_quote_board_opens_in_a_terminal_emulator(qtbot, settings_env, tmp_path, monkeypatch):
    record = tmp_path / "argv.txt"
    fake = tmp_path / "bin" / "xterm"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}/nonexistent")
    widget, notes = view(qtbot, settings_env, tmp_path)
    widget.act("start", "quote_visualizer")
    qtbot.waitUntil(record.exists, timeout=10_000)
    qtbot.waitUntil(lambda: record.read_text().count("\n") >= 4, timeout=10_000)
    argv = record.read_text().split("\n")
    assert argv[0] == "-e" and argv[2:4] == ["-m", "dhan_trading.visualizers.quote_visualizer"]
    assert notes[-1][0] == "info" and "opened in xterm" in notes[-1][1]
    assert "quote_visualizer" not in widget.busy  # nothing was asked of the supervisor


def test_without_a_terminal_emulator_it_says_the_command(qtbot, settings_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    widget, notes = view(qtbot, settings_env, tmp_path)
    widget.act("start", "quote_visualizer")
    level, text = notes[-1]
    assert level == "warn" and "no terminal emulator found" in text
    assert "-m dhan_trading.visualizers.quote_visualizer" in text
