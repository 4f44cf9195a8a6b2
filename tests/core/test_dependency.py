"""A missing test dependency fails under CI instead of skipping (a skip hides a missing install)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.unit
@pytest.mark.parametrize("ci, expect", [("true", "AssertionError"), ("", "Skipped")])
def test_missing_dependency_fails_under_ci_and_skips_elsewhere(ci, expect):
    code = ("import dependency\ntry:\n    dependency.require('no_such_module_xyz')\n"
            "except BaseException as e:\n    print(type(e).__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=TESTS, env={"CI": ci, "PATH": ""},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == expect, out.stderr
