"""The Dhan v2 exchange simulator: a WebSocket server that speaks the real binary protocol.

What it does on the wire is in docs/SIMULATOR.md (auth, limits, disconnect reasons, one packet
per frame, prev close on subscribe, pings). The data comes from a *source*: the synthetic market
(`MarketSource`, default) or a recorded capture (`replay.ReplaySource`); this module owns the
connections, the requests and the limits, which both sources share.

From async code: `await sim.start()` / `await sim.stop()`; from synchronous code (tests,
benchmarks): `running_simulator(**config)`, which serves from its own thread and event loop.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .. import exitcodes
from ..config import finite_number
from ..capture import DEPTH, MAIN, CaptureWriter
from ..protocol.packets import encode_depth_disconnect, encode_disconnect, encode_market_status
from ..protocol.requests import (DEPTH_SUBSCRIBE, DEPTH_UNSUBSCRIBE_CODES, DISCONNECT_REQUEST,
                                 MAX_DEPTH_PER_CONNECTION, MAX_PER_CONNECTION, MAX_PER_MESSAGE, MODES,
                                 SUBSCRIBE, ProtocolError, parse_request)
from ..protocol.segments import DEPTH_SEGMENTS
from .market import Catalogue, InstrumentState, ist_epoch, load_catalogue, packets_per_update
from .schedule import Scheduler, TokenBucket

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
MAIN_POOL, DEPTH_POOL = "main", "depth"
DEPTH_MODE = "depth"
# Data API reasons (dhan-protocol.md §2.8) the simulator sends in a code-50 disconnect packet.
TOO_MANY_INSTRUMENTS, TOO_MANY_CONNECTIONS, AUTH_FAILED, INVALID_REQUEST = 804, 805, 808, 814
DEFAULT_BAD_TOKENS: Mapping[str, int] = {"EXPIRED": 807, "NOPLAN": 806, "INVALID": 809}
_CLOSE = object()  # queue sentinel: close the socket once everything before it is sent


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see Simulator.port)
    rate: float = 2000.0  # total packets per second over all connections
    seed: int = 0
    instruments_csv: str | Path | None = None  # None: the bundled sample master; "": all synthetic
    ping_interval: float | None = 10.0
    ping_timeout: float | None = 30.0  # a client silent for ping_interval + ping_timeout is dropped
    sent_log: Path | None = None  # capture file of every binary frame sent
    bad_tokens: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_BAD_TOKENS))
    max_connections: int = 5  # per token and per pool (main feed, 20-level depth)
    queue_limit: int = 100_000  # frames waiting for one slow client before it is dropped


class Source(Protocol):
    """Where the frames come from; called on the simulator's event loop."""

    def attach(self, sim: "Simulator") -> None: ...
    async def run(self) -> None: ...
    def on_connect(self, conn: "Connection") -> None: ...
    def subscribe(self, conn: "Connection", instruments: Iterable[tuple[str, int]], mode: str) -> None: ...
    def unsubscribe(self, conn: "Connection", instruments: Iterable[tuple[str, int]], mode: str) -> None: ...
    def on_disconnect(self, conn: "Connection") -> None: ...


class Connection:
    """One client socket: its subscriptions and an outgoing queue drained by its own writer task.

    The queue isolates clients: a slow reader delays only itself, never the market or others.
    """

    def __init__(self, sim: "Simulator", ws: ServerConnection, pool: str, token: str, ident: int):
        self.sim, self.ws, self.pool, self.token, self.id = sim, ws, pool, token, ident
        self.kind = DEPTH if pool == DEPTH_POOL else MAIN  # capture kind of the frames it is sent
        self.subs: dict[tuple[str, int], set[str]] = {}
        self.queue: asyncio.Queue = asyncio.Queue(sim.config.queue_limit)
        self.frames_sent = 0
        self.closing = False
        self.writer = asyncio.create_task(self._write(), name=f"sim-writer-{ident}")

    def __repr__(self) -> str:
        return f"<conn {self.id} {self.pool}>"

    def push(self, frame: bytes) -> None:
        """Queue a frame without waiting; a client too slow to keep up is dropped, not waited for.

        While the simulator is paused data frames are dropped here (disconnects still go out).
        """
        if self.closing or self.sim.paused:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("connection %s: %d frames unread; dropping the slow client", self.id, self.queue.qsize())
            self.closing = True
            self.writer.cancel()
            asyncio.create_task(self.ws.close(1008, "client too slow"))

    async def put(self, frame: bytes) -> None:
        """Queue a frame, waiting for room (replay: the recording sets the pace, not the cap)."""
        while self.sim.paused and not self.closing:
            await asyncio.sleep(0.05)
        if not self.closing:
            await self.queue.put(frame)

    def shutdown(self, reason: int | None) -> None:
        """Send a disconnect packet with `reason` (None: none) after what is queued, then close."""
        if self.closing:
            return
        self.closing = True
        packet = None
        if reason is not None:
            log.info("connection %s: disconnecting with reason %d", self.id, reason)
            packet = encode_depth_disconnect(reason) if self.pool == DEPTH_POOL else encode_disconnect(reason)
        try:
            if packet is not None:
                self.queue.put_nowait(packet)
            self.queue.put_nowait(_CLOSE)
        except asyncio.QueueFull:  # a client that reads nothing gets the close without the packet
            self.writer.cancel()
            asyncio.create_task(self.ws.close())

    async def _write(self) -> None:
        kind = self.kind
        try:
            while True:
                frame = await self.queue.get()
                if frame is _CLOSE:
                    await self.ws.close()
                    return
                await self.ws.send(frame)
                self.frames_sent += 1
                self.sim.record(kind, frame)
        except ConnectionClosed:
            pass


class Simulator:
    """The server. Hooks for tests: kick_all, drop_all, pause, stats (safe from any thread)."""

    def __init__(self, config: SimulatorConfig | None = None, source: Source | None = None):
        self.config = config or SimulatorConfig()
        self.source = source
        self.paused = False
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._pools: dict[tuple[str, str], list[Connection]] = {}
        self._connections: dict[int, Connection] = {}
        self._ids = 0
        self._sent_log: CaptureWriter | None = None
        self.frames_sent = 0
        self.connections_total = 0
        self.kicked = Counter()  # disconnect reason -> count

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        if self.source is None:
            self.source = MarketSource(_catalogue(cfg), cfg.rate, cfg.seed)
        if cfg.sent_log:
            self._sent_log = _SentLog(Path(cfg.sent_log))
        self.source.attach(self)
        self._server = await serve(self._handle, cfg.host, cfg.port, compression=None,
                                   ping_interval=cfg.ping_interval, ping_timeout=cfg.ping_timeout,
                                   max_size=1 << 20)
        self._tasks = [asyncio.create_task(self.source.run(), name="sim-source"),
                       asyncio.create_task(self._flush_log(), name="sim-flush")]
        log.info("simulator listening on %s (rate cap %s packets/s, seed %s)", self.url, cfg.rate, cfg.seed)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._sent_log is not None:
            self._sent_log.close()
        log.info("simulator stopped after %d frames", self.frames_sent)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return next(iter(self._server.sockets)).getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    # --- test hooks ---------------------------------------------------------------------------

    def kick_all(self, reason: int) -> None:
        """Send every client a disconnect packet with `reason`, then close its socket."""
        self._in_loop(lambda: [c.shutdown(reason) for c in list(self._connections.values())])

    def drop_all(self) -> None:
        """Cut every client's TCP connection abruptly: no disconnect packet, no close frame."""
        def drop() -> None:
            for conn in list(self._connections.values()):
                conn.closing = True
                conn.ws.transport.abort()
        self._in_loop(drop)

    def pause(self, paused: bool = True) -> None:
        """Stay connected (pings still answered) but send no data, not even subscribe snapshots:
        a silent connection. The market stands still; a replay waits."""
        self.paused = paused

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot: frames sent in total and per connection id, open connections, subscriptions."""
        return self._in_loop(self._stats)

    def _stats(self) -> dict[str, Any]:
        conns = list(self._connections.values())
        return {"frames_sent": self.frames_sent,
                "frames_per_connection": {c.id: c.frames_sent for c in conns},
                "connections": len(conns), "connections_total": self.connections_total,
                "subscriptions": sum(len(c.subs) for c in conns),
                "instruments": len({k for c in conns for k in c.subs}),
                "kicked": dict(self.kicked)}

    def _in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the simulator's loop: directly there, or from another thread and wait."""
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return fn()

        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    # --- sending ------------------------------------------------------------------------------

    def record(self, kind: int, frame: bytes) -> None:
        """Count a frame handed to a socket and append it to the sent log."""
        self.frames_sent += 1
        if self._sent_log is not None:
            self._sent_log.write([(time.time_ns(), frame)], kind)

    async def _flush_log(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self._sent_log is not None:
                self._sent_log.flush()

    # --- connections --------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request else "/")
        query = parse_qs(parts.query)
        token = (query.get("token") or [""])[0]
        client_id = (query.get("clientId") or [""])[0]
        pool = DEPTH_POOL if parts.path.rstrip("/").endswith("twentydepth") else MAIN_POOL
        self._ids += 1
        conn = Connection(self, ws, pool, token, self._ids)
        self.connections_total += 1
        reason = self._auth_reason(token, client_id)
        if reason is not None:
            log.info("connection %s refused: reason %d", conn.id, reason)
            self.kicked[reason] += 1
            conn.shutdown(reason)
            await conn.writer
            return
        self._register(conn)
        log.info("connection %s opened (%s feed, client %s)", conn.id, pool, client_id)
        try:
            self.source.on_connect(conn)
            async for message in ws:
                if conn.closing:
                    continue
                if isinstance(message, bytes):
                    log.debug("connection %s: ignoring a %d-byte binary frame", conn.id, len(message))
                    continue
                self._on_request(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._unregister(conn)
            self.source.on_disconnect(conn)
            if not conn.writer.done():
                conn.closing = True
                conn.writer.cancel()
            log.info("connection %s closed after %d frames", conn.id, conn.frames_sent)

    def _auth_reason(self, token: str, client_id: str) -> int | None:
        if not token or not client_id:
            return AUTH_FAILED
        return self.config.bad_tokens.get(token)

    def _register(self, conn: Connection) -> None:
        pool = self._pools.setdefault((conn.pool, conn.token), [])
        while len(pool) >= self.config.max_connections:
            oldest = pool.pop(0)
            log.info("connection %s: a connection too many for this token; kicking the oldest (%s)",
                     conn.id, oldest.id)
            self.kicked[TOO_MANY_CONNECTIONS] += 1
            oldest.shutdown(TOO_MANY_CONNECTIONS)
        pool.append(conn)
        self._connections[conn.id] = conn

    def _unregister(self, conn: Connection) -> None:
        self._connections.pop(conn.id, None)
        pool = self._pools.get((conn.pool, conn.token), [])
        if conn in pool:
            pool.remove(conn)

    def _refuse(self, conn: Connection, reason: int, why: str) -> None:
        log.warning("connection %s: %s; disconnecting with %d", conn.id, why, reason)
        self.kicked[reason] += 1
        conn.shutdown(reason)

    def _on_request(self, conn: Connection, text: str) -> None:
        try:
            request = parse_request(text)
        except ProtocolError as exc:
            self._refuse(conn, TOO_MANY_INSTRUMENTS if _over_message_limit(text) else INVALID_REQUEST, str(exc))
            return
        code = request.code
        if code == DISCONNECT_REQUEST:
            log.info("connection %s: client asked to disconnect", conn.id)
            conn.shutdown(None)
            return
        if conn.pool == MAIN_POOL and code in MODES:
            mode = MODES[code]
            if code in SUBSCRIBE.values():
                self._subscribe(conn, request.instruments, mode, MAX_PER_CONNECTION)
            else:
                self._unsubscribe(conn, request.instruments, mode)
        elif conn.pool == DEPTH_POOL and code == DEPTH_SUBSCRIBE:
            self._subscribe(conn, request.instruments, DEPTH_MODE, MAX_DEPTH_PER_CONNECTION)
        elif conn.pool == DEPTH_POOL and code in DEPTH_UNSUBSCRIBE_CODES:
            self._unsubscribe(conn, request.instruments, DEPTH_MODE)
        else:
            self._refuse(conn, INVALID_REQUEST, f"request code {code} is not served on the {conn.pool} feed")

    def _subscribe(self, conn: Connection, instruments: tuple[tuple[str, int], ...], mode: str,
                   limit: int) -> None:
        new = {key for key in instruments if key not in conn.subs}
        if len(conn.subs) + len(new) > limit:
            self._refuse(conn, TOO_MANY_INSTRUMENTS,
                         f"{len(conn.subs) + len(new)} instruments on one connection; at most {limit}")
            return
        for key in instruments:
            conn.subs.setdefault(key, set()).add(mode)
        log.debug("connection %s: subscribed %d instruments (%s)", conn.id, len(instruments), mode)
        self.source.subscribe(conn, instruments, mode)

    def _unsubscribe(self, conn: Connection, instruments: tuple[tuple[str, int], ...], mode: str) -> None:
        for key in instruments:
            modes = conn.subs.get(key)
            if modes is not None:
                modes.discard(mode)
                if not modes:
                    del conn.subs[key]
        self.source.unsubscribe(conn, instruments, mode)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _over_message_limit(text: str) -> bool:
    try:
        listed = orjson.loads(text).get("InstrumentList")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(listed, list) and len(listed) > MAX_PER_MESSAGE


class _SentLog(CaptureWriter):
    """A capture writer bound to one file (not one file a day): the log of one simulator run."""

    def __init__(self, path: Path):
        super().__init__(path.parent)
        self.path = path

    def path_for(self, day) -> Path:
        return self.path


def _catalogue(cfg: SimulatorConfig) -> Catalogue:
    from ..config import SAMPLE_INSTRUMENTS_CSV

    path = SAMPLE_INSTRUMENTS_CSV if cfg.instruments_csv is None else cfg.instruments_csv
    catalogue = load_catalogue(str(path) if path else None, cfg.seed)
    log.info("simulator instruments: %d from %s; other ids get synthetic specs", len(catalogue), path or "nowhere")
    return catalogue


class MarketSource:
    """The synthetic market: updates scheduled per instrument, shared by every subscriber."""

    def __init__(self, catalogue: Catalogue, rate: float, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.catalogue = catalogue
        self.seed = seed
        self.clock, self.wall = clock, wall
        self.scheduler = Scheduler(rate, seed)
        self.bucket = TokenBucket(rate, max(20.0, rate / 10), clock())
        self.states: dict[tuple[str, int], InstrumentState] = {}
        self._main: dict[tuple[str, int], set[Connection]] = {}
        self._depth: dict[tuple[str, int], set[Connection]] = {}
        self._wake = asyncio.Event()
        self.sim: Simulator | None = None

    def attach(self, sim: Simulator) -> None:
        self.sim = sim

    def state(self, key: tuple[str, int]) -> InstrumentState:
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = InstrumentState(self.catalogue.spec(*key), self.seed, ist_epoch(self.wall()))
        return st

    def on_connect(self, conn: Connection) -> None:
        if conn.pool == MAIN_POOL:
            conn.push(encode_market_status())

    def subscribe(self, conn: Connection, instruments: Iterable[tuple[str, int]], mode: str) -> None:
        """Answer at once with each instrument's snapshot (outside the rate cap: a big subscribe
        must not silence the market for seconds), then let it trade on the schedule."""
        now = self.clock()
        for key in instruments:
            st = self.state(key)
            if mode == DEPTH_MODE:
                if key[0] not in DEPTH_SEGMENTS:
                    continue
                self._depth.setdefault(key, set()).add(conn)
                frames = [st.depth20(st.events)]
            else:
                self._main.setdefault(key, set()).add(conn)
                frames = st.snapshot(mode)
            for frame in frames:
                conn.push(frame)
            self._reweigh(key, now)
        self._wake.set()

    def unsubscribe(self, conn: Connection, instruments: Iterable[tuple[str, int]], mode: str) -> None:
        now = self.clock()
        table = self._depth if mode == DEPTH_MODE else self._main
        for key in instruments:
            if key not in conn.subs and conn in table.get(key, ()):
                table[key].discard(conn)
            self._reweigh(key, now)

    def on_disconnect(self, conn: Connection) -> None:
        now = self.clock()
        table = self._depth if conn.pool == DEPTH_POOL else self._main
        for key in conn.subs:
            table.get(key, set()).discard(conn)
            self._reweigh(key, now)

    def _reweigh(self, key: tuple[str, int], now: float) -> None:
        spec = self.state(key).spec
        weight = sum(packets_per_update(m, spec) for c in self._main.get(key, ()) for m in c.subs.get(key, ()))
        weight += 2 * len(self._depth.get(key, ()))
        self.scheduler.set(key, spec.rate, weight, now)

    def _update(self, key: tuple[str, int]) -> int:
        """One trade of `key`, sent to every subscriber; returns the packets it cost."""
        st = self.states[key]
        st.step(ist_epoch(self.wall()))
        sent = 0
        for conn in self._main.get(key, ()):
            for mode in conn.subs.get(key, ()):
                for frame in st.packets(mode):
                    conn.push(frame)
                    sent += 1
        depth = self._depth.get(key)
        if depth:
            frame = st.depth20(st.events)
            for conn in depth:
                conn.push(frame)
                sent += 2
        return sent

    async def run(self) -> None:
        sim = self.sim
        assert sim is not None
        burst = 0
        while True:
            if sim.paused:
                await asyncio.sleep(0.05)
                continue
            self._wake.clear()
            now = self.clock()
            due = self.scheduler.pop(now)
            if due is None:
                nxt = self.scheduler.next_due()
                timeout = 0.5 if nxt is None else min(0.5, max(0.0, nxt - now))
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            wait = self.bucket.take(self._update(due[0]), now)
            burst += 1
            if wait > 0:
                await asyncio.sleep(wait)
            elif burst % 256 == 0:
                await asyncio.sleep(0)


@contextmanager
def running_simulator(source: Source | None = None, **config: Any) -> Iterator[Simulator]:
    """A simulator serving from a background thread with its own event loop (for sync code)."""
    sim = Simulator(SimulatorConfig(**config), source)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve_in_thread() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(sim.start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve_in_thread, name="dhan-simulator", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


async def serve_until_stopped(sim: Simulator, banner: Callable[[Simulator], None]) -> None:
    """Start `sim`, show `banner`, and serve until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        banner(sim)
        await stop.wait()
    finally:
        await sim.stop()


def print_banner(sim: Simulator) -> None:
    print(f"Dhan simulator on {sim.url}. Point the feed at it with:\n"
          f"  DHAN_FEED_URL={sim.url}\n  DHAN_DEPTH_FEED_URL={sim.url}\nCtrl-C stops it.", flush=True)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--sent-log", type=Path, help="append every frame sent to this capture file")
    parser.add_argument("--ping-interval", type=finite_number, default=10.0, help="seconds between server pings")


def main(argv: list[str] | None = None) -> int:
    from ..config import ConfigError, SAMPLE_INSTRUMENTS_CSV, get_settings
    from ..logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m dhan_trading simulator",
                                     description="Local Dhan v2 market-feed simulator (synthetic market).")
    add_server_arguments(parser)
    parser.add_argument("--rate", type=finite_number, default=2000.0, help="total packets per second (default 2000)")
    parser.add_argument("--seed", type=int, help="random seed: same seed + same subscriptions -> same data")
    parser.add_argument("--instruments", help="compact scrip master CSV (default: DHAN_INSTRUMENTS_CSV if a "
                        "local file, else the bundled sample)")
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}")
        return exitcodes.FATAL
    setup_logging("simulator", settings)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    csv_path = args.instruments or _default_master(settings, SAMPLE_INSTRUMENTS_CSV)
    config = SimulatorConfig(args.host, args.port, args.rate, seed, csv_path, args.ping_interval,
                             sent_log=args.sent_log)
    try:
        asyncio.run(serve_until_stopped(Simulator(config), print_banner))
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", args.host, args.port, exc)
        return exitcodes.FATAL
    except Exception as exc:
        log.error("simulator failed: %s", exc, exc_info=True)
        return exitcodes.FATAL
    return exitcodes.OK


def _default_master(settings: Any, sample_path: Path) -> str:
    """DHAN_INSTRUMENTS_CSV when it is a local file; the sample (regenerated if expired) otherwise."""
    configured = settings.instruments_csv
    if configured and Path(configured).is_file() and Path(configured) != sample_path:
        return str(configured)
    try:
        from ..instruments.master import ist_today
        from ..instruments.sample import current_sample
        return str(current_sample(settings.data_dir, ist_today()))
    except Exception as exc:  # the bundled file is still a good answer
        log.warning("could not refresh the sample master (%s); using the bundled one", exc)
        return str(sample_path)
