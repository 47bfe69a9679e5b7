"""GET /view/{token}: the read-only incident page the email's "Incident:" link opens in a browser.

A browser has no API key, so the link is signed for its recipient (vigil/viewlinks.py, the ack links' signing
with its own key) and expires. The page shows what the JSON shows a viewer, as HTML; it changes nothing, and
acknowledging stays with the email's single-use ack link. Tokens are redacted from the access log.
"""

from __future__ import annotations

import asyncio
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from api.acklinks.router import PAGE, SECURITY_HEADERS
from api.deps import StateDep
from api.errors import ApiError
from api.incidents import service
from api.incidents.schemas import IncidentDetail
from api.access_log import redact_tokens_after
from vigil.alert_context import AlertContext, context_of
from vigil.bootstrap import ack_link_secret
from vigil.contracts import incident_ref
from vigil.models import AlertRow, utcnow
from vigil.providers.acklinks import ExpiredToken, InvalidToken
from vigil.viewlinks import read_view_token

router = APIRouter(prefix="/view", tags=["incident page"])
TIMELINE_SHOWN = 200


redact_tokens_after("/view/")


def _html(description: str) -> dict:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


@router.get(
    "/{token}", response_class=HTMLResponse, summary="Read-only incident page of an email's Incident link",
    responses={400: _html("The link is not valid"), 404: _html("The incident no longer exists"),
               410: _html("The link has expired")},
)
async def incident_page(token: str, state: StateDep) -> HTMLResponse:
    """The incident as of the projection: status, who, alerts with their context, timeline."""
    try:
        claim = read_view_token(ack_link_secret(state.settings), token, now=utcnow())
    except ExpiredToken:
        return _page(410, "Link expired", "<h1>This incident link has expired</h1>"
                     "<p>Open the incident from the newest page or the Vigil API instead.</p>")
    except InvalidToken:
        return _page(400, "Invalid link", "<h1>This incident link is not valid</h1>")
    try:
        incident, contexts = await asyncio.to_thread(_read, state, claim.number)
    except ApiError:
        return _page(404, "Not found", f"<h1>{incident_ref(claim.number)} no longer exists</h1>")
    return _page(200, f"{incident.id}: {incident.title}", _body(incident, contexts))


def _page(status: int, title: str, body: str) -> HTMLResponse:
    response = HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status)
    SECURITY_HEADERS.set_headers(response)
    return response


def _read(state, number: int) -> tuple[IncidentDetail, dict[str, AlertContext]]:  # noqa: ANN001
    with state.sessions() as session:
        incident = service.detail(session=session, settings=state.settings, number=number)
        rows = session.scalars(select(AlertRow).where(AlertRow.incident_number == number))
        return incident, {row.fingerprint: context_of(row) for row in rows}


def _body(i: IncidentDetail, contexts: dict[str, AlertContext]) -> str:
    e = escape
    facts = [
        ("Status", i.status.value), ("Severity", i.severity.value), ("Service", i.service),
        ("Opened", i.created_at.isoformat(timespec="seconds")),
        ("Acknowledged", f"{_at(i.acknowledged_at)} by {i.acknowledged_by_name}" if i.acknowledged_at else None),
        ("Assignee", i.assignee),
        ("Resolved", f"{_at(i.resolved_at)} by {i.resolved_by_name}: {i.resolution}" if i.resolved_at else None),
        ("Jira", i.jira_key),
    ]
    rows = "".join(f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts if v)
    alerts = "".join(_alert(a.fingerprint, a.status, a.summary, contexts.get(a.fingerprint)) for a in i.alerts)
    timeline = "".join(
        f"<li><small>{_at(t.at)}</small> <b>{e(t.kind)}</b> {e(t.actor_name)}: {e(t.message)}</li>"
        for t in i.timeline[-TIMELINE_SHOWN:]
    )
    return (
        f"<h1>{e(i.id)} <small>[{e(i.severity.value)}]</small> {e(i.service)}: {e(i.title)}</h1>"
        f"<table>{rows}</table><h2>Alerts</h2><ul>{alerts or '<li>(none)</li>'}</ul>"
        f"<h2>Timeline</h2><ol>{timeline}</ol>"
        f'<p><a href="{e(i.temporal_url)}">Temporal UI</a></p>'
    )


def _alert(fingerprint: str, status: str, summary: str, context: AlertContext | None) -> str:
    e = escape
    out = f"<li><b>{e(status)}</b> {e(summary)}"
    if context is not None:
        links = context.shown_links() + [(f"Image: {alt}", href) for alt, href in context.shown_images()]
        if links:
            out += "<br>" + " · ".join(f'<a href="{e(href)}" rel="noreferrer">{e(text)}</a>' for text, href in links)
        if description := context.shown_description():
            out += f"<br>{e(description)}"
        if details := context.shown_details():
            out += "<br><small>" + "; ".join(f"<b>{e(k)}</b>: {e(v)}" for k, v in details) + "</small>"
    return out + "</li>"


def _at(value) -> str:  # noqa: ANN001
    return value.isoformat(timespec="seconds") if value else ""
