"""The postmortem in the database: read, edit sections, what completion needs, the renderings' view."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.postmortems.schemas import (
    AttachmentRead,
    ChartRead,
    FiguresRead,
    Links,
    PostmortemRead,
    Progress,
    SectionRead,
    SeriesRead,
)
from vigil.contracts import PostmortemProgress, PostmortemStatus, incident_ref
from vigil.models import EvidenceSeries, Incident, Postmortem, PostmortemAttachment, utcnow
from vigil.rca import postmortems
from vigil.rca.document import TEMPLATE, slug_of
from vigil.rca.figures import incident_figures
from vigil.rca.postmortems import filled

# What a reviewer cannot sign off without: what happened, why, and what will change (docs/rca.md).
REQUIRED_SECTIONS = ("summary", "root_cause", "action_items")


def incident_or_404(session: Session, number: int) -> Incident:
    row = session.get(Incident, number)
    if row is None:
        raise ApiError(404, "not_found", f"{incident_ref(number)} does not exist")
    return row


def postmortem_or_404(session: Session, number: int) -> Postmortem:
    incident_or_404(session, number)
    row = session.get(Postmortem, number)
    if row is None:
        raise ApiError(
            404, "not_found",
            f"{incident_ref(number)} has no postmortem: it is not resolved yet, or its severity does not need one",
        )
    return row


def missing(pm: Postmortem) -> list[str]:
    """The required sections that are still empty, in document order."""
    by_key = {s.key: s for s in pm.sections}
    return [key for key in REQUIRED_SECTIONS if key not in by_key or not filled(by_key[key])]


def base_url(public_url: str, number: int) -> str:
    return f"{public_url}/api/v1/incidents/{incident_ref(number)}"


def chart_url(public_url: str, number: int, chart: str) -> str:
    return f"{base_url(public_url, number)}/postmortem/charts/{chart}.png"


def attachment_read(public_url: str, row: PostmortemAttachment) -> AttachmentRead:
    return AttachmentRead(
        id=row.id, filename=row.filename, content_type=row.content_type, size=row.size, sha256=row.sha256,
        uploaded_by=row.uploaded_by, uploaded_at=row.uploaded_at,
        url=f"{base_url(public_url, row.incident_number)}/attachments/{row.id}",
    )


def _series(session: Session, number: int) -> list[EvidenceSeries]:
    return list(session.scalars(select(EvidenceSeries).filter_by(incident_number=number).order_by(EvidenceSeries.id)))


def attachments(session: Session, number: int) -> list[PostmortemAttachment]:
    return list(session.scalars(
        select(PostmortemAttachment).filter_by(incident_number=number)
        .order_by(PostmortemAttachment.uploaded_at, PostmortemAttachment.id)
    ))


def read(*, session: Session, public_url: str, number: int) -> PostmortemRead:
    pm = postmortem_or_404(session, number)
    incident = session.get_one(Incident, number)
    fig = incident_figures(session, number)
    series = _series(session, number)
    done = postmortems.progress(session, number=number)
    base = base_url(public_url, number)
    return PostmortemRead(
        id=incident_ref(number), number=number, title=incident.title, status=PostmortemStatus(pm.status),
        progress=Progress(**done.model_dump()), missing=missing(pm),
        sections=[
            SectionRead(key=s.key, title=s.title, body=s.body, position=s.position, filled=filled(s), edited=s.edited,
                        updated_by=s.updated_by, updated_at=s.updated_at)
            for s in pm.sections
        ],
        figures=FiguresRead(
            time_to_acknowledge_seconds=fig.time_to_acknowledge.total_seconds() if fig.time_to_acknowledge else None,
            time_to_resolve_seconds=fig.time_to_resolve.total_seconds() if fig.time_to_resolve else None,
            pages_sent=fig.pages_sent, people_paged=fig.people_paged, highest_step=fig.highest_step,
            highest_step_name=fig.highest_step_name, reopen_count=fig.reopen_count,
        ),
        evidence=[
            SeriesRead(
                name=s.name, promql=s.promql, source=s.source, step_seconds=s.step_seconds,
                samples=sum(len(m.get("values", [])) for m in s.points), threshold=s.threshold, error=s.error,
                chart_url=chart_url(public_url, number, slug_of(s)) if s.chart_key else None,
                gathered_at=s.gathered_at,
            )
            for s in series
        ],
        charts=[
            ChartRead(name=s.name, slug=slug_of(s), url=chart_url(public_url, number, slug_of(s)))
            for s in series if s.chart_key
        ],
        attachments=[attachment_read(public_url, a) for a in attachments(session, number)],
        links=Links(markdown=f"{base}/postmortem?format=md", html=f"{base}/postmortem?format=html",
                    pdf=f"{base}/postmortem?format=pdf"),
        created_at=pm.created_at, updated_at=pm.updated_at, completed_by=pm.completed_by,
        completed_at=pm.completed_at, waived_by=pm.waived_by, waived_at=pm.waived_at, waived_reason=pm.waived_reason,
    )


def edit_sections(*, session: Session, number: int, bodies: dict[str, str], actor: str) -> PostmortemProgress:
    """New bodies for the named sections, each stamped with who and when; the document's progress after it."""
    pm = postmortem_or_404(session, number)
    if pm.status != PostmortemStatus.draft:
        raise ApiError(409, "conflict", f"the postmortem of {incident_ref(number)} is {pm.status}; it takes no more edits",
                       {"status": pm.status})
    by_key = {s.key: s for s in pm.sections}
    absent = [key for key in bodies if key not in by_key]
    if absent:
        # A template key this document was opened without (an older template).
        raise ApiError(422, "validation_error", f"this postmortem has no section {', '.join(absent)}",
                       [{"field": f"body.sections.{k}", "message": "no such section", "type": "value_error"} for k in absent])
    for key, body in bodies.items():
        # Re-saving unchanged text (a client sending the whole document) must not take a colleague's authorship.
        if by_key[key].body != body:
            postmortems.edit_section(session, number=number, key=key, body=body, actor=actor)
    session.commit()
    return postmortems.progress(session, number=number)


def check_completable(*, session: Session, number: int) -> None:
    """409 naming the required sections still empty, or the status when it is not a draft."""
    pm = postmortem_or_404(session, number)
    if pm.status != PostmortemStatus.draft:
        raise ApiError(409, "conflict", f"the postmortem of {incident_ref(number)} is already {pm.status}",
                       {"status": pm.status})
    if empty := missing(pm):
        titles = {t.key: t.title for t in TEMPLATE} | {s.key: s.title for s in pm.sections}
        raise ApiError(
            409, "postmortem_incomplete",
            f"fill in {', '.join(titles.get(k, k) for k in empty)} before completing the postmortem",
            {"missing": empty, "sections_filled": sum(filled(s) for s in pm.sections), "sections_total": len(pm.sections)},
        )


def mark_done(*, session: Session, number: int, status: PostmortemStatus, actor: str, reason: str = "") -> None:
    """Record what the workflow accepted; only a draft changes, so a retry or a race writes it once."""
    now = utcnow()
    values: dict[str, object] = {"status": status.value, "updated_at": now}
    if status == PostmortemStatus.complete:
        values |= {"completed_by": actor, "completed_at": now}
    else:
        values |= {"waived_by": actor, "waived_at": now, "waived_reason": reason}
    session.execute(
        update(Postmortem).where(Postmortem.incident_number == number, Postmortem.status == PostmortemStatus.draft.value)
        .values(**values)
    )
    session.commit()
