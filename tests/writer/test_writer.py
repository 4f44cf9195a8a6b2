"""The writer against real Redis and a real database (SQLite and MariaDB), in-process."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from decimal import Decimal

import orjson
import pytest
from sqlalchemy import select

from dhan_trading import bus
from dhan_trading.db_setup import get_engine
from dhan_trading.schema import depth, quotes, stream_id_to_event_id, ticks, unpack_levels
from dhan_trading.subscribers.db_writer import DbWriter, WriterConfig
from dhan_trading.subscribers.store import EventStore
from writer_harness import assert_exactly_once, group_pending, wait_until
from writer_events import make_event, publish, publish_raw, random_events

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(db_url, settings_env):
    eng = get_engine(settings=settings_env(DHAN_DB_URL=db_url))
    yield eng
    eng.dispose()


@contextmanager
def running_writer(engine, redis_url, consumer="w1", **config):
    import redis
    config.setdefault("flush_ms", 50)
    writer = DbWriter(lambda: redis.Redis.from_url(redis_url), EventStore(engine),
                      WriterConfig(consumer=consumer, **config))
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield writer
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "writer did not stop"


def drained(client):
    """Nothing pending and every entry delivered (works on Redis 6.2, which has no group "lag")."""
    def done():
        if group_pending(client):
            return False
        for s in bus.STREAMS:
            last = client.xinfo_stream(s)["last-generated-id"]
            if any(g["last-delivered-id"] != last for g in client.xinfo_groups(s)):
                return False
        return True
    return done


def test_first_start_stores_what_the_streams_already_hold_exactly(engine, redis_client, redis_url, stored):
    published = publish(redis_client, random_events(3000))
    with running_writer(engine, redis_url) as writer:
        wait_until(drained(redis_client), 20, what="the backlog to drain")
        published += publish(redis_client, random_events(500, seed=9))
        wait_until(drained(redis_client), 20, what="new events")
    assert writer.stats.rows_total == len(published)
    assert_exactly_once(stored, published)


def test_values_are_stored_exactly(engine, redis_client, redis_url):
    import random
    rng = random.Random(11)
    events = [make_event(k, rng) for k in ("ticker", "full", "prev_close", "depth")]
    events[0]["ltp"] = 0.05
    events[1]["ltp"] = 123456.75
    ids = [e for _, e in publish(redis_client, events)]
    with running_writer(engine, redis_url):
        wait_until(drained(redis_client), 20, what="the events to be stored")
    with engine.connect() as conn:
        tick = conn.execute(select(ticks)).one()._mapping
        full = conn.execute(select(quotes).where(quotes.c.type == "full")).one()._mapping
        prev = conn.execute(select(quotes).where(quotes.c.type == "prev_close")).one()._mapping
        book = conn.execute(select(depth)).one()._mapping
    assert tick["event_id"] == stream_id_to_event_id(ids[0])
    assert tick["ltp"] == Decimal("0.05") and tick["ltt"] == events[0]["ltt"]
    assert tick["recv_ts"] == events[0]["recv_ts"]
    assert full["ltp"] == Decimal("123456.75")
    for key in ("atp", "open", "high", "low", "close"):
        assert full[key] == Decimal(str(events[1][key])), key
    for key in ("ltq", "volume", "total_buy_qty", "total_sell_qty", "oi", "oi_day_high", "oi_day_low"):
        assert full[key] == events[1][key], key
    assert prev["prev_close"] == Decimal(str(events[2]["prev_close"])) and prev["prev_oi"] == events[2]["prev_oi"]
    assert book["levels"] == events[3]["levels"]
    assert unpack_levels(book["bids"]) == [[Decimal(str(p)), q, o] for p, q, o in events[3]["bids"]]
    assert unpack_levels(book["asks"]) == [[Decimal(str(p)), q, o] for p, q, o in events[3]["asks"]]


def test_poison_goes_to_the_dead_letter_stream_and_never_blocks(engine, redis_client, redis_url, stored):
    good = publish(redis_client, random_events(200))
    bad = [(bus.STREAM_TICKS, publish_raw(redis_client, bus.STREAM_TICKS, b"{oops")),
           (bus.STREAM_QUOTES, publish_raw(redis_client, bus.STREAM_QUOTES, orjson.dumps({"type": "quote"}))),
           (bus.STREAM_DEPTH, publish_raw(redis_client, bus.STREAM_DEPTH, orjson.dumps([1, 2]))),
           (bus.STREAM_TICKS, redis_client.xadd(bus.STREAM_TICKS, {"unexpected": "field"}))]
    good += publish(redis_client, random_events(200, seed=5))
    with running_writer(engine, redis_url) as writer:
        wait_until(drained(redis_client), 20, what="the group to move past the poison")
    assert_exactly_once(stored, good)
    letters = redis_client.xrange(bus.STREAM_DEAD_LETTER)
    reasons = {(f[b"stream"].decode(), f[b"id"]): f[b"reason"].decode() for _, f in letters}
    assert sorted(reasons) == sorted(bad)
    assert "bad JSON" in reasons[bad[0]] and "missing key" in reasons[bad[1]]
    assert "not a JSON object" in reasons[bad[2]] and "'data'" in reasons[bad[3]]
    assert {f[b"data"] for _, f in letters} >= {b"{oops"}
    assert writer.stats.poison_total == 4


def test_a_row_the_database_refuses_is_dead_lettered_alone(mariadb_database, settings_env,
                                                            redis_client, redis_url):
    """ltq is a 32-bit INT on MySQL: a value too big passes validation but not the server."""
    engine = get_engine(settings=settings_env(DHAN_DB_URL=mariadb_database))
    import random
    rng = random.Random(2)
    huge = make_event("quote", rng)
    huge["ltq"] = 2**40
    good = publish(redis_client, [make_event("quote", rng) for _ in range(50)])
    bad = publish(redis_client, [huge])
    good += publish(redis_client, [make_event("quote", rng) for _ in range(50)])
    try:
        with running_writer(engine, redis_url):
            wait_until(drained(redis_client), 20, what="the group to move past the bad row")
        with engine.connect() as conn:
            stored_ids = sorted(r[0] for r in conn.execute(select(quotes.c.event_id)))
    finally:
        engine.dispose()
    assert stored_ids == sorted(stream_id_to_event_id(i) for _, i in good)
    letters = redis_client.xrange(bus.STREAM_DEAD_LETTER)
    assert [f[b"id"] for _, f in letters] == [bad[0][1]]
    assert b"rejected by the database" in letters[0][1][b"reason"]


def test_own_pending_entries_are_stored_first_after_a_crash(engine, redis_client, redis_url, stored):
    """A writer restarted under the same name replays what it had read but not acknowledged."""
    for stream in bus.STREAMS:
        redis_client.xgroup_create(stream, bus.WRITER_GROUP, id="0", mkstream=True)
    published = publish(redis_client, random_events(1000))
    redis_client.xreadgroup(bus.WRITER_GROUP, "w1", {s: ">" for s in bus.STREAMS}, count=300)
    assert group_pending(redis_client) > 0
    with running_writer(engine, redis_url, consumer="w1", claim_idle_ms=3_600_000):
        wait_until(drained(redis_client), 20, what="own pending entries to be stored")
    assert_exactly_once(stored, published)


def test_entries_of_a_dead_consumer_are_claimed(engine, redis_client, redis_url, stored):
    for stream in bus.STREAMS:
        redis_client.xgroup_create(stream, bus.WRITER_GROUP, id="0", mkstream=True)
    published = publish(redis_client, random_events(1000))
    redis_client.xreadgroup(bus.WRITER_GROUP, "dead", {s: ">" for s in bus.STREAMS}, count=400)
    with running_writer(engine, redis_url, consumer="alive", claim_idle_ms=300):
        wait_until(drained(redis_client), 20, what="the dead consumer's entries to be claimed")
    assert_exactly_once(stored, published)


def test_replayed_entries_write_no_duplicates(engine, redis_client, redis_url, stored):
    """Crash between commit and ack: the same entries delivered again are no-ops."""
    published = publish(redis_client, random_events(500))
    with running_writer(engine, redis_url):
        wait_until(drained(redis_client), 20, what="the first pass")
    for stream in bus.STREAMS:  # make the group deliver everything again
        redis_client.xgroup_setid(stream, bus.WRITER_GROUP, "0")
    with running_writer(engine, redis_url, consumer="w2") as writer:
        wait_until(drained(redis_client), 20, what="the replay")
    assert writer.stats.rows_total == len(published)  # it did process them all again
    assert_exactly_once(stored, published)


def test_health_is_published(engine, redis_client, redis_url):
    from dhan_trading.subscribers.db_writer import HealthReporter
    publish(redis_client, random_events(300))
    with running_writer(engine, redis_url, consumer="hw") as writer:
        wait_until(drained(redis_client), 20, what="the events to be stored")
        HealthReporter(writer, threading.Event()).publish(redis_client)
    for name in ("db_writer", "db_writer:hw"):
        record = bus.read_health(redis_client, name)
        assert record["consumer"] == "hw" and record["rows_total"] == 300
        assert record["pending"] == 0 and record["errors"] == 0 and record["state"] == "running"
        assert record["last_commit_age_s"] is not None and record["lag_s"] is not None
        assert {"rows_per_s", "backlog", "buffered", "poison_total"} <= record.keys()


@pytest.mark.chaos
def test_redis_restart_is_survived(engine, own_redis, stored):
    """Redis dies (and comes back empty): the writer reconnects and recreates its group."""
    import redis
    client = redis.Redis.from_url(own_redis.url)
    first = publish(client, random_events(300))
    with running_writer(engine, own_redis.url) as writer:
        wait_until(lambda: writer.stats.rows_total == 300, 20, what="first events")
        own_redis.stop()
        wait_until(lambda: writer.stats.state == "redis_down", 10, what="the writer to notice")
        own_redis.start()
        client = redis.Redis.from_url(own_redis.url)
        second = publish(client, random_events(300, seed=4))
        wait_until(lambda: writer.stats.rows_total == 600, 30, what="events after the restart")
    assert_exactly_once(stored, first + second)
