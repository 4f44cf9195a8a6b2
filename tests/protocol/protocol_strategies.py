"""Packets as plain values, their expected events, and hypothesis strategies that generate them.

The expected events are written here independently of the decoder (decimal arithmetic on the
tick grid), so a test compares the decoder against the protocol, not against itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hypothesis import strategies as st

from dhan_trading.protocol import (encode_full, encode_market_status, encode_oi, encode_prev_close,
                                   encode_quote, encode_ticker)

TICKS = {"0.05": 0.05, "0.01": 0.01, "0.10": 0.1, "1": 1.0}
U16, U32 = 2**16 - 1, 2**32 - 1
LTT_2026 = 1_780_000_000  # a plausible (IST-shifted) epoch


def on_grid(steps: int, tick: str) -> float:
    """The float nearest to `steps` ticks: what a decoded, tick-snapped price must equal."""
    return float(Decimal(steps) * Decimal(tick))


@dataclass(frozen=True)
class Packet:
    """One main-feed packet as the exchange meant it: kind, instrument and event fields."""

    kind: str
    segment: str
    security_id: int
    fields: dict

    def encode(self) -> bytes:
        f = self.fields
        if self.kind == "ticker":
            return encode_ticker(self.segment, self.security_id, f["ltp"], f["ltt"])
        if self.kind == "quote":
            return encode_quote(self.segment, self.security_id, f)
        if self.kind == "full":
            return encode_full(self.segment, self.security_id, f, f["bids"], f["asks"])
        if self.kind == "oi":
            return encode_oi(self.segment, self.security_id, f["oi"])
        if self.kind == "prev_close":
            return encode_prev_close(self.segment, self.security_id, f["prev_close"], f["prev_oi"])
        return encode_market_status(self.segment, self.security_id)

    def events(self, recv_ts: int) -> list[dict]:
        """The event(s) DESIGN §3.3 says this packet becomes (a full packet: full + depth)."""
        head = {"type": self.kind, "exchange_segment": self.segment, "security_id": self.security_id,
                "recv_ts": recv_ts}
        body = {k: v for k, v in self.fields.items() if k not in ("bids", "asks")}
        if self.kind != "full":
            return [head | body]
        depth = head | {"type": "depth", "levels": 5, "bids": self.fields["bids"], "asks": self.fields["asks"]}
        return [head | body, depth]


QUOTE_KEYS = ("ltp", "ltq", "ltt", "atp", "volume", "total_buy_qty", "total_sell_qty",
              "open", "high", "low", "close")


@st.composite
def prices(draw, tick: str, low: int = 1, high: int | None = None) -> float:
    """A price on the tick grid, small enough that float32 keeps it exact (§2.9)."""
    limit = 2**17 if Decimal(tick) < 1 else 2**24
    high = high or int(limit / Decimal(tick)) - 1
    return on_grid(draw(st.integers(low, high)), tick)


@st.composite
def levels(draw, tick: str) -> list[list]:
    return [[draw(prices(tick)), draw(st.integers(0, U32)), draw(st.integers(0, U16))] for _ in range(5)]


@st.composite
def quote_fields(draw, tick: str, full: bool) -> dict:
    f = {"ltp": draw(prices(tick)), "ltq": draw(st.integers(0, U16)), "ltt": draw(st.integers(0, U32)),
         "atp": on_grid(draw(st.integers(0, 2**17 * 100 - 1)), "0.01"), "volume": draw(st.integers(0, U32)),
         "total_buy_qty": draw(st.integers(0, U32)),
         "total_sell_qty": draw(st.integers(0, U32)),
         "open": draw(prices(tick)), "high": draw(prices(tick)), "low": draw(prices(tick)),
         "close": draw(prices(tick))}
    if full:
        f |= {"oi": draw(st.integers(0, U32)), "oi_day_high": draw(st.integers(0, U32)),
              "oi_day_low": draw(st.integers(0, U32)), "bids": draw(levels(tick)), "asks": draw(levels(tick))}
    return f


INSTRUMENTS = [("NSE_FNO", 35001, "0.05"), ("NSE_FNO", 35002, "0.05"), ("IDX_I", 13, "0.05"),
               ("NSE_EQ", 1333, "0.05"), ("NSE_EQ", 2885, "0.10"), ("MCX_COMM", 449735, "1"),
               ("BSE_EQ", 500325, "0.01")]
TICK_TABLE = {(seg, sid): TICKS[tick] for seg, sid, tick in INSTRUMENTS}


@st.composite
def packets(draw, kinds=("ticker", "quote", "full", "oi", "prev_close", "market_status")) -> Packet:
    """A packet for one of INSTRUMENTS (whose ticks are in TICK_TABLE)."""
    seg, sid, tick = draw(st.sampled_from(INSTRUMENTS))
    kind = draw(st.sampled_from(kinds))
    if kind == "ticker":
        fields = {"ltp": draw(prices(tick)), "ltt": draw(st.integers(0, U32))}
    elif kind in ("quote", "full"):
        fields = draw(quote_fields(tick, full=kind == "full"))
    elif kind == "oi":
        fields = {"oi": draw(st.integers(0, U32))}
    elif kind == "prev_close":
        fields = {"prev_close": draw(prices(tick)), "prev_oi": draw(st.integers(0, U32))}
    else:
        fields = {}
    return Packet(kind, seg, sid, fields)


def sample_quote(**over) -> dict:
    """A fixed, readable full/quote field set (NIFTY option around 152)."""
    q = {"ltp": 152.3, "ltq": 75, "ltt": LTT_2026, "atp": 151.87, "volume": 1_234_500,
         "total_buy_qty": 40_000, "total_sell_qty": 35_000, "open": 150.0, "high": 155.5, "low": 149.05,
         "close": 148.6, "oi": 2_000_000, "oi_day_high": 2_100_000, "oi_day_low": 1_900_000,
         "bids": [[152.25 - 0.05 * i, 75 * (i + 1), i + 1] for i in range(5)],
         "asks": [[152.35 + 0.05 * i, 150 * (i + 1), i + 2] for i in range(5)]}
    for side in ("bids", "asks"):
        q[side] = [[round(p, 2), qty, n] for p, qty, n in q[side]]
    return q | over
