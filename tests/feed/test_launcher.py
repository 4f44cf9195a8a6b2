"""The launcher end to end: `launch_fno_feed.py --force` against the simulator fills the three
streams with exactly what the simulator sent; fatal codes exit FATAL; the token is never written."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from dhan_trading import bus, exitcodes
from dhan_trading.capture import read_capture
from dhan_trading.market_feed.feed import Feed, FeedOptions
from dhan_trading.market_feed.launcher import closed_message
from dhan_trading.market_feed.plan import plan_connections
from dhan_trading.protocol import FeedDecoder
from dhan_trading.scheduler.calendar import IST
from dhan_trading.simulator.server import running_simulator

REPO = Path(__file__).resolve().parents[2]
TOKEN = "secret-test-token"


def _env(tmp_path: Path, feed_url: str, redis_url: str, token: str = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, DHAN_FEED_URL=feed_url, DHAN_CLIENT_ID="1000000001",
               DHAN_ACCESS_TOKEN=token, DHAN_DATA_DIR=str(tmp_path / "var"), DHAN_FEED_STALL_TIMEOUT="10")
    return env


def _launch(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "launch_fno_feed.py"), *args], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _no_token_anywhere(directory: Path, output: str, token: str) -> None:
    assert token not in output
    for path in directory.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"token written to {path}"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_streams_hold_exactly_what_the_simulator_sent(tmp_path, redis_url, redis_client):
    sent_log = tmp_path / "sent.dcap"
    with running_simulator(port=0, seed=1, rate=2000, sent_log=sent_log) as sim:
        proc = _launch(_env(tmp_path, sim.url, redis_url), "--force")
        try:
            deadline = time.monotonic() + 30
            while redis_client.xlen(bus.STREAM_QUOTES) < 1500 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            sim.pause(True)
            time.sleep(0.5)  # what was on the wire arrives
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, output[-2000:]
    frames = [frame for _, kind, frame in read_capture(sent_log) if kind == 0]
    assert len(frames) > 1500
    decoded = FeedDecoder().decode(frames, 0)
    want: dict[str, list[dict]] = {s: [] for s in bus.STREAMS}
    for event_type, payload in zip(*decoded.render()):
        event = orjson.loads(payload)
        del event["recv_ts"]
        want[bus.EVENT_STREAM[event_type]].append(event)
    for stream in bus.STREAMS:
        got = [orjson.loads(f[b"data"]) for _, f in redis_client.xrange(stream)]
        for event in got:
            assert event.pop("recv_ts") > 0
        assert len(got) == len(want[stream]), stream
        # ltp etc. are rounded to the master's ticks by the feed, to 0.01 by the bare decoder here
        assert [(e["type"], e["exchange_segment"], e["security_id"], e.get("ltt"), e.get("volume")) for e in got] == \
               [(e["type"], e["exchange_segment"], e["security_id"], e.get("ltt"), e.get("volume")) for e in want[stream]]
    captures = list((tmp_path / "var" / "captures").glob("*.dcap"))
    assert len(captures) == 1 and sum(1 for _ in read_capture(captures[0])) == len(frames)
    assert redis_client.hlen(bus.LATEST_HASH) > 0
    stored = sqlite3.connect(tmp_path / "var" / "dhan_trading.sqlite3").execute(
        "SELECT COUNT(*), COUNT(DISTINCT updated_at) FROM dhan_instruments").fetchone()
    assert stored[0] > 500 and stored[1] == 1  # today's master, stored once in dhan_instruments
    _no_token_anywhere(tmp_path / "var", output, TOKEN)


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("token, reason", [("EXPIRED", 807), ("NOPLAN", 806)])
def test_fatal_disconnect_exits_with_the_no_restart_code_and_says_how_to_fix(tmp_path, redis_url, token, reason):
    with running_simulator(port=0, seed=1, rate=200) as sim:
        proc = _launch(_env(tmp_path, sim.url, redis_url, token=token), "--force", "--duration", "20")
        output = proc.communicate(timeout=30)[0].decode()
        stats = sim.stats
    assert proc.returncode == exitcodes.FATAL, output[-2000:]
    assert f"({reason})" in output and "web.dhan.co" in output
    assert stats["connections_total"] == 1  # no retry storm


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_12000_instruments_open_3_sockets_on_the_simulator(redis_url):
    instruments = [("NSE_FNO", 1_000_000 + i, "full") for i in range(12_000)]
    with running_simulator(port=0, seed=1, rate=500, instruments_csv="") as sim:
        feed = Feed(service="test_feed", plans=plan_connections(instruments),
                    feed_url=f"{sim.url}/?version=2&token={TOKEN}&clientId=1000000001&authType=2",
                    redis_url=redis_url, ticks={}, options=FeedOptions(health_interval=0.2))

        async def main() -> dict:
            task = asyncio.create_task(feed.run())
            deadline = time.monotonic() + 20
            stats: dict = {}
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                stats = await asyncio.to_thread(lambda: sim.stats)
                if stats["instruments"] == 12_000:
                    break
            feed.stop.set()
            await task
            return stats
        stats = asyncio.run(main())
    assert stats["connections"] == 3 and stats["instruments"] == 12_000
    assert stats["kicked"] == {}


@pytest.mark.unit
def test_closed_market_message_names_the_next_session(settings_env):
    settings = settings_env()
    saturday = datetime(2026, 11, 21, 10, 0, tzinfo=IST)
    message = closed_message(saturday, False, settings)
    assert "waiting for session at 09:00 IST Mon 23 Nov 2026" in message and "connects at 08:55" in message
    assert "--force" in message
    assert closed_message(datetime(2026, 11, 23, 9, 0, tzinfo=IST), False, settings) is None  # pre-open
    assert closed_message(datetime(2026, 11, 23, 8, 55, tzinfo=IST), False, settings) is None  # scheduler's lead
    assert closed_message(datetime(2026, 11, 23, 8, 50, tzinfo=IST), False, settings) is not None
    evening = datetime(2026, 11, 23, 20, 0, tzinfo=IST)
    assert closed_message(evening, False, settings) is not None
    assert closed_message(evening, True, settings) is None  # MCX trades until 23:55


@pytest.mark.unit
def test_the_feed_window_is_the_schedulers(settings_env):
    from datetime import timedelta

    from dhan_trading.market_feed.launcher import _service
    from dhan_trading.scheduler.calendar import MarketCalendar
    from dhan_trading.scheduler.plan import should_run
    settings = settings_env()
    calendar = MarketCalendar(settings)
    t = datetime(2026, 11, 20, 0, 0, tzinfo=IST)  # Fri, Sat, Sun, Mon, Tue (NSE holiday): every 5 minutes
    while t < datetime(2026, 11, 25, 0, 0, tzinfo=IST):
        for mcx in (False, True):
            assert (closed_message(t, mcx, settings) is None) == should_run(calendar, t, _service(mcx)), (t, mcx)
        t += timedelta(minutes=5)


@pytest.mark.integration
def test_started_before_its_window_the_feed_waits_then_runs(settings_env, redis_url, redis_client):
    """A scheduler with a 30-minute lead starts the feed at 08:25: it must wait, not exit."""
    import threading
    from datetime import timedelta

    from dhan_trading.market_feed.launcher import wait_for_session
    clock = {"now": datetime(2026, 11, 23, 8, 25, tzinfo=IST)}
    beats = []

    def pause(seconds: float) -> bool:
        beats.append(bus.read_health(redis_client, "fno_feed"))
        clock["now"] += timedelta(minutes=1)
        return False
    ok = wait_for_session(settings_env(REDIS_URL=redis_url), False, threading.Event(), now=lambda: clock["now"],
                          pause=pause)
    assert ok and clock["now"] == datetime(2026, 11, 23, 8, 55, tzinfo=IST)
    assert len(beats) == 30 and all(bus.assess_health(b, b["ts"]) == (True, None) for b in beats)
    assert {b["state"] for b in beats} == {"waiting_for_session"}
    assert "waiting for session at 09:00 IST" in beats[0]["detail"]


def _closed_days(tmp_path: Path) -> str:
    """A holidays file closing NSE and MCX from yesterday to a week ahead (the IST dates)."""
    from datetime import timedelta

    today = datetime.now(IST).date()
    rows = [f"{(today + timedelta(days=d)).isoformat()},{ex},closed" for d in range(-1, 8) for ex in ("NSE", "MCX")]
    path = tmp_path / "closed.csv"
    path.write_text("date,exchange,kind\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_outside_hours_against_dhan_it_waits_says_so_and_stops_cleanly(tmp_path, redis_url, redis_client):
    env = _env(tmp_path, "wss://api-feed.dhan.co", redis_url)
    env["DHAN_HOLIDAYS_FILE"] = _closed_days(tmp_path)
    proc = _launch(env)
    try:
        deadline = time.monotonic() + 30
        while bus.read_health(redis_client, "fno_feed") is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        record = bus.read_health(redis_client, "fno_feed")
        assert record["state"] == "waiting_for_session" and bus.assess_health(record) == (True, None)
        assert record["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "waiting for session at" in output and "--force" in output
    assert "universe:" not in output  # nothing loaded, nothing connected


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_against_the_simulator_the_feed_runs_at_any_hour(tmp_path, redis_url, redis_client):
    with running_simulator(port=0, seed=1, rate=500) as sim:
        env = _env(tmp_path, sim.url, redis_url)
        env["DHAN_HOLIDAYS_FILE"] = _closed_days(tmp_path)  # the calendar says closed: irrelevant here
        proc = _launch(env)  # no --force
        try:
            deadline = time.monotonic() + 30
            while redis_client.xlen(bus.STREAM_QUOTES) == 0 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode()
    assert redis_client.xlen(bus.STREAM_QUOTES) > 0, output[-2000:]
    assert proc.returncode == 0 and "waiting for session" not in output


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_twenty_level_depth_reaches_the_depth_stream(tmp_path, redis_url, redis_client):
    from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
    from dhan_trading.instruments.master import read_master
    futures = [i for i in read_master(str(SAMPLE_INSTRUMENTS_CSV)) if i.instrument == "FUTIDX"][:2]
    wanted = {i.security_id for i in futures}
    with running_simulator(port=0, seed=3, rate=500) as sim:
        env = _env(tmp_path, sim.url, redis_url)
        env.update(DHAN_DEPTH_FEED_URL=sim.url,
                   DHAN_DEPTH_INSTRUMENTS=",".join(f"NSE_FNO:{i}" for i in sorted(wanted)))
        proc = _launch(env, "--force")
        seen: dict[int, dict] = {}
        try:
            deadline = time.monotonic() + 30
            while set(seen) != wanted and time.monotonic() < deadline and proc.poll() is None:
                for _, fields in redis_client.xrange(bus.STREAM_DEPTH):
                    event = orjson.loads(fields[b"data"])
                    if event["levels"] == 20:
                        seen[event["security_id"]] = event
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode()
    assert set(seen) == wanted, output[-2000:]
    for event in seen.values():
        bids, asks = event["bids"], event["asks"]
        assert len(bids) == len(asks) == 20
        assert [b[0] for b in bids] == sorted((b[0] for b in bids), reverse=True)
        assert [a[0] for a in asks] == sorted(a[0] for a in asks)
        assert bids[0][0] < asks[0][0] and all(q > 0 for _, q, _ in bids + asks)
    _no_token_anywhere(tmp_path / "var", output, TOKEN)
