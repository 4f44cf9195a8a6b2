"""`python launch_fno_feed.py [--force] [--mcx]` (also `python -m dhan_trading feed`).

Against Dhan, it runs inside its service's run window, the very windows the market scheduler
starts and stops it by (scheduler/plan.py): started outside one (by hand, `services start-all`,
or a scheduler with a longer lead) it says when its session comes, publishes a healthy
`waiting_for_session` heartbeat and waits, instead of exiting and leaving the day unrecorded;
--force skips the wait. Against any other DHAN_FEED_URL (simulator, replay) it runs at any hour.
Then it loads the scrip master, selects the universe, plans the sockets and runs the feed until
Ctrl-C / SIGTERM / --duration. Exit codes: 0 after a clean stop, exitcodes.FATAL when no restart
can help (bad credentials or plan, bad config).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from datetime import datetime
from typing import Callable

from .. import bus, exitcodes
from ..config import ConfigError, Settings, finite_number, get_settings, mask_url
from ..logs import setup_logging
from ..scheduler.calendar import IST, MarketCalendar
from ..scheduler.plan import DEFAULT_LEAD, next_window, window_at
from ..services.registry import SERVICES
from ..protocol.requests import depth_url as make_depth_url
from ..protocol.requests import feed_url as make_feed_url
from .feed import Feed, FeedOptions
from .plan import PlanError, choose_mode, plan_connections, plan_depth

log = logging.getLogger("fno_feed")

# NIFTY (13) and BANKNIFTY (25) spots: their last prices centre the option strikes.
INDEX_FIELDS = tuple(bus.latest_field("ticker", "IDX_I", sid) for sid in (13, 25))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="launch_fno_feed.py",
                                description="Dhan market feed for the F&O universe -> Redis pub/sub + streams.")
    p.add_argument("--force", action="store_true", help="run even outside market hours")
    p.add_argument("--mcx", action="store_true", help="add MCX commodities (service fno_mcx_feed)")
    p.add_argument("--duration", type=finite_number, metavar="S", help="stop cleanly after S seconds")
    p.add_argument("--no-capture", action="store_true", help="do not record raw frames under DHAN_DATA_DIR/captures")
    p.add_argument("--cool-off", type=finite_number, default=FeedOptions.cool_off, metavar="S",
                   help="wait after Dhan's 805 (too many connections) before reconnecting (default %(default)g)")
    p.add_argument("--buffer-events", type=int, default=FeedOptions.buffer_events, metavar="N",
                   help="events kept in memory while Redis is unreachable (default %(default)s)")
    return p.parse_args(argv)


def service_id(mcx: bool) -> str:
    return "fno_mcx_feed" if mcx else "fno_feed"


def closed_message(now: datetime, mcx: bool, settings: Settings) -> str | None:
    """None when the feed's service is inside its run window (plan.window_at, the scheduler's
    own), else a sentence saying when it opens."""
    calendar, service = MarketCalendar(settings), _service(mcx)
    if window_at(calendar, now, service) is not None:
        return None
    window = next_window(calendar, now, service)
    if window is None:
        return f"no {service.session} session within a month: waiting (--force runs now)"
    session = window[0] + DEFAULT_LEAD
    return (f"{service.session} closed now: waiting for session at {session:%H:%M} IST "
            f"{session:%a %d %b %Y}; the feed connects at {window[0]:%H:%M} (--force runs now)")


def _service(mcx: bool):
    return next(s for s in SERVICES if s.id == service_id(mcx))


def wait_for_session(settings: Settings, mcx: bool, stop: threading.Event,
                     now: Callable[[], datetime] = lambda: datetime.now(IST),
                     pause: Callable[[float], bool] | None = None) -> bool:
    """Wait until the feed's run window opens; True then, False if stopped first. While
    waiting, publish a healthy `waiting_for_session` heartbeat when Redis is reachable (looking
    never starts the embedded server), so status reads "waiting", not "no heartbeat"."""
    pause = pause or stop.wait
    client, said = None, None
    try:
        while not stop.is_set():
            message = closed_message(now(), mcx, settings)
            if message is None:
                return True
            if message != said:
                log.info("%s", message)
                said = message
            client = _beat(client, settings, bus.heartbeat(service_id(mcx), "waiting_for_session", True,
                                                           detail=message))
            if pause(2.0):
                break
        return False
    finally:
        if client is not None:
            client.close()


def _beat(client, settings: Settings, record: dict):
    try:
        client = client or bus.connect(settings, start=False, socket_timeout=2, socket_connect_timeout=2)
        bus.publish_health(client, record)
        return client
    except Exception as exc:  # noqa: BLE001 - no Redis yet: waiting goes on, the heartbeat later
        log.debug("waiting heartbeat not published: %s", exc)
        return None


def _index_prices(settings: Settings, instruments) -> dict[str, float]:
    """Last NIFTY/BANKNIFTY prices from Redis (centre the option strikes); empty if unknown."""
    from ..instruments.universe import index_prices_from_latest
    try:
        client = bus.connect(settings, socket_timeout=2)
        try:
            latest = client.hmget(bus.LATEST_HASH, INDEX_FIELDS)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any Redis problem just means "no prices"
        log.info("no index prices from Redis (%s); ATM strikes from the master", type(exc).__name__)
        return {}
    fields = {f: v for f, v in zip(INDEX_FIELDS, latest) if v}
    return index_prices_from_latest(fields, instruments)


def _instruments(settings: Settings) -> list:
    """Today's scrip master, stored in dhan_instruments once a day (refresh_instruments); when the
    database is unreachable the feed still starts, from the master file alone."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..db_setup import get_engine
    from ..instruments.master import load_master, refresh_instruments
    progress = sys.stderr.isatty()
    try:
        engine = get_engine(settings=settings)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("database unreachable (%s): instruments read from the master, not stored",
                    type(exc).__name__)
        return load_master(settings, progress=progress)
    try:
        return refresh_instruments(engine, settings, progress=progress)
    except SQLAlchemyError as exc:
        log.warning("could not store instruments (%s); using the master file", type(exc).__name__)
        return load_master(settings, progress=progress)
    finally:
        engine.dispose()


def build_feed(settings: Settings, args: argparse.Namespace) -> Feed:
    from ..instruments.master import ist_today, tick_sizes
    from ..instruments.universe import feed_universe
    instruments = _instruments(settings)
    prices = {} if settings.watchlist else _index_prices(settings, instruments)
    universe = feed_universe(settings, instruments, today=ist_today(), index_prices=prices, mcx=args.mcx,
                             now=datetime.now(tz=IST))  # DHAN_WATCHLIST, or the universe rules
    for note in universe.notes:
        log.info("universe: %s", note)
    for warning in universe.warnings:
        log.warning("universe: %s", warning)
    subs = [(s.exchange_segment, s.security_id, s.mode or choose_mode(s.exchange_segment))
            for s in universe.subscriptions]
    plans = plan_connections(subs)
    depth = plan_depth(settings.depth_instruments)
    log.info("universe: %d instruments (%s) on %d connection(s)%s", len(subs),
             ", ".join(f"{k} {v}" for k, v in universe.counts().items()), len(plans),
             f", 20-level depth for {len(depth.instruments)}" if depth else "")
    token = settings.access_token.reveal()
    options = FeedOptions(stall_timeout=settings.feed_stall_timeout, cool_off=args.cool_off,
                          buffer_events=args.buffer_events)
    feed_url = make_feed_url(settings.feed_url, token, settings.client_id)
    redis_url = bus.redis_url(settings)
    log.info("feed %s -> Redis %s", mask_url(feed_url), mask_url(redis_url))
    return Feed(service=service_id(args.mcx), plans=plans, feed_url=feed_url,
                depth_plan=depth,
                depth_url=make_depth_url(settings.depth_feed_url, token, settings.client_id) if depth else None,
                redis_url=redis_url, ticks=tick_sizes(instruments),
                capture_dir=None if args.no_capture else settings.data_dir / "captures", options=options)


async def _run(feed: Feed, duration: float | None, logger: logging.Logger) -> int:
    """Run the feed; the exit code says how it ended (FATAL is never restarted, 1 is)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, feed.stop.set)
    await feed.run(duration)
    if feed.fatal:
        logger.critical("stopped: %s", feed.fatal[1])
        return exitcodes.FATAL
    if feed.failed:  # a dead task, logged with its traceback: exit non-zero so it is restarted
        logger.critical("stopped: %s", feed.failed)
        return 1
    return exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        logging.basicConfig(level="INFO")
        log.critical("%s", exc)
        return exitcodes.FATAL
    logger = setup_logging(service_id(args.mcx), settings)
    try:
        settings.require_credentials()  # before any wait: a bad token is said now, not at 08:55
    except ConfigError as exc:
        logger.critical("%s", exc)
        return exitcodes.FATAL
    if settings.uses_dhan and not args.force:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if not wait_for_session(settings, args.mcx, stop):
            return exitcodes.OK
    try:
        feed = build_feed(settings, args)
    except (ConfigError, PlanError) as exc:
        logger.critical("%s", exc)
        return exitcodes.FATAL
    except Exception as exc:  # noqa: BLE001 - e.g. the scrip master cannot be read: say so, exit 1
        logger.error("the feed could not start: %s: %s", type(exc).__name__, exc)
        return 1
    return asyncio.run(_run(feed, args.duration, logger))
