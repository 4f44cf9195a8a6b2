"""Fixtures for the DB writer tests: a database of either kind, writer processes, waiting."""
from __future__ import annotations

import os

import pytest
from writer_harness import REPO, Stored, WriterProcesses


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    """A database URL of each kind the writer supports (a fresh MariaDB database per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'writer.sqlite3'}"
    return request.getfixturevalue("mariadb_database")


@pytest.fixture
def stored(db_url):
    reader = Stored(db_url)
    yield reader
    reader.close()


@pytest.fixture
def redis_url(own_redis):
    """Here a Redis server of the test's own (overriding the shared db 15): the writer's streams
    and group never meet another test's, even when suites run side by side."""
    return own_redis.url



@pytest.fixture
def writers(tmp_path, db_url, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, DHAN_DB_URL=db_url, DHAN_DATA_DIR=str(tmp_path / "var"),
               PYTHONPATH=str(REPO))
    procs = WriterProcesses(env, tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def engine(db_url, settings_env):
    """The writer's engine on `db_url`, tables created."""
    from dhan_trading.db_setup import get_engine
    eng = get_engine(settings=settings_env(DHAN_DB_URL=db_url))
    yield eng
    eng.dispose()
