"""The postmortem in the database: open it from the template, refresh its draft, edit a section, show it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.contracts import PostmortemProgress, incident_ref
from vigil.models import Postmortem, PostmortemSection, utcnow
from vigil.rca.artifacts import ArtifactNotFound, ArtifactStore
from vigil.rca.document import SYSTEM_ACTOR, TEMPLATE, draft, load_facts, slug_of
from vigil.rca.render import Chart, DocumentView, Section

HINTS = {t.key: t.hint for t in TEMPLATE}
GENERATED = {t.key for t in TEMPLATE if t.generated}


class UnknownSection(KeyError):
    """No section with this key in the template."""


def filled(section: PostmortemSection) -> bool:
    """Written: not empty and not just the template's hint."""
    body = section.body.strip()
    return bool(body) and body != HINTS.get(section.key, "").strip()


def progress(session: Session, *, number: int) -> PostmortemProgress:
    sections = session.scalars(select(PostmortemSection).where(PostmortemSection.incident_number == number)).all()
    return PostmortemProgress(sections_total=len(sections), sections_filled=sum(filled(s) for s in sections))


def open_postmortem(session: Session, *, number: int) -> Postmortem:
    """The incident's postmortem, created with the template's sections if it has none (idempotent)."""
    existing = session.get(Postmortem, number)
    if existing is not None:
        return existing
    now = utcnow()
    row = Postmortem(incident_number=number, status="draft", created_at=now, updated_at=now)
    row.sections = [
        PostmortemSection(key=t.key, title=t.title, body=t.hint if not t.generated else "", position=i,
                          edited=False, updated_by=SYSTEM_ACTOR, updated_at=now)
        for i, t in enumerate(TEMPLATE)
    ]
    try:
        with session.begin_nested():  # a concurrent retry may have created it: then keep that one
            session.add(row)
    except IntegrityError:
        return session.get_one(Postmortem, number)
    return row


def refresh_draft(session: Session, *, number: int) -> PostmortemProgress:
    """Regenerate the generated sections from the incident; a section a person edited is never overwritten."""
    postmortem = session.get(Postmortem, number)
    if postmortem is None:
        return PostmortemProgress()
    bodies = draft(load_facts(session, number))
    now = utcnow()
    for section in postmortem.sections:
        if section.edited or section.key not in bodies or section.body == bodies[section.key]:
            continue
        section.body, section.updated_by, section.updated_at = bodies[section.key], SYSTEM_ACTOR, now
    postmortem.updated_at = now
    session.flush()
    return progress(session, number=number)


def edit_section(session: Session, *, number: int, key: str, body: str, actor: str) -> PostmortemSection:
    """A person's text for one section: recorded with who and when, and kept from then on."""
    section = session.scalar(
        select(PostmortemSection).where(PostmortemSection.incident_number == number, PostmortemSection.key == key)
    )
    if section is None:
        raise UnknownSection(key)
    now = utcnow()
    section.body, section.edited, section.updated_by, section.updated_at = body, True, actor, now
    session.get_one(Postmortem, number).updated_at = now
    session.flush()
    return section


def document_view(session: Session, *, number: int, store: ArtifactStore) -> DocumentView:
    """The document as every rendering shows it, charts read from the artifact store."""
    postmortem = session.get_one(Postmortem, number)
    facts = load_facts(session, number)
    charts = []
    for series in facts.series:
        png = None
        if series.chart_key:
            try:
                png = store.get(series.chart_key).data
            except ArtifactNotFound:
                png = None
        charts.append(Chart(name=series.name, slug=slug_of(series), png=png))
    return DocumentView(
        ref=incident_ref(number), title=facts.incident.title, status=postmortem.status,
        sections=[Section(s.key, s.title, s.body, s.updated_by, s.updated_at, s.edited) for s in postmortem.sections],
        charts=charts, attachments=[a.filename for a in facts.attachments],
    )
