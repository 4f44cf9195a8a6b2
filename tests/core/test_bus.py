"""Redis names, codec, health records, and the embedded redis-server's life cycle."""
import os
import subprocess
import sys
import time

import pytest
import redis

from dhan_trading import bus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.unit
def test_every_event_type_has_one_channel_and_stream():
    assert bus.EVENT_STREAM["ticker"] == "dhan:ticks:stream"
    assert {bus.EVENT_CHANNEL[t] for t in ("quote", "full", "oi", "prev_close", "market_status")} == {"dhan:quotes"}
    assert bus.EVENT_STREAM["depth"] == "dhan:depth:stream"
    assert set(bus.STREAMS) == {bus.CHANNEL_STREAM[c] for c in (bus.CHANNEL_TICKS, bus.CHANNEL_QUOTES, bus.CHANNEL_DEPTH)}


@pytest.mark.unit
def test_codec_round_trip_and_rejects_non_objects():
    event = {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13, "recv_ts": 1, "ltp": 26000.05, "ltt": 5}
    assert bus.decode(bus.encode(event)) == event
    for bad in (b"[1,2]", b"not json", b"7"):
        with pytest.raises(ValueError):
            bus.decode(bad)


@pytest.mark.integration
def test_health_record_expires(redis_client):
    bus.publish_health(redis_client, "unit_svc", {"frames_per_s": 12})
    rec = bus.read_health(redis_client, "unit_svc")
    assert rec["frames_per_s"] == 12 and rec["pid"] == os.getpid()
    assert 0 < redis_client.ttl(bus.health_key("unit_svc")) <= bus.HEALTH_TTL_S


def _child_env(data_dir):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DHAN_DATA_DIR=str(data_dir), PYTHONPATH=REPO)
    return env


@pytest.mark.integration
def test_embedded_redis_is_shared_and_stopped_by_its_owner(tmp_path, settings_env):
    settings = settings_env()
    client = bus.connect(settings)
    client.set("shared", "yes")
    server = bus.EmbeddedRedis._owned[(settings.data_dir / "redis").resolve()]
    # a second process finds the running server instead of starting another
    code = ("from dhan_trading import bus; c = bus.connect(); print(c.get('shared').decode());"
            "print(len(bus.EmbeddedRedis._owned))")
    out = subprocess.run([sys.executable, "-c", code], env=_child_env(settings.data_dir),
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == ["yes", "0"]
    pid = server.process.pid
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.chaos
@pytest.mark.integration
def test_embedded_redis_dies_with_a_killed_owner(tmp_path):
    code = ("import time; from dhan_trading import bus; bus.connect();"
            "print(open(bus.EmbeddedRedis._owned.popitem()[1].directory / 'redis.pid').read(), flush=True);"
            "time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", code], env=_child_env(tmp_path / "var"),
                             stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(owner.stdout.readline())
        os.kill(server_pid, 0)  # running
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("embedded redis-server outlived the process that started it")


@pytest.mark.integration
def test_redis_service_owns_the_embedded_server_until_stopped(tmp_path):
    import signal
    from pathlib import Path
    sock = Path(tmp_path) / "var" / "redis" / "redis.sock"
    proc = subprocess.Popen([sys.executable, "-m", "dhan_trading", "redis"], env=_child_env(tmp_path / "var"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not bus._ping(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "redis service did not come up"
            time.sleep(0.05)
        client = redis.Redis(unix_socket_path=str(sock))
        client.set("k", "v")  # another process uses it
        assert client.get("k") == b"v"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not bus._ping(sock)
