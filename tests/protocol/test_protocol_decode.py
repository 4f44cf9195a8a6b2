"""Main-feed decoding: every packet type, stacked frames, order, tick rounding, malformed input."""
from __future__ import annotations

import math
import struct

import numpy as np
import orjson
import pytest

from dhan_trading.protocol import (FeedDecoder, TickTable, decode_frames, encode_disconnect, encode_full,
                                   encode_market_status, encode_oi, encode_prev_close, encode_quote,
                                   encode_ticker, segment_code, segment_name)
from dhan_trading.protocol.packets import SIZES

from protocol_strategies import LTT_2026, TICK_TABLE, Packet, sample_quote

pytestmark = pytest.mark.unit

TS = 1_780_000_000_123_456_789


def decode(frames, recv_ts=TS, ticks=TICK_TABLE):
    return FeedDecoder(ticks).decode(frames, recv_ts)


def _quote_only(q: dict) -> dict:
    return {k: v for k, v in q.items() if k not in ("oi", "oi_day_high", "oi_day_low", "bids", "asks")}


SAMPLES = [
    Packet("ticker", "IDX_I", 13, {"ltp": 24350.15, "ltt": LTT_2026}),
    Packet("quote", "NSE_EQ", 1333, _quote_only(sample_quote(ltp=1642.5, open=1630.0, high=1650.1,
                                                             low=1620.0, close=1629.9))),
    Packet("full", "NSE_FNO", 35001, sample_quote()),
    Packet("oi", "NSE_FNO", 35001, {"oi": 4_000_000_000}),
    Packet("prev_close", "IDX_I", 13, {"prev_close": 24290.4, "prev_oi": 0}),
    Packet("market_status", "IDX_I", 0, {}),
]


@pytest.mark.parametrize("packet", SAMPLES, ids=lambda p: p.kind)
def test_every_packet_type_decodes_to_its_design_event(packet):
    d = decode([packet.encode()])
    assert d.events() == packet.events(TS)
    assert (d.packets, d.skipped, d.errors) == (1, 0, 0)


def test_types_follow_the_events_in_arrival_order():
    d = decode([p.encode() for p in SAMPLES])
    assert d.types == ["ticker", "quote", "full", "depth", "oi", "prev_close", "market_status"]
    assert [e["type"] for e in d.events()] == ["ticker", "quote", "full", "depth", "oi", "prev_close",
                                               "market_status"]


def test_encoders_write_the_documented_sizes_and_header():
    frames = {2: encode_ticker("IDX_I", 13, 1.0, 0), 4: encode_quote("NSE_EQ", 1, sample_quote()),
              5: encode_oi("NSE_FNO", 2, 3), 6: encode_prev_close("IDX_I", 13, 1.0, 0),
              7: encode_market_status(), 8: encode_full("NSE_FNO", 1, sample_quote(), *_sides()),
              50: encode_disconnect(805)}
    for code, frame in frames.items():
        got_code, length, _, _ = struct.unpack_from("<BHBI", frame)
        assert (got_code, length, len(frame)) == (code, SIZES[code], SIZES[code])
    assert {c: len(f) for c, f in frames.items()} == {2: 16, 4: 50, 5: 12, 6: 16, 7: 8, 8: 162, 50: 10}


def _sides():
    q = sample_quote()
    return q["bids"], q["asks"]


def test_full_packet_matches_the_real_capture_of_issue_90():
    """Bytes quoted from a real Dhan frame: header, LTP 152.30, level-5 bid 152.10 / ask 152.80."""
    bids = [[152.3, 1, 1]] * 4 + [[152.1, 1, 1]]
    asks = [[152.4, 1, 1]] * 4 + [[152.8, 1, 1]]
    frame = encode_full("NSE_FNO", 55796, sample_quote(ltp=152.3), bids, asks)
    assert frame[:8] == bytes.fromhex("08a20002f4d90000")
    assert frame[8:12] == bytes.fromhex("cd4c1843")
    assert frame[-8:] == bytes.fromhex("9a191843cdcc1843")
    depth = decode([frame], ticks={("NSE_FNO", 55796): 0.05}).events()[1]
    assert depth["bids"][4][0] == 152.1 and depth["asks"][4][0] == 152.8


def test_full_packet_gives_full_then_its_depth_with_levels_best_first():
    q = sample_quote()
    full, depth = decode([encode_full("NSE_FNO", 35001, q, q["bids"], q["asks"])]).events()
    assert full["oi"] == 2_000_000 and "bids" not in full
    assert depth["levels"] == 5
    assert depth["bids"] == q["bids"] and depth["asks"] == q["asks"]
    assert depth["bids"][0][0] > depth["bids"][1][0] and depth["asks"][0][0] < depth["asks"][1][0]


def test_full_packet_needs_exactly_five_levels_per_side():
    with pytest.raises(ValueError, match="5 bid and 5 ask"):
        encode_full("NSE_FNO", 1, sample_quote(), [[1.0, 1, 1]] * 4, [[1.0, 1, 1]] * 5)


def test_unsigned_fields_keep_their_full_range():
    q = sample_quote(ltq=65_535, volume=2**32 - 1, total_buy_qty=2**31 + 5, oi=2**32 - 1)
    full = decode([encode_full("NSE_FNO", 2**32 - 1, q, q["bids"], q["asks"])], ticks=None).events()[0]
    assert (full["security_id"], full["ltq"], full["volume"], full["total_buy_qty"], full["oi"]) == (
        2**32 - 1, 65_535, 2**32 - 1, 2**31 + 5, 2**32 - 1)


# --- several packets per frame, arrival order -------------------------------------------------

def test_stacked_frame_decodes_every_packet_in_order():
    frame = b"".join(p.encode() for p in SAMPLES)
    d = decode([frame])
    assert d.events() == [e for p in SAMPLES for e in p.events(TS)]
    assert (d.packets, d.errors) == (len(SAMPLES), 0)


def test_arrival_order_is_kept_across_frames_and_packet_types():
    """Mixed codes in one batch come out in arrival order; each full's depth follows it at once."""
    q = sample_quote()
    seq = [Packet("full", "NSE_FNO", 35001, q), Packet("ticker", "IDX_I", 13, {"ltp": 1.05, "ltt": 1}),
           Packet("full", "NSE_FNO", 35002, sample_quote(ltp=10.0)),
           Packet("oi", "NSE_FNO", 35001, {"oi": 5}), Packet("ticker", "IDX_I", 13, {"ltp": 2.1, "ltt": 2}),
           Packet("quote", "NSE_EQ", 1333, _quote_only(q)), Packet("full", "NSE_FNO", 35001, q)]
    frames = [seq[0].encode(), seq[1].encode() + seq[2].encode(), seq[3].encode(),
              seq[4].encode() + seq[5].encode() + seq[6].encode()]
    stamps = [TS, TS + 1, TS + 2, TS + 3]
    d = decode(frames, stamps)
    frame_of = [0, 1, 1, 2, 3, 3, 3]
    expected = [e for p, f in zip(seq, frame_of) for e in p.events(stamps[f])]
    assert d.events() == expected
    assert [e["type"] for e in d.events()] == ["full", "depth", "ticker", "full", "depth", "oi", "ticker",
                                               "quote", "full", "depth"]


def test_one_receive_time_may_stand_for_the_whole_batch():
    frames = [SAMPLES[0].encode(), SAMPLES[3].encode()]
    assert [e["recv_ts"] for e in decode(frames, TS).events()] == [TS, TS]
    assert [e["recv_ts"] for e in decode(frames, np.int64(TS)).events()] == [TS, TS]
    assert [e["recv_ts"] for e in decode(frames, [5, 6]).events()] == [5, 6]


# --- skipped and disconnect packets -------------------------------------------------------------

def test_index_packets_and_unknown_codes_are_counted_and_skipped():
    index = struct.pack("<BHBI", 1, 16, 0, 13) + bytes(8)
    unknown = struct.pack("<BHBI", 99, 12, 2, 7) + bytes(4)
    d = decode([index, unknown + SAMPLES[0].encode(), index + index])
    assert d.packets == 5 and d.skipped == 4 and d.errors == 0
    assert d.error_reasons["unknown packet code 99"] == 1
    assert [e["type"] for e in d.events()] == ["ticker"]


def test_disconnect_packet_is_reported_with_its_reason():
    d = decode([SAMPLES[0].encode() + encode_disconnect(807, "NSE_FNO", 5), encode_disconnect(805)])
    assert d.disconnects == [("NSE_FNO", 5, 807), ("IDX_I", 0, 805)]
    assert len(d.events()) == 1 and d.errors == 0


# --- tick rounding ------------------------------------------------------------------------------

@pytest.mark.parametrize("sent, tick, expected", [
    (24350.15, 0.05, 24350.15),       # NSE 0.05 grid below 2^17: exact
    (131000.05, 0.05, 131000.05),     # just below 2^17: still exact
    (131073.0, 1.0, 131073.0),        # MCX GOLD above 2^17 on a Rs 1 tick
    (131072.4, 1.0, 131072.0),        # float32 131072.40625 snaps to the Rs 1 grid
    (1_000_001.0, 1.0, 1_000_001.0),
    (152.3, 0.1, 152.3),
    (0.05, 0.05, 0.05),
    (0.0, 0.05, 0.0),
])
def test_prices_snap_to_the_instrument_tick(sent, tick, expected):
    d = decode([encode_ticker("MCX_COMM", 1, sent, 0)], ticks={("MCX_COMM", 1): tick})
    assert d.events()[0]["ltp"] == expected
    assert b'"ltp":%s,' % str(expected).encode() in d.payloads[0]


def test_unknown_instrument_keeps_two_decimals():
    """131072.10 cannot be a float32 (it is 131072.09375); an unknown tick gives 2 decimals."""
    d = decode([encode_ticker("MCX_COMM", 999, 131072.1, 0), encode_ticker("NSE_EQ", 1, 12.345678, 0)],
               ticks={("MCX_COMM", 1): 1.0})
    assert [e["ltp"] for e in d.events()] == [131072.09, 12.35]


def test_tick_applies_to_its_own_segment_only():
    ticks = {("NSE_FNO", 13): 1.0}
    d = decode([encode_ticker("IDX_I", 13, 100.4, 0), encode_ticker("NSE_FNO", 13, 100.4, 0)], ticks=ticks)
    assert [e["ltp"] for e in d.events()] == [100.4, 100.0]


def test_atp_keeps_two_decimals_off_the_grid():
    q = sample_quote(atp=151.87)
    assert decode([encode_quote("NSE_FNO", 35001, q)]).events()[0]["atp"] == 151.87


def test_tick_table_accepts_a_prebuilt_table_and_empty_lookups():
    table = TickTable({("NSE_FNO", 1): 0.05, ("MCX_COMM", 2): 1.0})
    assert FeedDecoder(table).ticks is table
    got = table.lookup(np.array([2, 5, 5], np.uint8), np.array([1, 2, 3], np.uint32))
    assert got.tolist() == [0.05, 1.0, 0.01]
    assert TickTable().lookup(np.array([2], np.uint8), np.array([1], np.uint32)).tolist() == [0.01]
    assert table.lookup(np.array([], np.uint8), np.array([], np.uint32)).tolist() == []


# --- float32 edge cases -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_price_drops_the_packet_and_counts_an_error(bad):
    q = sample_quote()
    bad_depth = [[bad, 1, 1]] + q["bids"][1:]
    frames = [encode_ticker("IDX_I", 13, bad, 0), SAMPLES[0].encode(),
              encode_quote("NSE_EQ", 1333, _quote_only(sample_quote(high=bad))),
              encode_full("NSE_FNO", 35001, q, bad_depth, q["asks"]),
              encode_prev_close("IDX_I", 13, bad, 0), encode_full("NSE_FNO", 35001, q, q["bids"], q["asks"])]
    d = decode(frames)
    assert [e["type"] for e in d.events()] == ["ticker", "full", "depth"]
    assert d.errors == 4 and d.packets == 6
    assert d.error_reasons["non-finite price in ticker packet"] == 1
    assert d.error_reasons["non-finite price in full packet"] == 1
    assert all(math.isfinite(v) for e in d.events() for v in e.values() if isinstance(v, float))


def test_a_batch_of_only_non_finite_packets_yields_nothing():
    d = decode([encode_ticker("IDX_I", 13, math.nan, 0)] * 3)
    assert d.events() == [] and d.errors == 3


def test_huge_and_tiny_float32_prices_render_as_json_numbers():
    d = decode([encode_ticker("IDX_I", 1, 3.4e38, 0), encode_ticker("IDX_I", 2, 1e-30, 0),
                encode_ticker("IDX_I", 3, -5.5, 0)], ticks=None)
    assert [e["ltp"] for e in d.events()] == [pytest.approx(3.4e38, rel=1e-6), 0.0, -5.5]


# --- malformed input ----------------------------------------------------------------------------

def test_text_frames_are_counted_and_the_rest_decoded():
    d = decode(["{\"hello\": 1}", SAMPLES[0].encode(), "x"], [1, 2, 3])
    assert d.error_reasons == {"text frame": 2}
    assert [e["recv_ts"] for e in d.events()] == [2]
    only_text = decode(["a", "b"])
    assert (only_text.events(), only_text.errors) == ([], 2)


def test_empty_batch_decodes_to_nothing():
    d = decode([])
    assert (d.events(), d.packets, d.errors) == ([], 0, 0)


def test_frames_shorter_than_a_header_are_errors():
    d = decode([b"", b"\x02\x10", SAMPLES[0].encode()[:7]])
    assert d.error_reasons == {"frame shorter than a header": 3} and d.packets == 0


def test_truncated_packet_is_an_error_and_the_packets_before_it_survive():
    good = SAMPLES[0].encode()
    d = decode([good + SAMPLES[2].encode()[:100], good[:12]])
    assert [e["type"] for e in d.events()] == ["ticker"]
    assert d.errors == 2
    assert d.error_reasons["packet length field runs past the frame"] == 2


def test_length_field_shorter_than_the_packet_layout_is_an_error():
    short_full = bytearray(SAMPLES[2].encode()[:16])
    struct.pack_into("<H", short_full, 1, 16)
    d = decode([bytes(short_full), bytes(short_full) + SAMPLES[0].encode()])
    assert d.error_reasons == {"packet code 8 shorter than 162 bytes": 2}
    assert [e["type"] for e in d.events()] == ["ticker"]


def test_length_field_below_a_header_stops_the_frame():
    bad = bytearray(SAMPLES[0].encode())
    struct.pack_into("<H", bad, 1, 3)
    d = decode([SAMPLES[0].encode() + bytes(bad) + SAMPLES[0].encode()])
    assert d.error_reasons == {"packet length < 8": 1} and len(d.events()) == 1


def test_trailing_bytes_after_the_last_packet_are_an_error():
    d = decode([SAMPLES[0].encode() + b"\x02\x10\x00"])
    assert d.error_reasons == {"trailing bytes after the last packet": 1} and len(d.events()) == 1


def test_longer_length_field_than_layout_decodes_the_known_prefix():
    """A future packet grown at the end still decodes its known fields (forward compatible)."""
    frame = bytearray(SAMPLES[0].encode() + b"\x00" * 4)
    struct.pack_into("<H", frame, 1, 20)
    assert decode([bytes(frame)]).events() == SAMPLES[0].events(TS)


def test_bytearray_memoryview_and_bytes_subclass_frames_are_accepted():
    class Frame(bytes):
        pass

    frame = SAMPLES[0].encode()
    d = decode([bytearray(frame), memoryview(frame), Frame(frame)])
    assert len(d.events()) == 3 and d.errors == 0 and not d.error_reasons


# --- helpers of Decoded -------------------------------------------------------------------------

def test_render_is_cached_and_payloads_are_json():
    d = decode([p.encode() for p in SAMPLES])
    types, payloads = d.render()
    assert d.render() is d.render()
    assert [orjson.loads(p) for p in payloads] == d.events()
    assert d.types == types and d.payloads == payloads


def test_continuity_reports_the_last_ltt_and_volume_per_instrument():
    q = sample_quote()
    frames = [encode_ticker("IDX_I", 13, 1.0, 100),
              encode_full("NSE_FNO", 35001, sample_quote(ltt=50, volume=10), q["bids"], q["asks"]),
              encode_quote("NSE_FNO", 35001, _quote_only(sample_quote(ltt=60, volume=20))),
              encode_ticker("IDX_I", 13, 1.0, 200) + encode_oi("NSE_FNO", 35001, 1),
              encode_ticker("IDX_I", 25, 1.0, 300)]
    assert decode(frames).continuity() == {("IDX_I", 13): (200, None), ("NSE_FNO", 35001): (60, 20),
                                           ("IDX_I", 25): (300, None)}


def test_continuity_takes_the_latest_packet_across_packet_types():
    """Last packet wins even when another type's packets for other instruments arrive later."""
    q = sample_quote()
    frames = [encode_ticker("NSE_FNO", 35001, 1.0, 10),
              encode_full("NSE_FNO", 35001, sample_quote(ltt=20, volume=7), q["bids"], q["asks"]),
              encode_ticker("IDX_I", 13, 1.0, 30)]
    assert decode(frames).continuity()[("NSE_FNO", 35001)] == (20, 7)


def test_decode_frames_is_a_one_off_decoder():
    d = decode_frames(iter([SAMPLES[0].encode()]), 7, {("IDX_I", 13): 0.05})
    assert d.events() == SAMPLES[0].events(7)


# --- segments -----------------------------------------------------------------------------------

def test_segment_names_and_codes_follow_the_annexure():
    assert [segment_name(c) for c in (0, 1, 2, 3, 4, 5, 7, 8)] == [
        "IDX_I", "NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "MCX_COMM", "BSE_CURRENCY", "BSE_FNO"]
    assert segment_code("MCX_COMM") == 5


def test_unknown_segment_keeps_its_number_both_ways():
    assert segment_name(6) == "SEGMENT_6" and segment_code("SEGMENT_6") == 6
    event = decode([encode_ticker(6, 1, 1.0, 0)]).events()[0]
    assert event["exchange_segment"] == "SEGMENT_6"
    with pytest.raises(ValueError, match="unknown exchange segment 'NSE'"):
        segment_code("NSE")
