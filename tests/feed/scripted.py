"""A small scripted Dhan-like WebSocket server for the feed's tests, in a background thread.

Each accepted connection runs `script(conn)`, a coroutine that decides what the server says:
frames, silence, a disconnect packet, an abrupt drop with no close frame. The server records
every connection's query string and the subscribe messages it received.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve


@dataclass
class Conn:
    number: int
    ws: ServerConnection
    query: dict
    opened: float
    requests: list[dict] = field(default_factory=list)

    async def wait_subscribed(self, instruments: int, timeout: float = 5.0) -> None:
        """Read subscribe messages until `instruments` instruments have been requested."""
        deadline = time.monotonic() + timeout
        while sum(r.get("InstrumentCount", 0) for r in self.requests) < instruments:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("client did not subscribe")
            msg = await asyncio.wait_for(self.ws.recv(), left)
            self.requests.append(orjson.loads(msg))

    async def send_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.ws.send(frame)

    def drop(self) -> None:
        """Abrupt loss: the TCP connection goes away without a WebSocket close frame."""
        self.ws.transport.abort()

    async def hold(self) -> None:
        """Stay connected (silent) until the client goes away."""
        try:
            async for msg in self.ws:
                self.requests.append(orjson.loads(msg))
        except Exception:  # noqa: BLE001 - the client vanishing is the expected end
            pass


Script = Callable[[Conn], Awaitable[None]]


class ScriptedServer:
    def __init__(self, script: Script):
        self.script = script
        self.conns: list[Conn] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("scripted server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close(close_connections=True)

    async def _handle(self, ws: ServerConnection) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(ws.request.path).query).items()}
        conn = Conn(len(self.conns), ws, query, time.monotonic())
        self.conns.append(conn)
        try:
            await self.script(conn)
        except Exception:  # noqa: BLE001 - a client that left mid-script ends the script
            pass


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
