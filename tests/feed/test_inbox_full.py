"""A publisher far behind: once the inbox holds `inbox_limit` frames, new frames are dropped and
counted (`inbox_dropped` in the heartbeat), never queued without bound; the socket stays up and
what was queued is published, in order."""
from __future__ import annotations

import pytest
import redis

from dhan_trading import bus
from tests.feed.scripted import ScriptedServer
from tests.feed.test_resilience import full, run_feed, stream

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(60)]


def test_a_full_inbox_drops_new_frames_counted(redis_url):
    frames = [full(1000 + i, 100 + i) for i in range(2000)]

    async def script(conn):
        await conn.wait_subscribed(2)
        await conn.send_all(frames)  # a burst: frames arrive in large TCP reads, faster than published
        await conn.hold()

    with ScriptedServer(script) as server:
        feed = run_feed(server.url, redis_url, inbox_limit=20, until=lambda f: (
            f.health()["frames"] == 2000 and f.inbox.items == type(f.inbox.items)() and f.sink.buffered == 0))
    health = feed.health()
    dropped = health["inbox_dropped"]
    assert 0 < dropped < 2000 and health["frames"] == 2000 and health["reconnects"] == 0
    assert health["healthy"] is False and "frames dropped in the inbox" in health["problem"]
    assert feed.sink.sent_events == 2 * (2000 - dropped)
    volumes = [e["volume"] for e in stream(redis.Redis.from_url(redis_url), bus.STREAM_QUOTES)]
    assert len(volumes) == 2000 - dropped and volumes == sorted(volumes) and volumes[0] == 1000
