"""No page starts after an acknowledge has returned, through every way of acknowledging: an SMS reply, an IVR
keypress and the email link race pages that are mid-send at the provider. The ack's answer (the callback's
200, the link's confirmation page) must wait until those sends have settled, and nothing starts afterwards."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Inbox, Keys
from tests.flows import admin, attempts, handle_of, trigger
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow

CALLBACKS = "/api/v1/providers/middleware/callbacks"
ALICE = "+15550000001"


@pytest.fixture
def settings(settings: Settings, provider: ProviderServer) -> Settings:
    return settings.model_copy(update={"providers": provider.provider_settings()})


async def page_alice_everywhere(api: httpx.AsyncClient, keys: Keys) -> None:
    """One step: alice by email, SMS and a call, all at once; every `checkout` incident uses it."""
    alice = await admin(api, keys, "users", {
        "name": "alice", "email": "alice@example.com", "phone": ALICE, "timezone": "UTC",
    })
    policy = await admin(api, keys, "escalation-policies", {
        "name": "everywhere",
        "steps": [{"name": "page alice", "channels": ["email", "sms", "ivr"],
                   "targets": [{"kind": "user", "id": alice["id"]}], "wait_seconds": 300}],
        "repeat": 2,
    })
    await admin(api, keys, "escalation-routes", [{"service": "checkout", "policy_id": policy["id"]}], method="PUT")


async def ack_by_sms(api, provider, number, inbox) -> httpx.Response:  # noqa: ANN001
    return await provider.callback(CALLBACKS, {
        "event_id": f"reply-{number}", "type": "sms_reply", "message_id": "mo-1", "from": ALICE,
        "text": f"ACK {number}",
    }, client=api)


async def ack_by_keypress(api, provider, number, inbox) -> httpx.Response:  # noqa: ANN001
    [call] = [s for s in provider.sent if s.channel == "ivr"]
    return await provider.callback(CALLBACKS, {
        "event_id": f"press-{number}", "type": "ivr_keypress", "message_id": call.message_id,
        "idempotency_key": call.key, "digits": "1",
    }, client=api)


async def ack_by_email_link(api, provider, number, inbox) -> httpx.Response:  # noqa: ANN001
    [mail] = inbox.for_incident(number)
    link = re.search(r"Acknowledge:\s+(\S+)", mail.get_body(preferencelist=("plain",)).get_content())
    assert link
    return await api.post(link.group(1).removeprefix("http://127.0.0.1:8000"))


@pytest.mark.parametrize("ack", [ack_by_sms, ack_by_keypress, ack_by_email_link], ids=["sms", "ivr", "email"])
async def test_ack_waits_for_pages_in_flight_and_nothing_starts_after(
    ack, api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,  # noqa: ANN001
    provider: ProviderServer, inbox: Inbox, sessions: sessionmaker[Session],
) -> None:
    await page_alice_everywhere(api, keys)
    provider.hold()  # the SMS and the call reach the middleware, which answers only when released
    number = await trigger(api, keys, dedup_key=f"race-{ack.__name__}")
    handle = handle_of(client, number)
    await eventually(lambda: provider.in_flight == 2 and len(inbox.for_incident(number)) == 1)

    acking = asyncio.create_task(ack(api, provider, number, inbox))

    async def accepted() -> bool:
        return (await handle.query(IncidentWorkflow.state)).status == "acknowledged"

    await eventually(accepted)
    # The workflow has accepted the ack; its answer must still wait for the held sends. A wrong answer would
    # come within milliseconds, so a 2-second window observes it (the sends stay held throughout).
    done, _ = await asyncio.wait({acking}, timeout=2)
    assert not done, "the ack answered while pages were still being sent"
    assert provider.in_flight == 2
    provider.release()
    resp = await acking
    assert resp.status_code == 200, resp.text
    assert provider.in_flight == 0  # both sends had settled before the ack answered
    answered = len(provider.requests)

    # Well past the next round (+5 min), short of the ack timeout (+30 min): nothing more goes out.
    await skipper.fast_forward(handle, timedelta(minutes=20))
    assert len(provider.requests) == answered
    assert len(inbox.for_incident(number)) == 1
    assert {a.status for a in attempts(sessions, number)} == {"sent"}
    assert (await handle.query(IncidentWorkflow.state)).status == "acknowledged"
