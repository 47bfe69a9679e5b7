"""Temporal client construction: every client uses the pydantic data converter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from vigil.settings import TemporalSettings


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
    )


T = TypeVar("T")


# Status codes that mean Temporal (or the way to it) is down or overloaded, not that it refused a request.
OUTAGE_CODES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


def is_outage(err: BaseException) -> bool:
    """Temporal could not be reached or did not answer: retry everything later, blame no request."""
    if isinstance(err, (TemporalUnavailable, WorkflowTimeout)):
        return True
    return isinstance(err, RPCError) and err.status in OUTAGE_CODES


class TemporalUnavailable(Exception):
    """Temporal cannot be reached; callers answer 503 and keep what they stored."""


class WorkflowTimeout(Exception):
    """A workflow did not answer in time (typically: no worker is running)."""


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """Bound a workflow update or query: with no worker it would otherwise wait forever."""
    try:
        return await asyncio.wait_for(call, timeout=timeout)
    except (asyncio.TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise WorkflowTimeout(f"no answer within {timeout:g}s") from None
