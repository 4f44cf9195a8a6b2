"""The feed notices what breaks (issue 8, items 2, 5, 10): a dead task stops it as failed (exit
non-zero) with its traceback logged; a full disk costs only the capture; commands Redis refuses
are retried in order, exactly once; the heartbeat says unhealthy when no socket works or a fatal
code stopped it. Real sockets (scripted servers) and a real redis-server of the test's own."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from dhan_trading import bus
from dhan_trading.capture import read_capture
from dhan_trading.market_feed.feed import Feed, FeedOptions
from dhan_trading.market_feed.plan import plan_connections
from dhan_trading.scheduler.calendar import IST
from tests.conftest import free_port
from tests.feed.scripted import ScriptedServer
from tests.feed.test_resilience import FAST, INSTRUMENTS, SERVICE, full, stream

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(90)]

TOKEN = "secret-test-token"
REPO = Path(__file__).resolve().parents[2]


def make_feed(url: str, redis_url: str, capture_dir: Path | None = None, **options) -> Feed:
    return Feed(service=SERVICE, plans=plan_connections(INSTRUMENTS),
                feed_url=f"{url}/?version=2&token={TOKEN}&clientId=1000000001&authType=2",
                redis_url=redis_url, ticks={}, capture_dir=capture_dir,
                options=FeedOptions(**{**FAST, **options}))


def drive(feed: Feed, until=None, timeout: float = 20.0, on_tick=None) -> float:
    """Run `feed` until `until(feed)`, its own stop, or `timeout`; returns the seconds it ran."""
    async def main() -> float:
        started = time.monotonic()
        task = asyncio.create_task(feed.run())
        deadline = started + timeout
        while not task.done() and time.monotonic() < deadline and not (until and until(feed)):
            if on_tick:
                await asyncio.to_thread(on_tick, feed)
            await asyncio.sleep(0.05)
        feed.stop.set()
        await task
        return time.monotonic() - started
    return asyncio.run(main())


def streaming_script(frames):
    async def script(conn):
        await conn.wait_subscribed(2)
        for frame in frames:
            await conn.ws.send(frame)
            await asyncio.sleep(0.3)  # one publisher step per frame
        await conn.hold()
    return script


# ---- item 2: dead tasks ---------------------------------------------------------------------
def _break(feed: Feed, task: str, where: str) -> None:
    def boom_sync(*_):
        raise RuntimeError(f"boom in {task}")

    async def boom_async(*_):
        raise RuntimeError(f"boom in {task}")

    if task == "publisher":
        step = feed.publisher.step
        calls = []

        def second_step_fails():
            calls.append(1)
            if len(calls) > 1:
                boom_sync()
            step()
        feed.publisher.step = second_step_fails
    elif task == "redis-sink":
        feed.sink._send_front = boom_async
    elif task == "health":
        feed._housekeeping = boom_sync
    elif where == "subscribe":
        feed.connections[0]._subscribe = boom_async
    else:
        feed.connections[0]._receive = boom_async


@pytest.mark.parametrize("task, where", [("publisher", ""), ("redis-sink", ""), ("health", ""),
                                         ("feed#0", "receive"), ("feed#0", "subscribe")])
def test_a_dead_task_stops_the_feed_as_failed_with_its_traceback(task, where, redis_url, redis_client, caplog):
    caplog.set_level(logging.INFO)
    with ScriptedServer(streaming_script([full(1000, 1), full(2000, 2)])) as server:
        feed = make_feed(server.url, redis_url)
        _break(feed, task, where)
        took = drive(feed, timeout=30)
    assert took < 10, "the feed lived on without its task"
    assert feed.failed and task in feed.failed and f"boom in {task}" in feed.failed
    logged = [r for r in caplog.records if r.levelno == logging.CRITICAL and task in r.getMessage()]
    assert logged and logged[0].exc_info and f"boom in {task}" in str(logged[0].exc_info[1])
    record = bus.read_health(redis_client, SERVICE)
    assert record["state"] == "failed" and record["healthy"] is False and task in record["problem"]
    if task == "publisher":  # what was published before it died was flushed to Redis
        assert [e["volume"] for e in stream(redis_client, bus.STREAM_QUOTES)] == [1000]


def test_launcher_exits_non_zero_when_a_task_dies(tmp_path, redis_url):
    """The launcher turns `Feed.failed` into exit 1 (restartable, unlike FATAL's 78)."""
    code = ("import sys; from dhan_trading.market_feed import launcher, publisher\n"
            "def boom(self): raise RuntimeError('boom in publisher')\n"
            "publisher.Publisher.step = boom\n"
            "sys.exit(launcher.main(['--force', '--no-capture', '--duration', '30']))\n")
    with ScriptedServer(streaming_script([full(1000, 1)])) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
        env.update(REDIS_URL=redis_url, DHAN_FEED_URL=server.url, DHAN_CLIENT_ID="1000000001",
                   DHAN_ACCESS_TOKEN=TOKEN, DHAN_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True,
                              text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "publisher task died" in output and "Traceback" in output and "boom in publisher" in output
    assert TOKEN not in output


# ---- item 2: connection errors outside the old narrow list ------------------------------------
def test_a_url_that_can_never_work_is_fatal_and_names_the_setting(redis_url):
    feed = Feed(service=SERVICE, plans=plan_connections(INSTRUMENTS),
                feed_url=f"ws:///nohost?token={TOKEN}", redis_url=redis_url, ticks={},
                options=FeedOptions(**FAST))
    took = drive(feed, timeout=10)
    assert took < 5 and feed.fatal is not None and feed.fatal[0] is None
    assert "DHAN_FEED_URL" in feed.fatal[1] and TOKEN not in feed.fatal[1]
    assert feed.connections[0].stats.connects == 0


def test_tls_errors_reconnect_with_backoff_and_the_heartbeat_says_why(redis_url):
    with ScriptedServer(streaming_script([])) as server:  # plain ws, spoken to as wss
        feed = make_feed(server.url.replace("ws://", "wss://"), redis_url, stall_timeout=1.0)
        seen: list[dict] = []
        drive(feed, until=lambda f: seen.append(f.health()) or not seen[-1]["healthy"], timeout=15)
    assert feed.fatal is None and feed.failed is None
    record = seen[-1]
    assert record["healthy"] is False and record["state"] == "connecting"
    assert "no working connection" in record["problem"]
    assert "SSL" in record["problem"] or "ConnectionResetError" in record["problem"]
    assert feed.connections[0].backoff.attempt >= 2  # tried again, with backoff


# ---- item 10: the heartbeat tells the truth -------------------------------------------------------
def test_nothing_listening_is_unhealthy_after_the_stall_timeout(redis_url, redis_client):
    url = f"ws://127.0.0.1:{free_port()}"
    feed = make_feed(url, redis_url, stall_timeout=3.0)
    early: list[dict] = []
    record: dict = {}

    def look(f: Feed) -> None:
        nonlocal record
        record = bus.read_health(redis_client, SERVICE) or {}
        if record and record["uptime_s"] < 2.5:  # well inside the stall timeout
            early.append(record)

    drive(feed, until=lambda f: record.get("healthy") is False, on_tick=look, timeout=20)
    assert early and all(r["healthy"] and r["state"] == "connecting" for r in early)  # not before
    healthy, problem = bus.assess_health(record)
    assert healthy is False and record["state"] == "connecting" and record["uptime_s"] >= 3.0
    assert "0 of 1 sockets streaming" in problem and "stall timeout 3 s" in problem
    assert "ConnectionRefusedError" in problem


def test_a_fatal_code_publishes_an_unhealthy_heartbeat(redis_url, redis_client):
    from dhan_trading.protocol import encode_disconnect

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.ws.send(encode_disconnect(807))
        await conn.hold()

    with ScriptedServer(script) as server:
        feed = make_feed(server.url, redis_url)
        drive(feed, timeout=10)
    record = bus.read_health(redis_client, SERVICE)
    assert record["state"] == "fatal" and record["fatal_reason"] == 807
    assert bus.assess_health(record)[0] is False and "expired" in record["problem"]


# ---- item 2: a full disk costs the capture, never Redis -------------------------------------------
def test_a_full_disk_stops_the_capture_but_every_event_reaches_redis(tmp_path, redis_url, redis_client, caplog):
    captures = tmp_path / "captures"
    captures.mkdir()
    today = dt.datetime.now(IST).date()
    for day in {today, dt.date.today(), today + dt.timedelta(days=1)}:
        (captures / f"{day.isoformat()}.dcap").symlink_to("/dev/full")  # every write: ENOSPC
    frames = [full(1000 + i, 10 + i) for i in range(200)]

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(frames)
        await conn.hold()

    seen: list[dict] = []
    with ScriptedServer(script) as server:
        feed = make_feed(server.url, redis_url, capture_dir=captures)
        drive(feed, until=lambda f: f.sink.sent_events >= 400 and seen.append(f.health()) is None
              and f.capture.failed is not None, timeout=20)
    assert [e["volume"] for e in stream(redis_client, bus.STREAM_QUOTES)] == list(range(1000, 1200))
    assert len(stream(redis_client, bus.STREAM_DEPTH)) == 200
    record = seen[-1]
    assert record["capture"].startswith("failed:") and "No space left" in record["capture"]
    assert record["healthy"] is True and "raw capture failed" in record["problem"]
    assert record["capture_dropped_frames"] > 0 and feed.failed is None
    assert any("raw capture failed" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_a_failed_write_leaves_no_partial_record_and_the_capture_resumes(tmp_path):
    """RLIMIT_FSIZE makes the kernel write part of a batch and then refuse the rest (EFBIG), as
    a filling disk does: the file is cut back to its last whole record, and once the limit is
    lifted the capture goes on in the same file, readable to the end."""
    import resource
    import signal

    from dhan_trading.capture import CaptureWriter
    from dhan_trading.market_feed.recorder import Recorder

    path = tmp_path / "run.dcap"

    class OneFile(CaptureWriter):
        def path_for(self, day):
            return path

    def wait(predicate):
        deadline = time.monotonic() + 10
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert predicate()

    recorder = Recorder(OneFile(tmp_path), retry_after=0.2)
    recorder.submit([(1, b"a" * 10)], 0)
    wait(lambda: recorder.frames == 1)
    size = path.stat().st_size
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, limits[1]))
    try:
        recorder.submit([(2 + i, b"b" * 10) for i in range(5)], 0)  # 115 bytes, 40 fit
        wait(lambda: recorder.failed is not None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert "too large" in recorder.status and recorder.dropped_frames == 5
    assert path.stat().st_size == size  # the partial record is gone
    time.sleep(0.25)  # past the retry pause
    recorder.submit([(9, b"c" * 10)], 0)
    wait(lambda: recorder.frames == 2)
    assert recorder.failed is None and recorder.status == "ok"
    recorder.close()
    assert [(ts, frame) for ts, _, frame in read_capture(path)] == [(1, b"a" * 10), (9, b"c" * 10)]


# ---- item 5: commands Redis refuses ----------------------------------------------------------------
def _oom(client: redis.Redis) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # any XADD / HSET now fails with OOM; PUBLISH still works


def test_redis_oom_events_are_retried_in_order_exactly_once(own_redis, caplog):
    client = redis.Redis.from_url(own_redis.url)
    frames = [full(1000 + i, 10 + i) for i in range(300)]
    refused_seen, full_memory = threading.Event(), threading.Event()
    records: list[dict] = []

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(frames[:100])
        await asyncio.to_thread(refused_seen.wait, 20)
        await conn.send_all(frames[100:])
        await conn.hold()

    def scenario(feed: Feed) -> bool:
        if feed.sink.sent_events >= 200 and not full_memory.is_set():
            _oom(client)
            full_memory.set()
        if feed.sink.refused_commands and not refused_seen.is_set():
            records.append(feed.health())
            refused_seen.set()
        if refused_seen.is_set() and feed.publisher.frames >= 300 and feed.sink.refused_commands >= 3:
            client.config_set("maxmemory", 0)  # room again
        return feed.publisher.frames >= 300 and feed.sink.buffered == 0 and feed.sink.refusing is None

    with ScriptedServer(script) as server:
        feed = make_feed(server.url, own_redis.url)
        drive(feed, until=scenario, timeout=40)
    volumes = [e["volume"] for e in stream(client, bus.STREAM_QUOTES)]
    assert volumes == list(range(1000, 1300))  # every event once, in order
    assert len(stream(client, bus.STREAM_DEPTH)) == 300
    assert feed.sink.refused_commands >= 3 and feed.sink.sent_events == 600
    record = records[0]
    assert record["healthy"] is False and "OOM" in record["problem"] and record["redis_refused_commands"] > 0
    assert feed.health()["redis_refused_commands"] == feed.sink.refused_commands
    client.close()


def test_readonly_replica_refusals_are_retried_without_duplicates(own_redis):
    from dhan_trading.market_feed.sink import RedisSink

    client = redis.Redis.from_url(own_redis.url)
    payloads = [b'{"type":"ticker","exchange_segment":"IDX_I","security_id":13,"recv_ts":%d,"ltp":1.0}' % i
                for i in range(50)]

    async def main() -> RedisSink:
        sink = RedisSink(own_redis.url, "test")
        sender = asyncio.create_task(sink.run())
        sink.submit([bus.CHANNEL_TICKS] * 20, payloads[:20])
        while sink.sent_events < 20:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(client.replicaof, "127.0.0.1", free_port())  # read-only, no master
        sink.submit([bus.CHANNEL_TICKS] * 30, payloads[20:])
        deadline = time.monotonic() + 10
        while sink.refused_commands < 60 and time.monotonic() < deadline:  # two refused rounds
            await asyncio.sleep(0.01)
        assert sink.refusing and "READONLY" in sink.refusing and sink.buffered == 30
        await asyncio.to_thread(client.replicaof, "NO", "ONE")
        assert await sink.close(10)
        await sender
        return sink

    sink = asyncio.run(main())
    assert [f[b"data"] for _, f in client.xrange(bus.STREAM_TICKS)] == payloads
    assert sink.sent_events == 50 and sink.refusing is None
    client.close()
