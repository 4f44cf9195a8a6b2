"""The simulator speaks Dhan v2 on the wire (dhan-protocol.md §1, §2, §4, §11), seen by a raw client."""
from __future__ import annotations

import asyncio
import struct
import time

import orjson
import pytest

from dhan_trading.protocol.packets import DEPTH_HEADER, DEPTH_LEVEL, HEADER, SIZES
from dhan_trading.protocol.requests import (depth_subscribe_messages, disconnect_message, subscribe_messages,
                                            unsubscribe_messages)

from .sim_client import collect, connect, main_url, pick, run, twenty_url

pytestmark = pytest.mark.integration


def _future():
    return pick("FUTIDX", lambda i: i.underlying == "NIFTY")


def _option():
    return pick("OPTIDX", lambda i: i.underlying == "NIFTY" and i.strike == 26000 and i.option_type == "CE")


def _disconnect_reason(frame: bytes) -> int:
    assert frame[0] == 50 and len(frame) == 10 and HEADER.unpack_from(frame)[1] == 10
    return struct.unpack_from("<H", frame, 8)[0]


async def _subscribe_and_collect(url, instruments, mode, seconds=1.5, count=None):
    async with connect(url) as ws:
        for message in subscribe_messages(instruments, mode):
            await ws.send(message)
        return await collect(ws, seconds, count)


@pytest.mark.parametrize("mode, data_codes", [("ticker", {2}), ("quote", {4, 5}), ("full", {8})])
def test_each_mode_sends_its_packets_one_per_frame_after_prev_close(sim, mode, data_codes):
    fut = _future()
    got = run(_subscribe_and_collect(main_url(sim.url), [(fut.exchange_segment, fut.security_id)], mode, count=12))
    assert got.codes[0] == 7, "market status once on connect"
    assert got.codes[1] == 6, "prev close first after the subscribe"
    assert got.codes.count(6) == 1 and got.codes.count(7) == 1
    assert set(got.codes[2:]) <= data_codes and data_codes & set(got.codes[2:]) == data_codes
    for frame in got.frames:
        code, length, seg, sid = HEADER.unpack_from(frame)
        assert len(frame) == length == SIZES[code], "exactly one packet per frame, length = total size"
        if code != 7:
            assert (seg, sid) == (2, fut.security_id)


def test_index_spot_gets_quote_packets_without_depth_or_oi(sim):
    got = run(_subscribe_and_collect(main_url(sim.url), [("IDX_I", 13)], "full", count=4, seconds=3))
    assert got.codes[:3] == [7, 6, 4]
    assert set(got.codes[1:]) <= {4, 6}


def test_quote_mode_sends_oi_packets_for_derivatives_only(sim):
    fut = _future()
    got = run(_subscribe_and_collect(main_url(sim.url), [(fut.exchange_segment, fut.security_id),
                                                         ("NSE_EQ", pick("EQUITY").security_id)], "quote",
                                     seconds=1.5))
    oi_ids = {HEADER.unpack_from(f)[3] for f in got.of(5)}
    assert oi_ids == {fut.security_id}


def test_unsubscribe_stops_the_data(sim):
    fut = _future()
    key = [(fut.exchange_segment, fut.security_id)]

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await ws.send(subscribe_messages(key, "ticker")[0])
            before = await collect(ws, 2, count=5)
            await ws.send(unsubscribe_messages(key, "ticker")[0])
            await collect(ws, 0.3)  # frames already in flight
            after = await collect(ws, 1.0)
            return before, after
    before, after = run(scenario())
    assert len(before.of(2)) >= 2
    assert after.frames == []


def test_more_than_100_in_one_message_is_refused_with_804(sim):
    message = orjson.dumps({"RequestCode": 15, "InstrumentCount": 101, "InstrumentList": [
        {"ExchangeSegment": "NSE_FNO", "SecurityId": str(50000 + i)} for i in range(101)]}).decode()

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await ws.send(message)
            return await collect(ws, 3)
    got = run(scenario())
    assert _disconnect_reason(got.frames[-1]) == 804
    assert got.closed


def test_5000_per_connection_then_804(sim):
    ids = [("NSE_FNO", 1_000_000 + i) for i in range(5001)]

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            for message in subscribe_messages(ids[:5000], "ticker"):
                await ws.send(message)
            await ws.send(subscribe_messages(ids[5000:], "ticker")[0])
            return await collect(ws, 10)
    got = run(scenario())
    assert got.closed
    assert _disconnect_reason(got.of(50)[0]) == 804
    assert len(got.of(6)) == 5000, "each of the first 5000 got its prev close; the 5001st was refused"


def test_sixth_connection_kicks_the_oldest_with_805(sim):
    async def scenario():
        sockets = [await connect(main_url(sim.url, token="POOL")) for _ in range(5)]
        other = await connect(main_url(sim.url, token="OTHER"))  # another token has its own budget
        for ws in sockets:
            await collect(ws, 0.2, count=1)  # market status
        sixth = await connect(main_url(sim.url, token="POOL"))
        oldest = await collect(sockets[0], 3)
        second = await collect(sockets[1], 0.3)
        other_got = await collect(other, 0.3)
        for ws in sockets[1:] + [other, sixth]:
            await ws.close()
        return oldest, second, other_got
    oldest, second, other_got = run(scenario())
    assert _disconnect_reason(oldest.frames[-1]) == 805 and oldest.closed
    assert not second.closed and not other_got.closed
    assert sim.stats["kicked"] == {805: 1}


@pytest.mark.parametrize("query, reason", [
    ("version=2&clientId=1000000001&authType=2", 808),
    ("version=2&token=T&authType=2", 808),
    ("version=2&token=EXPIRED&clientId=1&authType=2", 807),
    ("version=2&token=NOPLAN&clientId=1&authType=2", 806),
    ("version=2&token=INVALID&clientId=1&authType=2", 809),
])
def test_bad_credentials_get_a_disconnect_packet_then_close(sim, query, reason):
    async def scenario():
        async with connect(f"{sim.url}/?{query}") as ws:
            return await collect(ws, 3)
    got = run(scenario())
    assert [_disconnect_reason(f) for f in got.frames] == [reason]
    assert got.closed


@pytest.mark.parametrize("message", ["not json", '{"RequestCode": 99}', '{"RequestCode": 15, "InstrumentCount": 2, '
                                     '"InstrumentList": [{"ExchangeSegment": "NSE_FNO", "SecurityId": "1"}]}'])
def test_invalid_requests_get_814(sim, message):
    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await ws.send(message)
            return await collect(ws, 3)
    got = run(scenario())
    assert _disconnect_reason(got.frames[-1]) == 814 and got.closed


def test_binary_client_frames_are_tolerated_and_12_disconnects(sim):
    fut = _future()
    sdk_goodbye = struct.pack("<BH30s50s", 12, 83, b"1000000001", b"")  # what the SDK sends on close

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await ws.send(sdk_goodbye)
            await ws.send(subscribe_messages([(fut.exchange_segment, fut.security_id)], "ticker")[0])
            alive = await collect(ws, 2, count=3)
            await ws.send(disconnect_message())
            rest = await collect(ws, 3)
            return alive, rest
    alive, rest = run(scenario())
    assert alive.codes[:2] == [7, 6] and not alive.closed
    assert rest.closed and 50 not in rest.codes, "a client's own disconnect is a plain close"


def test_twenty_depth_stacks_bid_then_ask_best_first_never_crossed(sim):
    fut, opt = _future(), _option()
    keys = [(fut.exchange_segment, fut.security_id), (opt.exchange_segment, opt.security_id)]

    async def scenario():
        async with connect(twenty_url(sim.url)) as ws:
            await ws.send(depth_subscribe_messages(keys)[0])
            return await collect(ws, 3, count=10)
    got = run(scenario())
    assert len(got.frames) == 10
    seen = set()
    for frame in got.frames:
        assert len(frame) == 2 * 332
        bid_head, ask_head = DEPTH_HEADER.unpack_from(frame), DEPTH_HEADER.unpack_from(frame, 332)
        assert bid_head[:2] == (332, 41) and ask_head[:2] == (332, 51)
        assert bid_head[2:4] == ask_head[2:4] and bid_head[2] == 2
        seen.add(bid_head[3])
        bids = list(DEPTH_LEVEL.iter_unpack(frame[12:332]))
        asks = list(DEPTH_LEVEL.iter_unpack(frame[344:664]))
        assert len(bids) == len(asks) == 20
        live_bids = [p for p, q, o in bids if q]
        assert live_bids == sorted(live_bids, reverse=True) and len(set(live_bids)) == len(live_bids)
        assert [p for p, _, _ in asks] == sorted(p for p, _, _ in asks)
        assert live_bids[0] < asks[0][0], "never crossed"
    assert seen == {fut.security_id, opt.security_id}


def test_depth_feed_refuses_main_feed_codes_with_a_14_byte_disconnect(sim):
    async def scenario():
        async with connect(twenty_url(sim.url)) as ws:
            await ws.send(subscribe_messages([("NSE_FNO", 1)], "ticker")[0])
            return await collect(ws, 3)
    got = run(scenario())
    frame = got.frames[-1]
    assert len(frame) == 14 and frame[2] == 50
    assert struct.unpack_from("<I", frame, 8)[0] == 814 == struct.unpack_from("<h", frame, 12)[0]


def test_kick_all_sends_the_reason_then_closes(sim):
    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await collect(ws, 1, count=1)
            await asyncio.to_thread(sim.kick_all, 807)
            return await collect(ws, 3)
    got = run(scenario())
    assert [_disconnect_reason(f) for f in got.frames] == [807] and got.closed


def test_drop_all_cuts_the_socket_without_a_close_frame(sim):
    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await collect(ws, 1, count=1)
            await asyncio.to_thread(sim.drop_all)
            return await collect(ws, 3)
    got = run(scenario())
    assert got.closed and got.close_code is None and got.frames == []


def test_pause_keeps_the_connection_but_sends_nothing(sim):
    fut = _future()

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await ws.send(subscribe_messages([(fut.exchange_segment, fut.security_id)], "ticker")[0])
            await collect(ws, 2, count=4)
            sim.pause(True)
            await collect(ws, 0.3)
            async with connect(main_url(sim.url)) as late:  # even a new subscriber hears nothing
                await late.send(subscribe_messages([(fut.exchange_segment, fut.security_id)], "quote")[0])
                silent = await collect(ws, 1.0)
                late_got = await collect(late, 0.1)
            pong = await asyncio.wait_for(await ws.ping(), 2)  # still alive
            sim.pause(False)
            resumed = await collect(ws, 3, count=2)
            return silent, late_got, pong, resumed
    silent, late_got, pong, resumed = run(scenario())
    assert silent.frames == [] and not silent.closed and late_got.frames == []
    assert pong is not None and len(resumed.frames) == 2


def test_server_pings_and_drops_a_silent_client(make_sim):
    sim = make_sim(ping_interval=0.2, ping_timeout=0.3)

    async def scenario():
        async with connect(main_url(sim.url), ping_interval=None) as ws:
            await collect(ws, 1, count=1)
            ws.transport.pause_reading()  # a client that never answers pings
            await asyncio.sleep(1.5)
            ws.transport.resume_reading()
            return await collect(ws, 2)
    got = run(scenario())
    assert got.closed
    deadline = time.monotonic() + 3
    while sim.stats["connections"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.stats["connections"] == 0


def test_stats_count_frames_connections_and_subscriptions(sim):
    fut, opt = _future(), _option()

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            await ws.send(subscribe_messages([(fut.exchange_segment, fut.security_id),
                                              (opt.exchange_segment, opt.security_id)], "full")[0])
            got = await collect(ws, 2, count=6)
            return got, await asyncio.to_thread(lambda: sim.stats)
    got, stats = run(scenario())
    assert stats["connections"] == 1 and stats["subscriptions"] == 2 and stats["instruments"] == 2
    (per_conn,) = stats["frames_per_connection"].values()
    assert per_conn >= len(got.frames) and stats["frames_sent"] >= per_conn
