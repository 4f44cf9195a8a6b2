"""Hand-built RESP, latest-field extraction and gap events (pure), plus one real-Redis check."""
from __future__ import annotations

import hiredis
import orjson
import pytest

from dhan_trading import bus
from dhan_trading.market_feed import resp
from dhan_trading.market_feed.continuity import GapTracker
from dhan_trading.protocol import FeedDecoder, encode_full, encode_oi, encode_prev_close, encode_quote, encode_ticker

Q = {"ltp": 100.05, "ltq": 5, "ltt": 1_700_000_000, "atp": 100.0, "volume": 1000, "total_sell_qty": 1,
     "total_buy_qty": 2, "oi": 5, "oi_day_high": 6, "oi_day_low": 4, "open": 99.0, "close": 98.0,
     "high": 101.0, "low": 97.0}
LEVELS = [[100.0, 10, 1]] * 5


def _parse(data: bytes) -> list:
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (item := reader.gets()) is not False:
        out.append(item)
    return out


@pytest.mark.unit
def test_publish_and_xadd_encode_the_commands_in_order():
    data = resp.publish_and_xadd([bus.CHANNEL_TICKS, bus.CHANNEL_DEPTH], [b'{"a":1}', b"x" * 300])
    assert _parse(data) == [
        [b"PUBLISH", b"dhan:ticks", b'{"a":1}'], [b"XADD", b"dhan:ticks:stream", b"*", b"data", b'{"a":1}'],
        [b"PUBLISH", b"dhan:depth", b"x" * 300], [b"XADD", b"dhan:depth:stream", b"*", b"data", b"x" * 300]]


@pytest.mark.unit
def test_latest_field_per_type_and_instrument_last_one_wins():
    decoded = FeedDecoder().decode([encode_ticker("IDX_I", 13, 1.0, 1), encode_full("NSE_FNO", 7, Q, LEVELS, LEVELS),
                                    encode_ticker("IDX_I", 13, 2.0, 2)], 5)
    types, payloads = decoded.render()
    channels = [bus.EVENT_CHANNEL[t] for t in types]
    latest = resp.LatestFields().latest(channels + [bus.CHANNEL_GAPS], payloads + [b'{"type":"gap"}'])
    assert set(latest) == {b"ticker:IDX_I:13", b"full:NSE_FNO:7", b"depth:NSE_FNO:7"}
    assert orjson.loads(latest[b"ticker:IDX_I:13"])["ltp"] == 2.0


@pytest.mark.integration
def test_the_hand_built_pipeline_lands_in_redis(redis_client):
    payloads = [b'{"type":"ticker","exchange_segment":"IDX_I","security_id":13,"recv_ts":1,"ltp":5.0,"ltt":1}']
    latest = resp.LatestFields().latest([bus.CHANNEL_TICKS], payloads)
    data = resp.publish_and_xadd([bus.CHANNEL_TICKS], payloads) + resp.hset(bus.LATEST_HASH, latest)
    conn = redis_client.connection_pool.get_connection()
    try:
        conn.send_packed_command([data])
        got = [conn.read_response() for _ in range(3)]
    finally:
        redis_client.connection_pool.release(conn)
    assert got[0] == 0 and got[2] == 1  # no subscriber; one new hash field
    assert redis_client.xrange(bus.STREAM_TICKS)[0][1] == {b"data": payloads[0]}
    assert redis_client.hget(bus.LATEST_HASH, "ticker:IDX_I:13") == payloads[0]


@pytest.mark.unit
def test_gap_event_bridges_last_and_first_values_after_a_break():
    dec = FeedDecoder()
    gaps = GapTracker()
    before = dict(Q, volume=1000, ltt=10)
    assert gaps.observe(dec.decode([encode_quote("NSE_FNO", 7, before), encode_ticker("IDX_I", 13, 1.0, 11)], 1)) == []
    gaps.mark([("NSE_FNO", 7), ("IDX_I", 13), ("NSE_FNO", 99)], "stall")
    after = [encode_quote("NSE_FNO", 7, dict(Q, volume=1500, ltt=20)),
             encode_quote("NSE_FNO", 7, dict(Q, volume=1600, ltt=21)), encode_ticker("NSE_FNO", 99, 1.0, 5)]
    events = gaps.observe(dec.decode(after, [100, 101, 102]))
    assert events == [{"type": "gap", "exchange_segment": "NSE_FNO", "security_id": 7, "recv_ts": 100,
                       "reason": "stall", "last_ltt": 10, "last_volume": 1000, "resume_ltt": 20,
                       "resume_volume": 1500}]
    assert set(gaps.pending) == {("IDX_I", 13)}  # 99 resumed but had no history: no event
    events = gaps.observe(dec.decode([encode_ticker("IDX_I", 13, 2.0, 30)], 200))
    assert events[0]["last_volume"] is None and events[0]["resume_ltt"] == 30
    assert not gaps.pending and gaps.gaps == 2


@pytest.mark.unit
def test_an_instrument_resumed_without_history_is_no_longer_pending():
    dec = FeedDecoder()
    gaps = GapTracker()
    gaps.observe(dec.decode([encode_ticker("NSE_FNO", 2, 1.0, 1)], 1))
    gaps.mark([("NSE_FNO", 1), ("NSE_FNO", 2)], "reconnect")
    assert gaps.observe(dec.decode([encode_ticker("NSE_FNO", 1, 1.0, 2)], 2)) == []  # no history: no event
    assert gaps.observe(dec.decode([encode_ticker("NSE_FNO", 1, 1.0, 3)], 3)) == []  # used to raise KeyError
    assert set(gaps.pending) == {("NSE_FNO", 2)}
    assert [e["security_id"] for e in gaps.observe(dec.decode([encode_ticker("NSE_FNO", 2, 1.0, 4)], 4))] == [2]


@pytest.mark.unit
def test_oi_and_prev_close_packets_do_not_close_a_gap_the_next_trade_does():
    """After a break, OI and previous-close packets carry no ltt or volume: the gap event waits
    for the instrument's first traded packet and bridges to its values."""
    dec = FeedDecoder()
    gaps = GapTracker()
    gaps.observe(dec.decode([encode_quote("NSE_FNO", 7, dict(Q, volume=1000, ltt=10))], 1))
    gaps.mark([("NSE_FNO", 7)], "reconnect")
    assert gaps.observe(dec.decode([encode_prev_close("NSE_FNO", 7, 99.5, 4), encode_oi("NSE_FNO", 7, 6)],
                                   [2, 3])) == []
    assert set(gaps.pending) == {("NSE_FNO", 7)}
    resumed = [encode_oi("NSE_FNO", 7, 7), encode_quote("NSE_FNO", 7, dict(Q, volume=1200, ltt=30))]
    events = gaps.observe(dec.decode(resumed, [4, 5]))
    assert [(e["reason"], e["last_volume"], e["resume_ltt"], e["resume_volume"], e["recv_ts"]) for e in events] == \
           [("reconnect", 1000, 30, 1200, 5)]
    assert not gaps.pending


@pytest.mark.unit
def test_frames_queued_before_a_reconnect_mark_are_history_not_the_resume():
    """The publisher never batches across a reconnect mark: frames that arrived before the socket
    came back update the last values, and the gap bridges from them to the first fresh frame."""
    from dhan_trading.market_feed.connection import MAIN, Inbox
    from dhan_trading.market_feed.publisher import Publisher
    from dhan_trading.market_feed.sink import RedisSink
    inbox = Inbox()
    sink = RedisSink("redis://127.0.0.1:1/0", "test_feed")
    publisher = Publisher(inbox, sink, {}, None)
    for ts, volume, ltt in [(1, 1000, 10), (2, 1100, 11)]:
        inbox.items.append((ts, encode_quote("NSE_FNO", 7, dict(Q, volume=volume, ltt=ltt)), MAIN))
    inbox.mark([("NSE_FNO", 7)], "reconnect")
    inbox.items.append((4, encode_quote("NSE_FNO", 7, dict(Q, volume=1500, ltt=20)), MAIN))
    while inbox.items:
        publisher.step()
    events = [(c, orjson.loads(p)) for b in sink.outbox for c, p in zip(b.channels, b.payloads)]
    assert [e["volume"] for c, e in events if c == bus.CHANNEL_QUOTES] == [1000, 1100, 1500]
    gaps = [e for c, e in events if c == bus.CHANNEL_GAPS]
    assert [(g["last_volume"], g["resume_volume"], g["recv_ts"]) for g in gaps] == [(1100, 1500, 4)]


@pytest.mark.unit
def test_latest_fields_stay_right_when_the_instrument_cache_is_bounded():
    """The field cache is bounded (a universe change must not grow it for ever): emptied when
    full, it still maps every payload to its own field."""
    latest = resp.LatestFields(limit=2)
    payloads = [b'{"type":"ticker","exchange_segment":"NSE_FNO","security_id":%d,"recv_ts":1,"ltp":1.0}' % i
                for i in range(5)]
    for _ in range(2):
        assert [latest.field(p) for p in payloads] == [b"ticker:NSE_FNO:%d" % i for i in range(5)]
    assert len(latest._cache) <= 2


@pytest.mark.integration
def test_after_a_break_only_the_unapplied_part_of_a_batch_is_resent(redis_url, redis_client):
    import asyncio

    from dhan_trading.market_feed.sink import RedisSink
    channels = [bus.CHANNEL_TICKS, bus.CHANNEL_QUOTES] * 5
    payloads = [b'{"type":"x","exchange_segment":"IDX_I","security_id":%d,"recv_ts":1}' % i for i in range(10)]
    for channel, payload in zip(channels[:5], payloads[:5]):  # Redis applied a prefix, then the link broke
        redis_client.xadd(bus.CHANNEL_STREAM[channel], {"data": payload})

    async def resume() -> RedisSink:
        sink = RedisSink(redis_url, "test_feed")
        sink.submit(channels, payloads)
        sink.unconfirmed = 1
        task = asyncio.create_task(sink.run())
        await sink.close(5)
        await task
        return sink
    sink = asyncio.run(resume())
    got = [f[b"data"] for s in (bus.STREAM_TICKS, bus.STREAM_QUOTES) for _, f in redis_client.xrange(s)]
    assert sorted(got) == sorted(payloads)  # each exactly once
    assert sink.resent_skipped == 5 and sink.buffered == 0
