"""The writer process against a database it cannot use: a setting to fix exits 78 (the
supervisor does not restart it) with a message naming the variable; an outage is waited out
with an unhealthy heartbeat; a bug exits non-zero with its traceback."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from dhan_trading import bus, exitcodes
from writer_harness import REPO, group_pending, wait_until
from writer_events import publish, random_events

pytestmark = pytest.mark.integration


def run_writer(writers, db_url: str, timeout: float = 60) -> tuple[int, str]:
    writers.env["DHAN_DB_URL"] = db_url
    proc = writers.start("--consumer", "w")
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("the writer kept retrying a database it can never use")
    return code, (writers.logs / f"writer-{len(writers.procs) - 1}.err").read_text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unwritable_sqlite_path_exits_78_naming_the_variable(writers, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    code, err = run_writer(writers, f"sqlite:///{tmp_path / 'a-file' / 'dhan.sqlite3'}")
    assert code == exitcodes.FATAL, err
    assert "DHAN_DATA_DIR" in err and "cannot be written" in err and "Traceback" not in err


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_wrong_mysql_password_exits_78_without_the_password(writers, db_url):
    code, err = run_writer(writers, db_url.replace("root@", "root:Wr0ngSecret@"))
    assert code == exitcodes.FATAL, err
    assert "access denied" in err and "DHAN_DB_PASSWORD" in err and "Wr0ngSecret" not in err


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_unknown_user_exits_78(writers, db_url):
    code, err = run_writer(writers, db_url.replace("root@", "nobody_dhan:x@"))
    assert code == exitcodes.FATAL and "DHAN_DB_USER" in err, err


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_unreachable_database_is_waited_for_with_an_unhealthy_heartbeat(writers, redis_client, db_url):
    """Connection refused is an outage, not a setting: the writer waits, says db_down."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    writers.env["DHAN_DB_URL"] = db_url.replace("127.0.0.1:3306", f"127.0.0.1:{port}")
    proc = writers.start("--consumer", "w")
    record = wait_until(lambda: bus.read_health(redis_client, "db_writer"), 30, what="a heartbeat")
    healthy, problem = bus.assess_health(record)
    assert record["state"] == "db_down" and healthy is False and "cannot be reached" in problem
    assert proc.poll() is None, "the writer gave up on an outage"
    proc.terminate()
    assert proc.wait(10) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_bug_exits_non_zero_with_its_traceback_and_loses_nothing(writers, redis_client, db_url):
    publish(redis_client, random_events(100))
    boom = ("import sys; from dhan_trading.subscribers import store, fno_db_writer\n"
            "def write(self, batch): self._run(lambda cur: {}['bug in our code'])\n"
            "store.EventStore.write = write\n"
            "sys.exit(fno_db_writer.main(['--flush-ms', '50']))\n")
    proc = subprocess.run([sys.executable, "-c", boom], env=writers.env, cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode not in (0, exitcodes.FATAL), proc.stderr
    assert "Traceback" in proc.stderr and "bug in our code" in proc.stderr
    assert group_pending(redis_client) == 100  # read, not acknowledged: the next writer stores them


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_rights_revoked_while_running_exit_78_not_an_outage(writers, redis_client, db_url, stored):
    """A setting that goes wrong later (rights revoked, password changed) is no outage either."""
    import uuid
    from sqlalchemy import create_engine, text
    user, password = f"dhan_w_{uuid.uuid4().hex[:8]}", "w-pass-1234"
    name = db_url.rsplit("/", 1)[1]
    admin = create_engine(db_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
        conn.execute(text(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'"))
    try:
        writers.env["DHAN_DB_URL"] = db_url.replace("root@", f"{user}:{password}@")
        proc = writers.start("--consumer", "w", "--flush-ms", "50")
        first = publish(redis_client, random_events(100))
        # stored and acknowledged (nothing pending also holds before the writer has read them)
        wait_until(lambda: stored.total() == len(first)
                   and group_pending(redis_client) == 0, 30, what="first events stored")
        with admin.begin() as conn:
            conn.execute(text(f"REVOKE ALL PRIVILEGES ON `{name}`.* FROM '{user}'@'%'"))
            for (pid,) in conn.execute(text("SELECT id FROM information_schema.processlist "
                                            "WHERE user = :u"), {"u": user}).all():
                conn.execute(text(f"KILL {int(pid)}"))  # a revoke reaches a connection at its next login
        publish(redis_client, random_events(100, seed=2))
        code = proc.wait(30)
        err = (writers.logs / "writer-0.err").read_text()
        assert code == exitcodes.FATAL, err
        assert "DHAN_DB_USER" in err and password not in err
        assert group_pending(redis_client) == 100  # nothing lost: it waits for a fixed writer
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()
