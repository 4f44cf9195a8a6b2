"""Redis names, codec and health records (the embedded redis-server: test_embedded_redis.py)."""
import os

import pytest

from dhan_trading import bus


@pytest.mark.unit
def test_every_event_type_has_one_channel_and_stream():
    assert bus.EVENT_STREAM["ticker"] == "dhan:ticks:stream"
    assert {bus.EVENT_CHANNEL[t] for t in ("quote", "full", "oi", "prev_close", "market_status")} == {"dhan:quotes"}
    assert bus.EVENT_STREAM["depth"] == "dhan:depth:stream"
    assert set(bus.STREAMS) == {bus.CHANNEL_STREAM[c] for c in (bus.CHANNEL_TICKS, bus.CHANNEL_QUOTES, bus.CHANNEL_DEPTH)}


@pytest.mark.unit
def test_codec_round_trip_and_rejects_non_objects():
    event = {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13, "recv_ts": 1, "ltp": 26000.05, "ltt": 5}
    assert bus.decode(bus.encode(event)) == event
    for bad in (b"[1,2]", b"not json", b"7"):
        with pytest.raises(ValueError):
            bus.decode(bad)


@pytest.mark.integration
def test_health_record_expires(redis_client):
    bus.publish_health(redis_client, bus.heartbeat("unit_svc", "running", True, frames_per_s=12))
    rec = bus.read_health(redis_client, "unit_svc")
    assert rec["frames_per_s"] == 12 and rec["pid"] == os.getpid()
    assert 0 < redis_client.ttl(bus.health_key("unit_svc")) <= bus.HEALTH_TTL_S
