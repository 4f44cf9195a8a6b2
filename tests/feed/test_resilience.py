"""The feed against small scripted servers and a real Redis: framing, drops, silence, 805/807,
a Redis restart mid-stream. Each test runs the Feed in-process with short timers."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import orjson
import pytest
import redis

from dhan_trading import bus
from dhan_trading.market_feed.feed import Feed, FeedOptions
from dhan_trading.market_feed.plan import plan_connections
from dhan_trading.protocol import FeedDecoder, encode_disconnect, encode_full, encode_ticker
from tests.feed.scripted import ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(60)]

SERVICE = "test_feed"
INSTRUMENTS = [("IDX_I", 13, "ticker"), ("NSE_FNO", 7, "full")]
Q = {"ltp": 100.05, "ltq": 5, "ltt": 1_700_000_000, "atp": 100.0, "volume": 1000, "total_sell_qty": 1,
     "total_buy_qty": 2, "oi": 5, "oi_day_high": 6, "oi_day_low": 4, "open": 99.0, "close": 98.0,
     "high": 101.0, "low": 97.0}
LEVELS = [[100.0, 10, 1]] * 5
FAST = dict(backoff_initial=0.05, backoff_cap=0.5, stall_timeout=30.0, cool_off=30.0, health_interval=0.2)


def full(volume: int, ltt: int) -> bytes:
    return encode_full("NSE_FNO", 7, dict(Q, volume=volume, ltt=ltt), LEVELS, LEVELS)


def run_feed(url: str, redis_url: str, *, until=None, timeout: float = 15.0, instruments=INSTRUMENTS,
             **options) -> Feed:
    """Run a Feed until `until(feed)` is true (checked every 50 ms), a fatal stop, or `timeout`."""
    feed = Feed(service=SERVICE, plans=plan_connections(instruments),
                feed_url=f"{url}/?version=2&token=secret-test-token&clientId=1000000001&authType=2",
                redis_url=redis_url, ticks={}, options=FeedOptions(**{**FAST, **options}))

    async def main() -> None:
        task = asyncio.create_task(feed.run())
        deadline = time.monotonic() + timeout
        while not task.done() and time.monotonic() < deadline and not (until and until(feed)):
            await asyncio.sleep(0.05)
        feed.stop.set()
        await task
    asyncio.run(main())
    return feed


def stream(client: redis.Redis, name: str) -> list[dict]:
    return [orjson.loads(fields[b"data"]) for _, fields in client.xrange(name)]


def without_ts(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "recv_ts"} for e in events]


def expected(frames: list[bytes]) -> dict[str, list[dict]]:
    """What our decoder makes of `frames`, per stream (the reference for the streams' content)."""
    decoded = FeedDecoder().decode(frames, 0)
    out: dict[str, list[dict]] = {s: [] for s in bus.STREAMS}
    for event_type, payload in zip(*decoded.render()):
        out[bus.EVENT_STREAM[event_type]].append(orjson.loads(payload))
    return out


def test_stacked_and_garbage_frames_are_decoded_or_counted_never_fatal(redis_url, redis_client):
    stacked = encode_ticker("IDX_I", 13, 26000.05, 1) + encode_ticker("IDX_I", 13, 26000.1, 2) + full(10, 3)
    garbage = [os.urandom(37), b"\x02\x10", encode_ticker("IDX_I", 13, 1.0, 4)[:-3],
               encode_ticker("IDX_I", 13, 26000.2, 5) + b"\x99\x99"]
    good = [stacked, *garbage, full(20, 6)]

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(good[:2])
        await conn.ws.send("not a binary frame")
        await conn.send_all(good[2:])
        await conn.hold()

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, redis_url,
                        until=lambda f: f.sink.sent_events >= 6 and f.publisher.frames >= 7)
    want = expected(good)
    for name in bus.STREAMS:
        assert without_ts(stream(redis_client, name)) == without_ts(want[name])
    assert len(stream(redis_client, bus.STREAM_TICKS)) == 3  # two stacked + the one before trailing bytes
    assert feed.publisher.malformed >= 4
    assert len(server.conns) == 1  # garbage never costs the connection


def test_health_record_while_running(redis_url, redis_client):
    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all([full(1, 1)])
        await conn.hold()

    seen: list[dict] = []

    def healthy(feed: Feed) -> bool:
        record = bus.read_health(redis_client, SERVICE)
        if record and record.get("frames"):
            seen.append(record)
        return bool(seen)

    with ScriptedServer(script) as server:
        run_feed(server.url, redis_url, until=healthy)
    record = seen[-1]
    assert record["state"] == "streaming" and record["pid"] == os.getpid()
    assert bus.assess_health(record) == (True, None)
    for key in ("connections", "instruments", "frames_per_s", "last_frame_age_s", "reconnects",
                "malformed", "queue_depth", "redis_refused_commands", "capture"):
        assert key in record
    assert record["capture"] == "off"
    assert record["connections"] == 1 and record["instruments"] == 2
    assert 0 < redis_client.ttl(bus.health_key(SERVICE)) <= bus.HEALTH_TTL_S


def test_dropped_connection_reconnects_resubscribes_and_publishes_a_gap(redis_url, redis_client):
    async def script(conn):
        await conn.wait_subscribed(2)
        if conn.number == 0:
            await conn.send_all([full(1000, 10)])
            await asyncio.sleep(0.3)
            conn.drop()  # no close frame, no disconnect packet
            return
        await conn.send_all([full(1500, 20)])
        await conn.hold()

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, redis_url, until=lambda f: f.sink.sent_events >= 5)
    assert len(server.conns) == 2
    assert [sum(r["InstrumentCount"] for r in c.requests) for c in server.conns] == [2, 2]
    gaps = stream(redis_client, bus.STREAM_GAPS)
    assert without_ts(gaps) == [{"type": "gap", "exchange_segment": "NSE_FNO", "security_id": 7,
                                 "reason": "reconnect", "last_ltt": 10, "last_volume": 1000,
                                 "resume_ltt": 20, "resume_volume": 1500}]
    assert [e["volume"] for e in stream(redis_client, bus.STREAM_QUOTES)] == [1000, 1500]
    assert feed.health()["reconnects"] == 1


def test_silent_connection_is_recycled_as_a_stall(redis_url, redis_client):
    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all([full(1000 + conn.number, 10 + conn.number)])
        await conn.hold()  # then silence

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, redis_url, stall_timeout=1.0,
                        until=lambda f: len(stream(redis_client, bus.STREAM_GAPS)) >= 1)
    assert len(server.conns) >= 2
    gap = stream(redis_client, bus.STREAM_GAPS)[0]
    assert gap["reason"] == "stall" and gap["last_volume"] == 1000 and gap["resume_volume"] == 1001
    assert feed.health()["stalls"] >= 1


def test_805_cools_off_instead_of_reconnecting_at_once(redis_url):
    async def script(conn):
        await conn.wait_subscribed(2)
        if conn.number == 0:
            await conn.send_all([encode_disconnect(805)])
            await conn.ws.close()
            return
        await conn.hold()

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, redis_url, cool_off=1.5, until=lambda f: len(server.conns) >= 2)
    assert len(server.conns) == 2
    waited = server.conns[1].opened - server.conns[0].opened
    assert waited >= 1.4, f"reconnected after {waited:.2f} s; the cool-off is 1.5 s (backoff 0.05 s)"
    assert feed.fatal is None


@pytest.mark.parametrize("reason, words", [(807, "expired"), (806, "not subscribed"), (809, "invalid")])
def test_fatal_reasons_stop_the_feed_without_retrying(redis_url, reason, words):
    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all([encode_disconnect(reason)])
        await conn.hold()

    with ScriptedServer(script) as server:
        started = time.monotonic()
        feed = run_feed(server.url, redis_url, timeout=10)
        took = time.monotonic() - started
        time.sleep(0.3)
    assert feed.fatal is not None and feed.fatal[0] == reason and words in feed.fatal[1]
    assert len(server.conns) == 1 and took < 5


def test_redis_restart_mid_stream_loses_and_duplicates_nothing(own_redis):
    client = redis.Redis.from_url(own_redis.url)
    first, second = threading.Event(), threading.Event()
    frames = [full(1000 + i, 100 + i) for i in range(600)]

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(frames[:200])
        await asyncio.to_thread(first.wait, 20)
        for frame in frames[200:]:
            await conn.ws.send(frame)
            await asyncio.sleep(0.002)  # spread over ~1 s of outage
        second.set()
        await conn.hold()

    def scenario(feed: Feed) -> bool:
        if not first.is_set():
            if feed.sink.sent_events >= 400:  # 200 full + 200 depth
                own_redis.stop()
                first.set()
            return False
        if second.is_set() and own_redis.proc.poll() is not None:
            if feed.sink.buffered == 0 and feed.publisher.frames < 600:
                return False
            own_redis.start()
        return feed.publisher.frames >= 600 and feed.sink.buffered == 0 and feed.sink.connected

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, own_redis.url, until=scenario, timeout=30)
    assert feed.sink.outages >= 1
    # the restarted server is empty: everything after the restart point came from the buffer
    volumes = [e["volume"] for e in stream(client, bus.STREAM_QUOTES)]
    assert volumes[0] <= 1200 and volumes == list(range(volumes[0], 1600))  # all of the outage, once, in order
    assert feed.sink.dropped_events == 0
    assert len(server.conns) == 1  # Redis trouble never touches the WebSocket
    client.close()
