"""--buffer-events bounds the outbox while Redis is away: the oldest unsent events are dropped,
counted, logged at ERROR and shown in the heartbeat; what is kept reaches Redis in order."""
from __future__ import annotations

import asyncio
import logging
import threading

import pytest
import redis

from dhan_trading import bus
from tests.feed.scripted import ScriptedServer
from tests.feed.test_resilience import full, run_feed, stream

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(90)]


def test_a_long_redis_outage_drops_the_oldest_events_counted_and_keeps_the_newest(own_redis, caplog):
    client = redis.Redis.from_url(own_redis.url)
    own_redis.stop()  # Redis is away from the start
    sent = threading.Event()
    frames = [full(1000 + i, 100 + i) for i in range(300)]  # 2 events each: quote + depth

    async def script(conn):
        await conn.wait_subscribed(2)
        for frame in frames:
            await conn.ws.send(frame)
            await asyncio.sleep(0.002)  # many small batches, as on a quiet feed
        sent.set()
        await conn.hold()

    records = []

    def scenario(feed) -> bool:
        if sent.is_set() and feed.publisher.frames >= 300 and own_redis.proc.poll() is not None:
            records.append(feed.health())
            own_redis.start()
        return bool(records) and feed.sink.connected and feed.sink.buffered == 0

    with caplog.at_level(logging.ERROR, logger="dhan_trading.market_feed.sink"):
        with ScriptedServer(script) as server:
            feed = run_feed(server.url, own_redis.url, until=scenario, timeout=40, buffer_events=100)
    dropped = feed.sink.dropped_events
    assert dropped > 0 and feed.sink.sent_events + dropped == 600
    # while Redis was away the heartbeat counted the drop and the outbox stayed within its bound
    assert records[0]["redis_dropped_events"] == dropped and records[0]["redis_buffered_events"] <= 100
    assert records[0]["redis_connected"] is False
    errors = [r.getMessage() for r in caplog.records if "Redis outbox full" in r.getMessage()]
    assert errors and errors[0].startswith("Redis outbox full (") and "still in the raw capture" in errors[-1]
    assert f"({dropped} dropped so far" in errors[-1]
    # what was kept is the newest, whole and in order: the quotes end at the last one sent
    volumes = [e["volume"] for e in stream(client, bus.STREAM_QUOTES)]
    assert volumes and volumes == list(range(volumes[0], 1300))
    assert len(volumes) + len(stream(client, bus.STREAM_DEPTH)) == 600 - dropped
    client.close()


@pytest.mark.slow
def test_a_backlog_larger_than_one_pipelined_block_arrives_whole_and_in_order(own_redis):
    """12,000 frames (24,000 events) buffered during an outage: more than one pipelined block
    (20,000 events), so the backlog goes out in several blocks, each event once, in order."""
    client = redis.Redis.from_url(own_redis.url)
    own_redis.stop()
    sent = threading.Event()
    frames = [full(i, i) for i in range(12_000)]

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(frames)
        sent.set()
        await conn.hold()

    def scenario(feed) -> bool:
        if sent.is_set() and feed.publisher.frames >= 12_000 and own_redis.proc.poll() is not None:
            assert feed.sink.buffered == 24_000
            own_redis.start()
        return own_redis.proc.poll() is None and feed.sink.connected and feed.sink.buffered == 0

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, own_redis.url, until=scenario, timeout=50)
    assert feed.sink.sent_events == 24_000 and feed.sink.dropped_events == 0
    assert [e["volume"] for e in stream(client, bus.STREAM_QUOTES)] == list(range(12_000))
    assert client.xlen(bus.STREAM_DEPTH) == 12_000
    client.close()
