"""Connection planning: instruments -> connections -> subscribe messages. Pure, no I/O.

Dhan allows 5 connections per user, 5000 instruments per connection and 100 instruments per
subscribe message (dhan-protocol.md §1.2). We use the fewest connections that hold the
universe (a 6th socket anywhere, e.g. the user's own trading app, would kick our oldest with
805, so sockets are a budget we do not spend for nothing) and deal the instruments round-robin
over them, so the busiest contracts (adjacent option strikes) do not all land on one socket.
The plan is fixed for the process: a reconnecting socket resubscribes exactly its own share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from ..protocol.requests import (MAX_DEPTH_PER_CONNECTION, MAX_PER_CONNECTION, SUBSCRIBE,
                                 depth_subscribe_messages, subscribe_messages)
from ..protocol.segments import DEPTH_SEGMENTS

MAX_CONNECTIONS = 5
MODES = tuple(SUBSCRIBE)  # ticker, quote, full


class PlanError(ValueError):
    """The requested subscriptions do not fit Dhan's limits (the message says which limit)."""


def choose_mode(exchange_segment: str) -> str:
    """Index spots only have a price (ticker); F&O and MCX contracts get everything (full)."""
    return "ticker" if exchange_segment == "IDX_I" else "full"


@dataclass(frozen=True)
class ConnectionPlan:
    """One WebSocket: its instruments `(segment, security_id, mode)` and the messages to send."""

    index: int
    instruments: tuple[tuple[str, int, str], ...]
    messages: tuple[str, ...]

    @property
    def keys(self) -> tuple[tuple[str, int], ...]:
        return tuple((seg, sid) for seg, sid, _ in self.instruments)


def plan_connections(instruments: Iterable[tuple[str, int, str]], *,
                     max_connections: int = MAX_CONNECTIONS,
                     per_connection: int = MAX_PER_CONNECTION) -> list[ConnectionPlan]:
    """Spread `(segment, security_id, mode)` over min(max_connections, ceil(n/per_connection))
    sockets, round-robin; duplicates (same segment and id) keep their first mode."""
    unique: dict[tuple[str, int], str] = {}
    for seg, sid, mode in instruments:
        if mode not in MODES:
            raise PlanError(f"{seg}:{sid}: unknown mode {mode!r}; use one of {', '.join(MODES)}")
        unique.setdefault((seg, int(sid)), mode)
    n = len(unique)
    if n == 0:
        return []
    capacity = max_connections * per_connection
    if n > capacity:
        raise PlanError(f"{n} instruments exceed Dhan's limit of {capacity} "
                        f"({max_connections} connections x {per_connection} instruments); "
                        "subscribe fewer (e.g. lower DHAN_UNIVERSE_STOCKS / DHAN_UNIVERSE_STRIKES)")
    count = math.ceil(n / per_connection)
    shares: list[list[tuple[str, int, str]]] = [[] for _ in range(count)]
    for i, ((seg, sid), mode) in enumerate(unique.items()):
        shares[i % count].append((seg, sid, mode))
    return [ConnectionPlan(i, tuple(share), tuple(_messages(share))) for i, share in enumerate(shares)]


def _messages(share: list[tuple[str, int, str]]) -> list[str]:
    out: list[str] = []
    for mode in MODES:
        pairs = [(seg, sid) for seg, sid, m in share if m == mode]
        if pairs:
            out += subscribe_messages(pairs, mode)
    return out


def plan_depth(instruments: Iterable[tuple[str, int]]) -> ConnectionPlan | None:
    """The 20-level depth socket: at most 50 instruments, of DEPTH_SEGMENTS only."""
    pairs = list(dict.fromkeys((seg, int(sid)) for seg, sid in instruments))
    if not pairs:
        return None
    if len(pairs) > MAX_DEPTH_PER_CONNECTION:
        raise PlanError(f"{len(pairs)} depth instruments; Dhan's 20-level feed takes at most "
                        f"{MAX_DEPTH_PER_CONNECTION} (DHAN_DEPTH_INSTRUMENTS)")
    wrong = [f"{seg}:{sid}" for seg, sid in pairs if seg not in DEPTH_SEGMENTS]
    if wrong:
        raise PlanError(f"20-level depth is only available for {' and '.join(DEPTH_SEGMENTS)}, "
                        f"not {', '.join(wrong)}")
    return ConnectionPlan(0, tuple((seg, sid, "depth") for seg, sid in pairs),
                          tuple(depth_subscribe_messages(pairs)))
