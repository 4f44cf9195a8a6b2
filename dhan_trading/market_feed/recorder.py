"""The feed's raw capture on a thread of its own: file writes never run on the event loop, and a
failing disk (full, read-only, gone) costs the capture, never the publishing to Redis.

The publisher hands each batch of frames to `submit()`, which only appends to a bounded queue.
The thread writes whatever is queued and flushes once per pass, so every flushed batch is whole
on disk. When a write fails it cuts the file back to its last flush (no partial record for a
replay to trip on), reports `failed`, drops and counts what arrives meanwhile, and tries again
every `retry_after` seconds: the capture resumes by itself once space is freed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from ..capture import CaptureWriter

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, writer: CaptureWriter, *, max_frames: int = 200_000, retry_after: float = 10.0):
        self.writer = writer
        self.max_frames = max_frames      # frames waiting for the thread; beyond: dropped, counted
        self.retry_after = retry_after
        self.frames = 0                   # frames on disk
        self._overflowed = 0              # frames refused by submit() (queue full)
        self._lost = 0                    # frames the thread could not write (disk failing)
        self.failures = 0                 # write errors seen
        self.failed: str | None = None    # why the capture is not writing now, or None
        self._queue: deque = deque()
        self._queued = 0
        self._ready = threading.Condition()
        self._closing = False
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._main, name="capture-writer", daemon=True)
        self._thread.start()

    # ---- event-loop side --------------------------------------------------------------------
    def submit(self, frames: list[tuple[int, bytes]], kind: int) -> None:
        """Queue `(recv_ts_ns, frame)` pairs; never blocks, never raises on a disk problem."""
        if not frames:
            return
        with self._ready:
            if self._queued + len(frames) > self.max_frames:
                self._overflowed += len(frames)
                return
            self._queue.append((frames, kind))
            self._queued += len(frames)
            self._ready.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout` s; blocking: call it off the event loop)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("raw capture: %d frames still queued after %.0f s; not captured", self._queued, timeout)

    @property
    def dropped_frames(self) -> int:
        """Frames the capture lost: queue full, or written while the disk was failing."""
        return self._overflowed + self._lost

    @property
    def status(self) -> str:
        return "ok" if self.failed is None else f"failed: {self.failed}"

    # ---- thread side ---------------------------------------------------------------------------
    def _main(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if not self._queue:
                    break
                work = list(self._queue)
                self._queue.clear()
                self._queued = 0
            self._write(work)
        try:
            self.writer.close()
        except OSError as exc:
            self._fail(exc, 0)

    def _write(self, work: list[tuple[list, int]]) -> None:
        count = sum(len(frames) for frames, _ in work)
        if self.failed is not None and time.monotonic() < self._retry_at:
            self._lost += count
            return
        try:
            for frames, kind in work:
                self.writer.write(frames, kind)
            self.writer.flush()
        except OSError as exc:
            self._fail(exc, count)
            return
        self.frames += count
        if self.failed is not None:
            log.warning("raw capture resumed (%d frames were not captured while it failed)", self.dropped_frames)
            self.failed = None

    def _fail(self, exc: OSError, count: int) -> None:
        self.writer.abandon()
        self._lost += count
        self.failures += 1
        self._retry_at = time.monotonic() + self.retry_after
        if self.failed is None:
            log.error("raw capture failed (%s); publishing to Redis goes on without it, retrying the "
                      "capture every %.0f s", exc, self.retry_after)
        self.failed = str(exc)
