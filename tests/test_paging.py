"""Confirmed delivery over the operator's SMS/IVR middleware: receipts, IVR retries, and acknowledging by SMS
reply, IVR keypress and email link. A real provider server (tests/provider_server.py) receives the pages and
verifies signatures and idempotency keys; real SMTP receives the emails."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Inbox, Keys
from tests.flows import activity_summaries, attempts, current_details, handle_of, trigger
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from vigil.bootstrap import ack_link_secret
from vigil.models import NotificationAttempt, utcnow
from vigil.providers.acklinks import make_token
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow

STEP = timedelta(minutes=5, seconds=1)
PHONE = "+15550100100"  # the default ladder's on-call phone
CALLBACKS = "/api/v1/providers/middleware/callbacks"


@pytest.fixture
def settings(settings: Settings, provider: ProviderServer) -> Settings:
    """The suite's settings with SMS and IVR going to the test middleware."""
    return settings.model_copy(update={"providers": provider.provider_settings()})


async def status_of(client: Client, number: int) -> str:
    return (await handle_of(client, number).query(IncidentWorkflow.state)).status.value


def sent(provider: ProviderServer, channel: str) -> list:
    return [s for s in provider.sent if s.channel == channel]


async def at_sms(api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper,
                 provider: ProviderServer, sessions: sessionmaker[Session], dedup: str) -> int:
    """Trigger, let the email go, skip to the SMS rung; the SMS has reached the middleware."""
    number = await trigger(api, keys, dedup_key=dedup)
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    await skipper.fast_forward(handle_of(client, number), STEP)
    await eventually(lambda: len(sent(provider, "sms")) == 1)
    return number


async def test_sms_reaches_the_middleware_signed_and_a_failed_receipt_escalates_at_once(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    number = await at_sms(api, keys, client, skipper, provider, sessions, "receipt-1")
    [sms] = sent(provider, "sms")
    assert sms.to == PHONE and sms.key == f"INC-{number}/r0s1/sms/{PHONE}"
    assert f"Reply ACK {number}" in sms.text
    assert sms.body["callback_url"].endswith(CALLBACKS)

    # The handset never got it: the call follows now, not after the 5-minute wait (no time is skipped here).
    resp = await provider.callback(CALLBACKS, {
        "event_id": "ev-1", "type": "failed", "message_id": sms.message_id, "error": "unreachable",
    }, client=api)
    assert resp.status_code == 200 and resp.json()["status"] == "applied", resp.text
    await eventually(lambda: len(sent(provider, "ivr")) == 1)
    assert sent(provider, "ivr")[0].body["ack_digit"] == "1"
    # The Temporal UI names each page's channel and masked target; the details show the next rung and when.
    summaries = await activity_summaries(handle_of(client, number))
    assert {"email → oncal@…", "sms → +1555…100", "ivr → +1555…100 (call 1/3)"} <= set(summaries), summaries
    details = await current_details(handle_of(client, number))
    assert "**Next step:** email manager (manager) at 20" in details, details

    # The receipt is on the notification log; a redelivered callback does nothing twice.
    again = await provider.callback(CALLBACKS, {
        "event_id": "ev-1", "type": "failed", "message_id": sms.message_id, "error": "unreachable",
    }, client=api)
    assert again.json()["status"] == "duplicate"
    log = (await api.get(f"/api/v1/incidents/INC-{number}/notifications", headers=keys.auth(keys.viewer))).json()
    sms_row = next(n for n in log["items"] if n["channel"] == "sms")
    assert (sms_row["receipt"], sms_row["receipt_error"], sms_row["provider_message_id"]) == (
        "failed", "unreachable", sms.message_id,
    )
    assert sms_row["latency_ms"] is not None and sms_row["idempotency_key"] == sms.key


async def test_unanswered_call_is_retried_then_the_ladder_moves_on(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session], inbox: Inbox,
) -> None:
    """Grafana OnCall #2622: an unanswered call is placed again N times, M minutes apart (default 3, 2 min)."""
    number = await at_sms(api, keys, client, skipper, provider, sessions, "ivr-retry")
    handle = handle_of(client, number)
    await skipper.fast_forward(handle, STEP)
    await eventually(lambda: len(sent(provider, "ivr")) == 1)
    for call in (1, 2, 3):
        placed = sent(provider, "ivr")[call - 1]
        resp = await provider.callback(CALLBACKS, {
            "event_id": f"no-answer-{call}", "type": "ivr_no_answer", "message_id": placed.message_id,
        }, client=api)
        assert resp.json()["status"] == "applied"
        if call < 3:
            await skipper.fast_forward(handle, timedelta(minutes=2, seconds=1))
            await eventually(lambda call=call: len(sent(provider, "ivr")) == call + 1)
    base = f"INC-{number}/r0s2/ivr/{PHONE}"
    assert [s.key for s in sent(provider, "ivr")] == [base, f"{base}/call2", f"{base}/call3"]
    # Nobody picked up three times: the manager is emailed at once, without waiting out the step.
    await eventually(lambda: [m["To"] for m in inbox.for_incident(number)] == ["oncall@localhost", "manager@localhost"])
    assert await status_of(client, number) == "triggered"


async def test_sms_reply_acknowledges_only_from_a_paged_phone(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    number = await at_sms(api, keys, client, skipper, provider, sessions, "sms-ack")
    stranger = await provider.callback(CALLBACKS, {
        "event_id": "r-1", "type": "sms_reply", "message_id": "in-1", "from": "+15559999999", "text": f"ACK {number}",
    }, client=api)
    assert stranger.json()["status"] == "ignored"
    assert await status_of(client, number) == "triggered"

    reply = await provider.callback(CALLBACKS, {
        "event_id": "r-2", "type": "sms_reply", "message_id": "in-2", "from": PHONE, "text": f" ack {number} ",
    }, client=api)
    assert reply.json() == {"status": "acknowledged", "incident": f"INC-{number}", "detail": reply.json()["detail"]}
    assert await status_of(client, number) == "acknowledged"
    await skipper.fast_forward(handle_of(client, number), timedelta(minutes=20))
    assert len(provider.sent) == 1  # no call followed the ack


async def test_ivr_keypress_one_acknowledges(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    number = await at_sms(api, keys, client, skipper, provider, sessions, "ivr-ack")
    await skipper.fast_forward(handle_of(client, number), STEP)
    await eventually(lambda: len(sent(provider, "ivr")) == 1)
    call = sent(provider, "ivr")[0]
    other = await provider.callback(CALLBACKS, {
        "event_id": "k-1", "type": "ivr_keypress", "message_id": call.message_id, "digits": "2",
    }, client=api)
    assert other.json()["status"] == "ignored"
    press = await provider.callback(CALLBACKS, {
        "event_id": "k-2", "type": "ivr_keypress", "message_id": call.message_id, "digits": "1",
    }, client=api)
    assert press.json()["status"] == "acknowledged", press.text
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert state.status == "acknowledged" and "IVR keypress" in (state.acknowledged_by or "")


async def test_callbacks_must_be_signed(api: httpx.AsyncClient, provider: ProviderServer) -> None:
    event = {"event_id": "x", "type": "delivered", "message_id": "m"}
    forged = await provider.callback(CALLBACKS, event, client=api, secret=b"not-the-secret")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
    stale = await provider.callback(CALLBACKS, event, client=api, timestamp=1)
    assert stale.status_code == 401
    unknown = await provider.callback("/api/v1/providers/other/callbacks", event, client=api)
    assert unknown.status_code == 404
    bad = await provider.callback(CALLBACKS, {"event_id": "x", "type": "nope", "message_id": "m"}, client=api)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "type"


def ack_link(inbox: Inbox, number: int) -> str:
    [mail] = inbox.for_incident(number)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    url = re.search(r"Acknowledge:\s+(\S+)", text)
    assert url, text
    return url.group(1).removeprefix("http://127.0.0.1:8000")


async def test_email_link_confirms_on_get_acknowledges_on_post_and_works_once(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox,
    sessions: sessionmaker[Session], settings: Settings,
) -> None:
    number = await trigger(api, keys, dedup_key="email-link")
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    path = ack_link(inbox, number)
    assert path.startswith("/ack/")

    page = await api.get(path)  # what a mail scanner's pre-fetch does
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert await status_of(client, number) == "triggered"

    done = await api.post(path)
    assert done.status_code == 200 and "Acknowledged" in done.text, done.text
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert state.status == "acknowledged" and state.acknowledged_by == "user:oncal@… (email link)"
    assert (await api.post(path)).status_code == 409  # single use
    assert (await api.get(path)).status_code == 409

    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert (await api.post(tampered)).status_code == 400
    expired = make_token(ack_link_secret(settings), number=number, recipient="oncall@localhost",
                         expires_at=utcnow() - timedelta(seconds=1), nonce="old")
    assert (await api.post(f"/ack/{expired}")).status_code == 410


async def test_ack_times_out_and_retriggers_and_snooze_defers_it(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    inbox: Inbox,
) -> None:
    number = await trigger(api, keys, dedup_key="ack-timeout")
    handle = handle_of(client, number)
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    headers = keys.auth(keys.responder)
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=headers)).status_code == 200

    # Snooze for an hour: the 30-minute ack timeout no longer applies.
    snoozed = await api.post(f"/api/v1/incidents/INC-{number}/snooze", headers=headers, json={"minutes": 60})
    assert snoozed.status_code == 200, snoozed.text
    await skipper.fast_forward(handle, timedelta(minutes=45))
    assert await status_of(client, number) == "acknowledged"
    await skipper.fast_forward(handle, timedelta(minutes=16))
    await eventually(lambda: status_of(client, number), timeout=10)
    assert await status_of(client, number) == "triggered"
    # A new round pages from the first step again.
    await eventually(lambda: len(inbox.for_incident(number)) == 2)
    keys_sent = [m["X-Vigil-Idempotency-Key"] for m in inbox.for_incident(number)]
    assert keys_sent == [f"INC-{number}/r0s0/email/oncall@localhost", f"INC-{number}/r1s0/email/oncall@localhost"]

    # Acknowledged again and left alone: the policy's ack timeout (30 min) re-triggers it.
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=headers)).status_code == 200
    await skipper.fast_forward(handle, timedelta(minutes=29))
    assert await status_of(client, number) == "acknowledged"
    await skipper.fast_forward(handle, timedelta(minutes=2))
    await eventually(lambda: len(inbox.for_incident(number)) == 3)
    assert await status_of(client, number) == "triggered"

    refused = await api.post(f"/api/v1/incidents/INC-{number}/snooze", headers=headers, json={"minutes": 5})
    assert refused.status_code == 409 and refused.json()["error"]["details"]["current_status"] == "triggered"


async def test_failed_notifications_are_listed(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    """A permanent refusal (4xx) is not retried; it shows in GET /api/v1/notifications?status=failed."""
    number = await trigger(api, keys, dedup_key="refused")
    await eventually(lambda: len(attempts(sessions, number)) == 1)
    provider.fail_next(1, 400, body='{"error": "invalid number"}')
    await skipper.fast_forward(handle_of(client, number), STEP)
    failed = await eventually(lambda: [a for a in attempts(sessions, number) if a.status == "failed"])
    assert "HTTP 400" in (failed[0].error or "")
    listed = (await api.get("/api/v1/notifications?status=failed", headers=keys.auth(keys.viewer))).json()
    assert [n["incident"] for n in listed["items"]] == [f"INC-{number}"] and listed["total"] == 1
    # Refused for good: the ladder escalates to the call at once, and the SMS is not tried again.
    await eventually(lambda: len(sent(provider, "ivr")) == 1)
    assert sent(provider, "sms") == [] and provider.key_counts()[f"INC-{number}/r0s1/sms/{PHONE}"] == 1


async def test_a_callback_that_arrives_before_its_send_is_recorded_is_retried_not_lost(
    api: httpx.AsyncClient, worker: None, keys: Keys, provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    """A fast provider can call back before the worker has recorded the message id it answered; "ignored"
    would drop a receipt (or an unanswered call's retry). While a send is in flight it is a 503 to retry."""
    number = await trigger(api, keys, dedup_key="early-callback")
    with sessions.begin() as session:  # the SMS is at the provider; its answer is not recorded yet
        row = NotificationAttempt(
            incident_number=number, idempotency_key=f"INC-{number}/r0s1/sms/{PHONE}", attempt=1, step="sms on-call",
            channel="sms", target=PHONE, provider="middleware", status="sending", started_at=utcnow(),
        )
        session.add(row)
        session.flush()
        row_id = row.id
    receipt = {"event_id": "early-1", "type": "delivered", "message_id": "msg-early"}
    early = await provider.callback(CALLBACKS, receipt, client=api)
    assert early.status_code == 503 and early.headers["Retry-After"] == "2", early.text
    with sessions.begin() as session:  # the worker records what the provider answered
        recorded = session.get_one(NotificationAttempt, row_id)
        recorded.status, recorded.provider_message_id = "sent", "msg-early"
    retried = await provider.callback(CALLBACKS, receipt, client=api)
    assert retried.status_code == 200 and retried.json()["status"] == "applied", retried.text
    # Nothing in flight: an unknown message is ignored with a 200, which the provider must not retry.
    unknown = await provider.callback(CALLBACKS, {"event_id": "unknown-1", "type": "delivered", "message_id": "nope"},
                                      client=api)
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"
