"""Request JSON: subscribe/unsubscribe chunking, depth, disconnect, URLs, and the simulator's parser."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from dhan_trading.protocol import (ProtocolError, Request, depth_subscribe_messages, depth_url,
                                   disconnect_message, feed_url, parse_request, subscribe_messages,
                                   unsubscribe_messages)

pytestmark = pytest.mark.unit

INSTRUMENTS = [("NSE_FNO", 40000 + i) for i in range(250)]


def test_250_instruments_go_in_three_messages_of_100_100_50():
    messages = [orjson.loads(m) for m in subscribe_messages(INSTRUMENTS, "full")]
    assert [m["InstrumentCount"] for m in messages] == [100, 100, 50]
    assert all(m["RequestCode"] == 21 and len(m["InstrumentList"]) == m["InstrumentCount"] for m in messages)
    listed = [item for m in messages for item in m["InstrumentList"]]
    assert listed == [{"ExchangeSegment": "NSE_FNO", "SecurityId": str(sid)} for _, sid in INSTRUMENTS]
    assert all(isinstance(item["SecurityId"], str) for item in listed)


@pytest.mark.parametrize("mode, sub, unsub", [("ticker", 15, 16), ("quote", 17, 18), ("full", 21, 22)])
def test_request_codes_per_mode(mode, sub, unsub):
    assert orjson.loads(subscribe_messages([("IDX_I", 13)], mode)[0])["RequestCode"] == sub
    assert orjson.loads(unsubscribe_messages([("IDX_I", 13)], mode)[0])["RequestCode"] == unsub


def test_exactly_100_fit_one_message_and_none_give_no_message():
    assert len(subscribe_messages(INSTRUMENTS[:100], "ticker")) == 1
    assert len(subscribe_messages(INSTRUMENTS[:101], "ticker")) == 2
    assert subscribe_messages([], "quote") == []


def test_unknown_mode_is_refused():
    with pytest.raises(KeyError):
        subscribe_messages(INSTRUMENTS[:1], "depth")


def test_depth_subscriptions_chunk_by_the_50_per_connection_limit():
    messages = [orjson.loads(m) for m in depth_subscribe_messages(INSTRUMENTS[:120])]
    assert [(m["RequestCode"], m["InstrumentCount"]) for m in messages] == [(23, 50), (23, 50), (23, 20)]


def test_disconnect_message():
    assert orjson.loads(disconnect_message()) == {"RequestCode": 12}


def test_feed_urls_carry_the_credentials_in_the_query():
    url = feed_url("wss://api-feed.dhan.co/", "tok en/+", "1000000001")
    parts = urlsplit(url)
    assert parts.netloc == "api-feed.dhan.co"
    assert parse_qs(parts.query) == {"version": ["2"], "token": ["tok en/+"], "clientId": ["1000000001"],
                                     "authType": ["2"]}
    depth = urlsplit(depth_url("ws://127.0.0.1:9000", "t", "c"))
    assert depth.path == "/twentydepth" and parse_qs(depth.query) == {
        "token": ["t"], "clientId": ["c"], "authType": ["2"]}


def test_parse_request_reads_back_what_the_builders_write():
    for message in subscribe_messages(INSTRUMENTS, "quote"):
        request = parse_request(message)
        assert request.code == 17 and len(request.instruments) in (100, 50)
    assert parse_request(subscribe_messages([("MCX_COMM", 449735)], "ticker")[0]) == Request(
        15, (("MCX_COMM", 449735),))
    assert parse_request(disconnect_message()) == Request(12)
    assert parse_request(depth_subscribe_messages([("NSE_EQ", 1333)])[0].encode()) == Request(
        23, (("NSE_EQ", 1333),))


def test_parse_request_accepts_the_flat_200_depth_shape_and_the_sdk_unsubscribe_code():
    flat = b'{"RequestCode": 23, "ExchangeSegment": "NSE_EQ", "SecurityId": "1333"}'
    assert parse_request(flat) == Request(23, (("NSE_EQ", 1333),))
    sdk_unsub = orjson.dumps({"RequestCode": 24, "InstrumentCount": 1,
                              "InstrumentList": [{"ExchangeSegment": "NSE_EQ", "SecurityId": "1"}]})
    assert parse_request(sdk_unsub).code == 24


def _sub(**over) -> str:
    obj = {"RequestCode": 15, "InstrumentCount": 1,
           "InstrumentList": [{"ExchangeSegment": "NSE_EQ", "SecurityId": "1333"}]} | over
    return orjson.dumps(obj).decode()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "missing integer RequestCode"),
    ('{"RequestCode": "15"}', "missing integer RequestCode"),
    (_sub(RequestCode=19), "unknown RequestCode 19"),
    (_sub(InstrumentList="1333"), "InstrumentList must be a list"),
    (_sub(InstrumentCount=2), "InstrumentCount 2 != 1 instruments listed"),
    (_sub(InstrumentCount=101, InstrumentList=[{"ExchangeSegment": "NSE_EQ", "SecurityId": "1"}] * 101),
     "101 instruments in one message; at most 100"),
    (_sub(InstrumentList=[{"ExchangeSegment": "NSE_EQ"}]), "bad instrument"),
    (_sub(InstrumentList=[{"ExchangeSegment": "NSE_EQ", "SecurityId": "abc"}]), "bad instrument"),
    (_sub(InstrumentList=["1333"]), "bad instrument"),
    (_sub(InstrumentList=[{"ExchangeSegment": "NSE", "SecurityId": "1"}]), "unknown ExchangeSegment 'NSE'"),
])
def test_parse_request_says_what_is_wrong(text, message):
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[")):
        parse_request(text)


def test_protocol_error_is_a_value_error():
    assert issubclass(ProtocolError, ValueError)
