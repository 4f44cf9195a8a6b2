"""The embedded Redis is a real local server: it outlives whoever started it, keeps its data in an
append-only file, is started once however many programs race for it, and is managed only by
`python -m dhan_trading redis ...` (and the supervisor's `redis` service). Real processes only;
every server a test starts is killed in teardown (by its pid file, then by its data dir)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from dhan_trading import bus

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _servers(data_dir: Path) -> list[psutil.Process]:
    """Live redis-server processes whose command line names this data dir."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or ())
            if "redis-server" in cmd and str(data_dir) in cmd and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def data_dir(tmp_path):
    data_dir = tmp_path / "var"
    yield data_dir
    pidfile = data_dir / "redis" / "redis.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    leftovers = _servers(data_dir)  # e.g. a second server whose pid file the first overwrote
    for proc in leftovers:
        proc.kill()
    psutil.wait_procs(leftovers, timeout=10)
    assert not _servers(data_dir)


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DHAN_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), **extra)
    return env


def _client(data_dir: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(data_dir / "redis" / "redis.sock"), socket_timeout=5)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cli(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dhan_trading", "redis", *args], env=_env(data_dir, **extra),
                          capture_output=True, text=True, timeout=120)


# A client program as the README runs them from a terminal: it needs Redis, writes events, and
# then ends one way or another.
CLIENT = """
import sys, time
from dhan_trading import bus
server = bus.EmbeddedRedis.ensure(bus.get_settings().data_dir)
client = bus.connect()
for i in range(500):
    client.xadd(bus.STREAM_TICKS, {bus.STREAM_FIELD: b'{"n": %d}' % i})
print(server.pid(), "started" if server.started else "found", flush=True)
if sys.argv[1] != "exit":
    time.sleep(120)
"""


@pytest.mark.chaos
@pytest.mark.parametrize("end", ["exit", "sigkill", "ctrl-c"])
def test_the_server_outlives_the_client_that_started_it(data_dir, end):
    # start_new_session: the child's group is its own, so a "Ctrl-C" to it cannot reach pytest
    child = subprocess.Popen([sys.executable, "-c", CLIENT, end], env=_env(data_dir), stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        pid, how = child.stdout.readline().split()
        server_pid = int(pid)
        assert how == "started"
        if end == "sigkill":
            child.kill()
        elif end == "ctrl-c":
            os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole foreground group
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not _gone(server_pid)
    assert psutil.Process(server_pid).ppid() != child.pid
    client = _client(data_dir)
    assert client.xlen(bus.STREAM_TICKS) == 500
    # and the next program finds that server instead of starting another
    out = subprocess.run([sys.executable, "-c", CLIENT, "exit"], env=_env(data_dir), capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == [str(server_pid), "found"]
    assert client.xlen(bus.STREAM_TICKS) == 1000
    assert [p.pid for p in _servers(data_dir)] == [server_pid]


@pytest.mark.chaos
def test_entries_written_before_redis_is_sigkilled_are_there_after_the_next_start(data_dir):
    server = bus.EmbeddedRedis.ensure(data_dir)
    client = _client(data_dir)
    client.xgroup_create(bus.STREAM_QUOTES, bus.WRITER_GROUP, id="0", mkstream=True)
    ids = [client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b'{"i": %d}' % i}) for i in range(2000)]
    client.xreadgroup(bus.WRITER_GROUP, "w1", {bus.STREAM_QUOTES: ">"}, count=1500)
    client.xack(bus.STREAM_QUOTES, bus.WRITER_GROUP, *ids[:1000])  # 500 delivered, not acknowledged
    client.close()
    first = server.pid()
    os.kill(first, signal.SIGKILL)  # no SHUTDOWN, no fsync of ours: the crash case
    _wait(lambda: _gone(first), 10, "the killed redis-server to go")

    again = bus.EmbeddedRedis.ensure(data_dir)
    assert again.started and again.pid() != first
    client = _client(data_dir)
    assert client.xlen(bus.STREAM_QUOTES) == 2000
    assert [e[0] for e in client.xrange(bus.STREAM_QUOTES)] == ids
    pending = client.xpending(bus.STREAM_QUOTES, bus.WRITER_GROUP)
    assert pending["pending"] == 500 and pending["min"] == ids[1000] and pending["max"] == ids[1499]
    info = client.info("persistence")
    assert info["aof_enabled"] == 1 and client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert (data_dir / "redis" / "appendonly.aof").stat().st_size > 0


STARTER = """
import os, sys, time
from pathlib import Path
from dhan_trading import bus
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
server = bus.EmbeddedRedis.ensure(bus.get_settings().data_dir)
print(server.pid(), server.started, flush=True)
"""


@pytest.mark.chaos
def test_concurrent_starters_start_one_server(data_dir, tmp_path):
    go = tmp_path / "go"
    starters = [subprocess.Popen([sys.executable, "-c", STARTER, str(go)], env=_env(data_dir),
                                 stdout=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(1.5)  # let them all import and wait at the line: then release them together
    go.touch()
    results = [tuple(p.communicate(timeout=60)[0].split()) for p in starters]
    assert all(p.returncode == 0 for p in starters), results
    assert sorted(started for _, started in results) == ["False", "False", "False", "True"]
    assert len({pid for pid, _ in results}) == 1
    assert [str(p.pid) for p in _servers(data_dir)] == [results[0][0]]


@pytest.mark.chaos
@pytest.mark.slow
def test_a_running_but_silent_server_is_never_doubled(data_dir):
    server = bus.EmbeddedRedis.ensure(data_dir)
    pid = server.pid()
    os.kill(pid, signal.SIGSTOP)  # alive, holds its AOF, answers nothing
    try:
        with pytest.raises(bus.RedisStartError, match=f"pid {pid} .*does not answer"):
            bus.EmbeddedRedis.ensure(data_dir)
        assert [p.pid for p in _servers(data_dir)] == [pid]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert bus.EmbeddedRedis.ensure(data_dir).pid() == pid


def test_a_corrupt_aof_is_reported_at_once_with_the_fix(data_dir):
    (data_dir / "redis").mkdir(parents=True)
    (data_dir / "redis" / "appendonly.aof").write_bytes(b"*2\r\n$3\r\nSET\r\nnot redis protocol\r\n")
    started = time.monotonic()
    result = _cli(data_dir, "start")
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert "Bad file format reading the append only file" in result.stdout
    assert "redis-check-aof --fix " + str((data_dir / "redis" / "appendonly.aof").resolve()) in result.stdout
    assert not _servers(data_dir)


def test_cli_status_start_stop(data_dir):
    result = _cli(data_dir, "status")
    assert result.returncode == 3 and "not running" in result.stdout
    assert _cli(data_dir, "stop").returncode == 0  # stopping a stopped server is not an error

    result = _cli(data_dir, "start")
    assert result.returncode == 0 and "started" in result.stdout, result.stdout + result.stderr
    assert "already running" in _cli(data_dir, "start").stdout
    result = _cli(data_dir, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    st = json.loads(result.stdout)
    sock = data_dir / "redis" / "redis.sock"
    assert st["running"] and st["aof_enabled"] and st["socket"] == str(sock.resolve())
    assert st["data_dir"] == str((data_dir / "redis").resolve()) and st["used_memory"] > 0
    assert st["pid"] == int((data_dir / "redis" / "redis.pid").read_text())
    human = _cli(data_dir, "status").stdout
    assert str(st["pid"]) in human and "AOF       on" in human and str(sock.resolve()) in human

    user = _client(data_dir)
    user.set("kept", "across a clean stop")  # and stays connected, as a feed would
    result = _cli(data_dir, "stop")
    assert result.returncode == 0 and "stopped" in result.stdout, result.stdout + result.stderr
    assert "1 other client(s) connected" in result.stdout
    user.close()
    assert _gone(st["pid"]) and not sock.exists()
    assert _cli(data_dir, "status").returncode == 3
    assert _cli(data_dir, "start").returncode == 0
    assert _client(data_dir).get("kept") == b"across a clean stop"
    assert _cli(data_dir, "stop").returncode == 0

    configured = _cli(data_dir, "start", REDIS_URL="redis://127.0.0.1:1/0")
    assert configured.returncode == 78 and "REDIS_URL is set" in configured.stdout
    assert _cli(data_dir, "status", REDIS_URL="redis://127.0.0.1:1/0").returncode == 3


def test_cli_status_of_a_configured_redis(data_dir, redis_url):
    result = _cli(data_dir, "status", "--json", REDIS_URL=redis_url)
    assert result.returncode == 0, result.stdout + result.stderr
    st = json.loads(result.stdout)
    info = redis.Redis.from_url(redis_url).info()
    assert st["running"] and st["configured"] and st["url"] == redis_url
    assert st["pid"] == info["process_id"] and st["version"] == info["redis_version"]
    assert st["used_memory"] > 0 and st["clients"] >= 0 and st["aof_enabled"] == bool(info["aof_enabled"])


def _heartbeat(data_dir: Path) -> dict | None:
    try:
        return bus.read_health(_client(data_dir), "redis")
    except redis.RedisError:
        return None


@pytest.mark.chaos
def test_the_redis_service_notices_a_killed_server_and_stops_only_its_own(data_dir):
    watch = subprocess.Popen([sys.executable, "-m", "dhan_trading", "redis", "watch"], env=_env(data_dir),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        record = _wait(lambda: (r := _heartbeat(data_dir)) and r["pid"] == watch.pid and r, 30,
                       "the redis service's first heartbeat")
        assert bus.assess_health(record) == (True, None)
        assert record["state"] == "running" and record["aof_enabled"] is True and record["pid"] == watch.pid
        server_pid = record["server_pid"]
        os.kill(server_pid, signal.SIGKILL)
        assert watch.wait(30) == 1  # so the supervisor restarts it (and it restarts the server)
        assert "is gone" in watch.stderr.read()
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()

    # a server it started, it stops when stopped; one it found running, it leaves alone
    for found in (False, True):
        if found:
            assert _cli(data_dir, "start").returncode == 0
        watch = subprocess.Popen([sys.executable, "-m", "dhan_trading", "redis", "watch"], env=_env(data_dir),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # this watch's own heartbeat (the last one's may still be in the restored AOF)
            server_pid = _wait(lambda: (r := _heartbeat(data_dir)) and r["pid"] == watch.pid and r, 30,
                               "a heartbeat")["server_pid"]
            watch.send_signal(signal.SIGTERM)
            assert watch.wait(30) == 0
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
        assert _gone(server_pid) is not found
    assert _cli(data_dir, "stop").returncode == 0


@pytest.mark.chaos
@pytest.mark.slow
def test_the_supervisor_restarts_the_redis_service_and_with_it_the_server(data_dir):
    def services(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dhan_trading", "services", *args], env=_env(data_dir),
                              capture_output=True, text=True, timeout=120)

    def status() -> dict:
        result = services("status", "redis", "--json")
        return json.loads(result.stdout)[0]

    try:
        assert services("start", "redis").returncode == 0
        first = _wait(lambda: _heartbeat(data_dir), 30, "the redis service's heartbeat")
        os.kill(first["server_pid"], signal.SIGKILL)
        record = _wait(lambda: (r := _heartbeat(data_dir)) and r["server_pid"] != first["server_pid"] and r,
                       60, "a heartbeat from a new server")
        assert bus.assess_health(record) == (True, None)
        st = _wait(lambda: (s := status())["restarts"] >= 1 and s["state"] == "RUNNING" and s, 30,
                   "the supervisor to report the restart")
        assert st["healthy"] is True and st["pid"] == record["pid"] != first["pid"]
    finally:
        services("stop", "redis")
    assert not _servers(data_dir)  # the service started that server, so stopping it stopped the server
