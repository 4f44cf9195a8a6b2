"""The instruments a window can show, and the search behind the instrument picker (no Qt).

A trader types what they would say: "NIFTY 24000 CE", "reliance", "banknifty fut". Every typed
word must start a word of the instrument's names (trading symbol, custom symbol, underlying),
so "NIFTY" finds NIFTY's contracts but not BANKNIFTY's. Results rank the instruments the feed
records first, then by kind (index, equity, future, option), nearest expiry and strike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Sequence

from ..instruments.master import Instrument, ist_today

_KIND_ORDER = {"INDEX": 0, "EQUITY": 1, "FUTIDX": 2, "FUTSTK": 3, "FUTCOM": 3, "OPTIDX": 4,
               "OPTSTK": 5, "OPTFUT": 5}
_SPLIT = re.compile(r"[\s\-_/]+")


def label(i: Instrument) -> str:
    """How a window titles an instrument: 'NIFTY-Dec2026-FUT (NSE_FNO 35001)'."""
    return f"{i.trading_symbol} ({i.exchange_segment} {i.security_id})"


@dataclass
class Catalog:
    instruments: Sequence[Instrument]
    recorded: frozenset[tuple[str, int]] = frozenset()  # what the feed subscribes, if known

    def __post_init__(self) -> None:
        self._words = [frozenset(_SPLIT.split(f"{i.trading_symbol} {i.custom_symbol} {i.underlying}".upper()))
                       - {""} for i in self.instruments]
        self._by_key = {i.key: i for i in self.instruments}

    def get(self, exchange_segment: str, security_id: int) -> Instrument | None:
        return self._by_key.get((exchange_segment, int(security_id)))

    def search(self, text: str, limit: int = 50) -> list[Instrument]:
        tokens = [t for t in _SPLIT.split(text.upper()) if t]
        if not tokens:
            return []
        hits = [i for i, words in zip(self.instruments, self._words)
                if all(any(w.startswith(t) for w in words) for t in tokens)]
        hits.sort(key=self._rank)
        return hits[:limit]

    def _rank(self, i: Instrument):
        expiry = i.expiry or datetime.max
        return (i.key not in self.recorded, _KIND_ORDER.get(i.instrument, 9), expiry,
                i.strike or 0.0, i.option_type or "", i.trading_symbol)

    def near_future(self, underlying: str = "NIFTY", today: date | None = None) -> Instrument | None:
        """The nearest unexpired future of `underlying`: what a window opens on by default."""
        today = today or ist_today()
        futures = [i for i in self.instruments
                   if i.underlying == underlying and i.instrument.startswith("FUT")
                   and i.expiry is not None and i.expiry.date() >= today]
        return min(futures, key=lambda i: i.expiry, default=None)


def from_instruments(instruments: Iterable[Instrument], recorded: Iterable[tuple[str, int]] = ()) -> Catalog:
    return Catalog(list(instruments), frozenset(recorded))
