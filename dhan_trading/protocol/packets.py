"""Dhan v2 binary packet layouts (dhan-protocol.md §2 and §4) and their encoders.

The layouts are declared once, as numpy dtypes; the decoder views raw bytes through them and
the encoders pack through the matching `struct` format, so both sides share one definition.
Everything is little-endian; integers are unsigned as the official SDK reads them.
"""
from __future__ import annotations

import struct
from typing import Mapping, Sequence

import numpy as np

from .segments import segment_code

INDEX, TICKER, QUOTE, OI, PREV_CLOSE, MARKET_STATUS, FULL, DISCONNECT = 1, 2, 4, 5, 6, 7, 8, 50
DEPTH_BID, DEPTH_ASK = 41, 51  # 20-level depth feed sides

_HEADER = [("code", "u1"), ("length", "<u2"), ("segment", "u1"), ("security_id", "<u4")]
_QUOTE_BODY = [("ltp", "<f4"), ("ltq", "<u2"), ("ltt", "<u4"), ("atp", "<f4"), ("volume", "<u4"),
               ("total_sell_qty", "<u4"), ("total_buy_qty", "<u4")]
_OHLC = [("open", "<f4"), ("close", "<f4"), ("high", "<f4"), ("low", "<f4")]
_LEVEL = [("bid_qty", "<u4"), ("ask_qty", "<u4"), ("bid_orders", "<u2"), ("ask_orders", "<u2"),
          ("bid_price", "<f4"), ("ask_price", "<f4")]

DTYPES: dict[int, np.dtype] = {
    TICKER: np.dtype(_HEADER + [("ltp", "<f4"), ("ltt", "<u4")]),
    QUOTE: np.dtype(_HEADER + _QUOTE_BODY + _OHLC),
    OI: np.dtype(_HEADER + [("oi", "<u4")]),
    PREV_CLOSE: np.dtype(_HEADER + [("prev_close", "<f4"), ("prev_oi", "<u4")]),
    MARKET_STATUS: np.dtype(_HEADER),
    FULL: np.dtype(_HEADER + _QUOTE_BODY + [("oi", "<u4"), ("oi_day_high", "<u4"), ("oi_day_low", "<u4")]
                   + _OHLC + [(f"{name}{i}", kind) for i in range(5) for name, kind in _LEVEL]),
    DISCONNECT: np.dtype(_HEADER + [("reason", "<u2")]),
}
SIZES: dict[int, int] = {code: dt.itemsize for code, dt in DTYPES.items()}
assert SIZES == {2: 16, 4: 50, 5: 12, 6: 16, 7: 8, 8: 162, 50: 10}

_STRUCTS = {code: struct.Struct("<" + "".join(np.dtype(t).char for _, t in dt.descr))
            for code, dt in DTYPES.items()}
HEADER = struct.Struct("<BHBI")
DEPTH_HEADER = struct.Struct("<hBBiI")  # length, code, segment, security id, sequence/rows
DEPTH_LEVEL = struct.Struct("<dII")     # price (f64), quantity, orders
DEPTH_DISCONNECT_SIZE = 14


def _pack(code: int, segment: str | int, security_id: int, *body) -> bytes:
    seg = segment if isinstance(segment, int) else segment_code(segment)
    return _STRUCTS[code].pack(code, SIZES[code], seg, security_id, *body)


def encode_ticker(segment: str | int, security_id: int, ltp: float, ltt: int) -> bytes:
    return _pack(TICKER, segment, security_id, ltp, ltt)


def _quote_body(q: Mapping) -> tuple:
    return (q["ltp"], q["ltq"], q["ltt"], q["atp"], q["volume"], q["total_sell_qty"], q["total_buy_qty"])


def encode_quote(segment: str | int, security_id: int, q: Mapping) -> bytes:
    """`q` has the event keys of a quote (ltp, ltq, ltt, atp, volume, ..., open, close, high, low)."""
    return _pack(QUOTE, segment, security_id, *_quote_body(q), q["open"], q["close"], q["high"], q["low"])


def encode_oi(segment: str | int, security_id: int, oi: int) -> bytes:
    return _pack(OI, segment, security_id, oi)


def encode_prev_close(segment: str | int, security_id: int, prev_close: float, prev_oi: int) -> bytes:
    return _pack(PREV_CLOSE, segment, security_id, prev_close, prev_oi)


def encode_market_status(segment: str | int = 0, security_id: int = 0) -> bytes:
    return _pack(MARKET_STATUS, segment, security_id)


def encode_full(segment: str | int, security_id: int, q: Mapping,
                bids: Sequence[Sequence], asks: Sequence[Sequence]) -> bytes:
    """A code-8 packet; `bids`/`asks` are 5 `[price, quantity, orders]` levels, best first."""
    if len(bids) != 5 or len(asks) != 5:
        raise ValueError("a full packet carries exactly 5 bid and 5 ask levels")
    levels = []
    for (bp, bq, bo), (ap, aq, ao) in zip(bids, asks):
        levels += (bq, aq, bo, ao, bp, ap)
    return _pack(FULL, segment, security_id, *_quote_body(q), q["oi"], q["oi_day_high"], q["oi_day_low"],
                 q["open"], q["close"], q["high"], q["low"], *levels)


def encode_disconnect(reason: int, segment: str | int = 0, security_id: int = 0) -> bytes:
    return _pack(DISCONNECT, segment, security_id, reason)


def encode_depth_side(code: int, segment: str | int, security_id: int,
                      levels: Sequence[Sequence], sequence: int = 0) -> bytes:
    """One side (41 bid / 51 ask) of a 20-level depth packet: 12-byte header + 16 bytes a level."""
    if code not in (DEPTH_BID, DEPTH_ASK):
        raise ValueError("depth side code must be 41 (bid) or 51 (ask)")
    seg = segment if isinstance(segment, int) else segment_code(segment)
    body = b"".join(DEPTH_LEVEL.pack(p, q, o) for p, q, o in levels)
    return DEPTH_HEADER.pack(DEPTH_HEADER.size + len(body), code, seg, security_id, sequence) + body


def depth_disconnect_reason(packet: bytes) -> int:
    """Reason of a depth-feed disconnect packet: the docs' field at byte 12, or in a packet too
    short for it, the SDK's at byte 8 (dhan-protocol.md §4)."""
    if len(packet) >= DEPTH_DISCONNECT_SIZE:
        return int.from_bytes(packet[12:14], "little")
    return int.from_bytes(packet[8:12], "little")


def encode_depth_disconnect(reason: int) -> bytes:
    """A depth-feed disconnect readable both by the docs' layout (i16 at 12) and the SDK's (u32 at 8)."""
    return DEPTH_HEADER.pack(DEPTH_DISCONNECT_SIZE, DISCONNECT, 0, 0, reason) + struct.pack("<h", reason)
