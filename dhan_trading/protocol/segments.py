"""Exchange segments: the string names of the JSON API and the numeric codes of binary headers."""
from __future__ import annotations

SEGMENT_CODES: dict[str, int] = {
    "IDX_I": 0, "NSE_EQ": 1, "NSE_FNO": 2, "NSE_CURRENCY": 3, "BSE_EQ": 4, "MCX_COMM": 5,
    "BSE_CURRENCY": 7, "BSE_FNO": 8,
}
SEGMENT_NAMES: dict[int, str] = {code: name for name, code in SEGMENT_CODES.items()}
DEPTH_SEGMENTS = ("NSE_EQ", "NSE_FNO")  # the only segments Dhan's 20-level depth feed serves


def segment_name(code: int) -> str:
    """Name for a header code; an unknown code keeps its number so no data is dropped."""
    return SEGMENT_NAMES.get(code) or f"SEGMENT_{code}"


def segment_code(name: str) -> int:
    try:
        return SEGMENT_CODES[name]
    except KeyError:
        if name.startswith("SEGMENT_") and name[8:].isdigit():
            return int(name[8:])
        raise ValueError(f"unknown exchange segment {name!r}; expected one of {', '.join(SEGMENT_CODES)}") from None
