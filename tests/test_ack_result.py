"""A transition answers from what its update returns (issue 11): when the workflow sends the incident's state with
the update's result, the API builds its answer from it and does not query the workflow again; an unknown incident
is still a 404 although its row is no longer read before the update."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.conftest import Keys
from vigil.contracts import (
    ACKNOWLEDGE,
    INCIDENT_WORKFLOW,
    AcknowledgeInput,
    IncidentState,
    IncidentStatus,
    Severity,
    TransitionResult,
    workflow_id,
)
from vigil.models import Incident, Integration, utcnow
from vigil.settings import Settings


@workflow.defn(name=INCIDENT_WORKFLOW)
class AnsweringIncident:
    """Stands in for the incident workflow: its acknowledge returns the state, and it answers no query at all,
    so an API that still asked for the state would fail."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, number: int) -> None:
        self.number = number
        await workflow.wait_condition(lambda: self.done)

    @workflow.update(name=ACKNOWLEDGE)
    def acknowledge(self, inp: AcknowledgeInput) -> TransitionResult:
        state = IncidentState(
            number=self.number, status=IncidentStatus.acknowledged, severity=Severity.critical, service="checkout",
            title="Disk full", group_key="g", created_at=workflow.now(), acknowledged_at=workflow.now(),
            acknowledged_by=inp.actor.label(),
        )
        self.done = True
        return TransitionResult(number=self.number, status=state.status, previous=IncidentStatus.triggered, state=state)


async def test_acknowledge_answers_from_the_update_result_without_a_query(
    api: httpx.AsyncClient, client: Client, settings: Settings, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        integration = session.query(Integration).first()
        assert integration is not None
        row = Incident(group_key=f"g-{uuid.uuid4()}", integration_id=integration.id, service="checkout",
                       severity="critical", title="Disk full", status="triggered", created_at=utcnow())
        session.add(row)
        session.flush()
        number = row.number
    async with Worker(client, task_queue=settings.temporal.task_queue, workflows=[AnsweringIncident],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        await client.start_workflow(INCIDENT_WORKFLOW, number, id=workflow_id(number),
                                    task_queue=settings.temporal.task_queue)
        resp = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder), json={})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # The projection still says triggered: these come from the update's result.
    assert body["status"] == "acknowledged"
    assert body["acknowledged_by"] == "user:rita@test"


async def test_acknowledging_an_unknown_incident_is_a_404(api: httpx.AsyncClient, keys: Keys) -> None:
    resp = await api.post("/api/v1/incidents/INC-987654/acknowledge", headers=keys.auth(keys.responder), json={})
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "not_found"


async def test_the_incident_workflow_answers_a_transition_with_its_state(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    """The real workflow sends the state with every transition's result, without its per-alert and per-page
    records (which can be large, and would sit in the history event of every update)."""
    from client.incidents import IncidentClient
    from tests.flows import trigger
    from tests.helpers import eventually
    from vigil.contracts import Actor, ActorKind

    number = await trigger(api, keys, dedup_key="answer-1")

    async def temporal() -> Client:
        return client

    incidents = IncidentClient(sessions, settings, temporal)
    await eventually(lambda: incidents.state(number))
    result = await incidents.acknowledge(number, AcknowledgeInput(actor=Actor(kind=ActorKind.user, name="rita@test")))
    assert result.state is not None
    assert (result.state.status, result.state.acknowledged_by) == (IncidentStatus.acknowledged, "user:rita@test")
    assert result.state.retrigger_at is not None  # the ack timeout, which the API shows as retriggers_at
    assert (result.state.alerts, result.state.pages) == ({}, {})
    assert (await incidents.state(number)).alerts  # the query still has them
