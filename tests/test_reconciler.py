"""The reconciler is one long-lived workflow per task queue: its passes redeliver the outbox every few seconds
without a workflow run each, so Temporal's workflow list shows incidents, not plumbing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import Inbox, Keys
from tests.helpers import eventually
from tests.test_ingest_hardening import alert, integration_info, paged, store_unfitted
from vigil.contracts import ReconcileInput
from client.reconciler import ensure_reconciler, legacy_schedule_id, reconciler_id
from vigil.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    fast = settings.worker.model_copy(update={"outbox_reconcile_seconds": 1})
    return settings.model_copy(update={"worker": fast})


async def test_one_long_lived_reconciler_redelivers_and_retires_the_old_schedule(
    worker: None, keys: Keys, inbox: Inbox, client: Client, settings: Settings, sessions: sessionmaker[Session],
) -> None:
    # What an earlier version left: the Schedule that started a reconcile run every few seconds.
    legacy = await client.create_schedule(legacy_schedule_id(settings), Schedule(
        action=ScheduleActionStartWorkflow(
            "OutboxReconcileWorkflow", ReconcileInput(), id=f"legacy-{settings.temporal.task_queue}",
            task_queue=settings.temporal.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
    ))
    number = store_unfitted(sessions, integration_info(sessions), [alert("stored-1", "outbox")])

    for _ in range(2):  # every worker asks at start; one reconciler runs
        await ensure_reconciler(client, settings)
    await paged(inbox, number)
    # A later pass of the same run delivers what is stored afterwards.
    later = store_unfitted(sessions, integration_info(sessions), [alert("stored-2", "outbox-later")])
    await paged(inbox, later)

    with pytest.raises(RPCError) as gone:
        await legacy.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    query = f'TaskQueue = "{settings.temporal.task_queue}" AND WorkflowType != "IncidentWorkflow"'

    async def listed() -> list[str]:
        return [w.id async for w in client.list_workflows(query)]

    # Several passes, one entry in the workflow list.
    assert await eventually(lambda: _one(listed), timeout=10) == [reconciler_id(settings)]


async def _one(listed) -> list[str] | None:  # noqa: ANN001
    found = await listed()
    return found if len(found) == 1 else None
