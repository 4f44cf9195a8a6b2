"""Pure Dhan v2 protocol code: bytes <-> records and request JSON. No I/O, no Redis, no asyncio."""
from .decode import Decoded, FeedDecoder, TickTable, decode_frames
from .depth import decode_depth_frame
from .packets import (encode_depth_disconnect, encode_depth_side, encode_disconnect, encode_full,
                      encode_market_status, encode_oi, encode_prev_close, encode_quote, encode_ticker)
from .requests import (ProtocolError, Request, depth_subscribe_messages, depth_url, disconnect_message,
                       feed_url, parse_request, subscribe_messages, unsubscribe_messages)
from .segments import SEGMENT_CODES, SEGMENT_NAMES, segment_code, segment_name

__all__ = [name for name in dir() if not name.startswith("_")]
