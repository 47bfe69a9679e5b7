"""Handoff timers in Temporal: start and nudge `vigil-handoff-<schedule id>`, by name; start the missing ones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from client.connection import ClientGetter, is_outage
from client.errors import TemporalUnavailable
from vigil.contracts import HANDOFF_RESCHEDULE, HANDOFF_WORKFLOW, HandoffInput, HandoffReschedule, handoff_workflow_id
from vigil.logging import get_logger
from vigil.models import Schedule
from vigil.settings import Settings

log = get_logger(__name__)


def _options(settings: Settings, schedule_id: int) -> dict:
    return {
        "id": handoff_workflow_id(schedule_id), "task_queue": settings.temporal.task_queue,
        "static_summary": f"Schedule {schedule_id}: handoff emails",
    }


class HandoffClient:
    def __init__(self, settings: Settings, client: ClientGetter) -> None:
        self.settings = settings
        self.client = client

    async def start(self, schedule_id: int) -> None:
        """A new schedule's timer. A workflow left under this id belongs to a deleted schedule: it is replaced."""
        await self._best_effort(schedule_id, "start", WorkflowIDConflictPolicy.TERMINATE_EXISTING)

    async def reschedule(self, schedule_id: int) -> None:
        """The schedule changed: the timer looks again (signal-with-start, so a missing one comes back)."""
        await self._best_effort(schedule_id, "reschedule", None)

    async def _best_effort(self, schedule_id: int, what: str, conflict: WorkflowIDConflictPolicy | None) -> None:
        # The schedule is saved either way: with Temporal down, the worker's start and the timer's periodic look
        # at the schedule catch up, so an edit is never refused for the sake of an email.
        try:
            client = await self.client()
            inp = HandoffInput(schedule_id=schedule_id)
            if conflict is None:
                await client.start_workflow(
                    HANDOFF_WORKFLOW, inp, start_signal=HANDOFF_RESCHEDULE, start_signal_args=[HandoffReschedule()],
                    **_options(self.settings, schedule_id),
                )
            else:
                await client.start_workflow(HANDOFF_WORKFLOW, inp, id_conflict_policy=conflict,
                                            **_options(self.settings, schedule_id))
        except (TemporalUnavailable, RPCError) as err:
            if not is_outage(err):
                raise
            log.warning("handoff timer not updated: Temporal unreachable", schedule_id=schedule_id, action=what,
                        error=str(err))


async def ensure_handoffs(client: Client, settings: Settings, sessions: sessionmaker[Session]) -> int:
    """Start the timer of every schedule that has none (every worker asks at start; running ones are kept)."""
    with sessions() as session:
        ids = list(session.scalars(select(Schedule.id).order_by(Schedule.id)))
    for schedule_id in ids:
        await client.start_workflow(
            HANDOFF_WORKFLOW, HandoffInput(schedule_id=schedule_id),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, **_options(settings, schedule_id),
        )
    if ids:
        log.info("handoff timers running", schedules=len(ids))
    return len(ids)
