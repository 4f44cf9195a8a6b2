"""Test-only dependencies: a missing one fails under CI (a skip would hide a missing install)."""
from __future__ import annotations

import importlib
import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(module: str):
    """Import `module`; under CI=true a failure, elsewhere a visible skip of the test module."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if IN_CI:
            raise AssertionError(f"{module} is not installed ({exc}); requirements-dev.txt has it") from exc
        pytest.skip(f"{module} is not installed: pip install -r requirements-dev.txt", allow_module_level=True)
