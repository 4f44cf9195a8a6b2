"""Per-instrument continuity and gap events (pure: decoded batches in, gap events out).

After a socket reconnects or is recycled for silence, every instrument it carries is marked
pending. The first packet of a pending instrument produces one `gap` event with the last
LTT/volume seen before the break and the first after it, so bars and volume profiles can
mark the hole instead of attributing the missed volume to one price.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..protocol.decode import Decoded, instrument_key, instrument_keys
from ..protocol.packets import FULL, QUOTE, TICKER
from ..protocol.segments import segment_name

_TRADED = (TICKER, QUOTE, FULL)


class GapTracker:
    def __init__(self) -> None:
        self.last: dict[tuple[str, int], tuple[int, int | None]] = {}
        self.pending: dict[tuple[str, int], str] = {}
        self._pending_keys = np.zeros(0, np.uint64)
        self.gaps = 0

    def mark(self, instruments: Iterable[tuple[str, int]], reason: str) -> None:
        """A socket carrying `instruments` came back after `reason` ("reconnect" or "stall")."""
        for key in instruments:
            self.pending.setdefault(key, reason)
        self._index_pending()

    def observe(self, decoded: Decoded) -> list[dict]:
        """Gap events for pending instruments that resume in `decoded`; then remember its last values."""
        events: list[dict] = []
        if self.pending:
            resumed = self._first_seen(decoded)
            for key, (ltt, volume, recv_ts) in resumed.items():
                reason = self.pending.pop(key)
                before = self.last.get(key)
                if before is None:
                    continue  # never seen before the break: nothing to bridge
                self.gaps += 1
                events.append({"type": "gap", "exchange_segment": key[0], "security_id": key[1],
                               "recv_ts": recv_ts, "reason": reason, "last_ltt": before[0],
                               "last_volume": before[1], "resume_ltt": ltt, "resume_volume": volume})
            if resumed:  # every resumed key left `pending`, with or without an event
                self._index_pending()
        self.last.update(decoded.continuity())
        return events

    def _index_pending(self) -> None:
        """Keep the sorted key array `_first_seen` matches packets against in step with `pending`."""
        self._pending_keys = np.array(sorted(instrument_key(*k) for k in self.pending), np.uint64)

    def _first_seen(self, decoded: Decoded) -> dict[tuple[str, int], tuple[int, int | None, int]]:
        best: dict[tuple[str, int], tuple[int, int, int | None, int]] = {}
        for rec in decoded.records:
            if rec.code not in _TRADED or not len(rec.rows):
                continue
            keys = instrument_keys(rec.rows["segment"], rec.rows["security_id"])
            for i in np.flatnonzero(np.isin(keys, self._pending_keys)).tolist():
                key = (segment_name(int(rec.rows["segment"][i])), int(rec.rows["security_id"][i]))
                order = int(rec.order[i])
                if key in best and best[key][0] <= order:
                    continue
                volume = int(rec.rows["volume"][i]) if rec.code != TICKER else None
                best[key] = (order, int(rec.rows["ltt"][i]), volume, int(rec.recv_ts[i]))
        return {key: value[1:] for key, value in best.items()}
