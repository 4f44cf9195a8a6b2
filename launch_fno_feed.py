#!/usr/bin/env python3
"""Start the Dhan F&O market feed: `python launch_fno_feed.py [--force] [--mcx]` (see --help)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dhan_trading.market_feed.launcher import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
