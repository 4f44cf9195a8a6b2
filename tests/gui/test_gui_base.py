"""The shared window pieces: catalog search, the picker, the freshness badge and the base
window following a real Redis through the history-then-live reader."""
from __future__ import annotations

from datetime import date, datetime

import orjson
import pytest
import redis

from dhan_trading import bus
from dhan_trading.gui.catalog import Catalog, label
from dhan_trading.instruments.master import Instrument
from dhan_trading.live import Status


def inst(seg, sid, kind, symbol, underlying, expiry=None, strike=None, opt=None, custom=""):
    return Instrument(seg, sid, "NSE", kind, symbol, custom or symbol, underlying,
                      expiry=expiry, strike=strike, option_type=opt, tick_size=0.05)


INSTRUMENTS = [
    inst("IDX_I", 13, "INDEX", "NIFTY", "NIFTY", custom="Nifty 50"),
    inst("NSE_FNO", 1, "FUTIDX", "NIFTY-Jan2027-FUT", "NIFTY", datetime(2027, 1, 26, 14, 30)),
    inst("NSE_FNO", 2, "FUTIDX", "NIFTY-Dec2026-FUT", "NIFTY", datetime(2026, 12, 29, 14, 30)),
    inst("NSE_FNO", 3, "FUTIDX", "BANKNIFTY-Dec2026-FUT", "BANKNIFTY", datetime(2026, 12, 29, 14, 30)),
    inst("NSE_FNO", 4, "OPTIDX", "NIFTY-29Dec2026-24000-CE", "NIFTY", datetime(2026, 12, 29, 14, 30), 24000.0, "CE"),
    inst("NSE_FNO", 5, "OPTIDX", "NIFTY-29Dec2026-24000-PE", "NIFTY", datetime(2026, 12, 29, 14, 30), 24000.0, "PE"),
    inst("NSE_EQ", 2885, "EQUITY", "RELIANCE", "RELIANCE", custom="Reliance Industries"),
]


@pytest.mark.unit
def test_catalog_search_matches_word_starts_and_ranks_recorded_first():
    catalog = Catalog(INSTRUMENTS, frozenset({("NSE_FNO", 1)}))
    assert [i.security_id for i in catalog.search("NIFTY 24000 CE")] == [4]
    assert [i.security_id for i in catalog.search("reliance")] == [2885]
    assert [i.security_id for i in catalog.search("rel ind")] == [2885]
    nifty = [i.security_id for i in catalog.search("nifty")]
    assert 3 not in nifty  # BANKNIFTY does not start with NIFTY
    assert nifty[0] == 1  # the recorded one first
    assert catalog.search("   ") == []
    assert catalog.get("NSE_EQ", 2885).trading_symbol == "RELIANCE"


@pytest.mark.unit
def test_default_is_the_nearest_unexpired_future():
    catalog = Catalog(INSTRUMENTS)
    assert catalog.near_future("NIFTY", today=date(2026, 12, 3)).security_id == 2
    assert catalog.near_future("NIFTY", today=date(2026, 12, 30)).security_id == 1
    assert catalog.near_future("NIFTY", today=date(2027, 2, 1)) is None


@pytest.mark.gui
def test_picker_emits_the_instrument_typed(qtbot):
    from dhan_trading.gui.picker import InstrumentPicker
    picker = InstrumentPicker()
    qtbot.addWidget(picker)
    picker.set_catalog(Catalog(INSTRUMENTS))
    qtbot.keyClicks(picker, "nifty 24000 pe")
    assert [label(i) for i in picker.results] == [label(INSTRUMENTS[5])]
    with qtbot.waitSignal(picker.chosen) as signal:
        qtbot.keyClick(picker, "\r")
    assert signal.args[0].security_id == 5


@pytest.mark.gui
def test_badge_words_and_colours(qtbot):
    from dhan_trading.gui.badge import FreshnessBadge
    badge = FreshnessBadge()
    qtbot.addWidget(badge)
    badge.show_status(Status(phase="live", redis_ok=True, last_entry_at=100.0), now=101)
    assert badge.text() == "live" and "#2e7d32" in badge.styleSheet()
    badge.show_status(Status(phase="live", redis_ok=True, last_entry_at=100.0), now=130)
    assert badge.text() == "stale 30 s"
    badge.show_status(Status(phase="live", redis_ok=False, problem="Redis unreachable: refused"), now=130)
    assert badge.text().startswith("disconnected") and "#c62828" in badge.styleSheet()


class CountingWindow:
    """A LiveWindow that counts events per instrument (defined lazily: Qt imports in tests)."""

    @staticmethod
    def make(settings, initial=None):
        from dhan_trading.gui.window import LiveWindow

        class Window(LiveWindow):
            title = "counting"
            streams = (bus.STREAM_QUOTES,)

            def reset(self, instruments):
                self.counts = {i.key: 0 for i in instruments}
                self.redraws = 0

            def apply(self, events):
                for e in events:
                    self.counts[(e["exchange_segment"], e["security_id"])] += 1

            def redraw(self):
                self.redraws += 1

        return Window(settings, initial)


@pytest.mark.gui
@pytest.mark.integration
def test_window_loads_the_catalog_follows_redis_and_survives_garbage(qtbot, own_redis, settings_env):
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9")
    window = CountingWindow.make(settings, initial="RELIANCE")
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.instruments != [], timeout=30_000)
    key = window.instruments[0].key
    assert key[0] == "NSE_EQ"
    client = redis.Redis.from_url(own_redis.url)
    for n in range(30):
        event = {"type": "quote", "exchange_segment": key[0], "security_id": key[1], "recv_ts": n,
                 "ltp": 100.0 + n, "volume": n}
        client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: orjson.dumps(event)})
    client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"garbage"})
    qtbot.waitUntil(lambda: window.counts.get(key) == 30, timeout=30_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=10_000)
    assert window.redraws < 30  # repainted from the timer, not once per event
    own_redis.stop()
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    window.close()
    client.close()


@pytest.mark.gui
def test_window_says_when_nothing_matches(qtbot, settings_env):
    settings = settings_env(REDIS_URL="redis://127.0.0.1:1/0", DHAN_FEED_URL="ws://127.0.0.1:9")
    window = CountingWindow.make(settings, initial="NO SUCH THING")
    qtbot.addWidget(window)
    window.finish_layout()
    qtbot.waitUntil(lambda: "no instrument matches" in window.message.text(), timeout=30_000)
    window.close()


@pytest.mark.unit
def test_drain_takes_at_most_the_limit_and_keeps_the_rest_in_order():
    from dhan_trading.gui.bridge import LiveFeed
    feed = LiveFeed((), connect=None, engine=None)
    feed.queue.extend([[1, 2, 3], [4, 5], [6]])
    feed.queued = 6
    assert feed.drain(4) == [1, 2, 3, 4]
    assert feed.queued == 2
    assert feed.drain(10) == [5, 6] and feed.queued == 0 and feed.drain() == []
