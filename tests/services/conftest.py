"""A supervisor over small real child programs, with short timings; every process cleaned up."""
from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from dhan_trading.services.registry import RestartPolicy, Service
from dhan_trading.services.supervisor import Supervisor

FAST = RestartPolicy(startsecs=0.4, backoff_initial=0.1, backoff_max=0.4, max_retries=3, stop_timeout=1.0)

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    name, journal = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "serve"
    def note(event):
        with open(journal, "a") as fh:
            fh.write(f"{event} {name} {os.getpid()}\\n")
    note("start")
    print(f"{name} started", flush=True)
    if mode.startswith("exit:"):
        sys.exit(int(mode[5:]))
    if mode.startswith("crash-after:"):
        time.sleep(float(mode[12:]))
        sys.exit(1)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: (note("stop"), sys.exit(0)))
    if mode.startswith("beat:"):  # publish real heartbeats (bus.heartbeat) as a service does
        import redis
        from dhan_trading import bus
        _, state, healthy = mode.split(":")
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        while True:
            ok = healthy == "yes"
            bus.publish_health(client, bus.heartbeat(name, state, ok, None if ok else f"{name} is {state}",
                                                     rows=7))
            time.sleep(0.3)
    if mode == "chatty":
        for i in range(2000):
            print(f"line {i:05d} " + "x" * 60, flush=True)
    while True:
        time.sleep(0.05)
""")


class Lab:
    """Builds test services around CHILD and reads the journal of starts and stops."""

    policy = FAST

    def __init__(self, tmp_path: Path):
        self.script = tmp_path / "child.py"
        self.script.write_text(CHILD)
        self.journal = tmp_path / "journal.txt"

    def service(self, id_: str, mode: str = "serve", policy: RestartPolicy = FAST, **kw) -> Service:
        return Service(id_, id_.title(), (sys.executable, str(self.script), id_, str(self.journal), mode),
                       script=self.script, restart=policy, health=kw.pop("health", "process"), **kw)

    def events(self) -> list[tuple[str, str]]:
        if not self.journal.exists():
            return []
        return [tuple(line.split()[:2]) for line in self.journal.read_text().splitlines()]


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path)


@pytest.fixture
def make_supervisor(settings_env):
    made: list[Supervisor] = []
    settings = settings_env()

    def make(services, **kw) -> Supervisor:
        sup = Supervisor(services, settings, poll=0.02, **kw)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.stop_all()
    # belt and braces: nothing a test started may outlive it
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if env.get("DHAN_DATA_DIR") == str(settings.data_dir.resolve()) and proc.pid != os.getpid():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass
