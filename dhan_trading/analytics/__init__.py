"""Pure analytics for the windows: volume profile, breadth, tick and time bars (DESIGN §3.5).

No Qt, no Redis, no database, no I/O: plain data in, plain data out, so every rule is tested
alone. The rules, with worked examples, are in docs/ANALYTICS.md.
"""
from .bars import Bar, TickBarBuilder, TimeBarBuilder, tick_bars, time_bars
from .breadth import (Breadth, BreadthSnapshot, ContributionCheck, ad_ratio, advance_decline,
                      check_contributions, compare_prices, pct_advancing, point_contributions, trin)
from .clock import IST_OFFSET_S, bucket_start
from .profile import (BucketProfiles, Levels, LevelsAt, Profile, ProfileBuilder, ValueArea,
                      build_profile, poc_index, session_levels, value_area)
from .volume import BUY, SELL, UNKNOWN, CumulativeVolume, TradeSide, volume_deltas

__all__ = [
    "Bar", "TickBarBuilder", "TimeBarBuilder", "tick_bars", "time_bars",
    "Breadth", "BreadthSnapshot", "ContributionCheck", "ad_ratio", "advance_decline",
    "check_contributions", "compare_prices", "pct_advancing", "point_contributions", "trin",
    "IST_OFFSET_S", "bucket_start",
    "BucketProfiles", "Levels", "LevelsAt", "Profile", "ProfileBuilder", "ValueArea",
    "build_profile", "poc_index", "session_levels", "value_area",
    "BUY", "SELL", "UNKNOWN", "CumulativeVolume", "TradeSide", "volume_deltas",
]
