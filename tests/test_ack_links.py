"""Email acknowledge links: single use under concurrency (one unique insert), GET changes nothing, tokens
stay out of the access log, security headers on the pages. Real worker, SMTP, Temporal and uvicorn."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.main import create_app
from tests.conftest import Inbox, Keys, free_port
from tests.flows import handle_of, trigger
from tests.helpers import eventually
from tests.test_paging import ack_link
from vigil.bootstrap import ack_link_secret, create_integration
from vigil.models import AckLinkUse, Incident, Integration, utcnow
from vigil.providers.acklinks import make_token
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow


def uses(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(AckLinkUse)) or 0


async def test_concurrent_posts_of_one_link_acknowledge_once(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, dedup_key="ack-link-race")
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    path = ack_link(inbox, number)
    for _ in range(3):  # a scanner's pre-fetch, a preview, a reload: none of them uses the link
        page = await api.get(path)
        assert page.status_code == 200 and '<form method="post">' in page.text
    assert uses(sessions) == 0

    answers = await asyncio.gather(*(api.post(path) for _ in range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 5, [(a.status_code, a.text[:120]) for a in answers]
    assert "Acknowledged" in next(a for a in answers if a.status_code == 200).text
    assert uses(sessions) == 1
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert state.status == "acknowledged"


async def test_a_link_that_could_not_acknowledge_can_be_used_again(
    api: httpx.AsyncClient, sessions: sessionmaker[Session], settings: Settings,
) -> None:
    """The nonce is given back when the acknowledgement did not happen (here: the incident has no workflow)."""
    with sessions.begin() as session:
        create_integration(session, name="i")
        session.flush()
        session.add(Incident(number=980001, group_key="g", integration_id=session.scalar(select(Integration.id)),
                             service="s", severity="critical", title="t", status="triggered"))
    token = make_token(ack_link_secret(settings), number=980001, recipient="oncall@localhost",
                       expires_at=utcnow().replace(year=utcnow().year + 1), nonce="n-retry")
    first = await api.post(f"/ack/{token}")
    assert first.status_code == 503 and "Not acknowledged" in first.text, first.text
    assert uses(sessions) == 0
    assert (await api.post(f"/ack/{token}")).status_code == 503  # not 409: the link was not used up


async def test_ack_pages_carry_security_headers(api: httpx.AsyncClient, settings: Settings) -> None:
    for token in ("not-a-token", make_token(ack_link_secret(settings), number=1, recipient="a@x",
                                            expires_at=utcnow().replace(year=utcnow().year + 1), nonce="h")):
        page = await api.get(f"/ack/{token}")
        h = page.headers
        assert h["content-type"].startswith("text/html")
        assert "default-src 'none'" in h["content-security-policy"] and "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"  # the token is in the URL
        assert h["cache-control"] == "no-store"


async def test_tokens_are_redacted_in_the_access_log(
    settings: Settings, client: Client, caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_token(ack_link_secret(settings), number=1, recipient="a@x",
                       expires_at=utcnow().replace(year=utcnow().year + 1), nonce="log")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, client), host="127.0.0.1", port=port,
                                           log_config=None, access_log=True, lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            async with httpx.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{port}/ack/{token}?x=1")
            await eventually(lambda: any("/ack/" in r.getMessage() for r in caplog.records))
    finally:
        server.should_exit = True
        await task
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("GET /ack/<redacted>?x=1" in line for line in lines), lines
    assert token not in caplog.text and token.split(".")[0] not in caplog.text
