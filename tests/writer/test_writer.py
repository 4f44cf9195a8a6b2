"""The writer against real Redis and a real database (SQLite and MariaDB), in-process."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import orjson
import pytest
from sqlalchemy import select

from dhan_trading import bus
from dhan_trading.db_setup import get_engine
from dhan_trading.schema import depth, quotes, stream_id_to_event_id, ticks, unpack_levels
from dhan_trading.subscribers.db_writer import DbWriter, WriterConfig
from dhan_trading.subscribers.store import EventStore
from writer_harness import assert_exactly_once, drained, group_pending, running_writer, wait_until
from writer_events import make_event, publish, publish_raw, random_events

pytestmark = pytest.mark.integration


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
    """A writer restarted under the same name replays what it had read but not acknowledged,
    exactly once: its own entries, idle longer than the claim idle time, are not claimed again
    on top of the replay (counters, dead letters and the buffer would hold copies)."""
    for stream in bus.STREAMS:
        redis_client.xgroup_create(stream, bus.WRITER_GROUP, id="0", mkstream=True)
    published = publish(redis_client, random_events(1000))
    poison = publish_raw(redis_client, bus.STREAM_TICKS, b"{oops")
    redis_client.xreadgroup(bus.WRITER_GROUP, "w1", {s: ">" for s in bus.STREAMS}, count=400)
    assert group_pending(redis_client) > 400
    wait_until(lambda: min(p["time_since_delivered"] for s in bus.STREAMS
                           for p in redis_client.xpending_range(s, bus.WRITER_GROUP, "-", "+", 10_000)) > 300,
               5, what="the pending entries to be idle longer than the claim idle time")
    with running_writer(engine, redis_url, consumer="w1", claim_idle_ms=200) as writer:
        wait_until(drained(redis_client), 20, what="own pending entries to be stored")
        time.sleep(1)  # a few more claim rounds: nothing may be taken twice
    assert_exactly_once(stored, published)
    assert (writer.stats.rows_total, writer.stats.poison_total) == (len(published), 1)
    assert writer.stats.acked_total == len(published) + 1
    letters = redis_client.xrange(bus.STREAM_DEAD_LETTER)
    assert [f[b"id"] for _, f in letters] == [poison]


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
        assert bus.assess_health(record) == (True, None) and record["service"] == "db_writer"
        assert record["consumer"] == "hw" and record["rows_total"] == 300 == record["acked_total"]
        assert record["pending"] == 0 and record["errors"] == 0 and record["state"] == "running"
        assert record["last_commit_age_s"] is not None and record["lag_s"] is not None
        assert {"rows_per_s", "backlog", "buffered", "poison_total"} <= record.keys()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_health_says_unhealthy_while_the_database_is_locked(engine, redis_client, redis_url, db_url):
    import sqlite3
    from dhan_trading.subscribers.db_writer import HealthReporter
    with running_writer(engine, redis_url, consumer="locked") as writer:
        reporter = HealthReporter(writer, threading.Event())
        publish(redis_client, random_events(100))
        wait_until(drained(redis_client), 20, what="the first events")
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            publish(redis_client, random_events(100, seed=2))
            wait_until(lambda: writer.stats.state == "db_down", 20, what="the writer to notice")
            reporter.publish(redis_client)
            healthy, problem = bus.assess_health(bus.read_health(redis_client, "db_writer"))
            assert healthy is False and "database cannot be reached" in problem, problem
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_until(drained(redis_client), 20, what="recovery")
        reporter.publish(redis_client)
        assert bus.assess_health(bus.read_health(redis_client, "db_writer:locked")) == (True, None)


def test_health_says_unhealthy_while_the_lag_keeps_growing(engine, redis_client, redis_url):
    """A writer slower than the feed (here each commit takes 0.2 s): the group lag rises past
    the bound for longer than lag_rising_s, so the heartbeat says it is falling behind; once it
    catches up (the feed pauses) it is healthy again."""
    from dhan_trading.subscribers.db_writer import HealthReporter
    from writer_harness import Publisher
    slow = lambda rows, committed: time.sleep(0.2)  # noqa: E731
    import redis
    writer = DbWriter(lambda: redis.Redis.from_url(redis_url), EventStore(engine),
                      WriterConfig(consumer="slow", flush_ms=50, batch_rows=40, lag_limit=300,
                                   lag_limit_s=1.0, lag_rising_s=2.0), on_commit=slow)
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    reporter = HealthReporter(writer, threading.Event())
    publisher = Publisher(redis_client, rate=2000)
    publisher.start()
    try:
        def behind():
            reporter.publish(redis_client)
            return bus.assess_health(bus.read_health(redis_client, "db_writer"))[0] is False
        wait_until(behind, 30, interval=0.25, what="the heartbeat to say the writer falls behind")
        record = bus.read_health(redis_client, "db_writer")
        assert record["state"] == "running" and "falling behind" in record["problem"], record
        assert record["behind_s"] > 1.0 or record["backlog"] + record["pending"] > 300
        publisher.stop()

        def healthy():
            reporter.publish(redis_client)
            return bus.assess_health(bus.read_health(redis_client, "db_writer"))[0] is True
        wait_until(healthy, 60, interval=0.25, what="the heartbeat to be healthy after catching up")
    finally:
        publisher.stop()
        stop.set()
        thread.join(15)


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


def gap_event(rng, reason="reconnect", ticker=False) -> dict:
    """A gap event as the feed publishes it (market_feed/continuity.py)."""
    event = make_event("ticker", rng)
    return {"type": "gap", "exchange_segment": event["exchange_segment"],
            "security_id": event["security_id"], "recv_ts": event["recv_ts"], "reason": reason,
            "last_ltt": event["ltt"] - 40, "last_volume": None if ticker else 1_250_000,
            "resume_ltt": event["ltt"], "resume_volume": None if ticker else 1_263_500}


def test_gap_events_are_stored_once_each(engine, redis_client, redis_url):
    """dhan:gaps:stream -> dhan_gaps, one row per gap event (windows mark holes in history)."""
    import random
    from dhan_trading.schema import gaps
    rng = random.Random(3)
    events = [gap_event(rng), gap_event(rng, "stall", ticker=True)]
    ids = []
    for event in events:
        ids.append(publish_raw(redis_client, bus.STREAM_GAPS, orjson.dumps(event)))
    bad = publish_raw(redis_client, bus.STREAM_GAPS, orjson.dumps({**events[0], "reason": None}))
    wrong = publish_raw(redis_client, bus.STREAM_GAPS, orjson.dumps(make_event("ticker", rng)))
    published = publish(redis_client, random_events(300))
    with running_writer(engine, redis_url) as writer:
        wait_until(drained(redis_client), 20, what="the gap events to be stored")
        for stream in bus.STREAMS:  # make the group deliver everything again: no second row
            redis_client.xgroup_setid(stream, bus.WRITER_GROUP, "0")
        redis_client.xgroup_setid(bus.STREAM_GAPS, bus.WRITER_GROUP, "0")
        wait_until(lambda: writer.stats.acked_total == 2 * (len(published) + 4), 20, what="the replay")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(gaps).order_by(gaps.c.event_id))]
    assert rows == [{"event_id": stream_id_to_event_id(i), **{k: v for k, v in e.items() if k != "type"}}
                    for i, e in zip(ids, events)]
    reasons = {f[b"id"]: f[b"reason"] for _, f in redis_client.xrange(bus.STREAM_DEAD_LETTER)}
    assert set(reasons) == {bad, wrong} and b"reason" in reasons[bad]


def test_a_bug_in_a_batch_is_raised_not_retried_as_an_outage(engine, redis_client, redis_url, monkeypatch):
    """A TypeError from our own code while writing is no "database unavailable": the loop ends
    with it (after shutdown), nothing is acknowledged, the entries stay pending."""
    import redis
    publish(redis_client, random_events(200))
    store = EventStore(engine)

    def broken(cur):
        raise TypeError("a bug of ours")
    monkeypatch.setattr(EventStore, "write", lambda self, batch: self._run(broken))
    writer = DbWriter(lambda: redis.Redis.from_url(redis_url), store, WriterConfig(consumer="bug", flush_ms=50))
    outcome = {}

    def run():
        try:
            writer.run(threading.Event())
        except Exception as exc:  # noqa: BLE001 - what the test looks at
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), f"the writer retried a bug as an outage: {writer.stats.last_error}"
    assert isinstance(outcome.get("error"), TypeError)
    assert writer.stats.state == "stopped" and writer.stats.errors == 0
    assert group_pending(redis_client) == 200 and writer.stats.acked_total == 0
