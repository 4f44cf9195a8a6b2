"""The control center's Configuration tab: the effective settings (secrets masked), which `.env`
was read, where the data lives, and buttons that test Redis, the database and the Dhan feed.

A configuration error (a bad value in `.env`) is shown here, in words, instead of a traceback:
the control center opens on this tab with the error, so the fix is one read away.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from PyQt6.QtWidgets import (QFormLayout, QGroupBox, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget)

from ..config import DOTENV_PATH, VARIABLES, Settings, mask_url
from . import theme
from .jobs import Jobs

CHECK_TIMEOUT_S = 5.0


def _masked(secret) -> str:
    return "*** (set)" if secret and secret.reveal() else "(not set)"


def check_redis(settings: Settings) -> str:
    """PING the configured Redis (never starts the embedded one). Blocking: run in a worker."""
    from .. import bus

    where = mask_url(settings.redis_url) if settings.redis_url else \
        f"embedded Redis at {bus.EmbeddedRedis.at(settings.data_dir).url}"
    client = bus.connect(settings, start=False, socket_timeout=CHECK_TIMEOUT_S,
                         socket_connect_timeout=CHECK_TIMEOUT_S)
    try:
        info = client.info("server")
        return f"Redis {info.get('redis_version', '?')} answers at {where}"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer, in words
        hint = "" if settings.redis_url else (" (the embedded server is not running: start the Redis service, "
                                              "or `python -m dhan_trading redis start`)")
        raise RuntimeError(f"Redis at {where}: {type(exc).__name__}: {exc}{hint}") from None
    finally:
        client.close()


def check_database(settings: Settings) -> str:
    """Connect and run SELECT 1; creates nothing. Blocking: run in a worker."""
    from sqlalchemy import inspect, text

    from ..db_setup import get_engine

    engine = get_engine(settings=settings, create=False)
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            tables = [t for t in inspect(conn).get_table_names() if t.startswith("dhan_")]
        return f"connected to {where}; tables: {', '.join(tables) or 'none yet (the writer creates them)'}"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer, in words
        raise RuntimeError(f"database {where}: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}") from None
    finally:
        engine.dispose()


def check_dhan(settings: Settings) -> str:
    """A WebSocket handshake with the configured feed URL and credentials, then close.
    The token travels in the URL's query: no message here ever contains it."""
    from websockets.sync.client import connect

    from ..logs import MaskSecrets
    from ..protocol.requests import feed_url

    settings.require_credentials()
    token = settings.access_token.reveal()
    url = feed_url(settings.feed_url, token, settings.client_id or "0")
    mask = MaskSecrets((token,))
    try:
        with connect(url, open_timeout=CHECK_TIMEOUT_S, close_timeout=1):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure is the answer, masked
        text = mask.mask(f"{type(exc).__name__}: {exc}")
        raise RuntimeError(f"handshake with {settings.feed_url} failed: {text}") from None
    host = urlsplit(settings.feed_url).netloc
    return f"{host} accepted the WebSocket handshake" + (" with your credentials" if settings.uses_dhan else "")


class ConfigView(QWidget):
    def __init__(self, settings: Settings | None, error: str | None, jobs: Jobs,
                 dotenv_path: Path | None = DOTENV_PATH, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings, self.jobs = settings, jobs
        self.results: dict[str, QLabel] = {}
        self.buttons: dict[str, QPushButton] = {}
        outer = QVBoxLayout(self)

        self.error = QLabel("")
        self.error.setObjectName("config_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"background: {theme.STATE['bad']}; color: white; padding: 8px; "
                                 "border-radius: 4px; font-weight: bold")
        self.error.setVisible(bool(error))
        if error:
            self.error.setText(f"Configuration error: {error}\n\nFix it in {dotenv_path} (or the environment), "
                               "then open the control center again. Until then no service can be managed.")
        outer.addWidget(self.error)

        source = QLabel(f".env read: {dotenv_path} " + ("(found)" if dotenv_path and Path(dotenv_path).is_file()
                                                         else "(not present: environment and defaults only)"))
        source.setWordWrap(True)
        outer.addWidget(source)

        checks = QGroupBox("Connection tests")
        grid = QFormLayout(checks)
        for key, title, fn in (("redis", "Test Redis", check_redis), ("database", "Test database", check_database),
                               ("dhan", "Test Dhan feed", check_dhan)):
            button = QPushButton(title)
            button.setObjectName(f"test_{key}")
            result = QLabel("not tested")
            result.setObjectName(f"result_{key}")
            result.setWordWrap(True)
            button.setEnabled(settings is not None)
            button.clicked.connect(lambda _=False, k=key, f=fn: self.run_check(k, f))
            self.buttons[key], self.results[key] = button, result
            grid.addRow(button, result)
        outer.addWidget(checks)

        box = QGroupBox("Effective settings (environment over .env over defaults; secrets masked)")
        form = QFormLayout(box)
        for name, value, help_ in self._rows(settings):
            label = QLabel(value)
            label.setWordWrap(True)
            label.setToolTip(help_)
            name_label = QLabel(name)
            name_label.setToolTip(help_)
            form.addRow(name_label, label)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(box)
        outer.addWidget(scroll, 1)

    @staticmethod
    def _rows(s: Settings | None) -> list[tuple[str, str, str]]:
        if s is None:
            return [("(none)", "the settings could not be read: see the error above", "")]
        data = Path(s.data_dir).resolve()
        redis_where = mask_url(s.redis_url) if s.redis_url else f"embedded: unix://{data / 'redis' / 'redis.sock'}"
        v = VARIABLES
        return [
            ("DHAN_CLIENT_ID", s.client_id or "(not set)", v["DHAN_CLIENT_ID"]),
            ("DHAN_ACCESS_TOKEN", _masked(s.access_token), v["DHAN_ACCESS_TOKEN"]),
            ("DHAN_FEED_URL", mask_url(s.feed_url) + ("  (Dhan: credentials needed)" if s.uses_dhan
                                                      else "  (not Dhan: runs at any hour)"), v["DHAN_FEED_URL"]),
            ("DHAN_DEPTH_FEED_URL", mask_url(s.depth_feed_url), v["DHAN_DEPTH_FEED_URL"]),
            ("Redis", redis_where, v["REDIS_URL"]),
            ("Database", mask_url(s.database_url()), v["DHAN_DB_URL"]),
            ("DHAN_DB_PASSWORD", _masked(s.db_password) if s.db_host else "(SQLite: none)", v["DHAN_DB_PASSWORD"]),
            ("DHAN_DATA_DIR", str(data), v["DHAN_DATA_DIR"]),
            ("logs", str(data / "logs") + "  (<service>.log, rotated .1 … .5)", "each service's rotated log"),
            ("run files", str(data / "run") + "  (state, pid, spec of each service)", "the supervisor's files"),
            ("DHAN_INSTRUMENTS_CSV", s.instruments_csv, v["DHAN_INSTRUMENTS_CSV"]),
            ("DHAN_WATCHLIST", str(s.watchlist) if s.watchlist else "(none: the F&O universe rules)",
             v["DHAN_WATCHLIST"]),
            ("DHAN_UNIVERSE_STOCKS / STRIKES", f"{s.universe_stocks} / {s.universe_strikes}",
             v["DHAN_UNIVERSE_STOCKS"]),
            ("DHAN_DEPTH_INSTRUMENTS", ", ".join(f"{a}:{b}" for a, b in s.depth_instruments) or "(none)",
             v["DHAN_DEPTH_INSTRUMENTS"]),
            ("DHAN_FEED_STALL_TIMEOUT", f"{s.feed_stall_timeout:g} s", v["DHAN_FEED_STALL_TIMEOUT"]),
            ("DHAN_HOLIDAYS_FILE", str(s.holidays_file) if s.holidays_file else "(bundled calendar only)",
             v["DHAN_HOLIDAYS_FILE"]),
            ("DHAN_NIFTY50_CSV", str(s.nifty50_csv), v["DHAN_NIFTY50_CSV"]),
            ("DHAN_LOG_LEVEL", s.log_level, v["DHAN_LOG_LEVEL"]),
        ]

    def run_check(self, key: str, fn) -> None:
        button, result = self.buttons[key], self.results[key]
        button.setEnabled(False)
        result.setText("testing…")
        result.setStyleSheet(f"color: {theme.MUTED}")

        def done(text: str) -> None:
            button.setEnabled(True)
            result.setText(f"OK · {text}")
            result.setStyleSheet("color: #66bb6a")

        def failed(exc: BaseException) -> None:
            button.setEnabled(True)
            result.setText(f"FAILED · {exc}")
            result.setStyleSheet(f"color: {theme.DOWN}")

        self.jobs.run(fn, self.settings, done=done, error=failed, name=f"cc-check-{key}")
