"""RESP2 bytes for the feed's hot path, built directly (pure, no I/O).

Why not redis-py's pipeline: packing each command through it costs several microseconds, and
the feed sends two commands (PUBLISH + XADD) per event, i.e. hundreds of thousands a second at
full speed; concatenating precomputed prefixes is an order of magnitude cheaper (see
benchmarks/bench_feed.py). Only the commands below are built here; everything that is not on
the hot path goes through redis-py.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import orjson

from .. import bus

CRLF = b"\r\n"


def bulk(value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        value = str(value).encode()
    elif isinstance(value, str):
        value = value.encode()
    return b"$%d\r\n%b\r\n" % (len(value), value)


def command(*args: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def _prefixes(channel: str) -> tuple[bytes, bytes]:
    """`PUBLISH channel $` and `XADD stream * data $`: everything before the payload's length."""
    stream = bus.CHANNEL_STREAM[channel]
    publish = b"*3\r\n" + bulk("PUBLISH") + bulk(channel) + b"$"
    xadd = b"*5\r\n" + bulk("XADD") + bulk(stream) + bulk("*") + bulk(bus.STREAM_FIELD) + b"$"
    return publish, xadd


_PREFIXES = {channel: _prefixes(channel) for channel in bus.CHANNEL_STREAM}


def publish_and_xadd(channels: Sequence[str], payloads: Sequence[bytes],
                     publish: Sequence[bool] | None = None) -> bytes:
    """PUBLISH each payload on its channel and XADD it to the channel's stream, in order.

    `publish` (a retry of refused commands): PUBLISH only the payloads flagged True, XADD all."""
    parts: list[bytes] = []
    add = parts.extend
    prefixes = _PREFIXES
    if publish is not None:
        for channel, payload, again in zip(channels, payloads, publish):
            pub, xadd = prefixes[channel]
            size = b"%d\r\n" % len(payload)
            add((pub, size, payload, CRLF) if again else ())
            add((xadd, size, payload, CRLF))
        return b"".join(parts)
    for channel, payload in zip(channels, payloads):
        publish, xadd = prefixes[channel]
        size = b"%d\r\n" % len(payload)
        add((publish, size, payload, CRLF, xadd, size, payload, CRLF))
    return b"".join(parts)


def hset(key: str, mapping: Mapping[bytes, bytes]) -> bytes:
    args: list[bytes | str] = ["HSET", key]
    for field, value in mapping.items():
        args += (field, value)
    return command(*args)


class LatestFields:
    """Hash field `<type>:<segment>:<security_id>` of an event payload, read from its first keys.

    Payloads all begin `{"type":..,"exchange_segment":..,"security_id":..,"recv_ts":` (the
    decoder's templates and orjson keep that order), so the part before `recv_ts` identifies the
    instrument and type; it is parsed once per distinct instrument and cached. Every market-data
    payload the publisher makes has that form (gap events, which do not, are skipped by channel).
    """

    def __init__(self, limit: int = 200_000):
        self._cache: dict[bytes, bytes] = {}
        self._limit = limit

    def field(self, payload: bytes) -> bytes:
        head = payload[:payload.index(b',"recv_ts"')]
        found = self._cache.get(head)
        if found is None:
            obj = orjson.loads(head + b"}")
            found = bus.latest_field(obj["type"], obj["exchange_segment"], obj["security_id"]).encode()
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[head] = found
        return found

    def latest(self, channels: Iterable[str], payloads: Iterable[bytes]) -> dict[bytes, bytes]:
        """The last payload per instrument and type in a batch (market data only, not gaps)."""
        out: dict[bytes, bytes] = {}
        for channel, payload in zip(channels, payloads):
            if channel != bus.CHANNEL_GAPS:
                out[self.field(payload)] = payload
        return out
