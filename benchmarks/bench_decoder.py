"""Main-feed decoding: our batch decoder against the official SDK's per-frame `process_data`.

Packet mix (one packet per frame, as Dhan sends them), ~130 instruments like the FNO feed:
  85% full (code 8)     120 NSE_FNO contracts: 100 index options (premiums 5-800) and 20 futures
                        (~24 000-52 000), tick 0.05
  10% ticker (code 2)   5 index spots (IDX_I), tick 0.05
   3% quote (code 4)    5 NSE_EQ stocks, tick 0.05 or 0.10
   2% oi / prev_close   split evenly over the F&O contracts and the index spots
Prices walk on each instrument's tick grid; the depth ladders sit one tick apart around the LTP;
cumulative volume and LTT only ever grow. Both sides decode the very same frames.

Measured (frames/s, best of several repeats, time.perf_counter):
  * SDK: `MarketFeed.process_data(frame)`, one call per frame, as its receive loop calls it;
  * ours: `FeedDecoder.decode(batch, recv_ts)` over batches of 100 and 500 frames (the feed
    drains its receive queue in batches), then the same plus `.render()`, which gives the JSON
    payloads ready for Redis; its baseline is the SDK's dicts serialised with orjson, the
    cheapest way to put them on Redis.
"""
from __future__ import annotations

import random
import time
from typing import Callable

import orjson

from benchmarks.common import Result
from dhan_trading.protocol import (FeedDecoder, encode_full, encode_oi, encode_prev_close, encode_quote,
                                   encode_ticker)

SDK_NAME = "dhanhq 2.3.0 process_data"
START_LTT = 1_780_000_000


class _Instrument:
    """A random walk on the tick grid, kept in integer ticks so every price is exact."""

    def __init__(self, segment: str, security_id: int, price: float, tick: float, rng: random.Random):
        self.segment, self.security_id, self.tick, self.rng = segment, security_id, tick, rng
        self.ticks = max(1, round(price / tick))
        self.open_ticks = self.high_ticks = self.low_ticks = self.ticks
        self.volume, self.oi, self.ltt = 0, rng.randrange(10_000, 5_000_000), START_LTT

    def price(self, ticks: int) -> float:
        return round(ticks * self.tick, 2)

    def step(self) -> None:
        self.ticks = max(1, self.ticks + self.rng.choice((-2, -1, -1, 0, 1, 1, 2)))
        self.high_ticks, self.low_ticks = max(self.high_ticks, self.ticks), min(self.low_ticks, self.ticks)
        self.volume += self.rng.randrange(1, 20) * 25
        self.oi += self.rng.randrange(-500, 501)
        self.ltt += self.rng.random() < 0.3

    def quote(self) -> dict:
        return {"ltp": self.price(self.ticks), "ltq": self.rng.randrange(25, 2000, 25), "ltt": self.ltt,
                "atp": round(self.price(self.ticks) * 0.999, 2), "volume": self.volume,
                "total_buy_qty": self.rng.randrange(10**4, 10**6), "total_sell_qty": self.rng.randrange(10**4, 10**6),
                "open": self.price(self.open_ticks), "high": self.price(self.high_ticks),
                "low": self.price(self.low_ticks), "close": self.price(self.open_ticks - 3),
                "oi": max(self.oi, 0), "oi_day_high": max(self.oi, 0) + 1000, "oi_day_low": max(self.oi - 1000, 0)}

    def ladders(self) -> tuple[list, list]:
        bids = [[self.price(max(self.ticks - 1 - i, 1)), self.rng.randrange(25, 5000), self.rng.randrange(1, 40)]
                for i in range(5)]
        asks = [[self.price(self.ticks + 1 + i), self.rng.randrange(25, 5000), self.rng.randrange(1, 40)]
                for i in range(5)]
        return bids, asks


def make_frames(count: int, seed: int = 7) -> tuple[list[bytes], dict[tuple[str, int], float]]:
    """`count` frames of the documented mix, and the tick table the feed would hold."""
    rng = random.Random(seed)
    options = [_Instrument("NSE_FNO", 40_000 + i, rng.uniform(5, 800), 0.05, rng) for i in range(100)]
    futures = [_Instrument("NSE_FNO", 50_000 + i, rng.uniform(24_000, 52_000), 0.05, rng) for i in range(20)]
    spots = [_Instrument("IDX_I", sid, p, 0.05, rng)
             for sid, p in ((13, 24_350), (25, 51_200), (27, 23_100), (442, 12_400), (51, 80_100))]
    stocks = [_Instrument("NSE_EQ", sid, p, t, rng)
              for sid, p, t in ((1333, 1642, 0.05), (2885, 2450, 0.1), (11536, 3900, 0.1), (1594, 1480, 0.05),
                                (3045, 810, 0.05))]
    fno = options + futures
    frames = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.85:
            inst = rng.choice(fno)
            inst.step()
            frames.append(encode_full(inst.segment, inst.security_id, inst.quote(), *inst.ladders()))
        elif roll < 0.95:
            inst = rng.choice(spots)
            inst.step()
            frames.append(encode_ticker(inst.segment, inst.security_id, inst.price(inst.ticks), inst.ltt))
        elif roll < 0.98:
            inst = rng.choice(stocks)
            inst.step()
            frames.append(encode_quote(inst.segment, inst.security_id, inst.quote()))
        elif roll < 0.99:
            inst = rng.choice(fno)
            frames.append(encode_oi(inst.segment, inst.security_id, max(inst.oi, 0)))
        else:
            inst = rng.choice(spots + fno)
            frames.append(encode_prev_close(inst.segment, inst.security_id, inst.price(inst.open_ticks - 3), 0))
    ticks = {(i.segment, i.security_id): i.tick for i in fno + spots + stocks}
    return frames, ticks


def _sdk_decoder():
    """The SDK's decoder without its constructor (which wants credentials and makes an event loop)."""
    from dhanhq.marketfeed import MarketFeed
    feed = MarketFeed.__new__(MarketFeed)
    feed.on_close = None
    return feed


def _best(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def run(quick: bool) -> list[Result]:
    count, repeats = (20_000, 3) if quick else (100_000, 5)
    frames, ticks = make_frames(count)
    decoder = FeedDecoder(ticks)
    sdk = _sdk_decoder()
    stamps = list(range(len(frames)))

    def sdk_decode():
        for frame in frames:
            sdk.process_data(frame)

    def sdk_json():
        dumps = orjson.dumps
        for frame in frames:
            dumps(sdk.process_data(frame))

    def ours(batch: int, render: bool) -> Callable[[], None]:
        def go():
            for i in range(0, len(frames), batch):
                decoded = decoder.decode(frames[i:i + batch], stamps[i:i + batch])
                if render:
                    decoded.render()
        return go

    sdk_fps = count / _best(sdk_decode, repeats)
    sdk_json_fps = count / _best(sdk_json, repeats)
    note = f"{count:,} frames: 85% full, 10% ticker, 3% quote, 2% oi/prev_close; ~130 instruments"
    results = []
    for batch in (100, 500):
        results.append(Result(f"decoder: decode, batch {batch}", count / _best(ours(batch, False), repeats),
                              sdk_fps, "frames/s", SDK_NAME, note=note))
    for batch in (100, 500):
        results.append(Result(f"decoder: decode+render JSON, batch {batch}",
                              count / _best(ours(batch, True), repeats), sdk_json_fps, "frames/s",
                              SDK_NAME + " + orjson.dumps",
                              note="JSON payloads ready for Redis (a full packet gives two: full + depth)"))
    return results
