"""`python -m dhan_trading redis start|stop|status|watch`: manage the embedded Redis.

The embedded redis-server (bus.EmbeddedRedis) is a real local server: the first program that
needs it starts it detached, it keeps its data in an append-only file under DHAN_DATA_DIR/redis,
and no client ever stops it. These commands are how a person manages it; `watch` is the
supervisor's `redis` service. With REDIS_URL set, `status` and `watch` look at that server, and
`start`/`stop` refuse: a configured server is not ours to start or stop.

Exit codes: `status` 0 running, 3 not running (the LSB convention); `start` 0 running (started
now or already), 1 it did not come up; `stop` 0 not running any more (or was not), 1 still
running after the timeout; 78 a setting is wrong (REDIS_URL set for start/stop, DHAN_DATA_DIR
too long for a unix socket). `watch` exits 0 when stopped by a signal, 1 when the server dies
or stops answering (so the supervisor restarts it, and with it the server), 78 on a bad setting.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

import redis

from . import bus, exitcodes
from .config import ConfigError, Settings, finite_number, get_settings, mask_url
from .logs import setup_logging

NOT_RUNNING = 3
# `watch`: seconds between heartbeats, and how long a server whose process still runs may stay
# silent (e.g. a configured server behind a network blip) before the watch gives up on it.
WATCH_INTERVAL_S = 1.0
WATCH_GRACE_S = 10.0
SERVICE = "redis"

log = logging.getLogger(__name__)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _configured_status(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"running": False, "url": mask_url(settings.redis_url), "configured": True}
    client = bus.connect(settings, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = client.info()
    except redis.RedisError as exc:
        return {**out, "error": str(exc)}
    finally:
        client.close()
    return {**out, **bus.info_status(info)}


def status(settings: Settings, as_json: bool) -> int:
    st = _configured_status(settings) if settings.redis_url else bus.EmbeddedRedis.at(settings.data_dir).status()
    if as_json:
        _out(json.dumps(st))
        return exitcodes.OK if st["running"] else NOT_RUNNING
    where = st["url"] if settings.redis_url else f"unix://{st['socket']}"
    if not st["running"]:
        why = st.get("error") or ("loading its append-only file" if st.get("state") == bus.LOADING else "")
        pid = f" (pid {st['pid']} runs but does not answer)" if st.get("pid") else ""
        _out(f"Redis is not running at {where}{pid}" + (f": {why}" if why else ""))
        return NOT_RUNNING
    _out(f"Redis is running at {where}\n"
         f"  pid       {st['pid']} (redis {st['version']}, up {st['uptime_s']} s, {st['clients']} other clients)\n"
         f"  memory    {st['used_memory_human']}\n"
         f"  AOF       {'on' if st['aof_enabled'] else 'off'}"
         + (f", last write {st['aof_last_write_status']}" if st["aof_enabled"] else "")
         + (f", {st['aof_size']:,} bytes" if "aof_size" in st else ""))
    if not settings.redis_url:
        _out(f"  data dir  {st['data_dir']}")
    return exitcodes.OK


def _refuse_configured(settings: Settings, action: str) -> int | None:
    if settings.redis_url:
        _out(f"REDIS_URL is set ({mask_url(settings.redis_url)}): that server is not ours to {action}. "
             "Unset REDIS_URL to use the embedded Redis under DHAN_DATA_DIR.")
        return exitcodes.FATAL
    return None


def start(settings: Settings) -> int:
    refused = _refuse_configured(settings, "start")
    if refused is not None:
        return refused
    try:
        server = bus.EmbeddedRedis.ensure(settings.data_dir)
    except bus.RedisStartError as exc:
        _out(str(exc))
        return 1
    _out(f"Redis {'started' if server.started else 'already running'} at {server.url} "
         f"(pid {server.pid()}, data in {server.directory})")
    return exitcodes.OK


def stop(settings: Settings, timeout: float) -> int:
    refused = _refuse_configured(settings, "stop")
    if refused is not None:
        return refused
    server = bus.EmbeddedRedis.at(settings.data_dir)
    if server.state() == bus.DOWN and server.pid() is None:
        _out(f"Redis is not running at {server.url}")
        return exitcodes.OK
    if server.alive():
        client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2)
        try:
            watched = bus.read_health(client, SERVICE) is not None
            others = client.info("clients")["connected_clients"] - 1
        except redis.RedisError:
            watched, others = False, 0
        finally:
            client.close()
        if watched:
            _out("note: the supervisor's redis service is running and will start Redis again; "
                 "`python -m dhan_trading services stop redis` stops both")
        elif others > 0:
            _out(f"note: {others} other client(s) connected; a program that reconnects starts Redis again")
    if not server.stop(timeout):
        _out(f"Redis (pid {server.pid()}) is still running after {timeout:.0f} s; see {server.logfile}")
        return 1
    _out(f"Redis stopped (its data stays in {server.aof})")
    return exitcodes.OK


def _record(info: dict[str, Any]) -> dict[str, Any]:
    """The heartbeat (DESIGN §3.3) of the watched server, from its INFO."""
    figures = {"server_pid": info["process_id"], "used_memory": info["used_memory"],
               "clients": info["connected_clients"], "uptime_s": info["uptime_in_seconds"],
               "aof_enabled": bool(info["aof_enabled"])}
    if info["aof_enabled"] and info.get("aof_last_write_status") != "ok":
        return bus.heartbeat(SERVICE, "aof_failing", False, "Redis cannot write its append-only file "
                             "(disk full?) and refuses writes; see its log", **figures)
    return bus.heartbeat(SERVICE, "running", True, **figures)


def watch(settings: Settings, stopping: threading.Event, interval: float = WATCH_INTERVAL_S,
          grace: float = WATCH_GRACE_S) -> int:
    """Start the embedded server if needed, then publish its heartbeat every `interval` until
    `stopping`. Returns 1 as soon as the server is gone (its process died) or has not answered for
    `grace` seconds: the supervisor then restarts this service, which starts the server again
    from its append-only file. A server this watch started, it stops when stopped itself."""
    server = None
    try:
        if settings.redis_url:
            client = bus.connect(settings, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            log.info("watching the configured Redis at %s", mask_url(settings.redis_url))
        else:
            server = bus.EmbeddedRedis.ensure(settings.data_dir)
            client = bus.connect(settings, start=False, socket_timeout=2, socket_connect_timeout=2)
            log.info("watching the embedded Redis at %s (pid %s, %s)", server.url, server.pid(),
                     "started by this service" if server.started else "already running")
    except bus.RedisStartError as exc:
        log.error("%s", exc)
        return 1
    except ConfigError as exc:
        log.error("%s", exc)
        return exitcodes.FATAL
    except redis.RedisError as exc:
        log.error("Redis at %s does not answer: %s", mask_url(settings.redis_url), exc)
        return 1
    server_pid, silent_since = None, None
    try:
        while True:
            try:
                info = client.info()
                if server_pid is not None and info["process_id"] != server_pid:
                    log.warning("Redis was restarted by another program (pid %s -> %s)",
                                server_pid, info["process_id"])
                    if server is not None:
                        server.started = False  # not ours to stop any more
                server_pid, silent_since = info["process_id"], None
                bus.publish_health(client, _record(info))
            except redis.BusyLoadingError:
                silent_since = None  # alive, reading its append-only file
            except redis.RedisError as exc:
                if server is not None and server.pid() is None and server.state() == bus.DOWN:
                    log.error("the embedded redis-server (pid %s) is gone (%s); exiting so that the "
                              "supervisor restarts it", server_pid, exc)
                    return 1
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > grace:
                    log.error("Redis has not answered for %.0f s (%s); exiting", grace, exc)
                    return 1
            if stopping.wait(interval):
                break
    finally:
        client.close()
    if server is not None and server.started:
        log.info("stopping the embedded Redis this service started")
        server.stop()
    return exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dhan_trading redis",
                                     description=__doc__.split("\n\n")[1].replace("\n", " "),
                                     epilog=__doc__.split("\n\n")[2].replace("\n", " "))
    sub = parser.add_subparsers(dest="action", required=True, metavar="start|stop|status|watch")
    sub.add_parser("start", help="start the embedded Redis unless it runs")
    p_stop = sub.add_parser("stop", help="SHUTDOWN the embedded Redis (its AOF keeps every entry)")
    p_stop.add_argument("--timeout", type=finite_number, default=30.0, help="seconds to wait (default 30)")
    p_status = sub.add_parser("status", help="running or not, pid, socket, memory, AOF, data dir")
    p_status.add_argument("--json", action="store_true", help="one JSON object")
    sub.add_parser("watch", help="the supervisor's redis service: start if needed, then watch it")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        _out(str(exc))
        return exitcodes.FATAL
    try:
        if args.action == "status":
            return status(settings, args.json)
        if args.action == "start":
            return start(settings)
        if args.action == "stop":
            return stop(settings, args.timeout)
    except ConfigError as exc:
        _out(str(exc))
        return exitcodes.FATAL
    setup_logging(SERVICE, settings)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    return watch(settings, stopping)
