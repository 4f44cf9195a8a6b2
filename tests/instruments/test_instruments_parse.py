"""Reading Dhan's compact scrip master: columns by name, ticks in rupees, underlyings, bad rows."""
from __future__ import annotations

import csv
import io
import logging
from datetime import datetime

import pytest

from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
from dhan_trading.instruments.columns import COMPACT_COLUMNS, CSV_SEGMENTS
from dhan_trading.instruments.master import (MasterError, derive_underlying, parse_master, read_master,
                                             tick_sizes, tick_to_rupees)
from dhan_trading.protocol.segments import SEGMENT_CODES

pytestmark = pytest.mark.unit

FUTIDX = {"SEM_EXM_EXCH_ID": "NSE", "SEM_SEGMENT": "D", "SEM_SMST_SECURITY_ID": "52175",
          "SEM_INSTRUMENT_NAME": "FUTIDX", "SEM_EXPIRY_CODE": "0", "SEM_TRADING_SYMBOL": "NIFTY-Jun2026-FUT",
          "SEM_LOT_UNITS": "65.0", "SEM_CUSTOM_SYMBOL": "NIFTY JUN FUT",
          "SEM_EXPIRY_DATE": "2026-06-30 14:30:00", "SEM_STRIKE_PRICE": "-0.01000", "SEM_OPTION_TYPE": "XX",
          "SEM_TICK_SIZE": "10.0000", "SEM_EXPIRY_FLAG": "M", "SEM_EXCH_INSTRUMENT_TYPE": "FUT",
          "SEM_SERIES": "", "SM_SYMBOL_NAME": ""}
INDEX = dict(FUTIDX, SEM_SEGMENT="I", SEM_SMST_SECURITY_ID="13", SEM_INSTRUMENT_NAME="INDEX",
             SEM_TRADING_SYMBOL="NIFTY", SEM_LOT_UNITS="1.0", SEM_CUSTOM_SYMBOL="Nifty 50",
             SEM_EXPIRY_DATE="0001-01-01", SEM_TICK_SIZE="0.0500", SEM_EXPIRY_FLAG="NA", SM_SYMBOL_NAME="NIFTY")
OPTION = dict(FUTIDX, SEM_SMST_SECURITY_ID="40001", SEM_INSTRUMENT_NAME="OPTIDX",
              SEM_TRADING_SYMBOL="NIFTY-Jun2026-25000-CE", SEM_STRIKE_PRICE="25000.00000",
              SEM_OPTION_TYPE="CE", SEM_TICK_SIZE="5.0000")
EQUITY = dict(FUTIDX, SEM_SEGMENT="E", SEM_SMST_SECURITY_ID="2885", SEM_INSTRUMENT_NAME="EQUITY",
              SEM_TRADING_SYMBOL="RELIANCE", SEM_LOT_UNITS="1.0", SEM_EXPIRY_DATE="", SEM_TICK_SIZE="10.0000",
              SEM_EXPIRY_FLAG="NA", SM_SYMBOL_NAME="RELIANCE INDUSTRIES LTD")
CRUDE = dict(FUTIDX, SEM_EXM_EXCH_ID="MCX", SEM_SEGMENT="M", SEM_SMST_SECURITY_ID="464925",
             SEM_INSTRUMENT_NAME="FUTCOM", SEM_TRADING_SYMBOL="CRUDEOIL-19Oct2026-FUT",
             SEM_EXPIRY_DATE="2026-10-19 23:30:00", SEM_TICK_SIZE="100.0", SM_SYMBOL_NAME="CRUDEOIL")


def csv_text(rows: list[dict], columns=COMPACT_COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def parse(rows, columns=COMPACT_COLUMNS):
    return parse_master(io.StringIO(csv_text(rows, columns)))


def test_a_futures_row_becomes_an_instrument_with_every_field():
    (fut,) = parse([FUTIDX]).instruments
    assert fut.key == ("NSE_FNO", 52175)
    assert (fut.exchange, fut.instrument, fut.trading_symbol, fut.custom_symbol) == \
        ("NSE", "FUTIDX", "NIFTY-Jun2026-FUT", "NIFTY JUN FUT")
    assert fut.underlying == "NIFTY"  # SM_SYMBOL_NAME is blank on FUTIDX rows
    assert fut.expiry == datetime(2026, 6, 30, 14, 30)
    assert (fut.strike, fut.option_type, fut.lot_size, fut.expiry_flag) == (None, None, 65, "M")
    assert fut.tick_size == pytest.approx(0.10)


def test_columns_are_read_by_name_whatever_their_order_and_extras():
    shuffled = list(reversed(COMPACT_COLUMNS)) + ["SOME_NEW_COLUMN"]
    rows = [dict(r, SOME_NEW_COLUMN="x") for r in (FUTIDX, INDEX, OPTION, EQUITY, CRUDE)]
    assert parse(rows, shuffled).instruments == parse(rows).instruments


def test_a_missing_optional_column_reads_as_blank_but_a_required_one_is_an_error():
    optional_gone = [c for c in COMPACT_COLUMNS if c != "SEM_CUSTOM_SYMBOL"]
    (fut,) = parse([FUTIDX], optional_gone).instruments
    assert fut.custom_symbol == "" and fut.security_id == 52175
    with pytest.raises(MasterError, match="SEM_SMST_SECURITY_ID"):
        parse([FUTIDX], [c for c in COMPACT_COLUMNS if c != "SEM_SMST_SECURITY_ID"])
    with pytest.raises(MasterError, match="empty"):
        parse_master(io.StringIO(""))


@pytest.mark.parametrize("raw, is_index, rupees", [
    ("5.0000", False, 0.05), ("10.0000", False, 0.10), ("1.0000", False, 0.01), ("100.0", False, 1.0),
    ("50.0000", False, 0.50), ("0.2500", False, 0.0025),  # currency: a quarter paisa
    ("0.0500", True, 0.05),  # the index-row quirk: already rupees
    ("5.0000", True, 0.05),  # an index row written in paise like the others
    ("", False, 0.01), ("0", False, 0.01), ("-1", True, 0.01),  # unknown -> two decimals
])
def test_tick_sizes_become_rupees(raw, is_index, rupees):
    assert tick_to_rupees(raw, is_index) == pytest.approx(rupees)


def test_parsed_ticks_per_kind_of_row():
    ticks = tick_sizes(parse([FUTIDX, INDEX, OPTION, EQUITY, CRUDE]).instruments)
    assert ticks == pytest.approx({("NSE_FNO", 52175): 0.10, ("IDX_I", 13): 0.05, ("NSE_FNO", 40001): 0.05,
                                   ("NSE_EQ", 2885): 0.10, ("MCX_COMM", 464925): 1.0})


@pytest.mark.parametrize("symbol, name, derivative, underlying", [
    ("NIFTY-Jun2026-FUT", "", True, "NIFTY"),
    ("BANKNIFTY-Jun2026-59000-PE", "", True, "BANKNIFTY"),
    ("NIFTY-02Dec2026-26000-CE", "", True, "NIFTY"),
    ("BAJAJ-AUTO-Dec2026-FUT", "", True, "BAJAJ-AUTO"),
    ("M&M-Dec2026-FUT", "", True, "M&M"),
    ("CRUDEOIL-19Oct2026-FUT", "CRUDEOIL", True, "CRUDEOIL"),
    ("USDINR 26DEC FUT", "USDINR", True, "USDINR"),  # unexpected shape: SM_SYMBOL_NAME
    ("ODD-SHAPE", "", True, "ODD"),
    ("RELIANCE", "RELIANCE INDUSTRIES LTD", False, "RELIANCE"),  # company name is not the underlying
    ("INDIA VIX", "INDIA VIX", False, "INDIA VIX"),
])
def test_underlying_derivation(symbol, name, derivative, underlying):
    assert derive_underlying(symbol, name, derivative) == underlying


def test_options_index_and_equity_rows():
    index, option, equity, crude = parse([INDEX, OPTION, EQUITY, CRUDE]).instruments
    assert index.key == ("IDX_I", 13) and index.expiry is None and index.underlying == "NIFTY"
    assert (option.strike, option.option_type, option.underlying) == (25000.0, "CE", "NIFTY")
    assert equity.underlying == "RELIANCE" and equity.expiry is None and equity.strike is None
    assert crude.key == ("MCX_COMM", 464925) and crude.expiry == datetime(2026, 10, 19, 23, 30)


def test_every_csv_segment_maps_to_a_wire_segment():
    assert set(CSV_SEGMENTS.values()) <= set(SEGMENT_CODES)
    assert CSV_SEGMENTS[("NSE", "I")] == CSV_SEGMENTS[("BSE", "I")] == "IDX_I"
    assert CSV_SEGMENTS[("MCX", "M")] == "MCX_COMM" and CSV_SEGMENTS[("BSE", "D")] == "BSE_FNO"


def test_bad_rows_are_counted_and_the_good_ones_kept():
    bad = [dict(FUTIDX, SEM_SMST_SECURITY_ID="abc"),
           dict(FUTIDX, SEM_EXPIRY_DATE="30/06/2026"),
           dict(OPTION, SEM_STRIKE_PRICE="n/a"),
           dict(FUTIDX, SEM_SEGMENT="Z")]
    text = csv_text([FUTIDX, *bad, EQUITY]) + "NSE,D,1\n\n"
    result = parse_master(io.StringIO(text))
    assert [i.security_id for i in result.instruments] == [52175, 2885]
    assert result.bad_count == 5
    assert result.bad_rows == {"bad value": 3, "unknown segment": 1, "too few columns": 1}
    assert any("row 3" in e for e in result.examples)


def test_read_master_logs_the_bad_rows(tmp_path, caplog):
    path = tmp_path / "master.csv"
    path.write_text("\ufeff" + csv_text([FUTIDX, dict(FUTIDX, SEM_SMST_SECURITY_ID="x")]), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dhan_trading.instruments.master"):
        found = read_master(str(path))
    assert [i.security_id for i in found] == [52175]  # the BOM did not hide the first column
    assert "skipped 1 bad row" in caplog.text


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MasterError, match="DHAN_INSTRUMENTS_CSV"):
        read_master(str(tmp_path / "nope.csv"))


def test_the_bundled_sample_parses_without_a_bad_row():
    with open(SAMPLE_INSTRUMENTS_CSV, newline="") as fh:
        result = parse_master(fh)
    assert result.bad_count == 0 and len(result.instruments) > 700
    assert len({i.key for i in result.instruments}) == len(result.instruments)
