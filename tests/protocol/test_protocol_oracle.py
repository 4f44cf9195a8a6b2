"""An oracle independent of our encoders: every field of every packet type pinned at the byte
offset dhan-protocol.md gives for it (§2.1-§2.8, §4), in bytes written here by hand.

The round-trip tests encode with the same layouts the decoder reads, so a swapped pair of
fields would pass them; these tests write each field with its own `struct.pack_into` at the
documented offset, with a distinct value per field, so any swap, shift or wrong width fails.
"""
from __future__ import annotations

import struct

import pytest

from dhan_trading.protocol.decode import FeedDecoder

pytestmark = pytest.mark.unit
SEG_NSE_FNO, SID = 2, 0x0001_D9F4  # a security id above 16 bits: a u16 read would show it


def packet(code: int, size: int, fields: list[tuple[int, str, float | int]]) -> bytes:
    """Header at 0-7 (§2.1: u8 code, u16 total length, u8 segment, u32 security id), then each
    field at its documented offset."""
    buf = bytearray(size)
    struct.pack_into("<B", buf, 0, code)
    struct.pack_into("<H", buf, 1, size)
    struct.pack_into("<B", buf, 3, SEG_NSE_FNO)
    struct.pack_into("<I", buf, 4, SID)
    for offset, fmt, value in fields:
        struct.pack_into("<" + fmt, buf, offset, value)
    return bytes(buf)


def decode_one(frame: bytes) -> dict:
    decoded = FeedDecoder({("NSE_FNO", SID): 0.05}).decode([frame], 123)
    assert decoded.errors == 0
    events = decoded.events()
    assert events[0]["exchange_segment"] == "NSE_FNO" and events[0]["security_id"] == SID
    return events


def test_ticker_code_2():
    [e] = decode_one(packet(2, 16, [(8, "f", 1234.55), (12, "I", 1_765_000_001)]))
    assert (e["type"], e["ltp"], e["ltt"]) == ("ticker", 1234.55, 1_765_000_001)


def test_prev_close_code_6():
    [e] = decode_one(packet(6, 16, [(8, "f", 987.65), (12, "I", 4_000_000_123)]))
    assert (e["type"], e["prev_close"], e["prev_oi"]) == ("prev_close", 987.65, 4_000_000_123)


def test_oi_code_5():
    [e] = decode_one(packet(5, 12, [(8, "I", 3_000_000_007)]))
    assert (e["type"], e["oi"]) == ("oi", 3_000_000_007)


QUOTE_FIELDS = [  # §2.5: offset, format, event key, value (every value distinct)
    (8, "f", "ltp", 2001.05), (12, "H", "ltq", 65_001), (14, "I", "ltt", 1_765_000_002),
    (18, "f", "atp", 1999.95), (22, "I", "volume", 4_100_000_001), (26, "I", "total_sell_qty", 222_222),
    (30, "I", "total_buy_qty", 333_333), (34, "f", "open", 1990.10), (38, "f", "close", 1980.20),
    (42, "f", "high", 2010.30), (46, "f", "low", 1970.40),
]


def test_quote_code_4_every_field_at_its_offset():
    [e] = decode_one(packet(4, 50, [(o, f, v) for o, f, _, v in QUOTE_FIELDS]))
    assert e["type"] == "quote"
    assert {k: e[k] for _, _, k, _ in QUOTE_FIELDS} == {k: v for _, _, k, v in QUOTE_FIELDS}


FULL_FIELDS = [  # §2.7
    (8, "f", "ltp", 3001.05), (12, "H", "ltq", 60_001), (14, "I", "ltt", 1_765_000_003),
    (18, "f", "atp", 2999.95), (22, "I", "volume", 4_200_000_002), (26, "I", "total_sell_qty", 444_444),
    (30, "I", "total_buy_qty", 555_555), (34, "I", "oi", 12_345_678), (38, "I", "oi_day_high", 13_000_001),
    (42, "I", "oi_day_low", 11_000_002), (46, "f", "open", 2990.10), (50, "f", "close", 2980.20),
    (54, "f", "high", 3010.30), (58, "f", "low", 2970.40),
]


def test_full_code_8_every_field_and_depth_level_at_its_offset():
    fields = [(o, f, v) for o, f, _, v in FULL_FIELDS]
    bids, asks = [], []
    for i in range(5):  # §2.7 depth level i at 62 + 20 i: bid qty, ask qty, bid orders, ask orders, bid, ask
        base = 62 + 20 * i
        bid = (round(3001.00 - 0.05 * i, 2), 1000 + i, 10 + i)
        ask = (round(3001.10 + 0.05 * i, 2), 2000 + i, 20 + i)
        fields += [(base, "I", bid[1]), (base + 4, "I", ask[1]), (base + 8, "H", bid[2]),
                   (base + 10, "H", ask[2]), (base + 12, "f", bid[0]), (base + 16, "f", ask[0])]
        bids.append(list(bid))
        asks.append(list(ask))
    full, depth = decode_one(packet(8, 162, fields))
    assert full["type"] == "full"
    assert {k: full[k] for _, _, k, _ in FULL_FIELDS} == {k: v for _, _, k, v in FULL_FIELDS}
    assert depth["type"] == "depth" and depth["levels"] == 5
    assert depth["bids"] == bids and depth["asks"] == asks


def test_disconnect_code_50_reason_at_offset_8():
    decoded = FeedDecoder().decode([packet(50, 10, [(8, "H", 807)])], 1)
    assert decoded.disconnects == [("NSE_FNO", SID, 807)]


def test_market_status_code_7_is_a_bare_header():
    [e] = decode_one(packet(7, 8, []))
    assert e["type"] == "market_status"


def test_twenty_depth_header_order_and_f64_levels():
    """§4: i16 length at 0, u8 code at 2, u8 segment at 3, i32 security id at 4, u32 sequence at 8;
    16-byte levels of f64 price, u32 quantity, u32 orders."""
    from dhan_trading.protocol.depth import decode_depth_frame

    def side(code: int, prices: list[float]) -> bytes:
        buf = bytearray(12 + 16 * 20)
        struct.pack_into("<h", buf, 0, len(buf))
        struct.pack_into("<B", buf, 2, code)
        struct.pack_into("<B", buf, 3, 1)  # NSE_EQ
        struct.pack_into("<i", buf, 4, 2885)
        struct.pack_into("<I", buf, 8, 99)
        for i, price in enumerate(prices):
            struct.pack_into("<d", buf, 12 + 16 * i, price)
            struct.pack_into("<I", buf, 12 + 16 * i + 8, 500 + i)
            struct.pack_into("<I", buf, 12 + 16 * i + 12, 5 + i)
        return bytes(buf)

    bids = [round(1500.0 - 0.1 * i, 2) for i in range(20)]
    asks = [round(1500.1 + 0.1 * i, 2) for i in range(20)]
    events = decode_depth_frame(side(41, bids) + side(51, asks), 5, {("NSE_EQ", 2885): 0.1}).events()
    [e] = [e for e in events if e["type"] == "depth"]
    assert (e["exchange_segment"], e["security_id"], e["levels"]) == ("NSE_EQ", 2885, 20)
    assert e["bids"] == [[p, 500 + i, 5 + i] for i, p in enumerate(bids)]
    assert e["asks"] == [[p, 500 + i, 5 + i] for i, p in enumerate(asks)]
