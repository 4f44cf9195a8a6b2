#!/usr/bin/env python3
"""Open the Dhan Trading System's Qt control center: `python launch_dhan_control_center.py`.

It manages the suite's services through the supervisor (closing it leaves them running);
a second start brings the open one to the front. See docs/CONTROL_CENTER.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dhan_trading.gui.control_center import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
