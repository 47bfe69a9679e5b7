"""The postmortem's building blocks on a real incident (live API, worker, Prometheus, SMTP): evidence, draft,
renderings, edits kept across refreshes, reminders sent once."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.channels import EmailSender
from activities.evidence import NO_PROMETHEUS, EvidenceActivities
from activities.postmortem import PostmortemActivities
from tests.conftest import Inbox, Keys
from tests.flows import am_body, attempts, post_alertmanager
from tests.helpers import eventually
from tests.prometheus import Exporter, Prometheus, exporter, prometheus  # noqa: F401 - fixtures
from vigil.contracts import (
    DraftPostmortemInput, GatherEvidenceInput, OpenPostmortemInput, RemindPostmortemInput, Severity,
)
from vigil.models import EvidenceQuery, EvidenceSeries, Incident, PostmortemSection
from vigil.rca import postmortems
from vigil.rca.artifacts import LocalArtifactStore, chart_key
from vigil.rca.document import TEMPLATE
from vigil.rca.render import to_html, to_markdown, to_pdf
from vigil.settings import RcaSettings, Settings

RULE = "checkout_error_ratio > 0.5"


@dataclasses.dataclass
class Resolved:
    number: int
    incident: Incident


async def resolved_incident(live_api: str, keys: Keys, sessions: sessionmaker[Session]) -> Resolved:
    """A critical Alertmanager incident whose generatorURL carries RULE, acknowledged by Rita, then resolved."""
    body = am_body("alertmanager-0.25-webhook-firing.json", starts_at=datetime.now(UTC).isoformat())
    body["alerts"][0]["generatorURL"] = f"http://prometheus:9090/graph?g0.expr={quote_plus(RULE)}&g0.tab=1"
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as http:
        number = int((await post_alertmanager(http, keys.integration, body))["incidents"][0].removeprefix("INC-"))
        await eventually(lambda: attempts(sessions, number))  # the first page went out
        responder = keys.auth(keys.responder)
        ack = await http.post(f"/api/v1/incidents/{number}/acknowledge", headers=responder, json={"note": "on it"})
        assert ack.status_code == 200, ack.text
        resolve = await http.post(f"/api/v1/incidents/{number}/resolve", headers=responder,
                                  json={"resolution": "Rolled back <b>deploy</b> 42"})
        assert resolve.status_code == 200, resolve.text

    def projected() -> Incident | None:
        with sessions() as session:
            row = session.get(Incident, number)
            return row if row is not None and row.status == "resolved" else None

    return Resolved(number, await eventually(projected))


def run(activity_fn, arg, *, attempt: int = 1):  # noqa: ANN001, ANN201
    """Run a sync activity as the worker would (its own thread, an activity context)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return asyncio.to_thread(env.run, activity_fn, arg)


def activities(settings: Settings, sessions: sessionmaker[Session], rca: RcaSettings,
               store: LocalArtifactStore) -> tuple[PostmortemActivities, EvidenceActivities]:
    return (
        PostmortemActivities(sessions, rca, settings.escalation, EmailSender(settings.smtp), settings.core.public_url),
        EvidenceActivities(sessions, rca, store),
    )


def gather_input(r: Resolved) -> GatherEvidenceInput:
    i = r.incident
    return GatherEvidenceInput(number=r.number, service=i.service, started_at=i.created_at,
                               acknowledged_at=i.acknowledged_at, resolved_at=i.resolved_at)


async def test_evidence_draft_and_renderings_of_a_real_incident(
    live_api: str, keys: Keys, worker: None, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path,
    prometheus: Prometheus, exporter: Exporter,
) -> None:
    exporter.set(0.75)
    await eventually(lambda: prometheus.scraped(0.75), timeout=30, interval=0.2)
    with sessions.begin() as session:
        session.add(EvidenceQuery(name="checkout error ratio x2", promql="2 * checkout_error_ratio", service="checkout"))
    r = await resolved_incident(live_api, keys, sessions)
    store = LocalArtifactStore(tmp_path / "artifacts")
    pm, ev = activities(settings, sessions, RcaSettings(prometheus_url=prometheus.url), store)

    plan = await run(pm.open_postmortem, OpenPostmortemInput(number=r.number, severity=Severity.critical,
                                                            service="checkout", title=r.incident.title))
    assert plan.required and plan.remind_after_seconds == 24 * 3600 and plan.manager_after_reminders == 3
    assert plan.url.endswith(f"/api/v1/incidents/INC-{r.number}/postmortem")
    again = await run(pm.open_postmortem, OpenPostmortemInput(number=r.number, severity=Severity.critical,
                                                             service="checkout", title=r.incident.title))
    assert again == plan  # idempotent: one document

    summary = await run(ev.gather_evidence, gather_input(r))
    assert summary.series == 2 and summary.gaps == []
    assert summary.charts == ["acccheckoutlatency", "checkout-error-ratio-x2"]
    with sessions() as session:
        series = {s.name: s for s in session.scalars(select(EvidenceSeries).where(
            EvidenceSeries.incident_number == r.number))}
    alert = series["AccCheckoutLatency"]
    # The rule's expression came through generatorURL; its comparison became the chart's threshold.
    assert (alert.promql, alert.threshold, alert.source) == ("checkout_error_ratio", 0.5, "alert")
    assert {float(v) for s in alert.points for _, v in s["values"]} == {0.75}
    assert {float(v) for s in series["checkout error ratio x2"].points for _, v in s["values"]} == {1.5}
    png = store.get(chart_key(r.number, "acccheckoutlatency"))
    assert png.content_type == "image/png" and struct.unpack(">II", png.data[16:24]) == (1000, 400)

    progress = await run(pm.draft_postmortem, DraftPostmortemInput(number=r.number))
    assert (progress.sections_total, progress.sections_filled) == (len(TEMPLATE), 4)
    with sessions.begin() as session:
        postmortems.edit_section(session, number=r.number, key="root_cause",
                                 body="A bad deploy <script>alert(1)</script>", actor="user:rita@test")
        view = postmortems.document_view(session, number=r.number, store=store)
    timeline = next(s.body for s in view.sections if s.key == "timeline")
    assert "acknowledged" in timeline and "user:rita@test" in timeline and "email" in timeline
    summary_text = next(s.body for s in view.sections if s.key == "summary")
    assert "Time to acknowledge" in summary_text and "| Pages sent | 1 |" in summary_text

    pdf = PdfReader(io.BytesIO(to_pdf(view)))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    for t in TEMPLATE:
        assert t.title in text, f"{t.title} missing from the PDF"
    assert "A bad deploy" in text and f"INC-{r.number}" in text
    assert sum(len(page.images) for page in pdf.pages) == 2  # both charts are inside

    page = to_html(view)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>deploy</b>" not in page  # the resolution note, written by a person, is escaped too
    assert page.count("data:image/png;base64,") == 2
    md = to_markdown(view)
    assert all(f"## {t.title}" in md for t in TEMPLATE) and "](charts/acccheckoutlatency.png)" in md


async def test_a_refresh_keeps_an_edited_section_and_updates_the_rest(
    live_api: str, keys: Keys, worker: None, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path,
) -> None:
    r = await resolved_incident(live_api, keys, sessions)
    pm, ev = activities(settings, sessions, RcaSettings(), LocalArtifactStore(tmp_path / "artifacts"))
    await run(pm.open_postmortem, OpenPostmortemInput(number=r.number, severity=Severity.high, service="checkout",
                                                     title="t"))
    await run(pm.draft_postmortem, DraftPostmortemInput(number=r.number))
    with sessions.begin() as session:
        postmortems.edit_section(session, number=r.number, key="summary", body="Our own words.", actor="user:rita@test")
    summary = await run(ev.gather_evidence, gather_input(r))  # no Prometheus configured: a gap, not a failure
    assert summary.series == 1 and summary.charts == [] and summary.gaps == [NO_PROMETHEUS]
    progress = await run(pm.draft_postmortem, DraftPostmortemInput(number=r.number))
    assert progress.sections_filled == 4

    with sessions() as session:
        sections = {s.key: s for s in session.scalars(select(PostmortemSection).where(
            PostmortemSection.incident_number == r.number))}
    assert sections["summary"].body == "Our own words." and sections["summary"].edited
    assert sections["summary"].updated_by == "user:rita@test"
    assert NO_PROMETHEUS in sections["charts"].body and sections["charts"].updated_by == "system:vigil"


async def test_no_postmortem_below_the_required_severities(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path,
) -> None:
    pm, _ = activities(settings, sessions, RcaSettings(), LocalArtifactStore(tmp_path))
    plan = await run(pm.open_postmortem, OpenPostmortemInput(number=1, severity=Severity.warning, service="s",
                                                            title="t"))
    assert not plan.required


async def test_the_reminder_arrives_once_even_when_the_activity_runs_twice(
    live_api: str, keys: Keys, worker: None, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path,
    inbox: Inbox,
) -> None:
    r = await resolved_incident(live_api, keys, sessions)
    pm, _ = activities(settings, sessions, RcaSettings(), LocalArtifactStore(tmp_path))
    inp = RemindPostmortemInput(number=r.number, title="checkout latency", reminder=1,
                                acknowledged_by=r.incident.acknowledged_by)
    before = len(inbox.for_incident(r.number))  # the incident's own page
    first = await run(pm.remind_postmortem, inp)
    retried = await run(pm.remind_postmortem, inp, attempt=2)
    assert first.status == retried.status == "sent" and first.recipients == retried.recipients

    reminders = [m for m in inbox.for_incident(r.number)[before:] if "postmortem reminder" in m["Subject"]]
    assert len(reminders) == 1
    assert reminders[0]["To"] == "rita@test"  # the acknowledger, found from the actor label
    assert f"/api/v1/incidents/INC-{r.number}/postmortem" in reminders[0].get_content()

    # The manager joins on request; the owner's reminder 2 is a new email, the manager's a first one.
    second = await run(pm.remind_postmortem, inp.model_copy(update={"reminder": 2, "to_manager": True}))
    assert second.status == "sent" and len(second.recipients) == 2
    to = sorted(m["To"] for m in inbox.for_incident(r.number)[before:] if "reminder 2" in m["Subject"])
    assert to == sorted(["rita@test", settings.escalation.manager_email])


async def test_nobody_to_remind_is_skipped_not_raised(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path,
) -> None:
    escalation = settings.escalation.model_copy(update={"oncall_email": "", "manager_email": ""})
    pm = PostmortemActivities(sessions, RcaSettings(), escalation, EmailSender(settings.smtp), "http://x")
    result = await run(pm.remind_postmortem, RemindPostmortemInput(number=1, title="t", reminder=1,
                                                                   acknowledged_by="user:nobody@test"))
    assert result.status == "skipped" and result.recipients == []
