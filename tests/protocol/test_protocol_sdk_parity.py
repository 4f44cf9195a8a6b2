"""Parity with the official SDK (dhanhq 2.3.0): it decodes our encoders' bytes to our decoder's values.

The SDK formats prices as "%.2f" strings and LTT as HH:MM:SS (UTC of the raw epoch), keeps the
segment as a number and decodes only the first packet of a frame; the comparison is numeric.
"""
from __future__ import annotations

import datetime as dt

import pytest
from dependency import require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhan_trading.protocol import (FeedDecoder, decode_depth_frame, encode_depth_side, encode_disconnect,
                                   encode_market_status, encode_ticker, segment_code)

from protocol_strategies import TICK_TABLE, Packet, packets, prices, sample_quote

pytestmark = pytest.mark.unit

marketfeed = require("dhanhq.marketfeed")
fulldepth = require("dhanhq.fulldepth")

SDK_TYPES = {"Ticker Data": "ticker", "Quote Data": "quote", "OI Data": "oi", "Previous Close": "prev_close",
             "Full Data": "full"}
PRICE_KEYS = {"LTP": "ltp", "avg_price": "atp", "open": "open", "close": "close", "high": "high", "low": "low",
              "prev_close": "prev_close"}
INT_KEYS = {"LTQ": "ltq", "volume": "volume", "total_sell_quantity": "total_sell_qty",
            "total_buy_quantity": "total_buy_qty", "OI": "oi", "oi_day_high": "oi_day_high",
            "oi_day_low": "oi_day_low", "prev_OI": "prev_oi"}
DECODER = FeedDecoder(TICK_TABLE)


def sdk_feed():
    """The SDK's decoder without its constructor (which opens an event loop and wants credentials)."""
    feed = marketfeed.MarketFeed.__new__(marketfeed.MarketFeed)
    feed.on_close = None
    return feed


SDK = sdk_feed()


def hhmmss(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%H:%M:%S")


def assert_same(sdk: dict, ours: list[dict]) -> None:
    """One SDK dict against our event(s) for the same packet, field by field."""
    event = ours[0]
    assert SDK_TYPES[sdk["type"]] == event["type"]
    assert sdk["exchange_segment"] == segment_code(event["exchange_segment"])
    assert sdk["security_id"] == event["security_id"]
    if "LTT" in sdk:
        assert sdk["LTT"] == hhmmss(event["ltt"])
    for theirs, mine in PRICE_KEYS.items():
        if theirs in sdk:
            assert float(sdk[theirs]) == event[mine], theirs
    for theirs, mine in INT_KEYS.items():
        if theirs in sdk:
            assert sdk[theirs] == event[mine], theirs
    compared = {"type", "exchange_segment", "security_id", "LTT", "depth"} | PRICE_KEYS.keys() | INT_KEYS.keys()
    assert set(sdk) <= compared, f"SDK field not compared: {set(sdk) - compared}"
    if sdk["type"] == "Full Data":
        depth = ours[1]
        assert depth["type"] == "depth" and depth["levels"] == len(sdk["depth"]) == 5
        for level, (bid, ask) in zip(sdk["depth"], zip(depth["bids"], depth["asks"])):
            assert [float(level["bid_price"]), level["bid_quantity"], level["bid_orders"]] == bid
            assert [float(level["ask_price"]), level["ask_quantity"], level["ask_orders"]] == ask


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets(kinds=("ticker", "quote", "full", "oi", "prev_close")))
def test_sdk_reads_our_packets_as_our_decoder_does(packet):
    frame = packet.encode()
    ours = DECODER.decode([frame], 1).events()
    assert ours == packet.events(1)
    assert_same(SDK.process_data(frame), ours)


def test_sdk_reads_a_sample_full_packet_as_we_do():
    packet = Packet("full", "NSE_FNO", 35001, sample_quote())
    assert_same(SDK.process_data(packet.encode()), DECODER.decode([packet.encode()], 1).events())


@settings(max_examples=1000, deadline=None)
@given(st.floats(-1e6, 1e6, width=32), st.integers(0, 2**32 - 1))
def test_off_grid_prices_agree_with_the_sdk_to_the_cent(ltp, ltt):
    """Unknown instrument: we keep 2 decimals, like the SDK's "%.2f" (within one float ulp of rounding)."""
    frame = encode_ticker("NSE_EQ", 424242, ltp, ltt)
    (event,) = DECODER.decode([frame], 1).events()
    sdk = SDK.process_data(frame)
    assert float(sdk["LTP"]) == event["ltp"]
    assert sdk["LTT"] == hhmmss(event["ltt"])


def test_market_status_and_disconnect():
    assert SDK.process_data(encode_market_status()) == "Markets Open"
    assert DECODER.decode([encode_market_status()], 1).events()[0]["type"] == "market_status"
    closed = []
    SDK.on_close = closed.append
    try:
        assert SDK.process_data(encode_disconnect(805)) is None
    finally:
        SDK.on_close = None
    assert closed == [SDK]
    assert DECODER.decode([encode_disconnect(805)], 1).disconnects == [("IDX_I", 0, 805)]


def test_sdk_sees_only_the_first_packet_of_a_stacked_frame_where_we_see_all():
    a = Packet("ticker", "IDX_I", 13, {"ltp": 24350.15, "ltt": 1_780_000_000})
    b = Packet("ticker", "IDX_I", 25, {"ltp": 51200.4, "ltt": 1_780_000_001})
    frame = a.encode() + b.encode()
    assert_same(SDK.process_data(frame), a.events(1))
    assert DECODER.decode([frame], 1).events() == a.events(1) + b.events(1)


def sdk_depth_sides(frame: bytes) -> list[dict]:
    """Walk a depth frame through FullDepth.process_data, as its receive loop does via remaining_data."""
    fd = fulldepth.FullDepth.__new__(fulldepth.FullDepth)
    fd.depth_level = 20
    sides = []
    while frame:
        side = fd.process_data(frame)
        if side is None:
            break
        sides.append(side)
        frame = side["remaining_data"]
    return sides


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(prices("0.05"), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                min_size=20, max_size=20),
       st.lists(st.tuples(prices("0.05"), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                min_size=20, max_size=20),
       st.sampled_from([("NSE_EQ", 1333), ("NSE_FNO", 35001)]))
def test_fulldepth_reads_our_depth_20_as_we_do(bids, asks, instrument):
    seg, sid = instrument
    frame = encode_depth_side(41, seg, sid, bids) + encode_depth_side(51, seg, sid, asks)
    (event,) = decode_depth_frame(frame, 1, {instrument: 0.05}).events()
    bid_side, ask_side = sdk_depth_sides(frame)
    assert (bid_side["type"], ask_side["type"]) == ("Bid", "Ask")
    for side, ours in ((bid_side, event["bids"]), (ask_side, event["asks"])):
        assert (side["exchange_segment"], side["security_id"]) == (segment_code(seg), sid)
        assert [[round(lv["price"], 2), lv["quantity"], lv["orders"]] for lv in side["depth"]] == ours


@pytest.mark.parametrize("ltp", [0.125, 0.375, 2.625, 1001.875, 65535.625])
def test_exact_half_cents_round_like_the_sdk(ltp):
    """float32 values exactly halfway between cents: both sides round half to even."""
    frame = encode_ticker("NSE_EQ", 424242, ltp, 0)
    assert float(SDK.process_data(frame)["LTP"]) == DECODER.decode([frame], 1).events()[0]["ltp"]
