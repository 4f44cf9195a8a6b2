"""`python -m dhan_trading services list|status|start|stop|restart|start-all|stop-all|logs NAME`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import bus
from ..config import ConfigError, Settings, get_settings
from .registry import SERVICES, Service
from .state import RUNNING
from .supervisor import ServiceError, ServiceStatus, Supervisor

_STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow", "STOPPING": "yellow",
                "FATAL": "bold red", "EXITED": "cyan", "STOPPED": "dim"}


def health_client(settings: Settings):
    """A Redis client for heartbeats, or None while the embedded server is down: looking must
    never start a server, and where that server lives is bus.py's business alone."""
    import redis

    client = bus.connect(settings, start=False, socket_timeout=2, socket_connect_timeout=2)
    if settings.redis_url:
        return client
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        return None
    return client


def _health_text(st: ServiceStatus) -> str:
    """The heartbeat verdict (bus.assess_health, via the supervisor) and the state word."""
    word = (st.health or {}).get("state") or ""
    if st.healthy is None:
        return f"[yellow]?[/yellow] {st.problem}" if st.problem and st.state == RUNNING else ""
    if not st.healthy:
        return f"[red]UNHEALTHY[/red] {word}: {st.problem}".replace(" :", ":")
    detail = (st.health or {}).get("detail")  # e.g. the feed's "waiting for session at 09:00 IST ..."
    return " ".join(x for x in ("[green]ok[/green]", word, f"({detail})" if detail else "") if x)


def _status_table(statuses: list[ServiceStatus], services: dict[str, Service]) -> Table:
    table = Table("service", "title", "state", "pid", "since", "health", "message")
    for st in statuses:
        state = st.state if st.available else "unavailable"
        style = _STATE_STYLE.get(st.state, "") if st.available else "dim"
        since = datetime.fromtimestamp(st.since).strftime("%m-%d %H:%M:%S") if st.since else ""
        message = st.message if st.available else f"program {services[st.id].program} not found"
        table.add_row(st.id, st.title, f"[{style}]{state}[/{style}]" if style else state,
                      str(st.pid or ""), since, _health_text(st), message)
    return table


def _list_table(services: list[Service]) -> Table:
    table = Table("service", "title", "kind", "session", "depends on", "available", "command")
    for s in services:
        cmd = " ".join(["python", *s.command[1:]])
        table.add_row(s.id, s.title, s.kind, s.session or "", ", ".join(s.depends_on),
                      "yes" if s.available else "[dim]no[/dim]", cmd)
    return table


def _tail(path: Path, lines: int) -> list[str]:
    if not path.exists():
        return []
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 200 * (lines + 1)))
        return fh.read().decode("utf-8", "replace").splitlines()[-lines:]


def _follow(path: Path, console_print) -> None:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        while True:
            line = fh.readline()
            if line:
                console_print(line.decode("utf-8", "replace").rstrip("\n"))
            elif path.exists() and path.stat().st_size < fh.tell():  # rotated: reopen
                return _follow(path, console_print)
            else:
                time.sleep(0.2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dhan_trading services",
                                description="Manage the suite's services (see docs/SCHEDULER.md).")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every service of the registry")
    status = sub.add_parser("status", help="state and health of every (or one) service")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true",
                        help="a JSON list, one object per service (id, title, state, pid, restarts, healthy, "
                             "problem, uptime_s, exit_code, available, depends_on, health_age_s, ...)")
    for name in ("start", "stop", "restart"):
        sub.add_parser(name, help=f"{name} one service (with its dependencies/dependents)").add_argument("name")
    sub.add_parser("start-all", help="start the available autostart services, dependencies first")
    sub.add_parser("stop-all", help="stop every running service, dependents first")
    logs = sub.add_parser("logs", help="show a service's log (DATA_DIR/logs/NAME.log)")
    logs.add_argument("name")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    return p


def main(argv: list[str] | None = None, *, services: list[Service] | None = None,
         settings: Settings | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    try:
        settings = settings or get_settings()
        registry = list(SERVICES if services is None else services)
        if args.action == "list":
            console.print(_list_table(registry))
            return 0
        sup = Supervisor(registry, settings, health_client=health_client(settings)
                         if args.action == "status" else None)
        if args.action == "status":
            statuses = [sup.status(args.name)] if args.name else sup.statuses()
            if args.json:
                now = time.time()
                sys.stdout.write(json.dumps([st.to_json(now) for st in statuses], indent=1) + "\n")
            else:
                console.print(_status_table(statuses, sup.services))
            return 0
        if args.action == "logs":
            path = sup.log_path(args.name)
            if not path.exists():
                console.print(f"no log yet for {args.name} ({path})")
                return 1
            for line in _tail(path, args.lines):
                console.print(line, markup=False, highlight=False)
            if args.follow:
                try:
                    _follow(path, lambda line: console.print(line, markup=False, highlight=False))
                except KeyboardInterrupt:
                    pass
            return 0
        if args.action in ("start", "restart"):
            st = sup.start(args.name) if args.action == "start" else sup.restart(args.name)
            again = [sup.status(d) for d in sup.dependents(args.name)] if args.action == "restart" else []
            console.print(_status_table([st] + [d for d in again if d.active], sup.services))
            return 0 if st.state == RUNNING or (st.state == "EXITED" and st.exit_code == 0) else 1
        if args.action == "stop":
            st = sup.stop(args.name)
            console.print(_status_table([st], sup.services))
            return 0 if not st.active else 1
        if args.action == "start-all":
            statuses = sup.start_all()
            console.print(_status_table(statuses, sup.services))
            return 0 if all(s.state == RUNNING for s in statuses) else 1
        if args.action == "stop-all":
            statuses = sup.stop_all()
            console.print(_status_table(statuses, sup.services) if statuses else "nothing was running")
            return 0 if not any(s.active for s in statuses) else 1
    except (ServiceError, ConfigError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
