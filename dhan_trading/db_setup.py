"""get_engine(database): MySQL through PyMySQL when configured, else an embedded SQLite file."""
from __future__ import annotations

import logging

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from .config import Settings, get_settings, mask_url
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
        settings.data_dir.mkdir(parents=True, exist_ok=True)
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
