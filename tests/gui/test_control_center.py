"""The control center (issue 11) driven through its real window: real supervisor, real runners
and services (the feed on the simulator, the writer on SQLite), the test's own redis-server."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import redis
from PyQt6.QtCore import Qt, QTimer

from dhan_trading.config import load_settings
from dhan_trading.services.registry import SERVICES, RestartPolicy, Service
from dhan_trading.services.supervisor import Supervisor
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
FAST = RestartPolicy(startsecs=0.4, backoff_initial=0.1, backoff_max=0.4, max_retries=2, stop_timeout=2.0)


def _ours(data_dir: Path) -> list[psutil.Process]:
    """Every process started for this test's data folder (its environment names the folder)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("DHAN_DATA_DIR") == str(data_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _kill_ours(data_dir: Path) -> None:
    for proc in _ours(data_dir):
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean DHAN_* environment with a tmp data folder; every process of it killed after."""
    data_dir = (tmp_path / "var").resolve()
    for key in [k for k in os.environ if k.startswith("DHAN_") or k == "REDIS_URL"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DHAN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    yield data_dir
    _kill_ours(data_dir)


@pytest.fixture
def simulator(env, monkeypatch):
    """The exchange simulator on a free port, as DHAN_FEED_URL (placeholder credentials)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dhan_trading", "simulator", "--port", str(port), "--seed", "1",
                             "--rate", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DHAN_DATA_DIR": str(env.parent / "simvar")})
    deadline = time.monotonic() + 60
    import socket
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None and time.monotonic() < deadline, "the simulator did not start"
        time.sleep(0.1)
    monkeypatch.setenv("DHAN_FEED_URL", f"ws://127.0.0.1:{port}")
    monkeypatch.setenv("DHAN_CLIENT_ID", "1000000001")
    monkeypatch.setenv("DHAN_ACCESS_TOKEN", "test-token")
    yield port
    proc.kill()
    proc.wait()


def _status_json() -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "dhan_trading", "services", "status", "--json"],
                         env=dict(os.environ), cwd="/", capture_output=True, text=True, timeout=90, check=False)
    assert out.returncode == 0, out.stderr
    return {s["id"]: s for s in json.loads(out.stdout)}


def _cell(window, service_id: str, column: str) -> str:
    from dhan_trading.gui.services_view import COLUMNS
    view = window.services_view
    return view.table.item(view.order.index(service_id), COLUMNS.index(column)).text()


def _state(window, service_id: str) -> str | None:
    return (window.suite.rows.get(service_id) or {}).get("state")


def _events(window) -> list[str]:
    events = window.services_view.events
    return [events.item(i).text() for i in range(events.count())]


def _open(qtbot, settings, **kw):
    from dhan_trading.gui.control_center import ControlCenter
    window = ControlCenter(settings, refresh_ms=kw.pop("refresh_ms", 300), **kw)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: bool(window.suite.rows), timeout=30_000)
    return window


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.chaos
@pytest.mark.slow
def test_start_all_kill_the_feed_close_reopen_and_stop_all(qtbot, env, own_redis, simulator, monkeypatch):
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    settings = load_settings(dotenv_path=None)
    rows = [s for s in SERVICES if s.id in ("redis", "fno_feed", "db_writer")]
    window = _open(qtbot, settings, services=rows)
    assert _cell(window, "fno_feed", "State") == "STOPPED"

    # Start all: the progress shows, and feed, writer and their Redis reach RUNNING
    qtbot.mouseClick(window.services_view.start_all_button, Qt.MouseButton.LeftButton)
    assert window.services_view.progress.isVisible()
    qtbot.waitUntil(lambda: "start all:" in window.services_view.progress_text.text(), timeout=10_000)
    qtbot.waitUntil(lambda: window.services_view.bulk is None, timeout=120_000)
    assert "start all: 3 running" in window.services_view.progress_text.text(), _events(window)
    qtbot.waitUntil(lambda: all(_cell(window, i, "State") == "RUNNING" for i in ("redis", "fno_feed", "db_writer")),
                    timeout=10_000)
    qtbot.waitUntil(lambda: _cell(window, "fno_feed", "Health") == "healthy", timeout=60_000)
    feed_pid = window.suite.rows["fno_feed"]["pid"]
    assert _cell(window, "fno_feed", "PID") == str(feed_pid) and "MiB" in _cell(window, "fno_feed", "Memory")
    assert _cell(window, "fno_feed", "Heartbeat").endswith("s ago")
    report = _status_json()  # the CLI, another process, sees the same
    for sid in ("redis", "fno_feed", "db_writer"):
        assert report[sid]["state"] == "RUNNING" and report[sid]["pid"] == window.suite.rows[sid]["pid"]
    assert window.services_view.buttons["fno_feed"]["start"].isEnabled() is False
    assert window.services_view.buttons["fno_feed"]["stop"].isEnabled()

    # SIGKILL the feed: shown restarting (BACKOFF or STARTING, the event logged), then back
    os.kill(feed_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: _state(window, "fno_feed") in ("BACKOFF", "STARTING"), timeout=15_000)
    qtbot.waitUntil(lambda: _state(window, "fno_feed") == "RUNNING" and window.suite.rows["fno_feed"]["pid"]
                    not in (None, feed_pid), timeout=60_000)
    assert _cell(window, "fno_feed", "Restarts") == "1"
    assert any("fno_feed: RUNNING → BACKOFF" in e and "exited with code -9" in e for e in _events(window))
    # ... and the supervisor's own event shows inline in the feed's log
    window.logs_view.show_service("fno_feed")
    qtbot.waitUntil(lambda: any("[supervisor] fno_feed: BACKOFF: exited with code -9" in line
                                for line in window.logs_view.shown_lines()), timeout=10_000)
    new_pid = window.suite.rows["fno_feed"]["pid"]

    # closing the window leaves the services running; a new one re-attaches to them
    window.close()
    assert Supervisor(rows, settings).status("fno_feed").pid == new_pid
    again = _open(qtbot, settings, services=rows)
    assert _state(again, "fno_feed") == "RUNNING" and again.suite.rows["fno_feed"]["pid"] == new_pid

    # Stop all stops everything, dependents first
    qtbot.waitUntil(lambda: again.services_view.stop_all_button.isEnabled(), timeout=5_000)
    qtbot.mouseClick(again.services_view.stop_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: again.services_view.bulk is None, timeout=120_000)
    qtbot.waitUntil(lambda: all(_cell(again, i, "State") == "STOPPED" for i in ("redis", "fno_feed", "db_writer")),
                    timeout=10_000)
    assert not again.services_view.stop_all_button.isEnabled()
    report = _status_json()
    assert all(report[i]["state"] == "STOPPED" and report[i]["pid"] is None for i in ("redis", "fno_feed", "db_writer"))
    again.close()
    assert _ours(env) == []


BROKEN = "import sys; print('cannot open /nowhere/feed.cfg: no such file', flush=True); sys.exit(3)"


@pytest.mark.gui
@pytest.mark.integration
def test_a_service_that_cannot_start_shows_fatal_with_its_reason_and_notifies_once(qtbot, env, settings_env):
    settings = settings_env(DHAN_DATA_DIR=env, REDIS_URL="redis://127.0.0.1:1/0")
    broken = Service("broken", "Broken Service", (sys.executable, "-c", BROKEN), module="json", health="process",
                     restart=FAST)
    missing = Service("missing", "Not Written Yet", (sys.executable, "-m", "nowhere"), module="dhan_trading.nowhere")
    window = _open(qtbot, settings, services=[broken, missing])
    assert _cell(window, "missing", "State") == "unavailable"
    assert "not in this checkout" in _cell(window, "missing", "Problem / last message")
    assert not window.services_view.buttons["missing"]["start"].isEnabled()

    qtbot.waitUntil(lambda: window.services_view.buttons["broken"]["start"].isEnabled(), timeout=5_000)
    qtbot.mouseClick(window.services_view.buttons["broken"]["start"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _cell(window, "broken", "State") == "FATAL", timeout=30_000)
    problem = _cell(window, "broken", "Problem / last message")
    assert "exited with code 3" in problem and "giving up after 2 retries" in problem, problem
    assert _cell(window, "broken", "Exit") == "3" and _cell(window, "broken", "Health") == "unhealthy"
    qtbot.waitUntil(lambda: window.notes != [], timeout=5_000)
    assert window.notes[0][0] == "Broken Service is FATAL" and "giving up" in window.notes[0][1]
    buttons = window.services_view.buttons["broken"]
    assert buttons["start"].isEnabled() and not buttons["stop"].isEnabled() and not buttons["restart"].isEnabled()
    # the log says why, with the supervisor's verdict inline
    window.logs_view.show_service("broken")
    qtbot.waitUntil(lambda: any("[supervisor] broken: FATAL" in line for line in window.logs_view.shown_lines()),
                    timeout=10_000)
    assert any("cannot open /nowhere/feed.cfg" in line for line in window.logs_view.shown_lines())
    qtbot.wait(1_000)  # a few more refreshes: still one notification for the one transition
    assert len(window.notes) == 1
    window.close()


@pytest.mark.gui
def test_the_log_view_follows_a_growing_rotating_file_with_filters_and_pause(qtbot, env, settings_env):
    from dhan_trading.gui.control_center import ControlCenter
    settings = settings_env(DHAN_DATA_DIR=env, REDIS_URL="redis://127.0.0.1:1/0")
    svc = Service("svc", "Svc", (sys.executable, "-c", "pass"), module="json", health="process")
    window = ControlCenter(settings, services=[svc])
    qtbot.addWidget(window)
    view = window.logs_view
    log = env / "logs" / "svc.log"
    log.parent.mkdir(parents=True)

    def write(*lines: str, path: Path = log) -> None:
        with open(path, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))

    write("2026-12-03 09:15:00,001 INFO feed: connected", "2026-12-03 09:15:01,002 DEBUG feed: frame 1")
    qtbot.waitUntil(lambda: len(view.shown_lines()) == 2, timeout=10_000)
    with open(log, "a") as fh:
        fh.write("2026-12-03 09:15:02,003 ERROR feed: half a li")  # a line still being written
    qtbot.waitUntil(lambda: view.follower.partial != b"", timeout=10_000)
    assert len(view.shown_lines()) == 2  # not shown until it is whole
    write("ne", "Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: boom",
          "2026-12-03 09:15:03 [supervisor] svc: BACKOFF: exited with code 1; retry 1 in 2s")
    qtbot.waitUntil(lambda: len(view.shown_lines()) == 7, timeout=10_000)
    assert view.shown_lines()[2] == "2026-12-03 09:15:02,003 ERROR feed: half a line"
    # rotation: the file is renamed to .1 and a new one begins; nothing is lost
    write("2026-12-03 09:15:04,000 WARNING feed: last line before rotation")
    os.rename(log, log.with_name("svc.log.1"))
    write("2026-12-03 09:15:05,000 INFO feed: first line after rotation")
    qtbot.waitUntil(lambda: "first line after rotation" in view.shown_lines()[-1], timeout=10_000)
    assert "last line before rotation" in view.shown_lines()[-2]
    assert len(view.shown_lines()) == 9

    view.level.setCurrentText("ERROR")  # the ERROR line with its traceback, and the supervisor's event
    lines = view.shown_lines()
    assert len(lines) == 5 and "ValueError: boom" in lines[3] and "[supervisor]" in lines[4], lines
    view.level.setCurrentText("WARNING")
    assert len(view.shown_lines()) == 6
    view.level.setCurrentText("DEBUG")
    view.search.setText("ROTATION")
    view.only_matches.setChecked(True)
    assert [ln.split(": ")[-1] for ln in view.shown_lines()] == ["last line before rotation",
                                                                 "first line after rotation"]
    view.only_matches.setChecked(False)
    assert len(view.shown_lines()) == 9

    view.follow.setChecked(False)  # paused: lines are read, not shown
    write("2026-12-03 09:15:06,000 INFO feed: while paused")
    qtbot.waitUntil(lambda: view.follow.text() == "Paused (1 new)", timeout=10_000)
    assert "while paused" not in view.shown_lines()[-1]
    view.follow.setChecked(True)
    assert "while paused" in view.shown_lines()[-1]
    window.close()


BEAT = textwrap.dedent("""
    import os, sys, time, redis
    from dhan_trading import bus
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    while True:  # healthy while the file named by argv[1] exists
        ok = os.path.exists(sys.argv[1])
        bus.publish_health(client, bus.heartbeat("beat", "working" if ok else "db_down", ok,
                                                 None if ok else "cannot reach the database"))
        time.sleep(0.3)
""")


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.slow
def test_the_window_stays_responsive_while_redis_is_blocked_and_notifies_unhealthy_once(
        qtbot, env, own_redis, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    settings = load_settings(dotenv_path=None)
    script, ok = tmp_path / "beat.py", tmp_path / "ok"
    script.write_text(BEAT)
    ok.touch()
    beat = Service("beat", "Beat", (sys.executable, str(script), str(ok)), script=script, restart=FAST)
    window = _open(qtbot, settings, services=[beat])
    window.services_view.act("start", "beat")
    qtbot.waitUntil(lambda: _cell(window, "beat", "Health") == "healthy", timeout=30_000)

    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(50)
    redis.Redis.from_url(own_redis.url).execute_command("CLIENT", "PAUSE", "5000")
    paused_at = time.monotonic()
    seen_blocked = []
    qtbot.waitUntil(lambda: (seen_blocked.append(not window.services_view.polling.done()),
                             time.monotonic() - paused_at > 5.5)[1], timeout=20_000)
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert any(seen_blocked), "the status read never waited on Redis: the test did not block anything"
    # a Redis call on the GUI thread would stall it for the pause or the 2 s socket timeout; allow
    # a loaded machine's scheduling hiccups, not that
    assert len(ticks) > 40 and max(gaps) < 1.0, f"the GUI thread stalled {max(gaps):.2f} s"

    # the paused heartbeat may have gone stale meanwhile (a true, notified transition): start afresh
    qtbot.waitUntil(lambda: _cell(window, "beat", "Health") == "healthy", timeout=30_000)
    window.notes.clear()
    ok.unlink()  # the service says it cannot work: one notification for the transition
    qtbot.waitUntil(lambda: _cell(window, "beat", "Health") == "unhealthy", timeout=30_000)
    assert _cell(window, "beat", "Problem / last message") == "cannot reach the database"
    qtbot.waitUntil(lambda: window.notes != [], timeout=5_000)
    qtbot.wait(1_000)
    assert window.notes == [("Beat is unhealthy", "cannot reach the database")]
    assert any("⚠ Beat is unhealthy" in e for e in _events(window))
    window.services_view.act("stop", "beat")
    qtbot.waitUntil(lambda: _cell(window, "beat", "State") == "STOPPED", timeout=30_000)
    window.close()


@pytest.mark.gui
def test_a_bad_env_file_opens_the_configuration_tab_with_the_error(qtbot, tmp_path):
    from dhan_trading.gui.control_center import ControlCenter, load_config
    dotenv = tmp_path / ".env"
    dotenv.write_text("DHAN_DB_PORT=three-three-oh-six\nDHAN_ACCESS_TOKEN=s3cret-t0ken\n")
    settings, error = load_config(lambda: load_settings(environ={}, dotenv_path=dotenv))
    assert settings is None
    window = ControlCenter(settings, error, dotenv_path=dotenv)
    qtbot.addWidget(window)
    window.show()
    assert window.tabs.currentWidget() is window.config_view
    assert window.config_view.error.isVisible()
    text = window.config_view.error.text()
    assert "DHAN_DB_PORT='three-three-oh-six' is not a whole number" in text and str(dotenv) in text
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Configuration"]
    assert not any(b.isEnabled() for b in window.config_view.buttons.values())
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_the_launcher_with_a_bad_setting_opens_the_window_not_a_traceback(tmp_path, env):
    shot = tmp_path / "shot.png"
    out = subprocess.run([sys.executable, str(REPO / "launch_dhan_control_center.py"), "--screenshot", str(shot),
                          "--after", "1"], env={**os.environ, "DHAN_DB_PORT": "abc", "QT_QPA_PLATFORM": "offscreen"},
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert shot.stat().st_size > 10_000


@pytest.mark.gui
@pytest.mark.integration
def test_settings_are_masked_and_the_connection_tests_say_what_failed(qtbot, env, settings_env, own_redis):
    from PyQt6.QtWidgets import QLabel

    from dhan_trading.gui.control_center import ControlCenter
    settings = settings_env(DHAN_DATA_DIR=env, REDIS_URL=own_redis.url.replace("127.0.0.1", "u:pw-secret@127.0.0.1"),
                            DHAN_ACCESS_TOKEN="tok-sec-ret-123", DHAN_CLIENT_ID="1000000001",
                            DHAN_FEED_URL=f"ws://127.0.0.1:{free_port()}")
    window = ControlCenter(settings, services=[])
    qtbot.addWidget(window)
    view = window.config_view
    shown = " ".join(w.text() for w in view.findChildren(QLabel))
    assert "tok-sec-ret-123" not in shown and "pw-secret" not in shown and "*** (set)" in shown
    assert str(env) in shown
    view.run_check("database", __import__("dhan_trading.gui.config_view", fromlist=["x"]).check_database)
    qtbot.mouseClick(view.buttons["dhan"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.results["dhan"].text().startswith("FAILED"), timeout=20_000)
    assert "handshake with ws://127.0.0.1:" in view.results["dhan"].text()
    assert "tok-sec-ret-123" not in view.results["dhan"].text()
    qtbot.waitUntil(lambda: view.results["database"].text().startswith("OK"), timeout=20_000)
    qtbot.mouseClick(view.buttons["redis"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.results["redis"].text().startswith("testing"), timeout=20_000)
    assert view.results["redis"].text().startswith("FAILED")  # our redis-server has no user u
    assert "pw-secret" not in view.results["redis"].text()
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_a_second_control_center_raises_the_first_and_exits_0(qtbot, env, settings_env):
    from dhan_trading.gui.control_center import (
        ControlCenter,
        SingleInstance,
        instance_name,
    )
    settings = settings_env(DHAN_DATA_DIR=env, REDIS_URL="redis://127.0.0.1:1/0")
    window = ControlCenter(settings, services=[])
    qtbot.addWidget(window)
    first = SingleInstance(instance_name(env))
    assert first.claim()
    raised = []
    first.raise_requested.connect(lambda: raised.append(True))
    second = subprocess.Popen([sys.executable, str(REPO / "launch_dhan_control_center.py")],
                              env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "QT_QPA_PLATFORM": "offscreen"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        qtbot.waitUntil(lambda: second.poll() is not None and bool(raised), timeout=60_000)
    finally:
        if second.poll() is None:
            second.kill()
    out = second.communicate()[0]
    assert second.returncode == 0 and "already open" in out, out
    window.close()


@pytest.mark.gui
def test_the_monitor_tab_hosts_the_monitor_view_or_says_it_is_missing(qtbot, env, settings_env):
    from dhan_trading.gui.control_center import ControlCenter
    settings = settings_env(DHAN_DATA_DIR=env, REDIS_URL="redis://127.0.0.1:1/0")
    window = ControlCenter(settings, services=[])
    qtbot.addWidget(window)
    assert window.monitor is None  # imported only when its tab opens
    window.show_tab("Monitor")
    assert window.monitor is not None and window.monitor.parent() is window.monitor_holder
    window.close()


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("duration", [45, 4], ids=["after-45s", "closed-during-start-all"])
def test_demo_gui_runs_the_pipeline_in_the_control_center_and_leaves_nothing_behind(tmp_path, duration):
    """`python -m dhan_trading demo --gui` with nothing configured: every demo service started
    from the control center, rows stored, and closing the window (here --duration) stops all,
    even when it is closed while Start all is still starting them."""
    data_dir = (tmp_path / "var").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHAN_") and k != "REDIS_URL"}
    env.update(DHAN_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    try:
        result = subprocess.run([sys.executable, "-m", "dhan_trading", "demo", "--gui", "--duration", str(duration),
                                 "--rate", "500"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        states = {p.name.split(".")[0]: json.loads(p.read_text()) for p in (data_dir / "run").glob("*.state.json")}
        for sid in ("redis", "simulator", "fno_feed", "db_writer"):
            assert states[sid]["state"] == "STOPPED" and states[sid]["restarts"] == 0, (sid, states[sid])
        if duration > 30:
            import sqlite3
            db = sqlite3.connect(data_dir / "dhan_trading.sqlite3")
            quotes = db.execute("SELECT COUNT(*) FROM dhan_quotes").fetchone()[0]
            assert quotes > 100, quotes
        assert _ours(data_dir) == []
        assert not (data_dir / "redis" / "redis.sock").exists()  # the embedded Redis it started is stopped
    finally:
        _kill_ours(data_dir)  # only if it failed: nothing may outlive the test


@pytest.mark.gui
def test_the_schedule_shows_the_plan_the_scheduler_runs_and_the_calendar_warning(qtbot, env, settings_env):
    from datetime import datetime

    from dhan_trading.gui.control_center import ControlCenter
    from dhan_trading.gui.schedule_view import compute_plan
    from dhan_trading.scheduler.calendar import IST, MarketCalendar
    from dhan_trading.scheduler.plan import day_plan
    settings = settings_env(DHAN_DATA_DIR=env, REDIS_URL="redis://127.0.0.1:1/0")
    window = ControlCenter(settings)
    qtbot.addWidget(window)
    view = window.schedule_view
    qtbot.waitUntil(lambda: view.plan is not None and "market_scheduler" in window.suite.rows, timeout=30_000)
    today = view.plan
    assert today["actions"] == day_plan(MarketCalendar(settings), datetime.fromisoformat(today["date"]).date(),
                                        [s for s in SERVICES if s.scheduled])["actions"]  # what --plan prints
    assert view.table.rowCount() == len(today["actions"])
    qtbot.waitUntil(lambda: "STOPPED" in view.scheduler_state.text(), timeout=5_000)
    assert view.start_button.isEnabled()
    assert not view.stop_button.isEnabled()

    with pytest.warns(UserWarning, match="no holiday table covers 2039"):  # a year no table covers
        far = compute_plan(settings, SERVICES, now=datetime(2039, 6, 1, 8, 0, tzinfo=IST))
    view._got(far)
    assert not view.warning.isHidden() and "no holiday table covers 2039" in view.warning.text()
    assert view.next.text().startswith("Next: start ") and view.table.item(0, 3).text().startswith("in ")
    window.close()
