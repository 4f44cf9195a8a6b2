"""A raw WebSocket client for the simulator tests: connect, send requests, collect binary frames."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import lru_cache

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
from dhan_trading.protocol.packets import HEADER
from dhan_trading.protocol.requests import depth_url, feed_url


@dataclass
class Received:
    frames: list[bytes] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None

    @property
    def codes(self) -> list[int]:
        return [f[0] for f in self.frames]

    def of(self, code: int) -> list[bytes]:
        return [f for f in self.frames if f[0] == code]

    def keys(self) -> set[tuple[int, int]]:
        return {HEADER.unpack_from(f)[2:] for f in self.frames if f[0] not in (7, 50)}


def main_url(base: str, token: str = "TESTTOKEN", client_id: str = "1000000001") -> str:
    return feed_url(base, token, client_id)


def twenty_url(base: str, token: str = "TESTTOKEN", client_id: str = "1000000001") -> str:
    return depth_url(base, token, client_id)


async def collect(ws: ClientConnection, seconds: float = 0.0, count: int | None = None,
                  out: Received | None = None) -> Received:
    """Frames until `count` arrived, `seconds` passed, or the server closed (whichever first)."""
    out = out or Received()
    deadline = time.monotonic() + seconds
    while count is None or len(out.frames) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            frame = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            out.closed = True
            out.close_code = exc.rcvd.code if exc.rcvd else None
            break
        assert isinstance(frame, bytes), "the server sends only binary frames"
        out.frames.append(frame)
    return out


def run(coro):
    return asyncio.run(coro)


@lru_cache(maxsize=1)
def sample_instruments():
    from dhan_trading.instruments.master import read_master
    return read_master(str(SAMPLE_INSTRUMENTS_CSV))


def pick(instrument: str, predicate=lambda i: True):
    """The first sample-master instrument of a type (e.g. FUTIDX) matching `predicate`."""
    return next(i for i in sample_instruments() if i.instrument == instrument and predicate(i))


__all__ = ["Received", "collect", "connect", "main_url", "twenty_url", "run", "pick", "sample_instruments"]
