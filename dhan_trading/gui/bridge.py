"""From worker threads to the GUI thread, without blocking it (DESIGN §3.6).

`LiveFeed` runs the history-then-live reader (`live.LiveReader`) in its own thread and keeps
what it delivers in a queue; the window's repaint timer (10-30 Hz) drains the queue, so a burst
of 5,000 events costs one model update and one repaint, never one per event. `load_catalog`
runs in a worker (`background().submit`) and the timer polls its future.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import redis

from .. import bus
from ..config import Settings
from ..live import Event, Instrument, LiveReader, Status
from .catalog import Catalog

log = logging.getLogger(__name__)
_POOL: ThreadPoolExecutor | None = None


def background() -> ThreadPoolExecutor:
    """The windows' worker pool for one-off blocking work (catalog, checks)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gui-worker")
    return _POOL


def redis_connector(settings: Settings) -> Callable[[], redis.Redis]:
    """A window never starts Redis: it shows 'disconnected' until the suite's Redis is up."""
    return lambda: bus.connect(settings, start=False, socket_timeout=5)


def database_engine(settings: Settings):
    """An engine for the configured database; creating it does no I/O (tables are the writer's)."""
    from ..db_setup import get_engine
    return get_engine(settings=settings, create=False)


class LiveFeed:
    """One reader for one set of instruments; `switch` replaces it for another set."""

    def __init__(self, streams: Sequence[str], connect: Callable[[], redis.Redis], engine,
                 max_queued: int = 2_000_000):
        self.streams, self.connect, self.engine = tuple(streams), connect, engine
        self.queue: deque[list[Event]] = deque()
        self.queued = 0
        self.max_queued = max_queued
        self.reader: LiveReader | None = None
        self.status = Status()
        self.generation = 0  # bumps on switch: a window drops what an old reader delivered

    def switch(self, instruments: Iterable[Instrument] | None) -> None:
        self.stop()
        self.generation += 1
        self.queue.clear()
        self.queued = 0
        self.status = Status()
        generation = self.generation

        def deliver(events: list[Event]) -> None:
            if generation == self.generation:
                self.queue.append(events)
                self.queued += len(events)

        def status(s: Status) -> None:
            if generation == self.generation:
                self.status = s

        self.reader = LiveReader(streams=self.streams, instruments=instruments, on_events=deliver,
                                 on_status=status, connect=self.connect, engine=self.engine)
        self.reader.start()

    def drain(self, limit: int | None = None) -> list[Event]:
        """What was delivered since the last drain, in delivery order (GUI thread); at most
        `limit` events, the rest left for the next tick (a day of history then folds in
        chunks and the window keeps repainting instead of freezing)."""
        out: list[Event] = []
        while self.queue and (limit is None or len(out) < limit):
            batch = self.queue.popleft()
            if limit is not None and len(out) + len(batch) > limit:
                keep = limit - len(out)
                self.queue.appendleft(batch[keep:])
                batch = batch[:keep]
            self.queued -= len(batch)
            out.extend(batch)
        return out

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.halt.set()
            self.reader = None


def load_catalog(settings: Settings, engine=None, connect: Callable[[], redis.Redis] | None = None
                 ) -> Catalog:
    """The instruments the feed stored today (dhan_instruments), else the configured master;
    the ones the feed records (fields of dhan:latest) rank first. Blocking: run in a worker."""
    from ..instruments.master import last_refresh, load_instruments, load_master

    instruments = []
    if engine is not None:
        try:
            instruments = load_instruments(engine, since=last_refresh(engine))
        except Exception as exc:  # noqa: BLE001 - no table yet, or the database is down
            log.info("instruments not in the database (%s); reading the scrip master", exc)
    if not instruments:
        instruments = load_master(settings)
    recorded: set[tuple[str, int]] = set()
    if connect is not None:
        try:
            client = connect()
            for field in client.hkeys(bus.LATEST_HASH):
                _, segment, security_id = field.decode().split(":")
                recorded.add((segment, int(security_id)))
            client.close()
        except (redis.RedisError, ValueError) as exc:
            log.info("could not read what the feed records (%s)", exc)
    return Catalog(instruments, frozenset(recorded))


def when_done(future: Future, callback: Callable[[object], None],
              on_error: Callable[[BaseException], None]) -> bool:
    """Poll from a GUI timer: call back once the future is done; True when it was handled."""
    if not future.done():
        return False
    exc = future.exception()
    if exc is not None:
        on_error(exc)
    else:
        callback(future.result())
    return True
