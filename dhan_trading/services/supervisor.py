"""The supervisor library: start, stop, order and check the services of a registry.

Each started service gets its own runner process (`services/runner.py`) that restarts it with
backoff and writes its state under DATA_DIR/run. This class only spawns, signals and reads
those runners, so any number of supervisors (CLI calls, the control center, the scheduler) can
come and go and always see the same services: a new one re-attaches instead of duplicating.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .. import bus
from ..config import PROJECT_ROOT, SUPERVISED_ENV, Settings, get_settings
from .registry import SERVICES, Service, check_registry
from .state import (ACTIVE_STATES, BACKOFF, EXITED, FATAL, RUNNING, STOPPED, RunSpec, RunState,
                    kill_group, pid_path, private_dir, process_alive, read_pid_file, service_lock)

# A RUNNING heartbeat service gets this long after its process started to publish a first
# heartbeat (the feed loads the scrip master first) before its silence counts as unhealthy.
HEARTBEAT_GRACE_S = 30.0

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service cannot be started or stopped as asked; the message says why."""


@dataclass(frozen=True)
class ServiceStatus:
    """A service as a supervisor sees it now: process state plus its Redis heartbeat."""

    id: str
    title: str
    state: str
    available: bool
    pid: int | None = None            # the service's own process (never the runner's)
    runner_pid: int | None = None
    since: float = 0.0                # wall-clock time of the last state change
    exit_code: int | None = None      # of the last run that ended
    attempt: int = 0
    message: str = ""
    health: dict[str, Any] | None = None   # the heartbeat record as published (bus.heartbeat)
    healthy: bool | None = None   # None: not known or not applicable (stopped, no Redis)
    problem: str | None = None    # why not healthy, in a sentence
    restarts: int = 0
    started_at: float | None = None   # when the running process started (epoch seconds)
    depends_on: tuple[str, ...] = ()
    unavailable_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """The object `services status --json` prints (DESIGN §3.1) for the control center."""
        now = time.time() if now is None else now
        record = self.health or {}
        ts = record.get("ts") if isinstance(record.get("ts"), (int, float)) else None
        return {
            "id": self.id, "title": self.title, "state": self.state, "pid": self.pid,
            "restarts": self.restarts, "healthy": self.healthy, "problem": self.problem,
            "message": self.message, "since": self.since or None,
            "started_at": self.started_at,
            "uptime_s": round(now - self.started_at, 1) if self.started_at else None,
            "exit_code": self.exit_code, "failed_starts": self.attempt,
            "available": self.available, "unavailable_reason": self.unavailable_reason,
            "depends_on": list(self.depends_on), "runner_pid": self.runner_pid,
            "health_state": record.get("state"),
            "health_age_s": round(now - ts, 1) if ts is not None else None,
            "health": self.health,
        }


class Supervisor:
    """Starts and stops services of `services` (default: the suite's registry)."""

    def __init__(self, services: Sequence[Service] | None = None, settings: Settings | None = None, *,
                 health_client: Any = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll: float = 0.05,
                 log_max_bytes: int = 10_000_000, log_backups: int = 5,
                 extra_env: dict[str, str] | None = None, heartbeat_grace: float = HEARTBEAT_GRACE_S):
        services = tuple(SERVICES if services is None else services)
        check_registry(services)
        self.services = {s.id: s for s in services}
        self.order = [s.id for s in services]
        self.settings = settings or get_settings()
        data_dir = Path(self.settings.data_dir).resolve()
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.health_client = health_client
        self.clock, self.sleep, self.poll = clock, sleep, poll
        self.log_max_bytes, self.log_backups = log_max_bytes, log_backups
        self.extra_env = dict(extra_env or {})
        self.heartbeat_grace = heartbeat_grace
        self._runners: dict[str, subprocess.Popen] = {}

    # ---- paths -------------------------------------------------------------------------------
    def log_path(self, service_id: str) -> Path:
        return self.log_dir / f"{self.service(service_id).id}.log"

    def _state_path(self, service_id: str) -> Path:
        return self.run_dir / f"{service_id}.state.json"

    def _pid_path(self, service_id: str) -> Path:
        return pid_path(self.run_dir.parent, service_id)

    def service(self, service_id: str) -> Service:
        try:
            return self.services[service_id]
        except KeyError:
            raise ServiceError(f"no service {service_id!r}; known: {', '.join(self.order)}") from None

    # ---- reading state -----------------------------------------------------------------------
    def _runner_alive(self, service_id: str) -> tuple[bool, int | None]:
        own = self._runners.get(service_id)
        if own is not None and own.poll() is not None:  # reap our own exited runner
            self._runners.pop(service_id, None)
        pid = read_pid_file(self._pid_path(service_id))
        if pid is None:
            return False, None
        return process_alive(*pid), pid[0]

    def status(self, service_id: str) -> ServiceStatus:
        svc = self.service(service_id)
        st = RunState.load(self._state_path(service_id), service_id)
        alive, runner_pid = self._runner_alive(service_id)
        state, message = st.state, st.message
        if not alive and state in ACTIVE_STATES:
            state, message = STOPPED, f"its runner is gone (was {st.state}); start it again"
        running = alive and process_alive(st.pid, st.pid_create_time)
        started_at = st.pid_create_time if running else None
        health, healthy, problem = None, None, None
        if state == RUNNING:
            health, healthy, problem = self._health(svc, st.pid if running else None, started_at)
        elif state in (FATAL, BACKOFF):
            healthy, problem = False, message  # it cannot do its job, and the runner says why
        return ServiceStatus(svc.id, svc.title, state, svc.available, st.pid if running else None,
                             runner_pid if alive else None, st.since, st.exit_code, st.attempt,
                             message, health, healthy, problem, st.restarts, started_at, svc.depends_on,
                             None if svc.available else f"its program {svc.program} is not in this checkout")

    def statuses(self) -> list[ServiceStatus]:
        return [self.status(i) for i in self.order]

    def _health(self, svc: Service, pid: int | None,
                started_at: float | None) -> tuple[dict | None, bool | None, str | None]:
        """(record, healthy, problem) of a RUNNING service, judged by bus.assess_health."""
        if svc.health == "process":
            return (None, True, None) if pid else (None, False, "its process is gone")
        if self.health_client is None:
            return None, None, "health unknown: Redis is not reachable from here"
        try:
            record = bus.read_health(self.health_client, svc.id)
        except Exception as exc:  # noqa: BLE001 - any Redis failure just means "health unknown"
            return None, None, f"health unknown: {type(exc).__name__}: {exc}"
        healthy, problem = bus.assess_health(record)
        up = time.time() - started_at if started_at else 0.0
        if record is None:
            if up < self.heartbeat_grace:
                return None, None, f"no heartbeat yet (started {up:.0f} s ago)"
            return None, False, f"no heartbeat for {up:.0f} s since it started"
        if healthy and pid is not None and record.get("pid") not in (None, pid):
            # a record left by the run before this one, or another instance under the same id
            if up < self.heartbeat_grace:
                return record, None, f"no heartbeat yet from pid {pid} (the record is pid {record.get('pid')}'s)"
            return record, False, (f"the heartbeat comes from pid {record.get('pid')}, not from this service's "
                                   f"pid {pid}: another instance publishes under {svc.id}")
        return record, healthy, problem

    # ---- ordering ------------------------------------------------------------------------------
    def dependency_order(self, ids: Iterable[str]) -> list[str]:
        """`ids` and everything they depend on, dependencies first (registry order otherwise)."""
        out: list[str] = []

        def visit(i: str) -> None:
            if i in out:
                return
            for dep in self.service(i).depends_on:
                visit(dep)
            out.append(i)

        wanted = set(ids)
        for i in self.order:
            if i in wanted:
                visit(i)
        for i in wanted - set(self.order):
            self.service(i)  # raises for an unknown id
        return out

    def dependents(self, service_id: str) -> list[str]:
        """Services that need `service_id`, directly or not, in the order they must stop."""
        needs = {i for i in self.order if service_id in self.dependency_order([i]) and i != service_id}
        return [i for i in reversed(self.dependency_order(needs)) if i in needs]

    # ---- starting ----------------------------------------------------------------------------------
    def start(self, service_id: str, *, wait: bool = True, timeout: float | None = None) -> ServiceStatus:
        """Start a service after its dependencies (each of which must reach RUNNING first)."""
        chain = self.dependency_order([service_id])
        for dep in chain[:-1]:
            st = self._start_one(dep, wait=True, timeout=self._patience(dep))
            if st.state != RUNNING:
                raise ServiceError(f"{service_id} not started: its dependency {dep} is {st.state}"
                                   f" ({st.message})")
        return self._start_one(service_id, wait=wait, timeout=timeout)

    def _patience(self, service_id: str) -> float:
        """How long a dependency may take to reach RUNNING through all its retries."""
        p = self.service(service_id).restart
        return p.startsecs * (p.max_retries + 1) + sum(p.backoff(i) for i in range(1, p.max_retries + 1)) + 5

    def _start_one(self, service_id: str, *, wait: bool, timeout: float | None) -> ServiceStatus:
        svc = self.service(service_id)
        if not svc.available:
            raise ServiceError(f"{svc.id} ({svc.title}) is not available: its program {svc.program} "
                               "does not exist in this checkout yet")
        with service_lock(self.run_dir, service_id):  # a second caller waits, then sees this runner
            if not self.status(service_id).active:
                self._clear_leftovers(service_id)
                runner_pid = self._spawn_runner(svc)
                self._wait(lambda: RunState.load(self._state_path(svc.id), svc.id).runner_pid == runner_pid
                           or self._runners[svc.id].poll() is not None, 10.0)
                log.info("started %s (runner pid %d)", svc.id, runner_pid)
        if wait:
            limit = svc.restart.startsecs + 5 if timeout is None else timeout
            self._wait(lambda: self.status(service_id).state in (RUNNING, FATAL, EXITED, STOPPED), limit)
        return self.status(service_id)

    def _child_env(self) -> dict[str, str]:
        """The runner's (and so the service's) environment: passed to the process, never
        written to a file, because it holds the token and any password in REDIS_URL."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env.update(PYTHONUNBUFFERED="1", DHAN_DATA_DIR=str(Path(self.settings.data_dir).resolve()))
        env[SUPERVISED_ENV] = "1"
        if self.settings.redis_url:
            env["REDIS_URL"] = self.settings.redis_url
        env.update(self.extra_env)
        return env

    def _spawn_runner(self, svc: Service) -> int:
        private_dir(self.run_dir)
        private_dir(self.log_dir)
        spec = RunSpec(svc.id, list(svc.command), os.getcwd(), svc.restart.to_json(),
                       str(self.log_path(svc.id)), self.log_max_bytes, self.log_backups,
                       str(self._state_path(svc.id)), str(self._pid_path(svc.id)))
        spec_path = self.run_dir / f"{svc.id}.spec.json"
        spec.save(spec_path)
        err_fd = os.open(self.run_dir / f"{svc.id}.runner.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(err_fd, "ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", "dhan_trading.services.runner", str(spec_path)],
                                    env=self._child_env(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    start_new_session=True)  # outlives us; the terminal's Ctrl-C misses it
        self._runners[svc.id] = proc
        return proc.pid

    def _clear_leftovers(self, service_id: str) -> None:
        """A runner that died without cleaning up may have left its service's group behind."""
        st = RunState.load(self._state_path(service_id), service_id)
        if st.pid and process_alive(st.pid, st.pid_create_time):
            log.warning("%s: killing process group %d left by a dead runner", service_id, st.pid)
            kill_group(st.pid, signal.SIGKILL)

    # ---- stopping ------------------------------------------------------------------------------------
    def stop(self, service_id: str) -> ServiceStatus:
        """Stop the services that depend on this one, then this one."""
        for dep in self.dependents(service_id):
            if self.status(dep).active:
                self._stop_one(dep)
        return self._stop_one(service_id)

    def _stop_one(self, service_id: str) -> ServiceStatus:
        svc = self.service(service_id)
        with service_lock(self.run_dir, service_id):
            alive, runner_pid = self._runner_alive(service_id)
            if alive and runner_pid and _signal(runner_pid, signal.SIGTERM):
                gone = self._wait(lambda: not self._runner_alive(service_id)[0], svc.restart.stop_timeout + 5)
                if not gone:
                    log.warning("%s: runner %d did not stop; killing it and its service", service_id, runner_pid)
                    _signal(runner_pid, signal.SIGKILL)
                    self._wait(lambda: not self._runner_alive(service_id)[0], 5)
            self._clear_leftovers(service_id)
        return self.status(service_id)

    def restart(self, service_id: str) -> ServiceStatus:
        """Stop the service (its dependents first), start it, then start again the dependents
        that were running: restarting the feed's Redis must not leave the feed stopped."""
        running = [i for i in self.dependents(service_id) if self.status(i).active]
        self.stop(service_id)
        st = self.start(service_id)
        for dep in self.dependency_order(running):
            if dep in running:
                again = self.start(dep)
                if again.state != RUNNING:
                    log.error("restart %s: its dependent %s came back %s (%s)", service_id, dep,
                              again.state, again.message)
        return st

    def start_all(self, ids: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Start `ids` (default: every available autostart service), dependencies first."""
        if ids is None:
            ids = [i for i in self.order if self.services[i].autostart and self.services[i].available]
        chain = self.dependency_order(ids)
        needed = {d for i in chain for d in self.services[i].depends_on}
        out: list[ServiceStatus] = []
        failed: set[str] = set()
        for i in chain:
            broken = failed.intersection(self.services[i].depends_on)
            try:
                if broken:
                    raise ServiceError(f"{i} not started: its dependency {', '.join(sorted(broken))} did not start")
                st = self._start_one(i, wait=True, timeout=self._patience(i) if i in needed else None)
            except ServiceError as exc:
                log.error("%s", exc)
                st = self.status(i)
            if st.state != RUNNING:
                failed.add(i)
            out.append(st)
        return out

    def stop_all(self) -> list[ServiceStatus]:
        """Stop every active service, dependents before what they depend on."""
        active = [i for i in self.order if self.status(i).active]
        return [self._stop_one(i) for i in reversed(self.dependency_order(active))]

    # ---- waiting ---------------------------------------------------------------------------------------
    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = self.clock() + timeout
        while not done():
            if self.clock() >= deadline:
                return False
            self.sleep(self.poll)
        return True

    def wait_for(self, service_id: str, states: Iterable[str], timeout: float) -> ServiceStatus:
        """Wait until the service is in one of `states` (or the timeout); returns its status."""
        wanted = set(states)
        self._wait(lambda: self.status(service_id).state in wanted, timeout)
        return self.status(service_id)


def _signal(pid: int, sig: int) -> bool:
    """Send `sig` to a runner; False if it exited since we looked (nothing left to stop)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
