"""Main-feed decoder: a batch of raw frames -> events (DESIGN §3.3), in arrival order.

Why batches and numpy: the feed drains its receive queue in batches, and decoding a batch
through numpy views of the packet layouts costs a fraction of a per-packet Python decode (see
docs/PERFORMANCE.md). Every packet of every frame is decoded, walking frames by the length
field. A malformed frame (truncated, wrong length, text, random bytes, non-finite prices) never
raises: what is valid is decoded and the rest is counted in `errors` with a reason.

Decoding yields typed records per packet code (numpy rows, prices snapped to the tick grid);
`Decoded.render()` turns them into the JSON published to Redis, column by column, with orjson
rendering the numbers; `Decoded.events()` parses that JSON back for callers that want dicts.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import orjson

from .packets import (DISCONNECT, DTYPES, FULL, HEADER, INDEX, MARKET_STATUS, OI, PREV_CLOSE,
                      QUOTE, SIZES, TICKER)
from .segments import SEGMENT_CODES, segment_name

DEFAULT_TICK = 0.01  # "2 decimals when unknown"

_SEG_BYTES = [segment_name(code).encode() for code in range(256)]
_BINARY_TYPES = (bytes, bytearray, memoryview)
_BINARY = frozenset(_BINARY_TYPES)

# Per packet code: (event type, [(json key, column, kind)]) where kind is
# "tick" (price rounded to the instrument's tick), "p2" (price rounded to 2 decimals) or "int".
_QUOTE_FIELDS = [("ltp", "ltp", "tick"), ("ltt", "ltt", "int"), ("ltq", "ltq", "int"),
                 ("atp", "atp", "p2"), ("volume", "volume", "int"),
                 ("total_buy_qty", "total_buy_qty", "int"), ("total_sell_qty", "total_sell_qty", "int"),
                 ("open", "open", "tick"), ("high", "high", "tick"), ("low", "low", "tick"),
                 ("close", "close", "tick")]
_LAYOUT: dict[int, tuple[str, list[tuple[str, str, str]]]] = {
    TICKER: ("ticker", [("ltp", "ltp", "tick"), ("ltt", "ltt", "int")]),
    QUOTE: ("quote", _QUOTE_FIELDS),
    FULL: ("full", _QUOTE_FIELDS + [("oi", "oi", "int"), ("oi_day_high", "oi_day_high", "int"),
                                ("oi_day_low", "oi_day_low", "int")]),
    OI: ("oi", [("oi", "oi", "int")]),
    PREV_CLOSE: ("prev_close", [("prev_close", "prev_close", "tick"), ("prev_oi", "prev_oi", "int")]),
    MARKET_STATUS: ("market_status", []),
}


def _template(event_type: str, fields: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f',"{key}":%b' for key, _, _ in fields)
    return ('{"type":"%s","exchange_segment":"%%b","security_id":%%b,"recv_ts":%%b%s}'
            % (event_type, body)).encode()


_TEMPLATES = {code: _template(t, f) for code, (t, f) in _LAYOUT.items()}
_DEPTH_LEVELS = ",".join(["[%b,%b,%b]"] * 5)
_DEPTH_TEMPLATE = ('{"type":"depth","exchange_segment":"%b","security_id":%b,"recv_ts":%b,'
                   '"levels":5,"bids":[' + _DEPTH_LEVELS + '],"asks":[' + _DEPTH_LEVELS + ']}').encode()


def instrument_key(segment: str, security_id: int) -> int:
    """One integer per instrument (segment code << 32 | security id): whole columns of packets
    are matched against sorted arrays of these instead of per-packet dict lookups."""
    return (SEGMENT_CODES.get(segment, 255) << 32) | int(security_id)


def instrument_keys(segments: np.ndarray, security_ids: np.ndarray) -> np.ndarray:
    """`instrument_key` of every row of decoded `segment` / `security_id` columns."""
    return (segments.astype(np.uint64) << np.uint64(32)) | security_ids.astype(np.uint64)


class TickTable:
    """Tick size per instrument, looked up for a whole column at once (sorted keys + searchsorted)."""

    def __init__(self, ticks: Mapping[tuple[str, int], float] | None = None):
        ticks = ticks or {}
        keys = np.array([instrument_key(seg, sid) for seg, sid in ticks], dtype=np.uint64)
        values = np.array(list(ticks.values()), dtype=np.float64)
        values[~((values > 0) & np.isfinite(values))] = DEFAULT_TICK  # 0, < 0, NaN: prices stay real
        order = np.argsort(keys)
        self.keys, self.values = keys[order], values[order]

    def lookup(self, segments: np.ndarray, security_ids: np.ndarray) -> np.ndarray:
        result = np.full(len(segments), DEFAULT_TICK)
        if len(self.keys) and len(segments):
            keys = instrument_keys(segments, security_ids)
            pos = np.searchsorted(self.keys, keys)
            pos[pos >= len(self.keys)] = 0
            found = self.keys[pos] == keys
            result[found] = self.values[pos[found]]
        return result


def round_to_tick(prices: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Snap float32 wire prices onto the tick grid (exact below 2^17 for 0.05 ticks, §2.9)."""
    return np.round(np.round(prices / ticks) * ticks, 4)


@dataclass
class PacketRecords:
    """Decoded packets of one code: the raw rows, their receive times, arrival order and the
    price columns already snapped to the tick grid (float64)."""

    code: int
    rows: np.ndarray
    recv_ts: np.ndarray
    order: np.ndarray
    prices: dict[str, np.ndarray]


@dataclass
class Decoded:
    """What one batch of frames decoded to: typed records per packet code, plus the counts."""

    records: list[PacketRecords] = field(default_factory=list)
    disconnects: list[tuple[str, int, int]] = field(default_factory=list)  # (segment, id, reason)
    packets: int = 0
    skipped: int = 0           # code 1 (index) and unknown codes: counted, not decoded
    errors: int = 0            # malformed frames / packets
    error_reasons: Counter = field(default_factory=Counter)
    _rendered: tuple[list[str], list[bytes]] | None = None  # (event types, JSON payloads)

    def error(self, reason: str, count: int = 1) -> None:
        self.errors += count
        self.error_reasons[reason] += count

    def render(self) -> tuple[list[str], list[bytes]]:
        """(event type, JSON payload) of every event, in arrival order (a full packet gives two).

        Types, not Redis channels: the pure layer knows no Redis names (bus.EVENT_CHANNEL maps them)."""
        if self._rendered is None:
            self._rendered = render(self.records)
        return self._rendered

    @property
    def types(self) -> list[str]:
        return self.render()[0]

    @property
    def payloads(self) -> list[bytes]:
        return self.render()[1]

    def events(self) -> list[dict]:
        return [orjson.loads(p) for p in self.payloads]

    def continuity(self) -> dict[tuple[str, int], tuple[int, int | None]]:
        """Last (ltt, cumulative volume or None) per (segment, security id) in this batch."""
        seen: list[tuple[int, tuple[str, int], tuple[int, int | None]]] = []
        for rec in self.records:
            if rec.code not in (TICKER, QUOTE, FULL):
                continue
            names = [segment_name(s) for s in rec.rows["segment"].tolist()]
            vols = rec.rows["volume"].tolist() if rec.code != TICKER else [None] * len(names)
            seen += zip(rec.order.tolist(), zip(names, rec.rows["security_id"].tolist()),
                        zip(rec.rows["ltt"].tolist(), vols))
        seen.sort(key=lambda item: item[0])  # arrival order across packet types: the last one wins
        return {key: value for _, key, value in seen}


class FeedDecoder:
    """Decodes main-feed frames; holds only the tick table (no other state between batches)."""

    def __init__(self, ticks: Mapping[tuple[str, int], float] | TickTable | None = None):
        self.ticks = ticks if isinstance(ticks, TickTable) else TickTable(ticks)

    def decode(self, frames: Sequence[bytes | str], recv_ts: Sequence[int] | int) -> Decoded:
        """Decode `frames` received at `recv_ts` (one ns timestamp per frame, or one for all)."""
        out = Decoded()
        if not frames:
            return out
        if not set(map(type, frames)) <= _BINARY:  # a set of types: a C loop, not a Python one
            kept = [(f, t) for f, t in zip(frames, _per_frame(recv_ts, len(frames))) if isinstance(f, _BINARY_TYPES)]
            if len(kept) < len(frames):
                out.error("text frame", len(frames) - len(kept))
            frames, recv_ts = [f for f, _ in kept], [t for _, t in kept]
            if not frames:
                return out
        n = len(frames)
        stamps = np.asarray(_per_frame(recv_ts, n), dtype=np.int64)
        sizes = np.fromiter(map(len, frames), np.int64, n)
        buf = b"".join(frames)
        u8 = np.frombuffer(buf, np.uint8)
        starts = np.zeros(n, np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])

        big = sizes >= 8
        short = int(n - np.count_nonzero(big))
        if short:
            out.error("frame shorter than a header", short)
        lengths = np.zeros(n, np.int64)
        lengths[big] = u8[starts[big] + 1].astype(np.int64) | (u8[starts[big] + 2].astype(np.int64) << 8)
        single = big & (lengths == sizes)
        p_start, p_frame = starts[single], np.flatnonzero(single)
        multi = np.flatnonzero(big & ~single)
        if len(multi):
            extra_start, extra_frame = _split(buf, starts, sizes, multi, out)
            p_start = np.concatenate([p_start, extra_start])
            p_frame = np.concatenate([p_frame, extra_frame])
            arrival = np.argsort(p_start, kind="stable")  # byte offset in the batch = arrival order
            p_start, p_frame = p_start[arrival], p_frame[arrival]
        if not len(p_start):
            return out
        p_code = u8[p_start]
        p_len = u8[p_start + 1].astype(np.int64) | (u8[p_start + 2].astype(np.int64) << 8)
        out.packets = len(p_start)

        for code in np.unique(p_code).tolist():
            sel = p_code == code
            if code not in SIZES:
                out.skipped += int(np.count_nonzero(sel))
                if code != INDEX:
                    out.error_reasons[f"unknown packet code {code}"] += int(np.count_nonzero(sel))
                continue
            size = SIZES[code]
            ok = sel & (p_len >= size)
            bad = int(np.count_nonzero(sel) - np.count_nonzero(ok))
            if bad:
                out.error(f"packet code {code} shorter than {size} bytes", bad)
            if not ok.any():
                continue
            starts_ok = p_start[ok]
            rows = _windows(buf, size)[starts_ok].view(DTYPES[code]).ravel()
            if code == DISCONNECT:
                out.disconnects += [(segment_name(s), i, r) for s, i, r in zip(
                    rows["segment"].tolist(), rows["security_id"].tolist(), rows["reason"].tolist())]
                continue
            rec = self._records(code, rows, stamps[p_frame[ok]], starts_ok * 2, out)
            if rec is not None:
                out.records.append(rec)
        return out

    def _records(self, code: int, rows: np.ndarray, stamps: np.ndarray, order: np.ndarray,
                 out: Decoded) -> PacketRecords | None:
        """Snap prices to the tick grid; rows with non-finite prices are counted and dropped."""
        price_cols = _PRICE_COLUMNS[code]
        if not price_cols:
            return PacketRecords(code, rows, stamps, order, {})
        raw = np.empty((len(price_cols), len(rows)))  # one matrix: a few numpy calls, not a few per column
        for i, col in enumerate(price_cols):
            raw[i] = rows[col]
        finite = np.isfinite(raw).all(axis=0)
        if not finite.all():
            out.error(f"non-finite price in {_LAYOUT[code][0]} packet", int(len(rows) - np.count_nonzero(finite)))
            rows, stamps, order, raw = rows[finite], stamps[finite], order[finite], raw[:, finite]
            if not len(rows):
                return None
        snapped = round_to_tick(raw, self.ticks.lookup(rows["segment"], rows["security_id"]))
        prices = dict(zip(price_cols, snapped))
        if "atp" in prices:
            prices["atp"] = np.round(raw[price_cols.index("atp")], 2)
        return PacketRecords(code, rows, stamps, order, prices)


_PRICE_COLUMNS = {code: [col for _, col, kind in fields if kind != "int"] for code, (_, fields) in _LAYOUT.items()}
_PRICE_COLUMNS[FULL] = _PRICE_COLUMNS[FULL] + [f"{s}_price{i}" for i in range(5) for s in ("bid", "ask")]
_SEG_OBJ = np.array(_SEG_BYTES, dtype=object)
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _texts(values: np.ndarray) -> list[bytes]:
    """JSON text of every value of a column, rendered in one C call (orjson) and split."""
    return orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)[1:-1].split(b",")


def _blocks(matrix: np.ndarray) -> list[list[bytes]]:
    """JSON texts of every row of a (columns x packets) matrix, in one orjson call and one split."""
    texts = _texts(matrix.ravel())
    n = matrix.shape[1]
    return [texts[i:i + n] for i in range(0, len(texts), n)]


def _render_record(rec: PacketRecords) -> list[list[bytes]]:
    """Payloads of one record: its main event, and for a full packet its depth event too."""
    int_cols, price_cols, outputs = _PLANS[rec.code]
    ints = np.empty((len(int_cols), len(rec.rows)), np.int64)
    ints[0], ints[1] = rec.rows["security_id"], rec.recv_ts
    for i, col in enumerate(int_cols[2:], 2):
        ints[i] = rec.rows[col]
    texts = [_SEG_OBJ[rec.rows["segment"]].tolist()] + _blocks(ints)
    if price_cols:
        texts += _blocks(np.stack([rec.prices[col] for col in price_cols]))
    return [[template % row for row in zip(*[texts[i] for i in slots])] for template, slots in outputs]


def _plan(code: int) -> tuple[list[str], list[str], list[tuple[bytes, list[int]]]]:
    """Which integer and price columns a record renders, and where each template takes them from."""
    int_cols, price_cols = ["security_id", "recv_ts"], _PRICE_COLUMNS[code]
    fields = [col for _, col, _ in _LAYOUT[code][1]]
    depth = [f"{side}_{name}{i}" for side in ("bid", "ask") for i in range(5) for name in ("price", "qty", "orders")]
    int_cols += [col for col in fields + (depth if code == FULL else []) if col not in price_cols]

    def slots(columns: list[str]) -> list[int]:
        return [0, 1, 2] + [1 + int_cols.index(c) if c in int_cols else 1 + len(int_cols) + price_cols.index(c)
                            for c in columns]
    outputs = [(_TEMPLATES[code], slots(fields))]
    if code == FULL:
        outputs.append((_DEPTH_TEMPLATE, slots(depth)))
    return int_cols, price_cols, outputs


_PLANS = {code: _plan(code) for code in _LAYOUT}


def render(records: list[PacketRecords]) -> tuple[list[str], list[bytes]]:
    """Records -> (event types, JSON payloads) in arrival order; the depth of a full packet follows it."""
    parts: list[tuple[np.ndarray, str, list[bytes]]] = []
    for rec in records:
        payloads = _render_record(rec)
        parts.append((rec.order, _LAYOUT[rec.code][0], payloads[0]))
        if rec.code == FULL:
            parts.append((rec.order + 1, "depth", payloads[1]))
    if not parts:
        return [], []
    if len(parts) == 1:
        return [parts[0][1]] * len(parts[0][2]), parts[0][2]
    payloads = [p for _, _, part in parts for p in part]
    types = [t for _, t, part in parts for _ in part]
    order = np.argsort(np.concatenate([o for o, _, _ in parts]), kind="stable").tolist()
    return [types[i] for i in order], [payloads[i] for i in order]


def _windows(buf: bytes, size: int) -> np.ndarray:
    """Read-only view of every `size`-byte window of `buf` (row i starts at byte i): indexing it
    with packet starts copies whole rows, several times faster than a per-byte gather."""
    return np.ndarray((len(buf) - size + 1, size), np.uint8, buf, 0, (1, 1))


def _split(buf: bytes, starts, sizes, frames: np.ndarray, out: Decoded):
    """Walk the frames that hold several packets (or a bad length) packet by packet."""
    p_start: list[int] = []
    p_frame: list[int] = []
    unpack = HEADER.unpack_from
    for f in frames.tolist():
        base, end = int(starts[f]), int(starts[f] + sizes[f])
        off = base
        while off + 8 <= end:
            length = unpack(buf, off)[1]
            if length < 8 or off + length > end:
                out.error("packet length field runs past the frame" if length >= 8 else "packet length < 8")
                break
            p_start.append(off)
            p_frame.append(f)
            off += length
        else:
            if off != end:
                out.error("trailing bytes after the last packet")
    return np.asarray(p_start, np.int64), np.asarray(p_frame, np.int64)


def _per_frame(recv_ts: Sequence[int] | int, n: int) -> Sequence[int]:
    return [int(recv_ts)] * n if isinstance(recv_ts, (int, np.integer)) else recv_ts


def decode_frames(frames: Iterable[bytes], recv_ts: int, ticks: Mapping[tuple[str, int], float] | None = None) -> Decoded:
    """Convenience: decode frames with a one-off decoder (the feed keeps a FeedDecoder)."""
    return FeedDecoder(ticks).decode(list(frames), recv_ts)
