"""Time buckets on the IST clock (one-minute samples, 5-minute profiles, 1-minute bars).

Why an offset: a bucket "09:15-09:20" is an IST wall-clock interval. India has one fixed offset
(+05:30, no daylight saving), so a bucket is a fixed arithmetic on epoch seconds. Pass true UTC
epoch seconds (the feed's `recv_ts`) with the default offset; pass Dhan's LTT, which is IST
wall-clock encoded as if it were UTC (dhan-protocol.md §2.9), with `offset=0`.
"""
from __future__ import annotations

import math

IST_OFFSET_S = 19_800  # +05:30: IST wall-clock seconds = UTC epoch seconds + IST_OFFSET_S


def check_seconds(seconds: int, name: str = "seconds") -> int:
    """A bucket width must be a positive whole number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"{name} must be a positive whole number of seconds (e.g. 60 or 300), "
                         f"got {seconds!r}")
    return seconds


def bucket_start(ts: float, seconds: int, offset: int = IST_OFFSET_S) -> int:
    """Epoch second (same clock as `ts`) at which `ts`'s bucket starts on the IST clock."""
    if ts is None or not math.isfinite(ts):
        raise ValueError(f"ts must be a finite epoch time in seconds, got {ts!r}")
    return (math.floor(ts) + offset) // seconds * seconds - offset
