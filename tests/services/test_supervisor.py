"""The supervisor on real child processes: backoff, FATAL, dependency order, re-attach, logs."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psutil
import pytest

from dhan_trading import exitcodes
from dhan_trading.services.registry import RestartPolicy
from dhan_trading.services.supervisor import ServiceError

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_starts_runs_and_stops_a_service_in_its_own_process_group(lab, make_supervisor):
    sup = make_supervisor([lab.service("alpha")])
    st = sup.start("alpha")
    assert st.state == "RUNNING" and st.pid
    assert os.getpgid(st.pid) == st.pid != os.getpgid(0)
    stopped = sup.stop("alpha")
    assert stopped.state == "STOPPED" and not psutil.pid_exists(st.pid)
    assert lab.events() == [("start", "alpha"), ("stop", "alpha")]


def test_a_crashing_program_backs_off_then_goes_fatal(lab, make_supervisor):
    sup = make_supervisor([lab.service("crashy", "exit:3")])
    st = sup.start("crashy", timeout=10)
    assert st.state == "FATAL" and st.exit_code == 3
    assert lab.events() == [("start", "crashy")] * (lab.policy.max_retries + 1)
    log = sup.log_path("crashy").read_text()
    assert "retry 1 in 0.1s" in log and "retry 2 in 0.2s" in log and "retry 3 in 0.4s" in log
    assert "giving up after 3 retries" in log
    assert "crashy started" in log  # the child's own output is in the same log


def test_a_fatal_exit_code_is_never_restarted(lab, make_supervisor):
    sup = make_supervisor([lab.service("nocreds", f"exit:{exitcodes.FATAL}")])
    st = sup.start("nocreds", timeout=5)
    assert st.state == "FATAL" and st.exit_code == exitcodes.FATAL
    time.sleep(0.5)
    assert lab.events() == [("start", "nocreds")]


def test_a_service_that_crashes_while_running_is_restarted(lab, make_supervisor):
    sup = make_supervisor([lab.service("flaky", "crash-after:0.7")])
    first = sup.start("flaky")
    assert first.state == "RUNNING"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = sup.status("flaky")
        if st.state == "RUNNING" and st.pid != first.pid:
            break
        time.sleep(0.05)
    assert st.state == "RUNNING" and st.pid != first.pid


def test_stop_escalates_to_sigkill(lab, make_supervisor):
    policy = RestartPolicy(startsecs=0.2, stop_timeout=0.5)
    sup = make_supervisor([lab.service("stubborn", "stubborn", policy)])
    pid = sup.start("stubborn").pid
    t0 = time.monotonic()
    assert sup.stop("stubborn").state == "STOPPED"
    assert 0.4 < time.monotonic() - t0 < 5
    assert not psutil.pid_exists(pid)
    assert "SIGKILL" in sup.log_path("stubborn").read_text()


def test_dependencies_start_first_and_dependents_stop_first(lab, make_supervisor):
    sup = make_supervisor([lab.service("web", depends_on=("api",)), lab.service("api", depends_on=("db",)),
                           lab.service("db"), lab.service("other")])
    assert sup.start("web").state == "RUNNING"
    assert [e for e in lab.events()] == [("start", "db"), ("start", "api"), ("start", "web")]
    assert sup.status("other").state == "STOPPED"
    sup.stop("db")
    assert lab.events()[3:] == [("stop", "web"), ("stop", "api"), ("stop", "db")]
    assert all(sup.status(i).state == "STOPPED" for i in ("web", "api", "db"))


def test_a_failing_dependency_blocks_its_dependent(lab, make_supervisor):
    sup = make_supervisor([lab.service("broken", f"exit:{exitcodes.FATAL}"),
                           lab.service("needy", depends_on=("broken",))])
    with pytest.raises(ServiceError, match="dependency broken is FATAL"):
        sup.start("needy")
    assert ("start", "needy") not in lab.events()


def test_a_new_supervisor_reattaches_instead_of_starting_a_duplicate(lab, make_supervisor):
    services = [lab.service("feedish")]
    first = make_supervisor(services)
    pid = first.start("feedish").pid
    del first
    second = make_supervisor(services)
    st = second.status("feedish")
    assert st.state == "RUNNING" and st.pid == pid
    assert second.start("feedish").pid == pid
    assert lab.events() == [("start", "feedish")]
    assert second.stop("feedish").state == "STOPPED" and not psutil.pid_exists(pid)


def test_a_dead_runner_is_reported_and_its_leftovers_cleaned(lab, make_supervisor):
    sup = make_supervisor([lab.service("orphan")])
    st = sup.start("orphan")
    os.kill(st.runner_pid, 9)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(st.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel's parent-death signal takes the service down with it
    assert not psutil.pid_exists(st.pid) or psutil.Process(st.pid).status() == psutil.STATUS_ZOMBIE
    gone = sup.status("orphan")
    assert gone.state == "STOPPED" and "runner is gone" in gone.message
    assert sup.start("orphan").state == "RUNNING"


def test_logs_rotate(lab, make_supervisor):
    sup = make_supervisor([lab.service("chatty", "chatty")], log_max_bytes=20_000, log_backups=2)
    sup.start("chatty")
    log = sup.log_path("chatty")
    deadline = time.monotonic() + 10
    while "line 01999" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    rotated = sorted(log.parent.glob("chatty.log.*"))
    assert [p.name for p in rotated] == ["chatty.log.1", "chatty.log.2"]
    assert all(p.stat().st_size <= 20_000 for p in [log, *rotated])
    assert "line 01999" in log.read_text()


def test_an_unavailable_service_is_refused_not_faked(lab, make_supervisor, tmp_path):
    missing = lab.service("ghost")
    missing = type(missing)(**{**missing.__dict__, "script": tmp_path / "not_written_yet.py"})
    sup = make_supervisor([missing])
    assert not missing.available
    with pytest.raises(ServiceError, match="not available"):
        sup.start("ghost")
    assert lab.events() == []


def test_status_judges_real_heartbeats_healthy_unhealthy_stale_and_missing(lab, make_supervisor, settings_env,
                                                                           redis_url, redis_client):
    from dhan_trading import bus
    services = [lab.service("good", "beat:streaming:yes", health="heartbeat"),
                lab.service("sick", "beat:db_down:no", health="heartbeat"),
                lab.service("frozen", health="heartbeat"), lab.service("silent", health="heartbeat")]
    settings = settings_env(REDIS_URL=redis_url)
    sup = make_supervisor(services, health_client=redis_client, heartbeat_grace=0.0)
    sup.settings = settings  # children get REDIS_URL
    for s in services:
        assert sup.start(s.id).state == "RUNNING"
    stale = bus.heartbeat("frozen", "streaming", True)
    stale["ts"] -= 60  # a publisher whose loop hung: the key lives on, its time does not move
    stale["pid"] = sup.status("frozen").pid
    bus.publish_health(redis_client, stale)
    deadline = time.monotonic() + 10
    while sup.status("sick").health is None and time.monotonic() < deadline:
        time.sleep(0.05)
    good, sick, frozen, silent = (sup.status(s.id) for s in services)
    assert (good.healthy, good.problem, good.health["state"], good.health["rows"]) == (True, None, "streaming", 7)
    assert good.health["pid"] == good.pid  # the service's own process published it
    assert (sick.state, sick.healthy, sick.problem) == ("RUNNING", False, "sick is db_down")
    assert frozen.healthy is False and re.fullmatch(r"heartbeat is 6\d s old", frozen.problem)
    assert silent.healthy is False and "no heartbeat" in silent.problem
    impostor = bus.heartbeat("silent", "streaming", True)  # e.g. a second feed started by hand
    impostor["pid"] = os.getpid()
    bus.publish_health(redis_client, impostor)
    silent = sup.status("silent")
    assert silent.healthy is False and "another instance" in silent.problem
    redis_client.delete(bus.health_key("silent"))
    patient = make_supervisor(services, health_client=redis_client)  # default 30 s grace
    assert patient.status("silent").healthy is None and "no heartbeat yet" in patient.status("silent").problem
    blind = make_supervisor(services)  # no Redis to ask: unknown, never "healthy"
    assert blind.status("good").healthy is None and "Redis" in blind.status("good").problem


def test_fatal_and_backoff_are_unhealthy_with_the_reason(lab, make_supervisor):
    sup = make_supervisor([lab.service("nocreds", f"exit:{exitcodes.FATAL}")])
    st = sup.start("nocreds", timeout=5)
    assert st.state == "FATAL" and st.healthy is False and "no restart can help" in st.problem
    assert sup.status("nocreds").pid is None


def test_restart_starts_again_the_dependents_that_were_running(lab, make_supervisor):
    sup = make_supervisor([lab.service("db"), lab.service("api", depends_on=("db",)),
                           lab.service("web", depends_on=("api",)), lab.service("cron", depends_on=("db",))])
    sup.start("web")
    before = {i: sup.status(i).pid for i in ("db", "api", "web")}
    st = sup.restart("db")
    assert st.state == "RUNNING"
    after = {i: sup.status(i) for i in ("db", "api", "web", "cron")}
    assert all(after[i].state == "RUNNING" and after[i].pid != before[i] for i in before)
    assert after["cron"].state == "STOPPED"  # not running before: not started by a restart
    assert lab.events()[3:] == [("stop", "web"), ("stop", "api"), ("stop", "db"),
                                ("start", "db"), ("start", "api"), ("start", "web")]
    assert all(after[i].restarts == 0 for i in before)  # new runners: fresh counts


def test_restarts_are_counted(lab, make_supervisor):
    sup = make_supervisor([lab.service("flaky", "crash-after:0.5")])
    sup.start("flaky")
    deadline = time.monotonic() + 15
    while sup.status("flaky").restarts < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sup.status("flaky").restarts >= 2


START_RACE = """
import sys, time
from pathlib import Path
from dhan_trading.config import load_settings
from dhan_trading.services.registry import RestartPolicy, Service
from dhan_trading.services.supervisor import Supervisor
data_dir, script, journal, go = sys.argv[1:5]
svc = Service("feedish", "Feedish", (sys.executable, script, "feedish", journal, "serve"), script=Path(script),
              health="process", restart=RestartPolicy(startsecs=0.4, stop_timeout=1.0))
sup = Supervisor([svc], load_settings(environ={"DHAN_DATA_DIR": data_dir}, dotenv_path=None), poll=0.02)
while not Path(go).exists():
    time.sleep(0.001)
st = sup.start("feedish")
print(st.state, st.pid, st.runner_pid, flush=True)
"""


@pytest.mark.chaos
def test_two_processes_starting_one_service_at_once_spawn_one_runner(lab, make_supervisor, settings_env, tmp_path):
    import subprocess
    import sys
    data_dir = settings_env().data_dir
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(lab.script.parents[0]) + os.pathsep + str(REPO)}
    racers = [subprocess.Popen([sys.executable, "-c", START_RACE, str(data_dir), str(lab.script), str(lab.journal),
                                str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    time.sleep(1.5)  # both have imported and are polling for the go file
    go.touch()
    outs = [r.communicate(timeout=60) for r in racers]
    sup = make_supervisor([lab.service("feedish")])  # cleans up whatever was started
    assert all(r.returncode == 0 for r in racers), outs
    seen = {tuple(out.split()) for out, _ in outs}
    assert len(seen) == 1 and next(iter(seen))[0] == "RUNNING", outs  # both see the same runner
    assert lab.events() == [("start", "feedish")]
    assert sup.status("feedish").pid == int(next(iter(seen))[1])


def test_stop_survives_a_runner_that_exits_between_the_check_and_the_kill(lab, make_supervisor):
    sup = make_supervisor([lab.service("quitter")])
    st = sup.start("quitter")
    real = sup._runner_alive

    def runner_exits_right_after_the_check(service_id):
        alive, pid = real(service_id)
        if alive:  # the window: it was alive when we looked, it is gone when we signal
            os.kill(pid, 9)
            sup._runners.pop(service_id).wait()
            sup._runner_alive = real
        return alive, pid
    sup._runner_alive = runner_exits_right_after_the_check
    stopped = sup.stop("quitter")
    assert stopped.state == "STOPPED" and not stopped.active
    assert _gone(st.pid)


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def test_no_secret_reaches_the_run_dir_and_its_files_are_private(lab, make_supervisor, settings_env, monkeypatch):
    token, password = "tok-0123456789-secret", "pa55-w0rd-secret"
    monkeypatch.setenv("DHAN_ACCESS_TOKEN", token)
    redis_url = f"redis://:{password}@127.0.0.1:6379/5"
    sup = make_supervisor([lab.service("probe")])
    sup.settings = settings_env(REDIS_URL=redis_url)
    st = sup.start("probe")
    assert st.state == "RUNNING"
    child_env = psutil.Process(st.pid).environ()  # the child still gets what it needs ...
    assert child_env["DHAN_ACCESS_TOKEN"] == token and child_env["REDIS_URL"] == redis_url
    run_dir = sup.run_dir
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".json", ".pid", ".lock"}
    for path in files:  # ... and no file says it
        data = path.read_bytes()
        assert token.encode() not in data and password.encode() not in data, path
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert run_dir.stat().st_mode & 0o077 == 0


def test_unknown_service_is_a_clear_error(make_supervisor):
    with pytest.raises(ServiceError, match="no service 'nope'"):
        make_supervisor([]).status("nope")


def test_a_clean_exit_is_not_restarted(lab, make_supervisor):
    sup = make_supervisor([lab.service("closed_market", "exit:0")])
    st = sup.start("closed_market", timeout=5)
    assert st.state == "EXITED" and st.exit_code == 0
    time.sleep(0.3)
    assert lab.events() == [("start", "closed_market")]


def test_a_supervised_service_logs_only_to_stderr(settings_env):
    import logging

    from dhan_trading.logs import setup_logging
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        setup_logging("db_writer", settings_env(DHAN_SUPERVISED="1"), console=False)
        assert [type(h) for h in root.handlers] == [logging.StreamHandler]
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
