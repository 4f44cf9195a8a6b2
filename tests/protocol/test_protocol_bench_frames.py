"""The decoder benchmark's frames are valid, follow the documented mix, and decode like the SDK."""
from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.bench_decoder import make_frames
from dhan_trading.protocol import FeedDecoder

pytestmark = pytest.mark.unit


def test_benchmark_frames_follow_the_documented_mix_and_decode_cleanly():
    frames, ticks = make_frames(4000)
    d = FeedDecoder(ticks).decode(frames, 1)
    assert (d.errors, d.skipped, d.packets) == (0, 0, 4000)
    kinds = Counter(e["type"] for e in d.events())
    assert 0.82 < kinds["full"] / 4000 < 0.88 and 0.08 < kinds["ticker"] / 4000 < 0.12
    assert 0.02 < kinds["quote"] / 4000 < 0.04 and 0.01 < (kinds["oi"] + kinds["prev_close"]) / 4000 < 0.03
    assert 120 <= len({(e["exchange_segment"], e["security_id"]) for e in d.events()}) <= 140
    assert all(len(f) in (16, 50, 12, 162) for f in frames)  # one packet per frame, as Dhan sends


def test_benchmark_frames_decode_to_the_sdk_values():
    from test_protocol_sdk_parity import SDK, assert_same
    frames, ticks = make_frames(300)
    decoder = FeedDecoder(ticks)
    for frame in frames:
        assert_same(SDK.process_data(frame), decoder.decode([frame], 1).events())
