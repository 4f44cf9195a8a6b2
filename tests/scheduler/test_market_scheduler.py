"""The scheduler: --plan output, and a fake clock driving a real supervisor."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, time, timedelta

import pytest

from dhan_trading.scheduler.calendar import IST, MarketCalendar
from dhan_trading.scheduler.market_scheduler import MarketScheduler
from dhan_trading.scheduler.plan import day_plan
from dhan_trading.config import PROJECT_ROOT as REPO_ROOT
from dhan_trading.services.registry import RestartPolicy, Service
from dhan_trading.services.supervisor import Supervisor


def at(d: str, hm: str) -> datetime:
    return datetime.combine(date.fromisoformat(d), time.fromisoformat(hm), IST)


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=max(seconds, 1.0))


def _plan_cli(day: str, tmp_path) -> dict:
    out = subprocess.run([sys.executable, "-m", "dhan_trading.scheduler.market_scheduler", "--plan", day, "--json"],
                         cwd=tmp_path, env={"PYTHONPATH": str(REPO_ROOT), "DHAN_DATA_DIR": str(tmp_path),
                                            "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.integration
def test_plan_cli_json(tmp_path):
    plan = _plan_cli("2026-03-09", tmp_path)
    assert plan["date"] == "2026-03-09" and plan["covered"] is True
    assert [(s["exchange"], s["open"], s["close"]) for s in plan["sessions"]] == [
        ("NSE", "2026-03-09T09:15:00+05:30", "2026-03-09T15:30:00+05:30"),
        ("MCX", "2026-03-09T09:00:00+05:30", "2026-03-09T23:30:00+05:30")]
    assert {"at": "2026-03-09T08:55:00+05:30", "action": "start", "service": "fno_feed"} in plan["actions"]
    assert {"at": "2026-03-09T15:35:00+05:30", "action": "stop", "service": "fno_feed"} in plan["actions"]
    holiday = _plan_cli("2026-01-26", tmp_path)
    assert holiday["sessions"] == [] and holiday["actions"] == []



@pytest.mark.unit
@pytest.mark.parametrize("day,expected", [
    ("2026-11-21", []),                                                     # Saturday
    ("2026-01-26", []),                                                     # Republic Day: both shut
    ("2026-11-24", [("MCX", "17:00", "23:55")]),                            # NSE holiday, MCX evening
    ("2026-11-02", [("NSE", "09:15", "15:30"), ("MCX", "09:00", "23:55")]),  # US back on standard time
    ("2026-03-09", [("NSE", "09:15", "15:30"), ("MCX", "09:00", "23:30")]),  # US on DST
])
def test_plan_sessions(settings_env, day, expected):
    plan = day_plan(MarketCalendar(settings_env()), date.fromisoformat(day), [])
    assert [(s["exchange"], s["open"][11:16], s["close"][11:16]) for s in plan["sessions"]] == expected
    assert all(s["open"].endswith("+05:30") for s in plan["sessions"])


@pytest.mark.unit
def test_plan_for_an_uncovered_year_carries_the_warning(settings_env):
    with pytest.warns(UserWarning):
        # nse_base covering no year: 2027 stays uncovered whatever exchange_calendars ships
        plan = day_plan(MarketCalendar(settings_env(), nse_base=lambda year: None), date(2027, 2, 1), [])
    assert plan["covered"] is False and "DHAN_HOLIDAYS_FILE" in plan["warnings"][0]


def _service(id_, session):
    return Service(id_, id_, (sys.executable, "-c", "import time; time.sleep(600)"), module="json",
                   health="process", session=session, restart=RestartPolicy(startsecs=0.2, stop_timeout=2))


@pytest.mark.unit
def test_dry_run_skips_holidays_and_follows_the_mcx_evening(settings_env):
    clock = FakeClock(at("2026-11-23", "07:00"))
    services = [_service("feed", "NSE"), _service("writer", "NSE+MCX")]
    sched = MarketScheduler(MarketCalendar(settings_env()), None, services, clock=clock, sleep=clock.sleep,
                            max_sleep=3600)
    sched.run(until=at("2026-11-25", "07:00"))
    assert [(a.at.isoformat()[5:16], a.action, a.service) for a in sched.history] == [
        ("11-23T08:55", "start", "feed"), ("11-23T08:55", "start", "writer"),
        ("11-23T15:35", "stop", "feed"),
        ("11-24T00:00", "stop", "writer"),
        # 2026-11-24 is an NSE holiday: no feed; the writer follows MCX's evening session
        ("11-24T16:55", "start", "writer"), ("11-25T00:00", "stop", "writer")]


@pytest.mark.integration
def test_fake_clock_drives_a_real_supervisor(settings_env):
    services = [_service("feed", "NSE"), _service("writer", "NSE+MCX"), _service("manual", None)]
    sup = Supervisor(services, settings_env(), poll=0.02)
    try:
        clock = FakeClock(at("2026-11-20", "11:00"))  # started mid-session: starts what should run now
        sched = MarketScheduler(MarketCalendar(settings_env()), sup, services, clock=clock, sleep=clock.sleep,
                                max_sleep=3600)
        sched.tick()
        assert sup.status("feed").state == "RUNNING" and sup.status("writer").state == "RUNNING"
        assert sup.status("manual").state == "STOPPED"
        feed_pid = sup.status("feed").pid
        # a scheduler restarted mid-session re-attaches to what runs: no duplicate
        again = MarketScheduler(MarketCalendar(settings_env()), sup, services, clock=clock, sleep=clock.sleep,
                                max_sleep=3600)
        again.tick()
        assert sup.status("feed").pid == feed_pid
        sched.run(until=at("2026-11-20", "16:00"))
        assert sup.status("feed").state == "STOPPED" and sup.status("writer").state == "RUNNING"
        sched.run(until=at("2026-11-21", "01:00"))
        assert sup.status("writer").state == "STOPPED"
        assert [(a.action, a.service, a.result) for a in sched.history] == [
            ("start", "feed", "RUNNING"), ("start", "writer", "RUNNING"),
            ("stop", "feed", "STOPPED"), ("stop", "writer", "STOPPED")]
    finally:
        sup.stop_all()


@pytest.mark.integration
def test_the_scheduler_heartbeat_is_the_one_record_and_tells_a_failed_start(settings_env, redis_url, redis_client):
    from dhan_trading import bus
    from dhan_trading.scheduler.market_scheduler import _Heartbeat
    good = _service("feed", "NSE")
    broken = Service("writer", "writer", (sys.executable, "-c", "raise SystemExit(78)"), module="json",
                     health="process", session="NSE+MCX", restart=RestartPolicy(startsecs=0.2, stop_timeout=2))
    settings = settings_env(REDIS_URL=redis_url)
    sup = Supervisor([good, broken], settings, poll=0.02)
    try:
        clock = FakeClock(at("2026-11-20", "11:00"))
        sched = MarketScheduler(MarketCalendar(settings), sup, [good, broken], clock=clock, sleep=clock.sleep,
                                max_sleep=3600, heartbeat=_Heartbeat(settings))
        sched.run(until=at("2026-11-20", "11:00"))
        record = bus.read_health(redis_client, "market_scheduler")
        healthy, problem = bus.assess_health(record)
        assert record["state"] == "scheduling" and record["wanted"] == ["feed", "writer"]
        assert healthy is False and problem == "start writer at 11:00 IST gave FATAL"
        sched.run(until=at("2026-11-20", "16:00"))  # feed stopped cleanly; writer still failed
        assert bus.assess_health(bus.read_health(redis_client, "market_scheduler"))[0] is False
        sched.failed.clear()
        sched.run(until=at("2026-11-20", "16:01"))
        assert bus.assess_health(bus.read_health(redis_client, "market_scheduler")) == (True, None)
    finally:
        sup.stop_all()
