"""The FNO Services Monitor view on a real Redis of its own: heartbeat records of the feed and the
writer (built by their own code, so with their real field names), stream entries, today's rows
in a SQLite database, Redis killed and brought back, and the entry point run by the supervisor.

`python tests/gui/test_monitor_view.py FILE.png` renders ten minutes of synthetic samples (the
screenshot of docs/CONTROL_CENTER.md)."""
from __future__ import annotations

import itertools
import math
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dhan_trading import bus
from dhan_trading.services.monitor import BAD, IDLE, OK, WARN, MonitorModel

REPO = Path(__file__).resolve().parents[2]
STATE_COLOUR = {"ok": "#2e7d32", "warn": "#f9a825", "bad": "#c62828", "idle": "#546e7a"}  # gui.theme.STATE


# ---- realistic records, by the feed's and the writer's own code ---------------------------------------
def feed_record(**figures) -> dict:
    """The feed's heartbeat as Feed.health() builds it, with these figures."""
    from dhan_trading.market_feed.feed import Feed
    feed = Feed(service="fno_feed", plans=[], feed_url="ws://127.0.0.1:9", redis_url="redis://127.0.0.1:9/0",
                ticks={})
    record = feed.health()
    unknown = set(figures) - set(record)
    assert not unknown, f"the feed publishes no {unknown}"
    return {**record, **figures}


def writer_record(client, **figures) -> dict:
    """The writer's heartbeat as its HealthReporter builds it (reading `client`), with these figures."""
    from dhan_trading.subscribers.db_writer import (
        DbWriter,
        HealthReporter,
        WriterConfig,
    )
    writer = DbWriter(lambda: client, None, WriterConfig(consumer="writer-1"))
    writer.stats.state = "running"
    record = HealthReporter(writer, threading.Event()).record(client)
    unknown = set(figures) - set(record)
    assert not unknown, f"the writer publishes no {unknown}"
    return {**record, **figures}


# ---- ten minutes of synthetic samples (screenshot, and a check of what they show) --------------------
DB_ERROR = ("OperationalError: (pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on "
            "'10.0.0.5' (timed out)\")")


def synthetic_samples(seconds: int = 600, end: float | None = None, db_down_s: int = 0) -> list[dict]:
    """A session seen for `seconds`: one socket of five drops for 25 s near the end (a reconnect,
    30 gap events), the database slows for a minute (lag up to ~4 s, pending rising), and two
    entries went to the dead letters; everything else is a calm, busy feed. With `db_down_s`, the
    database is unreachable for the last that many seconds."""
    from dhan_trading.market_feed.feed import FeedOptions
    from dhan_trading.subscribers.db_writer import WriterConfig
    rnd = random.Random(11)
    end = time.time() if end is None else end
    start = end - seconds + 1
    base_feed = feed_record()
    base_writer = {"consumer": "writer-1", "rows_total": 0, "batches": 0, "backlog": None, "behind_s": 0.0,
                   "buffered": 0, "acked_total": 0, "errors": 0, "last_error": "", "poison_total": 0}
    added = {s: 0 for s in bus.STORED_STREAMS}
    length = {s: 380_000 for s in bus.STORED_STREAMS}
    rows = {"dhan_ticks": 1_210_000, "dhan_quotes": 5_020_000, "dhan_depth": 4_310_000, "dhan_gaps": 140}
    reconnects, gaps, pending, dead, last_commit = 3, 140, 0, 0, start
    trim, max_buffer = FeedOptions().trim_maxlen, WriterConfig(consumer="-").max_buffer_rows
    out = []
    for i in range(seconds):
        ts = start + i
        wave = 1 + 0.25 * math.sin(i / 90) + rnd.uniform(-0.08, 0.08)
        down = seconds - 70 <= i < seconds - 45
        share = 0.8 if down else 1.0
        rates = {bus.STREAM_TICKS: 420 * wave * share, bus.STREAM_QUOTES: 1900 * wave * share,
                 bus.STREAM_DEPTH: 1550 * wave * share, bus.STREAM_GAPS: 0.0}
        if i == seconds - 45:
            reconnects, gaps = reconnects + 1, gaps + 30
            rates[bus.STREAM_GAPS] = 30
        events = sum(rates.values())
        db_down = i >= seconds - db_down_s
        slow = 240 <= i < 300
        stored = 0.0 if db_down else 0.45 if slow else 1.0
        for s, r in rates.items():
            added[s] += int(r)
            length[s] += int(r)
            if not db_down:  # the feed trims (MAXLEN ~), never what the writer has not acknowledged
                length[s] = min(length[s], trim + rnd.randint(0, 6_000))
        lag = 1.2 + 2.8 * (i - 240) / 60 if slow else 0.25 + rnd.uniform(0, 0.3)
        if db_down:
            pending = min(pending + int(events), max_buffer)
        elif slow:
            pending = min(pending + 2_000, 90_000)
            last_commit = ts - rnd.uniform(0, 1.5)
        else:
            pending = max(rnd.randint(0, 4_000), pending - 20_000)
            last_commit = ts - rnd.uniform(0, 0.2)
        dead = 2 if i >= 150 else 0
        feed = {**base_feed, "ts": ts, "connections": 4 if down else 5, "connections_planned": 5,
                "frames_per_s": round(events / 3.1, 1), "reconnects": reconnects, "gaps": gaps,
                "instruments": 128, "state": "reconnecting" if down else "streaming"}
        problem = f"the database cannot be reached ({DB_ERROR}); {pending:,} entries wait in Redis" if db_down else None
        writer = bus.heartbeat("db_writer", "db_down" if db_down else "running", not db_down, problem, **base_writer,
                               rows_per_s=round(events * stored, 1), pending=pending, lag_s=round(lag, 3),
                               last_commit_age_s=round(ts - last_commit, 1))
        writer["ts"] = ts
        memory = int((180 + 80 * min(i, 400) / seconds) * 2**20 + (sum(length.values()) - 3 * trim) * 230)
        out.append({
            "ts": ts,
            "redis": {"connected": True, "error": None, "version": "7.2.4", "used_memory": memory,
                      "used_memory_human": f"{memory / 2**20:.2f}M", "maxmemory": 0},
            "streams": {**{s: {"length": length[s], "added": added[s]} for s in bus.STORED_STREAMS},
                        bus.STREAM_DEAD_LETTER: {"length": dead}},
            "feed": feed, "writer": writer})
        for table, stream in zip(rows, bus.STORED_STREAMS):
            rows[table] += int(rates[stream] * stored)
        if i % 10 == 0:
            db = {"ok": False, "error": DB_ERROR} if db_down else {"ok": True, "error": None, "rows": dict(rows)}
            out.append({"ts": ts, "db": db})
    return out


def render(qtbot, samples: list[dict], settings):
    from PyQt6.QtWidgets import QApplication

    from dhan_trading.gui import theme
    from dhan_trading.gui.monitor_view import MonitorView
    theme.apply(QApplication.instance())
    model = MonitorModel()
    for s in samples:
        model.add(s)
    view = MonitorView(settings, model=model, start=False)
    if qtbot is not None:
        qtbot.addWidget(view)
    view.resize(1280, view.sizeHint().height())
    view.show()
    view.repaint_model(now=model.latest_ts + 0.4)
    return view


@pytest.mark.gui
def test_ten_minutes_of_samples_show_figures_colours_and_sparklines(qtbot, settings_env, tmp_path):
    view = render(qtbot, synthetic_samples(), settings_env())
    assert view.value_text("feed.connections") == "5 / 5" and view.value_level("feed.connections") == OK
    assert view.value_level("feed.reconnects") == WARN       # a reconnect 45 s ago
    assert view.value_level("feed.gaps") == WARN
    assert view.value_level("writer.dead_letters") == WARN and view.value_text("writer.dead_letters") == "2"
    assert view.value_level("writer.lag_s") == OK             # the slow minute is over
    assert view.value_level("writer.pending") == OK
    assert view.value_text("db.rows.dhan_ticks").replace(",", "").isdigit()
    assert view.group_text("feed") == "fno_feed · streaming · healthy" and view.group_level("feed") == OK
    assert view.group_text("redis") == "connected · Redis 7.2.4"
    assert STATE_COLOUR["warn"] in view.row("feed.reconnects").value.styleSheet()
    xs, ys = view.row("feed.frames_per_s").spark.curve.getData()
    assert len(xs) == 600 and xs[0] == pytest.approx(-599.4) and min(ys) > 0
    assert view.row("writer.lag_s").spark.level == OK
    # five minutes earlier, in the slow minute: the lag (~4 s) and the rising pending entries warn
    slow = render(qtbot, synthetic_samples(seconds=299), settings_env())
    assert slow.value_level("writer.lag_s") == WARN and slow.value_level("writer.pending") == WARN
    path = tmp_path / "monitor.png"
    assert view.grab().save(str(path)) and path.stat().st_size > 20_000


# ---- a real Redis of the test's own -----------------------------------------------------------------------
class Beats(threading.Thread):
    """Publishes the given records every 0.5 s, as the services do (TTL 5 s)."""

    def __init__(self, client, records: dict[str, dict]):
        super().__init__(daemon=True)
        self.client, self.records, self.halt = client, records, threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for record in list(self.records.values()):  # the test changes them meanwhile
                try:
                    bus.publish_health(self.client, {**record, "ts": time.time()})
                except Exception:  # noqa: BLE001 - Redis killed by the test
                    pass
            self.halt.wait(0.5)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


@pytest.fixture
def live_settings(settings_env, own_redis):
    return settings_env(REDIS_URL=own_redis.url)


@pytest.fixture
def client(own_redis):
    import redis
    c = redis.Redis.from_url(own_redis.url)
    yield c
    c.close()


def today_rows(settings, ticks_today: int, ticks_yesterday: int) -> None:
    """Rows in the configured SQLite database: `ticks_today` since 00:00 IST, the rest before."""
    from dhan_trading.db_setup import get_engine
    from dhan_trading.live import day_start_ns
    from dhan_trading.scheduler.calendar import ist_today
    from dhan_trading.schema import ticks
    engine = get_engine(settings=settings)
    midnight = day_start_ns(ist_today())
    rows = []
    for i in range(ticks_today + ticks_yesterday):
        recv = midnight + (1 if i < ticks_today else -3_600) * (i + 1) * 1_000_000_000
        rows.append({"event_id": ((recv // 1_000_000) << 20) + i, "exchange_segment": "NSE_FNO",
                     "security_id": 1, "recv_ts": recv, "ltp": 100.0, "ltt": 1})
    with engine.begin() as conn:
        conn.execute(ticks.insert(), rows)
    engine.dispose()


@pytest.mark.integration
def test_the_collector_counts_entries_added_even_while_the_feed_trims_the_stream(client):
    """On Redis 6.2 (no entries-added), XLEN growth is the rate until the stream is trimmed;
    then the entries after the last id seen are counted inside Redis."""
    from dhan_trading.services.monitor import Collector
    collector = Collector(lambda: client)

    def add(n):
        for _ in range(n):
            client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"{}"})

    def added():
        sample = collector.read_redis()
        assert sample["redis"]["connected"], sample
        return sample["streams"][bus.STREAM_QUOTES]

    assert added() == {"length": 0, "added": None}  # no stream yet
    add(300)
    first = added()["added"]
    add(200)
    assert added()["added"] - first == 200
    add(150)
    client.xtrim(bus.STREAM_QUOTES, maxlen=200, approximate=False)  # the feed trims: XLEN falls
    now = added()
    assert now["length"] == 200 and now["added"] - first == 350
    assert added()["added"] - first == 350  # nothing new
    collector.close_redis()


def redis_client_for(own_redis):
    import redis
    return redis.Redis.from_url(own_redis.url)


def make_view(qtbot, settings, **kw):
    from dhan_trading.gui.monitor_view import MonitorView
    view = MonitorView(settings, refresh_ms=200, **kw)
    qtbot.addWidget(view)
    view.resize(1280, 860)
    view.show()
    return view


def stop_view(view) -> None:
    view.stop()
    for p in view.pollers:
        p.join(15)
    assert not any(p.is_alive() for p in view.pollers)


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.slow
def test_the_view_shows_what_the_feed_and_the_writer_publish(qtbot, live_settings, client):
    for i in range(50):
        client.xadd(bus.STREAM_TICKS, {bus.STREAM_FIELD: bus.encode({"type": "ticker", "i": i})})
    for i in range(3):
        client.xadd(bus.STREAM_DEAD_LETTER, {"reason": "missing keys", "data": b"{}"})
    today_rows(live_settings, ticks_today=7, ticks_yesterday=4)
    feed = feed_record(connections=3, connections_planned=5, frames_per_s=120.5, reconnects=2, gaps=4, malformed=0)
    writer = writer_record(client, rows_per_s=850.0, lag_s=3.25)
    assert writer["pending"] == 0 and set(writer) >= {"rows_per_s", "pending", "lag_s"}
    beats = Beats(client, {"feed": feed, "writer": writer})
    beats.start()
    view = make_view(qtbot, live_settings)
    try:
        qtbot.waitUntil(lambda: view.value_text("redis.length.ticks") == "50", timeout=10_000)
        assert view.group_text("redis").startswith("connected") and view.group_level("redis") == OK
        qtbot.waitUntil(lambda: view.value_text("feed.connections") == "3 / 5", timeout=10_000)
        assert view.value_level("feed.connections") == WARN
        assert STATE_COLOUR["warn"] in view.row("feed.connections").value.styleSheet()
        assert view.value_text("feed.frames_per_s") == "120/s"
        assert view.group_text("feed") == "fno_feed · streaming · healthy"
        assert view.value_text("writer.lag_s") == "3.25 s" and view.value_level("writer.lag_s") == WARN
        assert view.value_text("writer.rows_per_s") == "850/s"
        assert view.value_text("writer.pending") == "0" and view.value_level("writer.pending") == OK
        assert view.value_text("writer.dead_letters") == "3" and view.value_level("writer.dead_letters") == WARN
        assert view.group_text("writer") == "db_writer · running · healthy · consumer writer-1"
        qtbot.waitUntil(lambda: view.value_text("db.rows.dhan_ticks") == "7", timeout=10_000)  # not yesterday's 4
        assert view.value_text("db.rows.dhan_quotes") == "0" and view.group_level("db") == OK
        # the writer falls far behind: critical lag, shown red
        beats.records["writer"] = {**writer, "lag_s": 12.0}
        qtbot.waitUntil(lambda: view.value_level("writer.lag_s") == BAD, timeout=10_000)
        assert STATE_COLOUR["bad"] in view.row("writer.lag_s").value.styleSheet()
        # entries keep coming: the ticks stream grows, so events/s is above 0
        stop = time.monotonic() + 2.5
        while time.monotonic() < stop:
            client.xadd(bus.STREAM_TICKS, {bus.STREAM_FIELD: b"{}"})
            qtbot.wait(5)
        qtbot.waitUntil(lambda: (view.model.value("feed.events_per_s.ticks") or 0) > 10, timeout=10_000)
        # the feed stops: its record expires and the view says it is not running
        del beats.records["feed"]
        qtbot.waitUntil(lambda: view.group_text("feed") == "no heartbeat: not running", timeout=15_000)
        assert view.value_level("feed.connections") == IDLE
    finally:
        beats.stop()
        stop_view(view)


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.chaos
@pytest.mark.slow
def test_redis_hanging_or_going_down_never_freezes_the_view(qtbot, live_settings, own_redis, client):
    client.xadd(bus.STREAM_TICKS, {bus.STREAM_FIELD: b"{}"})
    beats = Beats(client, {"feed": feed_record(connections=5, connections_planned=5)})
    beats.start()
    view = make_view(qtbot, live_settings)
    ticks = []  # refreshes of the GUI thread's timer: they go on whatever Redis does
    view.timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    try:
        qtbot.waitUntil(lambda: view.group_text("feed") == "fno_feed · streaming · healthy", timeout=10_000)
        # Redis hangs for 5 s (every command waits): the view says so while it hangs, and goes on
        pauser = redis_client_for(own_redis)
        pauser.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        hung = time.monotonic()
        qtbot.waitUntil(lambda: view.group_level("redis") in (WARN, BAD), timeout=5_000)
        assert time.monotonic() - hung < 5
        assert view.group_text("redis") == "disconnected" or view.group_text("redis").startswith("not answering")
        during = [hung] + [t for t in ticks if t > hung]
        assert max(b - a for a, b in itertools.pairwise(during)) < 1.5  # a blocked GUI thread would wait >= 2 s
        qtbot.waitUntil(lambda: view.group_text("redis").startswith("connected"), timeout=15_000)
        pauser.close()
        # Redis dies
        own_redis.stop()
        qtbot.waitUntil(lambda: view.group_text("redis") == "disconnected", timeout=10_000)
        assert view.group_level("redis") == BAD and "Error" in view.groups["redis"].problem.text()
        assert view.group_text("feed") == "unknown: no answer from Redis"
        assert view.value_text("redis.length.ticks") == "—"
        gone = time.monotonic()
        qtbot.waitUntil(lambda: len([t for t in ticks if t > gone]) >= 5, timeout=5_000)
        own_redis.start()  # same port, empty
        qtbot.waitUntil(lambda: view.group_text("feed") == "fno_feed · streaming · healthy", timeout=15_000)
        assert view.group_text("redis").startswith("connected") and view.value_text("redis.length.ticks") == "0"
    finally:
        beats.stop()
        stop_view(view)


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.slow
def test_the_supervisor_runs_the_monitor_and_sees_its_heartbeat(live_settings, client):
    """`services_monitor` of the registry starts, is RUNNING and healthy by its own heartbeat."""
    import psutil

    from dhan_trading.services.registry import SERVICES
    from dhan_trading.services.supervisor import Supervisor
    service = next(s for s in SERVICES if s.id == "services_monitor")
    assert service.available
    sup = Supervisor([service], live_settings, health_client=client, poll=0.05,
                     extra_env={"QT_QPA_PLATFORM": "offscreen"})
    try:
        sup.start("services_monitor")
        deadline = time.monotonic() + 60
        while sup.status("services_monitor").healthy is not True and time.monotonic() < deadline:
            time.sleep(0.2)
        st = sup.status("services_monitor")
        assert (st.state, st.healthy) == ("RUNNING", True), st
        assert st.health["state"] == "watching" and st.health["pid"] == st.pid
        pid = st.pid
    finally:
        sup.stop_all()
    assert sup.status("services_monitor").state == "STOPPED"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.gui
@pytest.mark.integration
def test_the_entry_point_saves_a_screenshot_and_exits(tmp_path, own_redis):
    shot = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "REDIS_URL": own_redis.url,
           "DHAN_DATA_DIR": str(tmp_path / "var")}
    proc = subprocess.run([sys.executable, "-m", "dhan_trading.services.monitor", "--screenshot", str(shot),
                           "--after", "2.5"], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.stat().st_size > 20_000


if __name__ == "__main__":  # python tests/gui/test_monitor_view.py docs/img/monitor.png [DB_DOWN_S]
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from dhan_trading.config import load_settings
    app = QApplication(sys.argv[:1])
    settings = load_settings(environ={"DHAN_DATA_DIR": "/tmp/dhan-monitor-shot",
                                      "REDIS_URL": "redis://127.0.0.1:6379/0",
                                      "DHAN_DB_URL": "mysql+pymysql://dhan:secret@10.0.0.5:3306/dhan_trading"},
                             dotenv_path=None)
    shown = render(None, synthetic_samples(db_down_s=int(sys.argv[2]) if len(sys.argv) > 2 else 0), settings)
    app.processEvents()
    shown.grab().save(sys.argv[1])
