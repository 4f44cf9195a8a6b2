"""Serve a raw-frame capture (dhan_trading/capture.py) through the simulator's server.

Each client gets its own playback of the recording, so the whole pipeline can run on a recorded
day. The rules (docs/SIMULATOR.md, "Replay"):

* A main-feed client gets the recorded main-feed frames, a `/twentydepth` client the recorded
  depth frames, byte for byte, one recorded frame per WebSocket frame.
* Playback starts once the client has subscribed and then been quiet for `settle` seconds (so
  a feed that subscribes in several messages gets its first frames too), and follows the
  recorded inter-arrival times divided by `speed` (0 = as fast as the client reads).
* A frame goes only to clients subscribed to its instrument (by its first packet's header), so
  a feed that spreads its instruments over several connections gets each frame once; the
  market-status packet goes to every main-feed client. `filter_subscribed=False` sends
  every frame to every client instead.
* Recorded disconnect packets (code 50) are not replayed: they were about the recording
  connection, not the market. The simulator's own auth, limits and disconnects still apply.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Iterable

from .. import exitcodes
from ..config import finite_number
from ..capture import DEPTH, MAIN, read_capture
from ..protocol.packets import DEPTH_HEADER, DISCONNECT, HEADER, MARKET_STATUS
from ..protocol.segments import segment_name
from .server import (Connection, Simulator, SimulatorConfig, add_server_arguments,
                     serve_until_stopped)

log = logging.getLogger(__name__)


def parse_speed(text: str) -> float:
    """`--speed`: a positive factor, or 0 / 'max' for as fast as possible."""
    if text.strip().lower() in ("max", "0", "0.0"):
        return 0.0
    value = float(text)
    if value < 0:
        raise ValueError("speed must be positive, 0 or 'max'")
    return value


def frame_key(frame: bytes, kind: int) -> tuple[int, tuple[str, int] | None]:
    """(packet code, (segment, security id)) of a frame's first packet; code -1 if unreadable."""
    if kind == DEPTH:
        if len(frame) < DEPTH_HEADER.size:
            return -1, None
        _, code, seg, sid, _ = DEPTH_HEADER.unpack_from(frame)
    else:
        if len(frame) < HEADER.size:
            return -1, None
        code, _, seg, sid = HEADER.unpack_from(frame)
    return code, (segment_name(seg), sid)


def summarize(path: Path) -> dict[str, float]:
    """Frames per kind and the recording's duration, for the banner."""
    counts, first, last = {MAIN: 0, DEPTH: 0}, None, None
    for ts, kind, _ in read_capture(path):
        counts[kind] = counts.get(kind, 0) + 1
        first = ts if first is None else min(first, ts)
        last = ts if last is None else max(last, ts)
    return {"main": counts[MAIN], "depth": counts[DEPTH],
            "seconds": (last - first) / 1e9 if first is not None else 0.0}


class ReplaySource:
    """A simulator source that plays a capture file to each subscribed client."""

    def __init__(self, path: str | Path, speed: float = 1.0, settle: float = 0.3,
                 filter_subscribed: bool = True):
        self.path = Path(path)
        records = read_capture(self.path)
        next(records, None)  # fail now, clearly, on a missing or foreign file
        records.close()
        self.speed, self.settle, self.filter_subscribed = speed, settle, filter_subscribed
        self.finished = 0  # playbacks that reached the end of the file
        self._last_subscribe: dict[Connection, float] = {}
        self._players: dict[Connection, asyncio.Task] = {}
        self.sim: Simulator | None = None

    def attach(self, sim: Simulator) -> None:
        self.sim = sim

    async def run(self) -> None:
        await asyncio.Event().wait()  # playback is per client; nothing runs globally

    def on_connect(self, conn: Connection) -> None:
        """Nothing of its own: the client gets exactly what was recorded."""

    def subscribe(self, conn: Connection, instruments: Iterable[tuple[str, int]], mode: str) -> None:
        self._last_subscribe[conn] = time.monotonic()
        if conn not in self._players:
            self._players[conn] = asyncio.create_task(self._play(conn), name=f"replay-{conn.id}")

    def unsubscribe(self, conn: Connection, instruments: Iterable[tuple[str, int]], mode: str) -> None:
        """Nothing to do: each frame is checked against the client's subscriptions when due."""

    def on_disconnect(self, conn: Connection) -> None:
        task = self._players.pop(conn, None)
        if task is not None:
            task.cancel()
        self._last_subscribe.pop(conn, None)

    def _wanted(self, conn: Connection, frame: bytes, kind: int) -> bool:
        code, key = frame_key(frame, kind)
        if code == DISCONNECT:
            return False
        if not self.filter_subscribed or key is None or (kind == MAIN and code == MARKET_STATUS):
            return True
        return key in conn.subs

    async def _play(self, conn: Connection) -> None:
        while (quiet := time.monotonic() - self._last_subscribe[conn]) < self.settle:
            await asyncio.sleep(self.settle - quiet)
        kind = conn.kind
        log.info("connection %s: replaying %s at %s", conn.id, self.path.name,
                 f"{self.speed:g}x" if self.speed else "full speed")
        start, first, sent = time.monotonic(), None, 0
        for ts, frame_kind, frame in read_capture(self.path):
            if frame_kind != kind:
                continue
            if first is None:
                first = ts
            if self.speed:
                delay = start + (ts - first) / 1e9 / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if not self._wanted(conn, frame, kind):
                continue
            await conn.put(frame)
            sent += 1
            if sent % 256 == 0:
                await asyncio.sleep(0)
        self.finished += 1
        log.info("connection %s: replay finished, %d frames", conn.id, sent)


def main(argv: list[str] | None = None) -> int:
    from ..config import ConfigError, get_settings
    from ..logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m dhan_trading replay",
                                     description="Serve a recorded raw-frame capture as a Dhan feed.")
    parser.add_argument("file", type=Path, help="capture file (DATA_DIR/captures/YYYY-MM-DD.dcap)")
    parser.add_argument("--speed", default="1", help="playback speed factor; 0 or 'max' = as fast as possible")
    parser.add_argument("--settle", type=finite_number, default=0.3,
                        help="seconds of quiet after a client's last subscribe before playback starts")
    parser.add_argument("--all", action="store_true",
                        help="send every frame to every client, not only its subscribed instruments")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        speed = parse_speed(args.speed)
    except ValueError:
        parser.error(f"--speed {args.speed!r}: give a positive number, 0 or 'max'")
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}")
        return exitcodes.FATAL
    setup_logging("replay", settings)
    try:
        source = ReplaySource(args.file, speed, args.settle, filter_subscribed=not args.all)
        info = summarize(args.file)
    except (OSError, ValueError) as exc:
        log.error("cannot replay %s: %s", args.file, exc)
        return exitcodes.FATAL
    config = SimulatorConfig(args.host, args.port, ping_interval=args.ping_interval, sent_log=args.sent_log)

    def banner(sim: Simulator) -> None:
        print(f"Replaying {args.file} ({info['main']} main-feed and {info['depth']} depth frames over "
              f"{info['seconds']:.0f} s) at {f'{speed:g}x' if speed else 'full speed'} on {sim.url}.\n"
              f"  DHAN_FEED_URL={sim.url}\n  DHAN_DEPTH_FEED_URL={sim.url}\nCtrl-C stops it.", flush=True)
    try:
        asyncio.run(serve_until_stopped(Simulator(config, source), banner))
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", args.host, args.port, exc)
        return exitcodes.FATAL
    return exitcodes.OK
