"""Test helpers: wait on a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T] | T], *, timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns a truthy value without raising; fail with its last error at the deadline."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
                value = await value  # type: ignore[misc]
            if value:
                return value  # type: ignore[return-value]
            last = AssertionError(f"condition still false: {value!r}")
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"eventually: timed out after {timeout}s") from last
        await asyncio.sleep(interval)  # eventually: poll interval


def pd_event(
    routing_key: str,
    dedup_key: str,
    *,
    action: str = "trigger",
    summary: str = "High error rate on checkout",
    component: str = "checkout",
    severity: str = "critical",
    klass: str = "HighErrorRate",
) -> dict:
    """A PagerDuty Events v2 body."""
    body: dict = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}
    if action == "trigger":
        body["payload"] = {
            "summary": summary, "source": "test", "severity": severity, "component": component, "class": klass,
        }
    return body
