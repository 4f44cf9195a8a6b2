"""Stream-level promises: determinism with a seed, the total rate cap, and the sent log."""
from __future__ import annotations

import time

import pytest

from dhan_trading.capture import DEPTH, MAIN, read_capture
from dhan_trading.protocol.requests import depth_subscribe_messages, subscribe_messages
from dhan_trading.simulator.server import running_simulator

from .sim_client import collect, connect, main_url, run, sample_instruments, twenty_url

pytestmark = pytest.mark.integration

_LTT_OFFSET = {2: 12, 4: 14, 8: 14}  # where each packet carries its wall-clock LTT


def _without_ltt(frame: bytes) -> bytes:
    off = _LTT_OFFSET.get(frame[0])
    return frame if off is None else frame[:off] + b"\0\0\0\0" + frame[off + 4:]


def _keys(n: int, instrument: str = "OPTIDX"):
    return [(i.exchange_segment, i.security_id) for i in sample_instruments() if i.instrument == instrument][:n]


def _stream(seed: int, count: int = 40) -> list[bytes]:
    keys = _keys(6, "FUTIDX") + [("NSE_FNO", 424242), ("IDX_I", 13)]

    async def scenario(url):
        async with connect(main_url(url)) as ws:
            await ws.send(subscribe_messages(keys, "full")[0])
            return await collect(ws, 15, count=count)
    with running_simulator(seed=seed, rate=2000) as sim:
        got = run(scenario(sim.url))
    assert len(got.frames) == count
    return [_without_ltt(f) for f in got.frames]


def test_same_seed_and_subscriptions_give_the_same_packets():
    first, second, other = _stream(9), _stream(9), _stream(10)
    assert first == second
    assert first != other


def test_total_rate_cap_is_respected(make_sim):
    sim = make_sim(rate=300, seed=1)
    keys = _keys(400)  # the sample's options and more: demand far above the cap

    async def scenario():
        async with connect(main_url(sim.url)) as ws:
            for message in subscribe_messages(keys, "ticker"):
                await ws.send(message)
            await collect(ws, 1.0)  # snapshots (outside the cap) and the first second
            start = time.monotonic()
            got = await collect(ws, 2.0)
            return len(got.frames) / (time.monotonic() - start)
    rate = run(scenario())
    assert 150 < rate < 420, rate


def test_sent_log_holds_exactly_what_the_clients_received(make_sim, tmp_path):
    log_path = tmp_path / "sent.dcap"
    with running_simulator(seed=2, rate=2000, sent_log=log_path) as sim:
        async def scenario():
            async with connect(main_url(sim.url)) as ws, connect(twenty_url(sim.url)) as depth:
                await ws.send(subscribe_messages(_keys(5, "FUTSTK"), "full")[0])
                await depth.send(depth_subscribe_messages(_keys(2, "FUTSTK"))[0])
                main_got = await collect(ws, 1.0)
                depth_got = await collect(depth, 0.2)
                sim.pause(True)
                await collect(ws, 0.3, out=main_got)
                await collect(depth, 0.3, out=depth_got)
                return main_got, depth_got
        main_got, depth_got = run(scenario())
        time.sleep(0.2)
    records = list(read_capture(log_path))
    assert [f for _, k, f in records if k == MAIN] == main_got.frames
    assert [f for _, k, f in records if k == DEPTH] == depth_got.frames
    stamps = [ts for ts, _, _ in records]
    assert stamps == sorted(stamps) and abs(stamps[-1] / 1e9 - time.time()) < 30
