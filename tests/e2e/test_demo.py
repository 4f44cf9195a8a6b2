"""The README's main command as a user runs it: `python -m dhan_trading demo` with nothing configured."""
import os
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


def test_demo_runs_the_pipeline_and_leaves_nothing_running(tmp_path):
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(DHAN_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "dhan_trading", "demo", "--duration", "12"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo summary" in result.stdout
    db = sqlite3.connect(data_dir / "dhan_trading.sqlite3")
    counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("dhan_ticks", "dhan_quotes", "dhan_depth")}
    assert counts["dhan_quotes"] > 1000 and counts["dhan_depth"] > 1000 and counts["dhan_ticks"] > 5, counts
    # every full event has its depth event, and nothing was stored twice (event_id is the primary key)
    fulls = db.execute("SELECT COUNT(*) FROM dhan_quotes WHERE type = 'full'").fetchone()[0]
    assert fulls == counts["dhan_depth"]
    assert _ours(data_dir) == []
    assert not (data_dir / "redis" / "redis.sock").exists()
