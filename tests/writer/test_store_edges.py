"""EventStore on MariaDB against failures that are not outages (issue 12 item 1): a value it
will not inline is a refused row, a dropped table is a bug; neither is retried as an outage."""
import pymysql
import pytest
from sqlalchemy import text

from dhan_trading.db_setup import get_engine
from dhan_trading.subscribers.store import DatabaseUnavailable, EventStore, RowRejected

pytestmark = pytest.mark.integration

ROW = (1 << 20, "NSE_FNO", 42, 1_700_000_000_000_000_000, 101.25, 1_700_000_000)


@pytest.fixture
def store(mariadb_database, settings_env):
    engine = get_engine(settings=settings_env(DHAN_DB_URL=mariadb_database))
    s = EventStore(engine)
    yield s, engine
    s.close()
    engine.dispose()


def count(engine, table="dhan_ticks"):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()


def test_a_string_that_would_need_escaping_is_refused_and_nothing_is_written(store):
    s, engine = store
    with pytest.raises(RowRejected, match="a value cannot be written: refusing to inline"):
        s.write({"dhan_ticks": [ROW, (2 << 20, "NSE'; DROP", 1, 1, 1.0, None)]})
    assert count(engine) == 0  # all or nothing: the good row went with it, to be retried alone
    s.write({"dhan_ticks": [ROW]})
    s.write({"dhan_ticks": [ROW]})  # a replay inserts nothing new
    assert count(engine) == 1


def test_a_dropped_table_is_raised_as_a_bug_not_an_outage(store):
    s, engine = store
    s.write({"dhan_ticks": [ROW]})
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE dhan_ticks"))
    with pytest.raises(pymysql.err.ProgrammingError) as info:
        s.write({"dhan_ticks": [(ROW[0] + 1, *ROW[1:])]})
    assert not isinstance(info.value, DatabaseUnavailable) and "doesn't exist" in str(info.value)
    # the connection was dropped with its failed transaction: the next write uses a new one
    s.write({"dhan_quotes": []})
