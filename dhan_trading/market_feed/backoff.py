"""Reconnect delays: capped exponential backoff with jitter, reset after a stable connection.

Jitter keeps several sockets (or several feeds) that dropped together from reconnecting in
lockstep, which is what trips Dhan's 805/429 connection limits (openalgo #944).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

_MAX_EXPONENT = 64  # 2.0 ** 64 is finite; beyond it any positive `initial` is past any cap


@dataclass
class Backoff:
    """`next_delay()` gives ≈initial, ≈2×initial, ... up to `cap` seconds (±`jitter` fraction).

    Call `connected(now)` when a socket is up and `disconnected(now)` when it drops: a connection
    that stayed up `stable_after` seconds resets the sequence, a flapping one keeps growing it.
    """

    initial: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2
    stable_after: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    _up_since: float | None = None

    def __post_init__(self) -> None:
        for name in ("initial", "cap", "stable_after"):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, not {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff.jitter must be between 0 and 1, not {self.jitter!r}")

    def next_delay(self) -> float:
        """The next delay, in [0, cap]. The exponent stops growing once the cap is reached, so
        the sequence can go on for ever (2 ** 1025 overflowed a float after ~85 min at 5 s)."""
        base = min(self.cap, self.initial * 2.0 ** self.attempt)
        if base < self.cap and self.attempt < _MAX_EXPONENT:
            self.attempt += 1
        return max(0.0, min(self.cap, base * (1 + self.jitter * self.rng.uniform(-1, 1))))

    def reset(self) -> None:
        """Start again from `initial` (the thing being retried has just worked)."""
        self.attempt = 0

    def connected(self, now: float) -> None:
        self._up_since = now

    def disconnected(self, now: float) -> None:
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self.attempt = 0
        self._up_since = None
