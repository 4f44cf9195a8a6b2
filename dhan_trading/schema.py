"""SQLAlchemy Core tables (DESIGN §3.4), identical on MariaDB/MySQL and SQLite.

Event tables have one column per message key with the same name. `event_id` is the Redis
stream entry id packed into one BIGINT (milliseconds << 20 | sequence): unique, increasing in
arrival order, and the key that turns a re-delivered entry into a no-op insert.
Prices are exact: DECIMAL on MySQL, integers scaled by 10^4 on SQLite (which has no DECIMAL).
Depth levels are stored compactly as packed binary (see `pack_levels`).
"""
from __future__ import annotations

import struct
from decimal import Decimal

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, LargeBinary, MetaData,
                        Numeric, SmallInteger, String, Table)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.types import TypeDecorator

from . import bus

PRICE_SCALE = 10_000
metadata = MetaData()


class Price(TypeDecorator):
    """An exact price: DECIMAL(18,4) on MySQL, a scaled BIGINT on SQLite; Decimal in Python."""

    impl = Numeric(18, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, 4, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        return round(float(value) * PRICE_SCALE) if not isinstance(value, Decimal) else int(value * PRICE_SCALE)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(value) / PRICE_SCALE
        return Decimal(value)


def stream_id_to_event_id(stream_id: bytes | str) -> int:
    """'1700000000123-5' -> 1700000000123 << 20 | 5 (sequence numbers stay far below 2^20)."""
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode()
    ms, _, seq = stream_id.partition("-")
    return (int(ms) << 20) | int(seq or 0)


def event_id_to_stream_id(event_id: int) -> str:
    return f"{event_id >> 20}-{event_id & 0xFFFFF}"


_LEVEL = struct.Struct("<qII")


def pack_levels(levels: list) -> bytes:
    """[[price, qty, orders], ...] -> 16 bytes per level (price scaled by 10^4, exact)."""
    return b"".join(_LEVEL.pack(round(p * PRICE_SCALE), q, o) for p, q, o in levels)


def unpack_levels(blob: bytes | None) -> list[list]:
    """Inverse of pack_levels; prices come back as Decimal."""
    if not blob:
        return []
    return [[Decimal(p) / PRICE_SCALE, q, o] for p, q, o in _LEVEL.iter_unpack(blob)]


def _event_columns() -> list[Column]:
    return [
        Column("event_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
        Column("exchange_segment", String(16), nullable=False),
        Column("security_id", BigInteger, nullable=False),
        Column("recv_ts", BigInteger, nullable=False, comment="ns since epoch (UTC) when the frame arrived"),
    ]


_QUOTE_NUMBERS = [
    Column("ltq", Integer), Column("atp", Price), Column("volume", BigInteger),
    Column("total_buy_qty", BigInteger), Column("total_sell_qty", BigInteger),
    Column("open", Price), Column("high", Price), Column("low", Price), Column("close", Price),
    Column("oi", BigInteger), Column("oi_day_high", BigInteger), Column("oi_day_low", BigInteger),
    Column("prev_close", Price), Column("prev_oi", BigInteger),
]

instruments = Table(
    "dhan_instruments", metadata,
    Column("exchange_segment", String(16), primary_key=True),
    Column("security_id", BigInteger, primary_key=True, autoincrement=False),
    Column("exchange", String(8), nullable=False),
    Column("instrument", String(16), nullable=False, comment="INDEX, EQUITY, FUTIDX, OPTIDX, FUTSTK, FUTCOM ..."),
    Column("trading_symbol", String(64), nullable=False),
    Column("custom_symbol", String(96)),
    Column("underlying", String(32), comment="NIFTY, RELIANCE, CRUDEOIL ..."),
    Column("expiry", DateTime),
    Column("strike", Price),
    Column("option_type", String(4)),
    Column("lot_size", Integer),
    Column("tick_size", Price, comment="in rupees"),
    Column("expiry_flag", String(4)),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_instruments_underlying", "underlying", "instrument", "expiry"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

ticks = Table(
    "dhan_ticks", metadata, *_event_columns(),
    Column("ltp", Price), Column("ltt", BigInteger),
    Index("ix_ticks_instrument_time", "security_id", "recv_ts"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

quotes = Table(
    "dhan_quotes", metadata, *_event_columns(),
    Column("type", String(16), nullable=False),
    Column("ltp", Price), Column("ltt", BigInteger),
    *_QUOTE_NUMBERS,
    Index("ix_quotes_instrument_time", "security_id", "recv_ts"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

depth = Table(
    "dhan_depth", metadata, *_event_columns(),
    Column("levels", SmallInteger, nullable=False),
    Column("bids", LargeBinary(3300), comment="packed <qII per level: price*10^4, qty, orders"),
    Column("asks", LargeBinary(3300)),
    Index("ix_depth_instrument_time", "security_id", "recv_ts"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

# One row per `gap` event of the feed (market_feed/continuity.py): an instrument whose socket
# reconnected or was recycled for silence resumed, and what was traded in between was not seen.
# Windows mark these holes in history instead of attributing the missed volume to one price.
gaps = Table(
    "dhan_gaps", metadata, *_event_columns(),
    Column("reason", String(16), nullable=False, comment="reconnect or stall"),
    Column("last_ltt", BigInteger, comment="LTT of the last packet before the break"),
    Column("last_volume", BigInteger, comment="cumulative volume before the break (null: ticker only)"),
    Column("resume_ltt", BigInteger, comment="LTT of the first packet after the break"),
    Column("resume_volume", BigInteger, comment="cumulative volume after the break"),
    Index("ix_gaps_instrument_time", "security_id", "recv_ts"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

# The table of each stream the DB writer stores (bus.STORED_STREAMS), one row per entry.
EVENT_TABLES = {bus.STREAM_TICKS: ticks, bus.STREAM_QUOTES: quotes, bus.STREAM_DEPTH: depth,
                bus.STREAM_GAPS: gaps}
assert tuple(EVENT_TABLES) == bus.STORED_STREAMS


def create_tables(engine: Engine) -> None:
    """Create every table that is missing (never alters or drops).

    Services starting together (feed and writer) may race: if another process creates a table
    between our check and our CREATE, checking once more finds it there.
    """
    try:
        metadata.create_all(engine, checkfirst=True)
    except (OperationalError, ProgrammingError):
        metadata.create_all(engine, checkfirst=True)
