"""Acceptance: the official dhanhq SDK (2.3.0) reads the simulator as it would read Dhan (§7, §11)."""
from __future__ import annotations

import asyncio

import pytest
from dependency import require

from .sim_client import pick

pytestmark = pytest.mark.integration

dhanhq = require("dhanhq")


def _price(text: str) -> float:
    assert isinstance(text, str) and text.count(".") == 1 and len(text.split(".")[1]) == 2, text
    return float(text)


def _run_sdk(url: str, instruments, n: int) -> list:
    from dhanhq import DhanContext, MarketFeed

    original = MarketFeed.market_feed_wss
    MarketFeed.market_feed_wss = url
    feed = None
    try:
        feed = MarketFeed(DhanContext("1000000001", "TESTTOKEN"), instruments, "v2")
        feed.run_forever()
        return [feed.get_data() for _ in range(n)]
    finally:
        MarketFeed.market_feed_wss = original
        if feed is not None:
            feed.close_connection()  # sends {"RequestCode": 12} and an 83-byte binary frame
            feed.loop.close()
        asyncio.set_event_loop(None)


def _check_quote_like(d: dict) -> None:
    ltp, high, low = _price(d["LTP"]), _price(d["high"]), _price(d["low"])
    assert 0 < low <= ltp <= high and _price(d["open"]) > 0 and _price(d["close"]) > 0
    assert isinstance(d["volume"], int) and d["volume"] >= 0 and len(d["LTT"]) == 8


def test_official_sdk_in_ticker_quote_and_full_modes(sim):
    from dhanhq import MarketFeed

    fut = pick("FUTIDX", lambda i: i.underlying == "NIFTY")
    opt = pick("OPTIDX", lambda i: i.underlying == "NIFTY" and i.strike == 26000)
    instruments = [(MarketFeed.NSE_FNO, str(fut.security_id), MarketFeed.Ticker),
                   (MarketFeed.IDX, "13", MarketFeed.Quote),
                   (MarketFeed.NSE_FNO, str(opt.security_id), MarketFeed.Quote),
                   (MarketFeed.NSE_FNO, str(fut.security_id), MarketFeed.Full)]
    data = _run_sdk(sim.url, instruments, 40)
    by_type: dict[str, list] = {}
    for d in data:
        key = d if isinstance(d, str) else d["type"]
        by_type.setdefault(key, []).append(d)
    assert by_type.get("Markets Open") == ["Markets Open"]
    assert {"Ticker Data", "Quote Data", "OI Data", "Full Data", "Previous Close"} <= set(by_type)
    assert None not in data, "no disconnect or unknown packet"
    for d in by_type["Ticker Data"]:
        assert d["security_id"] == fut.security_id and _price(d["LTP"]) > 20_000 and len(d["LTT"]) == 8
    for d in by_type["Previous Close"]:
        assert _price(d["prev_close"]) > 0 and isinstance(d["prev_OI"], int)
    assert len(by_type["Previous Close"]) == 4, "one per subscription"
    for d in by_type["Quote Data"]:
        _check_quote_like(d)
        assert d["exchange_segment"] in (0, 2)
    for d in by_type["OI Data"]:
        assert d["security_id"] == opt.security_id and d["OI"] > 0
    for d in by_type["Full Data"]:
        _check_quote_like(d)
        assert d["oi_day_low"] <= d["OI"] <= d["oi_day_high"]
        depth = d["depth"]
        assert len(depth) == 5
        bids = [lv["bid_price"] for lv in depth]
        asks = [lv["ask_price"] for lv in depth]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0] and all(lv["bid_quantity"] > 0 and lv["ask_orders"] > 0 for lv in depth)
    assert sim.stats["kicked"] == {}, "the SDK's binary goodbye frame was tolerated"


def test_official_sdk_sees_a_disconnect_packet(sim):
    from dhanhq import DhanContext, MarketFeed

    closed = []
    original = MarketFeed.market_feed_wss
    MarketFeed.market_feed_wss = sim.url
    try:
        feed = MarketFeed(DhanContext("1000000001", "TESTTOKEN"), [(MarketFeed.IDX, "13", MarketFeed.Ticker)],
                          "v2", on_close=closed.append)
        feed.run_forever()
        assert feed.get_data() == "Markets Open"
        sim.kick_all(807)
        data = []
        while len(data) < 10 and (not data or data[-1] is not None):  # what was in flight, then code 50
            data.append(feed.get_data())
        assert data[-1] is None and closed == [feed], "the SDK decoded the disconnect and called on_close"
        feed.loop.close()
    finally:
        MarketFeed.market_feed_wss = original
        asyncio.set_event_loop(None)
