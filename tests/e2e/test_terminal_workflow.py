"""The README's terminal workflow with nothing configured: the feed (which starts the embedded
Redis) and the writer each in a terminal; Ctrl-C on the feed must not take Redis, and with it
the events the writer has not stored yet, down."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
TABLES = {"dhan:ticks:stream": "dhan_ticks", "dhan:quotes:stream": "dhan_quotes", "dhan:depth:stream": "dhan_depth"}


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return value


def _rows(db: Path) -> dict[str, int]:
    if not db.exists():
        return {s: 0 for s in TABLES}
    con = sqlite3.connect(db)
    try:
        return {s: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for s, t in TABLES.items()}
    except sqlite3.OperationalError:  # tables not created yet
        return {s: 0 for s in TABLES}
    finally:
        con.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_on_the_feed_leaves_redis_and_the_writer_storing_everything(tmp_path):
    data_dir = tmp_path / "var"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_URL"))}
    env.update(DHAN_DATA_DIR=str(data_dir), DHAN_FEED_URL=f"ws://127.0.0.1:{port}", PYTHONPATH=str(REPO),
               DHAN_CLIENT_ID="1000000001", DHAN_ACCESS_TOKEN="demo-token")
    procs: list[subprocess.Popen] = []

    def terminal(*cmd: str) -> subprocess.Popen:  # a terminal: its own session and foreground group
        log = open(tmp_path / f"{len(procs)}.out", "ab")
        proc = subprocess.Popen([sys.executable, *cmd], env=env, cwd=tmp_path, start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    sock, db = data_dir / "redis" / "redis.sock", data_dir / "dhan_trading.sqlite3"
    try:
        terminal("-m", "dhan_trading", "simulator", "--port", str(port), "--seed", "1")
        _wait(lambda: _listening(port), 60, "the simulator")
        feed = terminal(str(REPO / "launch_fno_feed.py"), "--force")
        _wait(sock.exists, 60, "the feed to start the embedded Redis")
        terminal("-m", "dhan_trading.subscribers.fno_db_writer")
        _wait(lambda: _rows(db)["dhan:quotes:stream"] > 1000, 120, "the writer to store quotes")
        server_pid = int((data_dir / "redis" / "redis.pid").read_text())

        os.killpg(feed.pid, signal.SIGINT)  # Ctrl-C in the feed's terminal
        assert feed.wait(60) == 0
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=5)
        assert client.info("server")["process_id"] == server_pid
        published = {s: client.xlen(s) for s in TABLES}
        stored = _wait(lambda: (r := _rows(db)) and all(r[s] >= published[s] for s in TABLES) and r, 120,
                       f"the writer to store all of {published}")
        assert stored == published
        client.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        pidfile = data_dir / "redis" / "redis.pid"
        if pidfile.exists():
            try:
                server = psutil.Process(int(pidfile.read_text()))
                if str(sock) in " ".join(server.cmdline()):
                    server.kill()
            except (psutil.Error, ValueError):
                pass
