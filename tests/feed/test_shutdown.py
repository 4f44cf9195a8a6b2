"""Stopping while a socket hangs in its handshake (a server that accepts TCP and never answers):
the feed does not wait for the 10 s open timeout, it cancels that socket after flush_timeout,
says so, and still stops in order."""
from __future__ import annotations

import logging
import socketserver
import threading
import time

import pytest

from tests.feed.test_resilience import run_feed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Silent(socketserver.ThreadingTCPServer):
    """Accepts connections, reads the handshake request and never answers it."""
    daemon_threads = True

    def __init__(self):
        self.accepted = threading.Event()

        class Handler(socketserver.BaseRequestHandler):
            def handle(inner):
                self.accepted.set()
                while inner.request.recv(4096):
                    pass
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_socket_stuck_in_its_handshake_is_cancelled_at_shutdown(redis_url, caplog):
    server = Silent()
    try:
        with caplog.at_level(logging.INFO, logger="dhan_trading.market_feed.feed"):
            started = time.monotonic()
            feed = run_feed(f"ws://127.0.0.1:{server.server_address[1]}", redis_url, flush_timeout=0.5,
                            until=lambda f: server.accepted.is_set())
            took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert took < 5, f"stopping took {took:.1f} s (open timeout 10 s, flush timeout 0.5 s)"
    assert "feed#0 did not close within 0 s; cancelled" in caplog.text
    assert "feed stopped:" in caplog.text and feed.failed is None and feed.fatal is None
    assert feed.health(final=True)["state"] == "stopped"
