"""End to end through the real Debian `prometheus-alertmanager` 0.25: alerts go in at Alertmanager's
/api/v2/alerts, exactly as Prometheus posts them, and reach Vigil over real HTTP through Alertmanager's own
webhook and PagerDuty clients."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.alertmanager import (
    Alertmanager,
    alert,
    pagerduty_receiver,
    route,
    running_alertmanager,
    webhook_receiver,
)
from tests.conftest import Inbox, Keys
from tests.helpers import eventually
from vigil.models import AlertRow, Incident

# Alertmanager flushes a group every group_interval (1s here) once group_wait (1s) has passed; the deadlines
# leave room for that, for a retried delivery and for a slow CI machine.
OPEN_TIMEOUT = 20.0
RESOLVE_TIMEOUT = 30.0
ALERT_LIFETIME = timedelta(seconds=6)


def now_ms() -> datetime:
    """Now, at the millisecond precision Alertmanager is given, so our endsAt equals Alertmanager's."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def incidents(sessions: sessionmaker[Session]) -> list[Incident]:
    with sessions() as session:
        return list(session.scalars(select(Incident).order_by(Incident.number)))


def alert_rows(sessions: sessionmaker[Session], number: int) -> list[AlertRow]:
    with sessions() as session:
        return list(session.scalars(select(AlertRow).where(AlertRow.incident_number == number)))


def the_incident(sessions: sessionmaker[Session]) -> Incident | None:
    """The one incident, once its alert is stored too (Vigil commits the incident row first)."""
    found = incidents(sessions)
    assert len(found) <= 1, f"more than one incident: {[(i.number, i.group_key) for i in found]}"
    return found[0] if found and alert_rows(sessions, found[0].number) else None


async def wait_for_incident(sessions: sessionmaker[Session], am: Alertmanager) -> Incident:
    try:
        return await eventually(lambda: the_incident(sessions), timeout=OPEN_TIMEOUT)
    except AssertionError as err:
        raise AssertionError(f"{err}\n--- alertmanager log ---\n{am.log()}") from err


async def wait_until_resolved(sessions: sessionmaker[Session], am: Alertmanager, number: int) -> Incident:
    def resolved() -> Incident | None:
        with sessions() as session:
            row = session.get(Incident, number)
            return row if row is not None and row.status == "resolved" else None

    try:
        return await eventually(resolved, timeout=RESOLVE_TIMEOUT)
    except AssertionError as err:
        raise AssertionError(f"{err}\n--- alertmanager log ---\n{am.log()}") from err


async def settled_alert(sessions: sessionmaker[Session], number: int) -> AlertRow:
    """The incident's one alert, resolved and marked delivered. The API marks the outbox row delivered after
    the workflow's update returns, so that can land just after the workflow projected `resolved`."""

    def settled() -> AlertRow | None:
        [row] = alert_rows(sessions, number)
        assert row.status == "resolved", row.status
        return row if row.delivered_status == "resolved" else None

    return await eventually(settled, timeout=5)


async def listed(live_api: str, keys: Keys, **params: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=live_api, timeout=10) as http:
        resp = await http.get("/api/v1/incidents", params=params, headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_webhook_receiver_opens_incident_and_auto_resolves_when_ends_at_passes(
    live_api: str, worker: None, keys: Keys, sessions: sessionmaker[Session], inbox: Inbox, tmp_path: Path,
) -> None:
    config = {
        "route": route("vigil"),
        "receivers": [webhook_receiver("vigil", f"{live_api}/api/v1/integrations/alertmanager", keys.integration)],
    }
    labels = {"alertname": "E2eCheckoutLatency", "service": "checkout", "severity": "critical"}
    async with running_alertmanager(tmp_path / "am", config) as am:
        starts_at = now_ms()
        ends_at = starts_at + ALERT_LIFETIME
        await am.post_alerts(
            [alert(labels, summary="p99 latency above 2s on checkout", starts_at=starts_at, ends_in=ALERT_LIFETIME)]
        )
        [held] = await am.alerts()
        am_fingerprint = held["fingerprint"]

        incident = await wait_for_incident(sessions, am)
        assert (incident.service, incident.severity, incident.group_key, incident.title) == (
            "checkout", "critical", "service=checkout|alertname=E2eCheckoutLatency", "p99 latency above 2s on checkout",
        )
        [row] = alert_rows(sessions, incident.number)
        # The fingerprint is Alertmanager's own (episodes are status changes of the same alert).
        assert row.fingerprint == am_fingerprint, row.fingerprint
        assert row.labels == labels
        # Through the public API as well, filtered the way an operator would.
        items = await listed(live_api, keys, service="checkout", status="triggered")
        assert [(i["id"], i["severity"], i["group_key"]) for i in items] == [
            (f"INC-{incident.number}", "critical", "service=checkout|alertname=E2eCheckoutLatency")
        ]
        await eventually(lambda: len(inbox.for_incident(incident.number)) == 1)

        # endsAt passes: Alertmanager itself marks the alert resolved and sends it (send_resolved).
        resolved = await wait_until_resolved(sessions, am, incident.number)
        assert resolved.resolved_by == "source:alert source"
        assert resolved.resolution and resolved.resolution.startswith("Auto-resolved")
        assert resolved.resolved_at is not None and resolved.resolved_at >= ends_at, (resolved.resolved_at, ends_at)
        row = await settled_alert(sessions, incident.number)
        assert row.fingerprint == am_fingerprint
        items = await listed(live_api, keys, service="checkout")
        assert [(i["status"], i["resolved_by"]) for i in items] == [("resolved", "source:alert source")]
    # One page for the whole episode: the resolve notification did not page.
    assert len(inbox.for_incident(incident.number)) == 1


async def test_pagerduty_receiver_drives_v2_enqueue(
    live_api: str, worker: None, keys: Keys, sessions: sessionmaker[Session], tmp_path: Path,
) -> None:
    config = {
        "route": route("vigil-pd"),
        "receivers": [pagerduty_receiver("vigil-pd", f"{live_api}/v2/enqueue", keys.integration)],
    }
    labels = {"alertname": "E2ePaymentsErrors", "service": "payments", "severity": "critical"}
    async with running_alertmanager(tmp_path / "am", config) as am:
        starts_at = now_ms()
        ends_at = starts_at + ALERT_LIFETIME
        await am.post_alerts(
            [alert(labels, summary="payments 5xx ratio above 5%", starts_at=starts_at, ends_in=ALERT_LIFETIME)]
        )

        incident = await wait_for_incident(sessions, am)
        # Without templates Alertmanager sends severity "error" and no component: Vigil reads the service and
        # the severity from the label lines of `custom_details.firing`.
        assert (incident.service, incident.severity, incident.group_key) == (
            "payments", "critical", "service=payments|alertname=E2ePaymentsErrors",
        )
        assert incident.title == "E2ePaymentsErrors payments (critical)"  # the stale [FIRING:n] count is dropped
        [row] = alert_rows(sessions, incident.number)
        # Alertmanager's dedup_key is the SHA-256 of its aggregation group key (root route, grouped by
        # service + alertname): one Vigil alert per Alertmanager group, not per alert.
        group = '{}:{alertname="E2ePaymentsErrors", service="payments"}'
        assert row.fingerprint == hashlib.sha256(group.encode()).hexdigest()
        assert row.source == "Alertmanager" and row.status == "firing"
        assert (row.labels["service"], row.labels["alertname"], row.labels["severity"]) == (
            "payments", "E2ePaymentsErrors", "critical",
        )

        # endsAt passes: Alertmanager sends event_action=resolve with the same dedup_key.
        resolved = await wait_until_resolved(sessions, am, incident.number)
        assert resolved.resolved_by == "source:alert source"
        assert resolved.resolved_at is not None and resolved.resolved_at >= ends_at
        await settled_alert(sessions, incident.number)


async def test_unclustered_ha_pair_makes_one_incident_one_alert_one_page(
    live_api: str, worker: None, keys: Keys, sessions: sessionmaker[Session], inbox: Inbox, tmp_path: Path,
) -> None:
    """Two Alertmanagers fed the same alert both notify Vigil: the second delivery only bumps a counter."""
    config = {
        "route": route("vigil"),
        "receivers": [webhook_receiver("vigil", f"{live_api}/api/v1/integrations/alertmanager", keys.integration)],
    }
    labels = {"alertname": "E2eQueueBacklog", "service": "orders", "severity": "critical"}
    # Without startsAt (amtool, scripts) each Alertmanager stamps its own: the pair still makes one alert.
    body = [alert(labels, summary="orders queue backlog above 10k", omit_starts_at=True)]
    async with (
        running_alertmanager(tmp_path / "am-a", config) as am_a,
        running_alertmanager(tmp_path / "am-b", config) as am_b,
    ):
        await asyncio.gather(am_a.post_alerts(body), am_b.post_alerts(body))
        incident = await wait_for_incident(sessions, am_a)

        async def both_delivered() -> bool:
            rows = alert_rows(sessions, incident.number)
            assert len(rows) == 1, [(r.fingerprint, r.count) for r in rows]
            return rows[0].count >= 2

        try:
            await eventually(both_delivered, timeout=OPEN_TIMEOUT)
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- a ---\n{am_a.log()}\n--- b ---\n{am_b.log()}") from err
        await eventually(lambda: len(inbox.for_incident(incident.number)) >= 1)
        await eventually(lambda: alert_rows(sessions, incident.number)[0].delivered_status == "firing", timeout=5)

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
        assert session.scalar(select(func.count()).select_from(AlertRow)) == 1
    [row] = alert_rows(sessions, incident.number)
    assert (row.status, row.delivered_status) == ("firing", "firing")
    assert len(inbox.for_incident(incident.number)) == 1
    assert len(inbox.messages) == 1
