"""The commands: `python -m dhan_trading simulator` / `replay` serve, print the URL, stop on Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dhan_trading.capture import MAIN, CaptureWriter
from dhan_trading.protocol.packets import encode_ticker
from dhan_trading.protocol.requests import subscribe_messages

from .sim_client import collect, connect, main_url, run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _serve(tmp_path, *args):
    env = {**os.environ, "DHAN_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "dhan_trading", *args, "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    for line in proc.stdout:
        match = re.match(r"\s*DHAN_FEED_URL=(ws://\S+)", line)
        if match:
            return proc, match.group(1)
        assert time.monotonic() < deadline
    proc.kill()
    pytest.fail(f"{args[0]} printed no DHAN_FEED_URL")


def _stop(proc) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()


async def _first_frames(url, count):
    async with connect(main_url(url)) as ws:
        await ws.send(subscribe_messages([("NSE_FNO", 7), ("IDX_I", 13)], "ticker")[0])
        return await collect(ws, 10, count=count)


def test_simulator_command_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    proc, url = _serve(tmp_path, "simulator", "--seed", "3", "--rate", "500")
    try:
        got = run(_first_frames(url, 5))
    finally:
        code = _stop(proc)
    assert got.codes[:2] == [7, 6] and len(got.frames) == 5
    assert code == 0
    assert (tmp_path / "var" / "logs" / "simulator.log").is_file()


def test_replay_command_serves_a_capture(tmp_path):
    writer = CaptureWriter(tmp_path / "captures")
    frames = [encode_ticker("NSE_FNO", 7, 100 + i, 1000 + i) for i in range(4)]
    writer.write([(i * 10_000_000, f) for i, f in enumerate(frames)], MAIN)
    path = next((tmp_path / "captures").glob("*.dcap"))
    writer.close()
    proc, url = _serve(tmp_path, "replay", str(path), "--speed", "max", "--settle", "0.05")
    try:
        got = run(_first_frames(url, 4))
    finally:
        code = _stop(proc)
    assert got.frames == frames and code == 0


def test_replay_command_rejects_a_file_that_is_not_a_capture(tmp_path):
    bad = tmp_path / "bad.dcap"
    bad.write_bytes(b"nope")
    env = {**os.environ, "DHAN_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "dhan_trading", "replay", str(bad)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 78 and "not a Dhan capture" in done.stderr
