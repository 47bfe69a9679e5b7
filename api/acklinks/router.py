"""GET/POST /ack/{token}: the one-click acknowledge link of an incident email.

GET only shows a confirmation page, so mail scanners that pre-fetch links cannot acknowledge; the page's
button POSTs. A link is signed, expires, and acknowledges once (its nonce is stored when used).
"""

from __future__ import annotations

import asyncio
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import IntegrityError

from api.deps import StateDep, TemporalDep
from api.errors import ApiError
from api.providers import service
from vigil.bootstrap import ack_link_secret
from vigil.models import AckLinkUse, Incident, utcnow
from vigil.providers.acklinks import AckClaim, ExpiredToken, InvalidToken, read_token

router = APIRouter(prefix="/ack", tags=["acknowledge links"])
PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">{body}</body></html>"""


def _page(status: int, title: str, body: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status)


def _claim(state, token: str) -> AckClaim | HTMLResponse:  # noqa: ANN001
    try:
        return read_token(ack_link_secret(state.settings), token, now=utcnow())
    except ExpiredToken:
        return _page(410, "Link expired", "<h1>This acknowledge link has expired</h1>"
                     "<p>Acknowledge from the Vigil API or the newest page instead.</p>")
    except InvalidToken:
        return _page(400, "Invalid link", "<h1>This acknowledge link is not valid</h1>")


def _used(state, claim: AckClaim) -> bool:  # noqa: ANN001
    with state.sessions() as session:
        return session.get(AckLinkUse, claim.nonce) is not None


def _title(state, number: int) -> str:  # noqa: ANN001
    with state.sessions() as session:
        row = session.get(Incident, number)
        return f"INC-{number}: {row.title}" if row else f"INC-{number}"


@router.get("/{token}", response_class=HTMLResponse, summary="Confirmation page of an email acknowledge link")
async def confirm_page(token: str, state: StateDep) -> HTMLResponse:
    """Shows what the link acknowledges and a button; it changes nothing."""
    claim = _claim(state, token)
    if isinstance(claim, HTMLResponse):
        return claim
    if await asyncio.to_thread(_used, state, claim):
        return _page(409, "Link already used", "<h1>This acknowledge link was already used</h1>")
    title = escape(await asyncio.to_thread(_title, state, claim.number))
    return _page(200, f"Acknowledge INC-{claim.number}?", (
        f"<h1>Acknowledge {title}?</h1><p>This stops the escalation for everyone.</p>"
        f'<form method="post"><button type="submit" style="font-size: 1.3em">Acknowledge</button></form>'
    ))


@router.post("/{token}", response_class=HTMLResponse, summary="Acknowledge through an email link")
async def acknowledge(token: str, state: StateDep, client: TemporalDep) -> HTMLResponse:
    """Acknowledges once; when this page says so, no further page will start."""
    claim = _claim(state, token)
    if isinstance(claim, HTMLResponse):
        return claim
    if await asyncio.to_thread(_used, state, claim):
        return _page(409, "Link already used", "<h1>This acknowledge link was already used</h1>")
    try:
        result = await service.acknowledge(state, client, claim.number, claim.recipient, via="email link")
    except ApiError as err:
        return _page(err.status, "Not acknowledged", f"<h1>Not acknowledged</h1><p>{escape(err.message)}</p>")
    # Marked used only once it worked: a link that met a Temporal outage can be tried again.
    await asyncio.to_thread(_mark_used, state, claim)
    title = escape(await asyncio.to_thread(_title, state, claim.number))
    if result.status != "acknowledged":
        return _page(200, "Already handled", f"<h1>{title}</h1><p>{escape(result.detail)}</p>")
    return _page(200, "Acknowledged", f"<h1>Acknowledged {title}</h1><p>Escalation stopped {escape(result.detail)}.</p>")


def _mark_used(state, claim: AckClaim) -> None:  # noqa: ANN001
    try:
        with state.sessions.begin() as session:
            session.add(AckLinkUse(nonce=claim.nonce, incident_number=claim.number, recipient=claim.recipient,
                                   used_at=utcnow()))
    except IntegrityError:
        pass  # a double click: both acknowledged the same incident once
