"""`python -m dhan_trading redis`: the embedded Redis as a service of its own.

Why: with REDIS_URL unset, the process that starts the embedded server owns it and stops it when
it exits. Under the supervisor that must not be the feed or the writer (stopping one would cut
the other off), so the registry runs this small owner first and the services depend on it.
With REDIS_URL set there is nothing to start: it only checks the configured server and waits,
so the dependency order stays the same in both set-ups.
"""
from __future__ import annotations

import argparse
import signal
import threading

import redis

from . import bus, exitcodes
from .config import ConfigError, get_settings, mask_url
from .logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m dhan_trading redis", description=__doc__.split("\n\n")[0]).parse_args(argv)
    log = setup_logging("redis")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = get_settings()
        if settings.redis_url:
            bus.connect(settings).ping()
            log.info("using the configured Redis at %s; nothing to start", mask_url(settings.redis_url))
        else:
            server = bus.EmbeddedRedis.ensure(settings.data_dir)
            log.info("embedded Redis ready at %s (stops when this service stops)", server.url)
    except (ConfigError, redis.RedisError) as exc:
        log.error("Redis is not usable: %s", exc)
        return exitcodes.FATAL if isinstance(exc, ConfigError) else 1
    stop.wait()
    return exitcodes.OK
