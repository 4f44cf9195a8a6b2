"""The README's main command as a user runs it: `python -m dhan_trading demo` with nothing configured."""
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
UNSET = ("REDIS_URL", "DHAN_DB_URL", "DHAN_DB_HOST", "DHAN_FEED_URL", "DHAN_INSTRUMENTS_CSV",
         "DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN")


def _ours(data_dir: Path) -> list[psutil.Process]:
    """Processes that belong to this demo run: its data dir in their command line or environment."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(data_dir) in " ".join(proc.info["cmdline"] or ()) or \
                    proc.environ().get("DHAN_DATA_DIR") == str(data_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


STREAMS = ("dhan:ticks:stream", "dhan:quotes:stream", "dhan:depth:stream", "dhan:gaps:stream")
TABLES = ("dhan_ticks", "dhan_quotes", "dhan_depth", "dhan_gaps")


def run_demo(tmp_path: Path, data_dir: Path, seconds: int) -> dict[str, tuple[int, int]]:
    """One demo run; returns its summary: per stream (events this run, rows stored this run)."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(DHAN_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "dhan_trading", "demo", "--duration", str(seconds)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    out = result.stdout[result.stdout.find("demo summary"):]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = {}
    for stream in STREAMS:
        match = re.search(re.escape(stream) + r"\W+([\d,]+)\W+([\d,]+)", out)
        assert match, f"{stream} missing from the summary:\n{out}"
        summary[stream] = tuple(int(n.replace(",", "")) for n in match.groups())
    return summary


def table_counts(data_dir: Path) -> dict[str, int]:
    db = sqlite3.connect(data_dir / "dhan_trading.sqlite3")
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        db.close()


def test_demo_runs_the_pipeline_and_leaves_nothing_running(tmp_path):
    data_dir = tmp_path / "var"
    summary = run_demo(tmp_path, data_dir, 12)
    counts = table_counts(data_dir)
    assert counts["dhan_quotes"] > 1000 and counts["dhan_depth"] > 1000 and counts["dhan_ticks"] > 5, counts
    # every entry of the run is a row (the summary counts both, from Redis and from the database)
    for stream, table in zip(STREAMS, TABLES):
        assert summary[stream] == (counts[table], counts[table]), (stream, summary, counts)
    db = sqlite3.connect(data_dir / "dhan_trading.sqlite3")
    fulls = db.execute("SELECT COUNT(*) FROM dhan_quotes WHERE type = 'full'").fetchone()[0]
    assert fulls == counts["dhan_depth"]  # every full event has its depth event
    assert _ours(data_dir) == []
    assert not (data_dir / "redis" / "redis.sock").exists()


def test_two_demos_in_a_row_on_one_data_folder_store_every_event_of_each(tmp_path):
    """From the second run on the database (and the embedded Redis's append-only file) hold the
    first run's events: the stop must wait for this run's, and the summary count this run's."""
    data_dir = tmp_path / "var"
    first = run_demo(tmp_path, data_dir, 8)
    after_first = table_counts(data_dir)
    second = run_demo(tmp_path, data_dir, 8)
    after_second = table_counts(data_dir)
    for stream, table in zip(STREAMS, TABLES):
        for run in (first, second):
            events, rows = run[stream]
            assert events == rows, f"{stream}: {events - rows} events of a run not stored"
        assert first[stream][1] == after_first[table]
        assert after_second[table] - after_first[table] == second[stream][1]
    assert second["dhan:quotes:stream"][0] > 1000, second
    assert _ours(data_dir) == []
