"""Stream entry -> database row: pure validation and conversion, no I/O.

Each event becomes one tuple in the column order of its table (`COLUMNS`), ready for a DBAPI
`executemany`. An entry that cannot be stored (bad JSON, missing or mistyped keys, an event on
the wrong stream) raises `Poison` with a reason, so the writer can dead-letter it instead of
letting one bad entry block the whole group.

Prices reach the driver in the form its column wants: a float for MySQL's DECIMAL(18,4) (the
server rounds the double to 4 decimals, which is exact for tick-rounded prices), an integer
scaled by 10^4 for SQLite (the same as `schema.Price` does through SQLAlchemy).
"""
from __future__ import annotations

import functools
import math
import re
import struct
from typing import Any, Callable

import orjson

from .. import bus
from ..schema import EVENT_TABLES, PRICE_SCALE, depth, gaps, pack_levels, quotes, stream_id_to_event_id, ticks

TICKS_COLUMNS = tuple(c.name for c in ticks.columns)
QUOTES_COLUMNS = tuple(c.name for c in quotes.columns)
DEPTH_COLUMNS = tuple(c.name for c in depth.columns)
GAPS_COLUMNS = tuple(c.name for c in gaps.columns)
COLUMNS = {table.name: tuple(c.name for c in table.columns) for table in EVENT_TABLES.values()}
STREAM_TABLE = {stream: table.name for stream, table in EVENT_TABLES.items()}
GAP = "gap"  # the feed's gap events (market_feed/continuity.py), on bus.STREAM_GAPS
_EVENT_STREAM = {**bus.EVENT_STREAM, GAP: bus.STREAM_GAPS}
_GAP_FIELDS = ("last_ltt", "last_volume", "resume_ltt", "resume_volume")

# Quote-table columns after the common ones and `type`, with how each value is checked.
_PRICE, _INT = "price", "int"
_QUOTE_FIELDS = (("ltp", _PRICE), ("ltt", _INT), ("ltq", _INT), ("atp", _PRICE), ("volume", _INT),
                 ("total_buy_qty", _INT), ("total_sell_qty", _INT), ("open", _PRICE),
                 ("high", _PRICE), ("low", _PRICE), ("close", _PRICE), ("oi", _INT),
                 ("oi_day_high", _INT), ("oi_day_low", _INT), ("prev_close", _PRICE),
                 ("prev_oi", _INT))
assert QUOTES_COLUMNS[5:] == tuple(name for name, _ in _QUOTE_FIELDS), "schema and rows.py disagree"
assert TICKS_COLUMNS == ("event_id", "exchange_segment", "security_id", "recv_ts", "ltp", "ltt")
assert DEPTH_COLUMNS == ("event_id", "exchange_segment", "security_id", "recv_ts", "levels", "bids", "asks")
assert GAPS_COLUMNS == ("event_id", "exchange_segment", "security_id", "recv_ts", "reason") + _GAP_FIELDS

QUOTE_TYPES = frozenset(t for t, s in bus.EVENT_STREAM.items() if s == bus.STREAM_QUOTES)
_LTP_REQUIRED = frozenset({"ticker", "quote", "full"})
_MAX_PRICE = 1e13  # DECIMAL(18,4) holds < 10^14; anything near that is garbage, not a price
_MAX_BIGINT = 2**63 - 1
_MAX_DEPTH_BYTES = depth.c.bids.type.length
# Segment names are Dhan's (NSE_FNO, IDX_I, MCX_COMM ...): nothing else reaches a table.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_]{1,%d}\Z" % ticks.c.exchange_segment.type.length)

PriceCodec = Callable[[float], Any]


class Poison(ValueError):
    """The entry can never be stored; the message says why (it goes to the dead-letter stream)."""


def mysql_price(value: float) -> float:
    return value


def sqlite_price(value: float) -> int:
    return round(value * PRICE_SCALE)


def _price(event: dict, key: str, codec: PriceCodec) -> Any:
    value = event.get(key)
    if value is None:
        return None
    if type(value) is not float and type(value) is not int:
        raise Poison(f"{key} is not a number: {value!r:.40}")
    if not math.isfinite(value) or abs(value) >= _MAX_PRICE:
        raise Poison(f"{key} is out of range: {value!r}")
    return codec(value)


def _int(event: dict, key: str) -> int | None:
    value = event.get(key)
    if value is None:
        return None
    if type(value) is int:
        if -_MAX_BIGINT <= value <= _MAX_BIGINT:
            return value
        raise Poison(f"{key} is out of range: {value}")
    if type(value) is float and value.is_integer() and abs(value) <= _MAX_BIGINT:
        return int(value)
    raise Poison(f"{key} is not an integer: {value!r:.40}")


def _required_int(event: dict, key: str) -> int:
    if key not in event:
        raise Poison(f"missing key {key}")
    value = _int(event, key)
    if value is None:
        raise Poison(f"{key} is null")
    return value


def _levels(event: dict, key: str) -> bytes:
    value = event.get(key)
    if not isinstance(value, list):
        raise Poison(f"missing key {key}" if value is None else f"{key} is not a list")
    try:
        packed = pack_levels(value)
    except (struct.error, TypeError, ValueError, OverflowError) as exc:
        raise Poison(f"{key} is not a list of [price, quantity, orders]: {exc}") from None
    if len(packed) > _MAX_DEPTH_BYTES:
        raise Poison(f"{key} has {len(value)} levels, more than the table holds")
    return packed


def decode_entry(fields: dict | None) -> dict:
    """The event of one stream entry (`data` field, JSON object) or Poison."""
    if not fields:
        raise Poison("entry has no fields")
    raw = fields.get(bus.STREAM_FIELD)
    if raw is None:
        raise Poison(f"entry has no {bus.STREAM_FIELD.decode()!r} field")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Poison(f"bad JSON: {exc}") from None
    if not isinstance(event, dict):
        raise Poison("event is not a JSON object")
    return event


def event_row(stream: str, entry_id: bytes | str, event: dict, price: PriceCodec) -> tuple:
    """One decoded event -> the row tuple for its stream's table (COLUMNS order), or Poison."""
    kind = event.get("type")
    if not isinstance(kind, str):
        raise Poison("missing key type" if kind is None else "type is not a string")
    if _EVENT_STREAM.get(kind) != stream:
        raise Poison(f"type {kind!r:.20} does not belong on {stream}")
    segment = event.get("exchange_segment")
    if type(segment) is not str or not _SEGMENT_RE.match(segment):
        raise Poison("missing key exchange_segment" if segment is None else
                     f"bad exchange_segment {segment!r:.40}")
    head = (stream_id_to_event_id(entry_id), segment, _required_int(event, "security_id"),
            _required_int(event, "recv_ts"))
    if kind in _LTP_REQUIRED and event.get("ltp") is None:
        raise Poison("missing key ltp")
    if kind == "ticker":
        return head + (_price(event, "ltp", price), _int(event, "ltt"))
    if kind == GAP:
        reason = event.get("reason")
        if type(reason) is not str or not _SEGMENT_RE.match(reason):
            raise Poison("missing key reason" if reason is None else f"bad reason {reason!r:.40}")
        return head + (reason,) + tuple(_int(event, key) for key in _GAP_FIELDS)
    if kind == "depth":
        bids, asks = _levels(event, "bids"), _levels(event, "asks")
        levels = _int(event, "levels")
        if levels is None:
            levels = max(len(event["bids"]), len(event["asks"]))
        if not 0 <= levels <= 32767:
            raise Poison(f"levels is out of range: {levels}")
        return head + (levels, bids, asks)
    return head + (kind,) + _quote_values(event, price)


def _quote_values(event: dict, price: PriceCodec) -> tuple:
    """The quote columns; the common case (plain int or float in range) is checked inline,
    because this runs for most rows and function calls per value dominate the writer's CPU."""
    get = event.get
    out = []
    for name, how in _QUOTE_FIELDS:
        value = get(name)
        kind = type(value)
        if value is None:
            out.append(None)
        elif how is _PRICE and (kind is float or kind is int) and -_MAX_PRICE < value < _MAX_PRICE:
            out.append(price(value))
        elif how is _INT and kind is int and -_MAX_BIGINT <= value <= _MAX_BIGINT:
            out.append(value)
        else:  # slow path: integral floats, or raise Poison with the reason
            out.append(_price(event, name, price) if how is _PRICE else _int(event, name))
    return tuple(out)


def entry_row(stream: str, entry_id: bytes | str, fields: dict | None, price: PriceCodec) -> tuple:
    """decode_entry + event_row: a raw stream entry -> row, or Poison."""
    return event_row(stream, entry_id, decode_entry(fields), price)


# ---- the fast path -------------------------------------------------------------------------
# The writer converts every entry with `row_maker(stream, price)`: one function per stream that
# accepts only what is plainly valid (the types and ranges event_row accepts, checked inline
# with no call per value) and builds the same tuple; anything else (poison, an integral float
# for an integer, an unusual segment name) goes to entry_row, which builds the row or says
# why not. So the rows and the reasons are event_row's, at about half its cost.

_M = _MAX_BIGINT
_P = _MAX_PRICE
_DATA = bus.STREAM_FIELD
_SEGMENTS: set[str] = set()  # segment names seen valid (a handful: NSE_FNO, IDX_I ...)
_SEGMENTS_MAX = 256
_QUOTE_KEYS = tuple(name for name, _ in _QUOTE_FIELDS)
_QUOTE_PRICES = tuple(i for i, (_, how) in enumerate(_QUOTE_FIELDS) if how is _PRICE)
_QUOTE_INTS = tuple(i for i, (_, how) in enumerate(_QUOTE_FIELDS) if how is _INT)
_NO_LTP_TYPES = QUOTE_TYPES - _LTP_REQUIRED

RowMaker = Callable[[bytes, Any], tuple]


def _known_segment(segment) -> bool:
    """A valid segment name (remembered: the next check is one set lookup)."""
    if type(segment) is not str or not _SEGMENT_RE.match(segment):
        return False
    if len(_SEGMENTS) < _SEGMENTS_MAX:
        _SEGMENTS.add(segment)
    return True


def fields_dict(fields: dict | list | None) -> dict | None:
    """An entry's fields as a dict: Redis replies list them flat ([name, value, ...])."""
    if fields is None or type(fields) is dict:
        return fields
    it = iter(fields)
    return dict(zip(it, it))


def _data(fields: dict | list) -> bytes:
    """The `data` field of a plain entry (dict, or the flat list of a raw reply); anything
    else raises (the slow path then says what is wrong)."""
    if type(fields) is dict:
        return fields[_DATA]
    if len(fields) == 2 and fields[0] == _DATA:
        return fields[1]
    raise KeyError(_DATA)


@functools.lru_cache(maxsize=64)
def row_maker(stream: str, price: PriceCodec) -> RowMaker:
    """(entry id, entry fields: a dict or a raw reply's flat list) -> the row of `stream`'s
    table, or Poison; entry_row's result for every entry, faster for the plain ones."""
    def slow(entry_id, fields):
        return entry_row(stream, entry_id, fields_dict(fields), price)
    if price is sqlite_price:
        scale = PRICE_SCALE
    elif price is mysql_price:
        scale = None
    else:  # a codec of someone else's: no fast path
        return slow
    make = {bus.STREAM_TICKS: _tick_maker, bus.STREAM_QUOTES: _quote_maker,
            bus.STREAM_DEPTH: _depth_maker}.get(stream)
    return make(slow, scale) if make else slow


def _tick_maker(slow: RowMaker, scale: int | None) -> RowMaker:
    def tick_row(entry_id, fields):
        try:
            event = orjson.loads(fields[_DATA] if type(fields) is dict else _data(fields))
            get = event.get
            segment, sid, ts, ltp, ltt = (get("exchange_segment"), get("security_id"), get("recv_ts"),
                                          get("ltp"), get("ltt"))
            if (get("type") == "ticker" and (segment in _SEGMENTS or _known_segment(segment))
                    and type(sid) is int and -_M <= sid <= _M and type(ts) is int and -_M <= ts <= _M
                    and (type(ltp) is float or type(ltp) is int) and -_P < ltp < _P
                    and (ltt is None or type(ltt) is int and -_M <= ltt <= _M)):
                ms, _, seq = entry_id.partition(b"-")
                return ((int(ms) << 20) | int(seq), segment, sid, ts,
                        ltp if scale is None else round(ltp * scale), ltt)
        except Exception:  # noqa: BLE001 - whatever it is, event_row says it properly
            pass
        return slow(entry_id, fields)
    return tick_row


def _quote_maker(slow: RowMaker, scale: int | None) -> RowMaker:
    keys, prices, ints = _QUOTE_KEYS, _QUOTE_PRICES, _QUOTE_INTS

    def quote_row(entry_id, fields):
        try:
            event = orjson.loads(fields[_DATA] if type(fields) is dict else _data(fields))
            get = event.get
            kind, segment, sid, ts = get("type"), get("exchange_segment"), get("security_id"), get("recv_ts")
            values = list(map(get, keys))
            if (kind in QUOTE_TYPES and (values[0] is not None or kind in _NO_LTP_TYPES)
                    and (segment in _SEGMENTS or _known_segment(segment))
                    and type(sid) is int and -_M <= sid <= _M and type(ts) is int and -_M <= ts <= _M):
                for i in prices:
                    value = values[i]
                    if value is not None:
                        if not ((type(value) is float or type(value) is int) and -_P < value < _P):
                            return slow(entry_id, fields)
                        if scale is not None:
                            values[i] = round(value * scale)
                for i in ints:
                    value = values[i]
                    if value is not None and not (type(value) is int and -_M <= value <= _M):
                        return slow(entry_id, fields)
                ms, _, seq = entry_id.partition(b"-")
                return ((int(ms) << 20) | int(seq), segment, sid, ts, kind, *values)
        except Exception:  # noqa: BLE001 - whatever it is, event_row says it properly
            pass
        return slow(entry_id, fields)
    return quote_row


_MAX_LEVELS = _MAX_DEPTH_BYTES // 16
_LEVEL_STRUCTS = [struct.Struct("<" + "qII" * n) for n in range(_MAX_LEVELS + 1)]  # pack_levels' layout


def _packed(levels: list) -> bytes:
    """pack_levels in one struct call (raises on anything it would refuse, or too many levels)."""
    return _LEVEL_STRUCTS[len(levels)].pack(*[v for p, q, o in levels for v in (round(p * PRICE_SCALE), q, o)])


def _depth_maker(slow: RowMaker, scale: int | None) -> RowMaker:
    def depth_row(entry_id, fields):
        try:
            event = orjson.loads(fields[_DATA] if type(fields) is dict else _data(fields))
            get = event.get
            segment, sid, ts, levels = get("exchange_segment"), get("security_id"), get("recv_ts"), get("levels")
            bids, asks = get("bids"), get("asks")
            if (get("type") == "depth" and (segment in _SEGMENTS or _known_segment(segment))
                    and type(sid) is int and -_M <= sid <= _M and type(ts) is int and -_M <= ts <= _M
                    and type(bids) is list and type(asks) is list
                    and (levels is None or type(levels) is int and 0 <= levels <= 32767)):
                ms, _, seq = entry_id.partition(b"-")
                return ((int(ms) << 20) | int(seq), segment, sid, ts,
                        max(len(bids), len(asks)) if levels is None else levels, _packed(bids), _packed(asks))
        except Exception:  # noqa: BLE001 - whatever it is, event_row says it properly
            pass
        return slow(entry_id, fields)
    return depth_row
