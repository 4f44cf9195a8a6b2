"""get_engine on SQLite and on MariaDB: tables created, exact prices, identical behaviour."""
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select

from dhan_trading import schema
from dhan_trading.db_setup import get_engine

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request, settings_env):
    if request.param == "sqlite":
        settings = settings_env()
    else:
        settings = settings_env(DHAN_DB_URL=request.getfixturevalue("mariadb_database"))
    eng = get_engine(settings=settings)
    yield eng
    eng.dispose()


def test_tables_are_created_with_the_contract_columns(engine):
    insp = inspect(engine)
    assert {"dhan_instruments", "dhan_ticks", "dhan_quotes", "dhan_depth"} <= set(insp.get_table_names())
    quote_cols = {c["name"] for c in insp.get_columns("dhan_quotes")}
    assert {"event_id", "security_id", "exchange_segment", "recv_ts", "ltp", "ltt", "ltq", "atp", "volume",
            "total_buy_qty", "total_sell_qty", "open", "high", "low", "close", "oi"} <= quote_cols
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("dhan_ticks")}
    assert ("security_id", "recv_ts") in indexed
    # one row per gap event of the feed, with its keys (windows mark holes in history)
    assert [c["name"] for c in insp.get_columns("dhan_gaps")] == [
        "event_id", "exchange_segment", "security_id", "recv_ts", "reason",
        "last_ltt", "last_volume", "resume_ltt", "resume_volume"]
    assert insp.get_pk_constraint("dhan_gaps")["constrained_columns"] == ["event_id"]
    schema.create_tables(engine)  # a second call is a no-op, never an error


def test_prices_round_trip_exactly_and_a_replayed_entry_is_a_no_op(engine):
    """Through the writer's own statements (EventStore, the SQL production issues): exact prices
    on both databases, and the same entries written again change nothing."""
    from dhan_trading import bus
    from dhan_trading.subscribers.rows import event_row
    from dhan_trading.subscribers.store import EventStore

    store = EventStore(engine)
    events = [("1700000000123-7", {"type": "ticker", "exchange_segment": "MCX_COMM", "security_id": 1,
                                   "recv_ts": 1_700_000_000_123_456_789, "ltp": 131072.1, "ltt": 5}),
              ("1700000000124-0", {"type": "ticker", "exchange_segment": "NSE_FNO", "security_id": 2,
                                   "recv_ts": 2, "ltp": 0.05, "ltt": 6})]
    rows = [event_row(bus.STREAM_TICKS, entry_id, e, store.price) for entry_id, e in events]
    store.write({"dhan_ticks": rows})
    store.write({"dhan_ticks": rows[:1]})  # a crashed writer replays its unacknowledged batch
    store.close()
    with engine.connect() as conn:
        got = conn.execute(select(schema.ticks.c.event_id, schema.ticks.c.ltp, schema.ticks.c.recv_ts)
                           .order_by(schema.ticks.c.event_id)).all()
    assert got == [(schema.stream_id_to_event_id("1700000000123-7"), Decimal("131072.1"), 1_700_000_000_123_456_789),
                   (schema.stream_id_to_event_id("1700000000124-0"), Decimal("0.05"), 2)]


def test_depth_levels_pack_exactly():
    levels = [[152.05, 100, 3], [152.0, 4_000_000_000, 65535]]
    assert schema.unpack_levels(schema.pack_levels(levels)) == [[Decimal("152.05"), 100, 3], [Decimal("152"), 4_000_000_000, 65535]]
    assert schema.event_id_to_stream_id(schema.stream_id_to_event_id(b"1700000000123-5")) == "1700000000123-5"
