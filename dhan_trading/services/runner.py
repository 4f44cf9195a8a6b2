"""One small watchdog process per service: `python -m dhan_trading.services.runner SPEC.json`.

Why a process per service (as runit's runsv or s6's supervise do) rather than threads in the
supervisor: the CLI that starts a service exits at once, and the control center may be closed
and reopened, yet crashes must still be noticed and restarted. The runner outlives whoever
started it, owns its service's state file and log, and is the only writer of both:

* the service runs as the leader of its own process group (so stop reaches its children too)
  and gets SIGTERM from the kernel if the runner dies (no orphans);
* it inherits the runner's environment, which the runner inherited from the supervisor: the
  secrets in it (token, passwords in REDIS_URL) pass from process to process, never via a file;
* its stdout and stderr go through a pipe that a thread copies line by line into a
  RotatingFileHandler: one writer per file, so rotation is never raced;
* STOPPED -> STARTING -> RUNNING once up `startsecs`; an early exit -> BACKOFF (capped
  exponential) and after `max_retries` failed starts -> FATAL; a fatal exit code -> FATAL at once;
* SIGTERM to the runner stops the service: SIGTERM to its group, SIGKILL after `stop_timeout`.
"""
from __future__ import annotations

import ctypes
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .state import (BACKOFF, EXITED, FATAL, RUNNING, STARTING, STOPPED, STOPPING, RunSpec,
                    RunState, create_time, kill_group, write_json)

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork: the child only calls it


def _die_with_runner(runner_pid: int):
    """The one thing that must run in the child between fork and exec (this runner has a log
    thread, so the less Python there the better): the parent-death signal is an attribute the
    process sets on itself, no Popen argument can. The process group is Popen's
    `process_group=0`, done in C. If the runner died before prctl took effect, exit now."""
    def setup() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != runner_pid:
            os._exit(1)
    return setup


class Runner:
    """Runs one service until told to stop or given up on; see the module docstring."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.policy = spec.restart_policy
        self.state = RunState(spec.id, runner_pid=os.getpid())
        self.stop_requested = threading.Event()
        self.proc: subprocess.Popen | None = None
        handler = logging.handlers.RotatingFileHandler(
            spec.log_path, maxBytes=spec.log_max_bytes, backupCount=spec.log_backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self.out = logging.Logger(f"runner.{spec.id}")
        self.out.addHandler(handler)
        self.out.propagate = False

    # ---- bookkeeping ---------------------------------------------------------------------
    def note(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.out.warning("%s [supervisor] %s: %s", stamp, self.spec.id, message)

    def set_state(self, state: str, message: str = "", **changes) -> None:
        self.state.state = state
        self.state.since = time.time()
        self.state.message = message
        for key, value in changes.items():
            setattr(self.state, key, value)
        if message:  # the log line first: whoever sees the new state finds its reason logged
            self.note(f"{state}: {message}")
        write_json(Path(self.spec.state_path), self.state.__dict__)

    # ---- one run of the program --------------------------------------------------------------
    def spawn(self) -> subprocess.Popen:
        proc = subprocess.Popen(self.spec.command, cwd=self.spec.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
                                preexec_fn=_die_with_runner(os.getpid()))
        threading.Thread(target=self._pump, args=(proc,), name="log-pump", daemon=True).start()
        return proc

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            self.out.warning("%s", line.decode("utf-8", "replace").rstrip("\n"))
        proc.stdout.close()

    def terminate(self, proc: subprocess.Popen) -> int:
        """SIGTERM the service's process group; SIGKILL it after the stop timeout."""
        kill_group(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(self.policy.stop_timeout)
        except subprocess.TimeoutExpired:
            self.note(f"still running {self.policy.stop_timeout:g}s after SIGTERM: SIGKILL")
            kill_group(proc.pid, signal.SIGKILL)
            code = proc.wait()
        kill_group(proc.pid, signal.SIGKILL)  # whatever of its group is left
        return code

    def wait_run(self, proc: subprocess.Popen) -> tuple[int | None, bool]:
        """Wait for exit or a stop request; returns (exit code or None if stopping, reached RUNNING)."""
        started = time.monotonic()
        running = self.policy.startsecs <= 0
        if running:
            self.set_state(RUNNING, f"pid {proc.pid}", attempt=0)
        while True:
            if self.stop_requested.is_set():
                return None, running
            try:
                return proc.wait(0.05), running
            except subprocess.TimeoutExpired:
                pass
            if not running and time.monotonic() - started >= self.policy.startsecs:
                running = True
                self.set_state(RUNNING, f"pid {proc.pid} up {self.policy.startsecs:g}s", attempt=0)

    # ---- the loop --------------------------------------------------------------------------------
    def run(self) -> int:
        attempt = 0
        runs = 0
        while not self.stop_requested.is_set():
            try:
                proc = self.proc = self.spawn()
            except OSError as exc:
                self.set_state(FATAL, f"cannot start {self.spec.command[0]}: {exc}", pid=None)
                return 1
            self.set_state(STARTING, f"pid {proc.pid}: {' '.join(self.spec.command)}",
                           pid=proc.pid, pid_create_time=create_time(proc.pid), attempt=attempt,
                           restarts=runs)
            runs += 1
            code, was_running = self.wait_run(proc)
            if code is None:
                self.set_state(STOPPING, f"stopping pid {proc.pid}")
                code = self.terminate(proc)
                self.set_state(STOPPED, f"stopped (exit {code})", pid=None, exit_code=code)
                return 0
            kill_group(proc.pid, signal.SIGKILL)
            if code in self.policy.fatal_exit_codes:
                self.set_state(FATAL, f"exit code {code} means no restart can help: not restarting; "
                               "see the log above", pid=None, exit_code=code)
                return 0
            mode = self.policy.restart
            if mode == "never" or (mode == "on-failure" and code == 0):  # a clean exit is meant
                self.set_state(EXITED, f"exited with code {code}", pid=None, exit_code=code)
                return 0
            attempt = 1 if was_running else attempt + 1
            if not was_running and attempt > self.policy.max_retries:
                self.set_state(FATAL, f"exited with code {code} before staying up "
                               f"{self.policy.startsecs:g}s; giving up after {attempt - 1} retries",
                               pid=None, exit_code=code, attempt=attempt - 1)
                return 0
            delay = self.policy.backoff(attempt)
            self.set_state(BACKOFF, f"exited with code {code}; retry {attempt} in {delay:g}s",
                           pid=None, exit_code=code, attempt=attempt)
            if self.stop_requested.wait(delay):
                break
        self.set_state(STOPPED, "stopped", pid=None)
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dhan_trading.services.runner SPEC.json", file=sys.stderr)
        return 2
    spec = RunSpec.load(Path(argv[0]))
    runner = Runner(spec)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: runner.stop_requested.set())
    pid_path = Path(spec.pid_path)
    write_json(pid_path, {"pid": os.getpid(), "create_time": create_time(os.getpid())})
    try:
        return runner.run()
    finally:
        pid_path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
