"""Replay: a capture is served back, frame for frame, with its recorded timing divided by --speed."""
from __future__ import annotations

import time

import pytest

from dhan_trading.capture import DEPTH, MAIN, CaptureWriter
from dhan_trading.protocol.packets import (DEPTH_ASK, DEPTH_BID, encode_depth_side, encode_disconnect,
                                           encode_market_status, encode_ticker)
from dhan_trading.protocol.requests import depth_subscribe_messages, subscribe_messages
from dhan_trading.scheduler.calendar import ist_today
from dhan_trading.simulator.replay import ReplaySource, parse_speed, summarize
from dhan_trading.simulator.server import running_simulator

from .sim_client import collect, connect, main_url, run, twenty_url

pytestmark = pytest.mark.integration

A, B = ("NSE_FNO", 111), ("NSE_FNO", 222)
T0 = 1_795_000_000_000_000_000


def _capture(tmp_path, gap_s: float = 0.1):
    """A capture of 20 main-feed frames (A and B alternating, one disconnect) and 3 depth frames."""
    writer = CaptureWriter(tmp_path)
    main = [encode_market_status()] + [encode_ticker(*(A if i % 2 else B), 100 + i * 0.05, 1000 + i)
                                       for i in range(18)] + [encode_disconnect(805)]
    writer.write([(T0 + int(i * gap_s * 1e9), f) for i, f in enumerate(main)], MAIN)
    levels = [[100.0 - i * 0.05, 10, 1] for i in range(20)]
    depth = [encode_depth_side(DEPTH_BID, *A, levels) + encode_depth_side(DEPTH_ASK, *A, levels[::-1])
             for _ in range(3)]
    writer.write([(T0 + int(i * gap_s * 1e9), f) for i, f in enumerate(depth)], DEPTH)
    path = writer.path_for(ist_today())
    writer.close()
    return path, main, depth


def test_replay_round_trip_in_order_with_recorded_timing(tmp_path):
    path, main, depth = _capture(tmp_path, gap_s=0.1)
    source = ReplaySource(path, speed=2.0, settle=0.1)
    with running_simulator(source=source) as sim:
        async def scenario():
            async with connect(main_url(sim.url)) as ws, connect(twenty_url(sim.url)) as dws:
                await ws.send(subscribe_messages([A, B], "quote")[0])
                await dws.send(depth_subscribe_messages([A])[0])
                start = time.monotonic()
                got = await collect(ws, 5, count=19)
                elapsed = time.monotonic() - start
                return got, elapsed, await collect(dws, 3, count=3)
        got, elapsed, depth_got = run(scenario())
    assert got.frames == main[:-1], "every recorded frame but the recorded disconnect, in order"
    assert depth_got.frames == depth
    assert 0.8 < elapsed < 2.5, "18 gaps of 0.1 s at speed 2 take about 0.9 s (+ settle)"


def test_replay_sends_each_client_only_its_instruments_at_max_speed(tmp_path):
    path, main, _ = _capture(tmp_path)
    with running_simulator(source=ReplaySource(path, speed=0, settle=0.1)) as sim:
        async def scenario():
            async with connect(main_url(sim.url)) as first, connect(main_url(sim.url)) as second:
                await first.send(subscribe_messages([A], "ticker")[0])
                await second.send(subscribe_messages([B], "full")[0])
                return await collect(first, 3, count=10), await collect(second, 3, count=10)
        first, second = run(scenario())
    assert first.frames == [f for f in main[:-1] if f[0] == 7 or f[4:8] == (111).to_bytes(4, "little")]
    assert second.frames == [f for f in main[:-1] if f[0] == 7 or f[4:8] == (222).to_bytes(4, "little")]


def test_replay_of_a_simulator_sent_log(tmp_path):
    """The pipeline's round trip: record what the simulator sent, then serve that recording."""
    log_path = tmp_path / "sent.dcap"
    keys = [("NSE_FNO", 5001), ("IDX_I", 13)]

    async def live(url):
        async with connect(main_url(url)) as ws:
            await ws.send(subscribe_messages(keys, "full")[0])
            return await collect(ws, 3, count=8)
    with running_simulator(seed=1, sent_log=log_path) as sim:
        recorded = run(live(sim.url))
        sim.pause(True)
    with running_simulator(source=ReplaySource(log_path, speed=0, settle=0.1)) as sim:
        replayed = run(live(sim.url))
    assert replayed.frames == recorded.frames


def test_summary_and_speed_parsing(tmp_path):
    path, _, _ = _capture(tmp_path, gap_s=0.5)
    assert summarize(path) == {"main": 20, "depth": 3, "seconds": pytest.approx(9.5)}
    assert parse_speed("max") == parse_speed("0") == 0.0 and parse_speed("2.5") == 2.5
    with pytest.raises(ValueError):
        parse_speed("-1")
    bad = tmp_path / "bad.dcap"
    bad.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not a Dhan capture"):
        ReplaySource(bad)
