"""Writer paths an operator meets less often (issue 12 item 1), in-process against real Redis
and real SQLite/MariaDB: trimming by the writer, a stream key of the wrong type, orphans claimed
page by page, a buffer no larger than a batch, stopping while the database is locked, and the
heartbeat while Redis is down."""
from __future__ import annotations

import random
import shutil
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
import redis
from writer_events import make_event, publish, random_events
from writer_harness import assert_exactly_once, drained, group_pending, running_writer, wait_until

from dhan_trading import bus
from dhan_trading.db_setup import get_engine
from dhan_trading.subscribers.db_writer import DbWriter, HealthReporter, WriterConfig
from dhan_trading.subscribers.store import EventStore

pytestmark = pytest.mark.integration


def test_a_writer_with_trim_maxlen_trims_what_it_has_stored(engine, redis_client, redis_url, stored):
    published = publish(redis_client, random_events(4000))
    before = {s: redis_client.xlen(s) for s in bus.STREAMS}
    with running_writer(engine, redis_url, trim_maxlen=100):
        wait_until(drained(redis_client), 30, what="the backlog to drain")
        wait_until(lambda: all(redis_client.xlen(s) <= 300 for s in bus.STREAMS), 10,
                   what="the streams to be trimmed")
    assert_exactly_once(stored, published)  # trimmed only after being stored
    assert max(before.values()) > 1000


def test_a_stream_key_of_the_wrong_type_is_raised_not_retried(engine, redis_client, redis_url):
    """Somebody wrote a plain string where a stream belongs: no outage to wait out, a fault to
    fix, so run() raises it (the process exits 1 with the traceback) instead of looping."""
    redis_client.set(bus.STREAM_TICKS, "not a stream")
    writer = DbWriter(lambda: redis.Redis.from_url(redis_url), EventStore(engine), WriterConfig(consumer="w"))
    done = threading.Event()
    done_after = threading.Timer(10, done.set)  # a safety net: run() must not need it
    done_after.start()
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            writer.run(done)
    finally:
        done_after.cancel()
    assert not done.is_set() and writer.stats.state == "stopped" and writer.stats.rows_total == 0


def test_orphans_are_claimed_page_by_page_and_stored_once(engine, redis_client, redis_url, stored):
    """A dead consumer left 1200 entries pending; with batches of 50 the writer claims them a
    page at a time until its buffer is full, and stores every one exactly once."""
    published = publish(redis_client, random_events(1200, seed=5))
    for stream in bus.STREAMS:
        redis_client.xgroup_create(stream, bus.WRITER_GROUP, id="0", mkstream=True)
    redis_client.xreadgroup(bus.WRITER_GROUP, "dead", {s: ">" for s in bus.STREAMS}, count=10_000)
    assert group_pending(redis_client) == 1200
    time.sleep(0.3)
    with running_writer(engine, redis_url, batch_rows=50, max_buffer_rows=400, claim_idle_ms=200) as writer:
        wait_until(drained(redis_client), 60, what="the orphans to be stored")
    assert_exactly_once(stored, published)
    assert writer.stats.rows_total == writer.stats.acked_total == 1200
    for stream in bus.STREAMS:
        dead = [c for c in redis_client.xinfo_consumers(stream, bus.WRITER_GROUP) if c["name"] == b"dead"]
        assert not dead or dead[0]["pending"] == 0


def test_a_buffer_no_larger_than_a_batch_still_drains_a_backlog_exactly(engine, redis_client, redis_url, stored):
    published = publish(redis_client, random_events(3000, seed=3))
    with running_writer(engine, redis_url, batch_rows=200, max_buffer_rows=200) as writer:
        wait_until(drained(redis_client), 60, what="the backlog to drain")
    assert_exactly_once(stored, published)
    assert writer.stats.rows_total == 3000 and writer.stats.batches >= 15


def test_with_a_backlog_a_commit_holds_up_to_a_batch_of_each_table(engine, redis_client, redis_url, stored):
    """--batch bounds the rows of each stream (each table) in a commit, not the sum: what a
    commit costs SQLite grows with the index pages of each table it touches, so a commit of
    100 ticks, 100 quotes and 100 depth rows costs about what 100 rows of one table do."""
    events = [make_event(kind, random.Random(i)) for i in range(400) for kind in ("ticker", "full", "depth")]
    published = publish(redis_client, events)
    commits = []
    on_commit = lambda rows, _: commits.append({t: len(r) for t, r in rows.items() if r})  # noqa: E731
    with running_writer(engine, redis_url, on_commit=on_commit, batch_rows=100, flush_ms=10_000):
        wait_until(drained(redis_client), 30, what="the backlog to drain")
    assert_exactly_once(stored, published)
    assert all(n <= 100 for commit in commits for n in commit.values()), commits
    full = [c for c in commits if len(c) == 3 and min(c.values()) > 75]
    assert len(full) >= 3, commits  # the sum was bounded before: about 33 rows of each a commit
    assert len(commits) <= 8, commits


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_sqlite_statement_journal_stays_in_memory(engine, db_url, settings_env):
    """The writer's SQLite connection keeps temporary files (its multi-row INSERTs' statement
    journals) in memory: on disk they were 60% of its write calls (store._sqlite_journal_in_memory)."""
    store = EventStore(engine)
    store.write({"dhan_ticks": [(1 << 20, "NSE_FNO", 1, 1, 10_000, 1)]})
    assert store._connection().execute("PRAGMA temp_store").fetchone() == (2,)  # 2: MEMORY
    store.close()
    reader = get_engine(settings=settings_env(DHAN_DB_URL=db_url))  # any other engine: SQLite's default
    with reader.connect() as other:
        assert other.exec_driver_sql("PRAGMA temp_store").fetchone() == (0,)
    reader.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stopping_while_the_database_is_locked_gives_up_in_time_and_loses_nothing(
        engine, redis_client, redis_url, db_url, stored):
    first = publish(redis_client, random_events(100))
    holder = None
    with running_writer(engine, redis_url, consumer="locked") as writer:
        wait_until(drained(redis_client), 20, what="the first events")
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
        holder.execute("BEGIN EXCLUSIVE")
        second = publish(redis_client, random_events(100, seed=2))
        wait_until(lambda: writer.stats.state == "db_down", 20, what="the writer to notice")
        started = time.monotonic()
        writer.stop_event.set()
        writer.thread.join(20)
        took = time.monotonic() - started
    holder.execute("ROLLBACK")
    holder.close()
    assert took < 15, f"stopping took {took:.1f} s"
    assert writer.stats.state == "stopped" and writer.stats.acked_total == 100
    assert group_pending(redis_client) == 100  # the locked batch stays pending, not lost
    assert stored.total() == 100
    # the next writer (same name, as after a restart) stores them, once
    with running_writer(engine, redis_url, consumer="locked"):
        wait_until(drained(redis_client), 20, what="the replay")
    assert_exactly_once(stored, first + second)


@pytest.fixture
def second_redis(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        wait_until(lambda: _pings(client), 10, what="the second redis-server")
        yield client
    finally:
        client.close()
        proc.kill()
        proc.wait()


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_heartbeat_while_redis_is_down(engine, own_redis, second_redis):
    """Redis gone: the writer says redis_down with the error; a heartbeat that cannot be sent
    is dropped without killing the health thread; a record that gets through elsewhere says
    Redis cannot be reached; the writer still stops cleanly."""
    client = redis.Redis.from_url(own_redis.url)
    publish(client, random_events(50))
    with running_writer(engine, own_redis.url, consumer="rd") as writer:
        reporter = HealthReporter(writer, threading.Event())
        wait_until(lambda: writer.stats.rows_total == 50, 20, what="the first events")
        own_redis.stop()
        wait_until(lambda: writer.stats.state == "redis_down", 20, what="the writer to notice")
        reporter.publish(client)  # Redis is down: dropped, no exception
        record = reporter.record(second_redis)
        assert record["state"] == "redis_down" and record["healthy"] is False
        assert record["problem"].startswith("Redis cannot be reached (") and writer.stats.last_error in record["problem"]
        assert record["rows_total"] == 50 and record["errors"] >= 1
    assert writer.stats.state == "stopped" and writer.stats.acked_total == 50
    client.close()


@pytest.mark.chaos
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_redis_back_with_nothing_new_reads_healthy_again(engine, own_redis):
    """Redis restarts in a quiet market (no entry, so no commit follows): the heartbeat must
    not go on saying Redis cannot be reached."""
    client = redis.Redis.from_url(own_redis.url)
    publish(client, random_events(20))
    with running_writer(engine, own_redis.url, consumer="rb") as writer:
        reporter = HealthReporter(writer, threading.Event())
        wait_until(lambda: writer.stats.rows_total == 20, 20, what="the first events")
        own_redis.stop()
        wait_until(lambda: writer.stats.state == "redis_down", 20, what="the writer to notice")
        own_redis.start()
        wait_until(lambda: writer.stats.state == "running", 30, what="the writer to see Redis back")
        record = reporter.record(redis.Redis.from_url(own_redis.url))
        assert record["healthy"] is True and record["problem"] is None
    client.close()


class PausingStore(EventStore):
    """Commits like EventStore, but the first time it commits rows it freezes Redis (CLIENT
    PAUSE) so that the acknowledgement after the commit times out."""

    def __init__(self, engine, admin, pause_ms):
        super().__init__(engine)
        self.admin, self.pause_ms, self.paused = admin, pause_ms, False

    def write(self, batch):
        super().write(batch)
        if not self.paused and any(batch.values()):
            self.paused = True
            self.admin.execute_command("CLIENT", "PAUSE", self.pause_ms)


def test_an_acknowledgement_that_times_out_is_retried_and_counted_once(engine, redis_client, redis_url, stored):
    """Committed but not acknowledged (Redis stopped answering): the writer says redis_down,
    keeps the committed batch, acknowledges it once Redis answers, and stores nothing twice."""
    published = publish(redis_client, random_events(300, seed=4))
    with running_writer(engine, redis_url, "p", store=PausingStore(engine, redis_client, 2500),
                        socket_timeout=1.0) as writer:
        wait_until(lambda: writer.stats.state == "redis_down", 10, what="the acknowledgement to time out")
        assert writer.stats.rows_total > 0 and "Timeout" in writer.stats.last_error
        wait_until(drained(redis_client), 30, what="the acknowledgement after the pause")
    assert writer.stats.acked_total == writer.stats.rows_total == 300
    assert_exactly_once(stored, published)


def test_stopping_with_an_acknowledgement_outstanding_acknowledges_it_first(engine, redis_client, redis_url, stored):
    """SIGTERM arrives while Redis is frozen after a commit: the writer retries the
    acknowledgement while stopping (within its 5 s), so nothing is left pending to replay."""
    published = publish(redis_client, random_events(200, seed=6))
    with running_writer(engine, redis_url, "q", store=PausingStore(engine, redis_client, 2000),
                        socket_timeout=1.0, batch_rows=10_000) as writer:
        wait_until(lambda: writer.stats.state == "redis_down", 10, what="the acknowledgement to time out")
        writer.stop_event.set()
        writer.thread.join(20)
        assert not writer.thread.is_alive()
    assert writer.stats.state == "stopped" and writer.stats.acked_total == writer.stats.rows_total == 200
    assert group_pending(redis_client) == 0
    assert_exactly_once(stored, published)


class SlowStore(EventStore):
    """A database that takes `delay` s over its first commit (a stuck server)."""

    def __init__(self, engine, delay):
        super().__init__(engine)
        self.delay, self.started, self.done = delay, threading.Event(), threading.Event()

    def write(self, batch):
        if not self.started.is_set():
            self.started.set()
            time.sleep(self.delay)
            super().write(batch)
            self.done.set()
            return
        super().write(batch)


def test_stopping_during_a_commit_longer_than_the_deadline_leaves_it_pending(engine, redis_client, redis_url,
                                                                              stored):
    """The writer does not wait forever for a stuck commit: it stops within its deadline with
    the batch unacknowledged; when that commit lands after all, the next writer's replay of
    the pending entries inserts nothing twice."""
    published = publish(redis_client, random_events(150, seed=8))
    store = SlowStore(engine, 7.0)
    writer = DbWriter(lambda: redis.Redis.from_url(redis_url), store, WriterConfig(consumer="s", flush_ms=50))
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    assert store.started.wait(10)
    started = time.monotonic()
    stop.set()
    thread.join(20)
    took = time.monotonic() - started
    assert 4 < took < 6.9, f"stopped after {took:.1f} s"
    assert writer.stats.acked_total == 0 and group_pending(redis_client) == 150
    assert store.done.wait(10)  # the stuck commit landed after the writer stopped
    with running_writer(engine, redis_url, consumer="s") as second:
        wait_until(drained(redis_client), 20, what="the replay")
    assert second.stats.acked_total == 150
    assert_exactly_once(stored, published)
