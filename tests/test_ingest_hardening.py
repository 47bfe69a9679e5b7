"""Whatever a sender posts that Vigil accepts ends in an incident that pages; what Temporal refuses anyway is
isolated, dead-lettered and paged to the operator, and never holds back the alerts behind it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from tests.conftest import Inbox, Keys
from tests.flows import am_body, handle_of, post_alertmanager, trigger
from tests.helpers import eventually, pd_event
from vigil.contracts import DIGEST_ALERTS, MAX_TRACKED_ALERTS, Alert, Severity
from vigil.ingest import fit, store
from client.incidents import IncidentClient
from client.outbox import AlertOutbox
from vigil.ingest.store import IntegrationInfo
from vigil.models import AlertRow, Incident, Integration
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow

FIRING = "alertmanager-0.25-webhook-firing.json"
THREE_MB = 3 * 1024 * 1024


def incident_numbers(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(Incident.number).order_by(Incident.number)))


async def paged(inbox: Inbox, number: int) -> None:
    await eventually(lambda: inbox.for_incident(number), timeout=30)


def client_getter(client: Client) -> Callable[[], Awaitable[Client]]:
    async def get() -> Client:
        return client

    return get


# --- at the door: fitted, never refused --------------------------------------------------------------


async def test_oversize_labels_and_annotations_are_stored_fitted_and_page(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client, sessions: sessionmaker[Session],
) -> None:
    """A 3,000-character service and a 3 MB annotation: Temporal would refuse both (GroupKey over 2,048 bytes,
    a payload over 2 MiB). Both are cut to fit with a hash suffix, and the incident pages."""
    long_service = "checkout-" + "x" * 3000
    body = am_body(FIRING, labels={"service": long_service})
    body["alerts"][0]["annotations"]["description"] = "y" * THREE_MB
    await post_alertmanager(api, keys.integration, body)
    [number] = incident_numbers(sessions)
    await paged(inbox, number)
    with sessions() as session:
        incident = session.get_one(Incident, number)
        alert = session.scalars(select(AlertRow).where(AlertRow.incident_number == number)).first()
    assert incident.service == fit.bounded(long_service, fit.MAX_SERVICE) and len(incident.service) == fit.MAX_SERVICE
    assert incident.service.startswith("checkout-xxx") and "…#" in incident.service
    assert len(incident.group_key) <= fit.MAX_GROUP_KEY
    assert len(alert.annotations["description"]) == fit.MAX_ANNOTATION_VALUE
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert state.service == incident.service

    # The same over-long alert again is a repeat of the same alert (stable fitting), not a new incident.
    await post_alertmanager(api, keys.integration, body)
    assert incident_numbers(sessions) == [number]


async def test_over_long_values_with_one_prefix_stay_apart(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    """Cutting alone would merge two services that differ only past the cut; the hash keeps them apart."""
    prefix = "s" * 500
    for tail in ("-a", "-b"):
        await post_alertmanager(api, keys.integration, am_body(FIRING, labels={"service": prefix + tail}))
    assert len(incident_numbers(sessions)) == 2


@pytest.mark.parametrize("sender", ["pagerduty", "alertmanager"])
async def test_a_time_without_a_zone_is_read_as_utc(
    sender: str, api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, sessions: sessionmaker[Session],
) -> None:
    if sender == "pagerduty":
        body = pd_event(keys.integration, "naive-time")
        body["payload"]["timestamp"] = "2026-01-01T00:00:00"
        resp = await api.post("/v2/enqueue", json=body)
    else:
        body = am_body(FIRING, starts_at="2026-01-01T00:00:00")
        resp = await api.post("/api/v1/integrations/alertmanager", json=body, headers=keys.auth(keys.integration))
    assert resp.status_code == 202, resp.text
    [number] = incident_numbers(sessions)
    await paged(inbox, number)
    with sessions() as session:
        starts_at = session.scalars(select(AlertRow.starts_at).where(AlertRow.incident_number == number)).first()
    assert starts_at is not None and starts_at.isoformat() == "2026-01-01T00:00:00+00:00"


async def test_lone_surrogates_become_replacement_characters(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, sessions: sessionmaker[Session],
) -> None:
    """JSON admits "\\ud800"; UTF-8 (the database, Temporal) does not. Keys, values and the echoed dedup key."""
    raw = json.dumps(am_body(FIRING, labels={"team": "Ph\ud800", "k\udc00": "v"}))
    resp = await api.post(
        "/api/v1/integrations/alertmanager", content=raw,
        headers={**keys.auth(keys.integration), "Content-Type": "application/json"},
    )
    assert resp.status_code == 202, resp.text
    [number] = incident_numbers(sessions)
    await paged(inbox, number)
    with sessions() as session:
        labels = session.scalars(select(AlertRow.labels).where(AlertRow.incident_number == number)).first()
    assert labels["team"] == "Ph\ufffd" and labels["k\ufffd"] == "v"

    pd = json.dumps(pd_event(keys.integration, "dedup-\ud800", component="search"))
    resp = await api.post("/v2/enqueue", content=pd, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["dedup_key"] == "dedup-\ufffd"


async def test_an_incident_row_is_never_left_without_its_alerts(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure while storing the alerts used to leave a `triggered` incident with no alert and no workflow,
    which nothing would ever page for. The row is now written in the alerts' transaction."""

    def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk full")  # any failure between the incident row and its alerts

    monkeypatch.setattr(store, "upsert_alerts", broken)
    with pytest.raises(RuntimeError):
        await api.post("/v2/enqueue", json=pd_event(keys.integration, "phantom"))
    assert incident_numbers(sessions) == []


def test_fitting_leaves_a_clean_alert_as_it_is() -> None:
    alert = Alert(fingerprint="fp", summary="s", severity=Severity.critical, service="svc", labels={"a": "b"})
    assert fit.fit_alert(alert) is alert
    assert fit.fit_alert(alert.model_copy(update={"labels": {"a": "b\x00"}})).labels == {"a": "b\ufffd"}


def test_chunks_keep_every_workflow_message_under_the_payload_limit() -> None:
    big = Alert(fingerprint="fp", summary="s", severity=Severity.critical, service="svc",
                annotations={"d": "z" * fit.MAX_ANNOTATION_VALUE})
    alerts = [big.model_copy(update={"fingerprint": f"fp{i}"}) for i in range(200)]
    chunks = fit.chunks(alerts)
    assert [a for chunk in chunks for a in chunk] == alerts
    assert len(chunks) > 1
    assert all(sum(fit.size(a) for a in chunk) <= fit.MAX_CHUNK_CHARS for chunk in chunks)


# --- the outbox: rows stored before fitting are fitted on the way out -----------------------------------


def store_unfitted(sessions: sessionmaker[Session], integration: IntegrationInfo, alerts: list[Alert]) -> int:
    """What an older version could leave in the outbox: alerts stored without being fitted."""
    with sessions.begin() as session:
        opened = store.join_or_create(
            session, key=integration.group_key(alerts[0]), lead=alerts[0], integration=integration
        )
        store.upsert_alerts(session, number=opened.number, alerts=alerts, integration=integration)
        return opened.number


def alert(fingerprint: str, service: str, **annotations: str) -> Alert:
    return Alert(fingerprint=fingerprint, summary=f"{service} is down", severity=Severity.high, service=service,
                 labels={"alertname": "Down", "service": service}, annotations=annotations)


def integration_info(sessions: sessionmaker[Session]) -> IntegrationInfo:
    with sessions() as session:
        return IntegrationInfo.of(session.scalars(select(Integration).where(Integration.name == "test-integration")).one())


async def test_an_oversize_alert_left_in_the_outbox_is_fitted_and_pages_with_its_neighbours(
    worker: None, keys: Keys, inbox: Inbox, client: Client, settings: Settings, sessions: sessionmaker[Session],
) -> None:
    """A 3 MB annotation stored unfitted used to fail every redelivery of its incident, for ever."""
    integration = integration_info(sessions)
    mixed = store_unfitted(sessions, integration, [
        alert("m-1", "mixed"), alert("m-2", "mixed", blob="p" * THREE_MB), alert("m-3", "mixed"),
    ])
    healthy = [store_unfitted(sessions, integration, [alert(f"g-{i}", f"svc-{i}")]) for i in range(5)]
    result = await AlertOutbox(sessions, settings, IncidentClient(sessions, settings, client_getter(client))).redeliver()
    assert (result.delivered, result.refused, result.waiting) == (8, 0, 0)
    for number in [mixed, *healthy]:
        await paged(inbox, number)
    state = await handle_of(client, mixed).query(IncidentWorkflow.state)
    assert sorted(state.alerts) == ["m-1", "m-2", "m-3"]


async def test_an_incident_with_thousands_of_long_alerts_still_pages(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client, sessions: sessionmaker[Session],
) -> None:
    """A storm of distinct alerts in one group (one per pod, say) must not grow any workflow message past
    Temporal's 2 MiB payload limit: 3,000 alerts with 1,000-character summaries made the state carried across
    continue-as-new 2.4 MB, and the incident's workflow task failed from then on. Past MAX_TRACKED_ALERTS the
    workflow counts alerts instead of tracking them, and stops auto-resolving."""
    extra = 100
    sizes = [(1000, 1000)] * 3 + [(MAX_TRACKED_ALERTS - 3000 + extra, 10)]
    for r, (count, summary_chars) in enumerate(sizes):
        body = am_body(FIRING)
        template = body["alerts"][0]
        body["alerts"] = [
            {**template, "fingerprint": f"pod-{r}-{i}", "labels": {**template["labels"], "pod": f"pod-{r}-{i}"},
             "annotations": {"summary": f"pod-{r}-{i}: " + "s" * summary_chars}}
            for i in range(count)
        ]
        for start in range(0, count, 1000):
            await post_alertmanager(api, keys.integration, {**body, "alerts": body["alerts"][start:start + 1000]})
    [number] = incident_numbers(sessions)
    await paged(inbox, number)
    handle = handle_of(client, number)

    async def all_taken() -> bool:
        return (await handle.query(IncidentWorkflow.state)).alert_count == MAX_TRACKED_ALERTS + extra

    await eventually(all_taken, timeout=60)
    state = await handle.query(IncidentWorkflow.state)
    assert (len(state.alerts), state.untracked_alerts) == (MAX_TRACKED_ALERTS, extra)
    # The page lists a digest, not thousands of alerts.
    [email] = inbox.for_incident(number)
    text = email.get_body(("plain",)).get_content()
    assert "more" in text and text.count("pod-") <= DIGEST_ALERTS + 1

    # Every alert resolving no longer auto-resolves: the untracked ones cannot be known resolved.
    for r, (count, _) in enumerate(sizes):
        for start in range(0, count, 1000):
            body = am_body(FIRING, status="resolved")
            template = body["alerts"][0]
            body["alerts"] = [
                {**template, "fingerprint": f"pod-{r}-{i}", "labels": {**template["labels"], "pod": f"pod-{r}-{i}"}}
                for i in range(start, min(start + 1000, count))
            ]
            await post_alertmanager(api, keys.integration, body)
    state = await handle.query(IncidentWorkflow.state)
    assert not any(a.status == "firing" for a in state.alerts.values())
    assert state.status == "triggered"


async def test_pagerduty_acknowledge_and_resolve_when_the_workflow_is_gone_or_not_started(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    """Terminated outside Vigil (before the reconciler noticed): 202, not a 500. Stored while Temporal was
    down and not started yet: the acknowledge answers 503 so the sender retries; the resolve is kept."""
    number = await trigger(api, keys, dedup_key="gone-1")
    await handle_of(client, number).terminate(reason="test")
    for action in ("acknowledge", "resolve"):
        resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, "gone-1", action=action))
        assert resp.status_code == 202, (action, resp.text)

    waiting = store_unfitted(sessions, integration_info(sessions), [alert("waiting-1", "not-started")])
    ack = await api.post("/v2/enqueue", json=pd_event(keys.integration, "waiting-1", action="acknowledge"))
    assert ack.status_code == 503, ack.text
    assert ack.json()["error"]["code"] == "incident_not_started" and ack.headers["Retry-After"] == "5"
    resolve = await api.post("/v2/enqueue", json=pd_event(keys.integration, "waiting-1", action="resolve"))
    assert resolve.status_code == 202, resolve.text
    with sessions() as session:
        row = session.scalars(select(AlertRow).where(AlertRow.incident_number == waiting)).one()
    assert (row.status, row.delivered_status) == ("resolved", None)  # the outbox delivers it with the start
