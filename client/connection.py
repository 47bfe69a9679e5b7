"""The Temporal connection: every client uses the pydantic data converter, and every call has a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from client.errors import TemporalUnavailable, WorkflowTimeout
from vigil.logging import get_logger
from vigil.settings import TemporalSettings

log = get_logger(__name__)
T = TypeVar("T")
ClientGetter = Callable[[], Awaitable[Client]]
CONNECT_TIMEOUT_SECONDS = 5


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
    )


class Connection:
    """Connects on first use, so a process starts (and says not ready) without Temporal."""

    def __init__(self, settings: TemporalSettings, client: Client | None = None) -> None:
        self.settings = settings
        self.client = client
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        """The client; TemporalUnavailable while Temporal cannot be reached."""
        if self.client is not None:
            return self.client
        async with self._lock:
            if self.client is None:
                try:
                    self.client = await asyncio.wait_for(connect(self.settings), timeout=CONNECT_TIMEOUT_SECONDS)
                except (RuntimeError, OSError, asyncio.TimeoutError) as err:
                    log.warning("temporal unreachable", address=self.settings.address, error=str(err))
                    raise TemporalUnavailable(str(err)) from err
        return self.client


# Status codes that mean Temporal (or the way to it) is down or overloaded, not that it refused a request.
OUTAGE_CODES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


def is_outage(err: BaseException) -> bool:
    """Temporal could not be reached or did not answer: retry everything later, blame no request."""
    if isinstance(err, (TemporalUnavailable, WorkflowTimeout)):
        return True
    return isinstance(err, RPCError) and err.status in OUTAGE_CODES


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """Bound a workflow update or query: with no worker it would otherwise wait forever."""
    try:
        return await asyncio.wait_for(call, timeout=timeout)
    except (asyncio.TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise WorkflowTimeout(f"no answer within {timeout:g}s") from None


async def workers_polling(client: Client, task_queue: str, timeout: float) -> bool:
    """Temporal answers, and whether any worker polls the task queue for workflow tasks."""
    await asyncio.wait_for(client.service_client.check_health(), timeout=timeout)
    described = await asyncio.wait_for(
        client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        ),
        timeout=timeout,
    )
    return bool(described.pollers)
