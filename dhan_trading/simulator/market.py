"""The synthetic market behind the simulator: believable instruments that trade on their tick grid.

Pure code: no sockets, no asyncio, no wall clock (the caller passes the last-trade time in).
Every instrument owns its random generators, seeded from (seed, segment, security id), so the
n-th update of an instrument is the same whatever else is subscribed and whenever it happens:
that is what makes `--seed` reproducible. Prices are integers of ticks internally, so every
price sent is an exact multiple of the instrument's tick.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable

from ..protocol.packets import (DEPTH_ASK, DEPTH_BID, encode_depth_side, encode_full, encode_oi,
                                encode_prev_close, encode_quote, encode_ticker)
from ..analytics.clock import IST_OFFSET_S  # Dhan's LTT: IST wall-clock encoded as if UTC
from ..scheduler.calendar import ist_today

INDEX, EQUITY, FUTURE, OPTION = "index", "equity", "future", "option"
TICKER, QUOTE, FULL = "ticker", "quote", "full"
U16, U32 = 0xFFFF, 0xFFFF_FFFF

_KINDS = {"INDEX": INDEX, "EQUITY": EQUITY}
_DERIVATIVE_SEGMENTS = frozenset({"NSE_FNO", "BSE_FNO", "MCX_COMM", "NSE_CURRENCY", "BSE_CURRENCY"})


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """What the simulator knows about one instrument: enough to make its market look right."""

    segment: str
    security_id: int
    kind: str
    tick: float  # rupees
    lot: int
    price: float  # previous close, on the tick grid
    rate: float  # mean updates per second before the total rate cap scales it
    symbol: str = ""
    known: bool = True  # False: the id is not in the master and everything is synthetic

    @property
    def key(self) -> tuple[str, int]:
        return (self.segment, self.security_id)

    @property
    def has_oi(self) -> bool:
        return self.kind in (FUTURE, OPTION)

    @property
    def has_depth(self) -> bool:
        return self.kind != INDEX


def _kind(instrument_type: str) -> str:
    name = instrument_type.upper()
    if name in _KINDS:
        return _KINDS[name]
    if name.startswith("FUT"):
        return FUTURE
    if name.startswith("OPT"):
        return OPTION
    return EQUITY


def _on_tick(price: float, tick: float) -> float:
    return round(max(1, round(price / tick)) * tick, 4)


def _days_to(expiry: Any, today: date) -> float:
    if isinstance(expiry, datetime):
        expiry = expiry.date()
    return max(0.0, (expiry - today).days) if isinstance(expiry, date) else 30.0


def update_rate(kind: str, price: float, days_to_expiry: float = 30.0, strike: float | None = None,
                spot: float | None = None) -> float:
    """Mean updates per second: near futures and at-the-money options busy, far OTM quiet, indices ~1/s."""
    if kind == INDEX:
        return 1.0
    if kind == FUTURE:
        return 8.0 if days_to_expiry <= 35 else 3.0 if days_to_expiry <= 70 else 1.0
    if kind == OPTION and strike and spot:
        moneyness = abs(strike - spot) / spot
        near = 1.5 if days_to_expiry <= 7 else 1.0
        return round(0.2 + 6.0 * near * math.exp(-moneyness / 0.01), 3)
    return 3.0 if price >= 500 else 2.0


class Catalogue:
    """Instrument specs by (segment, security id): from the scrip master, else synthetic."""

    def __init__(self, instruments: Iterable[Any] = (), seed: int = 0, today: date | None = None):
        self.seed = seed
        self.today = today or ist_today()
        self._master = {(i.exchange_segment, int(i.security_id)): i for i in instruments}
        self._specs: dict[tuple[str, int], InstrumentSpec] = {}

    def __len__(self) -> int:
        return len(self._master)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._master

    def spec(self, segment: str, security_id: int) -> InstrumentSpec:
        key = (segment, security_id)
        spec = self._specs.get(key)
        if spec is None:
            row = self._master.get(key)
            spec = self._from_master(row) if row is not None else self._synthetic(segment, security_id)
            self._specs[key] = spec
        return spec

    def _from_master(self, row: Any) -> InstrumentSpec:
        from ..instruments.sample import reference_price

        kind = _kind(row.instrument)
        tick = float(row.tick_size) if row.tick_size and row.tick_size > 0 else 0.05
        days = _days_to(row.expiry, self.today)
        symbol = row.trading_symbol
        price = reference_price(symbol, default=0.0) or reference_price(row.underlying or symbol, default=0.0)
        spot = reference_price(row.underlying, default=0.0) if row.underlying else 0.0
        if not price:
            return self._synthetic(row.exchange_segment, int(row.security_id), kind=kind, tick=tick,
                                   lot=int(row.lot_size or 1), symbol=symbol, known=True)
        if kind == FUTURE:
            price *= 1 + 0.07 * days / 365  # cost of carry
        return InstrumentSpec(row.exchange_segment, int(row.security_id), kind, tick,
                              max(1, int(row.lot_size or 1)), _on_tick(price, tick),
                              update_rate(kind, price, days, row.strike, spot or None), symbol)

    def _synthetic(self, segment: str, security_id: int, kind: str | None = None, tick: float | None = None,
                   lot: int | None = None, symbol: str = "", known: bool = False) -> InstrumentSpec:
        """A made-up but stable instrument: same (seed, segment, id) -> same spec."""
        rng = random.Random(f"{self.seed}:spec:{segment}:{security_id}")
        if kind is None:
            kind = INDEX if segment == "IDX_I" else FUTURE if segment in _DERIVATIVE_SEGMENTS else EQUITY
        if tick is None:
            tick = 1.0 if segment == "MCX_COMM" else 0.05
        if lot is None:
            lot = 1 if kind in (INDEX, EQUITY) else rng.choice((25, 50, 75, 100, 250))
        low, high = (1_000, 50_000) if kind == INDEX else (5, 800) if kind == OPTION else (50, 5_000)
        price = _on_tick(math.exp(rng.uniform(math.log(low), math.log(high))), tick)
        rate = round(rng.uniform(0.5, 3.0), 3) if kind != INDEX else 1.0
        return InstrumentSpec(segment, security_id, kind, tick, lot, price, rate,
                              symbol or f"SIM-{segment}-{security_id}", known)


def load_catalogue(csv_path: str | None, seed: int = 0, today: date | None = None) -> Catalogue:
    """The catalogue from a compact scrip master file (None: every id is synthetic)."""
    if not csv_path:
        return Catalogue((), seed, today)
    from ..instruments.master import read_master

    return Catalogue(read_master(str(csv_path), progress=False), seed, today)


class InstrumentState:
    """One instrument's trading day: a random walk on the tick grid with consistent day statistics.

    `step()` is one trade: LTP moves a few ticks (with a gentle pull back to the previous close so
    a long run stays plausible), LTQ is a few lots, volume only grows, ATP is the true
    volume-weighted mean of the trades, high/low bracket every LTP, OI drifts for derivatives.
    """

    __slots__ = ("spec", "rng", "events", "ltp", "open", "high", "low", "prev_close", "ltq", "volume",
                 "turnover", "total_buy", "total_sell", "oi", "oi_high", "oi_low", "prev_oi",
                 "oi_changed", "ltt", "book_seed", "_vol", "_packets")

    def __init__(self, spec: InstrumentSpec, seed: int = 0, ltt: int = 0):
        self.spec = spec
        self.rng = rng = random.Random(f"{seed}:market:{spec.segment}:{spec.security_id}")
        self.events = 0
        self.ltt = ltt
        self.prev_close = max(1, round(spec.price / spec.tick))
        self._vol = max(1.0, self.prev_close * 0.00025)  # one trade's standard move, in ticks
        self.open = max(1, round(self.prev_close * (1 + rng.gauss(0, 0.004))))
        swing = max(2, round(self.prev_close * 0.003))
        self.high = self.open + rng.randint(0, swing)
        self.low = max(1, self.open - rng.randint(0, swing))
        self.ltp = rng.randint(self.low, self.high)
        traded = spec.kind != INDEX
        self.ltq = self._quantity() if traded else 0
        self.volume = spec.lot * rng.randint(200, 5_000) if traded else 0
        self.turnover = self.volume * (self.high + self.low + self.ltp) / 3
        self.total_buy = spec.lot * rng.randint(500, 20_000) if traded else 0
        self.total_sell = spec.lot * rng.randint(500, 20_000) if traded else 0
        if spec.has_oi:
            self.oi = spec.lot * rng.randint(1_000, 50_000)
            self.prev_oi = max(0, round(self.oi * (1 + rng.uniform(-0.05, 0.05))))
            self.oi_high = self.oi + spec.lot * rng.randint(0, 200)
            self.oi_low = max(0, self.oi - spec.lot * rng.randint(0, 200))
        else:
            self.oi = self.prev_oi = self.oi_high = self.oi_low = 0
        self.oi_changed = spec.has_oi
        self.book_seed = rng.getrandbits(32)
        self._packets: dict[str, list[bytes]] = {}

    def _quantity(self) -> int:
        lots = self.rng.choice((1, 1, 1, 2, 2, 3, 5, 10))
        return min(U16, self.spec.lot * lots if self.spec.kind != EQUITY else self.rng.randint(1, 500))

    def step(self, ltt: int) -> None:
        """One trade at last-trade time `ltt` (already IST-shifted, as Dhan sends it)."""
        rng = self.rng
        self.events += 1
        self.ltt = ltt
        pull = (self.prev_close - self.ltp) * 0.002
        move = round(rng.gauss(pull, self._vol))
        self.ltp = max(1, self.ltp + move)
        self.high = max(self.high, self.ltp)
        self.low = min(self.low, self.ltp)
        if self.spec.kind != INDEX:
            self.ltq = self._quantity()
            if self.volume + self.ltq <= U32:
                self.volume += self.ltq
                self.turnover += self.ltq * self.ltp
            lot = self.spec.lot
            self.total_buy = max(lot, self.total_buy + lot * rng.randint(-20, 20))
            self.total_sell = max(lot, self.total_sell + lot * rng.randint(-20, 20))
        self.oi_changed = self.spec.has_oi and rng.random() < 0.3
        if self.oi_changed:
            self.oi = min(U32, max(0, self.oi + self.spec.lot * rng.randint(-20, 25)))
            self.oi_high = max(self.oi_high, self.oi)
            self.oi_low = min(self.oi_low, self.oi)
        self.book_seed = rng.getrandbits(32)
        self._packets = {}

    # --- views -------------------------------------------------------------------------------

    def price(self, ticks: int) -> float:
        return round(ticks * self.spec.tick, 4)

    def quote_fields(self) -> dict[str, float | int]:
        """The event keys encode_quote / encode_full take (close = previous close, as Dhan streams it)."""
        p = self.price
        atp = round(self.turnover / self.volume * self.spec.tick, 2) if self.volume else 0.0
        return {"ltp": p(self.ltp), "ltq": self.ltq, "ltt": self.ltt, "atp": atp, "volume": self.volume,
                "total_sell_qty": self.total_sell, "total_buy_qty": self.total_buy,
                "open": p(self.open), "close": p(self.prev_close), "high": p(self.high), "low": p(self.low),
                "oi": self.oi, "oi_day_high": self.oi_high, "oi_day_low": self.oi_low}

    def book(self, levels: int) -> tuple[list[list], list[list]]:
        """`levels` bids and asks `[price, quantity, orders]`, best first, never crossed.

        Drawn from this update's own seed, so the 5-level book of a full packet is exactly the
        top of the 20-level book of the same update. Bid levels that would fall to zero or below
        are empty `[0, 0, 0]`, as an exchange sends them.
        """
        rng = random.Random(self.book_seed)
        spread = rng.choice((1, 1, 1, 2, 3))
        bid = self.ltp - rng.randint(0, spread)
        ask = bid + spread
        lot = self.spec.lot if self.spec.kind != EQUITY else 10
        bids, asks = [], []
        for i in range(levels):
            if i:
                bid -= rng.choice((1, 1, 1, 2))
                ask += rng.choice((1, 1, 1, 2))
            bq, aq = lot * rng.randint(1, 40), lot * rng.randint(1, 40)
            bo, ao = rng.randint(1, min(bq // lot, 30)), rng.randint(1, min(aq // lot, 30))
            bids.append([self.price(bid), bq, bo] if bid > 0 else [0.0, 0, 0])
            asks.append([self.price(ask), aq, ao])
        return bids, asks

    def _encode(self, mode: str, snapshot: bool) -> list[bytes]:
        seg, sid = self.spec.segment, self.spec.security_id
        if mode == TICKER:
            return [encode_ticker(seg, sid, self.price(self.ltp), self.ltt)]
        if mode == FULL and self.spec.has_depth:
            bids, asks = self.book(5)
            return [encode_full(seg, sid, self.quote_fields(), bids, asks)]
        out = [encode_quote(seg, sid, self.quote_fields())]
        if self.spec.has_oi and (snapshot or self.oi_changed):
            out.append(encode_oi(seg, sid, self.oi))
        return out

    def packets(self, mode: str) -> list[bytes]:
        """This update's packets for a subscriber in `mode` (quote: code 4, plus code 5 when OI moved).

        Index spots have no depth, so full mode sends them quote packets.
        """
        out = self._packets.get(mode)
        if out is None:
            out = self._packets[mode] = self._encode(mode, snapshot=False)
        return out

    def snapshot(self, mode: str) -> list[bytes]:
        """What a new subscriber gets at once: prev close (code 6), then the current state in `mode`."""
        seg, sid = self.spec.segment, self.spec.security_id
        return [encode_prev_close(seg, sid, self.price(self.prev_close), self.prev_oi)] + self._encode(mode, True)

    def depth20(self, sequence: int = 0) -> bytes:
        """One 20-level depth frame: the bid packet (41) and the ask packet (51) stacked."""
        bids, asks = self.book(20)
        seg, sid = self.spec.segment, self.spec.security_id
        return (encode_depth_side(DEPTH_BID, seg, sid, bids, sequence)
                + encode_depth_side(DEPTH_ASK, seg, sid, asks, sequence))


def packets_per_update(mode: str, spec: InstrumentSpec) -> float:
    """Mean packets one update costs a subscriber in `mode` (for sharing the rate cap)."""
    if mode == QUOTE and spec.has_oi:
        return 1.3
    return 1.0


def ist_epoch(unix_seconds: float) -> int:
    """A true UTC epoch -> Dhan's LTT (IST wall-clock written as if it were UTC)."""
    return int(unix_seconds) + IST_OFFSET_S
