"""Helpers of the writer tests (not fixtures): publishing, counting stored rows, writer processes."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from dhan_trading import bus
from dhan_trading.schema import stream_id_to_event_id
from dhan_trading.subscribers.db_writer import DbWriter, WriterConfig
from dhan_trading.subscribers.store import EventStore

REPO = Path(__file__).resolve().parents[2]
TABLES = ("dhan_ticks", "dhan_quotes", "dhan_depth")
STREAM_TABLE = {bus.STREAM_TICKS: "dhan_ticks", bus.STREAM_QUOTES: "dhan_quotes",
                bus.STREAM_DEPTH: "dhan_depth"}


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Stored:
    """Reads back what the writer stored, through its own engine."""

    def __init__(self, url: str):
        self.engine = create_engine(url)

    def event_ids(self) -> dict[str, list[int]]:
        try:
            with self.engine.connect() as conn:
                return {t: [r[0] for r in conn.execute(text(f"SELECT event_id FROM {t}"))] for t in TABLES}
        except Exception:  # noqa: BLE001 - tables not created yet
            return {t: [] for t in TABLES}

    def total(self) -> int:
        return sum(len(v) for v in self.event_ids().values())

    def close(self) -> None:
        self.engine.dispose()


def expected_ids(published: list[tuple[str, bytes]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {t: [] for t in TABLES}
    for stream, entry_id in published:
        out[STREAM_TABLE[stream]].append(stream_id_to_event_id(entry_id))
    return out


def assert_exactly_once(stored: Stored, published: list[tuple[str, bytes]]) -> None:
    got = stored.event_ids()
    want = expected_ids(published)
    for table in TABLES:
        assert len(got[table]) == len(set(got[table])), f"{table} has duplicate rows"
        assert sorted(got[table]) == sorted(want[table]), (
            f"{table}: {len(set(want[table]) - set(got[table]))} missing, "
            f"{len(set(got[table]) - set(want[table]))} unexpected")


def group_pending(client) -> int:
    total = 0
    for stream in bus.STREAMS:
        try:
            total += client.xpending(stream, bus.WRITER_GROUP)["pending"]
        except Exception:  # noqa: BLE001 - group not created yet
            return -1
    return total


class WriterProcesses:
    """Writer subprocesses of one test; every one is killed at the end."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"writer-{len(self.procs)}.err", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "dhan_trading.subscribers.fno_db_writer", *args],
                                env=self.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)


class Publisher(threading.Thread):
    """Publishes events at about `rate` per second until stopped; remembers every entry id."""

    def __init__(self, client, rate: int, seed: int = 7):
        super().__init__(daemon=True)
        from writer_events import random_events
        self.client, self.rate = client, rate
        self.events = random_events(rate // 50, seed=seed)
        self.published: list[tuple[str, bytes]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        from writer_events import publish
        while not self.halt.wait(0.02):
            self.published.extend(publish(self.client, self.events))

    def stop(self) -> list[tuple[str, bytes]]:
        self.halt.set()
        self.join(10)
        return self.published


@contextmanager
def running_writer(engine, redis_url, consumer="w1", store=None, socket_timeout=5.0, on_commit=None,
                   **config):
    """A DbWriter running in a thread of this process (flush every 50 ms unless said; `store`:
    an EventStore of the test's own; `on_commit`: DbWriter's); its `stop_event` and `thread`
    let a test stop it early. Stopped and joined on leaving."""
    import redis
    config.setdefault("flush_ms", 50)
    writer = DbWriter(lambda: redis.Redis.from_url(redis_url, socket_timeout=socket_timeout),
                      store or EventStore(engine), WriterConfig(consumer=consumer, **config), on_commit)
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    writer.stop_event, writer.thread = stop, thread
    try:
        yield writer
    finally:
        stop.set()
        thread.join(20)
        assert not thread.is_alive(), "writer did not stop"


def drained(client):
    """Nothing pending and every entry delivered (works on Redis 6.2, which has no group "lag")."""
    def done():
        if group_pending(client):
            return False
        for s in bus.STREAMS:
            last = client.xinfo_stream(s)["last-generated-id"]
            if any(g["last-delivered-id"] != last for g in client.xinfo_groups(s)):
                return False
        return True
    return done
