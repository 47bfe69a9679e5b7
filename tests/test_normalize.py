"""Severity mapping, fingerprints and group keys from real Alertmanager payloads."""

from __future__ import annotations

from datetime import datetime

import pytest

from api.ingest.schemas import AlertmanagerWebhook, PagerDutyEvent
from tests.flows import fixture
from vigil.contracts import AlertStatus, Severity
from vigil.normalize import from_alertmanager, from_pagerduty, group_key, map_severity


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("critical", Severity.critical), ("P1", Severity.critical), ("page", Severity.critical),
        ("error", Severity.high), ("high", Severity.high), ("major", Severity.high),
        ("warning", Severity.warning), ("warn", Severity.warning),
        ("info", Severity.info), ("low", Severity.info),
        (None, Severity.warning), ("", Severity.warning), ("weird", Severity.warning),
    ],
)
def test_map_severity(raw: str | None, expected: Severity) -> None:
    assert map_severity(raw) is expected


def test_alertmanager_firing_and_resolved_share_a_fingerprint() -> None:
    alerts = []
    for name in ("alertmanager-0.25-webhook-firing.json", "alertmanager-0.25-webhook-resolved.json"):
        body = AlertmanagerWebhook.model_validate(fixture(name))
        alerts.append(from_alertmanager(body.alerts[0].model_dump(), body.commonLabels, body.externalURL))
    firing, resolved = alerts
    assert firing.fingerprint == resolved.fingerprint == "7328f61998b09982"
    assert (firing.status, resolved.status) == (AlertStatus.firing, AlertStatus.resolved)
    assert firing.ends_at is None  # Alertmanager's zero time means "not ended"
    assert resolved.ends_at == datetime.fromisoformat("2026-11-22T07:44:13.046+00:00")
    assert firing.severity is Severity.critical and firing.service == "checkout"
    assert firing.summary == "p99 latency above 2s on checkout"
    assert group_key(firing) == "service=checkout|alertname=AccCheckoutLatency"


def test_alertmanager_pagerduty_receiver_without_templates() -> None:
    """Alertmanager's pagerduty_configs send severity "error" and the labels only as text."""
    event = PagerDutyEvent.model_validate(fixture("alertmanager-0.25-pagerduty-trigger.json"))
    assert event.payload is not None
    p = event.payload
    alert = from_pagerduty(
        dedup_key=event.dedup_key or "", summary=p.summary, source=p.source, severity=p.severity,
        component=p.component, group=p.group, klass=p.class_,
        custom_details=p.custom_details if isinstance(p.custom_details, dict) else None,
        timestamp=p.timestamp, client_url=event.client_url,
    )
    assert alert.service == "payments"
    assert alert.severity is Severity.critical  # from the `severity = critical` label line, not "error"
    assert alert.labels["alertname"] == "AccPaymentsErrors"
    assert group_key(alert) == "service=payments|alertname=AccPaymentsErrors"


def test_pagerduty_templated_fields_win() -> None:
    alert = from_pagerduty(
        dedup_key="k", summary="[FIRING:3] Disk full", source="host-1", severity="warning", component="storage",
        group=None, klass=None, custom_details=None, timestamp=None, client_url=None,
    )
    assert (alert.service, alert.severity, alert.labels["alertname"]) == ("storage", Severity.warning, "Disk full")


def test_pagerduty_group_of_alerts_takes_the_most_severe_and_the_common_labels() -> None:
    firing = (
        "Labels:\n - alertname = Y\n - instance = 1\n - service = pay\n - severity = critical\n"
        "Annotations:\n - summary = one\n"
        "Labels:\n - alertname = Y\n - instance = 2\n - service = pay\n - severity = warning\n"
        "Annotations:\n - summary = two\n"
    )
    alert = from_pagerduty(
        dedup_key="k", summary="[FIRING:2] Y pay ", source="Alertmanager", severity="error", component=None,
        group=None, klass=None, custom_details={"firing": firing}, timestamp=None, client_url=None,
    )
    assert alert.severity is Severity.critical
    assert "instance" not in alert.labels and alert.labels["service"] == "pay"
    assert alert.summary == "Y pay"
