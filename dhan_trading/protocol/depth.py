"""20-level depth feed decoder (dhan-protocol.md §4): 12-byte headers, f64 prices, stacked sides.

Bid (41) and ask (51) packets of one instrument arrive back to back in one frame; they are
paired into one `depth` event with 20 levels. A side that arrives alone yields an event with
the other side empty rather than being held back (the decoder keeps no state between frames).
"""
from __future__ import annotations

from typing import Mapping

from .decode import DEFAULT_TICK, Decoded
from .packets import DEPTH_ASK, DEPTH_BID, DEPTH_HEADER, DEPTH_LEVEL, DISCONNECT, depth_disconnect_reason
from .segments import segment_name

import math

import orjson


def _snap(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 4)


def decode_depth_frame(frame: bytes | str, recv_ts: int,
                       ticks: Mapping[tuple[str, int], float] | None = None) -> Decoded:
    """Decode one depth-feed frame into `depth` events (channel dhan:depth) and disconnects."""
    out = Decoded()
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        out.error("text frame")
        return out
    ticks = ticks or {}
    sides: list[tuple[str, int, int, list]] = []
    off, end = 0, len(frame)
    while off + DEPTH_HEADER.size <= end:
        length, code, seg, sid, _ = DEPTH_HEADER.unpack_from(frame, off)
        if length < DEPTH_HEADER.size or off + length > end:
            out.error("depth packet length runs past the frame")
            off = end
            break
        out.packets += 1
        if code == DISCONNECT:
            out.disconnects.append((segment_name(seg), sid, depth_disconnect_reason(frame[off:off + length])))
        elif code in (DEPTH_BID, DEPTH_ASK) and (length - DEPTH_HEADER.size) % DEPTH_LEVEL.size == 0:
            name = segment_name(seg)
            tick = ticks.get((name, sid), DEFAULT_TICK)
            if not 0 < tick < math.inf:  # a bad master tick must not divide by zero or null prices
                tick = DEFAULT_TICK
            raw = list(DEPTH_LEVEL.iter_unpack(frame[off + DEPTH_HEADER.size:off + length]))
            if all(math.isfinite(p / tick) for p, _, _ in raw):  # NaN, inf, or too big to snap
                sides.append((name, sid, code, [[_snap(p, tick), q, o] for p, q, o in raw]))
            else:
                out.error("non-finite price in depth packet")
        elif code in (DEPTH_BID, DEPTH_ASK):
            out.error("depth packet body is not whole 16-byte levels")
        else:
            out.skipped += 1
        off += length
    if off < end:
        out.error("trailing bytes after the last depth packet")
    i = 0
    while i < len(sides):
        name, sid, code, levels = sides[i]
        event = {"type": "depth", "exchange_segment": name, "security_id": sid, "recv_ts": recv_ts,
                 "levels": len(levels), "bids": [], "asks": []}
        event["bids" if code == DEPTH_BID else "asks"] = levels
        nxt = sides[i + 1] if i + 1 < len(sides) else None
        if nxt and nxt[:2] == (name, sid) and nxt[2] != code:
            event["bids" if nxt[2] == DEPTH_BID else "asks"] = nxt[3]
            i += 1
        i += 1
        out.payloads.append(orjson.dumps(event))
        out.types.append("depth")
    return out
