"""Alerts from real Alertmanager payloads: dedup, auto-resolve, reopen, close and regroup, PagerDuty actions."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Inbox, Keys
from tests.flows import am_body, attempts, handle_of, post_alertmanager, save_history, trigger
from tests.helpers import eventually, pd_event
from vigil.models import AlertRow, Incident, IncidentGroup, TimelineEvent
from workflows.incident import IncidentWorkflow

FIRING = "alertmanager-0.25-webhook-firing.json"
RESOLVED = "alertmanager-0.25-webhook-resolved.json"


def incident_row(sessions: sessionmaker[Session], number: int) -> Incident:
    with sessions() as session:
        row = session.get(Incident, number)
        assert row is not None
        return row


def timeline(sessions: sessionmaker[Session], number: int) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(TimelineEvent.kind).where(TimelineEvent.incident_number == number).order_by(TimelineEvent.seq)
            )
        )


async def test_alertmanager_auto_resolve_close_and_new_incident(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    first = await post_alertmanager(api, keys.integration, am_body(FIRING))
    assert first["incidents"] == ["INC-%d" % incident_row_number(sessions)]
    number = incident_row_number(sessions)
    row = incident_row(sessions, number)
    assert (row.service, row.severity, row.group_key) == (
        "checkout", "critical", "service=checkout|alertname=AccCheckoutLatency",
    )

    await post_alertmanager(api, keys.integration, am_body(RESOLVED))
    await eventually(lambda: incident_row(sessions, number).status == "resolved")
    row = incident_row(sessions, number)
    assert row.resolved_by == "source:alert source"
    assert row.resolution and row.resolution.startswith("Auto-resolved")

    # The reopen window (5 min) elapses: the incident closes and frees its group key.
    handle = handle_of(client, number)
    await skipper.fast_forward(handle, timedelta(minutes=6))
    await handle.result()
    await save_history(handle, "auto_resolved_closed")
    assert incident_row(sessions, number).status == "closed"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(IncidentGroup)) == 0

    # The same alert firing later is a new incident.
    again = await post_alertmanager(api, keys.integration, am_body(FIRING, starts_at="2026-11-22T09:00:00Z"))
    assert again["incidents"] == [f"INC-{number + 1}"]


def incident_row_number(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        number = session.scalar(select(func.max(Incident.number)))
        assert number is not None
        return number


async def test_refire_within_window_reopens_same_incident_and_pages_again(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox,
    sessions: sessionmaker[Session],
) -> None:
    await post_alertmanager(api, keys.integration, am_body(FIRING))
    number = incident_row_number(sessions)
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    await post_alertmanager(api, keys.integration, am_body(RESOLVED))
    await eventually(lambda: incident_row(sessions, number).status == "resolved")

    reopened = await post_alertmanager(api, keys.integration, am_body(FIRING, starts_at="2026-11-22T07:50:00Z"))
    assert reopened["incidents"] == [f"INC-{number}"]
    await eventually(lambda: incident_row(sessions, number).status == "triggered")
    assert incident_row(sessions, number).reopen_count == 1
    await eventually(lambda: "reopened" in timeline(sessions, number))
    # A new ladder round: the on-call is emailed again, under a new idempotency key.
    await eventually(lambda: len(inbox.for_incident(number)) == 2)
    keys_used = [a.idempotency_key for a in attempts(sessions, number)]
    assert keys_used == [f"INC-{number}/r0s0/email/oncall@localhost", f"INC-{number}/r1s0/email/oncall@localhost"]
    await save_history(handle_of(client, number), "reopened")


async def test_duplicate_deliveries_count_but_do_not_page_twice(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox,
    sessions: sessionmaker[Session],
) -> None:
    """An Alertmanager HA pair delivers each notification twice."""
    body = am_body(FIRING)
    first, second = await asyncio.gather(
        post_alertmanager(api, keys.integration, body), post_alertmanager(api, keys.integration, body)
    )
    assert first["incidents"] == second["incidents"]
    number = incident_row_number(sessions)
    await post_alertmanager(api, keys.integration, body)
    with sessions() as session:
        rows = list(session.scalars(select(AlertRow).where(AlertRow.incident_number == number)))
    assert [(r.count, r.status, r.delivered_status) for r in rows] == [(3, "firing", "firing")]
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert len(state.alerts) == 1
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    # The entries of the task that started the page are written with the page's result (pages first).
    await eventually(lambda: "notified" in timeline(sessions, number))
    assert timeline(sessions, number).count("alert") == 1


async def test_auto_resolve_can_be_switched_off_per_integration(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    await post_alertmanager(api, keys.integration_no_autoresolve, am_body(FIRING))
    number = incident_row_number(sessions)
    await post_alertmanager(api, keys.integration_no_autoresolve, am_body(RESOLVED))
    handle = handle_of(client, number)

    async def alert_resolved() -> bool:
        state = await handle.query(IncidentWorkflow.state)
        return all(a.status == "resolved" for a in state.alerts.values())

    await eventually(alert_resolved)
    assert (await handle.query(IncidentWorkflow.state)).status == "triggered"


async def test_pagerduty_acknowledge_and_resolve_by_dedup_key(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, dedup_key="pd-1")
    ack = await api.post("/v2/enqueue", json=pd_event(keys.integration, "pd-1", action="acknowledge"))
    assert ack.status_code == 202 and f"INC-{number} acknowledged" in ack.json()["message"]
    handle = handle_of(client, number)
    state = await handle.query(IncidentWorkflow.state)
    assert (state.status, state.acknowledged_by) == ("acknowledged", "source:test-integration")
    # A repeated acknowledge is a no-op, not an error (senders retry).
    assert (await api.post("/v2/enqueue", json=pd_event(keys.integration, "pd-1", action="acknowledge"))).status_code == 202

    resolve = await api.post("/v2/enqueue", json=pd_event(keys.integration, "pd-1", action="resolve"))
    assert resolve.status_code == 202
    state = await handle.query(IncidentWorkflow.state)
    assert state.status == "resolved" and state.resolved_by == "source:alert source"

    unknown = await api.post("/v2/enqueue", json=pd_event(keys.integration, "nope", action="resolve"))
    assert unknown.status_code == 202 and "no open alert" in unknown.json()["message"]


async def test_fifty_concurrent_requests_for_a_new_group_make_one_incident(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    bodies = [pd_event(keys.integration, f"storm-{i}", klass="DiskFull", component="storage") for i in range(50)]
    responses = await asyncio.gather(*(api.post("/v2/enqueue", json=b) for b in bodies))
    assert [r.status_code for r in responses] == [202] * 50, [r.text for r in responses if r.status_code != 202]
    numbers = {r.json()["message"].rsplit("INC-", 1)[1] for r in responses}
    assert len(numbers) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
    number = int(numbers.pop())

    async def one_workflow() -> bool:  # visibility is eventually consistent
        ids = [w.id async for w in client.list_workflows('GroupKey="service=storage|alertname=DiskFull"')]
        return ids == [f"INC-{number}"]

    await eventually(one_workflow)
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert len(state.alerts) == 50


async def test_ten_thousand_repeats_do_not_grow_the_history(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox,
    sessions: sessionmaker[Session],
) -> None:
    """Repeats end in the database: one upsert each, no workflow message."""
    first = am_body(FIRING)
    await post_alertmanager(api, keys.integration, first)
    number = incident_row_number(sessions)
    handle = handle_of(client, number)
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    await eventually(lambda: "alert" in timeline(sessions, number))

    async def quiet_history_length() -> int:  # the email and projections have settled
        n = len((await handle.fetch_history()).events)
        return n if n == len((await handle.fetch_history()).events) and not await _pending_activities(handle) else 0

    before = await eventually(quiet_history_length)
    batch = am_body(FIRING)
    batch["alerts"] = batch["alerts"] * 100  # 100 repeats per request, as a storm re-sends them
    for _ in range(10):
        results = await asyncio.gather(*(post_alertmanager(api, keys.integration, batch) for _ in range(10)))
        assert all(r["outcomes"] == {"repeat": 100} for r in results), results[0]
    after = len((await handle.fetch_history()).events)
    assert after - before <= 10, (before, after)
    with sessions() as session:
        [row] = session.scalars(select(AlertRow).where(AlertRow.incident_number == number))
    assert row.count == 1 + 10_000
    assert len(inbox.for_incident(number)) == 1


async def test_concurrent_batches_in_any_order_are_all_accepted_and_counted(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    """A storm re-sends a group's alerts in many batches, each in its own order. On PostgreSQL two upserts that
    lock the same rows in different orders deadlock, and one request failed with a 500 (seen in bench/ingest.py)."""
    template = am_body(FIRING)
    alert = template["alerts"][0]
    fingerprints = [f"host-{i:02d}" for i in range(20)]
    alerts = [
        {**alert, "fingerprint": fp, "labels": {**alert["labels"], "instance": fp}} for fp in fingerprints
    ]
    await post_alertmanager(api, keys.integration, {**template, "alerts": alerts})
    rng = random.Random(7)
    sent = 1
    for _ in range(5):
        bodies = [{**template, "alerts": rng.sample(alerts, len(alerts)) * 3} for _ in range(8)]
        responses = await asyncio.gather(*(
            api.post("/api/v1/integrations/alertmanager", json=b, headers=keys.auth(keys.integration))
            for b in bodies
        ))
        assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses if r.status_code != 202]
        sent += 3 * 8
    with sessions() as session:
        counts = {fp: n for fp, n in session.execute(select(AlertRow.fingerprint, AlertRow.count))}
    assert counts == {fp: sent for fp in fingerprints}


async def _pending_activities(handle) -> int:  # noqa: ANN001
    return len((await handle.describe()).raw_description.pending_activities)


async def test_hold_resolution_damps_flapping(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    """Alertmanager #3048: resolve only after the alerts stayed resolved for the hold time."""
    created = await api.post(
        "/api/v1/integrations", headers=keys.auth(keys.admin),
        json={"name": "flappy", "kind": "alertmanager", "hold_resolution_seconds": 300},
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    await post_alertmanager(api, key, am_body(FIRING))
    number = incident_row_number(sessions)
    handle = handle_of(client, number)

    await post_alertmanager(api, key, am_body(RESOLVED))
    state = await handle.query(IncidentWorkflow.state)
    assert state.status == "triggered" and state.resolve_due_at is not None

    # It flaps: firing again inside the hold keeps the incident open, and does not count as a reopen.
    await post_alertmanager(api, key, am_body(FIRING))
    state = await handle.query(IncidentWorkflow.state)
    assert (state.status, state.resolve_due_at, state.reopen_count) == ("triggered", None, 0)

    await post_alertmanager(api, key, am_body(RESOLVED))
    await skipper.fast_forward(handle, timedelta(minutes=4))
    assert (await handle.query(IncidentWorkflow.state)).status == "triggered"
    await skipper.fast_forward(handle, timedelta(minutes=2))
    state = await handle.query(IncidentWorkflow.state)
    assert state.status == "resolved" and "stayed resolved for 5m" in (state.resolution or "")
    await eventually(lambda: {"resolution_held", "flapping", "resolved"} <= set(timeline(sessions, number)))


async def test_integrations_admin_api(api: httpx.AsyncClient, keys: Keys) -> None:
    admin = keys.auth(keys.admin)
    assert (await api.get("/api/v1/integrations", headers=keys.auth(keys.responder))).status_code == 403
    listed = (await api.get("/api/v1/integrations", headers=admin)).json()
    [default] = [i for i in listed if i["name"] == "test-integration"]
    assert "key" not in default and default["hold_resolution_seconds"] == 0
    patched = await api.patch(f"/api/v1/integrations/{default['id']}", json={"hold_resolution_seconds": 120}, headers=admin)
    assert patched.status_code == 200 and patched.json()["hold_resolution_seconds"] == 120
    bad = await api.patch(f"/api/v1/integrations/{default['id']}", json={"hold_resolution_seconds": -1}, headers=admin)
    assert bad.status_code == 422
    dup = await api.post("/api/v1/integrations", json={"name": "test-integration"}, headers=admin)
    assert dup.status_code == 409
    assert (await api.patch("/api/v1/integrations/999999", json={}, headers=admin)).status_code == 404


async def test_routing_grouping_and_severity_rules_per_integration(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    admin = keys.auth(keys.admin)
    created = (await api.post("/api/v1/integrations", json={"name": "routed", "kind": "alertmanager"}, headers=admin)).json()
    rules = {
        "routes": [{"matchers": [{"name": "team", "value": "payments"}], "service": "payments-api"}],
        "group_by": ["service", "cluster"],
        "severity_map": {"P2": "critical"},
    }
    put = await api.put(f"/api/v1/integrations/{created['id']}/rules", json=rules, headers=admin)
    assert put.status_code == 200 and put.json()["rules"]["severity_map"] == {"p2": "critical"}
    bad = {**rules, "group_by": ["not a label"]}
    assert (await api.put(f"/api/v1/integrations/{created['id']}/rules", json=bad, headers=admin)).status_code == 422

    def webhook(name: str, cluster: str, fp: str) -> dict:
        return {"status": "firing", "alerts": [{
            "status": "firing", "fingerprint": fp, "startsAt": "2026-11-22T08:00:00Z",
            "labels": {"alertname": name, "team": "payments", "cluster": cluster, "severity": "P2", "service": "raw"},
            "annotations": {"summary": f"{name} on {cluster}"},
        }]}

    a = await post_alertmanager(api, created["key"], webhook("CardDeclines", "eu-1", "f1"))
    b = await post_alertmanager(api, created["key"], webhook("RefundErrors", "eu-1", "f2"))  # same service+cluster
    c = await post_alertmanager(api, created["key"], webhook("CardDeclines", "us-1", "f3"))
    assert a["incidents"] == b["incidents"] != c["incidents"]
    number = int(a["incidents"][0].removeprefix("INC-"))
    row = incident_row(sessions, number)
    assert (row.service, row.severity, row.group_key) == ("payments-api", "critical", "service=payments-api|cluster=eu-1")
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert sorted(state.alerts) == ["f1", "f2"]


async def test_incident_threshold_keeps_alerts_pending_until_n_arrive(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox, sessions: sessionmaker[Session],
) -> None:
    admin = keys.auth(keys.admin)
    created = (await api.post("/api/v1/integrations", json={"name": "noisy"}, headers=admin)).json()
    rules = {"threshold": {"count": 3, "window_seconds": 600, "immediate_severity": "critical"}}
    assert (await api.put(f"/api/v1/integrations/{created['id']}/rules", json=rules, headers=admin)).status_code == 200

    async def send(dedup: str, severity: str = "warning", component: str = "disk") -> dict:
        body = pd_event(created["key"], dedup, severity=severity, component=component, klass="DiskSlow")
        resp = await api.post("/v2/enqueue", json=body)
        assert resp.status_code == 202, resp.text
        return resp.json()

    assert (await send("d1"))["message"] == "Event processed: alert pending"
    assert (await send("d1"))["message"] == "Event processed: alert pending"  # a repeat is not a second alert
    assert (await send("d2"))["message"] == "Event processed: alert pending"
    assert incidents_count(sessions) == 0
    pending = (await api.get("/api/v1/alerts", params={"status": "pending"}, headers=keys.auth(keys.viewer))).json()
    assert sorted((a["fingerprint"], a["count"]) for a in pending["items"]) == [("d1", 2), ("d2", 1)]

    third = await send("d3")
    number = int(third["message"].rsplit("INC-", 1)[1])
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert sorted(state.alerts) == ["d1", "d2", "d3"]  # the waiting alerts joined the incident
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    released = (await api.get("/api/v1/alerts", params={"status": "pending"}, headers=keys.auth(keys.viewer))).json()
    assert {a["incident"] for a in released["items"]} == {f"INC-{number}"}

    # A critical alert does not wait.
    crit = await send("c1", severity="critical", component="db")
    assert "INC-" in crit["message"]


async def test_threshold_counts_racing_requests(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    admin = keys.auth(keys.admin)
    created = (await api.post("/api/v1/integrations", json={"name": "racy"}, headers=admin)).json()
    await api.put(f"/api/v1/integrations/{created['id']}/rules", json={"threshold": {"count": 5}}, headers=admin)
    bodies = [pd_event(created["key"], f"r{i}", severity="warning", component="q", klass="Lag") for i in range(5)]
    responses = await asyncio.gather(*(api.post("/v2/enqueue", json=b) for b in bodies))
    assert [r.status_code for r in responses] == [202] * 5
    assert incidents_count(sessions) == 1  # the fifth, whichever it was, opened it


def incidents_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Incident)) or 0


async def test_reconciler_reroutes_alerts_whose_incident_closed_before_delivery(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session], settings,  # noqa: ANN001
) -> None:
    """An alert stored for an incident that then closed (Temporal was down meanwhile) opens the next one."""
    from client.incidents import IncidentClient
    from client.outbox import AlertOutbox

    await post_alertmanager(api, keys.integration, am_body(FIRING))
    number = incident_row_number(sessions)
    await post_alertmanager(api, keys.integration, am_body(RESOLVED))
    handle = handle_of(client, number)
    await eventually(lambda: incident_row(sessions, number).status == "resolved")
    await skipper.fast_forward(handle, timedelta(minutes=6))
    await handle.result()
    with sessions.begin() as session:  # stored, never delivered: what a Temporal outage leaves behind
        [row] = session.scalars(select(AlertRow).where(AlertRow.incident_number == number))
        session.add(AlertRow(
            incident_number=number, integration_id=row.integration_id, fingerprint="late", status="firing",
            summary="late alert", severity="critical", service=row.service, labels=row.labels,
        ))

    async def get() -> Client:
        return client

    outbox = AlertOutbox(sessions, settings, IncidentClient(sessions, settings, get))
    result = await outbox.redeliver()
    assert (result.rerouted, result.delivered) == (1, 0)
    successor = incident_row_number(sessions)
    assert successor == number + 1
    state = await handle_of(client, successor).query(IncidentWorkflow.state)
    assert list(state.alerts) == ["late"]
    again = await outbox.redeliver()
    assert (again.incidents, again.rerouted) == (0, 0)
