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

from .. import bus, exitcodes
from ..config import ConfigError, get_settings
from ..logs import setup_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dhan_trading.subscribers.fno_db_writer",
                                     description="Store every event of the Redis streams in the database.")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}",
                        help="this writer's name in the consumer group (default hostname-pid)")
    parser.add_argument("--batch", type=int, default=5000, help="rows per commit at most (default 5000)")
    parser.add_argument("--flush-ms", type=int, default=200,
                        help="commit at least this often while events arrive (default 200)")
    parser.add_argument("--max-buffer", type=int, default=50_000,
                        help="rows held while the database is down before reading stops (default 50000)")
    parser.add_argument("--claim-idle-ms", type=int, default=15_000,
                        help="take over entries another consumer left pending this long (default 15000)")
    parser.add_argument("--trim-maxlen", type=int, default=0,
                        help="also trim the streams to about this many entries, never below what the "
                             "group has not acknowledged (default 0: the feed trims)")
    args = parser.parse_args(argv)
    for name in ("batch", "flush_ms", "max_buffer", "claim_idle_ms"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.max_buffer < args.batch:
        parser.error("--max-buffer must be at least --batch")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    log = setup_logging("db_writer", settings)

    from .db_writer import DbWriter, HealthReporter, WriterConfig
    from .store import EventStore

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        engine = _engine_when_reachable(settings, stop, log)
        if engine is None:
            return exitcodes.OK
        config = WriterConfig(consumer=args.consumer, batch_rows=args.batch, flush_ms=args.flush_ms,
                              max_buffer_rows=args.max_buffer, claim_idle_ms=args.claim_idle_ms,
                              trim_maxlen=args.trim_maxlen)
        writer = DbWriter(lambda: bus.connect(settings, socket_timeout=30), EventStore(engine), config)
    except ConfigError as exc:
        log.error("%s", exc)
        return exitcodes.FATAL
    log.info("db writer %s started (batch %d rows / %d ms)", config.consumer, config.batch_rows,
             config.flush_ms)
    reporter = HealthReporter(writer, stop)
    reporter.start()
    writer.run(stop)
    reporter.join(timeout=2)
    engine.dispose()
    log.info("db writer %s stopped: %d rows in %d batches, %d dead-lettered", config.consumer,
             writer.stats.rows_total, writer.stats.batches, writer.stats.poison_total)
    return exitcodes.OK


def _engine_when_reachable(settings, stop: threading.Event, log):
    """get_engine (which creates missing tables), retried until the database answers."""
    from ..db_setup import get_engine
    delay = 0.5
    while not stop.is_set():
        try:
            return get_engine(settings=settings)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreachable server fails in many ways
            log.warning("database not reachable (%s: %s); retrying in %.1f s", type(exc).__name__,
                        str(exc)[:200], delay)
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
    return None


if __name__ == "__main__":
    sys.exit(main())
