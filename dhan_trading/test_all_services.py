"""`python -m dhan_trading.test_all_services`: is the running system healthy?

Checks Redis, the database, and the health record of every service that should be running:
the ones named with --expect, the ones the supervisor has running (pid files), and any that
publishes a heartbeat. Prints a table; exits 0 only if everything that should run is healthy.
Looking never starts anything (not even the embedded Redis).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect, text

from . import bus
from .config import ConfigError, Settings, get_settings, mask_url
from .db_setup import get_engine
from .schema import metadata
from .services.registry import SERVICES, Service
from .services.state import pid_path, process_alive, read_pid_file


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    expected: bool = True


def check_redis(settings: Settings) -> tuple[Check, redis.Redis | None]:
    client = bus.connect(settings, start=False, socket_timeout=3)
    where = mask_url(settings.redis_url) if settings.redis_url else "embedded (DHAN_DATA_DIR/redis)"
    try:
        info = client.info("server")
        return Check("Redis", True, f"{where} · redis {info.get('redis_version')}"), client
    except redis.RedisError as exc:
        return Check("Redis", False, f"{where}: {exc}"), None


def check_database(settings: Settings) -> Check:
    url = settings.database_url()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return Check("Database", False, f"no SQLite database yet at {url[len('sqlite:///'):]} (start the writer once)")
    try:
        engine = get_engine(settings=settings, create=False)
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return Check("Database", False, f"{type(exc).__name__}: {exc}")
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            missing = sorted(set(metadata.tables) - set(inspect(conn).get_table_names()))
    except Exception as exc:  # noqa: BLE001
        return Check("Database", False, f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    if missing:
        return Check("Database", False, f"{where}: tables missing {missing} (start the writer once)")
    return Check("Database", True, where)


def _supervised_running(settings: Settings) -> set[str]:
    """Ids the supervisor believes are running (its pid files); looking starts nothing."""
    running = set()
    for service in SERVICES:
        pid = read_pid_file(pid_path(settings.data_dir, service.id))
        if pid and process_alive(*pid):
            running.add(service.id)
    return running


def check_service(service: Service, record: dict | None, expected: bool, now: float) -> Check:
    """One service's verdict: its heartbeat judged by bus.assess_health, as every reader does."""
    healthy, problem = bus.assess_health(record, now)
    if healthy is None:
        return Check(service.title, not expected, "no heartbeat" + (" (expected to run)" if expected else ""), expected)
    if not healthy:
        return Check(service.title, False, f"{record.get('state', '?')}: {problem}", True)
    detail = " · ".join(f"{k}={v}" for k, v in record.items()
                        if k not in ("service", "ts", "healthy", "problem") and not isinstance(v, (dict, list)))
    return Check(service.title, True, detail, True)


def run_checks(settings: Settings, expect: set[str]) -> list[Check]:
    redis_check, client = check_redis(settings)
    checks = [redis_check, check_database(settings)]
    supervised = _supervised_running(settings)
    now = time.time()
    for service in SERVICES:
        if not service.available or service.health != "heartbeat":
            continue
        record = None
        if client is not None:
            try:
                record = bus.read_health(client, service.id)
            except (redis.RedisError, ValueError):  # ValueError: not a JSON object
                record = None
        expected = service.id in expect or service.id in supervised
        if record is None and not expected:
            checks.append(Check(service.title, True, "not running (not expected)", False))
            continue
        checks.append(check_service(service, record, expected or record is not None, now))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dhan_trading.test_all_services", description=__doc__.split("\n\n")[0])
    parser.add_argument("--expect", default="", help="comma-separated service ids that must be running, "
                        f"e.g. fno_feed,db_writer (ids: {', '.join(s.id for s in SERVICES)})")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    known = {s.id for s in SERVICES}
    expect = {e.strip() for e in args.expect.split(",") if e.strip()}
    if expect - known:
        parser.error(f"unknown service ids {sorted(expect - known)}")
    checks = run_checks(settings, expect)
    healthy = all(c.ok for c in checks)
    if args.json:
        sys.stdout.write(orjson.dumps({"healthy": healthy, "checks": [c.__dict__ for c in checks]},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        table = Table(title="Dhan Trading System health")
        for col in ("check", "status", "detail"):
            table.add_column(col)
        for c in checks:
            status = "[green]ok[/]" if c.ok and c.expected else ("[dim]idle[/]" if c.ok else "[red]FAIL[/]")
            table.add_row(c.name, status, c.detail)
        console = Console()
        console.print(table)
        console.print("[green]all healthy[/]" if healthy else "[red]something is not healthy[/]")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
