"""The terminal quote board (issue 10): the pure model (change, % change, OI change, sorting,
the underlying filter, the flash, bad input), the keys and the layout; then the real program
on a Redis of the test's own: `--once` in a subprocess prints the right numbers (and the same
board from the day's history as from the latest-event snapshot), and the live board driven
through a pseudo-terminal like a trader's SSH session (keys, flash, Redis going away and
coming back)."""
from __future__ import annotations

import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import redis

from dhan_trading import bus
from dhan_trading.instruments.master import Instrument
from dhan_trading.live import Status
from dhan_trading.visualizers import quote_visualizer as qv

REPO = Path(__file__).resolve().parents[2]
NOW = 1_796_282_650.0  # 2026-12-03 07:24:10 UTC, 12:54:10 IST


def inst(seg, sid, kind, symbol, underlying, expiry=None, strike=None, opt=None, tick=0.05):
    return Instrument(seg, sid, "NSE", kind, symbol, symbol, underlying, expiry=expiry,
                      strike=strike, option_type=opt, tick_size=tick)


CATALOG = [
    inst("IDX_I", 13, "INDEX", "NIFTY", "NIFTY"),
    inst("IDX_I", 25, "INDEX", "BANKNIFTY", "BANKNIFTY"),
    inst("NSE_FNO", 1, "FUTIDX", "NIFTY-Jan2027-FUT", "NIFTY", datetime(2027, 1, 26)),
    inst("NSE_FNO", 2, "FUTIDX", "NIFTY-Dec2026-FUT", "NIFTY", datetime(2026, 12, 29)),
    inst("NSE_FNO", 3, "FUTIDX", "BANKNIFTY-Dec2026-FUT", "BANKNIFTY", datetime(2026, 12, 29)),
    inst("NSE_FNO", 4, "OPTIDX", "NIFTY-08Dec2026-26000-PE", "NIFTY", datetime(2026, 12, 8), 26000.0, "PE"),
    inst("NSE_FNO", 5, "OPTIDX", "NIFTY-08Dec2026-25900-CE", "NIFTY", datetime(2026, 12, 8), 25900.0, "CE"),
    inst("NSE_EQ", 2885, "EQUITY", "RELIANCE", "RELIANCE", tick=0.1),
    inst("NSE_FNO", 6, "FUTSTK", "RELIANCE-Dec2026-FUT", "RELIANCE", datetime(2026, 12, 29), tick=0.1),
]


def ev(kind, sid, seg="NSE_FNO", recv=NOW, **fields):
    return {"type": kind, "exchange_segment": seg, "security_id": sid,
            "recv_ts": int(recv * 1e9), **fields}


def board_with(events, now=NOW, **kw):
    board = qv.QuoteBoard(**kw)
    board.set_catalog(CATALOG)
    board.apply(events, now)
    return board


# ---- the model --------------------------------------------------------------------------------
@pytest.mark.unit
def test_change_pct_oi_change_depth_and_vwap_of_one_instrument():
    board = board_with([
        ev("prev_close", 2, prev_close=26_000.10, prev_oi=1_000_000),
        ev("full", 2, ltp=26_010.35, ltt=1_796_302_450, volume=5_000, atp=26_005.5, close=25_990.0,
           oi=1_012_345),
        ev("depth", 2, levels=5, bids=[[26_010.30, 150, 3], [26_010.25, 75, 1]],
           asks=[[26_010.40, 225, 4]]),
        ev("oi", 2, oi=1_012_500),
    ])
    row = board.rows[("NSE_FNO", 2)]
    assert row.symbol == "NIFTY-Dec2026-FUT" and row.underlying == "NIFTY"
    assert row.change == 10.25  # on the tick grid: no 10.250000000001
    assert row.pct_change == pytest.approx(10.25 / 26_000.10 * 100)
    assert row.oi_change == 1_012_500 - 1_000_000  # the oi event is the newest OI
    assert (row.bid, row.bid_qty, row.ask, row.ask_qty) == (26_010.30, 150, 26_010.40, 225)
    assert row.volume == 5_000 and row.atp == 26_005.5
    assert qv.ltt_text(row.ltt) == "12:54:10"
    text = {k: v[0] for k, v in qv.cells(row, NOW).items()}
    assert text["Chg"] == "+10.25" and text["%Chg"] == "+0.04%" and text["OI Chg"] == "+12,500"
    assert text["OI"] == "10,12,500" and text["Volume"] == "5,000" and text["LTT"] == "12:54:10"


@pytest.mark.unit
def test_previous_close_falls_back_to_the_quote_close_and_equities_have_no_oi_change():
    board = board_with([ev("quote", 2885, seg="NSE_EQ", ltp=1_532.5, close=1_520.0, volume=10, atp=1_530.0)])
    row = board.rows[("NSE_EQ", 2885)]
    assert row.change == 12.5 and row.pct_change == pytest.approx(12.5 / 1520 * 100)
    assert row.oi_change is None and qv.cells(row, NOW)["OI Chg"][0] == ""
    board.apply([ev("prev_close", 2885, seg="NSE_EQ", prev_close=1_500.0, prev_oi=0)], NOW)
    assert row.change == 32.5  # the prev_close event wins over the quote's close
    assert row.oi_change is None  # no OI today nor yesterday: blank, not 0


@pytest.mark.unit
def test_ltt_is_ist_wall_clock_encoded_as_utc_whatever_the_local_zone(monkeypatch):
    # 09:15:07 IST is sent as the epoch of 09:15:07 UTC (dhan-protocol.md §2.9)
    ltt = int(datetime(2026, 12, 3, 9, 15, 7, tzinfo=timezone.utc).timestamp())
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert qv.ltt_text(ltt) == "09:15:07"
    finally:
        monkeypatch.undo()
        time.tzset()
    assert qv.ltt_text(0) == "" and qv.ltt_text(None) == "" and qv.ltt_text("x") == ""


def _all_rows():
    return board_with([
        ev("ticker", 13, seg="IDX_I", ltp=26_100.0), ev("prev_close", 13, seg="IDX_I", prev_close=26_000.0),
        ev("prev_close", 25, seg="IDX_I", prev_close=59_000.0),
        ev("full", 1, ltp=26_300.0, close=26_000.0, volume=300, oi=900, atp=1.0),
        ev("prev_close", 1, prev_close=26_000.0, prev_oi=1_000),                         # +1.15%, OI -100
        ev("full", 2, ltp=25_740.0, close=26_000.0, volume=900, oi=2_500, atp=1.0),
        ev("prev_close", 2, prev_close=26_000.0, prev_oi=2_000),                         # -1.00%, OI +500
        ev("full", 3, ltp=59_590.0, close=59_000.0, volume=100, oi=1_000, atp=1.0),
        ev("prev_close", 3, prev_close=59_000.0, prev_oi=1_000),                         # +1.00%, OI 0
        ev("full", 4, ltp=100.0, close=100.0, volume=50, oi=10, atp=1.0),                # 0%, no prev_oi
        ev("full", 5, ltp=110.0, close=100.0, volume=2_000, oi=40, atp=1.0),
        ev("prev_close", 5, prev_close=100.0, prev_oi=20),                               # +10%, OI +20
        ev("quote", 2885, seg="NSE_EQ", ltp=1_500.0, close=1_515.0, volume=5_000, atp=1.0),  # -0.99%
        ev("quote", 777, ltp=10.0, volume=1),                                             # unknown
    ])


def symbols(board):
    return [r.symbol for r in board.visible()]


@pytest.mark.unit
def test_symbol_order_groups_by_underlying_indices_first_then_kind_expiry_strike():
    board = _all_rows()
    board.add_keys([("NSE_FNO", 6)])  # recorded, nothing received yet
    assert symbols(board) == [
        "NIFTY", "NIFTY-Dec2026-FUT", "NIFTY-Jan2027-FUT", "NIFTY-08Dec2026-25900-CE",
        "NIFTY-08Dec2026-26000-PE", "BANKNIFTY", "BANKNIFTY-Dec2026-FUT", "RELIANCE",
        "RELIANCE-Dec2026-FUT", "NSE_FNO:777"]
    assert board.underlyings() == ["NIFTY", "BANKNIFTY", "RELIANCE"]


@pytest.mark.unit
def test_sorting_by_change_volume_oi_change_reversed_and_missing_values_last():
    board = _all_rows()
    board.handle_key("c")
    assert board.sort == "change" and board.descending
    assert symbols(board)[:3] == ["NIFTY-08Dec2026-25900-CE", "NIFTY-Jan2027-FUT", "BANKNIFTY-Dec2026-FUT"]
    assert symbols(board)[-3:] == ["NIFTY-Dec2026-FUT", "BANKNIFTY", "NSE_FNO:777"]  # no change known last
    board.handle_key("r")
    assert not board.descending
    assert symbols(board)[:2] == ["NIFTY-Dec2026-FUT", "RELIANCE"]
    assert symbols(board)[-2:] == ["BANKNIFTY", "NSE_FNO:777"]  # still last when reversed
    board.handle_key("v")
    assert board.descending and symbols(board)[:3] == ["RELIANCE", "NIFTY-08Dec2026-25900-CE", "NIFTY-Dec2026-FUT"]
    board.handle_key("o")
    assert [(r.symbol, r.oi_change) for r in board.visible()][:4] == [
        ("NIFTY-Dec2026-FUT", 500), ("NIFTY-08Dec2026-25900-CE", 20), ("BANKNIFTY-Dec2026-FUT", 0),
        ("NIFTY-Jan2027-FUT", -100)]
    board.handle_key("s")
    assert board.sort == "symbol" and not board.descending and symbols(board)[0] == "NIFTY"


@pytest.mark.unit
def test_underlying_filter_exact_prefix_cycle_and_typed():
    board = _all_rows()
    board.set_filter("nifty")
    assert all(r.underlying == "NIFTY" for r in board.visible()) and len(board.visible()) == 5
    board.set_filter("BANK")  # no underlying is called BANK: the ones starting with it
    assert symbols(board) == ["BANKNIFTY", "BANKNIFTY-Dec2026-FUT"]
    board.set_filter(None)
    seen = []
    for _ in range(4):
        board.handle_key("f")
        seen.append(board.filter)
    assert seen == ["NIFTY", "BANKNIFTY", "RELIANCE", None]
    for key in ["/", "r", "e", "l", "x", "BACKSPACE", "ENTER"]:
        assert board.handle_key(key) is False  # letters while typing are not commands
    assert board.filter == "REL" and board.sort == "symbol" and board.typing is None
    assert symbols(board) == ["RELIANCE"]
    board.handle_key("/")
    board.handle_key("z")
    board.handle_key("ESC")  # cancels the typing, keeps the filter
    assert board.filter == "REL"
    board.handle_key("ESC")  # Esc outside typing shows all again
    assert board.filter is None
    assert board.handle_key("q") is True


@pytest.mark.unit
def test_flash_on_up_and_down_ticks_for_half_a_second_and_never_for_history():
    board = board_with([ev("full", 2, ltp=100.0, volume=1)])
    row = board.rows[("NSE_FNO", 2)]
    assert row.flash(NOW) == 0  # the first price is no tick
    board.apply([ev("full", 2, ltp=100.05, volume=2)], NOW)
    assert row.flash(NOW) == 1 and row.flash(NOW + 0.49) == 1 and row.flash(NOW + 0.5) == 0
    board.apply([ev("ticker", 2, ltp=100.0)], NOW + 1)
    assert row.flash(NOW + 1.2) == -1
    board.apply([ev("full", 2, ltp=100.00000001, volume=3)], NOW + 3)  # same tick: no flash
    assert row.flash(NOW + 3) == 0
    board.apply([ev("full", 2, ltp=99.0, volume=4, recv=NOW - 60)], NOW + 4)  # history replay
    assert row.flash(NOW + 4) == 0 and row.ltp == 99.0
    assert "on green" in qv.cells(board_with([ev("full", 2, ltp=1.0), ev("full", 2, ltp=2.0)]).rows[
        ("NSE_FNO", 2)], NOW)["LTP"][1]


@pytest.mark.unit
def test_bad_events_are_counted_never_fatal():
    board = board_with([
        ev("full", 2, ltp=100.0, volume=1),
        {"type": "full"},                                    # no instrument
        ev("full", 2, ltp="abc"),                            # text price
        ev("full", 2, ltp=float("nan")),
        {**ev("full", 2, ltp=1.0), "security_id": True},
        ev("depth", 2, bids="garbage", asks=[[0.0, 0, 0]]),  # an empty book side is not an error
        ev("market_status", 0, seg="NSE_EQ", status=1),      # not shown, not bad
        "not a dict",
    ])
    row = board.rows[("NSE_FNO", 2)]
    assert board.bad == 5 and row.ltp == 100.0 and row.bid is None and row.ask is None
    assert ("NSE_EQ", 0) not in board.rows


@pytest.mark.unit
def test_keys_from_a_cbreak_terminal():
    assert qv.parse_keys("vr/ab\r\x7f\x1b\x03") == ["v", "r", "/", "a", "b", "ENTER", "BACKSPACE", "ESC", "CTRL_C"]
    assert qv.parse_keys("\x1b[6~\x1b[5~\x1b[A\x1b[15~x") == ["PGDN", "PGUP", "UP", "x"]


@pytest.mark.unit
def test_numbers_in_indian_digits_and_compact_when_narrow():
    assert qv.indian(0) == "0" and qv.indian(999) == "999" and qv.indian(1_000) == "1,000"
    assert qv.indian(12_34_56_789) == "12,34,56,789" and qv.indian(-1_00_000) == "-1,00,000"
    assert qv.fit_qty(23_97_51_750, 12) == "23,97,51,750"
    assert qv.fit_qty(23_97_51_750, 10) == "23.98Cr"
    assert qv.fit_qty(1_46_52_000, 10, sign=True) == "+1.47Cr"
    assert qv.fit_qty(12_500, 10, sign=True) == "+12,500" and qv.fit_qty(None, 5) == ""
    assert qv.decimals_for(0.05) == 2 and qv.decimals_for(0.0025) == 4 and qv.decimals_for(1.0) == 2


def _render_text(board, status, width, height):
    import io
    from rich.console import Console
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(qv.render(board, status, NOW, width, height))
    return console.export_text().rstrip("\n").split("\n")


@pytest.mark.unit
def test_screen_fits_the_terminal_says_how_many_more_and_drops_columns_when_narrow():
    board = qv.QuoteBoard()
    board.add_keys([("NSE_FNO", n) for n in range(100)])
    board.apply([ev("full", n, ltp=100.0 + n, volume=n, oi=n, atp=1.0, ltt=1) for n in range(100)], NOW)
    live = Status(phase="live", redis_ok=True, last_entry_at=NOW)
    lines = _render_text(board, live, 160, 30)
    assert len(lines) == 30 and max(map(len, lines)) <= 160
    assert "live" in lines[0] and lines[-2].strip() == f"{100 - (30 - qv.CHROME_LINES)} more"
    assert "VWAP" in lines[2] and "LTT" in lines[2]
    board.handle_key("PGDN", 30 - qv.CHROME_LINES)
    assert "24 above" in _render_text(board, live, 160, 30)[-2]
    narrow = _render_text(board, live, 80, 24)
    assert len(narrow) == 24 and max(map(len, narrow)) <= 80
    assert "LTP" in narrow[2] and "%Chg" in narrow[2] and "Bid" in narrow[2] and "VWAP" not in narrow[2]
    board.handle_key("o")  # the column sorted on stays, however narrow
    assert "OI Chg" in _render_text(board, live, 80, 24)[2]
    down = _render_text(board, Status(phase="live", redis_ok=False, problem="Redis unreachable: refused"), 160, 30)
    assert "disconnected" in down[0] and "Redis unreachable" in down[0]
    stale = _render_text(board, Status(phase="live", redis_ok=True, last_entry_at=NOW - 12), 160, 30)
    assert "stale 12 s" in stale[0]


@pytest.mark.unit
def test_rows_before_any_event_are_the_instruments_the_feed_records():
    fields = [b"full:NSE_FNO:35001", b"depth:NSE_FNO:35001", "ticker:IDX_I:13", b"market_status:IDX_I:0",
              b"prev_close:NSE_EQ:2885", b"nonsense", b"quote:NSE_EQ:abc"]
    assert qv.recorded_keys(fields) == {("NSE_FNO", 35001), ("IDX_I", 13), ("NSE_EQ", 2885)}


@pytest.mark.unit
def test_the_board_imports_no_qt():
    code = ("import sys, dhan_trading.visualizers.quote_visualizer as q; "
            "bad = [m for m in sys.modules if m.startswith(('PyQt', 'pyqtgraph'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---- the real program on a Redis of the test's own --------------------------------------------
def sample_instruments(settings_env):
    from dhan_trading.instruments.master import load_master
    by_symbol = {i.trading_symbol: i for i in load_master(settings_env(DHAN_FEED_URL="ws://127.0.0.1:9"))}
    return by_symbol["NIFTY"], by_symbol["NIFTY-Dec2026-FUT"], by_symbol["BANKNIFTY-Dec2026-FUT"]


def publish(client, event):
    """What the feed does with an event: XADD to its stream, then HSET the latest field."""
    event = {**event, "recv_ts": time.time_ns()}
    data = orjson.dumps(event)
    client.xadd(bus.EVENT_STREAM[event["type"]], {bus.STREAM_FIELD: data})
    client.hset(bus.LATEST_HASH, bus.latest_field(event["type"], event["exchange_segment"],
                                                  event["security_id"]), data)


def program_env(tmp_path, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHAN_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, DHAN_FEED_URL="ws://127.0.0.1:9",
               DHAN_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO), TERM="xterm-256color")
    return env


def run_once(env, *args, timeout=90):
    return subprocess.run([sys.executable, "-m", "dhan_trading.visualizers.quote_visualizer", "--once",
                           "--width", "170", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def table_rows(stdout):
    """Symbol -> the cells of its line (split on runs of spaces; blank cells are not kept)."""
    return {parts[0]: parts[1:] for line in stdout.splitlines()[4:]
            if (parts := re.split(r"\s{1,}", line.strip())) and parts[0]}


LTT = int(datetime(2026, 12, 3, 10, 15, 30, tzinfo=timezone.utc).timestamp())  # 10:15:30 IST


def fill(client, nifty, fut, bank):
    n, f, b = nifty.security_id, fut.security_id, bank.security_id
    publish(client, {"type": "prev_close", "exchange_segment": "IDX_I", "security_id": n, "prev_close": 26_000.0, "prev_oi": 0})
    publish(client, {"type": "prev_close", "exchange_segment": "NSE_FNO", "security_id": f, "prev_close": 26_100.0, "prev_oi": 12_00_000})
    publish(client, {"type": "prev_close", "exchange_segment": "NSE_FNO", "security_id": b, "prev_close": 59_000.0, "prev_oi": 5_00_000})
    for k in range(40):  # a little walk: the board must keep the last values
        publish(client, {"type": "ticker", "exchange_segment": "IDX_I", "security_id": n, "ltp": 26_000.0 + k, "ltt": LTT - 40 + k})
        publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": f, "ltp": 26_150.0 + k / 10,
                         "ltt": LTT - 40 + k, "volume": 1_000 + 75 * k, "atp": 26_140.55, "close": 26_100.0,
                         "oi": 12_00_000 + 750 * k, "open": 26_120.0, "high": 26_160.0, "low": 26_090.0})
        publish(client, {"type": "depth", "exchange_segment": "NSE_FNO", "security_id": f, "levels": 5,
                         "bids": [[26_150.0 + k / 10 - 0.1, 300 + k, 3], [26_149.0, 75, 1]],
                         "asks": [[26_150.0 + k / 10 + 0.1, 450 + k, 5]]})
    publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": b, "ltp": 58_705.0, "ltt": LTT,
                     "volume": 30, "atp": 58_710.0, "close": 59_000.0, "oi": 4_99_970})
    publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": 424242, "ltp": 5.5, "ltt": LTT,
                     "volume": 1, "atp": 5.5})
    client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: b"garbage"})


@pytest.mark.integration
def test_once_prints_the_right_numbers_from_the_snapshot_and_from_the_day(own_redis, settings_env, tmp_path):
    nifty, fut, bank = sample_instruments(settings_env)
    client = redis.Redis.from_url(own_redis.url)
    env = program_env(tmp_path, own_redis.url)
    empty = run_once(env)  # nothing recorded yet: the universe the feed would subscribe, blank
    assert empty.returncode == 0, empty.stderr
    assert "showing the universe the feed would subscribe" in empty.stdout
    assert table_rows(empty.stdout)["NIFTY-Dec2026-FUT"] == [] and len(table_rows(empty.stdout)) > 100

    fill(client, nifty, fut, bank)
    done = run_once(env)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert "live" in done.stdout.splitlines()[0]
    # NIFTY spot: last ticker 26,039.00 against 26,000.00; no depth, volume or OI
    assert rows["NIFTY"] == ["26,039.00", "+39.00", "+0.15%", "10:15:29"]
    # the future: LTP 26,153.90 (tick 0.1), change +53.90 (+0.21%), best bid/ask of the last depth,
    # volume 1,000 + 75*39, OI 12,29,250 (+29,250), VWAP, LTT
    assert rows["NIFTY-Dec2026-FUT"] == ["26,153.90", "+53.90", "+0.21%", "339", "26,153.80", "26,154.00",
                                         "489", "3,925", "12,29,250", "+29,250", "26,140.55", "10:15:29"]
    assert rows["BANKNIFTY-Dec2026-FUT"][:3] == ["58,705.00", "-295.00", "-0.50%"]
    assert rows["BANKNIFTY-Dec2026-FUT"][3:] == ["30", "4,99,970", "-30", "58,710.00", "10:15:30"]
    assert rows["NSE_FNO:424242"][0] == "5.50"  # an instrument the master does not know
    symbols_in_order = [s for s in rows if s in ("NIFTY", "NIFTY-Dec2026-FUT", "BANKNIFTY-Dec2026-FUT", "NSE_FNO:424242")]
    assert symbols_in_order == ["NIFTY", "NIFTY-Dec2026-FUT", "BANKNIFTY-Dec2026-FUT", "NSE_FNO:424242"]

    # the whole day (no writer yet: the streams from the start of the day) ends on the same board
    full = run_once(env, "--full-history")
    assert full.returncode == 0, full.stderr
    assert full.stdout.splitlines()[3:] == done.stdout.splitlines()[3:]

    only = run_once(env, "--underlying", "banknifty", "--sort", "volume")
    assert set(table_rows(only.stdout)) == {"BANKNIFTY-Dec2026-FUT"}
    assert "underlying BANKNIFTY" in only.stdout and "sort volume" in only.stdout

    own_redis.stop()
    down = run_once(env, "--wait", "3")
    assert down.returncode == 1 and "disconnected" in down.stdout.splitlines()[0]
    client.close()


@pytest.mark.integration
def test_snapshot_start_takes_today_from_the_hash_and_replays_what_the_hash_may_miss(own_redis):
    """The fast start: today's entries of dhan:latest, then the streams from 2 s before their
    ends (an event whose HSET had not landed is replayed), never yesterday's latest quote."""
    client = redis.Redis.from_url(own_redis.url)
    yesterday = time.time_ns() - 86_400 * 10**9
    stale = {"type": "full", "exchange_segment": "NSE_FNO", "security_id": 7, "recv_ts": yesterday,
             "ltp": 1.0, "volume": 1}
    client.hset(bus.LATEST_HASH, bus.latest_field("full", "NSE_FNO", 7), orjson.dumps(stale))
    client.hset(bus.LATEST_HASH, bus.latest_field("full", "NSE_FNO", 9), b"not json")
    publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": 8, "ltp": 50.0, "volume": 10})
    # in the stream, not (yet) in the hash: the feed's HSET comes after its XADD
    late = {"type": "full", "exchange_segment": "NSE_FNO", "security_id": 8, "recv_ts": time.time_ns(),
            "ltp": 51.0, "volume": 12}
    client.xadd(bus.STREAM_QUOTES, {bus.STREAM_FIELD: orjson.dumps(late)})
    feed = qv.BoardFeed(lambda: redis.Redis.from_url(own_redis.url), None)
    feed.start()
    board = qv.QuoteBoard()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            board.apply(feed.drain(), time.time())
            if feed.status.phase == "live" and board.rows.get(("NSE_FNO", 8)) and \
                    board.rows[("NSE_FNO", 8)].volume == 12:
                break
            time.sleep(0.05)
        row = board.rows[("NSE_FNO", 8)]
        assert (row.ltp, row.volume) == (51.0, 12)
        assert ("NSE_FNO", 7) not in board.rows  # yesterday's
        assert feed.status.history_events == 1 and feed.status.malformed == 1
        publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": 8, "ltp": 52.0, "volume": 15})
        deadline = time.monotonic() + 30
        while row.volume != 15 and time.monotonic() < deadline:
            board.apply(feed.drain(), time.time())
            time.sleep(0.05)
        assert (row.ltp, row.volume) == (52.0, 15) and feed.status.freshness() == "live"
    finally:
        feed.stop()
        client.close()


# ---- the live board in a pseudo-terminal, as over SSH -----------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>78]")


class Terminal:
    """The board on the slave side of a pty of `cols` x `rows`; the master side is read in a
    thread; `screen()` is the text written since `mark()` with the escape codes removed."""

    def __init__(self, env, cols=150, rows=30, *args):
        self.master, slave = pty.openpty()
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(slave))
        import fcntl
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.attrs_before = termios.tcgetattr(slave)
        self.slave = slave
        self.proc = subprocess.Popen([sys.executable, "-m", "dhan_trading.visualizers.quote_visualizer",
                                      "--refresh", "10", *args], stdin=slave, stdout=slave,
                                     stderr=subprocess.PIPE, env=env, cwd=REPO, start_new_session=True)
        self.raw = bytearray()
        self.start = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if ready:
                    data = os.read(self.master, 65536)
                    if not data:
                        return
                    with self.lock:
                        self.raw.extend(data)
            except OSError:
                return
            if self.proc.poll() is not None and not ready:
                return

    def mark(self):
        with self.lock:
            self.start = len(self.raw)

    def text(self, raw=False):
        with self.lock:
            data = bytes(self.raw[self.start:]).decode("utf-8", "replace")
        return data if raw else _ANSI.sub("", data)

    def wait_for(self, predicate, timeout=30.0, what=""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.text()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"not on screen: {what}\n--- screen ---\n{self.text()[-3000:]}\n"
                             f"--- stderr ---\n{self.proc.stderr.read().decode() if self.proc.poll() is not None else ''}")

    def keys(self, data: str):
        self.mark()
        os.write(self.master, data.encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.integration
@pytest.mark.slow
def test_live_board_in_a_pty_keys_flash_disconnect_and_resume(own_redis, settings_env, tmp_path):
    nifty, fut, bank = sample_instruments(settings_env)
    client = redis.Redis.from_url(own_redis.url)
    fill(client, nifty, fut, bank)
    term = Terminal(program_env(tmp_path, own_redis.url), 150, 30)
    try:
        term.wait_for(lambda s: "NIFTY-Dec2026-FUT" in s and "26,153.90" in s and "live" in s,
                      what="the future's last price, live")
        term.wait_for(lambda s: "end of list" in s and "q quit" in s, what="the footer")
        # an up tick: the new price, with the LTP cell on a green background (256-colour 28)
        term.mark()
        publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": fut.security_id,
                         "ltp": 26_160.0, "ltt": LTT + 5, "volume": 9_000, "atp": 26_141.0, "close": 26_100.0,
                         "oi": 12_40_000})
        term.wait_for(lambda s: "26,160.00" in s and "+60.00" in s, what="the up tick")
        assert re.search(r"48;5;28m\s*26,160\.00", term.text(raw=True)), "no green flash on the up tick"
        # keys: the filter by underlying, typed; the sort
        term.keys("/bank\r")
        term.wait_for(lambda s: "underlying BANK" in s and "1 of 4 instruments" in s, what="typed filter")
        term.keys("\x1b")  # Esc: all again
        term.wait_for(lambda s: "underlying all" in s, what="filter cleared")
        term.keys("v")
        term.wait_for(lambda s: "sort volume ↓" in s, what="volume sort")
        term.keys("f")
        term.wait_for(lambda s: "underlying NIFTY" in s and "2 of 4" in s, what="f cycles to NIFTY")
        # Redis goes away: disconnected; it comes back (empty, as after a crash): live, new data shows
        own_redis.stop()
        term.mark()
        term.wait_for(lambda s: "disconnected" in s, what="disconnected")
        own_redis.start()
        client = redis.Redis.from_url(own_redis.url)
        publish(client, {"type": "full", "exchange_segment": "NSE_FNO", "security_id": fut.security_id,
                         "ltp": 26_170.5, "ltt": LTT + 9, "volume": 9_100, "atp": 26_141.5, "close": 26_100.0,
                         "oi": 12_40_000})
        term.mark()
        term.wait_for(lambda s: "26,170.50" in s and " live " in s, what="resumed after the restart")
        term.keys("q")
        assert term.proc.wait(timeout=15) == 0
        assert termios.tcgetattr(term.slave) == term.attrs_before  # cbreak undone on exit
    finally:
        term.close()
        client.close()
