"""The monitor's pure half (services/monitor.py): the thresholds table and the model that keeps
the samples and judges them. No Qt, no Redis."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from dhan_trading import bus
from dhan_trading.services.monitor import (
    BAD,
    IDLE,
    OK,
    THRESHOLDS,
    WARN,
    MonitorModel,
    format_value,
    thresholds_for,
)

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0
TICKS, QUOTES = bus.STREAM_TICKS, bus.STREAM_QUOTES


def record(service: str, ts: float, healthy: bool = True, problem: str | None = None, **figures) -> dict:
    return {**bus.heartbeat(service, figures.pop("state", "streaming"), healthy, problem, **figures), "ts": ts}


def sample(t: float, *, feed: dict | None = None, writer: dict | None = None, added: int = 0,
           dead: int = 0, memory: int = 100 << 20, maxmemory: int = 0, length: int | None = None) -> dict:
    ts = T0 + t
    return {"ts": ts,
            "redis": {"connected": True, "error": None, "used_memory": memory, "used_memory_human": "100.00M",
                      "maxmemory": maxmemory},
            "streams": {TICKS: {"length": added if length is None else length, "added": added},
                        QUOTES: {"length": 0, "added": None},
                        bus.STREAM_DEAD_LETTER: {"length": dead}},
            "feed": None if feed is None else record("fno_feed", ts, **feed),
            "writer": None if writer is None else record("db_writer", ts, **writer)}


def run(samples) -> MonitorModel:
    model = MonitorModel()
    for s in samples:
        model.add(s)
    return model


def test_every_threshold_is_documented_and_applies_to_a_shown_metric():
    from dhan_trading.services.monitor import METRIC
    for t in THRESHOLDS:
        warn, critical = t.describe()
        assert warn and critical and t.why
        assert any(thresholds_for(key) and t in thresholds_for(key) for key in METRIC), t.metric


def test_writer_lag_warns_above_2_s_and_is_critical_above_10_s():
    def level(lag):
        return run([sample(0, writer={"lag_s": lag, "pending": 0, "rows_per_s": 10})]).judge("writer.lag_s").level
    assert [level(x) for x in (0.4, 2.0, 2.1, 10.0, 10.5)] == [OK, OK, WARN, WARN, BAD]
    assert run([sample(0, writer={"lag_s": None})]).judge("writer.lag_s").level == IDLE  # no commit yet


def test_writer_lag_counts_the_time_since_the_last_commit_while_entries_wait():
    def lag(**w):
        return run([sample(0, writer=w)]).value("writer.lag_s")
    assert lag(lag_s=0.3, pending=1200, last_commit_age_s=0.1) == 0.3     # committing
    assert lag(lag_s=0.3, pending=0, last_commit_age_s=600.0) == 0.3      # idle: nothing to store
    assert lag(lag_s=0.3, pending=80_000, last_commit_age_s=42.0) == 42.0  # the database is down
    assert lag(lag_s=None, pending=10, last_commit_age_s=None) is None


def test_connections_below_planned_warn_and_none_up_is_critical():
    def judged(up, planned):
        return run([sample(0, feed={"connections": up, "connections_planned": planned})]).judge("feed.connections")
    assert judged(5, 5).level == OK
    j = judged(4, 5)
    assert j.level == WARN and "4 of 5 up" in j.reason
    assert judged(0, 5).level == BAD
    assert judged(0, 0).level == OK  # nothing planned (a feed with no instruments): nothing to judge
    model = run([sample(0, feed={"connections": 4, "connections_planned": 5})])
    assert model.text("feed.connections") == "4 / 5"


def test_events_per_second_come_from_the_stream_growth_and_survive_a_restart_of_redis():
    model = run([sample(0, added=1000), sample(1, added=1500), sample(3, added=2500)])
    xs, ys = model.points("feed.events_per_s.ticks")
    assert xs == [-3.0, -2.0, 0.0]
    assert math.isnan(ys[0]) and ys[1:] == [500.0, 500.0]
    assert model.text("feed.events_per_s.ticks") == "500/s"
    model.add(sample(4, added=10))  # a fresh Redis counts from 0: no negative rate
    assert model.value("feed.events_per_s.ticks") is None
    model.add(sample(5, added=30))
    assert model.value("feed.events_per_s.ticks") == 20.0


def test_pending_warns_only_when_above_a_batch_and_growing_for_30_s():
    def model_of(values):
        return run([sample(i, writer={"pending": v}) for i, v in enumerate(values)])
    assert model_of([40_000] * 40).judge("writer.pending").level == OK        # high but flat
    assert model_of(range(100, 4100, 100)).judge("writer.pending").level == OK  # growing, under a batch
    rising = model_of(range(6_000, 6_000 + 40 * 50, 50))
    assert rising.judge("writer.pending").level == WARN and "rising for 30 s" in rising.judge("writer.pending").reason
    assert model_of(range(6_000, 6_000 + 20 * 50, 50)).judge("writer.pending").level == OK  # only 20 s of data
    assert model_of(range(6_000, 6_000 + 130 * 50, 50)).judge("writer.pending").level == BAD
    assert model_of([60_000] * 5).judge("writer.pending").level == OK  # catching up, four streams behind
    full = model_of([100_000] * 5)  # the writer's buffer is full (the database does not take rows)
    assert full.judge("writer.pending").level == WARN and "buffer" in full.judge("writer.pending").reason
    dipped = [7_000] * 10 + [100] + list(range(7_000, 7_000 + 29 * 50, 50))  # emptied 29 s ago
    assert model_of(dipped).judge("writer.pending").level == OK


def test_counters_warn_when_they_rose_recently_not_for_ever():
    samples = [sample(i, feed={"reconnects": 0 if i < 10 else 1, "gaps": 0, "malformed": 0}) for i in range(30)]
    model = run(samples)
    assert model.judge("feed.reconnects").level == WARN
    assert "+1 in the last 60 s" in model.judge("feed.reconnects").reason
    for i in range(30, 80):
        model.add(sample(i, feed={"reconnects": 1}))
    assert model.judge("feed.reconnects").level == OK  # the last rise is 70 s old
    for i, n in enumerate((2, 3, 4, 5, 6)):
        model.add(sample(80 + i, feed={"reconnects": n}))
    assert model.judge("feed.reconnects").level == BAD  # five in a minute: flapping
    model.add(sample(90, feed={"reconnects": 0}))  # the feed restarted: its counters start again
    assert model.judge("feed.reconnects").level == BAD  # what rose within the minute still counts


def test_dead_letters_warn_above_zero():
    assert run([sample(0, dead=0)]).judge("writer.dead_letters").level == OK
    j = run([sample(0, dead=3)]).judge("writer.dead_letters")
    assert j.level == WARN and "could not store" in j.reason


def test_memory_is_judged_against_maxmemory_only_when_it_is_set():
    assert run([sample(0, memory=900, maxmemory=0)]).judge("redis.memory").level == OK
    assert run([sample(0, memory=850, maxmemory=1000)]).judge("redis.memory").level == WARN
    assert run([sample(0, memory=960, maxmemory=1000)]).judge("redis.memory").level == BAD
    assert run([sample(0, memory=960)]).text("redis.memory") == "100.00M"  # Redis's own wording


def test_a_stream_far_above_the_feeds_trim_length_warns():
    assert run([sample(0, length=900_000)]).judge("redis.length.ticks").level == OK
    assert run([sample(0, length=1_500_000)]).judge("redis.length.ticks").level == WARN
    assert run([sample(0, length=6_000_000)]).judge("redis.length.ticks").level == BAD


def test_redis_disconnected_makes_the_figures_unknown_and_the_heartbeats_unknown():
    model = run([sample(0, added=10, feed={"connections": 5, "connections_planned": 5}),
                 {"ts": T0 + 1, "redis": {"connected": False, "error": "ConnectionError: refused"}}])
    status = model.redis_status(now=T0 + 1.5)
    assert (status.level, status.text, status.problem) == (BAD, "disconnected", "ConnectionError: refused")
    assert model.value("feed.connections") is None and model.judge("feed.connections").level == IDLE
    assert model.service_status("feed", now=T0 + 1.5).level == IDLE
    _, ys = model.points("feed.connections")
    assert ys[0] == 5 and math.isnan(ys[1])  # a gap in the sparkline
    assert model.redis_status(now=T0 + 5).text == "not answering for 4 s"  # and no new sample since
    assert model.redis_status(now=T0 + 12).level == BAD


def test_heartbeats_are_judged_by_bus_assess_health():
    model = run([sample(0, feed={"state": "streaming"},
                        writer={"state": "db_down", "healthy": False, "problem": "the database cannot be reached"})])
    feed, writer = model.service_status("feed", now=T0), model.service_status("writer", now=T0)
    assert (feed.level, feed.text) == (OK, "fno_feed · streaming · healthy")
    assert (writer.level, writer.problem) == (BAD, "the database cannot be reached")
    assert "unhealthy" in writer.text
    old = run([{**sample(0), "feed": record("fno_feed", T0 - 30)}])  # a record 30 s old
    assert old.service_status("feed", now=T0).level == BAD
    assert run([sample(0)]).service_status("feed", now=T0).text == "no heartbeat: not running"


def test_database_counts_are_kept_between_the_10_s_counts_and_an_outage_is_shown():
    model = run([sample(0), {"ts": T0, "db": {"ok": True, "error": None, "rows": {"dhan_ticks": 7, "dhan_gaps": None}}},
                 sample(1), sample(2)])
    assert model.text("db.rows.dhan_ticks") == "7" and model.text("db.rows.dhan_gaps") == "—"
    assert model.db_status(now=T0 + 2).level == OK
    model.add({"ts": T0 + 10, "db": {"ok": False, "error": "OperationalError: gone away"}})
    assert model.db_status(now=T0 + 10).level == BAD and model.value("db.rows.dhan_ticks") is None


def test_the_series_keep_the_last_10_minutes():
    model = run(sample(i, added=i) for i in range(900))
    xs, _ = model.points("redis.length.ticks")
    assert len(xs) == 601 and xs[0] == -600.0


def test_formats():
    assert format_value("rate", 1234.4) == "1,234/s" and format_value("rate", 12.34) == "12.3/s"
    assert format_value("seconds", 0.4) == "0.40 s" and format_value("bytes", 3 << 20) == "3.0 MB"
    assert format_value("count", None) == "—"


def test_services_monitor_module_imports_without_qt():
    code = ("import sys; import dhan_trading.services.monitor as m; "
            "assert not [k for k in sys.modules if k.startswith(('PyQt6', 'pyqtgraph'))], 'Qt imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_thresholds_table_of_the_docs_is_the_one_in_the_code():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONTROL_CENTER.md").read_text()
    for t in THRESHOLDS:
        warn, critical = t.describe()
        assert f"| `{t.metric}` | {warn} | {critical} | {t.why} |" in doc, t
