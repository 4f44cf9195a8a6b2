"""The FNO Services Monitor: `python -m dhan_trading.services.monitor` (DESIGN §3.1).

The half of the monitor that needs no Qt lives here, so that it imports on a headless server
(DESIGN §2) and is tested without a display:

* `THRESHOLDS`, the one table of warning and critical levels (documented in
  docs/CONTROL_CENTER.md, "Monitor");
* `MonitorModel`, pure: it takes samples (plain dicts), keeps the last minutes of every figure
  and judges each against the table;
* `Collector`, which reads one sample from Redis (the heartbeat records of the feed and the
  writer through `bus.read_health`, stream lengths, memory) or counts today's rows in the
  database. It blocks, so it only ever runs in `Poller` threads, never on a GUI thread.

`main()` opens the window (`dhan_trading.gui.monitor_view`), importing Qt only then. Run alone (as
the registry's `services_monitor` service) the window publishes its own heartbeat.
"""
from __future__ import annotations

import fnmatch
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, inspect, select

from .. import bus
from ..config import finite_number, mask_url
from ..live import day_start_ns
from ..market_feed.feed import FeedOptions
from ..scheduler.calendar import ist_today
from ..schema import EVENT_TABLES
from ..subscribers.db_writer import HEALTH_SERVICE as WRITER_SERVICE, WriterConfig
from .registry import SERVICES

log = logging.getLogger(__name__)

OK, WARN, BAD, IDLE = "ok", "warn", "bad", "idle"   # the keys of gui.theme.STATE
_RANK = {IDLE: 0, OK: 1, WARN: 2, BAD: 3}

# The feed runs as one of these registry services (never both); the writer publishes as WRITER_SERVICE.
FEED_SERVICES = tuple(s.id for s in SERVICES if s.script is not None and s.script.name == "launch_fno_feed.py")
# (__spec__: run with -m, __name__ is "__main__")
MONITOR_SERVICE = next(s.id for s in SERVICES if s.module == (__spec__.name if __spec__ else __name__))

WINDOW_S = 600.0          # the sparklines show the last 10 minutes ...
SAMPLE_EVERY_S = 1.0      # ... at one sample a second
DB_COUNT_EVERY_S = 10.0   # COUNT(*) of today's rows at most this often
STALE_AFTER_S = 3.0       # no sample for this long: Redis does not answer (warn; 3x that: critical)


def short(stream: str) -> str:
    """'dhan:ticks:stream' -> 'ticks'."""
    return stream.split(":")[1]


# ---- what is shown ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    group: str      # feed, redis, writer, db
    label: str
    kind: str       # rate (per s), count, seconds, bytes
    help: str = ""


METRICS: tuple[Metric, ...] = (
    Metric("feed.frames_per_s", "feed", "frames/s", "rate", "WebSocket frames received per second (the feed's own figure)"),
    *(Metric(f"feed.events_per_s.{short(s)}", "feed", f"events/s {short(s)}", "rate",
             f"entries added to {s} per second (stream growth)") for s in bus.STORED_STREAMS),
    Metric("feed.connections", "feed", "connections up", "count", "sockets connected, of those planned"),
    Metric("feed.reconnects", "feed", "reconnects", "count", "reconnects since the feed started"),
    Metric("feed.gaps", "feed", "gap events", "count", "instruments that resumed after a break (dhan_gaps)"),
    Metric("feed.malformed", "feed", "malformed frames", "count", "frames the feed could not decode"),
    Metric("redis.memory", "redis", "memory", "bytes", "INFO memory used_memory"),
    *(Metric(f"redis.length.{short(s)}", "redis", f"{short(s)} stream", "count", f"XLEN {s}")
      for s in bus.STORED_STREAMS),
    Metric("writer.rows_per_s", "writer", "rows/s", "rate", "rows committed per second (the writer's own figure)"),
    Metric("writer.pending", "writer", "pending entries", "count",
           "entries delivered to the writer and not yet acknowledged (XPENDING)"),
    Metric("writer.lag_s", "writer", "lag receive → commit", "seconds",
           "commit time minus the oldest recv_ts of the last batch; while entries wait and nothing "
           "commits, the time since the last commit"),
    Metric("writer.dead_letters", "writer", "dead letters", "count", f"XLEN {bus.STREAM_DEAD_LETTER}"),
    *(Metric(f"db.rows.{t.name}", "db", t.name, "count", f"rows of {t.name} with recv_ts since 00:00 IST")
      for t in EVENT_TABLES.values()),
)
METRIC = {m.key: m for m in METRICS}
GROUPS = {"feed": "Feed", "redis": "Redis", "writer": "DB writer", "db": "Database (rows today)"}


# ---- thresholds: the one table ------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """One rule of THRESHOLDS; `metric` may be a glob (`redis.length.*`).

    rule     warn when ...                                  critical when ...
    above    value > warn                                   value > critical
    below    value < the metric `ref` (e.g. planned)        value <= critical
    share    value > warn % of the metric `ref` (ref > 0)   value > critical % of it
    rising   above `warn` for `window_s` s and higher       the same for `critical` s
             than `window_s` s ago
    rose     the counter rose within `window_s` s           it rose by >= critical within it
    """

    metric: str
    rule: str
    warn: float | None = None
    critical: float | None = None
    ref: str | None = None
    window_s: float = 60.0
    why: str = ""
    unit: str = ""

    def describe(self) -> tuple[str, str]:
        """(warn, critical) as sentences, for the docs and the tooltips."""
        n = _number
        if self.rule == "above":
            return (f"> {n(self.warn)}{self.unit}" if self.warn is not None else "—",
                    f"> {n(self.critical)}{self.unit}" if self.critical is not None else "—")
        if self.rule == "below":
            return f"< {METRIC_LABEL.get(self.ref, self.ref)}", f"<= {n(self.critical)}"
        if self.rule == "share":
            ref = METRIC_LABEL.get(self.ref, self.ref)
            return f"> {n(self.warn)} % of {ref}", f"> {n(self.critical)} % of {ref}"
        if self.rule == "rising":
            return (f"above {n(self.warn)} and rising for {n(self.window_s)} s",
                    f"above {n(self.warn)} and rising for {n(self.critical)} s")
        if self.rule == "rose":
            return (f"rose in the last {n(self.window_s)} s",
                    f"rose by >= {n(self.critical)} in the last {n(self.window_s)} s" if self.critical else "—")
        raise ValueError(f"unknown threshold rule {self.rule!r}")


def _number(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,g}"


_TRIM = FeedOptions().trim_maxlen
_BATCH = WriterConfig(consumer="-").batch_rows
_BUFFER = WriterConfig(consumer="-").max_buffer_rows
METRIC_LABEL = {"feed.connections_planned": "planned", "redis.maxmemory": "maxmemory"}

THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("feed.connections", "below", critical=0, ref="feed.connections_planned",
              why="a socket of the plan is down; none up means no market data at all"),
    Threshold("feed.reconnects", "rose", critical=5, window_s=60,
              why="sockets are dropping; five in a minute is a flapping feed"),
    Threshold("feed.gaps", "rose", window_s=60,
              why="instruments resumed after a break: what traded meanwhile was not seen"),
    Threshold("feed.malformed", "rose", window_s=600, why="frames the feed could not decode in the last 10 min"),
    Threshold("redis.memory", "share", warn=80, critical=95, ref="redis.maxmemory",
              why="near maxmemory Redis evicts or refuses writes (only when maxmemory is set)"),
    Threshold("redis.length.*", "above", warn=1.2 * _TRIM, critical=5 * _TRIM,
              why=f"the feed trims streams to {_TRIM:,} entries but never below what the writer has "
                  "not acknowledged: a longer stream is a writer behind"),
    Threshold("writer.lag_s", "above", warn=2, critical=10, unit=" s", why="rows reach the database late"),
    Threshold("writer.pending", "rising", warn=_BATCH, critical=120, window_s=30,
              why=f"more than a commit of one stream ({_BATCH:,}) delivered and not acknowledged, and growing: "
                  "the database does not keep up (or is down)"),
    Threshold("writer.pending", "above", warn=0.9 * _BUFFER,
              why=f"the writer's buffer ({_BUFFER:,} rows) is full: it reads nothing more until the database "
                  "takes rows"),
    Threshold("writer.dead_letters", "above", warn=0,
              why="entries the writer could not store (bad JSON, missing keys), kept with the reason"),
)


def thresholds_for(metric: str, table: Iterable[Threshold] = THRESHOLDS) -> list[Threshold]:
    return [t for t in table if fnmatch.fnmatchcase(metric, t.metric)]


def format_value(kind: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if kind == "rate":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"
    if kind == "seconds":
        return f"{value:,.2f} s" if value < 10 else f"{value:,.0f} s"
    if kind == "bytes":
        for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
            if value >= size:
                return f"{value / size:,.1f} {unit}"
        return f"{value:,.0f} B"
    return f"{value:,.0f}"


def writer_lag(record: dict) -> float | None:
    """Receive-to-commit lag: the writer's `lag_s` (its last batch), or, while entries wait and
    nothing has been committed for longer (the database is down or stuck), the time since its
    last commit: the entries waiting are at least that late."""
    lag, idle = record.get("lag_s"), record.get("last_commit_age_s")
    if record.get("pending") and idle is not None and (lag is None or idle > lag):
        return idle
    return lag


# ---- the model (pure) --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    level: str
    reason: str | None = None


@dataclass(frozen=True)
class GroupStatus:
    level: str
    text: str                 # one line: "fno_feed · streaming · healthy"
    problem: str | None = None


class MonitorModel:
    """The last `window_s` seconds of every metric, from samples (dicts, see `Collector`).

    A sample has `ts` (epoch seconds) and any of: `redis` {connected, error, used_memory,
    maxmemory}, `streams` {stream: {length, added}}, `feed` and `writer` (heartbeat records as
    published, or None when there is none), `db` {ok, error, rows: {table: count or None}}.
    Parts absent from a sample leave their metrics as they were (the database is counted every
    10 s, Redis every second); a sample with Redis disconnected makes its figures unknown.
    """

    def __init__(self, window_s: float = WINDOW_S, thresholds: Iterable[Threshold] = THRESHOLDS):
        self.window_s = window_s
        self.thresholds = tuple(thresholds)
        self.series: dict[str, deque[tuple[float, float | None]]] = {m.key: deque() for m in METRICS}
        self.extra: dict[str, float | None] = {}   # not drawn: planned connections, maxmemory
        self.latest_ts: float | None = None
        self.redis: dict[str, Any] = {}
        self.records: dict[str, dict | None] = {"feed": None, "writer": None}
        self.db: dict[str, Any] | None = None
        self.db_ts: float | None = None
        self._added: dict[str, tuple[float, int]] = {}

    # ---- input ----------------------------------------------------------------------------------
    def add(self, sample: dict[str, Any]) -> None:
        ts = float(sample["ts"])
        if "redis" in sample:
            self.latest_ts = ts if self.latest_ts is None else max(self.latest_ts, ts)
            self.redis = dict(sample["redis"])
            if self.redis.get("connected"):
                self._add_redis(ts, sample)
            else:
                for m in METRICS:
                    if m.group != "db":
                        self._put(m.key, ts, None)
                self.records = {"feed": None, "writer": None}
                self._added.clear()
        if "db" in sample:
            self.db, self.db_ts = dict(sample["db"]), ts
            rows = self.db.get("rows") or {}
            for t in EVENT_TABLES.values():
                self._put(f"db.rows.{t.name}", ts, rows.get(t.name) if self.db.get("ok") else None)
        self._trim(self.latest_ts or ts)

    def _add_redis(self, ts: float, sample: dict[str, Any]) -> None:
        self._put("redis.memory", ts, self.redis.get("used_memory"))
        self.extra["redis.maxmemory"] = self.redis.get("maxmemory") or None
        streams = sample.get("streams") or {}
        for s in bus.STORED_STREAMS:
            info = streams.get(s) or {}
            self._put(f"redis.length.{short(s)}", ts, info.get("length"))
            self._put(f"feed.events_per_s.{short(s)}", ts, self._rate(s, ts, info.get("added")))
        self._put("writer.dead_letters", ts, (streams.get(bus.STREAM_DEAD_LETTER) or {}).get("length"))
        feed, writer = sample.get("feed"), sample.get("writer")
        self.records = {"feed": feed, "writer": writer}
        f, w = feed or {}, writer or {}
        for name in ("frames_per_s", "connections", "reconnects", "gaps", "malformed"):
            self._put(f"feed.{name}", ts, f.get(name))
        self.extra["feed.connections_planned"] = f.get("connections_planned")
        for name in ("rows_per_s", "pending"):
            self._put(f"writer.{name}", ts, w.get(name))
        self._put("writer.lag_s", ts, writer_lag(w))

    def _rate(self, stream: str, ts: float, added: int | None) -> float | None:
        """Entries per second from the growth of the stream's `added` counter."""
        if added is None:
            self._added.pop(stream, None)
            return None
        before = self._added.get(stream)
        self._added[stream] = (ts, added)
        if before is None or ts <= before[0] or added < before[1]:  # first look, or Redis restarted
            return None
        return (added - before[1]) / (ts - before[0])

    def _put(self, key: str, ts: float, value: float | None) -> None:
        points = self.series[key]
        if points and ts < points[-1][0]:
            return  # out of order: keep the series monotonic
        points.append((ts, None if value is None else float(value)))

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        for points in self.series.values():
            while points and points[0][0] < horizon:
                points.popleft()

    # ---- output ---------------------------------------------------------------------------------
    def value(self, key: str) -> float | None:
        points = self.series[key]
        return points[-1][1] if points else None

    def text(self, key: str) -> str:
        text = format_value(METRIC[key].kind, self.value(key))
        if key == "feed.connections" and self.value(key) is not None:
            planned = self.extra.get("feed.connections_planned")
            text += f" / {planned:,.0f}" if planned is not None else ""
        if key == "redis.memory" and self.redis.get("used_memory_human") and self.value(key) is not None:
            text = str(self.redis["used_memory_human"])
        return text

    def points(self, key: str, now: float | None = None) -> tuple[list[float], list[float]]:
        """(seconds before `now`, values with NaN for unknown) for a sparkline."""
        now = self.latest_ts if now is None else now
        xs, ys = [], []
        for ts, v in self.series[key]:
            xs.append(ts - (now or ts))
            ys.append(math.nan if v is None else v)
        return xs, ys

    def judge(self, key: str) -> Judgement:
        """The worst level any threshold of THRESHOLDS gives the metric now; IDLE when unknown."""
        if self.value(key) is None:
            return Judgement(IDLE, None)
        worst = Judgement(OK, None)
        for t in self.thresholds:
            if fnmatch.fnmatchcase(key, t.metric):
                j = self._apply(t, key)
                if _RANK[j.level] > _RANK[worst.level]:
                    worst = j
        return worst

    def _apply(self, t: Threshold, key: str) -> Judgement:
        v = self.value(key)
        assert v is not None
        warn_text, critical_text = t.describe()
        if t.rule == "above":
            if t.critical is not None and v > t.critical:
                return Judgement(BAD, f"{format_value(METRIC[key].kind, v)} {critical_text}: {t.why}")
            if t.warn is not None and v > t.warn:
                return Judgement(WARN, f"{format_value(METRIC[key].kind, v)} {warn_text}: {t.why}")
        elif t.rule == "below":
            ref = self.extra.get(t.ref) if t.ref else None
            if ref:  # nothing planned: nothing to judge
                if t.critical is not None and v <= t.critical:
                    return Judgement(BAD, f"{v:,.0f} of {ref:,.0f} up: {t.why}")
                if v < ref:
                    return Judgement(WARN, f"{v:,.0f} of {ref:,.0f} up: {t.why}")
        elif t.rule == "share":
            ref = self.extra.get(t.ref) if t.ref else None
            if ref:
                pct = 100 * v / ref
                if t.critical is not None and pct > t.critical:
                    return Judgement(BAD, f"{pct:.0f} % of {METRIC_LABEL.get(t.ref, t.ref)}: {t.why}")
                if t.warn is not None and pct > t.warn:
                    return Judgement(WARN, f"{pct:.0f} % of {METRIC_LABEL.get(t.ref, t.ref)}: {t.why}")
        elif t.rule == "rising":
            for level, span in ((BAD, t.critical), (WARN, t.window_s)):
                if span is not None and self._rising(key, span, t.warn or 0):
                    return Judgement(level, f"above {_number(t.warn)} and rising for {_number(span)} s: {t.why}")
        elif t.rule == "rose":
            rise = self._rise(key, t.window_s)
            if t.critical is not None and rise >= t.critical:
                return Judgement(BAD, f"+{rise:,.0f} in the last {_number(t.window_s)} s: {t.why}")
            if rise > 0:
                return Judgement(WARN, f"+{rise:,.0f} in the last {_number(t.window_s)} s: {t.why}")
        return Judgement(OK, None)

    def _window(self, key: str, span: float) -> list[tuple[float, float | None]]:
        now = self.series[key][-1][0]
        return [(ts, v) for ts, v in self.series[key] if ts >= now - span]

    def _rising(self, key: str, span: float, floor: float) -> bool:
        """Above `floor` at every sample of the last `span` s (which the series must cover) and
        higher now than at its start."""
        window = self._window(key, span)  # never empty: it ends with the newest point
        covered = len(self.series[key]) > len(window) or window[-1][0] - window[0][0] >= span - SAMPLE_EVERY_S
        if not covered or any(v is None or v <= floor for _, v in window):
            return False
        return window[-1][1] > window[0][1]

    def _rise(self, key: str, span: float) -> float:
        """How much a counter rose within the last `span` s; a fall (the service restarted and
        counts from 0 again) is not a rise."""
        values = [v for _, v in self._window(key, span) if v is not None]
        return sum(max(0.0, b - a) for a, b in itertools.pairwise(values))

    def redis_status(self, now: float | None = None) -> GroupStatus:
        now = time.time() if now is None else now
        if self.latest_ts is None:
            return GroupStatus(IDLE, "connecting…")
        age = now - self.latest_ts
        if age > STALE_AFTER_S:
            level = BAD if age > 3 * STALE_AFTER_S else WARN
            return GroupStatus(level, f"not answering for {age:.0f} s",
                               "no sample from Redis: it is blocked, slow, or the network is down")
        if not self.redis.get("connected"):
            return GroupStatus(BAD, "disconnected", self.redis.get("error"))
        text = "connected"
        if self.redis.get("version"):
            text += f" · Redis {self.redis['version']}"
        return GroupStatus(OK, text)

    def service_status(self, group: str, now: float | None = None) -> GroupStatus:
        """The heartbeat of the feed or the writer, as bus.assess_health judges it."""
        redis_state = self.redis_status(now)
        if redis_state.level != OK:
            return GroupStatus(IDLE, "unknown: no answer from Redis")
        record = self.records.get(group)
        if record is None:
            return GroupStatus(IDLE, "no heartbeat: not running")
        healthy, problem = bus.assess_health(record, now=self.latest_ts)
        service = record.get("service", group)
        text = f"{service} · {record.get('state', '?')} · {'healthy' if healthy else 'unhealthy'}"
        if group == "writer" and record.get("consumer"):
            text += f" · consumer {record['consumer']}"
        if not healthy:
            return GroupStatus(BAD, text, problem)
        return GroupStatus(WARN if problem else OK, text, problem)

    def db_status(self, now: float | None = None) -> GroupStatus:
        if self.db is None:
            return GroupStatus(IDLE, "not counted yet")
        age = (time.time() if now is None else now) - (self.db_ts or 0)
        if not self.db.get("ok"):
            return GroupStatus(BAD, "unreachable", self.db.get("error"))
        if self.db.get("note"):
            return GroupStatus(IDLE, self.db["note"])
        return GroupStatus(OK, f"counted {age:.0f} s ago · every {DB_COUNT_EVERY_S:.0f} s")

    def group_status(self, group: str, now: float | None = None) -> GroupStatus:
        if group == "redis":
            return self.redis_status(now)
        if group == "db":
            return self.db_status(now)
        return self.service_status(group, now)


# ---- the collector (blocking: worker threads only) ------------------------------------------------------
# Entries of a stream after an id, counted inside Redis (only the count travels): used on a
# server without XINFO's entries-added (Redis < 7) when the stream was trimmed since the last look.
# Exact unless the trim reached entries added since (the feed keeps a million, far more than a second's).
_COUNT_AFTER_LUA = "return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])"
COUNT_CAP = 50_000
# Rows with recv_ts since midnight also have an event_id (the Redis time of XADD, which comes
# after the receive) since midnight: the primary key bounds the scan to today. The margin covers
# a Redis clock behind the feed's.
_CLOCK_MARGIN_MS = 60_000


@dataclass
class _StreamLook:
    length: int
    first: str | None
    last: str
    added: int


class Collector:
    """Reads samples for `MonitorModel`. Every method blocks (network, database): call them from
    `Poller` threads only."""

    def __init__(self, connect: Callable[[], redis.Redis], engine_factory: Callable[[], Any] | None = None,
                 *, heartbeat_service: str | None = None, count_cap: int = COUNT_CAP):
        self.connect = connect
        self.engine_factory = engine_factory
        self.heartbeat_service = heartbeat_service
        self.count_cap = count_cap
        self._client: redis.Redis | None = None
        self._engine = None
        self._looks: dict[str, _StreamLook] = {}
        self.gui_seen = time.time()   # the window sets this each refresh (its own heartbeat)
        self.samples = 0

    @classmethod
    def for_settings(cls, settings, **kwargs) -> Collector:
        def connect() -> redis.Redis:
            # start=False: looking never starts a server; no retries: a down Redis is said at once
            return bus.connect(settings, start=False, socket_timeout=2, socket_connect_timeout=2,
                               retry=Retry(NoBackoff(), 0))

        def engine():
            url = settings.database_url()
            if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
                return None  # no database yet; do not create an empty file by looking
            from ..db_setup import get_engine
            return get_engine(settings=settings, create=False)
        return cls(connect, engine, **kwargs)

    # ---- Redis ------------------------------------------------------------------------------------
    def read_redis(self) -> dict[str, Any]:
        """One sample of Redis: memory, streams, the feed's and the writer's heartbeats."""
        ts = time.time()
        try:
            if self._client is None:
                self._client = self.connect()
            client = self._client
            info = client.info("server") | client.info("memory")
            streams = {s: self._stream(client, s) for s in bus.STORED_STREAMS}
            streams[bus.STREAM_DEAD_LETTER] = {"length": client.xlen(bus.STREAM_DEAD_LETTER)}
            feeds = [r for r in (bus.read_health(client, s) for s in FEED_SERVICES) if r is not None]
            sample = {
                "ts": ts,
                "redis": {"connected": True, "error": None, "version": info.get("redis_version"),
                          "used_memory": info.get("used_memory"),
                          "used_memory_human": info.get("used_memory_human"),
                          "maxmemory": info.get("maxmemory", 0)},
                "streams": streams,
                "feed": max(feeds, key=lambda r: r.get("ts", 0)) if feeds else None,
                "writer": bus.read_health(client, WRITER_SERVICE),
            }
            self.samples += 1
            self._publish_heartbeat(client)
            return sample
        except Exception as exc:  # noqa: BLE001 - whatever failed, the window says so and retries
            self.close_redis()
            self._looks.clear()
            return {"ts": ts, "redis": {"connected": False, "error": f"{type(exc).__name__}: {exc}"}}

    def _stream(self, client: redis.Redis, stream: str) -> dict[str, Any]:
        """{length, added}: `added` counts the entries ever added that this collector knows of,
        so that its growth is the stream's rate even while the feed trims it."""
        try:
            info = client.xinfo_stream(stream)
        except redis.ResponseError:  # no such stream (yet)
            self._looks.pop(stream, None)
            return {"length": 0, "added": None}
        length = int(info["length"])
        if "entries-added" in info:  # Redis >= 7 counts for us
            return {"length": length, "added": int(info["entries-added"])}
        first = bus.text(info["first-entry"][0]) if info.get("first-entry") else None
        last = bus.text(info["last-generated-id"])
        before = self._looks.get(stream)
        if before is None or _id(last) < _id(before.last):
            added = length          # first look, or a new stream: a baseline
        elif last == before.last:
            added = before.added
        elif first == before.first:
            added = before.added + max(0, length - before.length)  # not trimmed: growth is exact
        else:
            added = before.added + int(client.eval(_COUNT_AFTER_LUA, 1, stream, before.last, self.count_cap))
        self._looks[stream] = _StreamLook(length, first, last, added)
        return {"length": length, "added": added}

    def _publish_heartbeat(self, client: redis.Redis) -> None:
        """Run as the `services_monitor` service, say that the window is alive and refreshing."""
        if self.heartbeat_service is None:
            return
        gui_age = time.time() - self.gui_seen
        problem = f"the window has not refreshed for {gui_age:.0f} s" if gui_age > 10 else None
        bus.publish_health(client, bus.heartbeat(
            self.heartbeat_service, "watching" if problem is None else "frozen", problem is None, problem,
            samples=self.samples, gui_age_s=round(gui_age, 1)))

    def close_redis(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    # ---- database ---------------------------------------------------------------------------------
    def count_rows(self) -> dict[str, Any]:
        """Today's rows per event table (recv_ts since 00:00 IST): a sample with `db`."""
        ts = time.time()
        try:
            if self._engine is None and self.engine_factory is not None:
                self._engine = self.engine_factory()
            if self._engine is None:
                return {"ts": ts, "db": {"ok": True, "error": None, "rows": {},
                                         "note": "no database yet: the writer has not run"}}
            start_ns = day_start_ns(ist_today())
            first_id = (start_ns // 1_000_000 - _CLOCK_MARGIN_MS) << 20
            rows: dict[str, int | None] = {}
            with self._engine.connect() as conn:
                existing = set(inspect(conn).get_table_names())
                for table in EVENT_TABLES.values():
                    if table.name not in existing:
                        rows[table.name] = None
                        continue
                    query = (select(func.count()).select_from(table)
                             .where(table.c.event_id >= first_id, table.c.recv_ts >= start_ns))
                    rows[table.name] = int(conn.execute(query).scalar_one())
            note = None if any(v is not None for v in rows.values()) else "no tables yet: the writer has not run"
            return {"ts": ts, "db": {"ok": True, "error": None, "rows": rows, "note": note}}
        except Exception as exc:  # noqa: BLE001 - the window shows it and counts again later
            self.close_db()  # a fresh engine next time (a changed password, a restarted server)
            return {"ts": ts, "db": {"ok": False, "error": mask_url(f"{type(exc).__name__}: {exc}")[:300]}}

    def close_db(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Poller(threading.Thread):
    """Calls `read()` every `every_s` seconds in its own thread and queues what it returns; the
    window drains `out` from a timer. A slow call delays only the next one of its own kind."""

    def __init__(self, name: str, read: Callable[[], dict], every_s: float, halt: threading.Event,
                 maxlen: int = 1000, on_exit: Callable[[], None] | None = None):
        super().__init__(name=name, daemon=True)
        self.read, self.every_s, self.halt, self.on_exit = read, every_s, halt, on_exit
        self.out: deque[dict] = deque(maxlen=maxlen)

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                started = time.monotonic()
                try:
                    self.out.append(self.read())
                except Exception:
                    log.exception("%s: reading failed", self.name)
                self.halt.wait(max(0.0, self.every_s - (time.monotonic() - started)))
        finally:
            if self.on_exit is not None:
                self.on_exit()

    def drain(self) -> list[dict]:
        out = []
        while self.out:
            out.append(self.out.popleft())
        return out


# ---- entry point --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..gui.app import run_window
    from ..gui.monitor_view import MonitorView

    parser = argparse.ArgumentParser(
        prog="python -m dhan_trading.services.monitor",
        description="The FNO Services Monitor: feed, Redis, writer and database figures with "
                    "sparklines and warning colours (thresholds: docs/CONTROL_CENTER.md)")
    parser.add_argument("--screenshot", metavar="FILE", help="save the window as a PNG after --after seconds, then exit")
    parser.add_argument("--after", type=finite_number, default=5.0, help="seconds before --screenshot (default 5)")

    def make(settings, _args):
        view = MonitorView(settings, heartbeat_service=MONITOR_SERVICE)
        view.setWindowTitle("FNO Services Monitor")
        view.resize(1280, view.sizeHint().height())
        return view

    return run_window("services_monitor", make, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
