"""When each scheduled service should run: pure functions over the calendar, no processes.

A service that follows an exchange session runs from `lead` before the session's pre-open (or
open) until `lag` after its close; a service following "NSE+MCX" runs over the union of both.
The scheduler, `--plan` and the feed's own "may I connect now" (`window_at`, `next_window`) use
the same windows, so the plan shown is the plan executed and a feed the scheduler starts early
waits for its window instead of exiting.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Iterable

from ..services.registry import Service
from .calendar import IST, MarketCalendar, gap_message

DEFAULT_LEAD = timedelta(minutes=5)
DEFAULT_LAG = timedelta(minutes=5)

Window = tuple[datetime, datetime]


def service_windows(calendar: MarketCalendar, day: date, exchanges: Iterable[str],
                    lead: timedelta = DEFAULT_LEAD, lag: timedelta = DEFAULT_LAG) -> list[Window]:
    """The run windows of sessions opening on `day`, overlapping ones merged."""
    spans = sorted((s.start - lead, s.close + lag)
                   for ex in exchanges for s in calendar.exchange_sessions(day, ex))
    merged: list[Window] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def window_at(calendar: MarketCalendar, now: datetime, service: Service,
              lead: timedelta = DEFAULT_LEAD, lag: timedelta = DEFAULT_LAG) -> Window | None:
    """The service's window that contains `now` (a lag may pass midnight), or None."""
    if not service.session:
        return None
    now = now.astimezone(IST)
    return next((w for day in (now.date() - timedelta(days=1), now.date())
                 for w in service_windows(calendar, day, service.exchanges, lead, lag)
                 if w[0] <= now < w[1]), None)


def should_run(calendar: MarketCalendar, now: datetime, service: Service,
               lead: timedelta = DEFAULT_LEAD, lag: timedelta = DEFAULT_LAG) -> bool:
    """True while `now` is inside one of the service's windows."""
    return window_at(calendar, now, service, lead, lag) is not None


def next_window(calendar: MarketCalendar, now: datetime, service: Service, lead: timedelta = DEFAULT_LEAD,
                lag: timedelta = DEFAULT_LAG, horizon_days: int = 31) -> Window | None:
    """The service's first window that opens after `now` (within `horizon_days`), or None."""
    now = now.astimezone(IST)
    return next((w for offset in range(horizon_days + 1)
                 for w in service_windows(calendar, now.date() + timedelta(days=offset), service.exchanges,
                                          lead, lag)
                 if w[0] > now), None)


def next_change(calendar: MarketCalendar, now: datetime, services: Iterable[Service],
                lead: timedelta = DEFAULT_LEAD, lag: timedelta = DEFAULT_LAG) -> datetime | None:
    """The next window edge after `now` of any of `services` (within a week), or None."""
    now = now.astimezone(IST)
    edges = [edge
             for s in services if s.session
             for offset in range(-1, 8)
             for window in service_windows(calendar, now.date() + timedelta(days=offset), s.exchanges, lead, lag)
             for edge in window if edge > now]
    return min(edges, default=None)


def day_plan(calendar: MarketCalendar, day: date, services: Iterable[Service],
             lead: timedelta = DEFAULT_LEAD, lag: timedelta = DEFAULT_LAG) -> dict:
    """The day's sessions and the start/stop actions, as `--plan DATE --json` prints them."""
    sessions = calendar.sessions(day)
    actions = []
    for svc in services:
        if not svc.session:
            continue
        for start, end in service_windows(calendar, day, svc.exchanges, lead, lag):
            actions.append({"at": start.isoformat(), "action": "start", "service": svc.id})
            actions.append({"at": end.isoformat(), "action": "stop", "service": svc.id})
    actions.sort(key=lambda a: (datetime.fromisoformat(a["at"]), a["action"] != "stop", a["service"]))
    plan = {
        "date": day.isoformat(),
        "sessions": [s.to_json() for s in sessions],
        "covered": calendar.covers(day),
        "actions": actions,
    }
    if not plan["covered"]:
        plan["warnings"] = [gap_message(day.year)]
    return plan
