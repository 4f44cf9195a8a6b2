"""`python -m dhan_trading.test_all_services`: exit 0 only when everything that should run is healthy."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dhan_trading import bus
from dhan_trading.config import load_settings
from dhan_trading.db_setup import get_engine

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _check(env: dict, *args: str) -> tuple[int, dict]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_URL"))}
    full.update(env, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "dhan_trading.test_all_services", "--json", *args],
                         env=full, capture_output=True, text=True, timeout=60)
    return out.returncode, json.loads(out.stdout)


@pytest.fixture
def system(tmp_path, redis_url):
    env = {"REDIS_URL": redis_url, "DHAN_DATA_DIR": str(tmp_path / "var")}
    get_engine(settings=load_settings(environ=env, dotenv_path=None)).dispose()  # tables exist
    return env


def test_healthy_when_expected_services_beat(system, redis_client):
    bus.publish_health(redis_client, bus.heartbeat("db_writer", "writing", True, rows_per_s=10))
    code, report = _check(system, "--expect", "db_writer")
    assert code == 0 and report["healthy"]
    writer = next(c for c in report["checks"] if c["name"] == "FNO Database Writer")
    assert writer["ok"] and "rows_per_s=10" in writer["detail"] and "state=writing" in writer["detail"]


def test_expected_service_without_heartbeat_fails(system):
    code, report = _check(system, "--expect", "fno_feed")
    assert code == 1
    feed = next(c for c in report["checks"] if c["name"] == "FNO Feed Launcher")
    assert not feed["ok"] and "no heartbeat" in feed["detail"]


@pytest.mark.parametrize("service, state, problem", [
    ("fno_feed", "reconnecting", "0 of 3 sockets connected for 75 s"),
    ("db_writer", "db_down", "database unreachable: Connection refused"),
])
def test_a_service_reporting_unhealthy_fails(system, redis_client, service, state, problem):
    bus.publish_health(redis_client, bus.heartbeat(service, state, False, problem, sockets=0))
    code, report = _check(system)
    assert code == 1 and not report["healthy"]
    assert any(not c["ok"] and c["detail"] == f"{state}: {problem}" for c in report["checks"]), report


def test_a_stale_heartbeat_fails(system, redis_client):
    record = bus.heartbeat("db_writer", "writing", True)
    record["ts"] -= 60  # its loop hung: the key is there, its time stands still
    bus.publish_health(redis_client, record)
    code, report = _check(system)
    assert code == 1
    assert any(not c["ok"] and re.fullmatch(r"writing: heartbeat is 6\d s old", c["detail"])
               for c in report["checks"]), report


def test_redis_down_fails_and_looking_starts_nothing(tmp_path):
    data_dir = tmp_path / "var"
    code, report = _check({"DHAN_DATA_DIR": str(data_dir)})
    assert code == 1
    assert not report["checks"][0]["ok"] and not report["checks"][1]["ok"]
    assert not (data_dir / "redis" / "redis.sock").exists()
    assert not (data_dir / "dhan_trading.sqlite3").exists()
    code, _ = _check({"DHAN_DATA_DIR": str(data_dir), "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert code == 1


def test_a_record_not_built_by_bus_heartbeat_fails(system, redis_client):
    import time
    redis_client.set(bus.health_key("market_scheduler"), json.dumps({"ok": True, "ts": time.time()}))
    code, report = _check(system)
    assert code == 1
    assert any(not c["ok"] and "malformed" in c["detail"] for c in report["checks"]), report
