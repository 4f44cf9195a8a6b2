"""What the supervisor and a service's runner share on disk: the run spec, state and pid files.

Files, under DATA_DIR/run (a 0700 folder; every file 0600):
  <id>.spec.json   what to run and how (written by the supervisor, read by the runner). No
                   environment: the runner inherits it as a process, so no token or password
                   is ever written to disk here
  <id>.state.json  the runner's latest state (written atomically by the runner only)
  <id>.pid         the runner's pid and start time; gone once the runner has exited
  <id>.lock        flock'ed by whoever starts or stops the service, so two callers in two
                   processes (CLI and scheduler) never spawn two runners

Keeping the truth in files, written by the one process that owns each service, is what lets a
new supervisor (CLI call, control center) re-attach to services that are already running.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import psutil

from .registry import RestartPolicy


def pid_path(data_dir: Path, service_id: str) -> Path:
    """Where the runner of `service_id` keeps its pid file (the supervisor and checkers read it)."""
    return Path(data_dir) / "run" / f"{service_id}.pid"


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by its owner only: run files name pids, commands
    and exit reasons nobody else needs."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@contextlib.contextmanager
def service_lock(run_dir: Path, service_id: str) -> Iterator[None]:
    """Hold the service's start/stop lock (flock: released by the kernel if the holder dies)."""
    fd = os.open(private_dir(run_dir) / f"{service_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

STOPPED = "STOPPED"
STARTING = "STARTING"
RUNNING = "RUNNING"
BACKOFF = "BACKOFF"
STOPPING = "STOPPING"
EXITED = "EXITED"     # stopped by itself with an exit its policy does not restart
FATAL = "FATAL"       # given up on: too many failed starts, or a fatal exit code
ACTIVE_STATES = frozenset({STARTING, RUNNING, BACKOFF, STOPPING})


@dataclass
class RunSpec:
    """Everything a runner needs; a plain JSON file so a test registry works like the real one."""

    id: str
    command: list[str]
    cwd: str | None
    policy: dict
    log_path: str
    log_max_bytes: int
    log_backups: int
    state_path: str
    pid_path: str

    @property
    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy.from_json(self.policy)

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "RunSpec":
        return cls(**json.loads(path.read_text(encoding="utf-8")))


@dataclass
class RunState:
    """The runner's view of its service, as last written."""

    id: str
    state: str = STOPPED
    pid: int | None = None            # the service process (leader of its own process group)
    pid_create_time: float | None = None
    runner_pid: int | None = None
    since: float = 0.0                # wall-clock time of the last state change
    attempt: int = 0                  # failed starts in a row
    restarts: int = 0                 # times the runner started the program again
    exit_code: int | None = None
    message: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, service_id: str) -> "RunState":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(service_id)
        except (ValueError, OSError) as exc:
            return cls(service_id, message=f"unreadable state file {path}: {exc}")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def write_json(path: Path, data: dict) -> None:
    """Write-then-rename, so a reader never sees half a file; readable by its owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=1))
    os.replace(tmp, path)


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int | None, created: float | None) -> bool:
    """True if `pid` runs and is the same process (start time matches: pids get reused)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(proc.create_time() - created) < 0.5
    except psutil.Error:
        return False


def kill_group(pgid: int, sig: int) -> None:
    """Signal a whole process group; one already gone (or not ours) needs nothing more."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def read_pid_file(path: Path) -> tuple[int, float | None] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["pid"]), data.get("create_time")
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
