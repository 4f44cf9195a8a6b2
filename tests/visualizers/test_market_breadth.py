"""market_breadth: the model on hand-checked numbers, and the real window on a real Redis (and a
SQLite file written by the real DB writer) fed a simulated Nifty 50 session; every number in
the widgets is compared with the same number computed independently from the same events."""
from __future__ import annotations

import math
import os
import random
import threading
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from dhan_trading import bus
from dhan_trading.analytics.breadth import advance_decline, check_contributions, point_contributions
from dhan_trading.config import NIFTY50_CSV
from dhan_trading.instruments.master import Instrument
from dhan_trading.instruments.nifty50 import parse_constituents, read_constituents
from dhan_trading.instruments.sample import reference_price
from dhan_trading.scheduler.calendar import IST, ist_today
from dhan_trading.visualizers.market_breadth import (INDEX_KEY, BreadthModel, previous_session_closes,
                                                     squarify)

REPO = Path(__file__).resolve().parents[2]
IMG = REPO / "docs" / "img"


# ---- a simulated session -------------------------------------------------------------------
def ns(day: date, hh: int, mm: int, ss: float = 0.0) -> int:
    """recv_ts (ns since the epoch) of an IST wall-clock time."""
    return int((datetime.combine(day, dtime(hh, mm), IST).timestamp() + ss) * 1e9)


class Session:
    """A believable Nifty 50 morning: every constituent walks on its own tick grid around a
    shared market factor; the index follows the weighted moves (plus a small drift the weights
    do not explain). Quotes carry the previous close in `close` (as Dhan streams it), a running
    ATP and the cumulative day volume; the index gets its prev_close packet and ticker events."""

    def __init__(self, shares: dict[str, Instrument], weights: dict[str, float], day: date,
                 seed: int = 7, index_prev: float = 26_000.0, index_packet: bool = True):
        self.rng = random.Random(seed)
        self.shares, self.weights, self.day = shares, weights, day
        self.index_prev, self.index_packet = index_prev, index_packet
        self.prev = {s: self._grid(reference_price(s, default=500.0), s) for s in shares}
        self.units = {s: round(self.prev[s] / shares[s].tick_size) for s in shares}
        self.beta = {s: self.rng.uniform(0.6, 1.4) for s in shares}
        self.alpha = {s: self.rng.gauss(0, 0.006) for s in shares}  # each stock's own story
        self.volume = {s: 0 for s in shares}
        self.turnover = {s: 0.0 for s in shares}
        self.factor = 0.0
        self.index = index_prev

    def _grid(self, price: float, symbol: str) -> float:
        tick = self.shares[symbol].tick_size
        return round(round(price / tick) * tick, 10)

    def price(self, symbol: str) -> float:
        return round(self.units[symbol] * self.shares[symbol].tick_size, 10)

    def opening(self) -> list[dict]:
        events = []
        if self.index_packet:
            events.append({"type": "prev_close", "exchange_segment": "IDX_I", "security_id": 13,
                           "recv_ts": ns(self.day, 9, 14), "prev_close": self.index_prev, "prev_oi": 0})
        return events

    def events(self, start_s: float, n: int, step_s: float = 0.35) -> list[dict]:
        """`n` events from `start_s` seconds after 09:15 IST."""
        out = []
        symbols = list(self.shares)
        t = start_s
        for _ in range(n):
            t += step_s * self.rng.uniform(0.2, 1.8)
            self.factor += self.rng.gauss(0.0, 0.00005)
            recv = ns(self.day, 9, 15, t)
            if self.rng.random() < 0.12:
                move = sum(self.weights[s] / 100 * (self.price(s) / self.prev[s] - 1) for s in symbols)
                self.index = round(round(self.index_prev * (1 + move) * 1.0001 / 0.05) * 0.05, 2)
                out.append({"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13,
                            "recv_ts": recv, "ltp": self.index, "ltt": 0})
                continue
            s = self.rng.choice(symbols)
            inst = self.shares[s]
            target = self.prev[s] * (1 + self.beta[s] * self.factor + self.alpha[s] + self.rng.gauss(0, 0.002))
            want = round(target / inst.tick_size)
            if self.rng.random() < 0.7:
                self.units[s] += max(-3, min(3, want - self.units[s]))
            else:
                self.units[s] += self.rng.choice((-1, 1))
            qty = self.rng.randint(1, 400)
            self.volume[s] += qty
            self.turnover[s] += qty * self.price(s)
            out.append({"type": "quote", "exchange_segment": "NSE_EQ", "security_id": inst.security_id,
                        "recv_ts": recv, "ltp": self.price(s), "ltt": 0, "ltq": qty,
                        "atp": round(self.turnover[s] / self.volume[s], 2), "volume": self.volume[s],
                        "total_buy_qty": 1, "total_sell_qty": 1, "open": self.prev[s],
                        "high": self.price(s), "low": self.price(s), "close": self.prev[s]})
        return out


def expected(events: list[dict], shares: dict[str, Instrument], weights: dict[str, float]) -> dict:
    """Breadth computed independently from the events (batch analytics, not the live model)."""
    by_id = {i.security_id: s for s, i in shares.items()}
    last: dict[str, dict] = {}
    index_ltp = index_prev = None
    for e in events:
        if e["exchange_segment"] == "IDX_I":
            if e["type"] == "prev_close":
                index_prev = e["prev_close"]
            else:
                index_ltp = e["ltp"]
        elif e["security_id"] in by_id:
            last[by_id[e["security_id"]]] = e
    a = d = u = adv_vol = dec_vol = 0
    for s, e in last.items():  # one pair at a time: each symbol on its own tick grid
        ai, di, ui = advance_decline([(e["ltp"], e["close"])], tick=shares[s].tick_size)
        a, d, u = a + ai, d + di, u + ui
        adv_vol += ai * e["volume"]
        dec_vol += di * e["volume"]
    above = sum(round(e["ltp"] / 0.01) > round(e["atp"] / 0.01) for e in last.values())
    points = point_contributions({s: (e["ltp"], e["close"]) for s, e in last.items()}, weights, index_prev)
    return {"a": a, "d": d, "u": u, "missing": len(shares) - len(last), "points": points,
            "trin": (a / d) / (adv_vol / dec_vol), "above": 100.0 * above / len(last),
            "check": check_contributions(points, index_ltp, index_prev), "index": index_ltp, "last": last}


# ---- pure parts ------------------------------------------------------------------------------
@pytest.mark.unit
def test_squarify_gives_each_weight_its_share_of_the_area_without_overlap():
    weights = [("A", 13.2), ("B", 9.0), ("C", 8.1), ("D", 4.8), ("E", 0.5), ("F", 0.0)] + \
              [(f"S{i}", 1.0 + i % 3) for i in range(40)]
    tiles = squarify(weights, 0, 0, 800, 500)
    total = sum(w for _, w in weights)
    assert [t.symbol for t in tiles if t.symbol == "F"] == []  # no weight, no tile
    for t in tiles:
        assert math.isclose(t.w * t.h, dict(weights)[t.symbol] / total * 800 * 500, rel_tol=1e-9)
        assert -1e-9 <= t.x and t.x + t.w <= 800 + 1e-6 and -1e-9 <= t.y and t.y + t.h <= 500 + 1e-6
    for i, p in enumerate(tiles):
        for q in tiles[i + 1:]:
            overlap = (min(p.x + p.w, q.x + q.w) - max(p.x, q.x)) * (min(p.y + p.h, q.y + q.h) - max(p.y, q.y))
            assert not (min(p.x + p.w, q.x + q.w) > max(p.x, q.x) + 1e-6 and
                        min(p.y + p.h, q.y + q.h) > max(p.y, q.y) + 1e-6), (p, q, overlap)
    big = next(t for t in tiles if t.symbol == "A")
    assert max(big.w / big.h, big.h / big.w) < 3  # squarified, not strips


def eq(symbol: str, sid: int, tick: float) -> Instrument:
    return Instrument("NSE_EQ", sid, "NSE", "EQUITY", symbol, symbol, symbol, tick_size=tick)


INDEX = Instrument("IDX_I", 13, "NSE", "INDEX", "NIFTY", "Nifty 50", "NIFTY", tick_size=0.05)
FIVE = parse_constituents("# as_of: 2026-11-30\n# source: test\nsymbol,company,weight\n"
                          "A,Alpha,40\nB,Beta,30\nC,Gamma,20\nD,Delta,9\nZZZ,Unknown,1\n")
SHARES = {"A": eq("A", 1, 0.05), "B": eq("B", 2, 0.05), "C": eq("C", 3, 0.01), "D": eq("D", 4, 0.05)}


def quote(sid, ltp, close, atp=None, volume=100, t=0, kind="quote"):
    return {"type": kind, "exchange_segment": "NSE_EQ", "security_id": sid, "recv_ts": ns(date(2026, 12, 3), 9, 15, t),
            "ltp": ltp, "atp": atp, "volume": volume, "close": close}


@pytest.mark.unit
def test_model_counts_on_each_symbols_grid_and_says_what_is_missing():
    model = BreadthModel(FIVE, SHARES, INDEX)
    assert model.unknown == ["ZZZ"] and model.keys[-1] == INDEX_KEY
    model.apply([
        quote(1, 101.0, 100.0, 100.5, 1000, 10),
        quote(2, 48.0, 50.0, 49.0, 3000, 20),
        quote(3, 200.01, 200.0, 200.10, 500, 30),  # one 0.01 tick up: an advance on C's grid
        {"type": "prev_close", "exchange_segment": "IDX_I", "security_id": 13, "prev_close": 24000.0, "recv_ts": 1},
        {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13, "ltp": 24010.0,
         "recv_ts": ns(date(2026, 12, 3), 9, 16)},
        {"type": "quote", "exchange_segment": "NSE_EQ"},  # garbage: counted, the rest still applied
        {"type": "quote", "exchange_segment": "NSE_EQ", "security_id": 4, "ltp": "abc"},
    ])
    snap = model.snapshot()
    assert (snap.advances, snap.declines, snap.unchanged, snap.missing) == (2, 1, 0, 1)
    assert snap.ad_ratio == 2.0 and snap.pct_above_vwap == 100 * 1 / 3
    assert model.bad == 2
    notes = " ".join(model.notes())
    assert "ZZZ" in notes and "skipped 2 events" in notes
    points = model.contributions()
    assert points == pytest.approx({"A": 0.4 * 0.01 * 24000, "B": 0.3 * -0.04 * 24000, "C": 0.2 * 0.00005 * 24000})
    check = model.check(points)
    assert check.actual == pytest.approx(10.0) and check.residual == pytest.approx(10.0 - sum(points.values()))
    # a prev_close packet wins over the quote's close; D without any close stays missing
    model.apply([{"type": "prev_close", "exchange_segment": "NSE_EQ", "security_id": 2, "prev_close": 48.0,
                  "recv_ts": 2},
                 quote(4, 75.0, 0, None, 10, 40)])
    snap = model.snapshot()
    assert (snap.advances, snap.declines, snap.unchanged, snap.missing) == (2, 0, 1, 1)
    assert snap.ad_ratio is None and model.prev_close("B") == (48.0, "packet")
    assert "counted as missing: D" in " ".join(model.notes())
    # the previous session's last price fills in, and the window says it is approximate
    model.set_previous({("NSE_EQ", 4): (74.0, date(2026, 12, 2))})
    assert model.prev_close("D") == (74.0, "previous session") and model.snapshot().missing == 0
    assert "previous session (approximate): D" in " ".join(model.notes())


@pytest.mark.unit
def test_index_without_any_previous_close_is_said_and_not_checked():
    model = BreadthModel(FIVE, SHARES, INDEX)
    model.apply([quote(1, 101.0, 100.0, 100.5),
                 {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13, "ltp": 24100.0, "recv_ts": 5}])
    assert model.index_prev_close() == (None, "none")
    assert model.points_base() == (24100.0, "first price today")
    assert model.check(model.contributions()) is None
    assert "no previous close for NIFTY yet" in " ".join(model.notes())
    model.set_previous({INDEX_KEY: (24000.0, date(2026, 12, 2))})
    assert model.index_prev_close() == (24000.0, "previous session 2026-12-02")
    assert model.check(model.contributions()).actual == pytest.approx(100.0)


# ---- the window on a real Redis and database ------------------------------------------------
def catalog_shares(settings):
    from dhan_trading.instruments.master import load_master
    from dhan_trading.instruments.universe import nse_shares
    instruments = load_master(settings)
    return nse_shares(instruments)


def publish(client: redis.Redis, events: list[dict]) -> None:
    pipe = client.pipeline(transaction=False)
    for e in events:
        pipe.xadd(bus.EVENT_STREAM[e["type"]], {bus.STREAM_FIELD: orjson.dumps(e)})
    pipe.execute()


class InProcessWriter:
    """The real DB writer (subscribers.db_writer) on a thread, storing into SQLite."""

    def __init__(self, redis_url: str, engine):
        from dhan_trading.subscribers.db_writer import DbWriter, WriterConfig
        from dhan_trading.subscribers.store import EventStore
        self.client = redis.Redis.from_url(redis_url)
        self.writer = DbWriter(lambda: redis.Redis.from_url(redis_url), EventStore(engine),
                               WriterConfig(consumer="test-writer", flush_ms=50))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.writer.run, args=(self.stop,), daemon=True)

    def store_all(self, qtbot) -> None:
        from dhan_trading.live import safe_points
        from dhan_trading.schema import stream_id_to_event_id
        self.thread.start()

        def acked() -> bool:
            points = safe_points(self.client, bus.STREAMS)
            for stream in bus.STREAMS:
                last = self.client.xrevrange(stream, count=1)
                if last and points[stream] != stream_id_to_event_id(last[0][0]):
                    return False
            return True
        qtbot.waitUntil(acked, timeout=60_000)
        self.stop.set()
        self.thread.join(10)
        self.client.close()


@pytest.fixture
def themed(qapp):
    """The dark theme, as run_window applies it (the screenshots show what a trader sees)."""
    from dhan_trading.gui import theme
    theme.apply(qapp)
    return qapp


def header(window) -> dict[str, str]:
    return {k: s.value.text() for k, s in window.stats.items()}


@pytest.mark.gui
@pytest.mark.integration
def test_window_shows_the_days_breadth_history_then_live_and_survives_redis_restart(
        qtbot, themed, own_redis, settings_env, tmp_path):
    from sqlalchemy import create_engine

    from dhan_trading.db_setup import create_tables
    from dhan_trading.visualizers.market_breadth import MarketBreadthWindow

    db_url = f"sqlite:///{tmp_path / 'breadth.sqlite3'}"
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DB_URL=db_url)
    engine = create_engine(db_url)
    create_tables(engine)
    constituents = read_constituents(NIFTY50_CSV)
    shares = {s: i for s, i in catalog_shares(settings).items() if s in constituents.weights}
    assert len(shares) == 50 and any(i.tick_size == 0.01 for i in shares.values())
    today = ist_today()
    session = Session(shares, constituents.weights, today)
    client = redis.Redis.from_url(own_redis.url)

    history = session.opening() + session.events(0, 2500)
    publish(client, history)
    InProcessWriter(own_redis.url, engine).store_all(qtbot)  # history now in SQLite

    window = MarketBreadthWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.model is not None and window.events_applied >= len(history), timeout=60_000)
    assert window.feed.status.history_events == len(history)  # from the database, not the stream
    live = session.events(2500 * 0.35, 2500)
    publish(client, live)
    everything = history + live
    qtbot.waitUntil(lambda: window.events_applied == len(everything), timeout=60_000)
    window.tick()  # one more repaint with everything in
    want = expected(everything, shares, constituents.weights)

    shown = header(window)
    assert shown["advances"] == str(want["a"]) and shown["declines"] == str(want["d"])
    assert shown["unchanged"] == str(want["u"]) and shown["missing"] == str(want["missing"])
    assert shown["ad_ratio"] == f"{want['a'] / want['d']:.2f}"
    assert shown["trin"] == f"{want['trin']:.2f}" and shown["above_vwap"] == f"{want['above']:.1f}%"
    check = want["check"]
    assert shown["index"].startswith(f"{want['index']:,.2f}")
    # bars: sorted, one per constituent, lengths = points computed independently
    order = window.points_order
    assert [s for s, _ in order] == sorted(want["points"], key=lambda s: -want["points"][s])
    assert dict(order) == pytest.approx(want["points"], abs=1e-9)
    widths = window.bars.opts["width"]
    assert list(widths) == pytest.approx([abs(want["points"][s]) for s, _ in order])
    text = window.check_label.text()
    assert f"{check.total:+,.2f}" in text and f"{check.actual:+,.2f}" in text and f"{check.residual:+,.2f}" in text
    # A/D line: its last point is A - D now; the index line ends at the index's last price
    ad_x, ad_y = window.ad_curve.getData()
    assert ad_y[-1] == want["a"] - want["d"]
    assert window.index_curve.getData()[1][-1] == pytest.approx(want["index"])
    def all_in_view() -> bool:  # pyqtgraph re-ranges lazily, on its next view update
        (x_lo, x_hi), (y_lo, y_hi) = window.ad_plot.getPlotItem().vb.viewRange()
        return x_lo <= ad_x[0] and ad_x[-1] <= x_hi and y_lo <= min(ad_y) and max(ad_y) <= y_hi
    qtbot.waitUntil(all_in_view, timeout=10_000)
    shot = tmp_path / "market_breadth.png"
    window.grab().save(str(shot))
    assert shot.stat().st_size > 20_000
    if os.environ.get("DHAN_SCREENSHOTS"):
        IMG.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(IMG / "market_breadth.png"))
    # heatmap: a tile per constituent, area by weight; the tooltip has the numbers
    tiles = window.heatmap.tiles()
    width, height = window.heatmap.width(), window.heatmap.height()
    assert len(tiles) == 50 and width > 300 and height > 150
    reliance = next(t for t in tiles if t.symbol == "RELIANCE")
    assert reliance.w * reliance.h == pytest.approx(width * height * constituents.weights["RELIANCE"]
                                                    / sum(constituents.weights.values()))
    e = want["last"]["RELIANCE"]
    tip = window.heatmap.tooltip("RELIANCE")
    assert f"LTP {e['ltp']:,.2f}" in tip and f"{(e['ltp'] - e['close']) / e['close'] * 100:+.2f}%" in tip
    assert f"points {want['points']['RELIANCE']:+.2f}" in tip
    assert ("above VWAP" if round(e["ltp"] / 0.01) > round(e["atp"] / 0.01) else "VWAP") in tip
    assert window.heatmap.tile_at(reliance.x + 1, reliance.y + 1).symbol == "RELIANCE"
    from PyQt6.QtCore import QEvent, QPoint
    from PyQt6.QtGui import QHelpEvent
    from PyQt6.QtWidgets import QApplication, QToolTip
    inside = QPoint(int(reliance.x + reliance.w / 2), int(reliance.y + reliance.h / 2))
    QApplication.sendEvent(window.heatmap, QHelpEvent(QEvent.Type.ToolTip, inside, window.heatmap.mapToGlobal(inside)))
    assert "RELIANCE" in QToolTip.text() and f"LTP {e['ltp']:,.2f}" in QToolTip.text()
    # crosshair readouts: the bar under the mouse, the A/D and index values of the minute
    top, points = order[0]
    window.points_cross.move_to(points / 2, 0.1)
    assert window.points_cross.text == f"{top} {points:+.2f} pts" and window.points_cross.v.isVisible()
    window.ad_cross.move_to(ad_x[-1] + 30, 0)
    assert f"A−D {want['a'] - want['d']:+d}" in window.ad_cross.text
    assert f"NIFTY {want['index']:,.2f}" in window.ad_cross.text
    assert window.picker.isHidden() and "50 constituents" in window.file_label.text()
    assert window.heading.text().startswith("Nifty 50 breadth")

    # Redis goes away: disconnected; back (empty, a restarted server): resumes, nothing lost
    own_redis.stop()
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    more = session.events(5000 * 0.35, 300)
    publish(client, more)
    qtbot.waitUntil(lambda: window.events_applied == len(everything) + len(more), timeout=60_000)
    qtbot.waitUntil(lambda: window.badge.word == "live", timeout=30_000)
    window.tick()
    want = expected(everything + more, shares, constituents.weights)
    assert header(window)["advances"] == str(want["a"]) and header(window)["declines"] == str(want["d"])
    window.close()
    client.close()


@pytest.mark.gui
@pytest.mark.integration
def test_unknown_symbol_and_previous_session_fallback_are_said(qtbot, themed, own_redis, settings_env, tmp_path):
    from sqlalchemy import create_engine

    from dhan_trading.db_setup import create_tables
    from dhan_trading.visualizers.market_breadth import MarketBreadthWindow

    csv = tmp_path / "nifty.csv"
    csv.write_text(f"# as_of: {ist_today().isoformat()}\n# source: test\nsymbol,company,weight\n"
                   "RELIANCE,Reliance,50\nHDFCBANK,HDFC Bank,30\nTCS,TCS,15\nNOSUCHCO,Nobody,5\n")
    db_url = f"sqlite:///{tmp_path / 'breadth.sqlite3'}"
    settings = settings_env(REDIS_URL=own_redis.url, DHAN_FEED_URL="ws://127.0.0.1:9", DHAN_DB_URL=db_url,
                            DHAN_NIFTY50_CSV=str(csv))
    engine = create_engine(db_url)
    create_tables(engine)
    shares = catalog_shares(settings)
    rel, hdfc = shares["RELIANCE"].security_id, shares["HDFCBANK"].security_id
    today = ist_today()
    yesterday = today - timedelta(days=1)
    client = redis.Redis.from_url(own_redis.url)
    publish(client, [  # the previous session, stored by the writer: the index closed at 24,000
        {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13,
         "recv_ts": ns(yesterday, 15, 29), "ltp": 23990.0, "ltt": 0},
        {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13,
         "recv_ts": ns(yesterday, 15, 30), "ltp": 24000.0, "ltt": 0},
        {"type": "quote", "exchange_segment": "NSE_EQ", "security_id": hdfc, "recv_ts": ns(yesterday, 15, 30),
         "ltp": 1000.0, "atp": 990.0, "volume": 5, "close": 995.0, "ltt": 0},
    ])
    InProcessWriter(own_redis.url, engine).store_all(qtbot)
    assert previous_session_closes(engine, today, [INDEX_KEY, ("NSE_EQ", hdfc)]) == {
        INDEX_KEY: (24000.0, yesterday), ("NSE_EQ", hdfc): (1000.0, yesterday)}

    window = MarketBreadthWindow(settings, "RELIANCE")  # a search word: ignored, and said
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.model is not None and window.feed.status.phase == "live", timeout=60_000)
    publish(client, [  # today: no prev_close packets; HDFCBANK's quote has no close (0)
        {"type": "ticker", "exchange_segment": "IDX_I", "security_id": 13,
         "recv_ts": ns(today, 9, 15, 5), "ltp": 24120.0, "ltt": 0},
        {"type": "quote", "exchange_segment": "NSE_EQ", "security_id": rel, "recv_ts": ns(today, 9, 15, 6),
         "ltp": 1500.0, "atp": 1490.0, "volume": 10, "close": 1480.0, "ltt": 0},
        {"type": "quote", "exchange_segment": "NSE_EQ", "security_id": hdfc, "recv_ts": ns(today, 9, 15, 7),
         "ltp": 1010.0, "atp": 1005.0, "volume": 10, "close": 0.0, "ltt": 0},
    ])
    qtbot.waitUntil(lambda: window.events_applied == 3 and window._previous_future is None, timeout=60_000)
    window.tick()
    message = window.message.text()
    assert "NOSUCHCO" in message and "ignored 'RELIANCE'" in message
    assert "NIFTY yet: its previous close 24,000.00 is the last price stored for the previous session" in message
    assert "previous session (approximate): HDFCBANK" in message
    shown = header(window)
    assert (shown["advances"], shown["declines"], shown["missing"]) == ("2", "0", "1")  # TCS not quoted
    assert shown["index"].startswith("24,120.00  +120.00 (+0.50%)")
    assert shown["ad_ratio"] == "—, no declines" and window.model.unknown == ["NOSUCHCO"]
    window.close()
    client.close()


@pytest.mark.gui
def test_broken_constituents_file_is_said_and_the_bundled_one_used(qtbot, settings_env, tmp_path):
    from dhan_trading.visualizers.market_breadth import MarketBreadthWindow

    csv = tmp_path / "nifty.csv"
    csv.write_text("symbol,company,weight\nRELIANCE,,abc\n")
    settings = settings_env(REDIS_URL="redis://127.0.0.1:1/0", DHAN_FEED_URL="ws://127.0.0.1:9",
                            DHAN_NIFTY50_CSV=str(csv))
    window = MarketBreadthWindow(settings)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: "showing the bundled list instead" in window.message.text(), timeout=60_000)
    assert len(window.model.symbols) == 50
    qtbot.waitUntil(lambda: window.badge.word == "disconnected", timeout=30_000)
    window.close()


@pytest.mark.gui
@pytest.mark.integration
def test_command_line_entry_starts_and_saves_a_screenshot(own_redis, tmp_path):
    import subprocess
    import sys
    shot = tmp_path / "shot.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=own_redis.url, DHAN_DATA_DIR=str(tmp_path / "var"), DHAN_FEED_URL="ws://127.0.0.1:9",
               QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "dhan_trading.visualizers.market_breadth",
                           "--screenshot", str(shot), "--after", "2"], env=env, cwd=REPO, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 10_000
