"""The one table of the suite's services: the supervisor, scheduler, CLI and control center read it.

Adding a service is one row. A row whose program does not exist yet is still listed, with
`available` False (computed from the module or script, never hard-coded), so the control center
can show it greyed out instead of pretending to run it.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import bus, exitcodes
from ..config import PROJECT_ROOT


KINDS = ("headless", "window", "terminal")
SESSIONS = ("NSE", "MCX", "NSE+MCX")
HEALTH_CHECKS = ("heartbeat", "process")
RESTART_MODES = ("always", "on-failure", "never")


@dataclass(frozen=True)
class RestartPolicy:
    """When and how fast a service is restarted (supervisord's model plus exit-code rules).

    A start counts only once the process has stayed up `startsecs`; `max_retries` failed starts
    in a row make the service FATAL. An exit code in `fatal_exit_codes` (the feed's bad
    credentials or plan) is never restarted: no retry can fix it.
    """

    restart: str = "on-failure"
    startsecs: float = 3.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    max_retries: int = 5
    stop_timeout: float = 10.0
    fatal_exit_codes: frozenset[int] = exitcodes.NO_RESTART

    def __post_init__(self) -> None:
        if self.restart not in RESTART_MODES:
            raise ValueError(f"restart must be one of {RESTART_MODES}, not {self.restart!r}")

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): doubling from the initial, capped."""
        return min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempt - 1))

    def to_json(self) -> dict:
        return {"restart": self.restart, "startsecs": self.startsecs,
                "backoff_initial": self.backoff_initial, "backoff_max": self.backoff_max,
                "max_retries": self.max_retries, "stop_timeout": self.stop_timeout,
                "fatal_exit_codes": sorted(self.fatal_exit_codes)}

    @classmethod
    def from_json(cls, data: dict) -> "RestartPolicy":
        return cls(**{**data, "fatal_exit_codes": frozenset(data.get("fatal_exit_codes", ()))})


@dataclass(frozen=True)
class Service:
    """One program of the suite and how to run, order, check and schedule it."""

    id: str
    title: str
    command: tuple[str, ...]
    kind: str = "headless"
    module: str | None = None          # availability: this module exists ...
    script: Path | None = None         # ... or this script file does
    depends_on: tuple[str, ...] = ()
    health: str = "heartbeat"          # heartbeat: bus.publish_health under `health_key`; process: alive is enough
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    session: str | None = None         # the exchange session it follows (market scheduler)
    autostart: bool = False            # part of `services start-all`
    scheduled: bool = False            # started/stopped by the market scheduler by default
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.id}: kind must be one of {KINDS}")
        if self.session is not None and self.session not in SESSIONS:
            raise ValueError(f"{self.id}: session must be one of {SESSIONS} or None")
        if self.health not in HEALTH_CHECKS:
            raise ValueError(f"{self.id}: health must be one of {HEALTH_CHECKS}")

    @property
    def health_key(self) -> str:
        return bus.health_key(self.id)

    @property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(self.session.split("+")) if self.session else ()

    @property
    def available(self) -> bool:
        """Whether the program exists in this checkout (asked each time, so new modules count)."""
        if self.script is not None:
            return self.script.is_file()
        if self.module is not None:
            try:
                return importlib.util.find_spec(self.module) is not None
            except (ImportError, ValueError):
                return False
        return False

    @property
    def program(self) -> str:
        return str(self.script) if self.script is not None else (self.module or "?")


def _module(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", *args)


def _script(name: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, str(PROJECT_ROOT / name), *args)


_FEED_POLICY = RestartPolicy(startsecs=5.0, backoff_initial=2.0, backoff_max=60.0, max_retries=8,
                             stop_timeout=15.0)
_WRITER_POLICY = RestartPolicy(startsecs=3.0, backoff_initial=1.0, backoff_max=30.0, max_retries=10,
                               stop_timeout=30.0)  # it drains its batch before exiting
_WINDOW_POLICY = RestartPolicy(restart="never", startsecs=2.0, max_retries=1)
_TERMINAL_POLICY = RestartPolicy(restart="never", startsecs=0.0, max_retries=1)


def _visualizer(id_: str, title: str, kind: str = "window") -> Service:
    module = f"dhan_trading.visualizers.{id_}"
    return Service(id_, title, _module(module), kind, module=module, health="process",
                   restart=_WINDOW_POLICY if kind == "window" else _TERMINAL_POLICY,
                   description=f"python -m {module}")


SERVICES: tuple[Service, ...] = (
    Service("redis", "Redis", _module("dhan_trading", "redis", "watch"), module="dhan_trading.redis_service",
            autostart=True, session="NSE+MCX", scheduled=True,
            restart=RestartPolicy(startsecs=1.0, backoff_initial=1.0, backoff_max=10.0, stop_timeout=35.0),
            description="starts the embedded redis-server if needed and watches it (or REDIS_URL's); "
                        "exits when it dies, so it is restarted; the services depend on it"),
    Service("fno_feed", "FNO Feed Launcher", _script("launch_fno_feed.py"),
            script=PROJECT_ROOT / "launch_fno_feed.py", depends_on=("redis",), restart=_FEED_POLICY, session="NSE",
            autostart=True, scheduled=True,
            description="Dhan market feed for the F&O universe -> Redis pub/sub + streams"),
    Service("fno_mcx_feed", "FNO+MCX Feed", _script("launch_fno_feed.py", "--mcx"),
            script=PROJECT_ROOT / "launch_fno_feed.py", depends_on=("redis",), restart=_FEED_POLICY, session="NSE+MCX",
            description="the feed with MCX commodities added; run it instead of fno_feed, not beside it"),
    Service("services_monitor", "FNO Services Monitor", _module("dhan_trading.services.monitor"), "window",
            module="dhan_trading.services.monitor", restart=_WINDOW_POLICY,
            description="a window: feed, Redis, writer and database figures with sparklines"),
    Service("db_writer", "FNO Database Writer", _module("dhan_trading.subscribers.fno_db_writer"),
            module="dhan_trading.subscribers.fno_db_writer", depends_on=("redis",), restart=_WRITER_POLICY,
            session="NSE+MCX", autostart=True, scheduled=True,
            description="Redis streams (consumer group) -> MySQL/SQLite, batched, no duplicates"),
    Service("market_scheduler", "Market Scheduler", _module("dhan_trading.scheduler.market_scheduler"),
            module="dhan_trading.scheduler.market_scheduler",
            description="starts and stops the scheduled services at NSE/MCX session times"),
    Service("instrument_display", "Instrument Display", _script("display_fno_instruments.py"),
            "terminal", script=PROJECT_ROOT / "display_fno_instruments.py", health="process",
            restart=_TERMINAL_POLICY, description="prints the universe the feed would subscribe"),
    _visualizer("volume_profile", "Volume Profile"),
    _visualizer("market_breadth", "Market Breadth"),
    _visualizer("tick_chart", "Tick Chart"),
    _visualizer("volume_profile_chart", "Volume Profile Chart"),
    _visualizer("quote_visualizer", "Quote Visualizer", "terminal"),
    Service("simulator", "Exchange Simulator", _module("dhan_trading", "simulator"),
            module="dhan_trading.simulator.server", health="process",
            description="local Dhan-protocol exchange; point DHAN_FEED_URL at it"),
)


def check_registry(services: tuple[Service, ...] | list[Service]) -> None:
    """Ids unique, dependencies known and acyclic: a broken table fails loudly at load."""
    ids = [s.id for s in services]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"duplicate service ids: {sorted(dupes)}")
    known = set(ids)
    by_id = {s.id: s for s in services}
    for s in services:
        unknown = set(s.depends_on) - known
        if unknown:
            raise ValueError(f"{s.id} depends on unknown services {sorted(unknown)}")
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(i: str, path: tuple[str, ...]) -> None:
        if i in done:
            return
        if i in visiting:
            raise ValueError(f"dependency cycle: {' -> '.join(path + (i,))}")
        visiting.add(i)
        for d in by_id[i].depends_on:
            visit(d, path + (i,))
        visiting.discard(i)
        done.add(i)

    for s in services:
        visit(s.id, ())


check_registry(SERVICES)
