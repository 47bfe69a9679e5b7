"""The RCA stage inside the incident workflow, under time skipping: a critical incident waits for its postmortem
after the reopen window, with reminders on durable timers, and closes once it is complete or waived."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import TimeSkipper

from tests.conftest import Keys, free_port
from tests.flows import handle_of, save_history, trigger
from tests.helpers import eventually, pd_event
from vigil.contracts import (
    CLOSE,
    COMPLETE_POSTMORTEM,
    REFUSED_NO_RESOLUTION,
    REFUSED_POSTMORTEM,
    REFUSED_TRANSITION,
    WAIVE_POSTMORTEM,
    Actor,
    ActorKind,
    CloseInput,
    IncidentState,
    IncidentStatus,
    PostmortemDoneInput,
    PostmortemStatus,
    TransitionResult,
)
from client.incidents import IncidentClient
from vigil.models import EvidenceQuery, NotificationAttempt, TimelineEvent
from vigil.rca.figures import REMINDER_STEP
from vigil.settings import RcaSettings, Settings
from workflows.incident import IncidentWorkflow

ADMIN = Actor(kind=ActorKind.user, name="admin@test")
RITA = Actor(kind=ActorKind.user, name="rita@test")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Critical incidents need a postmortem; first reminder 1 h after the resolve, then daily, manager from the 3rd.
    Prometheus is configured but down (nothing listens on its port)."""
    return settings.model_copy(update={"rca": RcaSettings(
        required_severities="critical,high", remind_after_hours=1, remind_every_hours=24, manager_after_reminders=2,
        prometheus_url=f"http://127.0.0.1:{free_port()}", prometheus_timeout_seconds=2,
    )})


@pytest.fixture(autouse=True)
def checkout_error_rate(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(EvidenceQuery(name="checkout error rate", promql='sum(rate(http_errors_total{job="checkout"}[5m]))',
                                  service="checkout"))


async def state(handle: WorkflowHandle) -> IncidentState:
    return await handle.query(IncidentWorkflow.state)


def reminders(sessions: sessionmaker[Session], number: int) -> list[tuple[str, str]]:
    """(recipient, status) of every reminder email, in order."""
    with sessions() as session:
        rows = session.scalars(
            select(NotificationAttempt).where(NotificationAttempt.incident_number == number,
                                              NotificationAttempt.step == REMINDER_STEP)
            .order_by(NotificationAttempt.id)
        )
        return [(r.target, r.status) for r in rows]


def timeline(sessions: sessionmaker[Session], number: int) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.scalars(
            select(TimelineEvent).where(TimelineEvent.incident_number == number).order_by(TimelineEvent.seq)
        )
        return [(e.kind, e.message) for e in rows]


async def resolved_critical(api: httpx.AsyncClient, keys: Keys, client: Client, dedup: str) -> tuple[int, WorkflowHandle]:
    """A critical incident, acknowledged and resolved by Rita through the API."""
    number = await trigger(api, keys, dedup)
    auth = keys.auth(keys.responder)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", json={}, headers=auth)
    assert resp.status_code == 200, resp.text
    resp = await api.post(f"/api/v1/incidents/INC-{number}/resolve", json={"resolution": "rolled back"}, headers=auth)
    assert resp.status_code == 200, resp.text
    handle = handle_of(client, number)
    await eventually(lambda: _drafted(handle))
    return number, handle


async def _drafted(handle: WorkflowHandle) -> bool:
    pm = (await state(handle)).postmortem
    return pm is not None and pm.progress.sections_total > 0


async def refusal(handle: WorkflowHandle, update: str, arg: object) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg, result_type=TransitionResult)
    assert isinstance(err.value.cause, ApplicationError)
    return err.value.cause


async def test_close_waits_for_the_postmortem_with_reminders_that_stop_at_completion(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    number, handle = await resolved_critical(api, keys, client, "rca-1")
    pm = (await state(handle)).postmortem
    assert pm is not None and pm.required and pm.status == PostmortemStatus.draft
    assert pm.url.endswith(f"/api/v1/incidents/INC-{number}/postmortem")
    await eventually(lambda: "postmortem" in [k for k, _ in timeline(sessions, number)])
    # Prometheus is down: the evidence says so on the timeline, and the stage goes on.
    await eventually(lambda: any(k == "evidence_gap" and "Prometheus unreachable" in m
                                 for k, m in timeline(sessions, number)))

    refused = await refusal(handle, CLOSE, CloseInput(actor=RITA))
    assert refused.type == REFUSED_POSTMORTEM and "postmortem" in refused.message

    # The reopen window elapses: still resolved, listed as awaiting its postmortem.
    await skipper.fast_forward(handle, timedelta(minutes=6))
    assert (await state(handle)).status == IncidentStatus.resolved
    await eventually(lambda: _listed_awaiting(client, number), timeout=20)
    assert reminders(sessions, number) == []

    # 1 h after the resolve: the acknowledger is reminded; then daily; the manager too from the third.
    await skipper.fast_forward(handle, timedelta(minutes=55))
    await eventually(lambda: reminders(sessions, number) == [("rita@test", "sent")])
    await skipper.fast_forward(handle, timedelta(hours=24))
    await eventually(lambda: len(reminders(sessions, number)) == 2)
    await skipper.fast_forward(handle, timedelta(hours=24))
    await eventually(lambda: {t for t, _ in reminders(sessions, number)[2:]} == {"rita@test", "manager@localhost"})
    assert (await state(handle)).postmortem.reminders_sent == 3  # type: ignore[union-attr]

    await handle.execute_update(COMPLETE_POSTMORTEM, PostmortemDoneInput(actor=RITA), result_type=TransitionResult)
    await handle.result()
    final = await state(handle)
    assert final.status == IncidentStatus.closed and final.postmortem.status == PostmortemStatus.complete  # type: ignore[union-attr]
    assert ("closed", "Closed: postmortem complete") in timeline(sessions, number)
    sent = len(reminders(sessions, number))
    assert sent == 4  # the third reminder went to two people
    await save_history(handle, "postmortem_completed")


async def _listed_awaiting(client: Client, number: int) -> bool:
    query = f'Postmortem = "awaiting" AND IncidentNumber = "INC-{number}"'
    return [w.id async for w in client.list_workflows(query)] == [f"INC-{number}"]


async def test_an_admin_waives_it_with_a_reason(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    number, handle = await resolved_critical(api, keys, client, "rca-2")
    refused = await refusal(handle, WAIVE_POSTMORTEM, PostmortemDoneInput(actor=ADMIN, reason="  "))
    assert refused.type == REFUSED_NO_RESOLUTION
    await handle.execute_update(
        WAIVE_POSTMORTEM, PostmortemDoneInput(actor=ADMIN, reason="duplicate of INC-1"), result_type=TransitionResult
    )
    # Waived within the reopen window: it closes when the window elapses, as an incident without one does.
    assert (await state(handle)).status == IncidentStatus.resolved
    refused = await refusal(handle, WAIVE_POSTMORTEM, PostmortemDoneInput(actor=ADMIN, reason="again"))
    assert refused.type == REFUSED_TRANSITION
    await skipper.fast_forward(handle, timedelta(minutes=6))
    await handle.result()
    entries = timeline(sessions, number)
    assert ("postmortem_waived", "Postmortem waived by user:admin@test: duplicate of INC-1") in entries
    assert ("closed", "Closed: postmortem waived") in entries
    assert reminders(sessions, number) == []


async def test_a_refire_in_the_window_reopens_and_the_next_resolve_refreshes_the_evidence(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, "rca-3")
    handle = handle_of(client, number)
    resolve = pd_event(keys.integration, "rca-3", action="resolve")
    assert (await api.post("/v2/enqueue", json=resolve)).status_code == 202  # resolved at the source
    await eventually(lambda: _drafted(handle))
    first = (await state(handle)).postmortem
    assert first is not None and first.evidence_at is not None

    assert await trigger(api, keys, "rca-3") == number  # fires again within the window: the same incident
    await eventually(lambda: _status(handle, IncidentStatus.triggered))
    assert (await api.post("/v2/enqueue", json=resolve)).status_code == 202
    await eventually(lambda: _evidence_count(sessions, number, 2))
    again = (await state(handle)).postmortem
    assert again is not None and again.url == first.url and again.evidence_at != first.evidence_at

    await handle.execute_update(COMPLETE_POSTMORTEM, PostmortemDoneInput(actor=RITA), result_type=TransitionResult)
    await skipper.fast_forward(handle, timedelta(minutes=6))
    assert (await handle.result())["status"] == IncidentStatus.closed.value


async def _status(handle: WorkflowHandle, status: IncidentStatus) -> bool:
    return (await state(handle)).status == status


def _evidence_count(sessions: sessionmaker[Session], number: int, n: int) -> bool:
    return sum(1 for k, _ in timeline(sessions, number) if k in ("evidence", "evidence_gap") and k) >= n


async def test_an_incident_whose_severity_needs_none_closes_after_the_window(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, "rca-4", severity="warning")
    handle = handle_of(client, number)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/resolve", json={"resolution": "noise"},
                          headers=keys.auth(keys.responder))
    assert resp.status_code == 200, resp.text
    await eventually(lambda: _opened(handle))
    refused = await refusal(handle, COMPLETE_POSTMORTEM, PostmortemDoneInput(actor=RITA))
    assert refused.type == REFUSED_TRANSITION
    await skipper.fast_forward(handle, timedelta(minutes=6))
    assert (await handle.result())["status"] == IncidentStatus.closed.value
    assert ("closed", "Closed: reopen window elapsed") in timeline(sessions, number)


async def _opened(handle: WorkflowHandle) -> bool:
    pm = (await state(handle)).postmortem
    return pm is not None and not pm.required


async def test_close_by_hand_once_complete_skips_the_rest_of_the_window(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    number, handle = await resolved_critical(api, keys, client, "rca-5")
    await handle.execute_update(COMPLETE_POSTMORTEM, PostmortemDoneInput(actor=RITA), result_type=TransitionResult)
    await handle.execute_update(CLOSE, CloseInput(actor=RITA, note="done"), result_type=TransitionResult)
    assert (await handle.result())["status"] == IncidentStatus.closed.value
    assert ("closed", "Closed by user:rita@test: done") in timeline(sessions, number)


async def test_evidence_is_refreshed_on_demand(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    number, handle = await resolved_critical(api, keys, client, "rca-6")
    gaps = lambda: [m for k, m in timeline(sessions, number) if k == "evidence_gap"]  # noqa: E731
    await eventually(lambda: len(gaps()) == 1)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/postmortem/refresh", headers=keys.auth(keys.responder))
    assert resp.status_code == 202, resp.text
    await eventually(lambda: len(gaps()) == 2)  # gathered again (Prometheus is still down here)
    assert ("evidence_refresh", "Evidence refresh asked by user:rita@test") in timeline(sessions, number)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/postmortem/refresh", headers=keys.auth(keys.viewer))
    assert resp.status_code == 403

    warning = await trigger(api, keys, "rca-7", severity="warning", component="billing")
    resp = await api.post(f"/api/v1/incidents/INC-{warning}/postmortem/refresh", headers=keys.auth(keys.responder))
    assert resp.status_code in (404, 409), resp.text  # no postmortem to refresh


async def test_no_reminder_after_completion_when_both_fall_due_together(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session], settings: Settings,
) -> None:
    number, handle = await resolved_critical(api, keys, client, "rca-8")
    await skipper.fast_forward(handle, timedelta(minutes=6))

    async def temporal() -> Client:
        return client

    # The first reminder falls due (1 h after the resolve) while the completion is on its way. The completion
    # closes the workflow; an event arriving meanwhile makes the server fail that workflow task, and the API's
    # client runs the update again (client/incidents.py `_update`).
    await asyncio.gather(
        skipper.fast_forward(handle, timedelta(minutes=55)),
        IncidentClient(sessions, settings, temporal).complete_postmortem(number, PostmortemDoneInput(actor=RITA)),
    )
    sent = reminders(sessions, number)  # the completion returned: a reminder in flight has settled by now
    await handle.result()  # closed at once: the reopen window was over
    assert reminders(sessions, number) == sent
    entries = timeline(sessions, number)
    done = [k for k, _ in entries].index("postmortem_completed")
    # A reminder that was in flight either went out before the completion was accepted, or was stopped.
    late = [m for k, m in entries[done:] if k == "postmortem_reminder" and " sent to " in m]
    assert late == [], entries
