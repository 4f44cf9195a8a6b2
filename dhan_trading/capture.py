"""Raw-frame captures: every frame the feed receives, with its receive time, for replay.

File format (little-endian): the 8-byte magic `DHANCAP1`, then one record per frame:
`<q recv_ts_ns><I length><B kind>` followed by `length` bytes, where kind 0 = main feed,
1 = 20-level depth feed. Files rotate daily: DATA_DIR/captures/YYYY-MM-DD.dcap, named by the IST
date whatever the machine's time zone.
A file cut short by a crash is still readable up to its last whole record.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

from .scheduler.calendar import ist_today

log = logging.getLogger(__name__)

MAGIC = b"DHANCAP1"
RECORD = struct.Struct("<qIB")
MAIN, DEPTH = 0, 1


class CaptureWriter:
    """Appends frames to the day's capture file; opens the next day's file at midnight."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._day: dt.date | None = None
        self._file: BinaryIO | None = None
        self._committed = 0  # size of the open file at its last successful flush
        self.frames = 0

    def path_for(self, day: dt.date) -> Path:
        return self.directory / f"{day.isoformat()}.dcap"

    def write(self, frames: list[tuple[int, bytes]], kind: int = MAIN) -> None:
        """Append `(recv_ts_ns, frame)` pairs (a batch: one syscall, not one per frame)."""
        if not frames:
            return
        day = ist_today()
        if day != self._day:
            self.close()
            path = self.path_for(day)
            fresh = not path.exists() or path.stat().st_size == 0
            self._file = open(path, "ab", buffering=1 << 20)
            self._committed = 0 if fresh else path.stat().st_size
            if fresh:
                self._file.write(MAGIC)
            self._day = day
        assert self._file is not None
        self._file.write(b"".join(RECORD.pack(ts, len(f), kind) + f for ts, f in frames))
        self.frames += len(frames)

    def flush(self) -> None:
        if self._file:
            self._file.flush()
            self._committed = self._file.tell()

    def abandon(self) -> None:
        """After a failed write or flush (disk full): close the file and cut it back to its size
        at the last successful flush, so a later append never follows a partial record."""
        if self._file is None:
            return
        name = self._file.name
        try:
            self._file.close()
        except OSError:
            pass  # the unwritten buffer is what failed; the descriptor is closed all the same
        self._file, self._day = None, None
        try:
            os.truncate(name, self._committed)
        except OSError as exc:
            log.warning("could not cut %s back to %d bytes (%s): a replay stops at the damaged record",
                        name, self._committed, exc)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def read_capture(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield `(recv_ts_ns, kind, frame)`; stops quietly at a truncated final record."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not a Dhan capture file (bad magic)")
        while True:
            head = f.read(RECORD.size)
            if len(head) < RECORD.size:
                return
            ts, length, kind = RECORD.unpack(head)
            frame = f.read(length)
            if len(frame) < length:
                return
            yield ts, kind, frame
