"""The tick chart: N-tick candles drawn from the analytics builder, through the real window on
a real Redis (and a SQLite file written by the real DB writer for history)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import datetime
from datetime import time as dtime
from pathlib import Path

import orjson
import pytest
import redis

from dhan_trading import bus
from dhan_trading.analytics.bars import TickBarBuilder, tick_bars
from dhan_trading.scheduler.calendar import IST, ist_today
from dhan_trading.visualizers.tick_chart import TickChartModel, describe_bar

REPO = Path(__file__).resolve().parents[2]
NIFTY_FUT = ("NSE_FNO", 87524730)      # NIFTY-Dec2026-FUT in the bundled sample scrip master
BANKNIFTY_FUT = ("NSE_FNO", 82495008)  # BANKNIFTY-Dec2026-FUT


def session_start_ns(day=None) -> int:
    """09:15 IST of `day` (today) in ns since the epoch."""
    start = datetime.combine(day or ist_today(), dtime(9, 15), IST)
    return int(start.timestamp()) * 1_000_000_000


def session(key: tuple[str, int], count: int, *, tick: float = 0.1, price: float = 24_150.0,
            lot: int = 65, seed: int = 7, start_ns: int | None = None, start_volume: int = 1_250_000,
            spacing_s: float = 0.4) -> list[dict]:
    """`count` quote events for `key`; about one in six is a refresh without a volume rise."""
    rnd = random.Random(seed)
    ts = session_start_ns() if start_ns is None else start_ns
    cum = start_volume
    units = round(price / tick)
    drift = 0.0
    out = []
    for n in range(count):
        if n % 400 == 0:
            drift = rnd.gauss(0, 0.25)
        ts += int(rnd.expovariate(1 / spacing_s) * 1e9) + 1
        refresh = rnd.random() < 0.16
        if not refresh:
            units += round(rnd.gauss(drift, 1.6))
            cum += lot * max(1, int(rnd.paretovariate(1.6)))
        ltp = round(units * tick, 2)
        out.append({"type": "quote", "exchange_segment": key[0], "security_id": key[1],
                    "recv_ts": ts, "ltp": ltp, "ltt": ts // 1_000_000_000 + 19_800, "ltq": lot,
                    "atp": ltp, "volume": cum, "open": 24_100.0, "high": ltp, "low": ltp,
                    "close": 24_080.0, "total_buy_qty": 1000, "total_sell_qty": 1000})
    return out


def updates(events):
    return [(e["recv_ts"] / 1e9, e["ltp"], e["volume"]) for e in events if e["type"] in ("quote", "full")]


def publish(client: redis.Redis, events) -> None:
    pipe = client.pipeline(transaction=False)
    for e in events:
        stream = bus.STREAM_GAPS if isinstance(e, dict) and e["type"] == "gap" else bus.STREAM_QUOTES
        data = e if isinstance(e, bytes) else orjson.dumps(e)
        pipe.xadd(stream, {bus.STREAM_FIELD: data})
    pipe.execute()


def window_env(settings_env, url, **extra):
    # a non-Dhan feed URL selects the bundled sample scrip master (no download)
    return settings_env(REDIS_URL=url, DHAN_FEED_URL="ws://127.0.0.1:9", **extra)


# ---- the model ------------------------------------------------------------------------------
@pytest.mark.unit
def test_model_equals_batch_tick_bars_in_any_batching_and_after_rebinning():
    events = session(NIFTY_FUT, 5000, seed=11)
    rnd = random.Random(1)
    model = TickChartModel(233, 10_000)
    i = 0
    while i < len(events):
        step = rnd.randint(1, 400)
        model.apply(events[i:i + step])
        i += step
    expected = tick_bars(updates(events), 233)
    assert model.builder.bars() == expected
    assert model.closed_total == len(expected) - 1 and model.forming_ticks == expected[-1].ticks
    assert model.bar_at(model.last_index) == expected[-1]
    for n in (100, 1000):
        model.rebuild(n, 10_000)
        assert model.builder.bars() == tick_bars(updates(events), n)
    assert model.updates == 5000 and model.bad == 0


@pytest.mark.unit
def test_cap_keeps_the_newest_bars_numbered_for_ever():
    events = session(NIFTY_FUT, 3000, seed=2)
    model = TickChartModel(100, max_bars=5)
    model.apply(events)
    expected = tick_bars(updates(events), 100)
    assert len(model.builder.closed) == 5
    assert model.first_index == model.closed_total - 5 == len(expected) - 1 - 5
    assert [b for _, b in model.bars_between(0, 10**9)] == expected[-6:]
    assert model.bar_at(model.first_index - 1) is None
    assert model.bar_at(model.first_index) == expected[-6]


@pytest.mark.unit
def test_gap_makes_the_next_update_a_baseline_and_is_marked():
    key = NIFTY_FUT
    quote = lambda ts, price, cum: {"type": "quote", "exchange_segment": key[0], "security_id": key[1],
                                    "recv_ts": ts * 10**9, "ltp": price, "volume": cum}
    model = TickChartModel(3)
    model.apply([quote(1, 100.0, 1000), quote(2, 100.5, 1010), quote(3, 101.0, 1020),
                 {"type": "gap", "exchange_segment": key[0], "security_id": key[1], "recv_ts": 0},
                 quote(4, 105.0, 9000),   # 7,980 traded while disconnected: no price, no bar
                 quote(5, 104.0, 9005), quote(6, 103.0, 9007)])
    bars = model.builder.bars()
    assert [(b.open, b.high, b.low, b.close, b.volume, b.ticks) for b in bars] == [
        (100.5, 104.0, 100.5, 104.0, 25, 3), (103.0, 103.0, 103.0, 103.0, 2, 1)]
    assert list(model.gaps) == [0.0]     # inside bar 0, which was forming
    model.rebuild(3, 100)                # re-binning keeps the gap where it was
    assert model.builder.bars() == bars and list(model.gaps) == [0.0]


@pytest.mark.unit
def test_garbage_is_counted_and_described_never_raised():
    model = TickChartModel(2)
    good = {"type": "quote", "exchange_segment": "NSE_FNO", "security_id": 1, "recv_ts": 10**9,
            "ltp": 100.0, "volume": 10}
    bad = [dict(good, volume="lots"), dict(good, volume=None), dict(good, volume=-5),
           dict(good, recv_ts="soon"), dict(good, ltp="cheap"), "not a dict", None]
    assert model.apply([good] + bad + [dict(good, volume=12), {"type": "ticker", "ltp": 1.0}]) == 5
    assert model.bad == 5 and "recv_ts" in model.last_problem or "ltp" in model.last_problem
    assert model.updates == 2 and model.forming_ticks == 1
    model.apply([dict(good, ltp=None, volume=15)])        # a missing price: skipped by the builder
    assert model.builder.skipped == 1 and model.forming_ticks == 1


@pytest.mark.unit
def test_readout_names_time_range_ohlc_volume_and_ticks():
    bar = tick_bars([(1_764_735_300.0, 100.0, 0), (1_764_735_300.0, 101.5, 65), (1_764_735_347.2, 99.0, 195)], 233)[0]
    text = describe_bar(7, bar, 233)
    assert "bar 7 (forming)" in text and "09:45:00 – 09:45:47 IST" in text
    assert "O 101.50  H 101.50  L 99.00  C 99.00" in text and "volume 195" in text and "2 / 233 ticks" in text


# ---- the window -----------------------------------------------------------------------------
from PyQt6.QtWidgets import QApplication


def make_window(settings, **kwargs):
    from dhan_trading.gui import theme
    from dhan_trading.visualizers.tick_chart import TickChartWindow
    theme.apply(QApplication.instance())   # as run_window does
    return TickChartWindow(settings, **kwargs)


@pytest.mark.gui
@pytest.mark.integration
def test_window_history_then_live_draws_the_independent_bars(qtbot, own_redis, settings_env, tmp_path):
    """A realistic session (also the picture of docs/VISUALIZERS.md: DHAN_DOCS_IMG=1 saves it)."""
    client = redis.Redis.from_url(own_redis.url)
    events = session(NIFTY_FUT, 30_000, seed=7)
    history = events[:21_000]
    gap = {"type": "gap", "exchange_segment": NIFTY_FUT[0], "security_id": NIFTY_FUT[1],
           "recv_ts": events[21_000]["recv_ts"], "reason": "reconnect"}
    live = [dict(e, volume=e["volume"] + 300_000) for e in events[21_000:]]  # traded in the gap
    publish(client, history)          # no writer group yet: the stream itself is the history
    window = make_window(window_env(settings_env, own_redis.url))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.model.updates == len(history), timeout=30_000)
    assert window.instruments[0].key == NIFTY_FUT       # the default: the NIFTY near-month future
    publish(client, [gap])
    qtbot.waitUntil(lambda: len(window.model.gaps) == 1, timeout=10_000)
    publish(client, live)
    qtbot.waitUntil(lambda: window.model.updates == len(events), timeout=30_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=10_000)
    window.redraw()
    builder = TickBarBuilder(233)      # the same updates through the analytics alone
    for u in updates(history):
        builder.add(*u)
    builder.gap()
    for u in updates(live):
        builder.add(*u)
    expected = builder.bars()
    assert window.model.builder.bars() == expected
    forming, last_closed = expected[-1], expected[-2]
    # what the trader reads
    assert window.counter.text() == f"{forming.ticks} / 233 ticks"
    assert window.summary.text().startswith(f"{len(expected) - 1:,} bars kept (cap 10,000)")
    assert window.last_price.label.textItem.toPlainText() == f"{forming.close:,.2f}"
    x = len(expected) - 2
    window.crosshair.move_to(x, last_closed.high)
    assert window.crosshair.text.startswith(describe_bar(x, last_closed, 233))
    assert f"volume {last_closed.volume:,}" in window.crosshair.text
    gap_x = window.model.gaps[0]
    assert [line.value() for line in window._gap_lines] == [gap_x]
    assert expected[int(gap_x)].start_ts < gap["recv_ts"] / 1e9 < expected[int(gap_x) + 1].start_ts
    # the view follows the newest bar and fits the bars in view
    (x0, x1), (y0, y1) = window.price_plot.vb.viewRange()
    assert x0 < len(expected) - 1 < x1
    in_view = [b for i, b in enumerate(expected) if x0 <= i <= x1]
    assert y0 <= min(b.low for b in in_view) and max(b.high for b in in_view) <= y1
    assert window.volume_plot.vb.viewRange()[1][1] >= max(b.volume for b in in_view)
    # the whole chart painted once, then a tick repaints only the forming bar (Qt's real path)
    window.grab()
    assert window.candles.painted >= min(len(in_view), 100)
    painted = []
    original = window.candles.paint

    def paint(*args):
        original(*args)
        painted.append(window.candles.painted)

    window.candles.paint = paint
    for _ in range(3):                 # let the crosshair's repaint happen first
        QApplication.processEvents()
    painted.clear()
    tick = dict(live[-1], recv_ts=live[-1]["recv_ts"] + 10**9, volume=live[-1]["volume"] + 65)
    publish(client, [tick])            # one tick on the forming bar
    qtbot.waitUntil(lambda: window.model.updates == len(events) + 1, timeout=10_000)
    qtbot.waitUntil(lambda: bool(painted), timeout=5_000)
    assert max(painted) <= 3 < len(in_view), painted   # the forming bar and its neighbours
    # the cap: 30 bars kept; as new bars close the oldest go, and so do their cached pictures
    window.set_bar_settings(100, 30)
    window.grab()
    assert window.model.first_index > 0 and len(window.candles.pictures) >= 25
    more = session(NIFTY_FUT, 1000, seed=13, start_ns=tick["recv_ts"] + 10**9,
                   start_volume=tick["volume"], price=forming.close)
    publish(client, more)
    qtbot.waitUntil(lambda: window.model.updates == len(events) + 1 + 1000, timeout=30_000)
    window.redraw()
    window.grab()
    kept = window.model.builder.closed
    assert len(kept) == 30 and kept[-1] == window.model.bar_at(window.model.forming_index - 1)
    assert min(window.candles.pictures) >= window.model.first_index
    assert f"{window.model.first_index:,} older dropped" in window.summary.text()
    assert window.cap_box.value() == 30 and window.ticks_box.currentText() == "100"
    window.set_bar_settings(233, 10_000)
    shot = window.grab()
    assert shot.save(str(tmp_path / "tick_chart.png"))
    if os.environ.get("DHAN_DOCS_IMG"):
        bar = expected[x - 24]
        window.crosshair.move_to(x - 24, (bar.high + bar.low) / 2)
        QApplication.processEvents()
        window.grab().save(str(REPO / "docs" / "img" / "tick_chart.png"))
    client.close()
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_the_summary_says_one_bar_in_the_singular(qtbot, own_redis, settings_env):
    events = session(NIFTY_FUT, 3000, seed=8)
    builder = TickBarBuilder(233)
    for n, u in enumerate(updates(events), 1):  # up to the update that closes the first bar
        builder.add(*u)
        if len(builder.bars()) == 2:
            break
    client = redis.Redis.from_url(own_redis.url)
    publish(client, events[:n])
    window = make_window(window_env(settings_env, own_redis.url))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.model.updates == n, timeout=30_000)
    window.redraw()
    assert window.summary.text() == "1 bar kept (cap 10,000)"
    client.close()
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_window_settings_picker_gap_garbage_and_redis_restart(qtbot, own_redis, settings_env):
    client = redis.Redis.from_url(own_redis.url)
    window = make_window(window_env(settings_env, own_redis.url))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: bool(window.instruments) and window.feed.status.phase == "live", timeout=30_000)
    # an empty day says so
    qtbot.waitUntil(lambda: "no trades" in window.message.text(), timeout=10_000)
    events = session(NIFTY_FUT, 3000, seed=8)
    publish(client, events[:1500])
    qtbot.waitUntil(lambda: window.model.updates == 1500, timeout=30_000)
    assert window.message.text() == ""
    # a gap, then the resumed update with the volume traded while disconnected
    gap = {"type": "gap", "exchange_segment": NIFTY_FUT[0], "security_id": NIFTY_FUT[1],
           "recv_ts": events[1499]["recv_ts"] + 1, "reason": "reconnect"}
    resumed = [dict(e, volume=e["volume"] + 500_000) for e in events[1500:]]
    publish(client, [gap])
    qtbot.waitUntil(lambda: len(window.model.gaps) == 1, timeout=10_000)
    publish(client, resumed)
    # garbage: not JSON (the reader skips it), and an update without a cumulative volume
    publish(client, [b"garbage", dict(events[0], volume="lots")])
    qtbot.waitUntil(lambda: window.model.updates == 3000 and window.model.bad == 1, timeout=30_000)
    qtbot.waitUntil(lambda: "skipped 1 updates" in window.message.text(), timeout=5_000)
    assert "cumulative" in window.message.text()
    expected = (tick_bars(updates(events[:1500]), 233)
                + tick_bars(updates(resumed), 233))  # the gap: a fresh baseline
    got = window.model.builder.bars()
    assert sum(b.volume for b in got) == sum(b.volume for b in expected)
    day = (events[1499]["volume"] - events[0]["volume"]) + (events[-1]["volume"] - events[1500]["volume"])
    assert sum(b.volume for b in got) == day   # what traded in the gap is in no bar
    window.redraw()
    assert len(window._gap_lines) == 1 and window._gap_lines[0].value() == window.model.gaps[0]
    # ticks per bar typed: the day is re-binned at once
    window.ticks_box.setCurrentText("500")
    window.ticks_box.lineEdit().returnPressed.emit()
    assert window.model.ticks_per_bar == 500
    assert window.counter.text() == f"{window.model.forming_ticks} / 500 ticks"
    assert sum(b.ticks for b in window.model.builder.bars()) == sum(b.ticks for b in expected)
    window.ticks_box.setCurrentText("many")
    window.ticks_box.lineEdit().returnPressed.emit()
    assert "whole number" in window.message.text() and window.model.ticks_per_bar == 500
    # Redis goes away and comes back: disconnected, then nothing missing
    own_redis.stop()
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    more = session(NIFTY_FUT, 700, seed=9, start_ns=events[-1]["recv_ts"] + 10**9,
                   start_volume=resumed[-1]["volume"])
    publish(client, more)
    qtbot.waitUntil(lambda: window.model.updates == 3000 + 700, timeout=30_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=10_000)
    got = window.model.builder.bars()
    assert sum(b.volume for b in got) == day + more[-1]["volume"] - resumed[-1]["volume"]
    # the picker switches instruments: a new, empty chart that follows only BANKNIFTY
    qtbot.keyClicks(window.picker, "banknifty fut")
    qtbot.keyClick(window.picker, "\r")
    qtbot.waitUntil(lambda: window.instruments[0].key == BANKNIFTY_FUT, timeout=5_000)
    bank = session(BANKNIFTY_FUT, 800, seed=4, price=52_000.0, lot=30,
                   start_ns=more[-1]["recv_ts"] + 10**9)
    publish(client, session(NIFTY_FUT, 50, seed=3, start_ns=more[-1]["recv_ts"]) + bank)
    qtbot.waitUntil(lambda: window.model.updates == 800, timeout=30_000)
    assert window.model.builder.bars() == tick_bars(updates(bank), 500)
    assert "BANKNIFTY" in window.heading.text()
    client.close()
    window.close()


class Writer:
    """The real DB writer as a child process, on the window's SQLite file."""

    def __init__(self, redis_url: str, data_dir: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
        self.env.update(REDIS_URL=redis_url, DHAN_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "dhan_trading.subscribers.fno_db_writer"],
                                     env=self.env, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.slow
def test_window_reads_history_from_the_database_the_writer_stored(qtbot, own_redis, settings_env, tmp_path):
    from dhan_trading.live import safe_points
    from dhan_trading.schema import stream_id_to_event_id
    client = redis.Redis.from_url(own_redis.url)
    events = session(NIFTY_FUT, 4000, seed=12)
    publish(client, events[:3000])
    writer = Writer(own_redis.url, tmp_path / "var")   # settings_env's data dir: one SQLite file
    try:
        def stored() -> bool:
            point = safe_points(client, [bus.STREAM_QUOTES])[bus.STREAM_QUOTES]
            last = client.xrevrange(bus.STREAM_QUOTES, count=1)[0][0]
            return point == stream_id_to_event_id(last)
        qtbot.waitUntil(stored, timeout=60_000)
    finally:
        writer.kill()
    publish(client, events[3000:])    # not stored: these come from the stream
    window = make_window(window_env(settings_env, own_redis.url), ticks_per_bar=100)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.model.updates == 4000, timeout=60_000)
    status = window.feed.status
    assert status.database_ok is True and status.history_events == 3000
    assert window.model.builder.bars() == tick_bars(updates(events), 100)
    client.close()
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_unknown_instrument_and_index_say_what_is_wrong(qtbot, settings_env):
    window = make_window(window_env(settings_env, "redis://127.0.0.1:1/0"))
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.catalog is not None, timeout=30_000)
    window.initial = "NO SUCH THING"
    window._catalog_ready(window.catalog)
    assert "no instrument matches 'NO SUCH THING'" in window.message.text()
    window.select([window.catalog.get("IDX_I", 13)])   # the NIFTY index: no traded volume
    assert "is an index" in window.message.text() and "NIFTY FUT" in window.message.text()
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)  # no Redis there
    window.close()


@pytest.mark.gui
@pytest.mark.integration
@pytest.mark.slow
def test_command_line_window_starts_follows_and_saves_a_screenshot(own_redis, tmp_path):
    client = redis.Redis.from_url(own_redis.url)
    publish(client, session(NIFTY_FUT, 3000, seed=6))
    shot = tmp_path / "cli.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=own_redis.url, DHAN_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO),
               DHAN_FEED_URL="ws://127.0.0.1:9", QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "dhan_trading.visualizers.tick_chart", "NIFTY", "FUT",
                           "--ticks", "100", "--screenshot", str(shot), "--after", "6"],
                          env=env, cwd=tmp_path, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert shot.stat().st_size > 10_000
    client.close()
