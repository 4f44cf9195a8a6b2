"""The supervisor on real child processes: backoff, FATAL, dependency order, re-attach, logs."""
from __future__ import annotations

import os
import time

import psutil
import pytest

from dhan_trading import exitcodes
from dhan_trading.services.registry import RestartPolicy
from dhan_trading.services.supervisor import ServiceError

pytestmark = pytest.mark.integration


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


def test_health_needs_the_heartbeat_in_redis(lab, make_supervisor, redis_client):
    from dhan_trading import bus
    sup = make_supervisor([lab.service("beating", health="heartbeat"), lab.service("silent", health="heartbeat")],
                          health_client=redis_client)
    sup.start("beating")
    sup.start("silent")
    bus.publish_health(redis_client, "beating", {"status": "streaming"})
    beating, silent = sup.status("beating"), sup.status("silent")
    assert beating.healthy is True and beating.health["status"] == "streaming"
    assert silent.state == "RUNNING" and silent.healthy is False


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
