"""Property tests: encode -> decode round trips, and garbage that never raises and always adds up."""
from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhan_trading.protocol import FeedDecoder, decode_depth_frame, encode_depth_side
from dhan_trading.protocol.decode import Decoded

from protocol_strategies import TICK_TABLE, packets, prices

pytestmark = pytest.mark.unit

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECODER = FeedDecoder(TICK_TABLE)

frames_of_packets = st.lists(st.lists(packets(), min_size=1, max_size=4), min_size=1, max_size=8)


def packet_accounting(d: Decoded) -> int:
    """Packets the decoder saw = decoded + disconnects + skipped + packets it rejected."""
    rejected = sum(n for reason, n in d.error_reasons.items()
                   if "shorter than" in reason and reason.startswith("packet code") or "non-finite" in reason)
    return sum(len(r.rows) for r in d.records) + len(d.disconnects) + d.skipped + rejected


@FAST
@given(frames_of_packets, st.lists(st.integers(0, 2**63 - 1), min_size=8, max_size=8))
def test_round_trip_of_stacked_frames_keeps_every_value_and_the_order(grouped, stamps):
    frames = [b"".join(p.encode() for p in group) for group in grouped]
    d = DECODER.decode(frames, stamps[:len(frames)])
    expected = [e for group, ts in zip(grouped, stamps) for p in group for e in p.events(ts)]
    assert d.events() == expected
    assert (d.errors, d.skipped, d.packets) == (0, 0, sum(map(len, grouped)))


@FAST
@given(frames_of_packets, st.data())
def test_truncated_frame_keeps_the_whole_packets_before_the_cut(grouped, data):
    frames = [b"".join(p.encode() for p in group) for group in grouped]
    victim = data.draw(st.integers(0, len(frames) - 1))
    cut = data.draw(st.integers(0, len(frames[victim]) - 1))
    frames[victim] = frames[victim][:cut]
    survivors, boundaries = [], {0}
    for i, group in enumerate(grouped):
        offset = 0
        for p in group:
            offset += len(p.encode())
            if i != victim or offset <= cut:
                survivors += p.events(1)
            if i == victim:
                boundaries.add(offset)
    d = DECODER.decode(frames, 1)
    assert d.events() == survivors
    assert d.errors == (1 if cut == 0 or cut not in boundaries else 0)


@FAST
@given(frames_of_packets, st.binary(min_size=1, max_size=7))
def test_junk_after_the_last_packet_is_one_error_and_loses_nothing(grouped, junk):
    frames = [b"".join(p.encode() for p in group) for group in grouped]
    frames[-1] += junk
    d = DECODER.decode(frames, 1)
    assert d.events() == [e for group in grouped for p in group for e in p.events(1)]
    assert d.error_reasons == {"trailing bytes after the last packet": 1}


@FAST
@given(st.lists(st.binary(max_size=400), max_size=20))
def test_random_bytes_never_raise_and_the_counts_add_up(frames):
    d = DECODER.decode(frames, 1)
    assert d.packets == packet_accounting(d)
    assert d.errors == sum(n for r, n in d.error_reasons.items() if not r.startswith("unknown packet code"))
    events = d.events()
    assert len(events) == sum(len(r.rows) * (2 if r.code == 8 else 1) for r in d.records)
    assert all(orjson.loads(orjson.dumps(e)) == e for e in events)


@FAST
@given(st.lists(st.one_of(st.binary(max_size=200), st.text(max_size=20)), max_size=10))
def test_text_and_bytes_mixed_never_raise(frames):
    d = DECODER.decode(frames, 1)
    assert d.error_reasons["text frame"] == sum(isinstance(f, str) for f in frames)


@FAST
@given(st.binary(max_size=120), st.integers(0, 11))
def test_random_headers_on_plausible_lengths_never_raise(body, code_index):
    """Random bodies behind a correct length field reach the typed decoders (NaN, inf, junk)."""
    code = [1, 2, 3, 4, 5, 6, 7, 8, 41, 50, 51, 255][code_index]
    frame = bytes([code]) + (len(body) + 8).to_bytes(2, "little") + bytes(5) + body
    d = DECODER.decode([frame, frame + frame], 1)
    assert d.packets == packet_accounting(d)


@FAST
@given(st.binary(max_size=800))
def test_depth_random_bytes_never_raise(frame):
    d = decode_depth_frame(frame, 1)
    assert len(d.events()) <= d.packets


@FAST
@given(st.lists(st.tuples(st.sampled_from([41, 50, 51, 7]), st.integers(0, 3), st.binary(max_size=16)),
                max_size=4), st.booleans())
def test_depth_random_levels_behind_valid_headers_never_raise(parts, whole_levels):
    """Random f64 prices (NaN, inf, 1e308) reach the level decoder through correct headers."""
    frame = b""
    for code, levels, tail in parts:
        body = tail * (16 // max(len(tail), 1) + 1) * levels
        body = body[:16 * levels] if whole_levels else body
        frame += struct.pack("<hBBiI", 12 + len(body), code, 1, 5, 0) + body
    d = decode_depth_frame(frame, 1)
    sides = d.packets - len(d.disconnects) - d.skipped - d.errors  # every packet lands in one bin
    assert d.packets == len(parts) and sides >= 0
    assert (sides + 1) // 2 <= len(d.events()) <= sides


@FAST
@given(st.lists(st.tuples(prices("0.05"), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                min_size=20, max_size=20),
       st.lists(st.tuples(prices("0.05"), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                min_size=20, max_size=20))
def test_depth_round_trip(bids, asks):
    frame = encode_depth_side(41, "NSE_FNO", 7, bids) + encode_depth_side(51, "NSE_FNO", 7, asks)
    (event,) = decode_depth_frame(frame, 9, {("NSE_FNO", 7): 0.05}).events()
    assert event["bids"] == [list(b) for b in bids] and event["asks"] == [list(a) for a in asks]
