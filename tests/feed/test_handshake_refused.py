"""Dhan refusing the WebSocket handshake with an HTTP status: 429 (too many connections or
requests) cools off like 805 instead of storming; any other status retries with backoff. Either
way the warning names the status and the heartbeat carries it as the socket's last error."""
from __future__ import annotations

import logging
import socketserver
import threading
import time

import pytest

from tests.feed.test_resilience import run_feed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Refusing(socketserver.ThreadingTCPServer):
    """Answers every handshake with `status`; records when each attempt came."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, status: int):
        self.status, self.attempts = status, []

        class Handler(socketserver.StreamRequestHandler):
            def handle(inner):
                self.attempts.append(time.monotonic())
                while inner.rfile.readline() not in (b"\r\n", b""):
                    pass
                inner.wfile.write(f"HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n".encode())
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server_address[1]}"


@pytest.mark.parametrize("status, gap_min, gap_max", [(429, 0.9, 5.0), (403, 0.0, 0.8)])
def test_a_refused_handshake_is_retried_and_429_cools_off_first(redis_url, caplog, status, gap_min, gap_max):
    server = Refusing(status)
    health = []
    try:
        with caplog.at_level(logging.WARNING, logger="dhan_trading.market_feed.connection"):
            feed = run_feed(server.url, redis_url, cool_off=1.0, stall_timeout=0.5, timeout=10,
                            until=lambda f: len(server.attempts) >= 2 and (health.append(f.health())
                                                                           or health[-1]["healthy"] is False))
    finally:
        server.shutdown()
        server.server_close()
    assert len(server.attempts) >= 2 and feed.fatal is None  # refused, never given up
    gap = server.attempts[1] - server.attempts[0]
    assert gap_min <= gap <= gap_max, f"retried after {gap:.2f} s (cool-off 1 s, backoff 0.05 s)"
    assert f"feed#0: handshake refused with HTTP {status}" in caplog.text
    assert health[-1]["state"] == "connecting"
    assert f"last error: handshake refused with HTTP {status}" in health[-1]["problem"]
