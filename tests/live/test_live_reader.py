"""History then live (DESIGN §3.6) against a real Redis, a real DB writer and SQLite/MariaDB:
events published before, during and after the handover arrive exactly once and in order."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import redis
from sqlalchemy import create_engine

from dhan_trading import bus
from dhan_trading.live import LiveReader, Status, row_to_event, safe_points
from dhan_trading.schema import stream_id_to_event_id

REPO = Path(__file__).resolve().parents[2]
WANTED = {("NSE_FNO", 101), ("NSE_EQ", 2885)}
OTHERS = [("NSE_FNO", 102), ("IDX_I", 13), ("NSE_EQ", 11536)]
STREAMS = (bus.STREAM_TICKS, bus.STREAM_QUOTES, bus.STREAM_DEPTH)

pytestmark = [pytest.mark.integration]


def event(rng: random.Random, segment: str, security_id: int) -> dict:
    kind = rng.choice(("ticker", "quote", "full", "depth"))
    price = round(rng.randint(2000, 40000) * 0.05, 2)
    e = {"type": kind, "exchange_segment": segment, "security_id": security_id, "recv_ts": time.time_ns()}
    if kind != "depth":
        e.update(ltp=price, ltt=int(time.time()) + 19800)
    if kind in ("quote", "full"):
        e.update(ltq=5, atp=price, volume=rng.randint(1, 10**6), total_buy_qty=1, total_sell_qty=2,
                 open=price, high=price, low=price, close=price)
    if kind == "depth":
        e.update(levels=5, bids=[[price, 10, 1]] * 5, asks=[[round(price + 0.05, 2), 10, 1]] * 5)
    return e


class Market:
    """Publishes events for wanted and unwanted instruments; remembers the wanted entry ids."""

    def __init__(self, client: redis.Redis, seed: int = 3):
        self.client, self.rng = client, random.Random(seed)
        self.wanted: dict[str, list[int]] = {s: [] for s in STREAMS}
        self.lock = threading.Lock()

    def publish(self, n: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        keys = []
        for _ in range(n):
            key = self.rng.choice(sorted(WANTED) + OTHERS)
            e = event(self.rng, *key)
            stream = bus.EVENT_STREAM[e["type"]]
            keys.append((stream, key))
            pipe.xadd(stream, {bus.STREAM_FIELD: orjson.dumps(e)})
        ids = pipe.execute()
        with self.lock:
            for (stream, key), entry_id in zip(keys, ids):
                if key in WANTED:
                    self.wanted[stream].append(stream_id_to_event_id(entry_id))

    def total(self) -> int:
        return sum(len(v) for v in self.wanted.values())


class Writer:
    """The real DB writer as a child process (what the suite runs in production)."""

    def __init__(self, redis_url: str, db_url: str, tmp: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
        self.env.update(REDIS_URL=redis_url, DHAN_DB_URL=db_url, DHAN_DATA_DIR=str(tmp / "var"),
                        PYTHONPATH=str(REPO))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "dhan_trading.subscribers.fno_db_writer"],
                                     env=self.env, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def acked_all(client: redis.Redis) -> bool:
    points = safe_points(client, STREAMS)
    for stream in STREAMS:
        last = client.xrevrange(stream, count=1)
        if last and points[stream] != stream_id_to_event_id(last[0][0]):
            return False
    return True


class Collector:
    def __init__(self):
        self.events: list[dict] = []
        self.statuses: list[Status] = []
        self.lock = threading.Lock()

    def __call__(self, events):
        with self.lock:
            self.events.extend(events)

    def status(self, s: Status):
        self.statuses.append(s)

    def by_stream(self) -> dict[str, list[int]]:
        with self.lock:
            out: dict[str, list[int]] = {s: [] for s in STREAMS}
            for e in self.events:
                out[e["stream"]].append(e["event_id"])
            return out


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.sqlite3'}"
    return request.getfixturevalue("mariadb_database")


@pytest.mark.slow
@pytest.mark.parametrize("writer_after_handover", ["running", "stopped"])
def test_history_then_live_exactly_once_across_the_handover(own_redis, db_url, tmp_path,
                                                           writer_after_handover):
    client = redis.Redis.from_url(own_redis.url)
    market = Market(client)
    writer = Writer(own_redis.url, db_url, tmp_path)
    engine = None
    reader = None
    try:
        # Before: stored by the writer and acknowledged.
        writer.start()
        market.publish(3000)
        wait_for(lambda: acked_all(client), 60, "the writer to store the first events")
        # The writer lags: these are only in the streams.
        writer.kill()
        market.publish(1500)
        if writer_after_handover == "running":
            writer.start()  # now catching up while the reader hands over
        # During the handover and after it: published while the reader starts and follows.
        engine = create_engine(db_url)
        got = Collector()
        reader = LiveReader(streams=STREAMS, instruments=WANTED, on_events=got, on_status=got.status,
                            connect=lambda: redis.Redis.from_url(own_redis.url), engine=engine,
                            batch_size=700)
        publisher = threading.Thread(target=lambda: [market.publish(100) or time.sleep(0.01)
                                                     for _ in range(30)])
        publisher.start()
        reader.start()
        publisher.join()
        market.publish(500)
        wait_for(lambda: sum(map(len, got.by_stream().values())) >= market.total(), 60,
                 "every wanted event")
        time.sleep(0.3)  # a duplicate would arrive right behind the last event
        assert got.by_stream() == market.wanted  # exactly once, in order, per stream
        ms = [e["event_id"] >> 20 for e in got.events]
        assert ms == sorted(ms)  # and in arrival order across the streams (to the millisecond)
        assert got.statuses[-1].phase == "live" and got.statuses[-1].database_ok is True
        assert got.statuses[-1].history_events > 0
        assert all((e["exchange_segment"], e["security_id"]) in WANTED for e in got.events)
    finally:
        if reader is not None:
            reader.stop()
        writer.kill()
        if engine is not None:
            engine.dispose()
        client.close()


@pytest.mark.chaos
def test_redis_restart_shows_disconnected_and_resumes_without_a_gap(own_redis, tmp_path):
    client = redis.Redis.from_url(own_redis.url)
    market = Market(client, seed=5)
    market.publish(400)  # no writer group: today's history comes from the streams
    got = Collector()
    reader = LiveReader(streams=STREAMS, instruments=WANTED, on_events=got, on_status=got.status,
                        connect=lambda: redis.Redis.from_url(own_redis.url, socket_timeout=2),
                        engine=None, block_ms=100)
    reader.start()
    try:
        wait_for(lambda: sum(map(len, got.by_stream().values())) >= market.total(), 30, "history")
        before = got.by_stream()
        own_redis.stop()
        wait_for(lambda: reader.status.redis_ok is False, 30, "the reader to notice")
        assert reader.status.freshness() == "disconnected"
        own_redis.start()  # same port, empty: a restarted server without persistence
        client = redis.Redis.from_url(own_redis.url)
        market.client = client
        fresh = Market(client, seed=9)
        fresh.publish(300)
        wait_for(lambda: reader.status.redis_ok is True, 30, "the reader to reconnect")
        wait_for(lambda: sum(map(len, got.by_stream().values())) >= market.total() + fresh.total(),
                 30, "the events published after the restart")
        after = got.by_stream()
        for stream in STREAMS:
            assert after[stream] == before[stream] + fresh.wanted[stream]
        assert reader.status.freshness() == "live"
    finally:
        reader.stop()
        client.close()


def test_database_down_reads_history_from_the_streams_and_says_so(own_redis, tmp_path):
    client = redis.Redis.from_url(own_redis.url)
    for stream in STREAMS:  # a writer group exists, so the reader would ask the database
        client.xgroup_create(stream, bus.WRITER_GROUP, id="0", mkstream=True)
    market = Market(client, seed=11)
    market.publish(200)
    got = Collector()
    engine = create_engine("mysql+pymysql://root@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    reader = LiveReader(streams=STREAMS, instruments=WANTED, on_events=got, on_status=got.status,
                        connect=lambda: redis.Redis.from_url(own_redis.url), engine=engine)
    reader.start()
    try:
        wait_for(lambda: sum(map(len, got.by_stream().values())) >= market.total(), 30, "events")
        assert got.by_stream() == market.wanted
        assert reader.status.database_ok is False
        assert "database unreachable" in reader.status.problem
    finally:
        reader.stop()
        engine.dispose()
        client.close()


def test_garbage_stream_entries_are_counted_and_skipped(own_redis):
    client = redis.Redis.from_url(own_redis.url)
    market = Market(client, seed=13)
    market.publish(50)
    client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"not json"})
    client.xadd(bus.STREAM_QUOTES, {b"other": b"1"})
    market.publish(50)
    got = Collector()
    reader = LiveReader(streams=STREAMS, instruments=WANTED, on_events=got,
                        connect=lambda: redis.Redis.from_url(own_redis.url), engine=None)
    reader.start()
    try:
        wait_for(lambda: sum(map(len, got.by_stream().values())) >= market.total(), 30, "events")
        wait_for(lambda: reader.status.malformed == 2, 10, "the malformed count")
        assert got.by_stream() == market.wanted
    finally:
        reader.stop()
        client.close()


@pytest.mark.unit
def test_row_to_event_restores_the_message_shape():
    from decimal import Decimal

    from dhan_trading.schema import pack_levels
    row = {"event_id": 5, "exchange_segment": "NSE_FNO", "security_id": 7, "recv_ts": 1, "levels": 1,
           "bids": pack_levels([[100.05, 3, 1]]), "asks": pack_levels([[100.1, 4, 2]])}
    assert row_to_event("dhan_depth", row) == {**row, "type": "depth", "bids": [[100.05, 3, 1]],
                                                "asks": [[100.1, 4, 2]]}
    quote = {"event_id": 6, "type": "quote", "ltp": Decimal("24010.05"), "oi": None}
    assert row_to_event("dhan_quotes", quote) == {"event_id": 6, "type": "quote", "ltp": 24010.05}
    assert row_to_event("dhan_ticks", {"ltp": Decimal("1.5")})["type"] == "ticker"


@pytest.mark.unit
def test_freshness_words():
    assert Status(redis_ok=False, phase="live").freshness() == "disconnected"
    assert Status(redis_ok=True, phase="history").freshness() == "loading"
    assert Status(redis_ok=True, phase="live", last_entry_at=100.0).freshness(now=103) == "live"
    assert Status(redis_ok=True, phase="live", last_entry_at=100.0).freshness(now=112) == "stale 12 s"


@pytest.mark.unit
def test_unknown_stream_is_refused():
    with pytest.raises(ValueError, match="not an event stream"):
        LiveReader(streams=("dhan:nope",), on_events=print, connect=redis.Redis, engine=None)


@pytest.mark.unit
def test_a_gap_sorts_before_market_data_of_the_same_millisecond():
    from dhan_trading.live import arrival
    quote = {"event_id": (5 << 20) | 0, "stream": bus.STREAM_QUOTES}
    gap = {"event_id": (5 << 20) | 3, "stream": bus.STREAM_GAPS}
    later = {"event_id": (6 << 20) | 0, "stream": bus.STREAM_GAPS}
    assert sorted([later, quote, gap], key=arrival) == [gap, quote, later]


def test_a_sparse_caught_up_stream_does_not_pull_the_handover_back(own_redis):
    from dhan_trading.live import handover_points
    client = redis.Redis.from_url(own_redis.url)
    streams = (bus.STREAM_QUOTES, bus.STREAM_GAPS)
    for stream in streams:
        client.xgroup_create(stream, bus.WRITER_GROUP, id="0", mkstream=True)
    gap = client.xadd(bus.STREAM_GAPS, {bus.STREAM_FIELD: b"{}"})  # one gap, early in the day
    quotes = [client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"{}"}) for _ in range(20)]
    for stream in streams:  # the writer reads and acknowledges everything
        for _, entries in client.xreadgroup(bus.WRITER_GROUP, "w", {stream: ">"}) or []:
            client.xack(stream, bus.WRITER_GROUP, *[e for e, _ in entries])
    points = handover_points(client, streams)
    assert points == {bus.STREAM_QUOTES: stream_id_to_event_id(quotes[-1]),
                      bus.STREAM_GAPS: stream_id_to_event_id(gap)}
    more = [client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"{}"}) for _ in range(5)]  # writer behind
    # a later millisecond than the quotes' (within one, ids of two streams are not ordered)
    later_gap = client.xadd(bus.STREAM_GAPS, {bus.STREAM_FIELD: b"{}"},
                            id=f"{int(more[-1].split(b'-')[0]) + 1}-0")
    client.xreadgroup(bus.WRITER_GROUP, "w", {bus.STREAM_GAPS: ">"})
    client.xack(bus.STREAM_GAPS, bus.WRITER_GROUP, later_gap)
    points = handover_points(client, streams)
    cut = stream_id_to_event_id(quotes[-1])  # the quotes the writer has not read yet bound both
    assert points == {bus.STREAM_QUOTES: cut, bus.STREAM_GAPS: cut}
    assert stream_id_to_event_id(more[0]) > cut
    client.close()
