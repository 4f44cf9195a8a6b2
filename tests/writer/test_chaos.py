"""The writer process killed, its database cut off, and shared by two processes: nothing lost,
nothing stored twice."""
from __future__ import annotations

import os
import random
import socket
import sqlite3
import threading
import time

import pytest

from dhan_trading import bus
from writer_harness import (REPO, Publisher, Stored, WriterProcesses, assert_exactly_once, group_pending,
                      wait_until)
from writer_events import publish, publish_raw, random_events

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]


def all_stored(client, stored, published):
    want = len(published)
    return lambda: group_pending(client) == 0 and stored.total() == want


def test_writer_killed_repeatedly_while_events_flow(writers, redis_client, stored):
    """SIGKILL at random moments (during start-up, reads, inserts, commits, acks), five times."""
    rng = random.Random(5)
    publisher = Publisher(redis_client, rate=3000)
    publisher.start()
    left_pending = 0
    for i in range(5):
        proc = writers.start("--consumer", f"k{i}", "--flush-ms", "200", "--batch", "500",
                             "--claim-idle-ms", "500")
        if i % 2:  # mid-work (a loaded machine may take seconds to start a writer)...
            wait_until(lambda: bus.read_health(redis_client, f"db_writer:k{i}"), 30,
                       what="the writer to run")
            time.sleep(rng.uniform(0.1, 1.0))
        else:  # ...or anywhere from start-up on
            time.sleep(rng.uniform(1.0, 2.5))
        proc.kill()
        proc.wait(10)
        left_pending += group_pending(redis_client) > 0
    published = publisher.stop()
    assert left_pending, "no kill left read-but-unacknowledged entries: the test proves nothing"
    final = writers.start("--flush-ms", "50", "--claim-idle-ms", "500")
    wait_until(all_stored(redis_client, stored, published), 40, interval=0.3,
               what=f"{len(published)} events to be stored")
    final.terminate()
    assert final.wait(10) == 0
    assert_exactly_once(stored, published)


def test_two_writers_share_one_group(writers, redis_client, stored):
    a = writers.start("--consumer", "writer-a", "--flush-ms", "50", "--batch", "300")
    b = writers.start("--consumer", "writer-b", "--flush-ms", "50", "--batch", "300")
    wait_until(lambda: bus.read_health(redis_client, "db_writer:writer-a")
               and bus.read_health(redis_client, "db_writer:writer-b"), 20, what="both writers up")
    publisher = Publisher(redis_client, rate=4000)
    publisher.start()
    time.sleep(3)
    published = publisher.stop()
    wait_until(all_stored(redis_client, stored, published), 30, interval=0.2, what="all events")
    time.sleep(1.2)  # one more health record each
    shares = {n: bus.read_health(redis_client, f"db_writer:{n}")["rows_total"] for n in ("writer-a", "writer-b")}
    for proc in (a, b):
        proc.terminate()
    assert a.wait(10) == 0 and b.wait(10) == 0
    assert all(share > 0 for share in shares.values()), f"one writer did all the work: {shares}"
    assert sum(shares.values()) == len(published)
    assert_exactly_once(stored, published)


class CuttableProxy:
    """A TCP proxy to MariaDB that the test can cut (every connection dropped and new ones
    refused) and restore, as if the database server became unreachable."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            live = list(self.sockets)
        for s in live:
            self._close(s)

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def _outage_test(writers, redis_client, stored, cut, restore):
    proc = writers.start("--flush-ms", "50", "--batch", "500", "--max-buffer", "1000")
    first = publish(redis_client, random_events(2000))
    wait_until(all_stored(redis_client, stored, first), 30, what="events before the outage")
    cut()
    second = publish(redis_client, random_events(5000, seed=3))
    def reported_down():
        health = bus.read_health(redis_client, "db_writer")
        return health and health["state"] == "db_down" and health["pending"] > 0

    wait_until(reported_down, 20, what="the writer to report the database down")
    time.sleep(2)
    health = bus.read_health(redis_client, "db_writer")
    assert health["errors"] > 0 and health["state"] == "db_down"
    assert health["buffered"] <= 1000, "the buffer grew past --max-buffer"
    undelivered = any(g["last-delivered-id"] != redis_client.xinfo_stream(s)["last-generated-id"]
                      for s in bus.STREAMS for g in redis_client.xinfo_groups(s))
    assert health["pending"] <= 1000 and undelivered, "it kept reading while the DB was down"
    assert stored.total() == len(first)
    restore()
    third = publish(redis_client, random_events(1000, seed=4))
    published = first + second + third
    wait_until(all_stored(redis_client, stored, published), 40, interval=0.2, what="recovery")
    wait_until(lambda: bus.read_health(redis_client, "db_writer")["state"] == "running", 5,
               what="the writer to report itself running again")
    proc.terminate()
    assert proc.wait(10) == 0
    assert_exactly_once(stored, published)


@pytest.fixture
def mariadb_behind_proxy(mariadb_database):
    proxy = CuttableProxy(3306)
    yield proxy, mariadb_database.replace("127.0.0.1:3306", f"127.0.0.1:{proxy.port}")
    proxy.close()


def test_mariadb_unreachable_for_a_while_loses_nothing(mariadb_behind_proxy, redis_client, tmp_path,
                                                         redis_url):
    proxy, url = mariadb_behind_proxy
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, DHAN_DB_URL=url, DHAN_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO))
    procs, stored = WriterProcesses(env, tmp_path), Stored(url.replace(f":{proxy.port}", ":3306"))
    try:
        _outage_test(procs, redis_client, stored, proxy.cut, proxy.restore)
    finally:
        procs.stop_all()
        stored.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_locked_for_a_while_loses_nothing(writers, redis_client, stored, db_url):
    """Another process holding an exclusive lock is SQLite's "database unreachable"."""
    holder = {}

    def lock():
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        holder["conn"] = conn

    def unlock():
        holder["conn"].execute("ROLLBACK")
        holder["conn"].close()

    _outage_test(writers, redis_client, stored, lock, unlock)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_counters_stay_exact_through_a_30_s_outage_longer_than_the_claim_idle_time(
        writers, redis_client, stored, db_url):
    """The database locked for 30 s, well past the claim idle time (12 s), while writer A holds
    what it read and writer B, arriving with nothing to do, looks for orphans: nobody may take
    A's held entries for a dead consumer's (rows, dead letters and acknowledgements counted
    twice, buffers filled with copies). Every counter must be exact, summed over both."""
    options = ("--flush-ms", "50", "--batch", "500", "--claim-idle-ms", "12000")
    a = writers.start("--consumer", "a", *options)
    first = publish(redis_client, random_events(1000))
    wait_until(all_stored(redis_client, stored, first), 30, what="events before the outage")
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        poison = [publish_raw(redis_client, bus.STREAM_QUOTES, b"{not json") for _ in range(3)]
        second = publish(redis_client, random_events(3000, seed=3))
        def a_holds_everything():  # (a batch of poison alone commits without the database)
            delivered = all(g["last-delivered-id"] == redis_client.xinfo_stream(s)["last-generated-id"]
                            for s in bus.STREAMS for g in redis_client.xinfo_groups(s))
            return delivered and group_pending(redis_client) >= 3000
        wait_until(a_holds_everything, 30, what="writer a to hold every new entry")
        b = writers.start("--consumer", "b", *options)
        wait_until(lambda: bus.read_health(redis_client, "db_writer:b"), 20, what="writer b")
        time.sleep(30)
        assert bus.read_health(redis_client, "db_writer:a")["state"] == "db_down"
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    published = first + second
    wait_until(all_stored(redis_client, stored, published), 60, interval=0.3, what="recovery")
    total = len(published) + len(poison)

    def settled():  # both back to running with nothing held (a copy would be flushed by now)
        records = [bus.read_health(redis_client, f"db_writer:{n}") for n in "ab"]
        if all(r and r["state"] == "running" and r["buffered"] == 0 for r in records):
            return records
    wait_until(settled, 30, what="both writers to settle")
    time.sleep(2)  # two more heartbeats: counters of anything committed meanwhile
    records = wait_until(settled, 10, what="both writers to stay settled")
    sums = tuple(sum(r[k] for r in records) for k in ("rows_total", "poison_total", "acked_total"))
    assert sums == (len(published), len(poison), total), records
    assert sorted(f[b"id"] for _, f in redis_client.xrange(bus.STREAM_DEAD_LETTER)) == sorted(poison)
    for proc in (a, b):
        proc.terminate()
        assert proc.wait(10) == 0
    assert_exactly_once(stored, published)
