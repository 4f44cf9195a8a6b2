"""The registry table and the `services` CLI."""
from __future__ import annotations

import sys

import pytest

from dhan_trading.services import cli
from dhan_trading.services.registry import SERVICES, RestartPolicy, Service, check_registry

pytestmark = pytest.mark.unit

EXPECTED = ["redis", "fno_feed", "fno_mcx_feed", "services_monitor", "db_writer", "market_scheduler",
            "instrument_display", "volume_profile", "market_breadth", "tick_chart",
            "volume_profile_chart", "quote_visualizer", "simulator"]


def test_registry_lists_every_service_of_the_suite():
    by_id = {s.id: s for s in SERVICES}
    assert list(by_id) == EXPECTED
    assert all(s.command[0] == sys.executable for s in SERVICES)
    assert by_id["fno_mcx_feed"].command[-1] == "--mcx"
    assert by_id["instrument_display"].kind == "terminal"
    assert by_id["quote_visualizer"].kind == "terminal" and by_id["tick_chart"].kind == "window"
    assert by_id["fno_feed"].session == "NSE" and by_id["fno_mcx_feed"].session == "NSE+MCX"
    assert 78 in by_id["fno_feed"].restart.fatal_exit_codes
    assert by_id["db_writer"].health_key == "dhan:health:db_writer"
    assert all(by_id[i].depends_on == ("redis",) for i in ("fno_feed", "fno_mcx_feed", "db_writer"))


def test_availability_is_computed_from_the_program():
    by_id = {s.id: s for s in SERVICES}
    assert by_id["market_scheduler"].available            # this area's own module exists
    for service in SERVICES:  # listed, never faked: available exactly when its program exists
        if service.module is not None:
            import importlib.util
            assert service.available == (importlib.util.find_spec(service.module) is not None)
    ghost = Service("x", "X", (sys.executable, "-m", "dhan_trading.no_such_module"),
                    module="dhan_trading.no_such_module")
    assert not ghost.available


def test_backoff_is_capped_exponential():
    p = RestartPolicy(backoff_initial=1, backoff_max=10)
    assert [p.backoff(i) for i in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_broken_tables_fail_loudly():
    a = Service("a", "A", ("x",), module="json", depends_on=("b",))
    b = Service("b", "B", ("x",), module="json", depends_on=("a",))
    with pytest.raises(ValueError, match="cycle"):
        check_registry([a, b])
    with pytest.raises(ValueError, match="unknown"):
        check_registry([a])
    with pytest.raises(ValueError, match="duplicate"):
        check_registry([b, b])


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(i in out for i in EXPECTED)


@pytest.mark.integration
def test_cli_start_status_logs_stop(settings_env, capsys):
    svc = Service("sleepy", "Sleepy", (sys.executable, "-c", "import time; print('hello from sleepy', flush=True); "
                                       "time.sleep(60)"), module="json", health="process",
                  restart=RestartPolicy(startsecs=0.3, stop_timeout=2))
    settings = settings_env()
    run = lambda *argv: cli.main(list(argv), services=[svc], settings=settings)  # noqa: E731
    try:
        assert run("start", "sleepy") == 0
        assert run("status") == 0
        assert "RUNNING" in capsys.readouterr().out
        assert run("logs", "sleepy") == 0
        assert "hello from sleepy" in capsys.readouterr().out
        assert run("stop-all") == 0
        assert run("status", "sleepy") == 0
        assert "STOPPED" in capsys.readouterr().out
        assert run("start", "nope") == 2
        assert "no service 'nope'" in capsys.readouterr().out
    finally:
        run("stop-all")
