"""`python -m dhan_trading.subscribers.fno_db_writer`: the batching DB writer (see db_writer.py).

SIGTERM or Ctrl-C: the writer flushes, commits, acknowledges and exits 0. Anything it could not
store stays pending in Redis for the next writer. Several writers may run at once (each with
its own --consumer name); they share the work of one consumer group.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

import redis

from .. import bus, exitcodes
from ..config import ConfigError, finite_number, get_settings
from ..logs import setup_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dhan_trading.subscribers.fno_db_writer",
                                     description="Store every event of the Redis streams in the database.")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}",
                        help="this writer's name in the consumer group (default hostname-pid)")
    parser.add_argument("--batch", type=int, default=5000,
                        help="rows of each stream (table) per commit at most (default 5000)")
    parser.add_argument("--flush-ms", type=int, default=200,
                        help="commit at least this often while events arrive (default 200)")
    parser.add_argument("--max-buffer", type=int, default=100_000,
                        help="rows held while the database is down before reading stops (default 100000)")
    parser.add_argument("--claim-idle-ms", type=int, default=15_000,
                        help="take over entries another consumer left pending this long (default 15000)")
    parser.add_argument("--lag-limit", type=int, default=50_000,
                        help="unhealthy when the group lag (backlog + pending) stays above this many "
                             "entries and keeps rising for --lag-rising-s (default 50000)")
    parser.add_argument("--lag-limit-s", type=finite_number, default=60.0,
                        help="the same in seconds: the newest entry minus the last one the group "
                             "read (default 60; the only measure on Redis 6.2)")
    parser.add_argument("--lag-rising-s", type=finite_number, default=30.0,
                        help="see --lag-limit (default 30)")
    parser.add_argument("--trim-maxlen", type=int, default=0,
                        help="also trim the streams to about this many entries, never below what the "
                             "group has not acknowledged (default 0: the feed trims)")
    args = parser.parse_args(argv)
    for name in ("batch", "flush_ms", "max_buffer", "claim_idle_ms", "lag_limit", "lag_limit_s",
                 "lag_rising_s"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.max_buffer < args.batch:
        parser.error("--max-buffer must be at least --batch")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = get_settings()
        log = setup_logging("db_writer", settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    except OSError as exc:  # the log folder under DHAN_DATA_DIR cannot be written
        print(f"configuration error: cannot write the logs under DHAN_DATA_DIR ({exc}): set "
              "DHAN_DATA_DIR to a folder you can write", file=sys.stderr)
        return exitcodes.FATAL

    from .db_writer import DbWriter, HealthReporter, WriterConfig
    from .store import EventStore

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    config = WriterConfig(consumer=args.consumer, batch_rows=args.batch, flush_ms=args.flush_ms,
                          max_buffer_rows=args.max_buffer, claim_idle_ms=args.claim_idle_ms,
                          trim_maxlen=args.trim_maxlen, lag_limit=args.lag_limit,
                          lag_limit_s=args.lag_limit_s, lag_rising_s=args.lag_rising_s)
    connect = lambda: bus.connect(settings, socket_timeout=30)  # noqa: E731
    try:
        engine = _engine_when_reachable(settings, stop, log, connect, config.consumer)
        if engine is None:
            return exitcodes.OK
        writer = DbWriter(connect, EventStore(engine), config)
    except ConfigError as exc:
        log.error("%s", exc)
        return exitcodes.FATAL
    log.info("db writer %s started (batch %d rows / %d ms)", config.consumer, config.batch_rows,
             config.flush_ms)
    reporter = HealthReporter(writer, stop)
    reporter.start()
    code = exitcodes.OK
    try:
        writer.run(stop)
    except ConfigError as exc:
        log.error("%s", exc)
        code = exitcodes.FATAL
    except Exception:  # noqa: BLE001 - a bug: say where, and exit non-zero (not an outage)
        log.exception("the writer stopped on an unexpected error (a bug, not a database outage); "
                      "what it had not stored stays pending in Redis for the next writer")
        code = 1
    finally:
        stop.set()
        reporter.join(timeout=2)
        engine.dispose()
    log.info("db writer %s stopped: %d rows in %d batches, %d dead-lettered", config.consumer,
             writer.stats.rows_total, writer.stats.batches, writer.stats.poison_total)
    return code


def _engine_when_reachable(settings, stop: threading.Event, log, connect, consumer: str):
    """get_engine (which creates missing tables), retried until the database answers, with a
    db_down heartbeat meanwhile. A setting to fix (access denied, unknown database, unwritable
    SQLite file) raises ConfigError naming it instead."""
    from ..db_setup import get_engine, misconfiguration
    from .db_writer import HEALTH_SERVICE
    delay, retry_at, client = 0.5, 0.0, None
    while not stop.is_set():
        if time.monotonic() >= retry_at:
            try:
                return get_engine(settings=settings)
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - an unreachable server fails in many ways
                problem = misconfiguration(exc)
                if problem:
                    raise ConfigError(problem) from exc
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("database not reachable (%s); retrying in %.1f s", error, delay)
                retry_at, delay = time.monotonic() + delay, min(delay * 2, 10.0)
        try:
            client = client or connect()
            bus.publish_health(client, bus.heartbeat(
                HEALTH_SERVICE, "db_down", False,
                f"the database cannot be reached ({error}); waiting for it", consumer=consumer))
        except redis.RedisError:
            pass  # Redis down too: nothing to tell anyone through it
        stop.wait(min(1.0, max(0.0, retry_at - time.monotonic())))
    return None


if __name__ == "__main__":
    sys.exit(main())
