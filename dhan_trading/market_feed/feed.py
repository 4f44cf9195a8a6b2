"""The feed as one asyncio program: sockets -> inbox -> publisher -> Redis sink, plus health.

Every task is essential and watched: one that raises (or returns while the feed is running) is
logged with its traceback, `failed` says which and why, and the feed shuts down so that the
launcher exits non-zero and the supervisor restarts it. The raw capture is not a task of the
loop: it writes on a thread of its own (`Recorder`) and a failing disk degrades only the capture.

Shutdown order (SIGTERM, Ctrl-C, --duration, a fatal disconnect reason, or a dead task): close
the sockets, let the publisher empty the inbox, let the sink flush its outbox to Redis (bounded
wait), close the capture. Nothing that was received is left behind while Redis is reachable.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import redis

from .. import bus
from ..capture import CaptureWriter
from .backoff import Backoff
from .connection import DEPTH, MAIN, FeedConnection, Inbox
from .plan import ConnectionPlan
from .publisher import Publisher
from .recorder import Recorder
from .sink import RedisSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedOptions:
    """Tunables; the defaults are the production values, tests shorten the timers."""

    stall_timeout: float = 60.0
    cool_off: float = 60.0              # after an 805 or an HTTP 429
    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    stable_after: float = 30.0          # a connection up this long resets the backoff
    inbox_limit: int = 200_000          # frames waiting for the publisher
    buffer_events: int = 500_000        # events waiting for Redis (outage buffer)
    batch_frames: int = 2000
    health_interval: float = 1.0
    trim_maxlen: int = 1_000_000        # stream length kept (never below unacknowledged entries)
    flush_timeout: float = 15.0         # at shutdown, wait this long for Redis to take the rest
    redis_grace: float = 2.0            # Redis unreachable this long: the health record says so
    drop_recent: float = 10.0           # frames dropped in the inbox this recently: unhealthy


class Feed:
    def __init__(self, *, service: str, plans: Sequence[ConnectionPlan], feed_url: str,
                 redis_url: str, ticks: Mapping[tuple[str, int], float],
                 depth_plan: ConnectionPlan | None = None, depth_url: str | None = None,
                 capture_dir: Path | None = None, options: FeedOptions = FeedOptions()):
        self.service = service
        self.options = options
        self.redis_url = redis_url
        self.stop = asyncio.Event()
        self.fatal: tuple[int | None, str] | None = None  # (Dhan's reason code, or None; message)
        self.failed: str | None = None    # an essential task died: which, and why
        self.inbox = Inbox(options.inbox_limit)
        self.sink = RedisSink(redis_url, service, max_events=options.buffer_events)
        self.capture = Recorder(CaptureWriter(capture_dir)) if capture_dir is not None else None
        self.publisher = Publisher(self.inbox, self.sink, ticks, self.capture, batch_frames=options.batch_frames)
        self.connections = [self._connection(f"feed#{p.index}", feed_url, p, MAIN) for p in plans]
        if depth_plan is not None and depth_url:
            self.connections.append(self._connection("depth20", depth_url, depth_plan, DEPTH))
        self.instruments = sum(len(p.instruments) for p in plans)
        self.started = time.time()
        self._rate_frames = 0
        self._rate_at = time.monotonic()
        self.frames_per_s = 0.0
        self._client: redis.Redis | None = None
        self._trim_ok = True
        self._inbox_dropped = (0, 0.0)  # the inbox's drop count as last seen, and when it grew

    def _connection(self, name: str, url: str, plan: ConnectionPlan, kind: int) -> FeedConnection:
        o = self.options
        return FeedConnection(name, url, plan, self.inbox, self.stop, self._on_fatal, kind=kind,
                              stall_timeout=o.stall_timeout, cool_off=o.cool_off,
                              backoff=Backoff(o.backoff_initial, o.backoff_cap, stable_after=o.stable_after))

    def _on_fatal(self, reason: int | None, message: str) -> None:
        if self.fatal is None:
            self.fatal = (reason, message)
            log.critical("%s. The feed stops and will not retry.", message)
        self.stop.set()

    def _watch(self, task: asyncio.Task) -> None:
        """Done-callback of every essential task: a task that raised, or that ended while the
        feed was still running, stops the feed as failed (exit non-zero, supervisor restarts)."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None and self.stop.is_set():
            return  # ended by the shutdown, as it should
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned while the feed was running"
        message = f"the feed's {task.get_name()} task died ({why})"
        log.critical("%s; the feed stops so that it can be restarted", message,
                     exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)
        if self.failed is None:
            self.failed = message
        self.stop.set()

    def _start(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._watch)
        return task

    async def run(self, duration: float | None = None) -> None:
        """Run until `stop` is set (or `duration` seconds pass, or a task dies), then shut down in
        order. `fatal` or `failed` tell the caller how it ended."""
        sender = self._start(self.sink.run(), "redis-sink")
        done = asyncio.Event()
        publisher = self._start(self.publisher.run(done), "publisher")
        sockets = [self._start(c.run(), c.name) for c in self.connections]
        health = self._start(self._health_loop(), "health")
        try:
            if duration is not None:
                try:
                    await asyncio.wait_for(self.stop.wait(), duration)
                except asyncio.TimeoutError:
                    pass
            else:
                await self.stop.wait()
        finally:
            await self._shutdown(sender, publisher, sockets, health, done)

    async def _shutdown(self, sender: asyncio.Task, publisher: asyncio.Task, sockets: list[asyncio.Task],
                        health: asyncio.Task, done: asyncio.Event) -> None:
        """Each step runs whatever the previous one did: the sink is always flushed."""
        self.stop.set()
        _, late = await asyncio.wait(sockets, timeout=self.options.flush_timeout)
        for task in late:  # e.g. stuck in a handshake: its frames so far are already in the inbox
            log.warning("%s did not close within %.0f s; cancelled", task.get_name(), self.options.flush_timeout)
            task.cancel()
        done.set()
        await asyncio.wait([publisher])
        if self.inbox.items:
            log.error("%d frames were received but not published (the publisher died); they are in "
                      "the raw capture only if it was written before", len(self.inbox.items))
        if sender.done():
            log.error("%d events not delivered to Redis: the Redis sender died", self.sink.buffered)
        else:
            await self.sink.close(self.options.flush_timeout)
        health.cancel()
        await asyncio.wait([sender, health], timeout=5)
        sender.cancel()
        if self.capture is not None:
            await asyncio.to_thread(self.capture.close)
        await asyncio.to_thread(self._publish_health, self.health(final=True))
        if self._client is not None:
            self._client.close()
        log.info("feed stopped: %s", self.summary())

    # ---- health --------------------------------------------------------------------------------
    def health(self, final: bool = False) -> dict:
        """The heartbeat record (bus.heartbeat): state, healthy, problem, and the feed's figures."""
        now_ns = time.time_ns()
        last = max((c.stats.last_frame_ns for c in self.connections), default=0)
        pub, sink = self.publisher, self.sink
        state, healthy, problem = self._assess(final)
        return bus.heartbeat(
            self.service, state, healthy, problem,
            connections=sum(c.connected for c in self.connections),
            connections_planned=len(self.connections),
            instruments=self.instruments,
            frames=sum(c.stats.frames for c in self.connections),
            frames_per_s=round(self.frames_per_s, 1),
            packets=pub.packets,
            events=pub.events,
            last_frame_age_s=round((now_ns - last) / 1e9, 3) if last else None,
            reconnects=sum(c.stats.reconnects for c in self.connections),
            stalls=sum(c.stats.stalls for c in self.connections),
            malformed=pub.malformed,
            gaps=pub.gaps.gaps,
            queue_depth=len(self.inbox.items),
            inbox_dropped=self.inbox.dropped,
            redis_connected=sink.connected,
            redis_buffered_events=sink.buffered,
            redis_dropped_events=sink.dropped_events,
            redis_sent_events=sink.sent_events,
            redis_refused_commands=sink.refused_commands,
            capture="off" if self.capture is None else self.capture.status,
            capture_frames=self.capture.frames if self.capture else 0,
            capture_dropped_frames=self.capture.dropped_frames if self.capture else 0,
            fatal_reason=self.fatal[0] if self.fatal else None,
            uptime_s=round(time.time() - self.started, 1),
        )

    def _assess(self, final: bool) -> tuple[str, bool, str | None]:
        """(state, healthy, problem). Unhealthy when the feed cannot deliver market data: dead
        task, fatal code, a socket without a working connection for longer than the stall
        timeout, Redis refusing events or unreachable. A failing raw capture leaves it healthy
        (publishing goes on) but is named in `problem`. Frames dropped because the inbox was full
        are lost market data: unhealthy for `drop_recent` s after the count last grew."""
        if self.failed:
            return "failed", False, self.failed
        if self.fatal:
            return "fatal", False, self.fatal[1]
        if final:
            return "stopped", False, "the feed has stopped"
        now = time.monotonic()
        problems: list[str] = []
        outages = [(c, c.outage(now)) for c in self.connections]
        down = [(c, s) for c, s in outages if s is not None]
        timeout = self.options.stall_timeout
        for c, seconds in down:
            if seconds > timeout:
                problems.append(f"{c.name} has had no working connection for {seconds:.0f} s (stall timeout "
                                f"{timeout:g} s; last error: {c.stats.last_error or 'none'})")
        if problems:
            problems.insert(0, f"{len(self.connections) - len(down)} of {len(self.connections)} sockets streaming")
        seen, grew_at = self._inbox_dropped
        if self.inbox.dropped != seen:
            self._inbox_dropped = seen, grew_at = self.inbox.dropped, now
        if seen and now - grew_at < self.options.drop_recent:
            problems.append(f"the publisher cannot keep up: {seen} frames dropped in the inbox "
                            f"(limit {self.options.inbox_limit}), the last {now - grew_at:.0f} s ago")
        sink = self.sink
        if sink.refusing is not None:
            problems.append(f"Redis refuses the feed's events ({sink.refusing}); {sink.buffered} held for retry")
        elif sink.down_since is not None and now - sink.down_since > self.options.redis_grace:
            problems.append(f"Redis unreachable for {now - sink.down_since:.0f} s; {sink.buffered} events buffered")
        if not down:
            state = "streaming"
        elif len(down) == len(self.connections) and not any(c.stats.connects for c in self.connections):
            state = "connecting"
        else:
            state = "reconnecting"
        if problems:
            return state, False, "; ".join(problems)
        if self.capture is not None and self.capture.failed is not None:
            return state, True, (f"raw capture failed ({self.capture.failed}); {self.capture.dropped_frames} "
                                 "frames not captured; publishing to Redis goes on")
        return state, True, None

    def summary(self) -> str:
        h = self.health(final=True)
        return (f"{h['frames']} frames, {h['packets']} packets, {h['events']} events, "
                f"{h['redis_sent_events']} sent to Redis, {h['redis_buffered_events']} unsent, "
                f"{h['redis_dropped_events']} dropped on overflow, {h['redis_refused_commands']} commands "
                f"refused by Redis, {h['inbox_dropped']} dropped in the inbox, {h['malformed']} malformed, "
                f"{h['reconnects']} reconnects, {h['gaps']} gap events, capture {h['capture']} "
                f"({h['capture_frames']} frames, {h['capture_dropped_frames']} lost)")

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval)
            now = time.monotonic()
            frames = sum(c.stats.frames for c in self.connections)
            self.frames_per_s = (frames - self._rate_frames) / max(1e-6, now - self._rate_at)
            self._rate_frames, self._rate_at = frames, now
            await asyncio.to_thread(self._housekeeping, self.health())

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1)
        return self._client

    def _publish_health(self, record: dict) -> None:
        try:
            bus.publish_health(self._redis(), record)
        except redis.RedisError:
            pass  # Redis is down: the sink logs that once; health resumes when it returns

    def _housekeeping(self, record: dict) -> None:
        """Once a second, off the event loop: health record and safe stream trimming."""
        self._publish_health(record)
        if not self.sink.connected:
            return
        try:
            bus.trim_streams_safely(self._redis(), self.options.trim_maxlen)
            self._trim_ok = True
        except redis.RedisError as exc:
            if self._trim_ok:
                log.warning("stream trimming failed (%s); will retry", exc)
            self._trim_ok = False
