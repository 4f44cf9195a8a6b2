"""A 25,000-instrument watchlist end to end: launch_fno_feed.py -> the simulator -> Redis streams.

Dhan's ceiling is 5 connections x 5,000 instruments, 100 per subscribe message; the simulator
enforces all three (it kicks a connection with 804 past 5,000 and refuses a message past 100).
Every instrument must reach the streams at least once (the simulator answers each subscription
with a snapshot), on all five connections, with nothing kicked.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from dhan_trading import bus
from dhan_trading.simulator.server import running_simulator

REPO = Path(__file__).resolve().parents[2]
TOKEN = "watchlist-test-token"


def watchlist_rows(n: int = 25_000) -> list[tuple[str, int, str]]:
    """NSE_FNO, NSE_EQ and MCX_COMM ids the master does not know, in all three modes."""
    segments = ("NSE_FNO",) * 16 + ("NSE_EQ",) * 3 + ("MCX_COMM",)
    return [(segments[i % 20], 2_000_000 + i, ("ticker", "quote", "full")[i % 3]) for i in range(n)]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_25000_instruments_reach_the_streams_over_five_connections(tmp_path, redis_url, redis_client):
    rows = watchlist_rows()
    path = tmp_path / "watchlist.csv"
    path.write_text("exchange_segment,security_id,mode\n" + "".join(f"{s},{i},{m}\n" for s, i, m in rows))
    wanted = {(s, i) for s, i, _ in rows}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    started = time.monotonic()
    with running_simulator(port=0, seed=7, rate=2000, instruments_csv="") as sim:
        env.update(REDIS_URL=redis_url, DHAN_FEED_URL=sim.url, DHAN_CLIENT_ID="1000000001",
                   DHAN_ACCESS_TOKEN=TOKEN, DHAN_DATA_DIR=str(tmp_path / "var"), DHAN_WATCHLIST=str(path))
        proc = subprocess.Popen([sys.executable, str(REPO / "launch_fno_feed.py"), "--force", "--no-capture"],
                                env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen: set[tuple[str, int]] = set()
        last = {stream: "0-0" for stream in bus.STREAMS}
        rss = 0
        try:
            deadline = time.monotonic() + 60
            while not wanted <= seen and time.monotonic() < deadline and proc.poll() is None:
                for stream, entries in redis_client.xread(last, count=20_000, block=200) or []:
                    name = stream.decode()
                    for entry_id, fields in entries:
                        event = orjson.loads(fields[b"data"])
                        seen.add((event["exchange_segment"], event["security_id"]))
                    last[name] = entries[-1][0].decode()
                rss = max(rss, psutil.Process(proc.pid).memory_info().rss)
            stats = sim.stats
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=60)[0].decode()
    elapsed = time.monotonic() - started
    assert not wanted - seen, f"{len(wanted - seen)} instruments never reached the streams; {output[-3000:]}"
    assert stats["connections"] == 5 and stats["instruments"] == 25_000 and stats["kicked"] == {}, stats
    assert proc.returncode == 0, output[-3000:]
    assert "25,000 instruments replace the universe rules" in output
    print(f"\n25,000-instrument watchlist: all in the streams after {elapsed:.1f} s; "
          f"feed RSS peak {rss / 2**20:.0f} MiB")
