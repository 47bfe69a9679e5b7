"""The evidence activity: Prometheus ranges for the alerts' expressions and the configured queries, as charts."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from vigil.contracts import EvidenceSummary, GatherEvidenceInput, incident_ref
from vigil.logging import get_logger
from vigil.models import AlertRow, EvidenceQuery, EvidenceSeries, Incident, utcnow
from vigil.rca.artifacts import ArtifactStore, chart_key, slug
from vigil.rca.charts import Marks, render_chart
from vigil.rca.evidence import (
    PrometheusEvidence, QuerySpec, SeriesResult, alert_expression, split_threshold, step_for, unique_names, window,
)
from vigil.settings import RcaSettings

log = get_logger(__name__)
NO_PROMETHEUS = "no Prometheus configured (VIGIL_RCA_PROMETHEUS_URL is empty)"


class EvidenceActivities:
    def __init__(self, sessions: sessionmaker[Session], rca: RcaSettings, store: ArtifactStore) -> None:
        self.sessions, self.rca, self.store = sessions, rca, store

    @activity.defn(no_thread_cancel_exception=True)
    def gather_evidence(self, inp: GatherEvidenceInput) -> EvidenceSummary:
        """Query, chart and store every series, replacing the incident's earlier evidence; return only names."""
        with self.sessions() as session:
            specs = unique_names(self._specs(session, inp))
        start, end = window(inp.started_at, inp.resolved_at)
        if not specs:
            results: list[SeriesResult] = []
        elif not self.rca.prometheus_url:
            results = [SeriesResult(spec, step_for(start, end), error=NO_PROMETHEUS) for spec in specs]
        else:
            prometheus = PrometheusEvidence(self.rca.prometheus_url, timeout_seconds=self.rca.prometheus_timeout_seconds)
            results = prometheus.gather(specs, start, end)
        marks = Marks(started_at=inp.started_at, resolved_at=inp.resolved_at, acknowledged_at=inp.acknowledged_at)
        charts = self._charts(inp.number, results, marks, start, end)
        self._replace(inp.number, results, charts)
        gaps = list(dict.fromkeys(r.error for r in results if r.error))
        log.info("evidence gathered", incident=incident_ref(inp.number), series=len(results), charts=len(charts),
                 gaps=len(gaps))
        return EvidenceSummary(series=len(results), charts=list(charts.values()), gaps=gaps)

    def _specs(self, session: Session, inp: GatherEvidenceInput) -> list[QuerySpec]:
        """The alerts' own expressions first, then the queries configured for the service or the integration."""
        specs = []
        for row in session.scalars(select(AlertRow).where(AlertRow.incident_number == inp.number,
                                                          AlertRow.url.is_not(None)).order_by(AlertRow.id)):
            expr = alert_expression(row.url)
            if expr:
                promql, threshold = split_threshold(expr)
                specs.append(QuerySpec(row.labels.get("alertname") or row.summary[:100], promql, "alert", threshold))
        integration_id = session.scalar(select(Incident.integration_id).where(Incident.number == inp.number))
        configured = select(EvidenceQuery).where(
            or_(EvidenceQuery.service == inp.service, EvidenceQuery.integration_id == integration_id)
        ).order_by(EvidenceQuery.id)
        specs += [QuerySpec(q.name, q.promql, "service", q.threshold) for q in session.scalars(configured)]
        return specs

    def _charts(self, number: int, results: list[SeriesResult], marks: Marks, start: datetime,
                end: datetime) -> dict[str, str]:
        """Series name -> chart name, for each series with data; the PNGs go to the artifact store."""
        charts: dict[str, str] = {}
        taken: set[str] = set()
        for result in results:
            if not result.matrix:
                continue
            name = base = slug(result.spec.name)
            n = 1
            while name in taken:
                n += 1
                name = f"{base}-{n}"
            taken.add(name)
            png = render_chart(result, marks, start=start.astimezone(UTC), end=end.astimezone(UTC))
            self.store.put(chart_key(number, name), png, "image/png")
            charts[result.spec.name] = name
        return charts

    def _replace(self, number: int, results: list[SeriesResult], charts: dict[str, str]) -> None:
        with self.sessions.begin() as session:
            old_keys = set(session.scalars(select(EvidenceSeries.chart_key).where(
                EvidenceSeries.incident_number == number, EvidenceSeries.chart_key.is_not(None))))
            session.execute(delete(EvidenceSeries).where(EvidenceSeries.incident_number == number))
            now = utcnow()
            for r in results:
                key = chart_key(number, charts[r.spec.name]) if r.spec.name in charts else None
                session.add(EvidenceSeries(
                    incident_number=number, name=r.spec.name[:200], promql=r.spec.promql, source=r.spec.source,
                    step_seconds=r.step_seconds, points=r.matrix, threshold=r.spec.threshold, chart_key=key,
                    error=r.error, gathered_at=now,
                ))
        # After the commit: a chart of the earlier evidence that this gather did not draw again.
        new_keys = {chart_key(number, name) for name in charts.values()}
        for key in old_keys - new_keys:
            self.store.delete(key)
