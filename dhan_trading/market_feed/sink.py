"""The Redis side of the feed: a bounded outbox of event batches and one asyncio sender.

Delivery semantics (streams): exactly once while the outbox holds. Batches are pipelined as
plain commands (PUBLISH + XADD per event, one HSET of the latest values), in order. Redis runs
pipelined commands in order, so when the connection breaks mid-batch what was applied is a
prefix of the unconfirmed events. On reconnect the sender reads the last entry of each stream
and drops the unconfirmed events up to the last one Redis already holds, then resends the rest.
(MULTI/EXEC would make this trivially atomic but costs Redis ~40% of its throughput, measured:
docs/FEED.md.) An event is identified by its payload, which carries its receive time in ns and
its instrument; two identical payloads in one unconfirmed batch (a packet repeated within one
frame) could make one of them count as applied. If Redis restarts empty, everything
unconfirmed is resent. Pub/sub is lossy by nature: a resent event may be published twice.

Commands Redis refuses (OOM under `maxmemory` with `noeviction`, READONLY on a replica, LOADING
after a restart) are not sent: the events whose XADD was refused go back to the front of the
outbox, in order, and are sent again after a backoff pause (with PUBLISH only where that was
refused too), so what Redis accepted is never duplicated. Refusals are counted and the health
record says Redis is refusing until a send goes through whole. A refused HSET of `dhan:latest`
is not repeated on its own: the next accepted batch rewrites those fields.

The outbox is bounded (events); on overflow the OLDEST unsent batches are dropped and counted
(the raw capture on disk still has them for replay), so a long Redis outage costs a counted
hole rather than the feed's memory.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import hiredis
from redis.connection import parse_url

from .. import bus
from ..config import mask_url
from . import resp
from .backoff import Backoff

log = logging.getLogger(__name__)


@dataclass
class Batch:
    channels: list[str]
    payloads: list[bytes]
    publish: list[bool] | None = None  # a retry of refused XADDs: PUBLISH again only where True


class RedisUnavailable(ConnectionError):
    pass


class RedisSink:
    """`submit()` never blocks; `run()` sends the outbox in order while Redis is reachable."""

    def __init__(self, url: str, service: str, *, max_events: int = 500_000,
                 coalesce_events: int = 20_000, reply_timeout: float = 10.0,
                 backoff: Backoff | None = None):
        self.url = url
        self.max_events = max_events
        self.coalesce_events = coalesce_events
        self.reply_timeout = reply_timeout
        self.backoff = backoff or Backoff(initial=0.1, cap=5.0, stable_after=10.0)
        self.outbox: deque[Batch] = deque()
        self.buffered = 0           # events in the outbox
        self.inflight = 0           # batches at the front of the outbox being sent now
        self.unconfirmed = 0        # batches that were in flight when the connection broke
        self.resent_skipped = 0     # events found already applied after a break
        self.sent_events = 0
        self.dropped_events = 0
        self.dropped_batches = 0
        self.refused_commands = 0   # commands Redis answered with an error (their events retried)
        self.refusing: str | None = None  # Redis's error while it refuses events, else None
        self.connected = False
        self.down_since: float | None = time.monotonic()  # when the sender lost Redis (None: up)
        self.outages = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._stopped = asyncio.Event()
        self._latest = resp.LatestFields()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    # ---- producer side (the publisher) -------------------------------------------------------
    def submit(self, channels: Sequence[str], payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        self.outbox.append(Batch(list(channels), list(payloads)))
        self.buffered += len(payloads)
        if self.buffered > self.max_events:
            self._overflow()
        self._wake.set()

    def _overflow(self) -> None:
        dropped = 0
        keep = max(self.inflight, self.unconfirmed)  # may be (partly) in Redis: never dropped
        while self.buffered > self.max_events and len(self.outbox) > keep + 1:
            victim = self.outbox[keep]
            del self.outbox[keep]
            self.buffered -= len(victim.payloads)
            dropped += len(victim.payloads)
            self.dropped_batches += 1
        if dropped:
            self.dropped_events += dropped
            log.error("Redis outbox full (%d events buffered, limit %d): dropped the %d oldest unsent "
                      "events (%d dropped so far; they are still in the raw capture for replay)",
                      self.buffered, self.max_events, dropped, self.dropped_events)

    # ---- sender --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Send until `close()` and the outbox is empty; reconnect whenever Redis goes away."""
        # Ends by flags, not by task cancellation: on Python 3.11 asyncio.wait_for can swallow
        # a cancel that races with its own completion, which would leave this loop running.
        while not self._stopped.is_set() and not (self._closing and not self.outbox):
            if not self.connected:
                try:
                    await self._connect()
                except (OSError, RedisUnavailable, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                    await self._lost(exc)
                    try:
                        await asyncio.wait_for(self._stopped.wait(), self.backoff.next_delay())
                    except asyncio.TimeoutError:
                        pass
                    continue
            if not self.outbox:
                self._wake.clear()
                if self._closing:
                    break
                await self._wake.wait()
                continue
            try:
                accepted = await self._send_front()
            except (OSError, RedisUnavailable, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                await self._lost(exc)
                continue
            if not accepted:
                try:
                    await asyncio.wait_for(self._stopped.wait(), self.backoff.next_delay())
                except asyncio.TimeoutError:
                    pass
        self._drop_connection()

    async def close(self, timeout: float = 10.0) -> bool:
        """Flush what is queued (up to `timeout` s); True if everything reached Redis."""
        self._closing = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.outbox and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.outbox:
            log.error("stopping with %d events not delivered to Redis (still in the raw capture)", self.buffered)
        self._stopped.set()
        self._wake.set()
        return not self.outbox

    async def _send_front(self) -> bool:
        """Send the front of the outbox; False when Redis refused some of it (kept for a retry)."""
        take, events, parts, replies = 0, 0, [], 0
        hsets: list[bool] = []
        for batch in self.outbox:
            if take and events + len(batch.payloads) > self.coalesce_events:
                break
            if batch.publish is None:
                parts.append(resp.publish_and_xadd(batch.channels, batch.payloads))
                replies += 2 * len(batch.payloads)
            else:
                parts.append(resp.publish_and_xadd(batch.channels, batch.payloads, batch.publish))
                replies += len(batch.payloads) + sum(batch.publish)
            latest = self._latest.latest(batch.channels, batch.payloads)
            if latest:
                parts.append(resp.hset(bus.LATEST_HASH, latest))
                replies += 1
            hsets.append(bool(latest))
            events += len(batch.payloads)
            take += 1
        self.inflight = take
        assert self._writer is not None
        self._writer.write(b"".join(parts))
        await self._writer.drain()
        refused = await asyncio.wait_for(self._replies(replies), self.reply_timeout)
        if refused:
            self._requeue_refused(take, hsets, refused)
            return False
        for _ in range(take):
            done = self.outbox.popleft()
            self.buffered -= len(done.payloads)
        self.inflight = 0
        self.sent_events += events
        if self.refusing is not None:
            log.warning("Redis accepts events again (%d commands were refused in all)", self.refused_commands)
            self.refusing = None
            self.backoff.reset()
        return True

    def _requeue_refused(self, take: int, hsets: list[bool], refused: dict[int, object]) -> None:
        """Replace the `take` batches just sent by one batch of the events whose XADD Redis refused,
        in their order; what Redis accepted is done and never sent again."""
        channels: list[str] = []
        payloads: list[bytes] = []
        publish: list[bool] = []
        stored = position = 0
        for k in range(take):
            batch = self.outbox.popleft()
            self.buffered -= len(batch.payloads)
            flags = batch.publish
            for j, (channel, payload) in enumerate(zip(batch.channels, batch.payloads)):
                published = True
                if flags is None or flags[j]:
                    published = position not in refused
                    position += 1
                if position in refused:
                    channels.append(channel)
                    payloads.append(payload)
                    publish.append(not published)
                else:
                    stored += 1
                position += 1
            position += hsets[k]
        if payloads:
            self.outbox.appendleft(Batch(channels, payloads, publish))
            self.buffered += len(payloads)
        self.inflight = 0
        self.sent_events += stored
        self.refused_commands += len(refused)
        error = str(next(iter(refused.values())))
        if self.refusing is None:
            log.error("Redis refuses the feed's commands (%s); %d events kept for retry, in order, "
                      "with backoff (%d buffered)", error, len(payloads), self.buffered)
        self.refusing = error

    async def _replies(self, count: int) -> dict[int, object]:
        """Read `count` replies; the refused ones (Redis errors) by their position."""
        assert self._reader is not None
        parser = hiredis.Reader()
        refused: dict[int, object] = {}
        seen = 0
        while seen < count:
            reply = parser.gets()
            if reply is False:
                data = await self._reader.read(1 << 16)
                if not data:
                    raise RedisUnavailable("Redis closed the connection")
                parser.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                refused[seen] = reply
            seen += 1
        return refused

    async def _command(self, *args) -> object:
        assert self._writer is not None
        self._writer.write(resp.command(*args))
        await self._writer.drain()
        parser = hiredis.Reader()
        while (reply := parser.gets()) is False:
            data = await asyncio.wait_for(self._reader.read(1 << 16), self.reply_timeout)
            if not data:
                raise RedisUnavailable("Redis closed the connection")
            parser.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(f"Redis refused {args[0]}: {reply}")
        return reply

    async def _connect(self) -> None:
        params = parse_url(self.url)
        if "path" in params:
            opening = asyncio.open_unix_connection(params["path"], limit=1 << 20)
        else:
            opening = asyncio.open_connection(params.get("host", "127.0.0.1"), params.get("port", 6379), limit=1 << 20)
        self._reader, self._writer = await asyncio.wait_for(opening, 5)
        if params.get("password"):
            auth = [params["username"]] if params.get("username") else []
            await self._command("AUTH", *auth, params["password"])
        if params.get("db"):
            await self._command("SELECT", int(params["db"]))
        await self._command("CLIENT", "SETNAME", "dhan-feed")
        if self.unconfirmed:
            await self._skip_applied()
        if self.outages:
            log.info("Redis is back (%s); sending %d buffered events", mask_url(self.url), self.buffered)
        self.connected = True
        self.down_since = None
        self.backoff.connected(asyncio.get_running_loop().time())

    async def _skip_applied(self) -> None:
        """Drop the unconfirmed events Redis already applied before the connection broke."""
        tails: dict[str, bytes] = {}
        for stream in {bus.CHANNEL_STREAM[c] for b in list(self.outbox)[:self.unconfirmed] for c in set(b.channels)}:
            entries = await self._command("XREVRANGE", stream, "+", "-", "COUNT", 1)
            if entries:
                fields = entries[0][1]
                tails[stream] = dict(zip(fields[::2], fields[1::2])).get(bus.STREAM_FIELD, b"")
        applied, position = 0, 0
        for batch in list(self.outbox)[:self.unconfirmed]:
            for channel, payload in zip(batch.channels, batch.payloads):
                position += 1
                if tails.get(bus.CHANNEL_STREAM[channel]) == payload:
                    applied = position
        self.unconfirmed = 0
        while applied and self.outbox:
            batch = self.outbox[0]
            if applied >= len(batch.payloads):
                self.outbox.popleft()
                cut = len(batch.payloads)
            else:
                cut = applied
                del batch.channels[:cut], batch.payloads[:cut]
                if batch.publish is not None:
                    del batch.publish[:cut]
            applied -= cut
            self.buffered -= cut
            self.sent_events += cut
            self.resent_skipped += cut

    async def _lost(self, exc: BaseException) -> None:
        if self.connected or self.outages == 0 or self.inflight:
            log.warning("Redis unavailable (%s: %s); buffering events (%d now)",
                        type(exc).__name__, exc, self.buffered)
        if self.connected or self.outages == 0:
            self.outages += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
        self.connected = False
        self.unconfirmed = max(self.unconfirmed, self.inflight)
        self.inflight = 0
        self.backoff.disconnected(asyncio.get_running_loop().time())
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None
        self.connected = False
