"""History then live: the one reader every window and the quote board share (DESIGN §3.6).

A window opened mid-session must show the whole day with nothing missing and nothing counted
twice. The handover point is taken from the DB writer's consumer group, not from the table:

1. per stream, the *safe point* S is the newest entry the writer group has acknowledged with
   nothing older still pending: one before its oldest pending entry, or its last-delivered id
   when nothing is pending. The writer acknowledges only after its commit, so every entry up
   to S is in the database (or was a poison entry, which never is);
2. history is read from the database *after* S was taken: today's rows with event_id <= S;
3. live data follows the stream from S on (a stream entry id and event_id are one number), so
   rows the writer has committed but not yet acknowledged come from Redis, not twice.

A stream without the writer's group (no writer has run yet) is read from Redis from the start of
the IST day; so is every stream when the database cannot be reached (history is then whatever
the streams still hold, and the status says so). Safe trimming never removes an entry above S.

Everything runs in one worker thread; the consumer gets batches of events (dicts in the JSON
shape of DESIGN §3.3 plus `event_id` and `stream`) through `on_events`, and the reader's state
through `on_status`. Both callbacks run in the worker thread: a Qt window hands them to its GUI
thread (gui.bridge). Redis or the database going away is reported and retried; live reading
resumes from the last id delivered per stream, so a restart loses and repeats nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import date, datetime, time as dtime
from decimal import Decimal
from typing import Callable, Iterable, Sequence

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import bus
from .scheduler.calendar import IST, ist_today
from .schema import EVENT_TABLES, event_id_to_stream_id, stream_id_to_event_id, unpack_levels

log = logging.getLogger(__name__)

Instrument = tuple[str, int]
Event = dict
# Table name -> event type for tables without a `type` column.
_TABLE_TYPE = {"dhan_ticks": "ticker", "dhan_depth": "depth", "dhan_gaps": "gap"}
_LEVEL_COLUMNS = ("bids", "asks")
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0
# Up to this many instruments the database filters them (IN list); beyond, Python does.
_SQL_IN_MAX = 500


@dataclass(frozen=True)
class Status:
    """What the reader knows about its sources, for the window's freshness badge."""

    phase: str = "starting"            # starting, history, live
    redis_ok: bool | None = None
    database_ok: bool | None = None
    last_entry_at: float | None = None  # time.time() when the newest stream entry was read
    delivered: int = 0                  # events handed to the consumer
    history_events: int = 0
    malformed: int = 0                  # stream entries that were not a JSON event (skipped)
    problem: str | None = None

    def freshness(self, now: float | None = None, stale_after_s: float = 5.0) -> str:
        """'disconnected', 'loading', 'stale N s' or 'live'."""
        if self.redis_ok is False:
            return "disconnected"
        if self.phase != "live":
            return "loading"
        if self.last_entry_at is None:
            return "live"  # nothing published yet today: no market data to be late
        age = (time.time() if now is None else now) - self.last_entry_at
        return f"stale {age:.0f} s" if age > stale_after_s else "live"


def day_start_ns(day: date) -> int:
    """00:00 IST of `day` in ns since the epoch: the start of a trading day's data."""
    return int(datetime.combine(day, dtime(0), IST).timestamp()) * 1_000_000_000


def row_to_event(table: str, row: dict) -> Event:
    """A stored row back in the JSON shape of DESIGN §3.3 (NULL columns left out)."""
    event: Event = {}
    for key, value in row.items():
        if value is None:
            continue
        if key in _LEVEL_COLUMNS:
            value = [[float(p), q, o] for p, q, o in unpack_levels(value)]
        elif isinstance(value, Decimal):
            value = float(value)
        event[key] = value
    event.setdefault("type", _TABLE_TYPE.get(table, table))
    return event


def safe_points(client: redis.Redis, streams: Sequence[str], group: str = bus.WRITER_GROUP
                ) -> dict[str, int | None]:
    """Per stream, the newest event_id below which the writer group has acknowledged everything
    (None: the stream has no such group, so the database holds none of it)."""
    out: dict[str, int | None] = {}
    for stream in streams:
        try:
            groups = client.xinfo_groups(stream)
        except redis.ResponseError:  # no such stream yet
            out[stream] = None
            continue
        mine = [g for g in groups if bus.text(g.get("name")) == group]
        if not mine:
            out[stream] = None
            continue
        pending = client.xpending(stream, group)
        if pending["pending"]:
            out[stream] = stream_id_to_event_id(pending["min"]) - 1
        else:
            out[stream] = stream_id_to_event_id(mine[0]["last-delivered-id"])
    return out


def handover_points(client: redis.Redis, streams: Sequence[str], group: str = bus.WRITER_GROUP
                    ) -> dict[str, int | None]:
    """Where history ends and live begins, per stream: its safe point, but never past the oldest
    safe point of a stream the writer has not caught up with, so the events of all streams cross
    the handover in one arrival order (a gap event before the quotes that follow it). A stream
    the writer has caught up with (nothing after its safe point) bounds nothing: a sparse stream
    (gaps) whose last entry is hours old must not send the whole day to Redis."""
    points = safe_points(client, streams, group)
    behind = []
    for stream, point in points.items():
        if point is None:
            continue
        last = client.xrevrange(stream, count=1)
        if last and stream_id_to_event_id(last[0][0]) > point:
            behind.append(point)
    cut = min(behind, default=None)
    return {s: p if p is None or cut is None else min(p, cut) for s, p in points.items()}


def read_history(engine: Engine, day: date, points: dict[str, int | None],
                 instruments: set[Instrument] | None = None) -> list[Event]:
    """The stored events of `day` (IST) on each stream of `points`, up to its event_id (None: no
    bound), for `instruments` (None: all), merged in event_id order. A window asks this for the
    previous session (its POC/VAH/VAL) with `points={stream: None}`; raises SQLAlchemyError."""
    start_ns = day_start_ns(day)
    end_ns = start_ns + 86_400 * 1_000_000_000
    merged: list[Event] = []
    with engine.connect() as conn:
        for stream, point in points.items():
            table = EVENT_TABLES[stream]
            query = select(table).where(table.c.recv_ts >= start_ns, table.c.recv_ts < end_ns)
            if point is not None:
                query = query.where(table.c.event_id <= point)
            if instruments is not None and len(instruments) <= _SQL_IN_MAX:
                query = query.where(table.c.security_id.in_(sorted({i for _, i in instruments})))
            for row in conn.execute(query.order_by(table.c.event_id)).mappings():
                event = row_to_event(table.name, dict(row))
                if instruments is None or (event["exchange_segment"], event["security_id"]) in instruments:
                    event["stream"] = stream
                    merged.append(event)
    merged.sort(key=arrival)
    return merged


class LiveReader(threading.Thread):
    """Loads today's events of `instruments` (None: all) on `streams` from the database, then
    follows the streams, delivering each event exactly once, in event_id order per stream."""

    def __init__(self, *, streams: Sequence[str], on_events: Callable[[list[Event]], None],
                 instruments: Iterable[Instrument] | None = None,
                 on_status: Callable[[Status], None] | None = None,
                 connect: Callable[[], redis.Redis], engine: Engine | None,
                 day: date | None = None, batch_size: int = 5000, block_ms: int = 250):
        super().__init__(name="live-reader", daemon=True)
        unknown = [s for s in streams if s not in bus.STORED_STREAMS]
        if unknown:
            raise ValueError(f"not an event stream: {unknown}")
        self.streams = tuple(streams)
        self.instruments = None if instruments is None else {(s, int(i)) for s, i in instruments}
        self.on_events, self.on_status = on_events, on_status
        self.connect, self.engine = connect, engine
        self.day = day or ist_today()
        self.batch_size, self.block_ms = batch_size, block_ms
        self.halt = threading.Event()
        self.status = Status()
        # Per stream, the last entry id delivered (or skipped as not ours): where live resumes.
        self.last_ids: dict[str, str] = {}
        self._client: redis.Redis | None = None

    # ---- control ---------------------------------------------------------------------------
    def stop(self, timeout: float | None = 5.0) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            self._load_history()
            self._follow()
        except Exception as exc:  # noqa: BLE001 - a reader bug must show in the window, not vanish
            log.exception("live reader failed")
            self._set(problem=f"reader failed: {type(exc).__name__}: {exc}")
        finally:
            if self._client is not None:
                self._client.close()

    # ---- history ---------------------------------------------------------------------------
    def _load_history(self) -> None:
        self._set(phase="history")
        points = self._with_redis(lambda c: handover_points(c, self.streams))
        if points is None:
            return
        # Just before the first possible entry id of the day (ids are exclusive in XREAD).
        start_id = f"{day_start_ns(self.day) // 1_000_000 - 1}-{2**64 - 1}"
        db_streams = [s for s in self.streams if points[s] is not None and s in EVENT_TABLES]
        loaded = False
        if db_streams and self.engine is not None:
            loaded = self._load_database({s: points[s] for s in db_streams})
        for stream in self.streams:
            if loaded and stream in db_streams:
                self.last_ids[stream] = max(start_id, event_id_to_stream_id(points[stream]), key=_id_key)
            else:
                self.last_ids[stream] = start_id  # the stream itself holds today's history
        self._set(phase="live")

    def _load_database(self, points: dict[str, int]) -> bool:
        """Today's rows up to each stream's safe point, merged in event_id order."""
        try:
            merged = read_history(self.engine, self.day, points, self.instruments)
        except SQLAlchemyError as exc:
            log.warning("history: database unreachable (%s); reading today from the streams", exc)
            self._set(database_ok=False,
                      problem=f"database unreachable ({type(exc).__name__}): history from Redis only")
            return False
        self._set(database_ok=True, history_events=len(merged))
        for i in range(0, len(merged), self.batch_size):
            self._deliver(merged[i:i + self.batch_size])
        return True

    # ---- live ------------------------------------------------------------------------------
    def _follow(self) -> None:
        while not self.halt.is_set():
            reply = self._with_redis(lambda c: c.xread(dict(self.last_ids), count=self.batch_size,
                                                       block=self.block_ms))
            if not reply:
                continue
            # A stream that filled its COUNT may have older entries still unread than another
            # stream's newest: deliver only up to the oldest such horizon and read the rest
            # again next time, so events of all streams arrive in one event_id order.
            full = [bus.text(entries[-1][0]) for _, entries in reply if len(entries) >= self.batch_size]
            horizon = min(full, key=_id_key) if full else None
            events: list[Event] = []
            malformed = 0
            for stream, entries in reply:
                stream = bus.text(stream)
                for entry_id, fields in entries:
                    if horizon is not None and _id_key(bus.text(entry_id)) > _id_key(horizon):
                        break
                    try:
                        event = bus.decode(fields[bus.STREAM_FIELD])
                    except (KeyError, ValueError):
                        malformed += 1
                        continue
                    if self._wanted(event):
                        event["event_id"] = stream_id_to_event_id(entry_id)
                        event["stream"] = stream
                        events.append(event)
                if entries:
                    last = bus.text(entries[-1][0])
                    self.last_ids[stream] = last if horizon is None else min(last, horizon, key=_id_key)
            self._set(last_entry_at=time.time(), malformed=self.status.malformed + malformed)
            if events:
                events.sort(key=arrival)
                self._deliver(events)

    # ---- plumbing --------------------------------------------------------------------------
    def _wanted(self, event: Event) -> bool:
        if self.instruments is None:
            return True
        return (event.get("exchange_segment"), event.get("security_id")) in self.instruments

    def _deliver(self, events: list[Event]) -> None:
        self.on_events(events)
        self._set(delivered=self.status.delivered + len(events))

    def _set(self, **changes) -> None:
        self.status = replace(self.status, **changes)
        if self.on_status is not None:
            self.on_status(self.status)

    def _with_redis(self, call):
        """Run `call(client)`, reconnecting with capped backoff until it works or we stop."""
        delay = RETRY_MIN_S
        while not self.halt.is_set():
            try:
                if self._client is None:
                    self._client = self.connect()
                result = call(self._client)
                if self.status.redis_ok is not True:
                    self._set(redis_ok=True, problem=None if self.status.database_ok is not False
                              else self.status.problem)
                return result
            except redis.RedisError as exc:
                if self.status.redis_ok is not False:
                    log.warning("live reader: Redis unreachable (%s); retrying", exc)
                    self._set(redis_ok=False, problem=f"Redis unreachable: {exc}")
                if self._client is not None:
                    self._client.close()
                    self._client = None
                self.halt.wait(delay)
                delay = min(RETRY_MAX_S, delay * 2)
        return None


# Within one millisecond, ids of different streams say nothing about which came first; the feed
# publishes a gap event before the update that resumes after it, so gaps sort first there.
_STREAM_RANK = {bus.STREAM_GAPS: 0}


def arrival(event: Event) -> tuple[int, int, int]:
    """Sort key of events of several streams: the millisecond of arrival (the entry id's), a gap
    event before market data of the same millisecond, then the entry id."""
    event_id = event["event_id"]
    return event_id >> 20, _STREAM_RANK.get(event.get("stream"), 1), event_id


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
