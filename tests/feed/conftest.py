"""The feed's tests use a redis-server of their own (own_redis), not the shared db 15: they
stop and restart it, and they compare whole streams, which another suite flushing db 15 at
the same moment would spoil."""
from __future__ import annotations

import pytest


@pytest.fixture
def redis_url(own_redis):
    return own_redis.url

