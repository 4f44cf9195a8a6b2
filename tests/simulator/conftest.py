"""Fixtures: a simulator serving from a background thread, torn down after the test."""
from __future__ import annotations

import pytest

from dhan_trading.simulator.server import running_simulator


@pytest.fixture
def sim():
    """A simulator with a fast default rate, seed 7 and the bundled sample master."""
    with running_simulator(rate=2000, seed=7) as simulator:
        yield simulator


@pytest.fixture
def make_sim():
    """Start simulators with custom config; all stop at teardown."""
    stack = []

    def start(**config):
        cm = running_simulator(**config)
        simulator = cm.__enter__()
        stack.append(cm)
        return simulator
    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
