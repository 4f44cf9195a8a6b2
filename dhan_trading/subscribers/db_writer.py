"""The batching DB writer: Redis streams (consumer group) -> database, every event exactly once.

Why a consumer group and not pub/sub: entries published while the writer is down or slow stay
in the streams and are delivered later. The order that makes "exactly once" hold:

1. read entries (our own unacknowledged ones first, then new ones; entries that another
   consumer has left pending longer than the claim idle time are claimed with XCLAIM: never
   our own, and never an id already held, so no entry is ever buffered twice);
2. insert the batch with a unique key (the entry id) and commit;
3. only then acknowledge (XACK), together with the dead-letter records of poison entries, in
   one MULTI/EXEC.

A crash after 2 and before 3 replays the batch, and the unique key turns every replayed row
into a no-op. While the database is down nothing is acknowledged and reading stops once the
buffer holds `max_buffer_rows` (bounded memory); the same batch is retried with capped
exponential backoff until it commits; meanwhile the writer keeps its own held entries fresh
(XCLAIM JUSTID to itself) so that another writer does not take them as orphans. A lost Redis
connection is retried the same way. A misconfigured database (access denied, unknown database,
an SQLite file that cannot be written) raises `DatabaseMisconfigured` and a bug in our own code
raises as it is: neither is retried as an outage.
"""
from __future__ import annotations

import gc
import logging
import operator
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import redis

from .. import bus
from ..schema import event_id_to_stream_id
from . import rows as R
from .store import DatabaseUnavailable, EventStore, RowRejected

log = logging.getLogger(__name__)
_RECV_TS = operator.itemgetter(3)  # of a row (rows.COLUMNS: event_id, segment, security_id, recv_ts ...)

HEALTH_SERVICE = "db_writer"
DEAD_LETTER_MAXLEN = 100_000
# A consumer with nothing pending and idle this long is a writer that exited: forget it.
FORGET_CONSUMER_IDLE_MS = 3_600_000
RETRY_MIN_S, RETRY_MAX_S = 0.25, 5.0
# While a batch commits in the background, the GIL changes hands this often at most (the
# default 5 ms would make the commit thread wait that long after each statement and the
# reader wait as long for each reply).
SWITCH_INTERVAL_S = 0.0005
# Young-generation threshold of the garbage collector while the writer runs (CPython: 700).
# A batch keeps thousands of rows and reply lists alive, which the default made the collector
# traverse again and again: about a fifth of the writer thread's CPU. Rows hold no cycles.
GC_GEN0_THRESHOLD = 50_000


@dataclass(frozen=True)
class WriterConfig:
    consumer: str
    batch_rows: int = 5000  # of each stream (table) per commit
    flush_ms: int = 200
    # Rows read and not yet committed (the batch being filled and the one committing) at most.
    # A backlog alone takes up to three batches of each busy stream (committing, filling, read
    # ahead): 45,000 pending entries with ticks, quotes and depth behind; the buffer leaves room
    # for that, so it fills (and the monitor warns) only when the database does not take rows.
    max_buffer_rows: int = 100_000
    claim_idle_ms: int = 15_000
    trim_maxlen: int = 0  # 0: the writer leaves trimming to the feed
    streams: tuple[str, ...] = bus.STORED_STREAMS
    group: str = bus.WRITER_GROUP
    # Health: unhealthy when the group lag stays above a bound and is still higher than it was
    # `lag_rising_s` seconds before (falling behind for good). The lag is counted in entries
    # (backlog + pending, Redis 7) and in seconds (newest entry minus the last one the group
    # read: the only measure Redis 6.2, the embedded server, allows cheaply).
    lag_limit: int = 50_000
    lag_limit_s: float = 60.0
    lag_rising_s: float = 30.0

    @property
    def claim_every_s(self) -> float:
        """Look for orphans twice per idle period, within [0.5 s, 5 s]."""
        return max(0.5, min(5.0, self.claim_idle_ms / 2000))

    @property
    def keep_every_s(self) -> float:
        """Refresh our held entries four times per idle period (at least every 5 s), so they
        never look idle for more than about half of it, plus a write blocked on the database."""
        return max(0.05, min(5.0, self.claim_idle_ms / 4000))


@dataclass
class WriterStats:
    """Counters the health thread reads; only the writer thread changes them."""

    state: str = "starting"
    rows_total: int = 0
    batches: int = 0
    poison_total: int = 0
    acked_total: int = 0  # entries acknowledged (rows stored plus dead letters)
    errors: int = 0
    last_error: str = ""
    last_commit: float = 0.0  # time.time() of the last commit, 0 before the first
    last_latency_s: float | None = None  # commit time minus the oldest recv_ts of that batch
    buffered: int = 0


@dataclass
class DeadLetter:
    stream: str
    entry_id: bytes
    reason: str
    data: bytes | None


@dataclass
class Batch:
    """Rows read but not yet committed, and the entry ids to acknowledge once they are."""

    rows: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t in R.COLUMNS})
    ids: dict[str, list[bytes]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    count: int = 0
    started: float = 0.0  # monotonic time of the first entry

    def most(self) -> int:
        """Entries of the stream with the most in this batch."""
        return max(map(len, self.ids.values()), default=0)

    def add(self, stream: str, entries: list, price: R.PriceCodec, held: set[bytes]) -> None:
        """Add entries not in `held` (the ids this writer holds unacknowledged; updated)."""
        if not entries:
            return
        if not self.count:
            self.started = time.monotonic()
        table_rows = self.rows[R.STREAM_TABLE[stream]]
        ids = self.ids.setdefault(stream, [])
        row = R.row_maker(stream, price)
        for entry in entries:
            if entry is None:  # a deleted entry in some replies of Redis 6.2 (skipped, as redis-py's (None, None))
                continue
            entry_id, fields = entry
            if entry_id is None or entry_id in held:  # None: redis-py's form of the same
                continue
            held.add(entry_id)
            try:
                table_rows.append(row(entry_id, fields))
            except R.Poison as exc:
                fields = R.fields_dict(fields)
                self.dead.append(DeadLetter(stream, entry_id, str(exc),
                                            fields.get(bus.STREAM_FIELD) if fields else None))
            ids.append(entry_id)
            self.count += 1


@dataclass
class Commit:
    """A batch being written by the commit thread; the writer thread reads its outcome once
    `thread` has ended (`error` set, or `committed`, the time.time() of the commit)."""

    batch: Batch
    thread: threading.Thread | None = None
    error: BaseException | None = None
    committed: float = 0.0


class DbWriter:
    """The writer loop. `run(stop)` returns after a final flush once `stop` is set.

    A batch is committed by a thread of its own while this one reads and converts the next
    (the database's work overlaps Redis and JSON; one commit at a time, and a batch is
    acknowledged only once its commit has succeeded)."""

    def __init__(self, connect: Callable[[], redis.Redis], store: EventStore, config: WriterConfig,
                 on_commit: Callable[[dict[str, list[tuple]], float], None] | None = None):
        self.connect = connect
        self.client = connect()
        self.store = store
        self.config = config
        self.on_commit = on_commit
        self.stats = WriterStats()
        self.batch = Batch()
        self.acks: list[Batch] = []  # committed, not yet acknowledged (Redis was down)
        self.writing: Commit | None = None  # the batch the commit thread is writing
        # An XREADGROUP sent ahead (its connection; the COUNT it asked for), reply not read yet
        self.prefetch: redis.connection.Connection | None = None
        self.prefetch_count = 0
        # A read came back as long as asked (a backlog); the first short one after it means the
        # streams are drained: what is held is committed then, not flush_ms later.
        self.backlog = False
        self.caught_up = False
        self.cursor = {s: "0" for s in config.streams}  # "0": our own pending first, then ">"
        # Per stream, the ids in `batch` or `acks`: what this writer holds, never added twice.
        self.held: dict[str, set[bytes]] = {s: set() for s in config.streams}
        self.db_retry_at = 0.0
        self.db_backoff = RETRY_MIN_S
        self.next_claim = 0.0
        self.next_keep = 0.0
        self.next_trim = 0.0

    # ---- main loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Store until `stop` is set, then flush. Anything but a Redis or database outage (a
        misconfigured database, a bug) ends the loop by raising, after `shutdown` has
        acknowledged what is committed; what is not stays pending for the next writer."""
        clean = False
        switch_interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
        gc.set_threshold(max(thresholds[0], GC_GEN0_THRESHOLD), *thresholds[1:])
        try:
            self._loop(stop)
            clean = True
        finally:
            try:
                self.shutdown(flush=clean)
            finally:
                sys.setswitchinterval(switch_interval)
                gc.set_threshold(*thresholds)

    def _loop(self, stop: threading.Event) -> None:
        redis_backoff = RETRY_MIN_S
        groups_ready = False
        while not stop.is_set():
            try:
                if not groups_ready:
                    self.ensure_groups()
                    groups_ready = True
                    if self.stats.state == "starting":
                        self.stats.state = "running"
                self.step()
                if self.stats.state == "redis_down":  # Redis answers again (a quiet market
                    self.stats.state = "running"      # brings no commit to say so)
                redis_backoff = RETRY_MIN_S
            except redis.ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                log.warning("a stream or the group vanished (%s); creating them again", exc)
                groups_ready = False
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._error("redis_down", exc)
                stop.wait(redis_backoff)
                redis_backoff = min(redis_backoff * 2, RETRY_MAX_S)

    def ensure_groups(self) -> None:
        """Create the group at id 0 (a first start stores what the streams already hold)."""
        for stream in self.config.streams:
            try:
                self.client.xgroup_create(stream, self.config.group, id="0", mkstream=True)
                log.info("created consumer group %s on %s", self.config.group, stream)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self.cursor = {s: "0" for s in self.config.streams}

    def step(self) -> None:
        """One turn: retry acks, keep our claims, claim orphans, read, flush when due."""
        now = time.monotonic()
        if self.writing and not self.writing.thread.is_alive():
            self._finish_write()
        if self.acks:
            self._acknowledge()
        db_down = now < self.db_retry_at
        if now >= self.next_keep:
            self.next_keep = now + self.config.keep_every_s
            self.keep_claims()
        if now >= self.next_claim and not db_down:
            self.next_claim = now + self.config.claim_every_s
            self.claim_orphans()
        # COUNT applies to each stream: up to batch_rows of each normally (a table's rows per
        # commit); while the database is down, on to max_buffer_rows in all, then stop.
        n = len(self.config.streams)
        room = self.config.max_buffer_rows - self._held_rows()  # a commit under way counts too
        if db_down:
            count = min(self.config.max_buffer_rows - self.batch.count, room) // n
        else:
            count = min(self.config.batch_rows - self.batch.most(), room // n)
        if count > 0:
            if not self.writing:
                self._read(count, self._wait_ms(now))
            elif not self._read(count, None):  # nothing new: wait for the commit, not on Redis
                self.writing.thread.join(self._wait_ms(now) / 1000)
        elif self.writing:
            self.writing.thread.join(0.2)
        elif db_down:
            time.sleep(min(self.db_retry_at - now, 0.2))
        self.stats.buffered = self._held_rows()
        if self._flush_due():
            if self.writing:
                self._finish_write()  # one commit at a time; it may have failed (database down)
            if self._flush_due():
                self._start_write()
        if self.config.trim_maxlen and now >= self.next_trim:
            self.next_trim = now + 1.0
            bus.trim_streams_safely(self.client, self.config.trim_maxlen, self.config.streams,
                                    self.config.group)

    def _held_rows(self) -> int:
        """Entries read and not yet committed: the batch, and the one being committed."""
        return self.batch.count + (self.writing.batch.count if self.writing else 0)

    def _wait_ms(self, now: float) -> int:
        if not self.batch.count:
            return 500
        due = max(self.batch.started + self.config.flush_ms / 1000, self.db_retry_at)
        due = min(due, self.next_keep)  # a long outage: wake up to keep our claims
        return max(1, int((due - now) * 1000))

    def _full(self, rows: int) -> bool:
        """Full enough, `rows` being the entries of the batch's fullest stream: the next read
        could add less than a quarter of batch_rows (each read is a round trip)."""
        return rows > self.config.batch_rows - max(1, self.config.batch_rows // 4)

    def _flush_due(self) -> bool:
        if not self.batch.count or time.monotonic() < self.db_retry_at:
            return False
        return (self._full(self.batch.most()) or self.caught_up
                or time.monotonic() - self.batch.started >= self.config.flush_ms / 1000)

    def _read(self, count: int, block_ms: int | None) -> int:
        """Read up to `count` entries per stream into the batch (waiting up to `block_ms` for
        new ones; None: not at all); returns how many came."""
        replaying = any(c != ">" for c in self.cursor.values())
        if self.prefetch:
            reply, count = self._receive_prefetch(), self.prefetch_count
        else:
            self._send_read(count, None if replaying else block_ms)
            reply = self._receive_prefetch()
        if reply and not replaying and max(len(entries) for _, entries in reply) >= count:
            self.backlog = True
            self._send_prefetch(reply)
        elif self.backlog and not replaying:
            self.backlog, self.caught_up = False, True
        got = {}
        for stream, entries in reply or ():
            stream = bus.text(stream)
            got[stream] = entries
            self.batch.add(stream, entries, self.store.price, self.held[stream])
        if replaying:
            for stream, cursor in self.cursor.items():
                if cursor != ">":
                    entries = got.get(stream)
                    self.cursor[stream] = entries[-1][0] if entries else ">"
        return sum(len(entries) for entries in got.values())

    def _send_prefetch(self, reply: list) -> None:
        """With a backlog (a reply as long as asked), ask Redis for the next entries before
        converting the ones just received (`reply`): Redis prepares them meanwhile, on the other
        core. Not blocking: the reply is whatever is there already."""
        if time.monotonic() < self.db_retry_at:
            return
        ids = self.batch.ids
        coming = sum(len(entries) for _, entries in reply)
        most = max([self.batch.most(), *(len(ids.get(bus.text(s), ())) + len(e) for s, e in reply)])
        if self._full(most):  # that batch is flushed before the next read
            most = 0
        room = self.config.max_buffer_rows - self._held_rows() - coming
        count = min(self.config.batch_rows - most, room // len(self.config.streams))
        if count <= 0:
            return
        self._send_read(count, None)

    def _send_read(self, count: int, block_ms: int | None) -> None:
        """Send XREADGROUP from the cursor; `_receive_prefetch` reads its reply."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        block = () if block_ms is None else ("BLOCK", block_ms)
        try:
            conn.send_command("XREADGROUP", "GROUP", self.config.group, self.config.consumer,
                              "COUNT", count, *block, "STREAMS", *self.cursor, *self.cursor.values())
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        self.prefetch, self.prefetch_count = conn, count

    def _receive_prefetch(self) -> list:
        """The reply of the XREADGROUP sent, as Redis gives it (no dict per entry: the row
        makers read the flat field list): [[stream, [[id, [field, value ...]] ...]] ...].
        If it is lost (Redis down), the entries it delivered are pending under our name: the
        cursor goes back to "0" to replay them."""
        conn, self.prefetch = self.prefetch, None
        pool = self.client.connection_pool
        try:
            reply = conn.read_response()
            return list(reply.items()) if isinstance(reply, dict) else reply or []  # RESP3: a map
        except redis.ResponseError:
            raise  # NOGROUP: the loop creates the groups again, which replays from "0" too
        except BaseException:
            conn.disconnect()
            self.cursor = {s: "0" for s in self.config.streams}
            raise
        finally:
            pool.release(conn)

    def keep_claims(self) -> None:
        """Reset the idle time of the entries we hold (XCLAIM JUSTID to ourselves), so that
        while the database is down no other writer takes them for a dead consumer's. Only
        entries idle for a quarter of claim_idle_ms are touched: one that another writer has
        claimed meanwhile is fresher than that and stays with it."""
        min_idle = self.config.claim_idle_ms // 4
        held_since = [b.started for b in (self.batch, self.writing and self.writing.batch) if b and b.count]
        if not self.acks and (not held_since or time.monotonic() - min(held_since) < min_idle / 1000):
            return  # nothing held long enough to need it (the usual case: batches are young)
        for stream, ids in self.held.items():
            ids = list(ids)
            for i in range(0, len(ids), 10_000):
                self.client.xclaim(stream, self.config.group, self.config.consumer, min_idle,
                                   ids[i:i + 10_000], justid=True)

    def claim_orphans(self) -> None:
        """Take over entries that other consumers left pending longer than claim_idle_ms (they
        died). Our own pending entries are never claimed: we read them with cursor "0"."""
        for stream in self.config.streams:
            for consumer in self.client.xinfo_consumers(stream, self.config.group):
                name = bus.text(consumer["name"])
                if name == self.config.consumer:
                    continue
                if consumer["pending"]:
                    self._claim_from(stream, name)
                elif consumer["idle"] > FORGET_CONSUMER_IDLE_MS:
                    self.client.xgroup_delconsumer(stream, self.config.group, name)

    def _claim_from(self, stream: str, consumer: str) -> None:
        start, claimed = "-", 0
        while self._held_rows() < self.config.max_buffer_rows:
            count = min(self.config.batch_rows, self.config.max_buffer_rows - self._held_rows())
            idle = self.client.xpending_range(stream, self.config.group, start, "+", count,
                                              consumername=consumer, idle=self.config.claim_idle_ms)
            if not idle:
                break
            # min idle again: an entry its owner touched or acknowledged meanwhile stays its own
            entries = self.client.xclaim(stream, self.config.group, self.config.consumer,
                                         self.config.claim_idle_ms, [p["message_id"] for p in idle])
            self.batch.add(stream, entries, self.store.price, self.held[stream])
            claimed += len(entries)
            if len(idle) < count:
                break
            start = "(" + bus.text(idle[-1]["message_id"])
        if claimed:
            log.info("claimed %d entries of %s left pending by consumer %s", claimed, stream, consumer)

    # ---- commit and acknowledge --------------------------------------------------------------
    def flush(self) -> bool:
        """Commit the batch (after any commit under way), then acknowledge it, waiting for both;
        False (batch kept) if the database is down."""
        if self.writing and not self._finish_write():
            return False
        self._start_write()
        return self._finish_write()

    def _start_write(self) -> None:
        """Hand the batch to a commit thread; reading goes on into a new batch meanwhile."""
        job = Commit(self.batch)
        self.caught_up = False
        job.thread = threading.Thread(target=self._commit, args=(job,), name="db-writer-commit", daemon=True)
        self.writing = job
        self.batch = Batch()
        self.stats.buffered = 0
        job.thread.start()

    def _commit(self, job: Commit) -> None:
        """The commit thread: the only one using the store while it runs."""
        try:
            self._write(job.batch)
            job.committed = time.time()
        except BaseException as exc:  # noqa: BLE001 - handed to the writer thread
            job.error = exc

    def _finish_write(self, timeout: float | None = None) -> bool:
        """Wait for the commit under way (at most `timeout` s) and act on its outcome: on
        success acknowledge it (True); with the database down put the batch back in front of
        the one being read (False; retried after a backoff); anything else (a setting to fix,
        a bug) is raised here. False also when it is still running after `timeout`."""
        job = self.writing
        if job is None:
            return True
        job.thread.join(timeout)
        if job.thread.is_alive():
            return False
        self.writing = None
        batch = job.batch
        if isinstance(job.error, DatabaseUnavailable):
            self._error("db_down", job.error)
            self.db_retry_at = time.monotonic() + self.db_backoff
            self.db_backoff = min(self.db_backoff * 2, RETRY_MAX_S)
            self._requeue(batch)
            return False
        if job.error is not None:
            self._requeue(batch)  # not acknowledged: it stays pending for the next writer
            raise job.error
        committed = job.committed
        rows = sum(len(r) for r in batch.rows.values())
        if rows:
            oldest = min(min(map(_RECV_TS, table_rows)) for table_rows in batch.rows.values() if table_rows)
            self.stats.last_latency_s = committed - oldest / 1e9
        if self.on_commit:
            self.on_commit(batch.rows, committed)
        self.stats.rows_total += rows
        self.stats.batches += 1
        self.stats.poison_total += len(batch.dead)
        self.stats.last_commit = committed
        self.stats.state = "running"
        self.db_backoff, self.db_retry_at = RETRY_MIN_S, 0.0
        self.acks.append(batch)
        self._acknowledge()
        return True

    def _requeue(self, batch: Batch) -> None:
        """A batch whose commit failed goes back in front of the entries read since."""
        later = self.batch
        for table, rows in later.rows.items():
            batch.rows[table].extend(rows)
        for stream, ids in later.ids.items():
            batch.ids.setdefault(stream, []).extend(ids)
        batch.dead.extend(later.dead)
        batch.count += later.count
        self.batch = batch
        self.stats.buffered = batch.count

    def _write(self, batch: Batch) -> None:
        try:
            self.store.write(batch.rows)
        except RowRejected as exc:
            log.warning("the database rejected a batch (%s); storing its rows one by one", exc)
            for table, table_rows in batch.rows.items():
                if not table_rows:
                    continue
                stream = next(s for s, t in R.STREAM_TABLE.items() if t == table)
                for row, reason in self.store.write_each(table, table_rows):
                    batch.dead.append(DeadLetter(stream, event_id_to_stream_id(row[0]).encode(),
                                                 f"rejected by the database: {reason}", repr(row).encode()))
                    table_rows.remove(row)

    def _acknowledge(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        for batch in self.acks:
            for dead in batch.dead:
                log.warning("dead-lettered %s %s: %s", dead.stream, dead.entry_id, dead.reason)
                pipe.xadd(bus.STREAM_DEAD_LETTER,
                          {"stream": dead.stream, "id": dead.entry_id, "reason": dead.reason,
                           "data": dead.data or b"", "consumer": self.config.consumer},
                          maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            for stream, ids in batch.ids.items():
                for i in range(0, len(ids), 10_000):
                    pipe.xack(stream, self.config.group, *ids[i:i + 10_000])
        pipe.execute()
        for batch in self.acks:
            self.stats.acked_total += batch.count
            for stream, ids in batch.ids.items():
                self.held[stream].difference_update(ids)
        self.acks.clear()

    def _error(self, state: str, exc: BaseException) -> None:
        self.stats.state = state
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("%s: %s", state.replace("_", " "), self.stats.last_error)

    # ---- stop --------------------------------------------------------------------------------
    def shutdown(self, flush: bool = True, deadline_s: float = 5.0) -> None:
        """Flush (unless `flush` is false: stopping on an error), commit and acknowledge what is
        buffered; give up (nothing lost: it stays pending) after a while."""
        self.stats.state = "stopping"
        deadline = time.monotonic() + deadline_s
        if self.prefetch:  # entries delivered ahead: stored with the rest, or left pending
            try:
                reply = self._receive_prefetch()
                if flush:
                    for stream, entries in reply or ():
                        self.batch.add(bus.text(stream), entries, self.store.price, self.held[bus.text(stream)])
            except redis.RedisError as exc:
                self._error("redis_down", exc)
        while time.monotonic() < deadline and ((flush and self.batch.count) or self.acks or self.writing):
            try:
                if self.writing:
                    self._finish_stopping(flush, deadline)
                    continue
                if self.acks:
                    self._acknowledge()
                if flush and self.batch.count and not self.flush():
                    time.sleep(min(0.5, max(0.0, self.db_retry_at - time.monotonic())))
                    self.db_retry_at = 0.0
            except redis.RedisError as exc:
                self._error("redis_down", exc)
                time.sleep(0.2)
        if self.writing:
            log.warning("stopping while a commit still runs; its %d entries stay pending (if it "
                        "commits, the next writer's replay of them inserts nothing)", self.writing.batch.count)
        elif self.batch.count or self.acks:
            log.warning("stopping with %d entries unstored or unacknowledged; they stay pending "
                        "and the next writer stores them", self.batch.count + sum(b.count for b in self.acks))
        else:
            self._leave_group()
        if not self.writing:  # else the commit thread still uses the connection
            self.store.close()
        self.stats.state = "stopped"

    def _finish_stopping(self, flush: bool, deadline: float) -> None:
        """Wait for the commit under way while stopping. Stopping on an error (`flush` false),
        a failed commit is logged rather than raised over that error."""
        try:
            if not self._finish_write(max(0.0, deadline - time.monotonic())) and self.writing is None:
                time.sleep(min(0.5, max(0.0, self.db_retry_at - time.monotonic())))
                self.db_retry_at = 0.0
        except redis.RedisError:
            raise
        except Exception:
            if flush:
                raise
            log.exception("the last commit failed too")

    def _leave_group(self) -> None:
        """Remove our consumer name if it holds nothing (names are per process: hostname-pid)."""
        try:
            for stream in self.config.streams:
                info = self.client.xpending_range(stream, self.config.group, "-", "+", 1,
                                                  consumername=self.config.consumer)
                if not info:
                    self.client.xgroup_delconsumer(stream, self.config.group, self.config.consumer)
        except redis.RedisError as exc:
            log.debug("could not leave the group: %s", exc)

    # ---- health ------------------------------------------------------------------------------
    def figures(self, client: redis.Redis, rows_per_s: float) -> dict:
        """The writer's own figures for its heartbeat, read from Redis with `client`."""
        pipe = client.pipeline(transaction=False)
        for stream in self.config.streams:
            pipe.xpending(stream, self.config.group)
            pipe.xinfo_groups(stream)
            pipe.xinfo_stream(stream)
        replies = pipe.execute(raise_on_error=False)
        pending, backlog, behind_ms = 0, 0, 0
        for summary, groups, info in zip(replies[::3], replies[1::3], replies[2::3]):
            if isinstance(summary, dict):
                pending += summary.get("pending", 0)
            mine = [g for g in groups if bus.text(g.get("name")) == self.config.group] \
                if isinstance(groups, list) else []
            lag = mine[0].get("lag") if mine else None
            backlog = None if backlog is None or lag is None else backlog + lag
            if mine and isinstance(info, dict):
                newest, read = (bus.text(i).partition("-")[0]
                                for i in (info["last-generated-id"], mine[0]["last-delivered-id"]))
                behind_ms = max(behind_ms, int(newest) - int(read))
        s = self.stats
        return {
            "consumer": self.config.consumer,
            "rows_per_s": round(rows_per_s, 1), "rows_total": s.rows_total, "batches": s.batches,
            "lag_s": None if s.last_latency_s is None else round(s.last_latency_s, 3),
            "backlog": backlog, "pending": pending, "behind_s": round(behind_ms / 1000, 3),
            "buffered": s.buffered,
            "acked_total": s.acked_total,
            "last_commit_age_s": round(time.time() - s.last_commit, 3) if s.last_commit else None,
            "errors": s.errors, "last_error": s.last_error, "poison_total": s.poison_total,
        }


class LagWatch:
    """Judges whether a lag is growing past a bound: above `limit` and higher than it was
    `rising_s` seconds ago, with every sample in between above `limit`. A large lag that is
    shrinking (catching up after an outage) is healthy."""

    def __init__(self, limit: float, rising_s: float, unit: str):
        self.limit, self.rising_s, self.unit = limit, rising_s, unit
        self.samples: deque[tuple[float, float]] = deque()

    def problem(self, lag: float | None, now: float) -> str | None:
        if lag is None or lag <= self.limit:
            self.samples.clear()
            return None
        self.samples.append((now, lag))
        # keep the newest sample that is at least rising_s old as the reference
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.rising_s:
            self.samples.popleft()
        since, before = self.samples[0]
        if now - since >= self.rising_s and lag > before:
            return (f"falling behind: {lag:,} {self.unit} behind the streams, up from {before:,} "
                    f"{now - since:.0f} s ago (bound {self.limit:,})")
        return None


class HealthReporter(threading.Thread):
    """Publishes the writer's heartbeat (DESIGN §3.3) every second from its own thread and
    Redis connection, so a writer blocked on a slow database still reports. Unhealthy when
    the database cannot be reached (or Redis, if the record gets through) or the lag grows."""

    def __init__(self, writer: DbWriter, stop: threading.Event, interval_s: float = 1.0):
        super().__init__(name="db-writer-health", daemon=True)
        self.writer, self.stop, self.interval_s = writer, stop, interval_s
        self.rates: deque[tuple[float, int]] = deque(maxlen=6)
        config = writer.config
        self.lag = LagWatch(config.lag_limit, config.lag_rising_s, "entries")
        self.lag_s = LagWatch(config.lag_limit_s, config.lag_rising_s, "s")

    def run(self) -> None:
        client = self.writer.connect()
        while not self.stop.wait(self.interval_s):
            self.publish(client)
        client.close()

    def record(self, client: redis.Redis) -> dict:
        now = time.monotonic()
        self.rates.append((now, self.writer.stats.rows_total))
        (t0, n0), (t1, n1) = self.rates[0], self.rates[-1]
        figures = self.writer.figures(client, (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0)
        state = self.writer.stats.state
        lag = None if figures["backlog"] is None else figures["backlog"] + figures["pending"]
        problems = (self.lag.problem(lag, now), self.lag_s.problem(figures["behind_s"], now))
        problem = problems[0] or problems[1]
        if state == "db_down":
            problem = (f"the database cannot be reached ({self.writer.stats.last_error}); "
                       f"{figures['pending']:,} entries wait in Redis")
        elif state == "redis_down":
            problem = f"Redis cannot be reached ({self.writer.stats.last_error})"
        return bus.heartbeat(HEALTH_SERVICE, state, problem is None, problem, **figures)

    def publish(self, client: redis.Redis) -> None:
        try:
            record = self.record(client)
            bus.publish_health(client, record)
            bus.publish_health(client, record, key=f"{HEALTH_SERVICE}:{self.writer.config.consumer}")
        except redis.RedisError as exc:
            log.debug("health not published: %s", exc)
