"""Inbox -> decoded events -> raw capture queue + Redis outbox, in batches, on the event loop.

Each step takes whatever the sockets have queued (up to `batch_frames`), so the batch grows
with the load: one frame at a time when it is quiet (low latency), thousands when it is busy
(high throughput). A step is synchronous and short (a numpy decode of the batch); between
steps the loop runs the receive coroutines again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Mapping

from .. import bus
from ..protocol import FeedDecoder, decode_depth_frame
from .connection import DEPTH, MAIN, MARK, Inbox
from .continuity import GapTracker
from .recorder import Recorder
from .sink import RedisSink

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, inbox: Inbox, sink: RedisSink, ticks: Mapping[tuple[str, int], float],
                 capture: Recorder | None, *, batch_frames: int = 2000):
        self.inbox = inbox
        self.sink = sink
        self.ticks = dict(ticks)
        self.decoder = FeedDecoder(self.ticks)
        self.capture = capture
        self.batch_frames = batch_frames
        self.gaps = GapTracker()
        self.frames = 0
        self.packets = 0
        self.events = 0
        self.malformed = 0
        self.malformed_reasons: Counter = Counter()
        self.disconnects: list[tuple[str, int, int]] = []
        self._last_malformed_log = 0.0

    async def run(self, done: asyncio.Event) -> None:
        """Process the inbox until `done` is set and the inbox is empty."""
        items, wake = self.inbox.items, self.inbox.wake
        while True:
            if not items:
                if done.is_set():
                    return
                wake.clear()
                waiter = asyncio.ensure_future(wake.wait())
                stopper = asyncio.ensure_future(done.wait())
                await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            self.step()
            await asyncio.sleep(0)

    def step(self) -> None:
        """Take one batch from the inbox (up to the next reconnect mark) and process it."""
        items = self.inbox.items
        batch = []
        while items and len(batch) < self.batch_frames:
            item = items[0]
            if item[2] == MARK:
                if batch:
                    break
                items.popleft()
                instruments, reason = item[3]
                self.gaps.mark(instruments, reason)
                continue
            batch.append(items.popleft())
        if batch:
            self.process(batch)

    def process(self, batch: list[tuple[int, bytes, int]]) -> None:
        main = [(ts, frame) for ts, frame, kind in batch if kind == MAIN]
        depth = [(ts, frame) for ts, frame, kind in batch if kind == DEPTH]
        if self.capture is not None:
            self.capture.submit([(ts, f if isinstance(f, bytes) else f.encode()) for ts, f in main], MAIN)
            self.capture.submit([(ts, f if isinstance(f, bytes) else f.encode()) for ts, f in depth], DEPTH)
        self.frames += len(batch)
        channels: list[str] = []
        payloads: list[bytes] = []
        if main:
            decoded = self.decoder.decode([f for _, f in main], [ts for ts, _ in main])
            self._account(decoded)
            for event in self.gaps.observe(decoded):
                channels.append(bus.CHANNEL_GAPS)
                payloads.append(bus.encode(event))
            types, pl = decoded.render()
            channels += [bus.EVENT_CHANNEL[t] for t in types]
            payloads += pl
        for ts, frame in depth:
            decoded = decode_depth_frame(frame, ts, self.ticks)
            self._account(decoded)
            channels += [bus.EVENT_CHANNEL[t] for t in decoded.types]
            payloads += decoded.payloads
        self.events += len(payloads)
        self.sink.submit(channels, payloads)

    def _account(self, decoded) -> None:
        self.packets += decoded.packets
        if decoded.disconnects:
            self.disconnects += decoded.disconnects
        if decoded.errors:
            self.malformed += decoded.errors
            self.malformed_reasons.update(decoded.error_reasons)
            now = time.monotonic()
            if now - self._last_malformed_log >= 10:
                self._last_malformed_log = now
                log.warning("malformed frames/packets so far: %d (%s); they are kept in the raw capture",
                            self.malformed, ", ".join(f"{r}: {n}" for r, n in self.malformed_reasons.most_common(5)))
