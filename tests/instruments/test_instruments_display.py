"""`display_fno_instruments.py` from any directory: JSON for scripts, tables for people, no database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run(tmp_path, *args, script=True, **env):
    base = {"PATH": os.environ.get("PATH", ""), "DHAN_DATA_DIR": str(tmp_path / "var"),
            "DHAN_FEED_URL": "ws://127.0.0.1:9", "DHAN_UNIVERSE_STRIKES": "9"}
    base.update(env)
    command = [str(REPO / "display_fno_instruments.py")] if script else ["-m", "dhan_trading", "instruments"]
    return subprocess.run([sys.executable, *command, *args], cwd=tmp_path if script else REPO, env=base,
                          capture_output=True, text=True, timeout=60)


def test_json_from_another_directory(tmp_path):
    done = run(tmp_path, "--json", "--date", "2026-11-21", "--price", "NIFTY=26333")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["date"] == "2026-11-21" and data["count"] == 179 == len(data["instruments"])
    assert data["counts"] == {"index": 5, "index_future": 8, "stock_future": 40, "index_option": 76, "nifty50": 50}
    assert data["nifty50"]["as_of"] == "2025-11-28" and len(data["nifty50"]["weights"]) == 50
    assert any("Nifty 50 constituents file" in w and "DHAN_NIFTY50_CSV" in w for w in data["warnings"])
    assert set(data["instruments"][0]) == {"exchange_segment", "security_id", "mode", "category", "symbol"}
    assert "NIFTY-Nov2026-26350-CE" in {i["symbol"] for i in data["instruments"]}
    assert [n for n in data["notes"] if n.startswith("BANKNIFTY: no last price")]
    assert not list((tmp_path / "var").glob("*.sqlite3"))  # no database touched


def test_mcx_and_the_settings_counts(tmp_path):
    done = run(tmp_path, "--json", "--mcx", "--date", "2026-11-21", DHAN_UNIVERSE_STOCKS="20")
    data = json.loads(done.stdout)
    assert data["counts"]["mcx_future"] == 5 and data["counts"]["stock_future"] == 20
    assert data["count"] == 5 + 8 + 20 + 76 + 50 + 5


def test_table_output_through_the_cli(tmp_path):
    done = run(tmp_path, "--date", "2026-11-21", script=False)
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout and "179" in done.stdout and "NIFTY-Nov2026-FUT" in done.stdout
    assert "HDFCBANK" in done.stdout and "13.16" in done.stdout  # the constituents with their weights


def test_bad_input_gets_clear_errors(tmp_path):
    done = run(tmp_path, "--price", "NIFTY")
    assert done.returncode == 2 and "NAME=PRICE" in done.stderr
    done = run(tmp_path, "--json", DHAN_INSTRUMENTS_CSV=str(tmp_path / "none.csv"))
    assert done.returncode == 78 and "does not exist" in done.stderr and not done.stdout
