"""The postmortem document: its template, the facts of the incident, and the generated draft sections."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.changes import Change, recent_changes
from vigil.contracts import incident_ref
from vigil.models import (
    AlertRow, EvidenceSeries, Incident, JiraIssue, NotificationAttempt, PostmortemAttachment, TimelineEvent,
)
from vigil.rca.artifacts import slug
from vigil.rca.figures import REMINDER_STEP, Figures, human, incident_figures
from vigil.rca.render import MARKDOWN


@dataclass(frozen=True)
class SectionTemplate:
    key: str
    title: str
    generated: bool  # filled from the incident by a draft; the others are written by people
    hint: str = ""


TEMPLATE: tuple[SectionTemplate, ...] = (
    SectionTemplate("summary", "Summary", True),
    SectionTemplate("impact", "Impact", True),
    SectionTemplate("timeline", "Timeline", True),
    SectionTemplate("charts", "Charts", True),
    SectionTemplate("investigation", "Investigation notes", False, "What was looked at, and what it showed."),
    SectionTemplate("root_cause", "Root cause", False, "Why it happened."),
    SectionTemplate("contributing_factors", "Contributing factors", False, "What made it worse or longer."),
    SectionTemplate(
        "action_items", "Action items", False, "| Action | Owner | Due date |\n|---|---|---|\n| | | |",
    ),
    SectionTemplate("lessons", "Lessons", False, "What went well, what did not, where we were lucky."),
)
SECTION_KEYS = tuple(t.key for t in TEMPLATE)
SYSTEM_ACTOR = "system:vigil"


@dataclass
class Facts:
    """Everything the draft says, read from the database in one session."""

    incident: Incident
    figures: Figures
    alerts: list[AlertRow] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)
    pages: list[NotificationAttempt] = field(default_factory=list)
    series: list[EvidenceSeries] = field(default_factory=list)
    attachments: list[PostmortemAttachment] = field(default_factory=list)
    jira_key: str | None = None
    changes: list[Change] = field(default_factory=list)  # the service's recent changes, newest first


def load_facts(session: Session, number: int) -> Facts:
    incident = session.get_one(Incident, number)
    where = {"incident_number": number}
    jira = session.get(JiraIssue, number)
    return Facts(
        incident=incident,
        figures=incident_figures(session, number),
        alerts=list(session.scalars(select(AlertRow).filter_by(**where).order_by(AlertRow.first_seen, AlertRow.id))),
        timeline=list(session.scalars(select(TimelineEvent).filter_by(**where).order_by(TimelineEvent.seq))),
        pages=list(session.scalars(
            select(NotificationAttempt).filter_by(**where).order_by(NotificationAttempt.started_at, NotificationAttempt.id)
        )),
        series=list(session.scalars(select(EvidenceSeries).filter_by(**where).order_by(EvidenceSeries.id))),
        attachments=list(session.scalars(
            select(PostmortemAttachment).filter_by(**where).order_by(PostmortemAttachment.uploaded_at)
        )),
        jira_key=incident.jira_key or (jira.jira_key if jira else None),
        # Before and during the incident: up to its resolve (a later deploy is not part of the story).
        changes=recent_changes(session, number, now=incident.resolved_at),
    )


def draft(facts: Facts) -> dict[str, str]:
    """The generated sections' Markdown bodies (the people-written ones are not in it)."""
    return {
        "summary": _summary(facts),
        "impact": _impact(facts),
        "timeline": _timeline(facts),
        "charts": _charts(facts),
    }


def _at(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _cell(text: str | None) -> str:
    """Text safe inside a Markdown table cell."""
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def _summary(f: Facts) -> str:
    i, fig = f.incident, f.figures
    step = f"{fig.highest_step} ({fig.highest_step_name})" if fig.highest_step else "—"
    lines = [
        f"{incident_ref(i.number)} [{i.severity}] {i.service}: {i.title}",
        "",
        f"- Opened: {_at(i.created_at)}",
        f"- Acknowledged: {_at(i.acknowledged_at)} by {i.acknowledged_by or '—'}",
        f"- Resolved: {_at(i.resolved_at)} by {i.resolved_by or '—'}",
        f"- Resolution: {i.resolution or '—'}",
        f"- Jira: {f.jira_key or '—'}",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| Time to acknowledge | {human(fig.time_to_acknowledge)} |",
        f"| Time to resolve | {human(fig.time_to_resolve)} |",
        f"| Pages sent | {fig.pages_sent} |",
        f"| People paged | {fig.people_paged} |",
        f"| Highest escalation step | {_cell(step)} |",
        f"| Reopened | {fig.reopen_count} |",
    ]
    return "\n".join(lines)


def _impact(f: Facts) -> str:
    if not f.alerts:
        return "No alerts are stored for this incident."
    lines = [f"{len(f.alerts)} alert(s), {sum(a.count for a in f.alerts)} notification(s) from the sources.", "",
             "| Alert | Status | First seen | Last seen | Count |", "|---|---|---|---|---|"]
    lines += [
        f"| {_cell(a.summary)} | {a.status} | {_at(a.first_seen)} | {_at(a.last_seen)} | {a.count} |"
        for a in f.alerts
    ]
    return "\n".join(lines)


def _timeline(f: Facts) -> str:
    lines = ["| Time | What | Who | Detail |", "|---|---|---|---|"]
    lines += [f"| {_at(e.at)} | {_cell(e.kind)} | {_cell(e.actor)} | {_cell(e.message)} |" for e in f.timeline]
    pages = [p for p in f.pages if p.status != "sending" and p.step != REMINDER_STEP]
    if pages:
        lines += ["", "Pages:", "", "| Time | Step | Channel | To | Status | Receipt |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {_at(p.started_at)} | {_cell(p.step)} | {p.channel} | {_cell(p.recipient or p.target)} | "
            f"{p.status}{_cell(': ' + p.error) if p.error else ''} | {p.receipt or '—'} |"
            for p in pages
        ]
    if f.changes:
        lines += ["", "Recent changes:", "", "| Time | Change | Source | Link |", "|---|---|---|---|"]
        lines += [f"| {_at(c.at)} | {_cell(c.summary)} | {_cell(c.source) or '—'} | {_change_link(c)} |"
                  for c in f.changes]
    return "\n".join(lines)


def _change_link(change: Change) -> str:
    """The change's first http(s) link as a Markdown autolink (clickable in HTML, readable in the PDF)."""
    for link in change.links:
        href = link.get("href") or ""
        if href.startswith(("http://", "https://")) and not any(c in href for c in " <>|\n"):
            return f"<{href}>"
    return "—"


def _charts(f: Facts) -> str:
    if not f.series:
        return "No metric evidence was gathered."
    lines = []
    for s in f.series:
        lines.append(f"- **{_cell(s.name)}** (`{s.promql}`, {s.source}, step {s.step_seconds}s)"
                     + (f": chart `{slug_of(s)}`" if s.chart_key else ""))
    gaps = sorted({s.error for s in f.series if s.error})
    if gaps:
        lines += ["", "Evidence gaps:", ""] + [f"- {g}" for g in gaps]
    return "\n".join(lines)


def slug_of(series: EvidenceSeries) -> str:
    """The chart's name in URLs and keys: the last part of its artifact key, without `.png`."""
    return series.chart_key.rsplit("/", 1)[1].removesuffix(".png") if series.chart_key else slug(series.name)


@dataclass(frozen=True)
class ActionItem:
    """One row of the action-items table; `key` is stable for the same action text (the Jira idempotency key)."""

    action: str
    owner: str
    due: date | None
    due_text: str
    key: str


def action_items(body: str) -> list[ActionItem]:
    """The rows of the section's first Markdown table that name an action, columns found by their headers."""
    rows: list[list[str]] = []
    in_table = False
    for token in MARKDOWN.parse(body):
        if token.type == "table_open":
            in_table = True
        elif token.type == "table_close":
            break
        elif in_table and token.type == "tr_open":
            rows.append([])
        elif in_table and token.type == "inline" and rows:
            rows[-1].append(" ".join(token.content.split()))
    if not rows:
        return []
    header = [h.casefold() for h in rows[0]]

    def column(*names: str, default: int) -> int:
        return next((i for i, h in enumerate(header) if any(n in h for n in names)), default)

    at_action, at_owner, at_due = column("action", "item", default=0), column("owner", default=1), column("due", default=2)
    items = []
    for row in rows[1:]:
        cell = lambda i: row[i] if i < len(row) else ""  # noqa: E731
        action = cell(at_action)
        if not action:
            continue
        due_text = cell(at_due)
        try:
            due = date.fromisoformat(due_text)
        except ValueError:
            due = None
        key = hashlib.sha256(action.casefold().encode()).hexdigest()[:12]
        items.append(ActionItem(action=action, owner=cell(at_owner), due=due, due_text=due_text, key=key))
    return items
