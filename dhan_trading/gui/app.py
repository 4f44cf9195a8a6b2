"""Start a window as its own process: `python -m dhan_trading.visualizers.NAME [SEARCH]`.

A bad configuration is shown (and exits 78) instead of a traceback; `--screenshot FILE` saves
the window after `--after` seconds and exits, which is how docs/VISUALIZERS.md's pictures are
made and how a trader can check a window on a headless machine.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication, QWidget

from .. import exitcodes
from ..config import ConfigError, Settings, finite_number, get_settings
from ..logs import setup_logging
from . import theme


def window_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("search", nargs="*", help='instrument to open, as typed in the picker ("NIFTY 24000 CE")')
    parser.add_argument("--screenshot", metavar="FILE", help="save the window as a PNG after --after seconds, then exit")
    parser.add_argument("--after", type=finite_number, default=5.0, help="seconds before --screenshot (default 5)")
    return parser


def run_window(prog: str, make: Callable[[Settings, argparse.Namespace], QWidget],
               parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        sys.stderr.write(f"{prog}: configuration error: {exc}\n")
        return exitcodes.FATAL
    setup_logging(prog, settings)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme.apply(app)
    window = make(settings, args)
    window.show()
    if args.screenshot:
        def shoot() -> None:
            window.grab().save(args.screenshot)
            app.quit()
        QTimer.singleShot(int(args.after * 1000), shoot)
    return app.exec()
