"""Facts about Dhan's compact scrip-master file (dhan-protocol.md §6.2), shared by reader and generator."""
from __future__ import annotations

# The compact file's columns, in file order. The reader selects columns by name, never by position.
COMPACT_COLUMNS: tuple[str, ...] = (
    "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME",
    "SEM_EXPIRY_CODE", "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL",
    "SEM_EXPIRY_DATE", "SEM_STRIKE_PRICE", "SEM_OPTION_TYPE", "SEM_TICK_SIZE",
    "SEM_EXPIRY_FLAG", "SEM_EXCH_INSTRUMENT_TYPE", "SEM_SERIES", "SM_SYMBOL_NAME",
)

# Columns without which a row cannot be subscribed or stored.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME",
    "SEM_TRADING_SYMBOL",
)

# (SEM_EXM_EXCH_ID, SEM_SEGMENT) -> the exchange segment name used on the wire and in Redis.
# Segment "I" (index) is missing from Dhan's documentation but present in the file.
CSV_SEGMENTS: dict[tuple[str, str], str] = {
    ("NSE", "I"): "IDX_I", ("BSE", "I"): "IDX_I",
    ("NSE", "E"): "NSE_EQ", ("NSE", "D"): "NSE_FNO", ("NSE", "C"): "NSE_CURRENCY",
    ("BSE", "E"): "BSE_EQ", ("BSE", "D"): "BSE_FNO", ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
}

# SEM_OPTION_TYPE values that make a row an option (every other row says XX).
OPTION_TYPES = ("CE", "PE")
