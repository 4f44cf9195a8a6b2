"""Stream entry -> row conversion: every event type, exact prices, and every kind of poison."""
from __future__ import annotations

import random
import re

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


# ---- the writer's fast path (rows.row_maker) gives event_row's rows and reasons ------------

def _as_reply(fields):
    """The flat field list a raw XREADGROUP reply holds, which the writer passes on."""
    return None if fields is None else [v for kv in fields.items() for v in kv]


@pytest.mark.parametrize("price", [R.sqlite_price, R.mysql_price], ids=["sqlite", "mysql"])
def test_row_maker_builds_the_rows_of_entry_row(price):
    from writer_events import random_events
    events = random_events(3000, seed=5)
    for i, event in enumerate(events):
        if i % 7 == 0:
            event.pop("levels", None)  # depth without levels; others unchanged
        if i % 11 == 0 and "volume" in event:
            event["volume"] = float(event["volume"])  # integral float: the slow path takes it
    for i, event in enumerate(events):
        stream = bus.EVENT_STREAM[event["type"]]
        entry_id = f"{1_700_000_000_000 + i}-{i % 5}".encode()
        want = R.entry_row(stream, entry_id, entry(event), price)
        make = R.row_maker(stream, price)
        assert make(entry_id, entry(event)) == want
        assert make(entry_id, _as_reply(entry(event))) == want


@pytest.mark.parametrize("reason,stream,fields", POISON, ids=[p[0] for p in POISON])
def test_row_maker_rejects_poison_with_the_same_reason(reason, stream, fields):
    with pytest.raises(R.Poison) as slow:
        R.entry_row(stream, b"1-0", fields, R.sqlite_price)
    for form in (fields, _as_reply(fields)):
        with pytest.raises(R.Poison) as fast:
            R.row_maker(stream, R.sqlite_price)(b"1-0", form)
        assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize("changes", [
    {"ltp": 1e13}, {"ltp": -1e13}, {"security_id": 2**63}, {"recv_ts": -2**63}, {"ltt": True},
    {"ltp": None}, {"exchange_segment": ["NSE_FNO"]}, {"exchange_segment": "NSE FNO"},
    {"bids": [[1.0, 2**32, 1]]}, {"asks": [[1.0, 1]]}, {"levels": 40000}, {"levels": 5.0},
    {"bids": [[1.0, 1, 1]] * 40}, {"oi": 1.5}, {"volume": 2**63}, {"prev_close": "1"}])
def test_row_maker_agrees_with_entry_row_on_edge_values(changes):
    for kind in ("ticker", "full", "depth", "prev_close"):
        event = {**make_event(kind, RNG), **changes}
        stream = bus.EVENT_STREAM[kind]
        try:
            want = R.entry_row(stream, b"5-1", entry(event), R.sqlite_price)
        except R.Poison as exc:
            with pytest.raises(R.Poison, match=re.escape(str(exc))):
                R.row_maker(stream, R.sqlite_price)(b"5-1", entry(event))
        else:
            assert R.row_maker(stream, R.sqlite_price)(b"5-1", entry(event)) == want
