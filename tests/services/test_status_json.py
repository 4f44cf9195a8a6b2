"""`services start-all` outside market hours and `services status --json` (DESIGN §3.1) on the
suite's real feed and redis services, read by a separate process as the control center would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dhan_trading.config import load_settings
from dhan_trading.scheduler.calendar import IST
from dhan_trading.services import cli
from dhan_trading.services.registry import SERVICES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
STATES = {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL"}
KEYS = {"id", "title", "state", "pid", "restarts", "healthy", "problem", "started_at", "uptime_s", "exit_code",
        "available", "unavailable_reason", "depends_on", "health_state", "health_age_s", "message"}


@pytest.fixture
def closed_env(tmp_path, redis_url, monkeypatch):
    """Dhan's feed URL with placeholder credentials, and a calendar closed all week."""
    today = datetime.now(IST).date()
    holidays = tmp_path / "closed.csv"
    holidays.write_text("".join(f"{today + timedelta(days=d)},{ex},closed\n" for d in range(-1, 8)
                                for ex in ("NSE", "MCX")))
    env = {"REDIS_URL": redis_url, "DHAN_DATA_DIR": str(tmp_path / "var"), "DHAN_CLIENT_ID": "1000000001",
           "DHAN_ACCESS_TOKEN": "placeholder-token", "DHAN_HOLIDAYS_FILE": str(holidays)}
    for key in [k for k in os.environ if k.startswith("DHAN_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _status_json(env: dict) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "dhan_trading", "services", "status", "--json"],
                         env={**os.environ, **env, "PYTHONPATH": str(REPO)}, cwd="/",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_start_all_outside_hours_succeeds_and_status_json_tells_the_truth(closed_env):
    settings = load_settings(environ=closed_env, dotenv_path=None)
    rows = [s for s in SERVICES if s.id in ("redis", "fno_feed")]
    try:
        assert cli.main(["start-all"], services=rows, settings=settings) == 0  # was 1: the feed exited "closed"
        deadline = time.monotonic() + 30
        while True:
            report = {s["id"]: s for s in _status_json(closed_env)}
            if report["fno_feed"]["healthy"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert list(report) == [s.id for s in SERVICES]  # one object per registry row, in order
        for item in report.values():
            assert KEYS <= set(item) and item["state"] in STATES, item
        feed = report["fno_feed"]
        assert (feed["state"], feed["healthy"], feed["problem"]) == ("RUNNING", True, None)
        assert feed["health_state"] == "waiting_for_session" and "waiting for session at" in feed["health"]["detail"]
        assert feed["pid"] == feed["health"]["pid"] != feed["runner_pid"]  # the feed's own process
        assert feed["depends_on"] == ["redis"] and feed["restarts"] == 0 and feed["uptime_s"] > 0
        assert 0 <= feed["health_age_s"] < 5 and feed["available"] and feed["unavailable_reason"] is None
        assert report["redis"]["state"] == "RUNNING" and report["redis"]["healthy"] is True
        text = subprocess.run([sys.executable, "-m", "dhan_trading", "services", "status", "fno_feed"],
                              env={**os.environ, **closed_env, "PYTHONPATH": str(REPO)}, cwd="/",
                              capture_output=True, text=True, timeout=60).stdout
        assert "RUNNING" in text and "ok waiting_for_session" in text, text
        chart = report["tick_chart"]
        assert (chart["state"], chart["pid"], chart["healthy"], chart["uptime_s"]) == ("STOPPED", None, None, None)
    finally:
        cli.main(["stop-all"], services=rows, settings=settings)
    stopped = {s["id"]: s for s in _status_json(closed_env)}
    assert stopped["fno_feed"]["state"] == "STOPPED" and stopped["fno_feed"]["pid"] is None
