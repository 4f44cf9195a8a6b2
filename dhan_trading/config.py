"""The one place that reads the environment and `.env`.

Every other module asks `get_settings()`; nothing else touches `os.environ` for our variables,
so a variable is named, validated and documented exactly once (DESIGN §3.2, `.env.example`).
A wrong value fails at start-up with a `ConfigError` that names the variable and the fix.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from dotenv import dotenv_values

from .protocol.requests import MAX_DEPTH_PER_CONNECTION
from .protocol.segments import SEGMENT_CODES

# The folder that holds the `dhan_trading` package. `.env` and the default data folder live here,
# so every program, started from any directory, reads the same settings and finds the same
# database and Redis (DESIGN §3.2).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOTENV_PATH = PROJECT_ROOT / ".env"
DEFAULT_DATA_DIR = PROJECT_ROOT / "var"

DHAN_FEED_URL_DEFAULT = "wss://api-feed.dhan.co"
DHAN_DEPTH_FEED_URL_DEFAULT = "wss://depth-api-feed.dhan.co"
DHAN_SCRIP_MASTER_URL = "https://images.dhan.co/api-data/api-scrip-master.csv"
SAMPLE_INSTRUMENTS_CSV = Path(__file__).parent / "data" / "sample-scrip-master.csv"
NIFTY50_CSV = Path(__file__).parent / "data" / "nifty50.csv"  # bundled constituents and weights

# Every variable we read, with the one-line help shown in errors and in `.env.example`.
VARIABLES: dict[str, str] = {
    "DHAN_CLIENT_ID": "your Dhan client id (a number such as 1000000001)",
    "DHAN_ACCESS_TOKEN": "your Dhan access token (from web.dhan.co > My Profile > Access DhanHQ APIs)",
    "DHAN_FEED_URL": f"market feed WebSocket base URL (default {DHAN_FEED_URL_DEFAULT})",
    "DHAN_DEPTH_FEED_URL": f"20-level depth WebSocket base URL (default {DHAN_DEPTH_FEED_URL_DEFAULT})",
    "DHAN_DEPTH_INSTRUMENTS": "comma-separated SEGMENT:ID list for 20-level depth, at most 50",
    "REDIS_URL": "e.g. redis://127.0.0.1:6379/0; unset = embedded redis-server",
    "DHAN_DB_URL": "full SQLAlchemy URL; wins over the DHAN_DB_* parts",
    "DHAN_DB_HOST": "MySQL host; unset = embedded SQLite file under DHAN_DATA_DIR",
    "DHAN_DB_PORT": "MySQL port (default 3306)",
    "DHAN_DB_USER": "MySQL user (default root)",
    "DHAN_DB_PASSWORD": "MySQL password",
    "DHAN_DB_NAME": "database name (default dhan_trading)",
    "DHAN_INSTRUMENTS_CSV": "path or URL of the scrip master",
    "DHAN_FEED_STALL_TIMEOUT": "seconds without a frame before a feed connection is recycled (default 60)",
    "DHAN_UNIVERSE_STOCKS": "how many stock futures the universe takes (default 40)",
    "DHAN_UNIVERSE_STRIKES": "option strikes each side of ATM for NIFTY/BANKNIFTY (default 9: ~129 instruments)",
    "DHAN_NIFTY50_CSV": "Nifty 50 constituents file (symbol,company,weight with # as_of: and # source: lines); default the bundled one",
    "DHAN_WATCHLIST": "CSV exchange_segment,security_id,mode (ticker, quote or full): the feed subscribes exactly these, up to 25,000",
    "DHAN_DATA_DIR": "where SQLite, logs, captures and the embedded Redis live (default var/ in the project "
                     "folder; a relative path is taken from the project folder too)",
    "DHAN_HOLIDAYS_FILE": "optional CSV of extra holidays / special sessions (date,exchange,kind[,open,close])",
    "DHAN_LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR (default INFO)",
}

# Set by the supervisor in every child it starts: plumbing, not user settings (so not in VARIABLES).
SUPERVISED_ENV = "DHAN_SUPERVISED"   # "1" in every supervised child

_SECRET_QUERY_KEYS = {"token", "access_token", "accesstoken", "password", "secret"}
_PATH_SCHEMES = {"sqlite", "unix"}  # URL schemes that name a file, not a host


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable and the fix."""


class Secret(str):
    """A string whose repr and str never show the value (use `.reveal()`)."""

    def reveal(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return "Secret('***')" if self.reveal() else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"


def mask_url(url: str | None) -> str:
    """Hide passwords and token-like query values in a URL before it is logged or shown."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                          safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to hide: shown as written ('ws://' stays 'ws://', not 'ws:')
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Secrets are `Secret` so they never leak through repr/logs."""

    client_id: str = ""
    access_token: Secret = Secret("")
    feed_url: str = DHAN_FEED_URL_DEFAULT
    depth_feed_url: str = DHAN_DEPTH_FEED_URL_DEFAULT
    depth_instruments: tuple[tuple[str, int], ...] = ()
    redis_url: str | None = None
    db_url: Secret | None = None
    db_host: str | None = None
    db_port: int = 3306
    db_user: str = "root"
    db_password: Secret = Secret("")
    db_name: str = "dhan_trading"
    instruments_csv: str = ""
    feed_stall_timeout: float = 60.0
    universe_stocks: int = 40
    universe_strikes: int = 9
    nifty50_csv: Path = NIFTY50_CSV
    watchlist: Path | None = None  # replaces the universe rules when set
    data_dir: Path = DEFAULT_DATA_DIR
    holidays_file: Path | None = None
    log_level: str = "INFO"
    supervised: bool = False  # under the supervisor, whose runner writes our stderr to the log file

    @property
    def uses_dhan(self) -> bool:
        """True when the feed points at Dhan's own servers (so credentials are required)."""
        return "dhan.co" in (urlsplit(self.feed_url).hostname or "")

    @property
    def mysql_configured(self) -> bool:
        return bool(self.db_url or self.db_host)

    def database_url(self, database: str | None = None) -> str:
        """SQLAlchemy URL of the configured database (password quoted); SQLite when none."""
        if self.db_url:
            return self.db_url.reveal()
        name = database or self.db_name
        if self.db_host:
            password = quote_plus(self.db_password.reveal())
            auth = f"{quote_plus(self.db_user)}:{password}" if password else quote_plus(self.db_user)
            return f"mysql+pymysql://{auth}@{self.db_host}:{self.db_port}/{name}?charset=utf8mb4"
        return f"sqlite:///{(self.data_dir / f'{name}.sqlite3').resolve()}"

    def require_credentials(self) -> None:
        """Raise a ConfigError that says how to fix missing credentials for the live feed."""
        if not self.uses_dhan:
            return
        missing = [n for n, v in (("DHAN_CLIENT_ID", self.client_id),
                                  ("DHAN_ACCESS_TOKEN", self.access_token.reveal())) if not v]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set: the live feed needs your Dhan credentials. "
                "Put them in .env (see .env.example), or point DHAN_FEED_URL at the simulator "
                "(python -m dhan_trading simulator) to run without them.")

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"Settings({shown})"


def _number(env: Mapping[str, str], name: str, default, kind, minimum=0):
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number: "
                          f"set {name} to {VARIABLES[name]} or remove it from the environment/.env") from None
    if not math.isfinite(value):  # float('nan') and float('inf') parse, and nan < 1 is False
        raise ConfigError(f"{name}={raw!r} is not a finite number: set {name} to a number of at least "
                          f"{minimum} ({VARIABLES[name]}) or remove it from the environment/.env")
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], default: str | None):
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise ConfigError(f"{name}={mask_url(raw)!r} is not a valid URL: it must start with "
                          f"{' or '.join(s + '://' for s in schemes)} ({VARIABLES[name]})")
    if parts.scheme in _PATH_SCHEMES:
        if not parts.path.strip("/"):
            raise ConfigError(f"{name}={mask_url(raw)!r} names no file: write {parts.scheme}:///PATH "
                              f"({VARIABLES[name]})")
    elif not parts.hostname:
        raise ConfigError(f"{name}={mask_url(raw)!r} has no host: write {parts.scheme}://HOST[:PORT], "
                          f"e.g. {parts.scheme}://127.0.0.1 ({VARIABLES[name]})")
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{name}={mask_url(raw)!r} has a bad port number: use host:PORT with "
                          "PORT between 1 and 65535") from None
    return raw



def data_dir_from(raw: str | None) -> Path:
    """DHAN_DATA_DIR as an absolute path: unset = PROJECT_ROOT/var; relative = under PROJECT_ROOT."""
    raw = (raw or "").strip()
    if not raw:
        return DEFAULT_DATA_DIR
    return PROJECT_ROOT / Path(raw).expanduser()  # an absolute path replaces PROJECT_ROOT


def _depth_list(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    raw = (env.get("DHAN_DEPTH_INSTRUMENTS") or "").strip()
    if not raw:
        return ()
    out = []
    for item in raw.split(","):
        m = re.fullmatch(r"\s*([A-Z_]+):(\d+)\s*", item)
        if not m or m.group(1) not in SEGMENT_CODES:
            raise ConfigError(f"DHAN_DEPTH_INSTRUMENTS: {item.strip()!r} is not SEGMENT:ID "
                              "(e.g. NSE_FNO:52175,NSE_EQ:1333)")
        out.append((m.group(1), int(m.group(2))))
    if len(out) > MAX_DEPTH_PER_CONNECTION:
        raise ConfigError(f"DHAN_DEPTH_INSTRUMENTS lists {len(out)} instruments; Dhan allows at most "
                          f"{MAX_DEPTH_PER_CONNECTION}")
    return tuple(out)


def load_settings(environ: Mapping[str, str] | None = None,
                  dotenv_path: str | os.PathLike | None = DOTENV_PATH) -> Settings:
    """Build Settings from `.env` overlaid by the real environment (the environment wins).

    `.env` is the project folder's (`PROJECT_ROOT`), never the current directory's.
    """
    env: dict[str, str] = {}
    if dotenv_path and Path(dotenv_path).is_file():
        env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    feed_url = _url(env, "DHAN_FEED_URL", ("ws", "wss"), DHAN_FEED_URL_DEFAULT)
    level = (env.get("DHAN_LOG_LEVEL") or "INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"DHAN_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR")
    data_dir = data_dir_from(env.get("DHAN_DATA_DIR"))
    holidays = (env.get("DHAN_HOLIDAYS_FILE") or "").strip()
    db_url = _url(env, "DHAN_DB_URL", ("mysql+pymysql", "mysql", "sqlite", "mariadb+pymysql"), None)
    if db_url and db_url.startswith(("mysql://", "mariadb://")):
        db_url = db_url.replace("://", "+pymysql://", 1)
    port = _number(env, "DHAN_DB_PORT", 3306, int, 1)
    if port > 65535:
        raise ConfigError(f"DHAN_DB_PORT={port} is out of range: use a port between 1 and 65535 (MySQL's is 3306)")
    default_csv = str(SAMPLE_INSTRUMENTS_CSV)
    if "dhan.co" in (urlsplit(feed_url).hostname or ""):
        default_csv = DHAN_SCRIP_MASTER_URL
    return Settings(
        client_id=(env.get("DHAN_CLIENT_ID") or "").strip(),
        access_token=Secret((env.get("DHAN_ACCESS_TOKEN") or "").strip()),
        feed_url=feed_url,
        depth_feed_url=_url(env, "DHAN_DEPTH_FEED_URL", ("ws", "wss"), DHAN_DEPTH_FEED_URL_DEFAULT),
        depth_instruments=_depth_list(env),
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix"), None),
        db_url=Secret(db_url) if db_url else None,
        db_host=(env.get("DHAN_DB_HOST") or "").strip() or None,
        db_port=port,
        db_user=(env.get("DHAN_DB_USER") or "root").strip(),
        db_password=Secret(env.get("DHAN_DB_PASSWORD") or ""),
        db_name=(env.get("DHAN_DB_NAME") or "dhan_trading").strip(),
        instruments_csv=(env.get("DHAN_INSTRUMENTS_CSV") or "").strip() or default_csv,
        feed_stall_timeout=_number(env, "DHAN_FEED_STALL_TIMEOUT", 60.0, float, 1),
        universe_stocks=_number(env, "DHAN_UNIVERSE_STOCKS", 40, int, 0),
        universe_strikes=_number(env, "DHAN_UNIVERSE_STRIKES", 9, int, 0),
        nifty50_csv=Path((env.get("DHAN_NIFTY50_CSV") or "").strip() or NIFTY50_CSV).expanduser(),
        watchlist=Path(watchlist).expanduser() if (watchlist := (env.get("DHAN_WATCHLIST") or "").strip()) else None,
        data_dir=data_dir,
        holidays_file=Path(holidays).expanduser() if holidays else None,
        log_level=level,
        supervised=env.get(SUPERVISED_ENV) == "1",
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def finite_number(text: str) -> float:
    """argparse type of the command-line number options (seconds, rates, minutes): a finite
    number. `float` alone takes 'nan' and 'inf', which then pass every comparison or none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
