"""GET/POST /ack/{token}: the one-click acknowledge link of an incident email.

GET only shows a confirmation page (it writes nothing), so mail scanners that pre-fetch links cannot
acknowledge; the page's button POSTs. A link is signed, expires, and acknowledges once: a POST claims its nonce
with one unique insert before acknowledging, so of two concurrent POSTs exactly one acts. Tokens are redacted
from the access log, and the pages carry security headers (no referrer: the token is in the URL).
"""

from __future__ import annotations

import asyncio
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from secure import (
    CacheControl,
    ContentSecurityPolicy,
    CrossOriginOpenerPolicy,
    CrossOriginResourcePolicy,
    ReferrerPolicy,
    Secure,
    StrictTransportSecurity,
    XContentTypeOptions,
    XFrameOptions,
)
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from api.deps import IncidentsDep, StateDep
from api.errors import domain_error
from api.providers import service
from api.access_log import redact_tokens_after
from client.errors import IncidentError
from vigil.bootstrap import ack_link_secret
from vigil.contracts import incident_ref
from vigil.models import AckLinkUse, Incident, utcnow
from vigil.providers.acklinks import AckClaim, ExpiredToken, InvalidToken, read_token

router = APIRouter(prefix="/ack", tags=["acknowledge links"])
PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">{body}</body></html>"""


SECURITY_HEADERS = Secure(
    csp=ContentSecurityPolicy().default_src("'none'").style_src("'unsafe-inline'").form_action("'self'")
    .frame_ancestors("'none'").base_uri("'none'"),
    hsts=StrictTransportSecurity().max_age(31536000),
    referrer=ReferrerPolicy().no_referrer(),
    xcto=XContentTypeOptions().nosniff(),
    xfo=XFrameOptions().deny(),
    cache=CacheControl().no_store(),
    coop=CrossOriginOpenerPolicy().same_origin(),
    corp=CrossOriginResourcePolicy().same_origin(),
)


redact_tokens_after("/ack/")


def _page(status: int, title: str, body: str) -> HTMLResponse:
    response = HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status)
    SECURITY_HEADERS.set_headers(response)
    return response


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
        return f"{incident_ref(number)}: {row.title}" if row else incident_ref(number)


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}


def _html(description: str) -> dict:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


PAGES: dict[int | str, dict] = {
    400: _html("The link is not valid (a page saying so)"),
    409: _html("The link was already used, or the incident cannot be acknowledged now"),
    410: _html("The link has expired"),
}


@router.get("/{token}", response_class=HTMLResponse, summary="Confirmation page of an email acknowledge link",
            responses=PAGES)
async def confirm_page(token: str, state: StateDep) -> HTMLResponse:
    """Shows what the link acknowledges and a button; it changes nothing."""
    claim = _claim(state, token)
    if isinstance(claim, HTMLResponse):
        return claim
    if await asyncio.to_thread(_used, state, claim):
        return _page(409, "Link already used", "<h1>This acknowledge link was already used</h1>")
    title = escape(await asyncio.to_thread(_title, state, claim.number))
    return _page(200, f"Acknowledge {incident_ref(claim.number)}?", (
        f"<h1>Acknowledge {title}?</h1><p>This stops the escalation for everyone.</p>"
        f'<form method="post"><button type="submit" style="font-size: 1.3em">Acknowledge</button></form>'
    ))


@router.post(
    "/{token}", response_class=HTMLResponse, summary="Acknowledge through an email link",
    responses={**PAGES, 404: _html("The incident no longer exists"),
               503: {"description": "Temporal or the database is unavailable; try the link again", "content": {
                   "text/html": {"schema": {"type": "string"}}, "application/json": {"schema": ERROR_SCHEMA}}}},
)
async def acknowledge(token: str, state: StateDep, incidents: IncidentsDep) -> HTMLResponse:
    """Acknowledges once; when this page says so, no further page will start."""
    claim = _claim(state, token)
    if isinstance(claim, HTMLResponse):
        return claim
    if not await asyncio.to_thread(_take, state, claim):
        return _page(409, "Link already used", "<h1>This acknowledge link was already used</h1>")
    acted = False
    try:
        # After the token (the client connects on its first call): a bad link is a 400 page even with Temporal down.
        result = await service.acknowledge(state.sessions, incidents, claim.number, claim.recipient, via="email link")
        acted = True
    except IncidentError as err:  # not found, or not started yet: refusals come back as `result`
        page = domain_error(err)
        return _page(page.status, "Not acknowledged", f"<h1>Not acknowledged</h1><p>{escape(page.message)}</p>")
    finally:
        if not acted:
            # Given back: a link that met a Temporal outage (or a crash here) can be tried again.
            await asyncio.to_thread(_give_back, state, claim)
    title = escape(await asyncio.to_thread(_title, state, claim.number))
    if result.status != "acknowledged":
        return _page(200, "Already handled", f"<h1>{title}</h1><p>{escape(result.detail)}</p>")
    return _page(200, "Acknowledged", f"<h1>Acknowledged {title}</h1><p>Escalation stopped {escape(result.detail)}.</p>")


def _take(state, claim: AckClaim) -> bool:  # noqa: ANN001
    """Claim the link's nonce: the primary key lets exactly one of concurrent POSTs insert it."""
    try:
        with state.sessions.begin() as session:
            session.add(AckLinkUse(nonce=claim.nonce, incident_number=claim.number, recipient=claim.recipient,
                                   used_at=utcnow()))
    except IntegrityError:
        return False
    return True


def _give_back(state, claim: AckClaim) -> None:  # noqa: ANN001
    with state.sessions.begin() as session:
        session.execute(delete(AckLinkUse).where(AckLinkUse.nonce == claim.nonce))
