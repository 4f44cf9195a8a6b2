"""Downloading the master from a URL: progress bar, one download a day, fallback to the cache."""
from __future__ import annotations

import logging
import threading
from datetime import date
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dhan_trading.config import SAMPLE_INSTRUMENTS_CSV
from dhan_trading.instruments.master import MasterError, load_master, read_master

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 21)


class Server:
    """A loopback HTTP server serving one directory and counting the requests it answered."""

    def __init__(self, directory):
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "api-scrip-master.csv").write_bytes(SAMPLE_INSTRUMENTS_CSV.read_bytes())
    s = Server(served)
    yield s
    s.stop()


def test_download_shows_progress_and_is_cached_for_the_day(server, tmp_path, capsys):
    cache = tmp_path / "var"
    url = server.url("api-scrip-master.csv")
    found = read_master(url, progress=True, cache_dir=cache, today=DAY)
    assert len(found) == len(read_master(str(SAMPLE_INSTRUMENTS_CSV)))
    cached = cache / "scrip-master-2026-11-21.csv"
    assert cached.read_bytes() == SAMPLE_INSTRUMENTS_CSV.read_bytes()
    assert not list(cache.glob("*.part"))
    err = capsys.readouterr().err
    assert "scrip master" in err and "kB" in err  # rich's download column
    assert len(server.requests) == 1

    assert read_master(url, progress=True, cache_dir=cache, today=DAY) == found
    assert len(server.requests) == 1  # today's copy reused
    read_master(url, cache_dir=cache, today=date(2026, 11, 22))
    assert len(server.requests) == 2 and (cache / "scrip-master-2026-11-22.csv").is_file()


def test_load_master_caches_under_the_data_dir(server, settings_env):
    settings = settings_env(DHAN_INSTRUMENTS_CSV=server.url("api-scrip-master.csv"))
    assert load_master(settings, today=DAY)
    assert (settings.data_dir / "scrip-master-2026-11-21.csv").is_file()


def test_a_failed_download_falls_back_to_the_newest_cached_copy(server, tmp_path, caplog):
    cache = tmp_path / "var"
    cache.mkdir()
    (cache / "scrip-master-2026-11-19.csv").write_text(SAMPLE_INSTRUMENTS_CSV.read_text().splitlines()[0] + "\n")
    (cache / "scrip-master-2026-11-20.csv").write_bytes(SAMPLE_INSTRUMENTS_CSV.read_bytes())
    with caplog.at_level(logging.WARNING, logger="dhan_trading.instruments.master"):
        found = read_master(server.url("missing.csv"), cache_dir=cache, today=DAY)
    assert len(found) > 700  # the 11-20 copy, not the empty 11-19 one
    assert "using the cached copy" in caplog.text and "scrip-master-2026-11-20.csv" in caplog.text
    assert not (cache / "scrip-master-2026-11-21.csv").exists()


def test_no_network_and_no_cache_is_a_clear_error(server, tmp_path):
    url = server.url("api-scrip-master.csv") + "?token=abcdef123"
    server.stop()
    server.stop = lambda: None
    with pytest.raises(MasterError, match="DHAN_INSTRUMENTS_CSV") as info:
        read_master(url, cache_dir=tmp_path / "var", today=DAY)
    assert "abcdef123" not in str(info.value)


def test_only_the_newest_downloads_are_kept(server, tmp_path):
    cache = tmp_path / "var"
    url = server.url("api-scrip-master.csv")
    for day in range(17, 22):
        read_master(url, cache_dir=cache, today=date(2026, 11, day))
    assert sorted(p.name for p in cache.glob("scrip-master-*.csv")) == [
        "scrip-master-2026-11-19.csv", "scrip-master-2026-11-20.csv", "scrip-master-2026-11-21.csv"]
