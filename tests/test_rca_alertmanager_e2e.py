"""A real Prometheus rule fires through a real Alertmanager into Vigil; its expression, carried in
generatorURL, becomes the incident's metric evidence."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.evidence import EvidenceActivities
from tests.alertmanager import route, running_alertmanager, webhook_receiver
from tests.conftest import Keys
from tests.helpers import eventually
from tests.prometheus import Exporter, exporter, running_prometheus  # noqa: F401 - fixture
from vigil.contracts import GatherEvidenceInput
from vigil.models import AlertRow, EvidenceSeries, Incident
from vigil.rca.artifacts import LocalArtifactStore
from vigil.rca.evidence import PrometheusEvidence, QuerySpec, window
from vigil.settings import RcaSettings

RULE = {
    "alert": "CheckoutErrors",
    "expr": "checkout_error_ratio > 0.5",
    "labels": {"severity": "critical"},
    "annotations": {"summary": "checkout errors above 50%"},
}
# Rule evaluation and scrapes every second, Alertmanager's group_wait/interval 1s: well inside these deadlines.
FIRE_TIMEOUT = 40.0


def incident_with(sessions: sessionmaker[Session], status: str) -> tuple[Incident, AlertRow] | None:
    with sessions() as session:
        row = session.scalar(select(AlertRow).where(AlertRow.labels["alertname"].as_string() == "CheckoutErrors"))
        incident = session.get(Incident, row.incident_number) if row else None
        return (incident, row) if incident is not None and incident.status == status else None


async def test_the_rules_expression_flows_through_generator_url_into_the_evidence(
    live_api: str, keys: Keys, worker: None, sessions: sessionmaker[Session], tmp_path: Path, exporter: Exporter,
) -> None:
    config = {
        "route": route("vigil"),
        "receivers": [webhook_receiver("vigil", f"{live_api}/api/v1/integrations/alertmanager", keys.integration)],
    }
    exporter.set(0.9)
    async with running_alertmanager(tmp_path / "am", config) as am:
        with running_prometheus(tmp_path / "prometheus", exporter.port, rules=[RULE], alertmanager_url=am.url) as prom:
            await eventually(prom.ready, timeout=30, interval=0.1)
            incident, alert = await eventually(lambda: incident_with(sessions, "triggered"), timeout=FIRE_TIMEOUT)
            assert alert.url is not None and alert.url.startswith(f"{prom.url}/graph?g0.expr=")
            assert incident.service == "checkout"  # the exporter's `service` label, kept by the rule

            # Keep the rule firing until a step of the evidence's window (it starts at the incident's opening
            # minus 30 min, so the steps fall on the same instants later) holds the served value, then stop it.
            early = PrometheusEvidence(prom.url, timeout_seconds=5)
            spec = QuerySpec("ratio", "checkout_error_ratio", "alert")

            def sampled_at_a_past_step() -> bool:
                settled = datetime.now(UTC) - timedelta(seconds=3)
                [result] = early.gather([spec], *window(incident.created_at, incident.created_at))
                return any(v == 0.9 for at, v in result.values() if at < settled)

            await eventually(sampled_at_a_past_step, timeout=FIRE_TIMEOUT, interval=0.5)
            exporter.set(0.1)  # the rule stops firing: Prometheus sends the resolve, the incident auto-resolves
            incident, _ = await eventually(lambda: incident_with(sessions, "resolved"), timeout=FIRE_TIMEOUT)

            activities = EvidenceActivities(sessions, RcaSettings(prometheus_url=prom.url),
                                            LocalArtifactStore(tmp_path / "artifacts"))
            inp = GatherEvidenceInput(number=incident.number, service=incident.service,
                                      started_at=incident.created_at, resolved_at=incident.resolved_at)
            summary = await asyncio.to_thread(ActivityEnvironment().run, activities.gather_evidence, inp)

    assert summary.gaps == [] and summary.charts == ["checkouterrors"]
    with sessions() as session:
        [series] = session.scalars(select(EvidenceSeries).where(EvidenceSeries.incident_number == incident.number))
    assert (series.name, series.promql, series.threshold, series.source) == (
        "CheckoutErrors", "checkout_error_ratio", 0.5, "alert",
    )
    served = {float(v) for s in series.points for _, v in s["values"]}
    assert 0.9 in served and served <= {0.9, 0.1}
