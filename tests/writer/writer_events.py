"""Realistic events (DESIGN §3.3) and helpers to put them on the streams and count them."""
from __future__ import annotations

import random
import time

import orjson

from dhan_trading import bus

SEGMENTS = ("NSE_FNO", "IDX_I", "MCX_COMM")


def make_event(kind: str, rng: random.Random, security_id: int | None = None) -> dict:
    """One event of `kind` with plausible values (prices on a 0.05 tick)."""
    price = round(rng.randint(2000, 4_000_000) * 0.05, 2)
    event = {"type": kind, "exchange_segment": rng.choice(SEGMENTS),
             "security_id": security_id if security_id is not None else rng.randint(1, 60000),
             "recv_ts": time.time_ns()}
    if kind in ("ticker", "quote", "full"):
        event.update(ltp=price, ltt=int(time.time()) + 19800)
    if kind in ("quote", "full"):
        event.update(ltq=rng.randint(1, 500), atp=round(price - 0.35, 2), volume=rng.randint(0, 10**8),
                     total_buy_qty=rng.randint(0, 10**6), total_sell_qty=rng.randint(0, 10**6),
                     open=round(price - 10, 2), high=round(price + 20.05, 2), low=round(price - 30, 2),
                     close=round(price - 5.5, 2))
    if kind == "full":
        event.update(oi=rng.randint(0, 10**7), oi_day_high=rng.randint(0, 10**7), oi_day_low=0)
    if kind == "oi":
        event.update(oi=rng.randint(0, 10**7))
    if kind == "prev_close":
        event.update(prev_close=price, prev_oi=rng.randint(0, 10**7))
    if kind == "depth":
        levels = rng.choice((5, 20))
        event.update(levels=levels,
                     bids=[[round(price - 0.05 * i, 2), rng.randint(1, 9999), rng.randint(1, 50)] for i in range(levels)],
                     asks=[[round(price + 0.05 * (i + 1), 2), rng.randint(1, 9999), rng.randint(1, 50)] for i in range(levels)])
    return event


KINDS = ("ticker", "ticker", "quote", "full", "full", "depth", "oi", "prev_close", "market_status")


def publish(client, events: list[dict]) -> list[tuple[str, bytes]]:
    """XADD events to their streams (pipelined); returns (stream, entry id) of each."""
    pipe = client.pipeline(transaction=False)
    streams = []
    for event in events:
        stream = bus.EVENT_STREAM[event["type"]]
        streams.append(stream)
        pipe.xadd(stream, {bus.STREAM_FIELD: orjson.dumps(event)})
    return list(zip(streams, pipe.execute()))


def publish_raw(client, stream: str, data: bytes) -> bytes:
    return client.xadd(stream, {bus.STREAM_FIELD: data})


def random_events(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [make_event(rng.choice(KINDS), rng) for _ in range(n)]
