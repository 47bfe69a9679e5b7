"""Failed authentication is rate limited per client address (the `limits` library, in process memory)."""

from __future__ import annotations

import math
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from api.errors import ApiError


class FailedAuthLimiter:
    """Counts failures only: a client with a valid key is never slowed down by its own traffic."""

    def __init__(self, limit: str) -> None:
        self._item = parse(limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, client: str) -> None:
        """429 with Retry-After while `client` is over its allowance of failures."""
        if self._limiter.test(self._item, client):
            return
        reset = self._limiter.get_window_stats(self._item, client).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise ApiError(
            429, "too_many_requests",
            f"too many failed authentications from this address; retry in {retry_after} s",
            {"limit": str(self._item)}, headers={"Retry-After": str(retry_after)},
        )

    def failed(self, client: str) -> None:
        self._limiter.hit(self._item, client)
