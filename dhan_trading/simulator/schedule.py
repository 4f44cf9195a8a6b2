"""When each instrument updates, and how many packets may go out: pure, with the clock passed in.

Every subscribed instrument runs its own Poisson clock (mean rate from its spec); one heap keeps
the next due update of each. When the subscriptions would need more packets per second than the
total cap, every instrument's rate is scaled down by the same factor, so busy instruments stay
busier than quiet ones. A token bucket on the monotonic clock enforces the cap exactly and
never drifts: tokens are computed from the time elapsed, not counted per sleep.
"""
from __future__ import annotations

import heapq
import random
from typing import Hashable

MAX_LAG_S = 1.0  # an update later than this restarts its instrument's clock instead of bursting


class TokenBucket:
    """At most `rate` tokens per second on average, bursts of at most `burst`."""

    def __init__(self, rate: float, burst: float, now: float):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), now

    def refill(self, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, count: float, now: float) -> float:
        """Spend `count` tokens (the balance may go negative); return seconds until it is positive again."""
        self.refill(now)
        self.tokens -= count
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Scheduler:
    """The next update time of every active instrument, on one heap, scaled to fit `cap` packets/s."""

    def __init__(self, cap: float, seed: int = 0):
        self.cap = float(cap)
        self.seed = seed
        self._heap: list[tuple[float, int, Hashable]] = []
        self._rate: dict[Hashable, float] = {}
        self._weight: dict[Hashable, float] = {}
        self._order: dict[Hashable, int] = {}
        self._clock: dict[Hashable, random.Random] = {}
        self._scheduled: set[Hashable] = set()
        self.demand = 0.0  # packets per second the subscriptions would need unscaled

    @property
    def scale(self) -> float:
        return 1.0 if self.demand <= self.cap else self.cap / self.demand

    def __len__(self) -> int:
        return len(self._weight)

    def set(self, key: Hashable, rate: float, weight: float, now: float) -> None:
        """Set `key`'s mean update rate and packets per update (weight 0 deactivates it)."""
        self.demand += rate * weight - self._rate.get(key, 0.0) * self._weight.get(key, 0.0)
        if weight <= 0:
            self._weight.pop(key, None)
            self._rate.pop(key, None)
            if not self._weight:
                self.demand = 0.0
            return
        self._rate[key], self._weight[key] = rate, weight
        if key not in self._order:
            self._order[key] = len(self._order)
            self._clock[key] = random.Random(f"{self.seed}:clock:{key}")
        if key not in self._scheduled:
            self._push(key, now)

    def _push(self, key: Hashable, after: float) -> None:
        gap = self._clock[key].expovariate(self._rate[key] * self.scale)
        heapq.heappush(self._heap, (after + gap, self._order[key], key))
        self._scheduled.add(key)

    def next_due(self) -> float | None:
        """Time of the earliest pending update (None when nothing is subscribed)."""
        while self._heap and self._heap[0][2] not in self._weight:
            self._scheduled.discard(heapq.heappop(self._heap)[2])
        return self._heap[0][0] if self._heap else None

    def pop(self, now: float) -> tuple[Hashable, float] | None:
        """The next due update `(key, due time)` if it is due at `now`; schedules its successor."""
        due = self.next_due()
        if due is None or due > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        self._scheduled.discard(key)
        self._push(key, due if now - due < MAX_LAG_S else now)
        return key, due

    def weight(self, key: Hashable) -> float:
        return self._weight.get(key, 0.0)
