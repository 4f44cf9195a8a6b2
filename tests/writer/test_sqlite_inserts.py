"""SqliteInserts: every row inserted once, in statements of a few fixed sizes (which stay in
the connection's statement cache) rather than one size per batch compiled afresh."""
import sqlite3

import pytest

from dhan_trading.db_setup import get_engine
from dhan_trading.subscribers import rows as R
from dhan_trading.subscribers.store import SqliteInserts

pytestmark = pytest.mark.unit


class Recording:
    """A cursor that records the number of rows of each statement it runs."""

    def __init__(self, cur, width):
        self.cur, self.width, self.sizes, self.texts = cur, width, [], set()

    def execute(self, sql, params):
        self.sizes.append(len(params) // self.width)
        self.texts.add(sql)
        return self.cur.execute(sql, params)


@pytest.fixture
def conn(settings_env):
    engine = get_engine(settings=settings_env())
    raw = engine.raw_connection()
    yield raw.driver_connection
    raw.close()
    engine.dispose()


def tick(i):
    return (i << 20, "NSE_FNO", i % 7, 1_700_000_000_000_000_000 + i, 1_000_000 + i, 1_700_000_000)


@pytest.mark.parametrize("count", [0, 1, 2, 7, 10, 11, 25, 57])
def test_every_row_is_inserted_once_in_statements_of_fixed_sizes(conn, count):
    inserts = SqliteInserts(variables=60)  # 10 tick rows per statement at most
    assert inserts.rows_per_statement["dhan_ticks"] == 10
    width = len(R.COLUMNS["dhan_ticks"])
    cur = Recording(conn.cursor(), width)
    rows = [tick(i) for i in range(1, count + 1)]
    inserts.execute(cur, "dhan_ticks", rows)
    conn.commit()
    stored = conn.execute("SELECT * FROM dhan_ticks ORDER BY event_id").fetchall()
    assert stored == rows
    assert sum(cur.sizes) == count
    # the largest size while at least that many are left, then falling powers of two
    rest = count % 10
    assert cur.sizes == [10] * (count // 10) + [b for b in (8, 4, 2, 1) if rest & b]


def test_batches_of_changing_sizes_reuse_a_handful_of_statements(conn):
    inserts = SqliteInserts(variables=conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    cur = Recording(conn.cursor(), len(R.COLUMNS["dhan_ticks"]))
    start = 1
    for size in range(1, 400, 7):  # 57 batches, each of another size
        inserts.execute(cur, "dhan_ticks", [tick(i) for i in range(start, start + size)])
        start += size
    conn.commit()
    assert conn.execute("SELECT COUNT(*) FROM dhan_ticks").fetchone()[0] == start - 1
    per = inserts.rows_per_statement["dhan_ticks"]
    assert len(cur.texts) <= per.bit_length() + 1  # not one statement text per batch size


def test_a_replayed_row_is_skipped_and_a_bad_one_still_raises(conn):
    inserts = SqliteInserts(variables=60)
    cur = conn.cursor()
    inserts.execute(cur, "dhan_ticks", [tick(1), tick(2), tick(3)])
    inserts.execute(cur, "dhan_ticks", [tick(2), tick(3), tick(4)])  # a replay after a crash
    conn.commit()
    assert [r[0] for r in conn.execute("SELECT event_id FROM dhan_ticks")] == [i << 20 for i in (1, 2, 3, 4)]
    with pytest.raises(sqlite3.IntegrityError):
        inserts.execute(cur, "dhan_ticks", [(5 << 20, None, 1, 1, 1, 1)])  # NOT NULL segment
