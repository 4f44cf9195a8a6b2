"""The volume profile window (issue 10): the pure model against the analytics batch functions,
the previous session read from a SQLite file written by the real writer's store, and the real
window following a Redis of the test's own (numbers in the widgets, settings, picker, Redis
going away and coming back, the database down, garbage)."""
from __future__ import annotations

import math
import os
import random
import time
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from dhan_trading import bus
from dhan_trading.analytics.profile import ProfileBuilder, build_profile, session_levels
from dhan_trading.scheduler.calendar import IST, ist_today

REPO = Path(__file__).resolve().parents[2]
DOCS_IMG = os.environ.get("DHAN_DOCS_IMG")  # set to docs/img to refresh the documentation's pictures


# ---- a simulated session ---------------------------------------------------------------------
def session_events(key, tick: float, n: int, *, seed: int = 7, price: float = 24_000.0,
                   start_ns: int | None = None, seconds: float = 3 * 3600, cum: int = 50_000,
                   depth_every: int = 3, first_id: int = 1) -> list[dict]:
    """A plausible day of one instrument: a random walk on the tick grid with a slow drift and
    mean reversion, cumulative volume rising by lognormal lots, a `full` event per update with
    the running VWAP, and a depth event every `depth_every` updates (best bid/ask around the
    trade, so the quote rule has something to say). Events carry an `event_id` (for the model
    tests; the stream assigns its own when published)."""
    rng = random.Random(seed)
    start_ns = start_ns if start_ns is not None else time.time_ns() - int(seconds * 1e9)
    units_ = round(price / tick)
    anchor = units_
    notional = 0.0
    traded = 0
    out: list[dict] = []
    event_id = first_id
    for i in range(n):
        ts = start_ns + int(i * seconds / n * 1e9)
        if i % 700 == 0:
            anchor += rng.randint(-300, 300)  # the market's slow migration
        pull = (anchor - units_) * 0.02
        units_ += round(rng.gauss(pull, 3.5))
        ltp = round(units_ * tick, 4)
        lots = max(1, int(rng.lognormvariate(1.2, 0.9)))
        size = lots * 25 if rng.random() < 0.9 else 0  # some updates are quote refreshes
        cum += size
        traded += size
        notional += size * ltp
        if depth_every and i % depth_every == 0:
            spread = rng.choice((1, 1, 2))
            bid = round((units_ - rng.choice((0, spread))) * tick, 4)
            out.append({"type": "depth", "exchange_segment": key[0], "security_id": key[1],
                        "recv_ts": ts, "levels": 5, "event_id": event_id,
                        "bids": [[bid, 150, 3]] + [[round(bid - k * tick, 4), 100, 2] for k in range(1, 5)],
                        "asks": [[round(bid + spread * tick, 4), 120, 2]] +
                                [[round(bid + (spread + k) * tick, 4), 100, 2] for k in range(1, 5)]})
            event_id += 1
        out.append({"type": "full", "exchange_segment": key[0], "security_id": key[1], "recv_ts": ts + 1,
                    "ltp": ltp, "ltt": ts // 10**9 + 19_800, "ltq": size, "volume": cum,
                    "atp": round(notional / traded, 2) if traded else ltp,
                    "total_buy_qty": 1000, "total_sell_qty": 1000, "open": price, "high": ltp,
                    "low": ltp, "close": price, "oi": 100_000, "event_id": event_id})
        event_id += 1
    return out


def updates_of(events) -> list[tuple[float, int]]:
    return [(e["ltp"], e["volume"]) for e in events if e["type"] in ("quote", "full")]


def publish(client: redis.Redis, events) -> None:
    pipe = client.pipeline(transaction=False)
    for e in events:
        payload = {k: v for k, v in e.items() if k != "event_id"}
        stream = bus.STREAM_GAPS if e["type"] == "gap" else bus.EVENT_STREAM[e["type"]]
        pipe.xadd(stream, {bus.STREAM_FIELD: orjson.dumps(payload)})
    pipe.execute()


def store_events(db_url: str, events) -> None:
    """Write events to the database as the DB writer does (its rows and its store)."""
    from sqlalchemy import create_engine

    from dhan_trading.schema import create_tables, event_id_to_stream_id
    from dhan_trading.subscribers import rows
    from dhan_trading.subscribers.store import EventStore

    engine = create_engine(db_url)
    create_tables(engine)
    store = EventStore(engine)
    batch: dict[str, list[tuple]] = {}
    for e in events:
        stream = bus.STREAM_GAPS if e["type"] == "gap" else bus.EVENT_STREAM[e["type"]]
        payload = {k: v for k, v in e.items() if k != "event_id"}
        row = rows.event_row(stream, event_id_to_stream_id(e["event_id"]), payload, store.price)
        batch.setdefault(rows.STREAM_TABLE[stream], []).append(row)
    store.write(batch)
    store.close()
    engine.dispose()


def ist_ns(day: date, hh: int, mm: int) -> int:
    return int(datetime.combine(day, dtime(hh, mm), IST).timestamp()) * 10**9


def previous_day_events(key, tick, n=3000, seed=21, price=24_000.0):
    """A stored previous session: event ids from that day's clock, so they sort before today's."""
    day = ist_today() - timedelta(days=1)
    start = ist_ns(day, 9, 15)
    first_id = (start // 10**6) << 20
    return day, session_events(key, tick, n, seed=seed, price=price, start_ns=start,
                               seconds=6 * 3600, first_id=first_id)


# ---- the model (no Qt, no I/O) ---------------------------------------------------------------
KEY = ("NSE_FNO", 35001)


@pytest.mark.unit
@pytest.mark.parametrize("row_ticks,fraction,method", [(1, 0.70, "dual"), (3, 0.80, "single"),
                                                       (10, 0.68, "dual")])
def test_model_equals_the_batch_profile_and_rebuilds_on_a_setting(row_ticks, fraction, method):
    from dhan_trading.visualizers.volume_profile import VolumeProfileModel

    events = session_events(KEY, 0.05, 4000, seed=3)
    model = VolumeProfileModel(KEY, 0.05)
    for i in range(0, len(events), 777):  # batches as the repaint timer drains them
        model.apply(events[i:i + 777])
    expected = build_profile(updates_of(events), 0.05)
    got = model.profile()
    assert (got.prices, got.volumes, got.poc, got.val, got.vah) == \
        (expected.prices, expected.volumes, expected.poc, expected.val, expected.vah)
    # quote rule from depth: every row splits into bought + sold + unknown, most of it known
    assert all(u + d <= v for u, d, v in zip(got.up, got.down, got.volumes))
    assert sum(got.up) + sum(got.down) > 0.9 * sum(got.volumes)
    assert model.quote_ruled > 0 and "quote rule" in model.rule()

    model.configure(row_ticks, fraction, method)  # rebuilt from the tape kept in memory
    expected = build_profile(updates_of(events), 0.05, row_ticks, fraction, method)
    got = model.profile()
    assert (got.prices, got.volumes, got.poc, got.val, got.vah) == \
        (expected.prices, expected.volumes, expected.poc, expected.val, expected.vah)
    info = model.info()
    assert info.total == sum(expected.volumes) == events[-1]["volume"] - events[1]["volume"]
    assert info.last == events[-1]["ltp"]
    assert info.from_poc_ticks == round((info.last - expected.poc) / 0.05)
    assert math.isclose(info.from_poc_points, info.last - expected.poc, abs_tol=1e-9)
    prices = [p for p, _ in updates_of(events)]
    assert (info.high, info.low) == (max(prices), min(prices))
    assert info.vwap == events[-1]["atp"] and info.vwap_source == "exchange"


@pytest.mark.unit
def test_tick_rule_without_depth_and_the_developing_poc():
    from dhan_trading.visualizers.volume_profile import VolumeProfileModel

    events = session_events(KEY, 0.05, 1500, seed=4, depth_every=0, seconds=1800,
                            start_ns=ist_ns(ist_today(), 10, 0))
    model = VolumeProfileModel(KEY, 0.05)
    model.apply(events)
    assert model.quote_ruled == 0 and "tick rule" in model.rule()
    expected = build_profile(updates_of(events), 0.05)
    got = model.profile()
    assert (got.up, got.down) == (expected.up, expected.down)  # build_profile splits by the tick rule
    developing = model.developing()
    assert len(developing) == 30  # one point per minute of a 30-minute session
    assert developing[-1].poc == expected.poc
    assert [t for t, _ in model.price_path()] == [d.ts for d in developing]


@pytest.mark.unit
def test_a_gap_read_after_later_updates_is_put_in_its_place():
    """The gaps stream is read from Redis after the database history: a reconnect gap arrives
    behind the updates that followed it, and the volume missed in the hole goes to no price."""
    from dhan_trading.visualizers.volume_profile import VolumeProfileModel

    events = session_events(KEY, 0.05, 600, seed=5, depth_every=0)
    gap_at = 300
    gap = {"type": "gap", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 0,
           "reason": "reconnect", "event_id": events[gap_at]["event_id"] - 1}
    for e in events[gap_at:]:
        e["volume"] += 40_000  # what traded while the socket was down
    model = VolumeProfileModel(KEY, 0.05)
    model.apply(events)
    model.apply([gap])
    reference = ProfileBuilder(0.05)
    for i, e in enumerate(events):
        if i == gap_at:
            reference.gap()
        reference.add(e["ltp"], e["volume"])
    assert model.profile().volumes == reference.profile().volumes
    assert sum(model.profile().volumes) == events[-1]["volume"] - events[0]["volume"] - 40_000 - \
        (events[gap_at]["volume"] - events[gap_at - 1]["volume"] - 40_000)
    assert model.gaps == 1


@pytest.mark.unit
def test_garbage_is_counted_not_raised():
    from dhan_trading.visualizers.volume_profile import VolumeProfileModel

    events = session_events(KEY, 0.05, 200, seed=6)
    garbage = [
        {"type": "full", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 1, "ltp": 1.0},
        {"type": "full", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 1, "ltp": "x",
         "volume": 10**9},
        {"type": "full", "exchange_segment": KEY[0], "security_id": KEY[1], "ltp": 1.0, "volume": 10**9},
        {"type": "depth", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 1, "bids": [["a"]]},
        {"type": "depth", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 1, "bids": 5},
        {"type": "full", "exchange_segment": KEY[0], "security_id": KEY[1], "recv_ts": 1,
         "ltp": 1.0, "volume": -5},
    ]
    model = VolumeProfileModel(KEY, 0.05)
    model.apply(events[:100] + garbage + events[100:] + [{}, {"type": "oi"}])
    assert model.bad == len(garbage)
    assert model.profile().volumes == build_profile(updates_of(events), 0.05).volumes
    other = dict(events[-1], security_id=999, ltp=1.0)  # another instrument: not ours
    model.apply([other])
    assert model.last == events[-1]["ltp"]


# ---- the previous session from the database ---------------------------------------------------
@pytest.mark.integration
def test_previous_session_is_the_newest_stored_day_before_today(tmp_path):
    from sqlalchemy import create_engine

    from dhan_trading.visualizers.volume_profile import VolumeProfileModel, load_previous_session

    url = f"sqlite:///{tmp_path / 'prev.sqlite3'}"
    day, events = previous_day_events(KEY, 0.05)
    older = session_events(KEY, 0.05, 100, seed=8, start_ns=ist_ns(day - timedelta(days=3), 10, 0),
                           first_id=(ist_ns(day - timedelta(days=3), 10, 0) // 10**6) << 20)
    store_events(url, older + events)
    engine = create_engine(url)
    try:
        got_day, got = load_previous_session(engine, KEY)
        assert got_day == day
        assert [e["event_id"] for e in got if e["type"] == "full"] == \
            [e["event_id"] for e in events if e["type"] == "full"]
        model = VolumeProfileModel(KEY, 0.05, row_ticks=2)
        model.set_previous(got_day, got)
        assert model.previous.day == day
        assert (model.previous.poc, model.previous.val, model.previous.vah) == \
            tuple(session_levels(updates_of(events), 0.05, 2))
        model.configure(method="single")
        assert (model.previous.poc, model.previous.val, model.previous.vah) == \
            tuple(session_levels(updates_of(events), 0.05, 2, method="single"))
        assert load_previous_session(engine, ("NSE_FNO", 424242)) == (None, [])
    finally:
        engine.dispose()


# ---- the window -------------------------------------------------------------------------------
def _window(settings):
    from PyQt6.QtWidgets import QApplication

    from dhan_trading.gui import theme
    from dhan_trading.visualizers.volume_profile import VolumeProfileWindow
    theme.apply(QApplication.instance())  # as run_window does: the pictures show the real colours
    return VolumeProfileWindow(settings)


def _levels_on_screen(window):
    return {name: line.value() for name, line in window.lines.items() if line.isVisible()}


def _bars_total(window) -> int:
    return int(sum(sum(item.opts["width"]) for item in window.bars.values()))


@pytest.mark.gui
@pytest.mark.integration
def test_window_draws_the_profile_computed_from_the_same_events(qtbot, own_redis, settings_env, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'dhan.sqlite3'}"
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DB_URL=db_url)
    window = _window(settings)
    qtbot.addWidget(window)
    window.resize(1400, 820)
    window.show()
    qtbot.waitUntil(lambda: window.instruments != [], timeout=30_000)
    instrument = window.instruments[0]
    assert instrument.underlying == "NIFTY" and instrument.instrument == "FUTIDX"  # the default
    key, tick = instrument.key, instrument.tick_size
    qtbot.waitUntil(lambda: "no previous session stored" in window.message.text(), timeout=30_000)

    # a previous session stored by the writer's code; a new selection reads it
    day, previous = previous_day_events(key, tick)
    store_events(db_url, previous)
    window.select([instrument])
    qtbot.waitUntil(lambda: window.model.previous is not None, timeout=30_000)

    client = redis.Redis.from_url(own_redis.url)
    events = session_events(key, tick, 16_000, seed=11, price=24_050.0, seconds=3.5 * 3600)
    noise = session_events(("NSE_FNO", 1), 0.05, 300, seed=12)  # another instrument
    publish(client, events[:9000] + noise)
    client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"garbage"})
    client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: orjson.dumps(
        {"type": "full", "exchange_segment": key[0], "security_id": key[1], "recv_ts": time.time_ns(),
         "ltp": "not a price", "volume": 1})})
    publish(client, events[9000:])
    n_updates = len(updates_of(events))
    qtbot.waitUntil(lambda: window.model.quotes == n_updates, timeout=30_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=10_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)

    expected = build_profile(updates_of(events), tick)
    assert _levels_on_screen(window) == pytest.approx(
        {"poc": expected.poc, "vah": expected.vah, "val": expected.val, "last": events[-1]["ltp"]})
    assert _bars_total(window) == sum(expected.volumes)
    text = window.info_label.text()
    assert f"{expected.poc:,.2f}" in text and f"{sum(expected.volumes):,}" in text
    assert "skipped 1 event that" in window.message.text()  # the unreadable price; the JSON garbage is the reader's
    prev = session_levels(updates_of(previous), tick)
    assert {n: line.value() for n, line in window.prev_lines.items() if line.isVisible()} == \
        pytest.approx({"poc": prev.poc, "vah": prev.vah, "val": prev.val})
    assert f"{prev.poc:,.2f}" in text and f"{day:%d %b}" in text
    developing = window.model.developing()
    x, y = window.dev_poc.getData()
    assert len(x) == len(developing) + 1 and y[-1] == pytest.approx(expected.poc)
    window.profile_cross.move_to(10, expected.poc)
    assert f"{max(expected.volumes):,}" in window.profile_cross.text
    window.profile_cross.move_to(200, expected.prices[len(expected.prices) // 5])  # off the POC
    window.time_cross.move_to(x[len(x) // 3], y[len(y) // 3])

    window.grab().save(str(tmp_path / "volume_profile.png"))
    assert (tmp_path / "volume_profile.png").stat().st_size > 20_000

    # settings: rebuilt from memory, nothing re-read
    window.row_ticks_box.setValue(4)
    window.fraction_box.setValue(80)
    window.method_box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    expected = build_profile(updates_of(events), tick, 4, 0.80, "single")
    centre = lambda p: p + 1.5 * tick  # noqa: E731 - a 4-tick row is drawn at its middle
    assert _levels_on_screen(window) == pytest.approx(
        {"poc": centre(expected.poc), "vah": centre(expected.vah), "val": centre(expected.val),
         "last": events[-1]["ltp"]})
    assert _bars_total(window) == sum(expected.volumes)
    prev = session_levels(updates_of(previous), tick, 4, 0.80, "single")
    assert window.prev_lines["poc"].value() == pytest.approx(centre(prev.poc))
    if DOCS_IMG:
        window.grab().save(os.path.join(DOCS_IMG, "volume_profile.png"))

    # Redis goes away: disconnected; back (empty, as after a restart): resumes without a gap
    own_redis.stop()
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    more = session_events(key, tick, 500, seed=13, price=events[-1]["ltp"], cum=events[-1]["volume"],
                          seconds=60, start_ns=time.time_ns())
    publish(client, more)
    qtbot.waitUntil(lambda: window.model.quotes == n_updates + len(updates_of(more)), timeout=30_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=30_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    expected = build_profile(updates_of(events + more), tick, 4, 0.80, "single")
    assert _bars_total(window) == sum(expected.volumes)  # every update once, the join booked
    assert window.lines["poc"].value() == pytest.approx(centre(expected.poc))

    # the picker switches instruments: a fresh profile, its own (absent) previous session
    qtbot.keyClicks(window.picker, "BANKNIFTY FUT")
    qtbot.keyClick(window.picker, "\r")
    qtbot.waitUntil(lambda: window.instruments[0].underlying == "BANKNIFTY", timeout=10_000)
    other = window.instruments[0]
    bank = session_events(other.key, other.tick_size, 800, seed=14, price=51_000.0, seconds=600)
    publish(client, bank)
    qtbot.waitUntil(lambda: window.model.quotes == len(updates_of(bank)), timeout=30_000)
    qtbot.waitUntil(lambda: "no previous session stored" in window.message.text(), timeout=30_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    expected = build_profile(updates_of(bank), other.tick_size, 4, 0.80, "single")
    assert window.lines["poc"].value() == pytest.approx(expected.poc + 1.5 * other.tick_size)
    assert not any(line.isVisible() for line in window.prev_lines.values())
    window.close()
    client.close()


@pytest.mark.gui
@pytest.mark.integration
def test_database_down_is_said_and_live_data_still_drawn(qtbot, own_redis, settings_env):
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9",
                            DHAN_DB_URL="mysql+pymysql://root@127.0.0.1:1/none")
    window = _window(settings)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.instruments != [], timeout=30_000)
    instrument = window.instruments[0]
    qtbot.waitUntil(lambda: "previous session: database unreachable" in window.message.text(),
                    timeout=30_000)
    client = redis.Redis.from_url(own_redis.url)
    events = session_events(instrument.key, instrument.tick_size, 300, seed=15)
    publish(client, events)
    qtbot.waitUntil(lambda: window.model.quotes == len(updates_of(events)), timeout=30_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    expected = build_profile(updates_of(events), instrument.tick_size)
    assert window.lines["poc"].value() == pytest.approx(expected.poc)
    window.close()
    client.close()


@pytest.mark.gui
def test_unknown_instrument_and_an_empty_day_are_said(qtbot, settings_env):
    from dhan_trading.visualizers.volume_profile import VolumeProfileWindow

    settings = settings_env(REDIS_URL="redis://127.0.0.1:1/0", DHAN_FEED_URL="ws://127.0.0.1:9")
    window = VolumeProfileWindow(settings, "NO SUCH THING")
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: "no instrument matches" in window.message.text(), timeout=30_000)
    assert window.model is None
    window.redraw()  # nothing to draw: no error
    qtbot.keyClicks(window.picker, "RELIANCE")
    qtbot.keyClick(window.picker, "\r")
    qtbot.waitUntil(lambda: window.model is not None, timeout=10_000)
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    window.redraw()  # an empty day: empty plot, dashes in the info box
    assert not window.lines["poc"].isVisible() and "–" in window.info_label.text()
    window.close()


def run_entry(module: str, own_redis, tmp_path, *words: str, after: float = 4.0):
    """`python -m MODULE [SEARCH] --screenshot FILE --after S` as a trader starts it; returns
    (exit code, the picture's path)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DATA_DIR=str(tmp_path / "var"),
               DHAN_DB_URL=f"sqlite:///{tmp_path / 'entry.sqlite3'}", QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(REPO))
    picture = tmp_path / f"{module.rsplit('.', 1)[-1]}_entry.png"
    done = subprocess.run([sys.executable, "-m", module, *words, "--screenshot", str(picture), "--after", str(after)],
                          env=env, cwd=REPO, capture_output=True, timeout=120)
    return done.returncode, picture


def nifty_future(settings):
    from dhan_trading.gui.bridge import load_catalog
    return load_catalog(settings).near_future("NIFTY")


@pytest.mark.gui
@pytest.mark.integration
def test_command_line_entry_starts_and_shows_data(own_redis, settings_env, tmp_path):
    instrument = nifty_future(settings_env(DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DATA_DIR=str(tmp_path / "var")))
    client = redis.Redis.from_url(own_redis.url)
    publish(client, session_events(instrument.key, instrument.tick_size, 2000, seed=51))
    code, picture = run_entry("dhan_trading.visualizers.volume_profile", own_redis, tmp_path, "NIFTY", "FUT")
    client.close()
    assert code == 0 and picture.stat().st_size > 20_000
    assert has_colour(picture, "#42a5f5")  # the POC line's blue: the profile was drawn from the stream


def has_colour(path, hex_colour: str, tolerance: int = 10) -> bool:
    import numpy as np
    from PyQt6.QtGui import QImage

    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB32)
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    pixels = np.frombuffer(bits, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    bgr = pixels[..., :3].astype(int)
    return bool((np.abs(bgr - [b, g, r]).max(axis=-1) <= tolerance).any())


@pytest.mark.gui
@pytest.mark.integration
def test_window_reads_history_from_the_database_then_follows_the_stream(qtbot, own_redis, settings_env,
                                                                         tmp_path):
    """Opened mid-session: the morning is only in the database (stored by the writer's code,
    acknowledged by its group, trimmed from Redis), the afternoon only in the stream."""
    from dhan_trading.schema import stream_id_to_event_id

    db_url = f"sqlite:///{tmp_path / 'dhan.sqlite3'}"
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DB_URL=db_url)
    instrument = nifty_future(settings)
    client = redis.Redis.from_url(own_redis.url)
    events = session_events(instrument.key, instrument.tick_size, 3000, seed=61)
    morning, afternoon = events[:2000], events[2000:]
    pipe = client.pipeline(transaction=False)
    for e in morning:
        pipe.xadd(bus.EVENT_STREAM[e["type"]], {bus.STREAM_FIELD: orjson.dumps(e)})
    for e, entry_id in zip(morning, pipe.execute()):
        e["event_id"] = stream_id_to_event_id(entry_id)
    store_events(db_url, morning)
    for stream in (bus.STREAM_QUOTES, bus.STREAM_DEPTH):
        client.xgroup_create(stream, bus.WRITER_GROUP, id="$")  # all acknowledged: the safe point
        client.xtrim(stream, maxlen=0)  # the morning is now only in the database

    window = _window(settings)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.model is not None, timeout=30_000)
    assert window.instruments[0].key == instrument.key
    qtbot.waitUntil(lambda: window.model.quotes == len(updates_of(morning)), timeout=30_000)
    assert window.feed.status.history_events == len(morning)
    publish(client, afternoon)
    qtbot.waitUntil(lambda: window.model.quotes == len(updates_of(events)), timeout=30_000)
    qtbot.waitUntil(lambda: not window.dirty, timeout=5_000)
    expected = build_profile(updates_of(events), instrument.tick_size)
    assert window.lines["poc"].value() == pytest.approx(expected.poc)
    assert _bars_total(window) == sum(expected.volumes)  # the join of history and live booked once
    window.close()
    client.close()
