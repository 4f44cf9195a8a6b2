"""A scrip-master tick of 0, below 0 or NaN (issue 8, item 7): prices still come out real, rounded
to the default tick (2 decimals), and the bad ticks are logged once per load, not per packet."""
from __future__ import annotations

import io
import logging

import orjson
import pytest

from dhan_trading.instruments.master import UNKNOWN_TICK, Instrument, tick_sizes
from dhan_trading.protocol import FeedDecoder, decode_depth_frame, encode_depth_side, encode_full
from dhan_trading.protocol.packets import DEPTH_ASK, DEPTH_BID
from tests.instruments.test_instruments_parse import FUTIDX, OPTION, csv_text

pytestmark = pytest.mark.unit

Q = {"ltp": 101.25, "ltq": 5, "ltt": 1_700_000_000, "atp": 100.0, "volume": 1000, "total_sell_qty": 1,
     "total_buy_qty": 2, "oi": 5, "oi_day_high": 6, "oi_day_low": 4, "open": 99.5, "close": 98.0,
     "high": 102.0, "low": 97.0}
LEVELS = [[101.2, 10, 1]] * 5


def _master(caplog) -> dict:
    rows = [dict(FUTIDX, SEM_SMST_SECURITY_ID="1", SEM_TICK_SIZE="0"),
            dict(OPTION, SEM_SMST_SECURITY_ID="2", SEM_TICK_SIZE="-5.0000"),
            dict(OPTION, SEM_SMST_SECURITY_ID="3", SEM_TICK_SIZE="nan"),
            dict(OPTION, SEM_SMST_SECURITY_ID="4", SEM_TICK_SIZE="5.0000")]
    with caplog.at_level(logging.WARNING):
        from dhan_trading.instruments.master import _read_text
        instruments = _read_text(io.StringIO(csv_text(rows)), "test-master.csv")
        ticks = tick_sizes(instruments)
    return ticks


def test_bad_master_ticks_fall_back_to_the_default_and_are_logged_once(caplog):
    ticks = _master(caplog)
    assert ticks == {("NSE_FNO", 1): UNKNOWN_TICK, ("NSE_FNO", 2): UNKNOWN_TICK,
                     ("NSE_FNO", 3): UNKNOWN_TICK, ("NSE_FNO", 4): pytest.approx(0.05)}
    warnings = [r.getMessage() for r in caplog.records if "tick" in r.getMessage()]
    assert len(warnings) == 1 and "3 instrument(s)" in warnings[0] and "-5.0000" in warnings[0]


@pytest.mark.parametrize("security_id", [1, 2, 3])
def test_a_packet_for_an_instrument_with_a_bad_tick_has_real_prices(security_id, caplog):
    ticks = _master(caplog)
    decoded = FeedDecoder(ticks).decode([encode_full("NSE_FNO", security_id, Q, LEVELS, LEVELS)], 1)
    full = orjson.loads(decoded.render()[1][0])
    assert decoded.errors == 0
    assert (full["ltp"], full["open"], full["high"]) == (101.25, 99.5, 102.0)
    frame = encode_depth_side(DEPTH_BID, "NSE_FNO", security_id, [[101.2, 10, 1]] * 20) + \
        encode_depth_side(DEPTH_ASK, "NSE_FNO", security_id, [[101.3, 10, 1]] * 20)
    depth = orjson.loads(decode_depth_frame(frame, 1, ticks).payloads[0])
    assert depth["bids"][0] == [101.2, 10, 1] and depth["asks"][0] == [101.3, 10, 1]


@pytest.mark.parametrize("tick", [0.0, -0.05, float("nan"), float("inf")])
def test_the_decoders_never_divide_by_a_bad_tick_they_are_given(tick):
    """The protocol layer defends itself too: a tick table built by other code (a replay, a
    table row) with a bad tick gives real prices, not ZeroDivisionError or null."""
    ticks = {("NSE_FNO", 7): tick}
    frame = encode_depth_side(DEPTH_BID, "NSE_FNO", 7, [[101.2, 10, 1]] * 20)
    assert orjson.loads(decode_depth_frame(frame, 1, ticks).payloads[0])["bids"][0] == [101.2, 10, 1]
    decoded = FeedDecoder(ticks).decode([encode_full("NSE_FNO", 7, Q, LEVELS, LEVELS)], 1)
    assert decoded.errors == 0 and orjson.loads(decoded.render()[1][0])["ltp"] == 101.25


def test_tick_sizes_repairs_instruments_built_elsewhere(caplog):
    bad = Instrument("NSE_FNO", 9, "NSE", "FUTIDX", "X-FUT", "X FUT", "X", tick_size=-1.0)
    with caplog.at_level(logging.WARNING):
        assert tick_sizes([bad]) == {("NSE_FNO", 9): UNKNOWN_TICK}
    assert any("NSE_FNO 9" in r.getMessage() for r in caplog.records)
