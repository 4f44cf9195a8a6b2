"""`python -m dhan_trading.subscribers.fno_db_writer` as an operator starts it (issue 12 item 1):
bad options, a bad setting, an unwritable log folder, and Redis down as well as the database."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from writer_harness import REPO

from dhan_trading import exitcodes

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path):
    out = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    out.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", DHAN_DATA_DIR=str(tmp_path / "var"),
               DHAN_DB_URL=f"sqlite:///{tmp_path / 'w.sqlite3'}", PYTHONPATH=str(REPO))
    return out


def writer(env, *args, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dhan_trading.subscribers.fno_db_writer", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch must be positive"),
    (["--flush-ms", "-5"], "--flush-ms must be positive"),
    (["--lag-limit-s", "0"], "--lag-limit-s must be positive"),
    (["--batch", "6000", "--max-buffer", "5000"], "--max-buffer must be at least --batch"),
    (["--batch", "many"], "invalid int value"),
])
def test_a_bad_option_exits_2_with_the_reason_before_touching_anything(env, tmp_path, args, message):
    proc = writer(env, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "usage:" in proc.stderr
    assert not (tmp_path / "var").exists() and not (tmp_path / "w.sqlite3").exists()


def test_a_bad_setting_exits_78_naming_the_variable(env):
    proc = writer({**env, "DHAN_LOG_LEVEL": "LOUD"})
    assert proc.returncode == exitcodes.FATAL, proc.stderr
    assert proc.stderr.startswith("configuration error:") and "DHAN_LOG_LEVEL" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_log_folder_that_cannot_be_written_exits_78_naming_dhan_data_dir(env, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    proc = writer({**env, "DHAN_DATA_DIR": str(tmp_path / "a-file")})
    assert proc.returncode == exitcodes.FATAL, proc.stderr
    assert "cannot write the logs under DHAN_DATA_DIR" in proc.stderr and "Traceback" not in proc.stderr


def test_database_and_redis_both_down_at_start_waits_then_stops_cleanly_on_sigterm(env):
    """No heartbeat can go out (Redis is down too): the writer still waits for the database
    instead of crashing, and SIGTERM ends the wait with exit 0 (nothing was read)."""
    env = {**env, "DHAN_DB_URL": f"mysql+pymysql://root@127.0.0.1:{free_port()}/dhan"}
    proc = subprocess.Popen([sys.executable, "-m", "dhan_trading.subscribers.fno_db_writer", "--consumer", "w"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None, "the writer gave up while the database was down"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == exitcodes.OK, err
    assert "database not reachable" in err and "retrying" in err and "Traceback" not in err
