"""20-level depth feed: 12-byte headers, f64 prices, bid/ask pairing, disconnects, bad frames."""
from __future__ import annotations

import math
import struct

import pytest

from dhan_trading.protocol import decode_depth_frame, encode_depth_disconnect, encode_depth_side

pytestmark = pytest.mark.unit

BIDS = [[2450.05 - 0.05 * i, 100 + i, 1 + i] for i in range(20)]
ASKS = [[2450.10 + 0.05 * i, 200 + i, 2 + i] for i in range(20)]
BIDS = [[round(p, 2), q, o] for p, q, o in BIDS]
ASKS = [[round(p, 2), q, o] for p, q, o in ASKS]
TICKS = {("NSE_EQ", 2885): 0.05, ("NSE_FNO", 35001): 0.05}


def bid(sid=2885, seg="NSE_EQ", levels=BIDS):
    return encode_depth_side(41, seg, sid, levels, sequence=7)


def ask(sid=2885, seg="NSE_EQ", levels=ASKS):
    return encode_depth_side(51, seg, sid, levels)


def test_a_side_is_332_bytes_with_the_depth_header_layout():
    frame = bid()
    assert len(frame) == 332
    assert struct.unpack_from("<hBBiI", frame) == (332, 41, 1, 2885, 7)
    assert struct.unpack_from("<dII", frame, 12) == (2450.05, 100, 1)


def test_bid_and_ask_of_one_instrument_pair_into_one_event():
    d = decode_depth_frame(bid() + ask(), 42, TICKS)
    assert d.events() == [{"type": "depth", "exchange_segment": "NSE_EQ", "security_id": 2885, "recv_ts": 42,
                           "levels": 20, "bids": BIDS, "asks": ASKS}]
    assert d.types == ["depth"]
    assert (d.packets, d.errors) == (2, 0)


def test_several_instruments_stacked_in_one_frame_keep_their_order():
    frame = bid(1) + ask(1) + bid(2, "NSE_FNO") + ask(2, "NSE_FNO") + ask(3)
    events = decode_depth_frame(frame, 1).events()
    assert [(e["exchange_segment"], e["security_id"], bool(e["bids"]), bool(e["asks"])) for e in events] == [
        ("NSE_EQ", 1, True, True), ("NSE_FNO", 2, True, True), ("NSE_EQ", 3, False, True)]


def test_a_lone_side_is_published_with_the_other_side_empty():
    (only_bid,) = decode_depth_frame(bid(), 1, TICKS).events()
    assert only_bid["bids"] == BIDS and only_bid["asks"] == []
    (only_ask,) = decode_depth_frame(ask(), 1, TICKS).events()
    assert only_ask["asks"] == ASKS and only_ask["bids"] == []


def test_sides_of_different_instruments_or_twice_the_same_side_do_not_pair():
    assert len(decode_depth_frame(bid(1) + ask(2), 1).events()) == 2
    assert len(decode_depth_frame(bid(1) + bid(1), 1).events()) == 2


def test_ask_before_bid_still_pairs():
    (event,) = decode_depth_frame(ask() + bid(), 1, TICKS).events()
    assert event["bids"] == BIDS and event["asks"] == ASKS


def test_prices_snap_to_the_tick_and_unknown_instruments_keep_two_decimals():
    levels = [[2450.0500000001, 1, 1]] * 20
    assert decode_depth_frame(bid(levels=levels), 1, TICKS).events()[0]["bids"][0][0] == 2450.05
    odd = [[101.23456, 1, 1]] * 20
    assert decode_depth_frame(bid(levels=odd), 1).events()[0]["bids"][0][0] == 101.23


def test_disconnect_is_readable_by_the_documented_and_the_sdk_layout():
    frame = encode_depth_disconnect(805)
    assert len(frame) == 14
    assert struct.unpack_from("<h", frame, 0)[0] == 14 and frame[2] == 50
    assert struct.unpack_from("<I", frame, 8)[0] == 805      # where SDK 2.3.0 reads it
    assert struct.unpack_from("<h", frame, 12)[0] == 805     # where the docs put it
    d = decode_depth_frame(bid() + frame, 1)
    assert d.disconnects == [("IDX_I", 0, 805)] and len(d.events()) == 1


def test_twelve_byte_disconnect_takes_the_reason_from_the_sdk_offset():
    frame = struct.pack("<hBBiI", 12, 50, 1, 0, 807)
    assert decode_depth_frame(frame, 1).disconnects == [("NSE_EQ", 0, 807)]


def test_text_frame_is_an_error():
    d = decode_depth_frame('{"x": 1}', 1)
    assert d.error_reasons == {"text frame": 1} and d.events() == []


@pytest.mark.parametrize("frame, reason", [
    (bid()[:200], "depth packet length runs past the frame"),
    (struct.pack("<hBBiI", -5, 41, 1, 1, 0) + bytes(20), "depth packet length runs past the frame"),
    (bid() + b"\x00" * 5, "trailing bytes after the last depth packet"),
    (struct.pack("<hBBiI", 20, 41, 1, 1, 0) + bytes(8), "depth packet body is not whole 16-byte levels"),
])
def test_malformed_frames_count_an_error_and_keep_what_is_whole(frame, reason):
    d = decode_depth_frame(frame, 1)
    assert d.error_reasons == {reason: 1}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e308])
def test_non_finite_or_unsnappable_depth_price_drops_that_side(bad):
    nan_levels = [[bad, 1, 1]] + BIDS[1:]
    d = decode_depth_frame(bid(levels=nan_levels) + ask(), 1, TICKS)
    assert d.error_reasons == {"non-finite price in depth packet": 1}
    assert [e["asks"] for e in d.events()] == [ASKS] and d.events()[0]["bids"] == []


def test_trailing_bytes_after_an_earlier_error_are_counted_too():
    nan_levels = [[math.inf, 1, 1]] * 20
    d = decode_depth_frame(bid(levels=nan_levels) + b"\x01\x02", 1)
    assert d.error_reasons == {"non-finite price in depth packet": 1,
                               "trailing bytes after the last depth packet": 1}


def test_unknown_depth_codes_are_skipped():
    other = struct.pack("<hBBiI", 12, 99, 1, 1, 0)
    d = decode_depth_frame(other + bid(), 1)
    assert (d.skipped, d.packets, len(d.events())) == (1, 2, 1)


def test_side_code_must_be_bid_or_ask():
    with pytest.raises(ValueError, match="41 .* or 51"):
        encode_depth_side(8, "NSE_EQ", 1, BIDS)
