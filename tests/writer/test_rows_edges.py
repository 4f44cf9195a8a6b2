"""Conversion edge cases an operator meets as dead-letter reasons (issue 12 item 1): a null key,
depth with more levels than the table holds, and a price codec of someone else's."""
import orjson
import pytest

from dhan_trading import bus
from dhan_trading.subscribers import rows as R

pytestmark = pytest.mark.unit


def entry(**event) -> dict:
    return {bus.STREAM_FIELD: orjson.dumps(event)}


TICK = {"type": "ticker", "exchange_segment": "NSE_FNO", "security_id": 42,
        "recv_ts": 1_700_000_000_000_000_000, "ltp": 101.25, "ltt": 1_700_000_000}


@pytest.mark.parametrize("key", ["security_id", "recv_ts"])
def test_a_null_required_key_is_poison_saying_so(key):
    fields = entry(**{**TICK, key: None})
    with pytest.raises(R.Poison, match=f"^{key} is null$"):
        R.entry_row(bus.STREAM_TICKS, b"1-0", fields, R.sqlite_price)
    with pytest.raises(R.Poison, match=f"^{key} is null$"):  # the writer's fast path says the same
        R.row_maker(bus.STREAM_TICKS, R.sqlite_price)(b"1-0", fields)


def test_depth_with_more_levels_than_the_table_holds_is_poison():
    too_many = [[100.0 + i, 1, 1] for i in range(1000)]
    event = {"type": "depth", "exchange_segment": "NSE_FNO", "security_id": 1, "recv_ts": 1,
             "bids": too_many, "asks": [[101.0, 1, 1]]}
    with pytest.raises(R.Poison, match="bids has 1000 levels, more than the table holds"):
        R.event_row(bus.STREAM_DEPTH, b"1-0", event, R.mysql_price)
    with pytest.raises(R.Poison, match="bids has 1000 levels"):
        R.row_maker(bus.STREAM_DEPTH, R.mysql_price)(b"1-0", entry(**event))


def test_a_price_codec_of_someone_elses_gets_entry_rows_for_every_stream():
    def cents(value: float) -> int:
        return round(value * 100)
    quote = dict(TICK, type="quote", ltq=3, atp=100.5, volume=10)
    gap = {"type": "gap", "exchange_segment": "NSE_FNO", "security_id": 7, "recv_ts": 5,
           "reason": "stall", "last_ltt": 1, "last_volume": 2, "resume_ltt": 3, "resume_volume": 4}
    for stream, event in ((bus.STREAM_TICKS, TICK), (bus.STREAM_QUOTES, quote), (bus.STREAM_GAPS, gap)):
        make = R.row_maker(stream, cents)
        row = make(b"5-3", [bus.STREAM_FIELD, orjson.dumps(event)])  # a raw reply's flat fields
        assert row == R.entry_row(stream, b"5-3", entry(**event), cents)
        assert row[0] == (5 << 20) | 3
    assert R.row_maker(bus.STREAM_TICKS, cents)(b"1-0", entry(**TICK))[4] == 10125
    with pytest.raises(R.Poison, match="bad JSON"):
        R.row_maker(bus.STREAM_TICKS, cents)(b"1-0", {bus.STREAM_FIELD: b"{nope"})
