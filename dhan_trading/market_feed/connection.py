"""One feed WebSocket: connect, subscribe, receive into the inbox, watch for silence, reconnect.

The receive loop does nothing but stamp each frame and append it to the shared inbox (a
bounded deque read by the publisher): no decoding, no Redis, no logging per frame. Disconnect
packets (code 50) are recognised from their first bytes so the feed can stop, cool off or
reconnect at once; everything else about a frame is the publisher's business.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidProxy, InvalidStatus, InvalidURI, WebSocketException

from ..config import mask_url
from ..protocol.packets import DISCONNECT, depth_disconnect_reason
from .backoff import Backoff
from .plan import ConnectionPlan
from .reasons import COOL_OFF, FATAL, describe

log = logging.getLogger(__name__)

MAIN, DEPTH, MARK = 0, 1, 2  # inbox item kinds (MAIN/DEPTH match capture.MAIN/DEPTH)
_DISCONNECT_CODE = bytes([DISCONNECT])


class Inbox:
    """Frames from every socket, in arrival order: `(recv_ts_ns, frame, kind)` tuples.

    Bounded: when the publisher falls this far behind, new frames are counted and dropped
    rather than letting memory grow without limit. MARK items carry `(instruments, reason)` of
    a socket that came back, in the position where its fresh frames begin.
    """

    def __init__(self, limit: int = 200_000):
        self.items: deque = deque()
        self.limit = limit
        self.dropped = 0
        self.wake = asyncio.Event()

    def mark(self, instruments, reason: str) -> None:
        self.items.append((time.time_ns(), None, MARK, (instruments, reason)))
        self.wake.set()


@dataclass
class ConnectionStats:
    frames: int = 0
    disconnect_packets: int = 0
    connects: int = 0
    reconnects: int = 0
    stalls: int = 0
    last_frame_ns: int = 0
    last_reason: int | None = None
    last_error: str | None = None     # why the last connection ended or failed (for the health record)


# Errors of one connection attempt that another attempt may not have: reconnect with backoff.
# (ssl.SSLError and socket.gaierror are OSErrors; InvalidHandshake, ProtocolError and
# ConnectionClosed are WebSocketExceptions.) Anything else is a bug: it ends the task, and the
# feed exits non-zero with the traceback so that its supervisor restarts it.
RETRYABLE = (OSError, WebSocketException, asyncio.TimeoutError, EOFError)


@dataclass
class FeedConnection:
    """A socket of the plan; `run()` keeps it connected until `stop` is set or a fatal reason."""

    name: str
    url: str                          # holds the token: never logged, only `mask_url(url)`
    plan: ConnectionPlan
    inbox: Inbox
    stop: asyncio.Event
    on_fatal: Callable[[int | None, str], None]
    kind: int = MAIN
    stall_timeout: float = 60.0
    cool_off: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    connected: bool = False
    down_since: float = field(default_factory=time.monotonic)  # start of the current outage
    _ws: object = None
    _data_mark: int = 0

    def outage(self, now: float) -> float | None:
        """Seconds this socket has gone without a connection that delivers frames (None while it
        does). A socket that connects but only gets silence or a disconnect packet is still out."""
        if self.connected and self._delivered():
            return None
        return now - self.down_since

    def _delivered(self) -> bool:
        return self.stats.frames - self.stats.disconnect_packets > self._data_mark

    async def run(self) -> None:
        first = True
        stalled = False
        while not self.stop.is_set():
            delay: float | None = None
            try:
                async with connect(self.url, max_size=None, compression=None, open_timeout=10,
                                   close_timeout=2, max_queue=None) as ws:
                    self._ws = ws
                    # Subscribe while already receiving: a server that answers the handshake with
                    # a disconnect packet (expired token, no plan) must be heard, not missed.
                    subscribing = asyncio.create_task(self._subscribe(ws))
                    subscribing.add_done_callback(  # a failed subscribe ends this connection now
                        lambda t: t.cancelled() or t.exception() is None or ws.transport.abort())
                    self.connected = True
                    self._data_mark = self.stats.frames - self.stats.disconnect_packets
                    self.stats.connects += 1
                    self.backoff.connected(time.monotonic())
                    if not first:
                        self.stats.reconnects += 1
                        self.inbox.mark(self.plan.keys, "stall" if stalled else "reconnect")
                    log.info("%s connected to %s (%d instruments, %d subscribe messages)", self.name,
                             mask_url(self.url), len(self.plan.instruments), len(self.plan.messages))
                    first = False
                    try:
                        stalled = await self._receive(ws)
                    finally:
                        subscribing.cancel()
                    if subscribing.done() and not subscribing.cancelled() and subscribing.exception():
                        raise subscribing.exception()  # retried if it is a connection error, else loud
            except (InvalidURI, InvalidProxy) as exc:
                # No retry can fix the address itself: stop, say which setting to change.
                self.stats.last_error = f"{type(exc).__name__}: {exc.msg}"
                self.on_fatal(None, f"{self.name}: cannot connect to {mask_url(self.url)}: {exc.msg}; fix "
                              f"{'DHAN_DEPTH_FEED_URL' if self.kind == DEPTH else 'DHAN_FEED_URL'} "
                              "(or the proxy settings) in .env")
            except InvalidStatus as exc:
                status = exc.response.status_code
                self.stats.last_error = f"handshake refused with HTTP {status}"
                log.warning("%s: handshake refused with HTTP %d", self.name, status)
                if status == 429:
                    delay = self.cool_off
            except RETRYABLE as exc:
                error = f"{type(exc).__name__}: {mask_url(str(exc))}" if str(exc) else type(exc).__name__
                if self.connected or error != self.stats.last_error:
                    log.warning("%s: connection lost or refused (%s)", self.name, error)
                self.stats.last_error = error
            finally:
                if self.connected and self._delivered():
                    self.down_since = time.monotonic()
                self.connected = False
                self._ws = None
                self.backoff.disconnected(time.monotonic())
            if self.stop.is_set():
                break
            if self.stats.last_reason == COOL_OFF:
                self.stats.last_reason = None
                delay = self.cool_off
                log.warning("%s: Dhan refused the connection count (805); cooling off %.0f s before "
                            "reconnecting (is another program using this account's 5 sockets?)",
                            self.name, delay)
            if delay is None:
                delay = self.backoff.next_delay()
            log.info("%s: reconnecting in %.1f s", self.name, delay)
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _subscribe(self, ws) -> None:
        try:
            for message in self.plan.messages:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the receive loop sees the close and says why

    async def _receive(self, ws) -> bool:
        """Receive until the socket closes; True if the stall watchdog closed it."""
        watchdog = asyncio.create_task(self._watch(ws))
        inbox = self.inbox
        items, limit, wake = inbox.items, inbox.limit, inbox.wake
        append, now, recv, kind = items.append, time.time_ns, ws.recv, self.kind
        stats = self.stats
        stats.last_frame_ns = now()
        disconnect_at, disconnect_code = (0 if kind == MAIN else 2), _DISCONNECT_CODE
        try:
            while True:
                frame = await recv()
                ts = now()
                stats.last_frame_ns = ts
                stats.frames += 1
                if len(items) < limit:
                    append((ts, frame, kind))
                else:
                    inbox.dropped += 1
                if not wake.is_set():
                    wake.set()
                if frame[disconnect_at:disconnect_at + 1] == disconnect_code:
                    self._disconnect_packet(frame, ws)
        except ConnectionClosed:
            return watchdog.done() and watchdog.result()
        finally:
            watchdog.cancel()

    def _disconnect_packet(self, frame: bytes, ws) -> None:
        self.stats.disconnect_packets += 1
        if self.kind == MAIN:
            if len(frame) < 10:
                return
            reason = int.from_bytes(frame[8:10], "little")
        else:
            if len(frame) < 12:
                return
            reason = depth_disconnect_reason(frame)
        self.stats.last_reason = reason
        self.stats.last_error = describe(reason)
        if reason in FATAL:
            self.on_fatal(reason, FATAL[reason])
            ws.transport.abort()
        else:
            log.warning("%s: Dhan disconnected the feed: %s", self.name, describe(reason))

    async def _watch(self, ws) -> bool:
        """Close the socket when the feed stops, or when it has been silent for `stall_timeout` s
        (a socket can stay open, pings answered, yet deliver nothing)."""
        period = min(1.0, self.stall_timeout / 4)
        while True:
            try:
                await asyncio.wait_for(self.stop.wait(), period)
            except asyncio.TimeoutError:
                pass
            else:
                await ws.close()  # shutting down: a clean close frame
                return False
            silent = (time.time_ns() - self.stats.last_frame_ns) / 1e9
            if silent >= self.stall_timeout:
                self.stats.stalls += 1
                log.warning("%s: no frame for %.1f s (DHAN_FEED_STALL_TIMEOUT=%g); recycling the connection",
                            self.name, silent, self.stall_timeout)
                ws.transport.abort()
                return True
