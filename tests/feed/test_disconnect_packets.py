"""Disconnect packets on the 20-level depth socket are read with the depth layout: a fatal reason
there stops the whole feed like one on the main socket; another reason is logged with its
meaning and the depth socket reconnects. A code-50 frame too short to hold a reason is no
disconnect: the socket is kept and the frames after it are published."""
from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from dhan_trading import bus
from dhan_trading.market_feed.feed import Feed, FeedOptions
from dhan_trading.market_feed.plan import plan_connections, plan_depth
from dhan_trading.protocol.packets import encode_depth_disconnect
from tests.feed.scripted import ScriptedServer
from tests.feed.test_resilience import FAST, INSTRUMENTS, full, run_feed, stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
QUERY = "?token=secret-test-token&clientId=1000000001&authType=2"


def _run_with_depth(url: str, redis_url: str, until, timeout: float = 15.0) -> Feed:
    feed = Feed(service="test_feed", plans=plan_connections(INSTRUMENTS), feed_url=f"{url}/{QUERY}&version=2",
                depth_plan=plan_depth([("NSE_FNO", 7)]), depth_url=f"{url}/twentydepth{QUERY}",
                redis_url=redis_url, ticks={}, options=FeedOptions(**FAST))

    async def main() -> None:
        task = asyncio.create_task(feed.run())
        deadline = asyncio.get_running_loop().time() + timeout
        while not task.done() and asyncio.get_running_loop().time() < deadline and not until(feed):
            await asyncio.sleep(0.05)
        feed.stop.set()
        await task
    asyncio.run(main())
    return feed


def _depth_script(reason: int):
    """The first depth connection gets a disconnect packet, then Dhan closes it."""
    depth = []

    async def script(conn):
        if conn.ws.request.path.startswith("/twentydepth"):
            depth.append(conn)
            if len(depth) == 1:
                await asyncio.sleep(0.2)  # connected and subscribed
                await conn.ws.send(encode_depth_disconnect(reason))
                await conn.ws.close()
                return
        await conn.hold()
    return script


def _depth_conns(server) -> int:
    return sum(c.ws.request.path.startswith("/twentydepth") for c in server.conns)


def test_a_fatal_reason_on_the_depth_socket_stops_the_feed(redis_url, caplog):
    with caplog.at_level(logging.CRITICAL):
        with ScriptedServer(_depth_script(807)) as server:
            feed = _run_with_depth(server.url, redis_url, until=lambda f: False)
    assert feed.fatal is not None and feed.fatal[0] == 807
    assert "the access token has expired (807)" in caplog.text
    assert feed.health()["state"] == "fatal" and feed.health()["healthy"] is False
    assert _depth_conns(server) == 1  # no retry


def test_another_reason_on_the_depth_socket_is_logged_and_it_reconnects(redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger="dhan_trading.market_feed.connection"):
        with ScriptedServer(_depth_script(804)) as server:
            feed = _run_with_depth(server.url, redis_url, until=lambda f: _depth_conns(server) >= 2)
    assert feed.fatal is None and _depth_conns(server) >= 2
    assert "depth20: Dhan disconnected the feed:" in caplog.text and "(804)" in caplog.text


def test_a_code_50_frame_too_short_for_a_reason_keeps_the_socket(redis_url):
    frames = [full(1000, 100), b"\x32\x00\x00\x00", full(1001, 101)]

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(frames)
        await conn.hold()

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, redis_url, until=lambda f: f.sink.sent_events >= 4)
    assert feed.fatal is None and len(server.conns) == 1 and feed.health()["reconnects"] == 0
    client = redis.Redis.from_url(redis_url)
    assert [e["volume"] for e in stream(client, bus.STREAM_QUOTES)] == [1000, 1001]
    client.close()
