"""`python -m dhan_trading demo [--duration S]`: the simulated market through the whole pipeline.

Starts, as child processes running the same commands a user would type (taken from the
service registry), the exchange simulator, the DB writer and the feed; Redis is the embedded
server (owned by this process) unless REDIS_URL is set, the database SQLite unless MySQL is
configured. Shows a live summary, and on Ctrl-C or after S seconds stops everything in order
(feed first so it flushes, then the writer once it has stored every event), prints a summary
and leaves no process behind.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from . import bus, exitcodes
from .config import ConfigError, get_settings, mask_url
from .db_setup import get_engine
from .logs import setup_logging
from .schema import depth, quotes, ticks
from .services.registry import SERVICES

DEMO_SERVICES = ("simulator", "db_writer", "fno_feed")
TABLES = {"dhan:ticks:stream": ticks, "dhan:quotes:stream": quotes, "dhan:depth:stream": depth}


@dataclass
class Child:
    service_id: str
    proc: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL it if it does not go in time."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.service_id} exited with {child.proc.returncode}; see {child.log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{child.service_id} did not open port {port} in {timeout:.0f} s; see {child.log}")


class Demo:
    def __init__(self, duration: float | None, mcx: bool, rate: int, console: Console):
        self.settings = get_settings()
        self.duration, self.mcx, self.rate, self.console = duration, mcx, rate, console
        self.children: list[Child] = []
        self.embedded: bus.EmbeddedRedis | None = None

    def start(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        redis_url = self.settings.redis_url
        if not redis_url:
            self.embedded = bus.EmbeddedRedis.ensure(data_dir)
            redis_url = self.embedded.url
        self.redis = bus.connect(self.settings)
        self.engine = get_engine(settings=self.settings)
        port = _free_port()
        env = {**os.environ, "REDIS_URL": redis_url, "DHAN_DATA_DIR": str(data_dir),
               "DHAN_FEED_URL": f"ws://127.0.0.1:{port}",
               "DHAN_CLIENT_ID": self.settings.client_id or "1000000001",
               "DHAN_ACCESS_TOKEN": "demo-token"}
        registry = {s.id: s for s in SERVICES}
        extra = {"simulator": ["--port", str(port), "--seed", "1", "--rate", str(self.rate)],
                 "fno_feed": ["--force"] + (["--mcx"] if self.mcx else [])}
        for sid in DEMO_SERVICES:
            command = list(registry[sid].command) + extra.get(sid, [])
            log = data_dir / "logs" / f"demo-{sid}.out"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            child = Child(sid, proc, log)
            self.children.append(child)
            if sid == "simulator":
                _wait_for_port(port, child)
        self.console.print(f"[bold]demo[/] Redis {mask_url(redis_url)} · database "
                           f"{self.engine.url.render_as_string(hide_password=True)} · simulator ws://127.0.0.1:{port}")

    def snapshot(self) -> dict:
        """What the live view and the summary show, read from Redis and the database."""
        lengths = {s: self.redis.xlen(s) for s in TABLES}
        with self.engine.connect() as conn:
            rows = {s: conn.execute(select(func.count()).select_from(t)).scalar_one() for s, t in TABLES.items()}
        feed = bus.read_health(self.redis, "fno_mcx_feed" if self.mcx else "fno_feed") or {}
        writer = bus.read_health(self.redis, "db_writer") or {}
        return {"streams": lengths, "rows": rows, "feed": feed, "writer": writer}

    def table(self, snap: dict, elapsed: float) -> Table:
        feed, writer = snap["feed"], snap["writer"]
        table = Table(title=f"Dhan demo · {elapsed:,.0f} s · Ctrl-C to stop")
        for col in ("stream", "in Redis", "rows in DB"):
            table.add_column(col, justify="right" if col != "stream" else "left")
        for s in TABLES:
            table.add_row(s, f"{snap['streams'][s]:,}", f"{snap['rows'][s]:,}")
        table.caption = (f"feed {feed.get('frames_per_s', 0):,.0f} frames/s · "
                         f"{feed.get('instruments', 0)} instruments · writer {writer.get('rows_per_s', 0):,.0f} rows/s · "
                         f"pending {writer.get('pending', 0):,} · "
                         + " ".join(f"{c.service_id}:{'up' if c.proc.poll() is None else c.proc.returncode}"
                                    for c in self.children))
        return table

    def run(self) -> int:
        started = time.monotonic()
        try:
            with Live(console=self.console, refresh_per_second=2, transient=False) as live:
                while self.duration is None or time.monotonic() - started < self.duration:
                    dead = [c for c in self.children if c.proc.poll() is not None]
                    if dead:
                        raise RuntimeError(f"{dead[0].service_id} exited with {dead[0].proc.returncode}; "
                                           f"see {dead[0].log}")
                    live.update(self.table(self.snapshot(), time.monotonic() - started))
                    time.sleep(0.5)
        except KeyboardInterrupt:
            self.console.print("stopping (Ctrl-C)")
        return 0

    def stop(self) -> dict | None:
        """Feed first (it flushes), then the writer once it has caught up, then the rest."""
        by_id = {c.service_id: c for c in self.children}
        if "fno_feed" in by_id:
            by_id["fno_feed"].stop()
        summary = None
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                summary = self.snapshot()
                if all(summary["rows"][s] >= summary["streams"][s] for s in TABLES) or \
                        by_id.get("db_writer") is None or by_id["db_writer"].proc.poll() is not None:
                    break
                time.sleep(0.3)
        except Exception:  # noqa: BLE001 - a summary must never stop the shutdown
            summary = None
        for child in reversed(self.children):
            child.stop()
        if self.embedded and self.embedded.started:  # only the server this demo started
            self.embedded.stop()
        return summary

    def print_summary(self, summary: dict | None) -> None:
        if summary is None:
            self.console.print("[yellow]no summary: Redis or the database was unreachable at the end[/]")
            return
        self.console.print()
        table = Table(title="demo summary")
        for col in ("stream", "events in Redis", "rows stored"):
            table.add_column(col)
        for s in TABLES:
            table.add_row(s, f"{summary['streams'][s]:,}", f"{summary['rows'][s]:,}")
        self.console.print(table)
        self.console.print(f"database: {self.engine.url.render_as_string(hide_password=True)}")


def _interrupt(*_) -> None:
    """SIGTERM stops the demo the same orderly way as Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dhan_trading demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--mcx", action="store_true", help="add MCX commodities to the universe")
    parser.add_argument("--rate", type=int, default=2000, help="simulator packets/s (default 2000)")
    args = parser.parse_args(argv)
    console = Console()
    try:
        setup_logging("demo", console=False)
        demo = Demo(args.duration, args.mcx, args.rate, console)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return exitcodes.FATAL
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        demo.start()
        code = demo.run()
    except (RuntimeError, OSError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        code = 1
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        summary = demo.stop()
    demo.print_summary(summary)
    return code
