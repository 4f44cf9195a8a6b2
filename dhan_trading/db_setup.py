"""get_engine(database): MySQL through PyMySQL when configured, else an embedded SQLite file;
`misconfiguration(exc)`: whether a database error is a setting to fix rather than an outage."""
from __future__ import annotations

import logging
import sqlite3

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from .config import ConfigError, Settings, get_settings, mask_url
from .schema import create_tables

log = logging.getLogger(__name__)


def get_engine(database: str | None = None, settings: Settings | None = None, create: bool = True) -> Engine:
    """An engine for `database` (default DHAN_DB_NAME) with every table created if missing.

    On MySQL the database itself is created if missing (utf8mb4). On SQLite the file lives
    under DHAN_DATA_DIR and runs in WAL mode so readers never block the writer.
    """
    settings = settings or get_settings()
    url = make_url(settings.database_url(database))
    if url.get_backend_name() == "sqlite":
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data folder {settings.data_dir} ({exc.strerror}): "
                              "set DHAN_DATA_DIR to a folder you can write") from exc
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        if create and url.database:
            _create_mysql_database(url)
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, pool_size=5,
                               max_overflow=10, pool_timeout=30,
                               connect_args={"connect_timeout": 10})
    if create:
        create_tables(engine)
    log.info("database: %s", mask_url(engine.url.render_as_string(hide_password=True)))
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _create_mysql_database(url) -> None:
    server = create_engine(url.set(database=""), pool_pre_ping=True,
                           connect_args={"connect_timeout": 10})
    try:
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{url.database}` "
                              "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    finally:
        server.dispose()


# MySQL server errors no retry can fix: the settings are wrong (see pymysql.constants.ER).
_MYSQL_FATAL = {
    1044: "access denied to the database: grant DHAN_DB_USER rights on it, or check DHAN_DB_NAME",
    1045: "access denied (wrong user or password): check DHAN_DB_USER and DHAN_DB_PASSWORD",
    1049: "unknown database, and it could not be created: create it or check DHAN_DB_NAME",
    1142: "the user may not write the tables: grant INSERT, SELECT and CREATE to DHAN_DB_USER",
    1698: "access denied (wrong user or password): check DHAN_DB_USER and DHAN_DB_PASSWORD",
}
# SQLite errors that mean the file cannot be written where it is configured to live.
_SQLITE_FATAL = ("unable to open database file", "readonly database", "file is not a database")


def misconfiguration(exc: BaseException) -> str | None:
    """A sentence naming the setting to fix if `exc` (a DBAPI error, possibly wrapped by
    SQLAlchemy) comes from a wrong setting; None for an outage (connection refused, server
    gone away, timeout, locked SQLite), which is worth retrying. The message never holds a
    password: MySQL's own text names only the user and host."""
    orig = getattr(exc, "orig", None) or exc
    code = orig.args[0] if getattr(orig, "args", None) else None
    if type(orig).__module__.startswith("pymysql") and code in _MYSQL_FATAL:
        detail = orig.args[1] if len(orig.args) > 1 else ""
        return f"MySQL: {_MYSQL_FATAL[code]} (or the same in DHAN_DB_URL); the server said: {detail}"
    if isinstance(orig, sqlite3.Error) and any(text in str(orig) for text in _SQLITE_FATAL):
        return (f"the SQLite database cannot be written ({orig}): set DHAN_DATA_DIR (or the path "
                "in DHAN_DB_URL) to a folder you can write")
    return None
