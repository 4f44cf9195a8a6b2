"""Stream entry -> row conversion: every event type, exact prices, and every kind of poison."""
from __future__ import annotations

import random

import orjson
import pytest

from dhan_trading import bus
from dhan_trading.schema import stream_id_to_event_id, unpack_levels
from dhan_trading.subscribers import rows as R
from writer_events import make_event

pytestmark = pytest.mark.unit

RNG = random.Random(3)


def entry(event) -> dict:
    return {bus.STREAM_FIELD: orjson.dumps(event)}


def row_dict(stream, event, price=R.sqlite_price, entry_id=b"1700000000123-7"):
    row = R.entry_row(stream, entry_id, entry(event), price)
    return dict(zip(R.COLUMNS[R.STREAM_TABLE[stream]], row))


def test_ticker_row_has_the_key_price_and_times():
    event = {"type": "ticker", "exchange_segment": "NSE_FNO", "security_id": 52175,
             "recv_ts": 1_700_000_000_123_456_789, "ltp": 24567.05, "ltt": 1700019800}
    row = row_dict(bus.STREAM_TICKS, event)
    assert row == {"event_id": stream_id_to_event_id("1700000000123-7"), "exchange_segment": "NSE_FNO",
                   "security_id": 52175, "recv_ts": 1_700_000_000_123_456_789,
                   "ltp": 245670500, "ltt": 1700019800}


def test_sqlite_prices_are_exact_scaled_integers():
    for cents in range(1, 100_000, 7):
        price = cents / 100
        assert R.sqlite_price(price) == cents * 100


@pytest.mark.parametrize("kind", ["quote", "full", "oi", "prev_close", "market_status"])
def test_every_quotes_stream_type_becomes_a_quote_row(kind):
    event = make_event(kind, RNG)
    row = row_dict(bus.STREAM_QUOTES, event, price=R.mysql_price)
    assert row["type"] == kind
    for key in R.QUOTES_COLUMNS[5:]:
        assert row[key] == event.get(key), key


def test_depth_levels_are_packed_exactly():
    event = make_event("depth", RNG)
    row = row_dict(bus.STREAM_DEPTH, event)
    assert row["levels"] == event["levels"]
    assert [[float(p), q, o] for p, q, o in unpack_levels(row["bids"])] == event["bids"]
    assert [[float(p), q, o] for p, q, o in unpack_levels(row["asks"])] == event["asks"]


def test_depth_without_levels_counts_them():
    event = make_event("depth", RNG)
    del event["levels"]
    assert row_dict(bus.STREAM_DEPTH, event)["levels"] == len(event["bids"])


def test_integral_floats_are_accepted_for_integer_columns():
    event = make_event("quote", RNG)
    event["volume"] = 1234.0
    assert row_dict(bus.STREAM_QUOTES, event)["volume"] == 1234


def _without(kind, key):
    event = make_event(kind, RNG)
    del event[key]
    return event


def _with(kind, **changes):
    event = make_event(kind, RNG)
    event.update(changes)
    return event


POISON = [
    ("bad JSON", bus.STREAM_TICKS, {bus.STREAM_FIELD: b"{not json"}),
    ("not a JSON object", bus.STREAM_TICKS, {bus.STREAM_FIELD: b"[1, 2]"}),
    ("no 'data' field", bus.STREAM_TICKS, {b"other": b"x"}),
    ("no fields", bus.STREAM_TICKS, None),
    ("missing key type", bus.STREAM_TICKS, entry(_without("ticker", "type"))),
    ("missing key exchange_segment", bus.STREAM_TICKS, entry(_without("ticker", "exchange_segment"))),
    ("missing key security_id", bus.STREAM_QUOTES, entry(_without("quote", "security_id"))),
    ("missing key recv_ts", bus.STREAM_DEPTH, entry(_without("depth", "recv_ts"))),
    ("missing key ltp", bus.STREAM_QUOTES, entry(_without("full", "ltp"))),
    ("missing key bids", bus.STREAM_DEPTH, entry(_without("depth", "bids"))),
    ("does not belong on", bus.STREAM_QUOTES, entry(make_event("ticker", RNG))),
    ("does not belong on", bus.STREAM_TICKS, entry(_with("ticker", type="candle"))),
    ("security_id is not an integer", bus.STREAM_TICKS, entry(_with("ticker", security_id="52175"))),
    ("ltp is not a number", bus.STREAM_TICKS, entry(_with("ticker", ltp="24567.05"))),
    ("ltp is not a number", bus.STREAM_TICKS, entry(_with("ticker", ltp=True))),
    ("volume is not an integer", bus.STREAM_QUOTES, entry(_with("quote", volume=12.5))),
    ("ltp is out of range", bus.STREAM_TICKS, entry(_with("ticker", ltp=1e15))),
    ("bids is not a list of", bus.STREAM_DEPTH, entry(_with("depth", bids=[[1.0, 2]]))),
    ("bids is not a list of", bus.STREAM_DEPTH, entry(_with("depth", bids=[[1.0, -2, 1]]))),
    ("asks is not a list", bus.STREAM_DEPTH, entry(_with("depth", asks="none"))),
    ("bad exchange_segment", bus.STREAM_TICKS, entry(_with("ticker", exchange_segment="X" * 40))),
]


@pytest.mark.parametrize("reason,stream,fields", POISON, ids=[p[0] for p in POISON])
def test_poison_entries_are_rejected_with_a_reason(reason, stream, fields):
    with pytest.raises(R.Poison, match=reason):
        R.entry_row(stream, b"1-0", fields, R.sqlite_price)


def test_ltp_may_be_absent_where_the_type_has_none():
    event = make_event("oi", RNG)
    assert row_dict(bus.STREAM_QUOTES, event)["ltp"] is None


def test_mysql_statements_inline_literals_and_split_large_batches():
    from dhan_trading.subscribers.store import MYSQL_STATEMENT_BYTES, _mysql_sql, mysql_statements
    sql = _mysql_sql("dhan_depth", R.DEPTH_COLUMNS)
    rows = [(i, "NSE_FNO", 42, 7, 5, b"\x00'\\", None) for i in range(30_000)]
    statements = mysql_statements(sql, rows)
    assert len(statements) > 1 and all(len(q) <= MYSQL_STATEMENT_BYTES + 2000 for q in statements)
    assert statements[0].startswith("INSERT INTO `dhan_depth` (`event_id`")
    assert statements[0].endswith("ON DUPLICATE KEY UPDATE event_id=event_id")
    assert "(0,'NSE_FNO',42,7,5,X'00275c',NULL)" in statements[0]
    assert sum(q.count("'NSE_FNO'") for q in statements) == len(rows)


def test_mysql_statements_refuse_strings_that_need_escaping():
    from dhan_trading.subscribers.store import _mysql_sql, mysql_statements
    with pytest.raises(ValueError):
        mysql_statements(_mysql_sql("dhan_ticks", R.TICKS_COLUMNS), [(1, "x'); DROP", 1, 1, 1.5, 1)])
