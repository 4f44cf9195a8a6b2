"""Storing the master in dhan_instruments (SQLite and MariaDB) and the once-a-day refresh."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
from dhan_trading.db_setup import get_engine
from dhan_trading.instruments.master import (MasterError, last_refresh, load_instruments, read_master,
                                             refresh_instruments, store_instruments)
from dhan_trading.schema import instruments as table

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 21)


@pytest.fixture(params=["sqlite", "mariadb"])
def db(request, settings_env):
    """(engine, settings) on an SQLite file, or on a fresh MariaDB database."""
    env = {"DHAN_FEED_URL": "ws://127.0.0.1:9"}
    if request.param == "mariadb":
        env["DHAN_DB_URL"] = request.getfixturevalue("mariadb_database")
    settings = settings_env(**env)
    engine = get_engine(settings=settings)
    yield engine, settings
    engine.dispose()


def row_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_store_round_trips_every_field_and_upserts(db):
    engine, _ = db
    master = read_master(str(SAMPLE_INSTRUMENTS_CSV))
    assert store_instruments(engine, master, updated_at=datetime(2026, 11, 21, 8, 0)) == len(master)
    assert sorted(load_instruments(engine), key=lambda i: i.key) == sorted(master, key=lambda i: i.key)

    changed = [dataclasses.replace(master[0], tick_size=0.1, custom_symbol="renamed")] + master[1:3]
    store_instruments(engine, changed, updated_at=datetime(2026, 11, 22, 8, 0))
    assert row_count(engine) == len(master)  # updated in place, no duplicates
    loaded = {i.key: i for i in load_instruments(engine)}
    assert loaded[master[0].key].tick_size == 0.1 and loaded[master[0].key].custom_symbol == "renamed"
    assert last_refresh(engine) == datetime(2026, 11, 22, 8, 0)
    assert len(load_instruments(engine, since=datetime(2026, 11, 22))) == 3


def test_store_works_in_chunks(db, monkeypatch):
    engine, _ = db
    monkeypatch.setattr("dhan_trading.instruments.master.STORE_CHUNK", 100)
    master = read_master(str(SAMPLE_INSTRUMENTS_CSV))
    assert store_instruments(engine, iter(master)) == len(master) == row_count(engine)


def test_refresh_reads_the_master_once_a_day(db, tmp_path):
    engine, settings = db
    first = refresh_instruments(engine, settings, today=DAY)
    assert len(first) == row_count(engine) > 700
    assert last_refresh(engine).date() == DAY

    # Later the same day the table answers: prove it by pointing the source at nothing.
    gone = dataclasses.replace(settings, instruments_csv=str(tmp_path / "missing.csv"))
    again = refresh_instruments(engine, gone, today=DAY)
    assert sorted(again, key=lambda i: i.key) == sorted(first, key=lambda i: i.key)

    with pytest.raises(MasterError, match="does not exist"):
        refresh_instruments(engine, gone, today=DAY, force=True)  # force re-reads the source
    with pytest.raises(MasterError, match="does not exist"):
        refresh_instruments(engine, gone, today=date(2026, 11, 22))  # so does a new day


def test_a_new_day_returns_only_what_that_days_master_lists(db):
    engine, settings = db
    refresh_instruments(engine, settings, today=DAY)
    later = refresh_instruments(engine, settings, today=date(2026, 11, 25))  # sample renewed for that day
    assert min(i.expiry.date() for i in later if i.expiry) >= date(2026, 11, 25)
    reloaded = refresh_instruments(engine, settings, today=date(2026, 11, 25))
    assert {i.key for i in reloaded} == {i.key for i in later}
    assert row_count(engine) > len(later)  # yesterday's expired rows stay for history
