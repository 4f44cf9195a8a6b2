"""Request JSON of the feeds (dhan-protocol.md §1.3 and §4): build them, and parse them (simulator)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import urlencode

import orjson

from .segments import SEGMENT_CODES

SUBSCRIBE = {"ticker": 15, "quote": 17, "full": 21}
UNSUBSCRIBE = {"ticker": 16, "quote": 18, "full": 22}
DEPTH_SUBSCRIBE, DEPTH_UNSUBSCRIBE = 23, 25
# The annexure's depth unsubscribe is 25; the SDK sends 24 (request code + 1). Both are accepted.
DEPTH_UNSUBSCRIBE_CODES = (DEPTH_UNSUBSCRIBE, DEPTH_SUBSCRIBE + 1)
DISCONNECT_REQUEST = 12
MAX_PER_MESSAGE = 100
MAX_PER_CONNECTION = 5000
MAX_DEPTH_PER_CONNECTION = 50
MODES = {code: mode for mode, code in SUBSCRIBE.items()} | {code: mode for mode, code in UNSUBSCRIBE.items()}


class ProtocolError(ValueError):
    """A request that does not follow the protocol (the simulator answers it, the feed never sends it)."""


@dataclass(frozen=True)
class Request:
    code: int
    instruments: tuple[tuple[str, int], ...] = ()


def _messages(code: int, instruments: Iterable[tuple[str, int]], chunk: int) -> list[str]:
    items = [{"ExchangeSegment": seg, "SecurityId": str(sid)} for seg, sid in instruments]
    return [orjson.dumps({"RequestCode": code, "InstrumentCount": len(part), "InstrumentList": part}).decode()
            for part in (items[i:i + chunk] for i in range(0, len(items), chunk))]


def subscribe_messages(instruments: Iterable[tuple[str, int]], mode: str) -> list[str]:
    """Subscribe `(segment, security_id)` pairs in `mode`, at most 100 per message."""
    return _messages(SUBSCRIBE[mode], instruments, MAX_PER_MESSAGE)


def unsubscribe_messages(instruments: Iterable[tuple[str, int]], mode: str) -> list[str]:
    return _messages(UNSUBSCRIBE[mode], instruments, MAX_PER_MESSAGE)


def depth_subscribe_messages(instruments: Iterable[tuple[str, int]]) -> list[str]:
    return _messages(DEPTH_SUBSCRIBE, instruments, MAX_DEPTH_PER_CONNECTION)


def disconnect_message() -> str:
    return orjson.dumps({"RequestCode": DISCONNECT_REQUEST}).decode()


def feed_url(base: str, token: str, client_id: str) -> str:
    """Main feed URL: credentials travel in the query string (never log it unmasked)."""
    query = urlencode({"version": 2, "token": token, "clientId": client_id, "authType": 2})
    return f"{base.rstrip('/')}?{query}"


def depth_url(base: str, token: str, client_id: str) -> str:
    query = urlencode({"token": token, "clientId": client_id, "authType": 2})
    return f"{base.rstrip('/')}/twentydepth?{query}"


def parse_request(text: str | bytes) -> Request:
    """Parse a client's JSON request; raise ProtocolError saying what is wrong."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("RequestCode"), int):
        raise ProtocolError("missing integer RequestCode")
    code = obj["RequestCode"]
    if code == DISCONNECT_REQUEST:
        return Request(code)
    if code not in MODES and code not in (DEPTH_SUBSCRIBE, *DEPTH_UNSUBSCRIBE_CODES):
        raise ProtocolError(f"unknown RequestCode {code}")
    if "InstrumentList" not in obj and "SecurityId" in obj:  # 200-level flat shape
        listed: Sequence = [obj]
    else:
        listed = obj.get("InstrumentList")
        if not isinstance(listed, list):
            raise ProtocolError("InstrumentList must be a list")
        if obj.get("InstrumentCount") != len(listed):
            raise ProtocolError(f"InstrumentCount {obj.get('InstrumentCount')} != {len(listed)} instruments listed")
    if len(listed) > MAX_PER_MESSAGE:
        raise ProtocolError(f"{len(listed)} instruments in one message; at most {MAX_PER_MESSAGE}")
    out = []
    for item in listed:
        try:
            seg, sid = item["ExchangeSegment"], int(item["SecurityId"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"bad instrument {item!r}") from None
        if seg not in SEGMENT_CODES:
            raise ProtocolError(f"unknown ExchangeSegment {seg!r}")
        out.append((seg, sid))
    return Request(code, tuple(out))
