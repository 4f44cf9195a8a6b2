"""The synthetic market is believable: tick grid, consistent day statistics, sane books, stable seeds."""
from __future__ import annotations

import math
from datetime import date

import pytest

from dhan_trading.protocol.decode import decode_frames
from dhan_trading.simulator.market import (FULL, QUOTE, TICKER, Catalogue, InstrumentState, ist_epoch,
                                           load_catalogue)
from dhan_trading.simulator.schedule import Scheduler, TokenBucket

from .sim_client import sample_instruments

pytestmark = pytest.mark.unit

TODAY = date(2026, 11, 21)


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue(sample_instruments(), seed=3, today=TODAY)


def _key(predicate):
    i = next(i for i in sample_instruments() if predicate(i))
    return i.exchange_segment, i.security_id


def _on_grid(price: float, tick: float) -> bool:
    return abs(price / tick - round(price / tick)) < 1e-6


def _walk(spec, steps=400, seed=3):
    st = InstrumentState(spec, seed, ltt=1_000)
    yield st
    for n in range(steps):
        st.step(1_000 + n)
        yield st


@pytest.mark.parametrize("predicate", [
    lambda i: i.instrument == "FUTIDX", lambda i: i.instrument == "OPTIDX" and i.strike == 27000,
    lambda i: i.instrument == "EQUITY", lambda i: i.instrument == "FUTCOM", lambda i: i.instrument == "INDEX",
], ids=["future", "far-otm-option", "equity", "mcx", "index"])
def test_day_statistics_stay_consistent(catalogue, predicate):
    spec = catalogue.spec(*_key(predicate))
    last_volume = -1
    for st in _walk(spec):
        q = st.quote_fields()
        for name in ("ltp", "open", "high", "low", "close"):
            assert q[name] > 0 and _on_grid(q[name], spec.tick), (name, q[name], spec.tick)
        assert q["low"] <= q["ltp"] <= q["high"] and q["low"] <= q["open"] <= q["high"]
        assert q["volume"] >= last_volume
        last_volume = q["volume"]
        if spec.kind != "index":
            assert q["low"] - 0.01 <= q["atp"] <= q["high"] + 0.01 and 0 < q["ltq"] <= 0xFFFF
        if spec.has_oi:
            assert q["oi_day_low"] <= q["oi"] <= q["oi_day_high"]
        else:
            assert q["oi"] == 0


def test_books_are_best_first_never_crossed_and_depth5_is_the_top_of_depth20(catalogue):
    spec = catalogue.spec(*_key(lambda i: i.instrument == "OPTIDX" and i.strike == 25000 and i.option_type == "PE"))
    for st in _walk(spec, 200):
        bids20, asks20 = st.book(20)
        bids5, asks5 = st.book(5)
        assert (bids5, asks5) == (bids20[:5], asks20[:5])
        live = [b[0] for b in bids20 if b[1]]
        asks = [a[0] for a in asks20]
        assert live == sorted(live, reverse=True) and len(set(live)) == len(live)
        assert asks == sorted(asks) and len(set(asks)) == 20
        assert all(_on_grid(p, spec.tick) for p in live + asks)
        ltp = st.quote_fields()["ltp"]
        assert (live[0] if live else 0) <= ltp <= asks[0] and (not live or live[0] < asks[0])


def test_encoded_packets_decode_back_to_the_state(catalogue):
    key = _key(lambda i: i.instrument == "FUTIDX")
    st = InstrumentState(catalogue.spec(*key), 1, ltt=ist_epoch(1_795_000_000))
    st.step(ist_epoch(1_795_000_001))
    ticks = {key: st.spec.tick}
    events = decode_frames(st.packets(FULL) + st.packets(TICKER) + st.snapshot(QUOTE), 0, ticks).events()
    full, ticker, prev, quote = events[0], events[2], events[3], events[4]
    q = st.quote_fields()
    assert full["type"] == "full" and full["ltp"] == q["ltp"] and full["volume"] == q["volume"]
    assert events[1]["type"] == "depth" and events[1]["bids"][0][0] < events[1]["asks"][0][0]
    assert ticker == {**ticker, "type": "ticker", "ltp": q["ltp"], "ltt": 1_795_000_001 + 19_800}
    assert prev["type"] == "prev_close" and prev["prev_close"] == q["close"]
    assert quote["type"] == "quote" and events[5] == {**events[5], "type": "oi", "oi": q["oi"]}


def test_sample_ids_get_their_real_tick_and_a_plausible_price(catalogue):
    nifty_fut = catalogue.spec(*_key(lambda i: i.instrument == "FUTIDX" and i.underlying == "NIFTY"))
    crude = catalogue.spec(*_key(lambda i: i.instrument == "FUTCOM" and i.underlying == "CRUDEOIL"))
    atm = catalogue.spec(*_key(lambda i: i.instrument == "OPTIDX" and i.underlying == "NIFTY" and i.strike == 26000))
    deep_itm = catalogue.spec(*_key(lambda i: i.instrument == "OPTIDX" and i.underlying == "NIFTY"
                                    and i.strike == 25000 and i.option_type == "CE"))
    assert nifty_fut.known and nifty_fut.tick == 0.1 and 25_900 < nifty_fut.price < 26_500
    assert crude.tick == 1.0 and crude.lot == 100 and 5_000 < crude.price < 5_500
    assert atm.tick == 0.05 and 20 < atm.price < 500
    assert deep_itm.price > 1_000  # intrinsic value of a 1000-point ITM call
    index = catalogue.spec("IDX_I", 13)
    assert index.kind == "index" and index.price == 26_000.0 and index.rate == 1.0


def test_busy_and_quiet_instruments_differ(catalogue):
    def rate(predicate):
        return catalogue.spec(*_key(predicate)).rate
    atm = rate(lambda i: i.instrument == "OPTIDX" and i.underlying == "NIFTY" and i.strike == 26000)
    far = rate(lambda i: i.instrument == "OPTIDX" and i.underlying == "NIFTY" and i.strike == 27000)
    near_fut = rate(lambda i: i.instrument == "FUTIDX" and i.underlying == "NIFTY" and i.expiry.month == 11)
    far_fut = rate(lambda i: i.instrument == "FUTIDX" and i.underlying == "NIFTY" and i.expiry.year == 2027)
    assert atm > 5 * far and near_fut > far_fut and catalogue.spec("IDX_I", 13).rate == 1.0


def test_unknown_ids_get_stable_synthetic_specs():
    a, b = Catalogue(seed=5), Catalogue(seed=5)
    for key in [("NSE_FNO", 12345), ("NSE_EQ", 1), ("IDX_I", 999), ("MCX_COMM", 42)]:
        spec = a.spec(*key)
        assert spec == b.spec(*key) and not spec.known and spec.price > 0 and _on_grid(spec.price, spec.tick)
    assert a.spec("MCX_COMM", 42).tick == 1.0 and a.spec("NSE_FNO", 12345).has_oi
    assert a.spec("IDX_I", 999).kind == "index" and not a.spec("NSE_EQ", 1).has_oi


def test_same_seed_same_path_other_seed_other_path(catalogue):
    spec = catalogue.spec(*_key(lambda i: i.instrument == "FUTSTK"))

    def path(seed):
        return [b"".join(st.packets(FULL)) for st in _walk(spec, 50, seed)][1:]
    assert path(11) == path(11)
    assert path(11) != path(12)


def test_load_catalogue_reads_the_bundled_master():
    from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
    catalogue = load_catalogue(str(SAMPLE_INSTRUMENTS_CSV))
    assert len(catalogue) == len(sample_instruments()) and ("IDX_I", 13) in catalogue
    assert len(load_catalogue(None)) == 0


def test_token_bucket_never_exceeds_its_rate():
    bucket, sent, now = TokenBucket(100, 10, 0.0), 0, 0.0
    while now < 10:
        wait = bucket.take(3, now)
        sent += 3
        now += max(wait, 0.001)
    assert sent <= 100 * 10 + 10 + 3


def test_scheduler_scales_rates_to_the_cap_and_keeps_relative_busyness():
    sched = Scheduler(cap=100, seed=1)
    for i in range(50):
        sched.set(("busy", i), 8.0, 1.0, 0.0)
        sched.set(("quiet", i), 1.0, 1.0, 0.0)
    assert sched.demand == pytest.approx(450) and sched.scale == pytest.approx(100 / 450)
    counts = {"busy": 0, "quiet": 0}
    now = 0.0
    while now < 60:
        now += 0.01
        while (item := sched.pop(now)) is not None:
            counts[item[0][0]] += 1
    total = counts["busy"] + counts["quiet"]
    assert 80 * 60 < total < 120 * 60
    assert 5 < counts["busy"] / counts["quiet"] < 12
    for i in range(50):
        sched.set(("busy", i), 8.0, 0.0, now)
    assert sched.demand == pytest.approx(50) and sched.scale == 1.0 and len(sched) == 50


def test_scheduler_order_is_deterministic():
    def order():
        sched, out = Scheduler(cap=1000, seed=4), []
        for i in range(20):
            sched.set(i, 1.0 + i % 5, 1.0, 0.0)
        now = 0.0
        while len(out) < 300:
            now += 0.05
            while (item := sched.pop(now)) is not None:
                out.append(item)
        return out
    assert order() == order()
    assert math.isfinite(order()[-1][1])
