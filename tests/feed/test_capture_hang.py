"""A capture disk that hangs (a dead network mount: open() never returns): the publisher never
waits for it. Frames beyond the capture queue's bound are dropped and counted, and closing the
capture gives up after its timeout with an ERROR naming what was not captured, instead of
hanging the feed's shutdown."""
from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from dhan_trading.capture import CaptureWriter
from dhan_trading.instruments.master import ist_today
from dhan_trading.market_feed.recorder import Recorder
from tests.feed.scripted import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(60)]


def test_a_hung_capture_disk_bounds_the_queue_and_does_not_hang_shutdown(tmp_path, caplog):
    writer = CaptureWriter(tmp_path / "captures")
    fifo = writer.path_for(ist_today())
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes: a hung disk
    recorder = Recorder(writer, max_frames=10)
    batch = [(ts, b"frame-%03d" % ts) for ts in range(6)]
    recorder.submit(batch, 0)
    assert wait_for(lambda: recorder._queued == 0)  # taken by the thread, which now hangs in open()
    started = time.monotonic()
    recorder.submit([(ts, b"frame-%03d" % ts) for ts in range(6, 12)], 0)   # queued: 6 of 10
    recorder.submit([(ts, b"frame-%03d" % ts) for ts in range(12, 18)], 0)  # 12 > 10: dropped
    assert time.monotonic() - started < 0.1  # submit never waits for the disk
    assert recorder.dropped_frames == 6 and recorder.status == "ok"
    with caplog.at_level(logging.ERROR, logger="dhan_trading.market_feed.recorder"):
        started = time.monotonic()
        recorder.close(timeout=0.5)
    assert time.monotonic() - started < 2
    assert "raw capture: 6 frames still queued after 0 s; not captured" in caplog.text

    # the disk answers (a reader drains the FIFO): the capture thread finishes and ends
    reader = threading.Thread(target=lambda: open(fifo, "rb").read(), daemon=True)
    reader.start()
    recorder._thread.join(10)
    reader.join(10)
    assert not recorder._thread.is_alive()
