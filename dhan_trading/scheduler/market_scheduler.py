"""The market scheduler: `python -m dhan_trading.scheduler.market_scheduler`.

Starts each scheduled service a few minutes before its session's pre-open and stops it a few
minutes after the close, on trading days only. It acts on *changes* of the wanted state, so a
service the user stopped by hand mid-session stays stopped, and one started by hand at night is
left alone; when the scheduler itself starts mid-session it starts what should be running now
(the supervisor re-attaches to what already runs, so nothing is duplicated).

`--plan DATE --json` prints the day's sessions and actions and exits; `--dry-run` runs the loop
but only logs what it would do.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable, Sequence

from .. import bus
from ..config import ConfigError, Settings, finite_number, get_settings
from ..exitcodes import FATAL
from ..services.registry import SERVICES, Service
from ..services.supervisor import ServiceError, Supervisor
from .calendar import IST, MarketCalendar, ist_today
from .plan import DEFAULT_LAG, DEFAULT_LEAD, day_plan, next_change, should_run

log = logging.getLogger(__name__)
SERVICE_ID = "market_scheduler"


@dataclass(frozen=True)
class Action:
    at: datetime
    action: str      # "start" | "stop"
    service: str
    result: str = ""


class MarketScheduler:
    """Drives a supervisor from the calendar; `clock`/`sleep` are injectable for tests."""

    def __init__(self, calendar: MarketCalendar, supervisor: Supervisor | None, services: Sequence[Service], *,
                 lead: timedelta = DEFAULT_LEAD, lag: timedelta = DEFAULT_LAG,
                 clock: Callable[[], datetime] = lambda: datetime.now(IST),
                 sleep: Callable[[float], None] | None = None, max_sleep: float = 2.0,
                 dry_run: bool = False, heartbeat: Callable[[dict], None] | None = None):
        self.calendar, self.supervisor = calendar, supervisor
        self.services = [s for s in services if s.session]
        self.lead, self.lag = lead, lag
        self.clock, self.sleep, self.max_sleep = clock, sleep, max_sleep
        self.dry_run = dry_run or supervisor is None
        self.heartbeat = heartbeat
        self.wanted: dict[str, bool] = {}
        self.history: list[Action] = []
        self.failed: dict[str, str] = {}   # service -> why its last start/stop did not work

    def tick(self) -> list[Action]:
        """Compare wanted states with the last ones and act on the changes."""
        now = self.clock()
        starts, stops = [], []
        for svc in self.services:
            want = should_run(self.calendar, now, svc, self.lead, self.lag)
            before = self.wanted.get(svc.id)
            if want and before is not True:
                starts.append(svc)
            elif not want and before is True:
                stops.append(svc)
            self.wanted[svc.id] = want
        done = [self._act(now, "stop", s) for s in reversed(stops)]
        done += [self._act(now, "start", s) for s in starts]
        self.history.extend(done)
        return done

    def _act(self, now: datetime, action: str, svc: Service) -> Action:
        if self.dry_run:
            log.info("[dry-run] %s: would %s %s", now.isoformat(timespec="seconds"), action, svc.id)
            return Action(now, action, svc.id, "dry-run")
        assert self.supervisor is not None
        try:
            if action == "start":
                if not svc.available:
                    raise ServiceError(f"{svc.id} is not available (program {svc.program} not found)")
                result = self.supervisor.start(svc.id).state
            else:
                result = self.supervisor.stop(svc.id).state
        except ServiceError as exc:
            log.error("could not %s %s: %s", action, svc.id, exc)
            result = f"error: {exc}"
        log.info("%s %s -> %s", action, svc.id, result)
        if result == ("RUNNING" if action == "start" else "STOPPED"):
            self.failed.pop(svc.id, None)
        else:
            self.failed[svc.id] = f"{action} {svc.id} at {now:%H:%M} IST gave {result}"
        return Action(now, action, svc.id, result)

    def health(self) -> dict:
        """Our heartbeat record: unhealthy while a start or stop we made did not work."""
        problem = "; ".join(self.failed[i] for i in sorted(self.failed)) or None
        return bus.heartbeat(SERVICE_ID, "dry_run" if self.dry_run else "scheduling", problem is None, problem,
                             wanted=sorted(i for i, w in self.wanted.items() if w), dry_run=self.dry_run)

    def seconds_to_next(self) -> float:
        now = self.clock()
        edge = next_change(self.calendar, now, self.services, self.lead, self.lag)
        wait = self.max_sleep if edge is None else (edge - now).total_seconds()
        return max(0.0, min(self.max_sleep, wait))

    def run(self, stop: threading.Event | None = None, until: datetime | None = None) -> None:
        """Tick until `stop` is set or the clock passes `until`."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.tick()
            if self.heartbeat:
                self.heartbeat(self.health())
            if until is not None and self.clock() >= until:
                return
            if self.sleep is None:
                stop.wait(self.seconds_to_next())
            else:
                self.sleep(self.seconds_to_next())


def _scheduled(ids: str | None, services: Sequence[Service]) -> list[Service]:
    if not ids:
        return [s for s in services if s.scheduled]
    by_id = {s.id: s for s in services}
    unknown = [i for i in ids.split(",") if i.strip() not in by_id]
    if unknown:
        raise ConfigError(f"--services: unknown {', '.join(unknown)}; known: {', '.join(by_id)}")
    chosen = [by_id[i.strip()] for i in ids.split(",")]
    without = [s.id for s in chosen if not s.session]
    if without:
        raise ConfigError(f"--services: {', '.join(without)} follow no exchange session")
    return chosen


def _print_plan(plan: dict) -> None:
    print(f"{plan['date']}: " + ("closed" if not plan["sessions"] else
                                 ", ".join(f"{s['exchange']} {s['kind']} {s['open'][11:16]}-{s['close'][11:16]}"
                                           for s in plan["sessions"])))
    for warning in plan.get("warnings", []):
        print(f"WARNING: {warning}")
    for a in plan["actions"]:
        when = a["at"][11:16] if a["at"].startswith(plan["date"]) else a["at"][:16].replace("T", " ")
        print(f"  {when}  {a['action']:<5} {a['service']}")


class _Heartbeat:
    """Publishes our health when Redis is reachable; never starts an embedded server itself."""

    def __init__(self, settings: Settings):
        self.settings, self.client, self.next_try = settings, None, 0.0

    def __call__(self, record: dict) -> None:
        from ..services.cli import health_client

        if self.client is None and time.monotonic() >= self.next_try:
            self.next_try = time.monotonic() + 30
            self.client = health_client(self.settings)
        if self.client is None:
            return
        try:
            bus.publish_health(self.client, record)
        except Exception as exc:  # noqa: BLE001 - Redis gone: retry later, keep scheduling
            log.warning("heartbeat to Redis failed (%s); retrying in 30 s", exc)
            self.client = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dhan_trading.scheduler.market_scheduler",
                                description="Start and stop the scheduled services at NSE/MCX session times.")
    p.add_argument("--plan", metavar="DATE", help="print the plan of DATE (YYYY-MM-DD or 'today') and exit")
    p.add_argument("--json", action="store_true", help="with --plan: print JSON")
    p.add_argument("--dry-run", action="store_true", help="log what would be started/stopped, touch nothing")
    p.add_argument("--services", help="comma-separated ids to schedule (default: the registry's scheduled ones)")
    p.add_argument("--lead-minutes", type=finite_number, default=DEFAULT_LEAD.total_seconds() / 60,
                   help="start this long before the pre-open (default %(default)g)")
    p.add_argument("--lag-minutes", type=finite_number, default=DEFAULT_LAG.total_seconds() / 60,
                   help="stop this long after the close (default %(default)g)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    lead, lag = timedelta(minutes=args.lead_minutes), timedelta(minutes=args.lag_minutes)
    try:
        settings = get_settings()
        services = _scheduled(args.services, SERVICES)
        if args.plan:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
            try:
                day = ist_today() if args.plan == "today" else date.fromisoformat(args.plan)
            except ValueError:
                p.error(f"--plan {args.plan!r}: use YYYY-MM-DD")
            plan = day_plan(MarketCalendar(settings), day, services, lead, lag)
            if args.json:
                print(json.dumps(plan, indent=2))
            else:
                _print_plan(plan)
            return 0
        from ..logs import setup_logging

        setup_logging(SERVICE_ID, settings)
        calendar = MarketCalendar(settings)
        supervisor = None if args.dry_run else Supervisor(SERVICES, settings)
        scheduler = MarketScheduler(calendar, supervisor, services, lead=lead, lag=lag,
                                    dry_run=args.dry_run, heartbeat=_Heartbeat(settings))
        log.info("scheduling %s (lead %s, lag %s)%s", ", ".join(s.id for s in services) or "nothing",
                 lead, lag, " [dry-run]" if args.dry_run else "")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            scheduler.run(stop)
        except KeyboardInterrupt:
            pass
        log.info("scheduler stopped; the services it started keep running under their runners")
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FATAL


if __name__ == "__main__":
    sys.exit(main())
