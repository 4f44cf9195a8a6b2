"""Bulk, idempotent inserts of prepared rows into the event tables (MySQL/MariaDB or SQLite).

The hot path bypasses SQLAlchemy's per-value type processing and talks to the DBAPI connection
of the engine that `db_setup.get_engine` built: one multi-row statement per table per batch
(PyMySQL rewrites `executemany` of an INSERT into multi-row VALUES), then one commit.
A row whose key already exists is skipped (`ON DUPLICATE KEY UPDATE event_id=event_id` /
`ON CONFLICT DO NOTHING`), which makes replaying a batch after a crash harmless. Unlike
`INSERT IGNORE` / `OR IGNORE`, these skip only duplicates: a row the database rejects for any
other reason still raises, so it can be found and dead-lettered instead of silently mangled.

Failures fall in four kinds, each handled differently by the writer: a row the database refuses
(`RowRejected`: dead-letter it), a database that cannot be reached now (`DatabaseUnavailable`:
retry the batch), a setting to fix (`DatabaseMisconfigured`: exit 78), and anything else, a
bug in our code or SQL (raised as it is: never mistaken for an outage and retried forever).
"""
from __future__ import annotations

import logging
import sqlite3
from itertools import chain
from typing import Any, Callable, Iterable

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from ..config import ConfigError
from ..db_setup import misconfiguration
from . import rows as R

log = logging.getLogger(__name__)

# Seconds a statement may wait on the database before the writer treats it as unreachable.
MYSQL_IO_TIMEOUT_S = 15
SQLITE_BUSY_TIMEOUT_S = 3


class DatabaseUnavailable(Exception):
    """The database cannot be reached (or is locked) now; retry the same batch later."""


class RowRejected(Exception):
    """The database refused a row for what it holds; retrying it can never succeed."""


class DatabaseMisconfigured(ConfigError):
    """Wrong credentials, unknown database, unwritable SQLite file: a setting to fix (the
    message names it); retrying cannot help."""


def _mysql_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f"`{c}`" for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO `{table}` ({names}) VALUES ({marks}) ON DUPLICATE KEY UPDATE event_id=event_id"


def _mysql_str(value: str) -> str:
    if "'" in value or "\\" in value:  # rows.py only lets names like NSE_FNO through
        raise ValueError(f"refusing to inline the string {value!r:.40}")
    return f"'{value}'"


# SQL literals for the value types rows.py produces. Formatting them here costs about a third
# of PyMySQL's generic escaping, which was the largest single cost of a MySQL batch.
_MYSQL_LITERAL = {int: int.__repr__, float: float.__repr__, type(None): lambda _: "NULL",
                  str: _mysql_str, bytes: lambda v: f"X'{v.hex()}'"}
MYSQL_STATEMENT_BYTES = 1_000_000  # well under max_allowed_packet (16 MB by default)


def mysql_statements(sql: str, rows: list[tuple]) -> list[str]:
    """Multi-row INSERT statements with inlined literals, each at most about 1 MB."""
    head, _, tail = sql.partition(" VALUES ")
    head += " VALUES "
    tail = tail[tail.index(")") + 1:]
    out, chunk, size = [], [], 0
    for row in rows:
        literal = "(" + ",".join([_MYSQL_LITERAL[type(v)](v) for v in row]) + ")"
        if chunk and size + len(literal) > MYSQL_STATEMENT_BYTES:
            out.append(head + ",".join(chunk) + tail)
            chunk, size = [], 0
        chunk.append(literal)
        size += len(literal) + 1
    if chunk:
        out.append(head + ",".join(chunk) + tail)
    return out


def _sqlite_sql(table: str, columns: tuple[str, ...], rows: int = 1) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ",".join([f"({', '.join(['?'] * len(columns))})"] * rows)
    return f'INSERT INTO "{table}" ({names}) VALUES {marks} ON CONFLICT(event_id) DO NOTHING'


# Bound parameters per multi-row SQLite statement: SQLite's default limit since 3.32.
SQLITE_MAX_VARIABLES = 32766


class SqliteInserts:
    """Multi-row INSERT statements for SQLite, as many rows each as the bound-parameter limit
    allows (1,500 to 5,000 rows). Faster than `executemany` only slightly, but `executemany`
    releases and takes back the GIL around every row's step, which makes a commit in a
    background thread crawl (each row waits for the switch interval, 5 ms by default), while
    one statement per few thousand rows runs free of the GIL for almost all of its time.

    Every statement has one of a few sizes: the largest, then powers of two for what is left
    (1,000 rows: 512 + 256 + 128 + 64 + 32 + 8). SQLite takes about 8 ms to compile a statement
    of 1,000 rows, several times what inserting them takes: with a size that changed from batch
    to batch, the last statement of every table of every batch was compiled afresh (6% of the
    instructions a batch costs, counted with callgrind); these few stay in the connection's
    statement cache (at most 14 sizes a table)."""

    def __init__(self, variables: int = SQLITE_MAX_VARIABLES):
        self.variables = variables
        self.rows_per_statement = {t: max(1, variables // len(c)) for t, c in R.COLUMNS.items()}
        self._sql: dict[tuple[str, int], str] = {}

    def execute(self, cur, table: str, rows: list[tuple]) -> None:
        per = self.rows_per_statement[table]
        start, end = 0, len(rows)
        while start < end:
            left = end - start
            size = per if left >= per else 1 << (left.bit_length() - 1)
            sql = self._sql.get((table, size))
            if sql is None:
                sql = self._sql[table, size] = _sqlite_sql(table, R.COLUMNS[table], size)
            cur.execute(sql, list(chain.from_iterable(rows[start:start + size])))
            start += size


class EventStore:
    """Writes batches of prepared rows; one DBAPI connection, reopened after any failure."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect == "sqlite":
            self.price: R.PriceCodec = R.sqlite_price
            make_sql = _sqlite_sql
            event.listen(engine, "do_connect", _sqlite_timeout)
            event.listen(engine, "connect", _sqlite_journal_in_memory)
            self._rejected: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,
                                                              sqlite3.DataError,
                                                              sqlite3.InterfaceError)
            self._bug: tuple[type[BaseException], ...] = (sqlite3.ProgrammingError,)
            self._outage: tuple[type[BaseException], ...] = (sqlite3.DatabaseError,)
        else:
            import pymysql
            self.price = R.mysql_price
            make_sql = _mysql_sql
            event.listen(engine, "do_connect", _mysql_timeouts)
            self._rejected = (pymysql.err.DataError, pymysql.err.IntegrityError,
                              pymysql.err.NotSupportedError)
            # bad SQL or a dropped table: raised as it is (a restarted writer creates tables)
            self._bug = (pymysql.err.ProgrammingError,)
            self._outage = (pymysql.err.OperationalError, pymysql.err.InterfaceError,
                            pymysql.err.InternalError)
        self.sql = {table: make_sql(table, cols) for table, cols in R.COLUMNS.items()}
        self._sqlite: SqliteInserts | None = None  # made on the first write (the limit is the connection's)
        self._conn: Any = None
        engine.dispose()  # connections pooled before the listener was added lack its timeouts

    def write(self, batch: dict[str, list[tuple]]) -> None:
        """Insert every table's rows and commit, all or nothing.

        Raises DatabaseUnavailable (retry later) or RowRejected (some row is bad: see
        `write_each`).
        """
        if self.dialect == "sqlite":
            self._run(lambda cur: [self._sqlite_inserts(cur).execute(cur, t, rows)
                                   for t, rows in batch.items() if rows])
            return
        try:
            statements = [q for t, rows in batch.items() if rows for q in mysql_statements(self.sql[t], rows)]
        except (KeyError, ValueError) as exc:
            raise RowRejected(f"a value cannot be written: {exc}") from exc
        self._run(lambda cur: [cur.execute(q) for q in statements])

    def _sqlite_inserts(self, cur) -> SqliteInserts:
        if self._sqlite is None:
            limit = cur.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._sqlite = SqliteInserts(min(limit, SQLITE_MAX_VARIABLES))
        return self._sqlite

    def write_each(self, table: str, rows: Iterable[tuple]) -> list[tuple[tuple, str]]:
        """Insert rows one by one, each committed alone; returns the rejected rows with reasons.

        Used only after `write` raised RowRejected, to keep the good rows and isolate the bad.
        """
        rejected = []
        for row in rows:
            try:
                self._run(lambda cur: cur.execute(self.sql[table], row))
            except RowRejected as exc:
                rejected.append((row, str(exc.__cause__ or exc)))
        return rejected

    def _run(self, work: Callable[[Any], Any]) -> None:
        try:
            conn = self._connection()
            cur = conn.cursor()
            try:
                work(cur)
            finally:
                cur.close()
            conn.commit()
        except self._rejected as exc:
            self._rollback()
            raise RowRejected(f"{type(exc).__name__}: {exc}") from exc
        except self._bug:
            self.close()
            raise
        except (*self._outage, sa_exc.DBAPIError, sa_exc.TimeoutError, OSError) as exc:
            self.close()  # lost connection, lock, timeout: retried, unless a setting is wrong
            problem = misconfiguration(exc)
            if problem:
                raise DatabaseMisconfigured(problem) from exc
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except Exception:
            self.close()  # a bug: drop the connection with its half-done transaction, and raise
            raise

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        return self._conn.driver_connection

    def _rollback(self) -> None:
        try:
            self._conn.driver_connection.rollback()
        except Exception:  # noqa: BLE001 - a broken connection is replaced on the next write
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail in any way
                log.debug("closing a failed connection", exc_info=True)
            self._conn = None


def _sqlite_timeout(dialect, conn_rec, cargs, cparams) -> None:
    """A locked SQLite file fails fast into the writer's backoff instead of blocking 30 s."""
    cparams["timeout"] = SQLITE_BUSY_TIMEOUT_S


def _sqlite_journal_in_memory(dbapi_connection, _record) -> None:
    """Temporary files in memory. A multi-row INSERT (SqliteInserts) keeps a statement journal,
    to undo itself alone if it fails halfway; beyond 64 KiB SQLite writes it to a temporary
    file: the page images of each statement, written and thrown away. Kept in memory, the
    writer's inserts made 60,000 write calls instead of 148,000 per 200,000 rows (the plain
    executemany of the same rows, which keeps no statement journal, makes 60,000), and ran
    about 1.6 times as fast. Only the writer's connections: a reader's large sort could
    otherwise grow in memory without bound."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _mysql_timeouts(dialect, conn_rec, cargs, cparams) -> None:
    """Without socket timeouts a silently dead server would hang the writer for good."""
    cparams.setdefault("read_timeout", MYSQL_IO_TIMEOUT_S)
    cparams.setdefault("write_timeout", MYSQL_IO_TIMEOUT_S)
    cparams.setdefault("connect_timeout", 5)
