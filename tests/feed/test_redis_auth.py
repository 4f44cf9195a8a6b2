"""A Redis that asks for a password (REDIS_URL=redis://user:password@host/db): with the right
one the feed's events land in the URL's database; with a wrong one the feed keeps receiving and
buffering, says why (Redis's own refusal), turns unhealthy, and at shutdown says how many events
Redis never got."""
from __future__ import annotations

import logging

import pytest
import redis

from dhan_trading import bus
from tests.feed.scripted import ScriptedServer
from tests.feed.test_resilience import full, run_feed, stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
FRAMES = [full(1000 + i, 100 + i) for i in range(50)]


async def _send_frames(conn):
    await conn.wait_subscribed(2)
    await conn.send_all(FRAMES)
    await conn.hold()


@pytest.fixture
def locked_redis(own_redis):
    """own_redis with a password for the default user and an ACL user `feed`."""
    admin = redis.Redis.from_url(own_redis.url)
    admin.execute_command("ACL", "SETUSER", "feed", "on", ">feed-pass", "~*", "&*", "+@all")
    admin.config_set("requirepass", "s3cret")
    admin.close()
    return own_redis


@pytest.mark.parametrize("auth", [":s3cret", "feed:feed-pass"])
def test_with_the_right_password_events_land_in_the_urls_database(locked_redis, auth):
    url = f"redis://{auth}@127.0.0.1:{locked_redis.port}/3"
    with ScriptedServer(_send_frames) as server:
        feed = run_feed(server.url, url, until=lambda f: f.sink.sent_events >= 100)
    assert feed.sink.sent_events == 100 and feed.sink.refused_commands == 0
    db3 = redis.Redis.from_url(url)
    assert [e["volume"] for e in stream(db3, bus.STREAM_QUOTES)] == list(range(1000, 1050))
    assert bus.read_health(db3, "test_feed")["state"] == "stopped"
    db3.close()
    db0 = redis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{locked_redis.port}/0")
    assert db0.dbsize() == 0  # nothing in the default database
    db0.close()


def test_a_wrong_password_is_said_and_the_events_wait(locked_redis, caplog):
    url = f"redis://:wrong@127.0.0.1:{locked_redis.port}/0"
    health = []

    def until(feed) -> bool:
        if feed.publisher.frames >= 50:
            health.append(feed.health())
        return bool(health) and health[-1]["healthy"] is False

    with caplog.at_level(logging.WARNING, logger="dhan_trading.market_feed.sink"):
        with ScriptedServer(_send_frames) as server:
            feed = run_feed(server.url, url, until=until, redis_grace=0.3, flush_timeout=0.5)
    assert feed.sink.sent_events == 0 and feed.sink.buffered == 100  # kept, not dropped
    assert health[-1]["redis_connected"] is False and health[-1]["redis_buffered_events"] == 100
    assert "Redis unreachable for" in health[-1]["problem"] and "100 events buffered" in health[-1]["problem"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Redis unavailable (RedisUnavailable: Redis refused AUTH:" in w and "WRONGPASS" in w
               for w in warnings), warnings
    assert "stopping with 100 events not delivered to Redis (still in the raw capture)" in caplog.text


def test_a_user_not_allowed_to_trim_still_gets_every_event_and_is_told_once(locked_redis, caplog):
    """An ACL user without scripting (the safe trim is a Lua script): trimming fails, which is
    logged once, and publishing goes on untouched."""
    admin = redis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{locked_redis.port}/0")
    admin.execute_command("ACL", "SETUSER", "feed", "-@scripting")
    admin.close()
    url = f"redis://feed:feed-pass@127.0.0.1:{locked_redis.port}/0"
    with caplog.at_level(logging.WARNING, logger="dhan_trading.market_feed.feed"):
        with ScriptedServer(_send_frames) as server:
            feed = run_feed(server.url, url, until=lambda f: f.sink.sent_events >= 100
                            and "stream trimming failed" in caplog.text and f.health()["uptime_s"] > 1)
    assert feed.sink.sent_events == 100
    trims = [r.getMessage() for r in caplog.records if "stream trimming failed" in r.getMessage()]
    assert len(trims) == 1 and trims[0].endswith("will retry")
    assert "no permissions to run the 'eval' command" in trims[0]
    client = redis.Redis.from_url(url)
    assert [e["volume"] for e in stream(client, bus.STREAM_QUOTES)] == list(range(1000, 1050))
    client.close()
