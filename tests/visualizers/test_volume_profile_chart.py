"""The candles + per-bucket volume profile window (issue 10): the model against the analytics
batch functions (time_bars, BucketProfiles), and the real window following a Redis of the test's
own: candles, bucket POCs and their migration on screen, settings, picker, Redis going away."""
from __future__ import annotations

import os
import time

import pytest
import redis

from dhan_trading.analytics.bars import time_bars
from dhan_trading.analytics.profile import BucketProfiles
from dhan_trading.scheduler.calendar import ist_today
from tests.visualizers.test_volume_profile import (DOCS_IMG, has_colour, ist_ns, nifty_future, publish,
                                                   run_entry, session_events)

KEY = ("NSE_FNO", 35001)


def quotes(events):
    return [e for e in events if e["type"] in ("quote", "full")]


def expected_profiles(events, tick, minutes=5, row_ticks=10, fraction=0.70):
    builder = BucketProfiles(tick, minutes * 60, row_ticks, fraction)
    for e in quotes(events):
        builder.add(e["recv_ts"] / 1e9, e["ltp"], e["volume"])
    return dict(builder.profiles())


def expected_bars(events, minutes=5):
    return time_bars([(e["recv_ts"] / 1e9, e["ltp"], e["volume"]) for e in quotes(events)], minutes * 60)


@pytest.mark.unit
def test_auto_rows_are_round_sizes_near_half_a_hundredth_of_a_percent():
    from dhan_trading.visualizers.volume_profile_chart import auto_row_ticks
    assert auto_row_ticks(24_000, 0.1) == 10     # 1 point
    assert auto_row_ticks(24_000, 0.05) == 20
    assert auto_row_ticks(51_000, 0.05) == 50    # 2.5 points
    assert auto_row_ticks(3_000, 0.05) == 2      # 0.15: 0.10 and 0.20 as near, the smaller wins
    assert auto_row_ticks(1_300, 0.05) == 1      # 0.065 -> 0.05
    assert auto_row_ticks(100, 0.05) == 1        # below a tick: one tick
    assert auto_row_ticks(float("nan"), 0.05) == 1


@pytest.mark.unit
def test_model_equals_time_bars_and_bucket_profiles_and_rebuilds():
    from dhan_trading.visualizers.volume_profile_chart import ProfileChartModel

    start = ist_ns(ist_today(), 9, 15)
    events = session_events(KEY, 0.1, 5000, seed=31, start_ns=start, seconds=2 * 3600)
    model = ProfileChartModel(KEY, 0.1)
    for i in range(0, len(events), 999):
        model.apply(events[i:i + 999])
    assert model.row_ticks == 10  # auto, from the first price
    assert model.bars() == expected_bars(events)
    profiles = expected_profiles(events, 0.1)
    assert len(profiles) == 24 and set(model.take_changed()) == set(profiles)
    assert model.take_changed() == set()  # taken
    for s, p in profiles.items():
        got = model.profile(s)
        assert (got.prices, got.volumes, got.poc, got.val, got.vah) == (p.prices, p.volumes, p.poc, p.val, p.vah)
    assert model.pocs() == [(s, p.poc) for s, p in sorted(profiles.items())]

    model.configure(minutes=15, row_ticks=8, fraction=0.5)
    assert model.bars() == expected_bars(events, 15)
    profiles = expected_profiles(events, 0.1, 15, 8, 0.5)
    assert model.pocs() == [(s, p.poc) for s, p in sorted(profiles.items())]
    assert all(model.profile(s).vah == p.vah for s, p in profiles.items())


@pytest.mark.unit
def test_late_gap_and_garbage():
    from dhan_trading.visualizers.volume_profile_chart import ProfileChartModel

    events = session_events(KEY, 0.1, 800, seed=32, depth_every=0, start_ns=ist_ns(ist_today(), 10, 0),
                            seconds=1200)
    for e in events[400:]:
        e["volume"] += 90_000  # traded during a reconnect
    model = ProfileChartModel(KEY, 0.1, row_ticks=5)
    model.apply(events + [{"type": "full", "exchange_segment": KEY[0], "security_id": KEY[1], "ltp": 1.0},
                          {"type": "full", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 1,
                           "ltp": 1.0, "volume": "x"}])
    assert model.bad == 2
    assert sum(b.volume for b in model.bars()) == events[-1]["volume"] - events[0]["volume"]
    model.apply([{"type": "gap", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 0,
                  "reason": "reconnect", "event_id": events[400]["event_id"] - 1}])
    missed = events[400]["volume"] - events[399]["volume"]
    assert sum(b.volume for b in model.bars()) == events[-1]["volume"] - events[0]["volume"] - missed
    total = sum(sum(model.profile(s).volumes) for s, _ in model.pocs())
    assert total == events[-1]["volume"] - events[0]["volume"] - missed


def _window(settings):
    from PyQt6.QtWidgets import QApplication

    from dhan_trading.gui import theme
    from dhan_trading.visualizers.volume_profile_chart import VolumeProfileChartWindow
    theme.apply(QApplication.instance())
    return VolumeProfileChartWindow(settings)


@pytest.mark.gui
@pytest.mark.integration
def test_window_draws_candles_bucket_pocs_and_their_migration(qtbot, own_redis, settings_env, tmp_path):
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9",
                            DHAN_DB_URL=f"sqlite:///{tmp_path / 'dhan.sqlite3'}")
    window = _window(settings)
    qtbot.addWidget(window)
    window.resize(1400, 820)
    window.show()
    qtbot.waitUntil(lambda: window.instruments != [], timeout=30_000)
    instrument = window.instruments[0]
    assert instrument.underlying == "NIFTY" and instrument.instrument == "FUTIDX"
    key, tick = instrument.key, instrument.tick_size
    now = time.time_ns()
    start = max(ist_ns(ist_today(), 9, 15), now - int(3.5 * 3600e9))
    events = session_events(key, tick, 12_000, seed=41, price=24_050.0, start_ns=start,
                            seconds=(now - start) / 1e9, depth_every=0)
    client = redis.Redis.from_url(own_redis.url)
    publish(client, events[:7000] + session_events(("NSE_FNO", 1), 0.05, 200, seed=42))
    client.xadd("dhan:quotes:stream", {b"data": b"{not json"})
    publish(client, events[7000:])
    qtbot.waitUntil(lambda: window.model.quotes == len(quotes(events)), timeout=30_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=10_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)

    row_ticks = window.model.row_ticks
    assert row_ticks == round(1 / tick)  # auto rows for NIFTY near 24,000: 1 point
    bars = expected_bars(events)
    profiles = expected_profiles(events, tick, 5, row_ticks)
    assert window.model.bars() == bars
    assert window.poc_by_bucket == {s: p.poc for s, p in profiles.items()}
    assert set(window.profile_items) == set(profiles)
    seconds = 300
    centre = lambda p: p + (row_ticks - 1) * tick / 2  # noqa: E731
    xs, ys = window.poc_marks.getData()
    assert list(ys[::2]) == pytest.approx([centre(p.poc) for _, p in sorted(profiles.items())])
    assert list(xs[::2]) == pytest.approx([s + seconds * 0.32 for s in sorted(profiles)])
    # each bucket's rows beside its candle, its largest row the full width
    s0 = sorted(profiles)[3]
    item = window.profile_items[s0]
    assert max(item.opts["width"]) == pytest.approx(seconds * 0.62)
    assert sorted(item.opts["y"]) == pytest.approx(sorted(centre(p) for p, v in zip(profiles[s0].prices,
                                                                                      profiles[s0].volumes) if v))
    # migration: one segment per pair of buckets, coloured by where the POC went
    pocs = [p.poc for _, p in sorted(profiles.items())]
    steps = [round((b - a) / tick) for a, b in zip(pocs, pocs[1:])]
    def count(name):
        xs = window.migration[name].getData()[0]
        return 0 if xs is None else len(xs) // 2
    assert (count("up"), count("down"), count("flat")) == \
        (sum(s > 0 for s in steps), sum(s < 0 for s in steps), sum(s == 0 for s in steps))
    assert sum(window.volume_up.opts["height"]) + sum(window.volume_down.opts["height"]) == \
        sum(b.volume for b in bars)
    assert window.last_line.value() == pytest.approx(events[-1]["ltp"])
    window.crosshair.move_to(bars[-2].start_ts + 100, bars[-2].close)
    assert f"volume {bars[-2].volume:,}" in window.crosshair.text
    window.crosshair.move_to(bars[-6].start_ts + 150, bars[-6].high)
    path = tmp_path / "volume_profile_chart.png"
    window.grab().save(str(path))
    if DOCS_IMG:
        window.grab().save(os.path.join(DOCS_IMG, "volume_profile_chart.png"))
    assert path.stat().st_size > 20_000

    # settings rebuild from memory
    window.minutes_box.setCurrentIndex(window.minutes_box.findData(15))
    window.row_ticks_box.setValue(10)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    profiles = expected_profiles(events, tick, 15, 10)
    assert window.poc_by_bucket == {s: p.poc for s, p in profiles.items()}
    assert set(window.profile_items) == set(profiles)

    # Redis away and back: disconnected, then resumes without a gap
    own_redis.stop()
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    more = session_events(key, tick, 300, seed=43, price=events[-1]["ltp"], cum=events[-1]["volume"],
                          start_ns=time.time_ns(), seconds=30, depth_every=0)
    publish(client, more)
    qtbot.waitUntil(lambda: window.model.quotes == len(quotes(events + more)), timeout=30_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    assert window.model.bars() == expected_bars(events + more, 15)
    profiles = expected_profiles(events + more, tick, 15, 10)
    assert window.poc_by_bucket == {s: p.poc for s, p in profiles.items()}

    # the picker: another instrument, a fresh chart
    qtbot.keyClicks(window.picker, "BANKNIFTY FUT")
    qtbot.keyClick(window.picker, "\r")
    qtbot.waitUntil(lambda: window.instruments[0].underlying == "BANKNIFTY", timeout=10_000)
    other = window.instruments[0]
    bank = session_events(other.key, other.tick_size, 400, seed=44, price=51_000.0, seconds=900, depth_every=0)
    publish(client, bank)
    qtbot.waitUntil(lambda: window.model.quotes == len(quotes(bank)), timeout=30_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    profiles = expected_profiles(bank, other.tick_size, 15, 10)
    assert window.poc_by_bucket == {s: p.poc for s, p in profiles.items()}
    window.close()
    client.close()


@pytest.mark.gui
def test_unknown_instrument_is_said(qtbot, settings_env):
    from dhan_trading.visualizers.volume_profile_chart import VolumeProfileChartWindow

    settings = settings_env(REDIS_URL="redis://127.0.0.1:1/0", DHAN_FEED_URL="ws://127.0.0.1:9")
    window = VolumeProfileChartWindow(settings, "NO SUCH THING")
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: "no instrument matches" in window.message.text(), timeout=30_000)
    window.redraw()
    qtbot.keyClicks(window.picker, "RELIANCE")
    qtbot.keyClick(window.picker, "\r")
    qtbot.waitUntil(lambda: window.model is not None, timeout=10_000)
    window.redraw()  # an empty day
    assert "no trades yet" in window.summary.text()
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_command_line_entry_starts_and_shows_data(own_redis, settings_env, tmp_path):
    instrument = nifty_future(settings_env(DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DATA_DIR=str(tmp_path / "var")))
    client = redis.Redis.from_url(own_redis.url)
    publish(client, session_events(instrument.key, instrument.tick_size, 3000, seed=52, seconds=1800,
                                   depth_every=0))
    code, picture = run_entry("dhan_trading.visualizers.volume_profile_chart", own_redis, tmp_path)
    client.close()
    assert code == 0 and picture.stat().st_size > 20_000
    assert has_colour(picture, "#42a5f5")  # bucket POC marks: profiles drawn from the stream
