"""Raw-frame captures: write/read round trip, daily files, truncated tails, and replay decoding."""
from __future__ import annotations

import datetime as dt

import pytest

from dhan_trading import capture
from dhan_trading.capture import DEPTH, MAGIC, MAIN, CaptureWriter, read_capture
from dhan_trading.protocol import FeedDecoder, encode_depth_side, encode_oi, encode_ticker
from dhan_trading.scheduler.calendar import ist_today

pytestmark = pytest.mark.unit

MAIN_FRAMES = [(1_000 + i, encode_ticker("IDX_I", 13, 24000.0 + i, i)) for i in range(5)]
DEPTH_FRAMES = [(2_000, encode_depth_side(41, "NSE_EQ", 1333, [[100.0, 1, 1]] * 20))]


def write(directory, *batches) -> CaptureWriter:
    writer = CaptureWriter(directory)
    for frames, kind in batches:
        writer.write(frames, kind)
    writer.close()
    return writer


def test_round_trip_keeps_every_frame_its_time_and_kind(tmp_path):
    writer = write(tmp_path / "cap", (MAIN_FRAMES[:3], MAIN), (DEPTH_FRAMES, DEPTH), (MAIN_FRAMES[3:], MAIN),
                   ([], MAIN))
    (path,) = (tmp_path / "cap").iterdir()
    assert path == writer.path_for(ist_today()) and path.suffix == ".dcap"
    assert path.read_bytes()[:8] == MAGIC
    assert list(read_capture(path)) == ([(ts, MAIN, f) for ts, f in MAIN_FRAMES[:3]]
                                        + [(ts, DEPTH, f) for ts, f in DEPTH_FRAMES]
                                        + [(ts, MAIN, f) for ts, f in MAIN_FRAMES[3:]])
    assert writer.frames == 6


def test_reopening_the_day_file_appends_without_a_second_magic(tmp_path):
    write(tmp_path, (MAIN_FRAMES[:2], MAIN))
    writer = write(tmp_path, (MAIN_FRAMES[2:], MAIN))
    path = writer.path_for(ist_today())
    assert [ts for ts, _, _ in read_capture(path)] == [ts for ts, _ in MAIN_FRAMES]


def test_flush_makes_frames_readable_while_the_writer_is_open(tmp_path):
    writer = CaptureWriter(tmp_path)
    writer.write(MAIN_FRAMES, MAIN)
    writer.flush()
    assert len(list(read_capture(writer.path_for(ist_today())))) == 5
    writer.close()
    writer.close()


@pytest.mark.parametrize("cut", [1, 5, 13, 14])
def test_a_truncated_tail_stops_quietly_after_the_last_whole_record(tmp_path, cut):
    writer = write(tmp_path, (MAIN_FRAMES, MAIN))
    path = writer.path_for(ist_today())
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    assert [ts for ts, _, _ in read_capture(path)] == [ts for ts, _ in MAIN_FRAMES[:-1]]


def test_a_file_that_is_not_a_capture_is_refused(tmp_path):
    path = tmp_path / "other.dcap"
    path.write_bytes(b"NOTACAPT" + bytes(20))
    with pytest.raises(ValueError, match="bad magic"):
        list(read_capture(path))


def test_a_new_day_opens_a_new_file(tmp_path, monkeypatch):
    days = iter([dt.date(2026, 5, 4), dt.date(2026, 5, 5)])
    monkeypatch.setattr(capture, "ist_today", lambda: next(days))  # files are named by the IST date
    writer = write(tmp_path, (MAIN_FRAMES[:2], MAIN), (MAIN_FRAMES[2:], MAIN))
    first, second = writer.path_for(dt.date(2026, 5, 4)), writer.path_for(dt.date(2026, 5, 5))
    assert first.name == "2026-05-04.dcap" and second.name == "2026-05-05.dcap"
    assert len(list(read_capture(first))) == 2 and len(list(read_capture(second))) == 3


def test_replaying_a_capture_decodes_the_same_events_as_live(tmp_path):
    frames = MAIN_FRAMES + [(3_000, encode_oi("NSE_FNO", 5, 9) + encode_ticker("IDX_I", 25, 1.5, 0))]
    write(tmp_path, (frames, MAIN))
    (path,) = tmp_path.iterdir()
    replay = [(ts, f) for ts, kind, f in read_capture(path) if kind == MAIN]
    decoder = FeedDecoder()
    live = decoder.decode([f for _, f in frames], [ts for ts, _ in frames]).events()
    assert decoder.decode([f for _, f in replay], [ts for ts, _ in replay]).events() == live
