"""`python -m dhan_trading demo [--duration S]`: the simulated market through the whole pipeline.

Starts, as child processes running the same commands a user would type (taken from the
service registry), the exchange simulator, the DB writer and the feed; Redis is the embedded
server (owned by this process) unless REDIS_URL is set, the database SQLite unless MySQL is
configured. Shows a live summary, and on Ctrl-C or after S seconds stops everything in order
(feed first so it flushes, then the writer once its group has stored every entry), prints a
summary of this run and leaves no process behind.

Run after run on one data folder the database and (with its append-only file) the embedded
Redis keep earlier runs' events, so the summary compares like with like: this run's stream
entries (the streams' growth since the start) with this run's rows (event_id above every id
that existed at the start). Exit 1 when they differ: an event was lost.
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
import redis
from sqlalchemy import func, select

from . import bus, exitcodes
from .config import ConfigError, finite_number, get_settings, mask_url
from .db_setup import get_engine
from .logs import setup_logging
from .schema import EVENT_TABLES, stream_id_to_event_id
from .services.registry import SERVICES

DEMO_SERVICES = ("simulator", "db_writer", "fno_feed")
TABLES = EVENT_TABLES
CATCH_UP_S = 60.0  # how long the stop waits for the writer to store what the feed published


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
        # per stream, at the start: entries added so far, and the highest event id anywhere
        self.added_before: dict[str, int] = {}
        self.floor: dict[str, int] = {}

    def start(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        redis_url = self.settings.redis_url
        if not redis_url:
            self.embedded = bus.EmbeddedRedis.ensure(data_dir)
            redis_url = self.embedded.url
        self.redis = bus.connect(self.settings)
        self.engine = get_engine(settings=self.settings)
        self._mark_start()
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

    def _mark_start(self) -> None:
        """Before any child runs: what the streams and tables hold from earlier runs."""
        with self.engine.connect() as conn:
            stored = {s: conn.execute(select(func.max(t.c.event_id))).scalar_one() or 0
                      for s, t in TABLES.items()}
        for stream in TABLES:
            info = _stream_info(self.redis, stream)
            self.added_before[stream] = _added(info)
            last = stream_id_to_event_id(info["last-generated-id"]) if info else 0
            self.floor[stream] = max(stored[stream], last)

    def snapshot(self) -> dict:
        """What the live view and the summary show, this run only, from Redis and the database:
        per stream the entries added since the start and the rows stored of them."""
        infos = {s: _stream_info(self.redis, s) for s in TABLES}
        events = {s: _added(infos[s]) - self.added_before[s] for s in TABLES}
        with self.engine.connect() as conn:
            rows = {s: conn.execute(select(func.count()).select_from(t)
                                    .where(t.c.event_id > self.floor[s])).scalar_one()
                    for s, t in TABLES.items()}
        feed = bus.read_health(self.redis, "fno_mcx_feed" if self.mcx else "fno_feed") or {}
        writer = bus.read_health(self.redis, "db_writer") or {}
        return {"streams": events, "rows": rows, "feed": feed, "writer": writer}

    def writer_caught_up(self) -> bool:
        """The writer group has read every entry of every stream and acknowledged it (that is,
        committed it): nothing left for it, whatever earlier runs left behind."""
        for stream in TABLES:
            groups = [g for g in self.redis.xinfo_groups(stream)
                      if bus.text(g["name"]) == bus.WRITER_GROUP]
            info = _stream_info(self.redis, stream)
            if not groups or groups[0]["pending"] or (
                    info and bus.text(groups[0]["last-delivered-id"]) != bus.text(info["last-generated-id"])):
                return False
        return True

    def table(self, snap: dict, elapsed: float) -> Table:
        feed, writer = snap["feed"], snap["writer"]
        table = Table(title=f"Dhan demo · {elapsed:,.0f} s · Ctrl-C to stop")
        for col in ("stream", "events this run", "rows stored"):
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
        """Feed first (it flushes), then the writer once its group has caught up, then the
        rest; the summary is taken after the writer's own final flush."""
        by_id = {c.service_id: c for c in self.children}
        if "fno_feed" in by_id:
            by_id["fno_feed"].stop()
        writer = by_id.get("db_writer")
        try:
            deadline = time.monotonic() + CATCH_UP_S
            while writer is not None and writer.proc.poll() is None and time.monotonic() < deadline:
                if self.writer_caught_up():
                    break
                time.sleep(0.3)
        except (redis.RedisError, OSError) as exc:  # a summary must never stop the shutdown
            self.console.print(f"[yellow]could not watch the writer catch up: {exc}[/]")
        summary = None
        for child in reversed(self.children):
            child.stop()
            if child.service_id == "db_writer":
                summary = self._final_snapshot()
        if self.embedded and self.embedded.started:  # only the server this demo started
            self.embedded.stop()
        return summary

    def _final_snapshot(self) -> dict | None:
        try:
            return self.snapshot()
        except Exception as exc:  # noqa: BLE001 - a summary must never stop the shutdown
            self.console.print(f"[yellow]no summary: {type(exc).__name__}: {exc}[/]")
            return None

    def print_summary(self, summary: dict | None) -> None:
        if summary is None:
            self.console.print("[yellow]no summary: Redis or the database was unreachable at the end[/]")
            return
        self.console.print()
        table = Table(title="demo summary (this run)")
        for col in ("stream", "events", "rows stored"):
            table.add_column(col)
        for s in TABLES:
            table.add_row(s, f"{summary['streams'][s]:,}", f"{summary['rows'][s]:,}")
        self.console.print(table)
        self.console.print(f"database: {self.engine.url.render_as_string(hide_password=True)}")
        missing = missing_events(summary)
        if missing:
            self.console.print(f"[red]{missing:,} events of this run are not in the database[/]")


def missing_events(summary: dict | None) -> int:
    """Events of this run the database lacks (0 when every one was stored)."""
    if summary is None:
        return 0
    return sum(max(0, summary["streams"][s] - summary["rows"][s]) for s in TABLES)


def _stream_info(client: redis.Redis, stream: str) -> dict | None:
    try:
        return client.xinfo_stream(stream)
    except redis.ResponseError:  # no such stream yet
        return None


def _added(info: dict | None) -> int:
    """Entries ever added to a stream: exact on Redis 7 (entries-added); on 6.2 (the embedded
    server) its length, exact as long as the feed has not trimmed it (below 1,000,000 entries)."""
    if info is None:
        return 0
    added = info.get("entries-added")
    return int(added) if added is not None else int(info["length"])


def _interrupt(*_) -> None:
    """SIGTERM and SIGHUP stop the demo the same orderly way as Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dhan_trading demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=finite_number, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--mcx", action="store_true", help="add MCX commodities to the universe")
    parser.add_argument("--rate", type=int, default=2000, help="simulator packets/s (default 2000)")
    parser.add_argument("--gui", action="store_true", help="run it under the supervisor with the control center "
                        "open on it; closing the window (or --duration) stops everything")
    args = parser.parse_args(argv)
    if args.gui:
        from .gui.control_center import run_demo
        return run_demo(args.duration, args.mcx, args.rate)
    console = Console()
    try:
        setup_logging("demo", console=False)
        demo = Demo(args.duration, args.mcx, args.rate, console)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return exitcodes.FATAL
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)  # a closed terminal or tmux session: stop in order too
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
    if code == 0 and missing_events(summary):
        code = 1
    return code
