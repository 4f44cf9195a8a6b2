"""The launcher's exit codes and messages for what goes wrong before and around the feed: a bad
setting, missing credentials, a bad watchlist and an unreadable master refuse to start with the
code the supervisor acts on (FATAL is never restarted, 1 is); a database that is down or outdated
costs a warning and the feed still streams; a Redis that is not there yet costs neither the index
prices lookup nor the wait for the session more than a log line."""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta

import pytest

from dhan_trading import bus, exitcodes
from dhan_trading.scheduler.calendar import IST
from dhan_trading.simulator.server import running_simulator
from tests.conftest import free_port
from tests.feed.test_launcher import TOKEN, _env, _launch, _no_token_anywhere


def _run(env: dict, *args: str, timeout: float = 60) -> tuple[int, str]:
    proc = _launch(env, *args)
    try:
        output = proc.communicate(timeout=timeout)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, output


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_bad_setting_exits_fatal_naming_the_variable(tmp_path, redis_url):
    env = _env(tmp_path, "ws://127.0.0.1:9", redis_url)
    env["DHAN_FEED_STALL_TIMEOUT"] = "soon"
    code, output = _run(env, "--force")
    assert code == exitcodes.FATAL, output
    assert "CRITICAL" in output and "DHAN_FEED_STALL_TIMEOUT" in output
    assert "Traceback" not in output and "universe:" not in output


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_against_dhan_without_a_token_it_exits_fatal_before_waiting(tmp_path, redis_url):
    env = _env(tmp_path, "wss://api-feed.dhan.co", redis_url, token="")
    code, output = _run(env)  # no --force: the token is checked before any wait for the session
    assert code == exitcodes.FATAL, output
    assert "DHAN_ACCESS_TOKEN" in output and "CRITICAL" in output
    assert "waiting for session" not in output and "Traceback" not in output


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_bad_watchlist_exits_fatal_with_the_reason(tmp_path, redis_url):
    watchlist = tmp_path / "watch.txt"
    watchlist.write_text("NSE_FNO,not-a-number\n")
    env = _env(tmp_path, "ws://127.0.0.1:9", redis_url)
    env["DHAN_WATCHLIST"] = str(watchlist)
    code, output = _run(env, "--force")
    assert code == exitcodes.FATAL, output
    assert "CRITICAL" in output and "watch.txt" in output
    assert "connected to" not in output and "Traceback" not in output


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_an_unreadable_scrip_master_exits_1_to_be_restarted(tmp_path, redis_url):
    env = _env(tmp_path, "ws://127.0.0.1:9", redis_url)
    env["DHAN_INSTRUMENTS_CSV"] = str(tmp_path / "missing-master.csv")
    code, output = _run(env, "--force")
    assert code == 1, output
    assert "the feed could not start:" in output and "missing-master.csv" in output
    assert "Traceback" not in output


def _outdated_table(tmp_path, env: dict) -> None:
    """A database from an older release: dhan_instruments exists without today's columns."""
    (tmp_path / "var").mkdir(exist_ok=True)
    with sqlite3.connect(tmp_path / "var" / "dhan_trading.sqlite3") as db:
        db.execute("CREATE TABLE dhan_instruments (security_id INTEGER)")


def _database_down(tmp_path, env: dict) -> None:
    env.update(DHAN_DB_HOST="127.0.0.1", DHAN_DB_PORT=str(free_port()))  # nothing listens there


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("database, warning", [
    (_database_down, "database unreachable (OperationalError): instruments read from the master, not stored"),
    (_outdated_table, "could not store instruments (OperationalError); using the master file"),
])
def test_without_a_usable_database_the_feed_streams_from_the_master_file(tmp_path, redis_url, redis_client,
                                                                          database, warning):
    with running_simulator(port=0, seed=1, rate=500) as sim:
        env = _env(tmp_path, sim.url, redis_url)
        database(tmp_path, env)
        code, output = _run(env, "--force", "--duration", "4")
    assert code == exitcodes.OK, output[-2000:]
    assert "WARNING" in output and warning in output
    assert "universe: 179 instruments" in output  # the whole universe, from the master file
    assert redis_client.xlen(bus.STREAM_QUOTES) > 0
    _no_token_anywhere(tmp_path / "var", output, TOKEN)


@pytest.mark.integration
def test_without_redis_the_strikes_are_centred_from_the_master(settings_env, caplog):
    from dhan_trading.market_feed.launcher import _index_prices
    settings = settings_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level("INFO", logger="fno_feed"):
        assert _index_prices(settings, []) == {}
    assert "no index prices from Redis (ConnectionError); ATM strikes from the master" in caplog.text


@pytest.mark.integration
def test_waiting_without_redis_goes_on_and_runs_at_the_window(settings_env, caplog):
    """No Redis while waiting for the session: no heartbeat, but no crash either; the feed
    starts when its window opens."""
    from dhan_trading.market_feed.launcher import wait_for_session
    clock = {"now": datetime(2026, 11, 23, 8, 50, tzinfo=IST)}
    pauses = []

    def pause(seconds: float) -> bool:
        pauses.append(seconds)
        clock["now"] += timedelta(minutes=1)
        return False
    settings = settings_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level("DEBUG", logger="fno_feed"):
        ok = wait_for_session(settings, False, threading.Event(), now=lambda: clock["now"], pause=pause)
    assert ok and clock["now"] == datetime(2026, 11, 23, 8, 55, tzinfo=IST) and pauses == [2.0] * 5
    assert caplog.text.count("waiting heartbeat not published") == 5
    assert caplog.text.count("waiting for session at 09:00 IST") == 1


@pytest.mark.unit
def test_a_month_without_sessions_is_said_plainly(settings_env, tmp_path):
    """A holidays file closing NSE for 40 days: the waiting feed says no session is within a
    month (and how to run anyway), instead of naming a date it cannot know."""
    from dhan_trading.market_feed.launcher import closed_message
    start = datetime(2026, 11, 23, 8, 0, tzinfo=IST)
    rows = [f"{(start.date() + timedelta(days=d)).isoformat()},NSE,closed" for d in range(40)]
    holidays = tmp_path / "closed.csv"
    holidays.write_text("date,exchange,kind\n" + "\n".join(rows) + "\n")
    message = closed_message(start, False, settings_env(DHAN_HOLIDAYS_FILE=holidays))
    assert message == "no NSE session within a month: waiting (--force runs now)"
