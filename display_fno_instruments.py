#!/usr/bin/env python3
"""Print the instrument universe the F&O feed would subscribe: `python display_fno_instruments.py [--mcx] [--json]`.

Works from any directory (it puts its own directory on sys.path) and needs no database.
"""
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dhan_trading.instruments.display import main  # noqa: E402 - needs the path set above

if __name__ == "__main__":
    sys.exit(main())
