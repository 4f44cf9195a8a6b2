"""The feed as one asyncio program: sockets -> inbox -> publisher -> Redis sink, plus health.

Shutdown order (SIGTERM, Ctrl-C, --duration, or a fatal disconnect reason): close the sockets,
let the publisher empty the inbox, let the sink flush its outbox to Redis (bounded wait), close
the capture. Nothing that was received is left behind while Redis is reachable.
"""
from __future__ import annotations

import asyncio
import logging
import os
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


class Feed:
    def __init__(self, *, service: str, plans: Sequence[ConnectionPlan], feed_url: str,
                 redis_url: str, ticks: Mapping[tuple[str, int], float],
                 depth_plan: ConnectionPlan | None = None, depth_url: str | None = None,
                 capture_dir: Path | None = None, options: FeedOptions = FeedOptions()):
        self.service = service
        self.options = options
        self.redis_url = redis_url
        self.stop = asyncio.Event()
        self.fatal: tuple[int, str] | None = None
        self.inbox = Inbox(options.inbox_limit)
        self.sink = RedisSink(redis_url, service, max_events=options.buffer_events)
        self.capture = CaptureWriter(capture_dir) if capture_dir is not None else None
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

    def _connection(self, name: str, url: str, plan: ConnectionPlan, kind: int) -> FeedConnection:
        o = self.options
        return FeedConnection(name, url, plan, self.inbox, self.stop, self._on_fatal, kind=kind,
                              stall_timeout=o.stall_timeout, cool_off=o.cool_off,
                              backoff=Backoff(o.backoff_initial, o.backoff_cap, stable_after=o.stable_after))

    def _on_fatal(self, reason: int, message: str) -> None:
        if self.fatal is None:
            self.fatal = (reason, message)
            log.critical("%s. The feed stops and will not retry.", message)
        self.stop.set()

    async def run(self, duration: float | None = None) -> None:
        """Run until `stop` is set (or `duration` seconds pass), then shut down in order."""
        sender = asyncio.create_task(self.sink.run(), name="redis-sink")
        done = asyncio.Event()
        publisher = asyncio.create_task(self.publisher.run(done), name="publisher")
        sockets = [asyncio.create_task(c.run(), name=c.name) for c in self.connections]
        health = asyncio.create_task(self._health_loop(), name="health")
        try:
            if duration is not None:
                try:
                    await asyncio.wait_for(self.stop.wait(), duration)
                except asyncio.TimeoutError:
                    pass
            else:
                await self.stop.wait()
        finally:
            self.stop.set()
            await asyncio.gather(*sockets, return_exceptions=True)
            done.set()
            await publisher
            await self.sink.close(self.options.flush_timeout)
            health.cancel()
            await asyncio.wait([sender, health], timeout=5)
            sender.cancel()
            if self.capture is not None:
                self.capture.close()
            await asyncio.to_thread(self._publish_health, self.health(final=True))
            if self._client is not None:
                self._client.close()
            log.info("feed stopped: %s", self.summary())

    # ---- health --------------------------------------------------------------------------------
    def health(self, final: bool = False) -> dict:
        now_ns = time.time_ns()
        last = max((c.stats.last_frame_ns for c in self.connections), default=0)
        pub, sink = self.publisher, self.sink
        return {
            "state": "stopped" if final else ("fatal" if self.fatal else "running"),
            "pid": os.getpid(),
            "connections": sum(c.connected for c in self.connections),
            "connections_planned": len(self.connections),
            "instruments": self.instruments,
            "frames": sum(c.stats.frames for c in self.connections),
            "frames_per_s": round(self.frames_per_s, 1),
            "packets": pub.packets,
            "events": pub.events,
            "last_frame_age_s": round((now_ns - last) / 1e9, 3) if last else None,
            "reconnects": sum(c.stats.reconnects for c in self.connections),
            "stalls": sum(c.stats.stalls for c in self.connections),
            "malformed": pub.malformed,
            "gaps": pub.gaps.gaps,
            "queue_depth": len(self.inbox.items),
            "inbox_dropped": self.inbox.dropped,
            "redis_connected": sink.connected,
            "redis_buffered_events": sink.buffered,
            "redis_dropped_events": sink.dropped_events,
            "redis_sent_events": sink.sent_events,
            "fatal_reason": self.fatal[0] if self.fatal else None,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def summary(self) -> str:
        h = self.health(final=True)
        return (f"{h['frames']} frames, {h['packets']} packets, {h['events']} events, "
                f"{h['redis_sent_events']} sent to Redis, {h['redis_buffered_events']} unsent, "
                f"{h['redis_dropped_events']} dropped on overflow, {h['inbox_dropped']} dropped in the inbox, "
                f"{h['malformed']} malformed, {h['reconnects']} reconnects, {h['gaps']} gap events")

    async def _health_loop(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(self.options.health_interval)
            now = time.monotonic()
            frames = sum(c.stats.frames for c in self.connections)
            self.frames_per_s = (frames - self._rate_frames) / max(1e-6, now - self._rate_at)
            self._rate_frames, self._rate_at = frames, now
            if self.capture is not None and now - last_flush >= 1.0:
                self.capture.flush()
                last_flush = now
            await asyncio.to_thread(self._housekeeping, self.health())

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1)
        return self._client

    def _publish_health(self, record: dict) -> None:
        try:
            bus.publish_health(self._redis(), self.service, record)
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
