"""POST /api/v1/webhooks/jira: what people do in Jira comes back to the incident.

The body is verified against `X-Hub-Signature: sha256=<HMAC of the raw body>` (constant-time). A status
change maps to acknowledge, resolve or reopen (VIGIL_JIRA_STATUSES); an assignee change and a new comment
reach the incident's timeline. Vigil's own changes coming back (echoes) and redelivered events are
ignored. Whatever cannot be applied is logged and answered 202, never a 500: Jira retries only failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import IncidentsDep, StateDep
from api.errors import ERROR_RESPONSES, ApiError
from api.metrics import counted
from client.errors import IncidentNotFound, TransitionRefused
from client.incidents import IncidentClient
from vigil.contracts import (
    AcknowledgeInput,
    Actor,
    ActorKind,
    AssignInput,
    NoteInput,
    ReopenInput,
    ResolveInput,
    incident_ref,
)
from vigil.logging import get_logger
from vigil.models import JiraIssue, JiraSyncEntry, utcnow

router = APIRouter(prefix="/api/v1/webhooks", tags=["jira"])
log = get_logger(__name__)


class WebhookResult(BaseModel):
    status: str  # applied | ignored | duplicate
    incident: str | None = None
    detail: str = ""


@router.post(
    "/jira", status_code=202, response_model=WebhookResult,
    responses={k: ERROR_RESPONSES[k] for k in (401, 404, 422, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def jira_webhook(request: Request, state: StateDep, incidents: IncidentsDep) -> WebhookResult:
    """A Jira webhook (`jira:issue_updated`, `comment_created`); 401 unless signed with the webhook secret."""
    j = state.settings.jira
    if not j.enabled or j.webhook_secret is None:
        raise ApiError(404, "not_found", "Jira webhooks are not configured (VIGIL_JIRA_URL, VIGIL_JIRA_WEBHOOK_SECRET)")
    body = await request.body()
    expected = "sha256=" + hmac.new(j.webhook_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("X-Hub-Signature", "").encode(), expected.encode()):
        raise ApiError(401, "invalid_signature", "X-Hub-Signature does not match the body")
    try:
        event = json.loads(body)
        key = event["issue"]["key"]
        kind = event["webhookEvent"]
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(422, "validation_error", f"not a Jira issue webhook: {err}") from err
    # The identifier is not signed: a captured delivery resent under a new one is recognised by its body, which
    # is (Jira stamps each event with its time, so two real events never share a body).
    body_hash = hashlib.sha256(body).hexdigest()
    delivery = request.headers.get("X-Atlassian-Webhook-Identifier") or body_hash
    started = time.monotonic()
    number = await asyncio.to_thread(_incident_of, state, key)
    if number is None:
        result = WebhookResult(status="ignored", detail=f"{key} is not an incident's issue")
    elif await asyncio.to_thread(_seen, state, delivery, body_hash):
        return WebhookResult(status="duplicate", incident=incident_ref(number), detail="this delivery was applied already")
    else:
        # Temporal only once the signature is checked (the client connects on its first call): an unsigned
        # request is a 401 even while Temporal is down.
        result = await _apply(state, incidents, number, kind, event)
    await asyncio.to_thread(_log, state, number, key, kind, result, delivery, body_hash, started)
    log.info("jira webhook", jira_key=key, webhook_event=kind, outcome=result.status, detail=result.detail,
             incident=result.incident)
    return result


async def _apply(state, incidents: IncidentClient, number: int, kind: str, event: dict[str, Any]) -> WebhookResult:  # noqa: ANN001
    """Apply one event; refusals (already resolved, out of order) are ignored, not errors."""
    inc = incident_ref(number)
    who = event.get("user") or (event.get("comment") or {}).get("author") or {}
    if await asyncio.to_thread(_is_echo, state, who, event):
        return WebhookResult(status="ignored", incident=inc, detail="Vigil's own change coming back")
    actor = Actor(kind=ActorKind.jira, name=who.get("displayName") or who.get("accountId") or "someone in Jira")
    if kind == "comment_created":
        text = str((event.get("comment") or {}).get("body") or "").strip()
        if not text:
            return WebhookResult(status="ignored", incident=inc, detail="empty comment")
        return await _update(number, "note", incidents.note(number, NoteInput(actor=actor, body=text)))
    if kind != "jira:issue_updated":
        return WebhookResult(status="ignored", incident=inc, detail=f"{kind} is not handled")
    outcomes = []
    for item in (event.get("changelog") or {}).get("items", []):
        if item.get("field") == "status":
            outcomes.append(await _status(state, incidents, number, actor, str(item.get("toString")), event))
        elif item.get("field") == "assignee":
            inp = AssignInput(actor=actor, assignee=item.get("toString"))
            outcomes.append(await _update(number, "assign", incidents.assign(number, inp)))
    if not outcomes:
        return WebhookResult(status="ignored", incident=inc, detail="no status or assignee change")
    applied = [o for o in outcomes if o.status == "applied"]
    return WebhookResult(
        status="applied" if applied else "ignored", incident=inc, detail="; ".join(o.detail for o in outcomes),
    )


async def _status(state, incidents: IncidentClient, number: int, actor: Actor, status: str, event: dict) -> WebhookResult:  # noqa: ANN001, E501
    action = state.settings.jira.statuses.get(status)
    if action is None:
        return WebhookResult(status="ignored", incident=incident_ref(number), detail=f"status {status!r} is not mapped")
    if action == "acknowledge":
        inp = AcknowledgeInput(actor=actor, note=f"Moved to {status} in Jira")
        return await _update(number, "acknowledge", incidents.acknowledge(number, inp))
    if action == "resolve":
        comment = str((event.get("comment") or {}).get("body") or "").strip()
        resolution = comment or f"Resolved in Jira {event['issue']['key']}"
        return await _update(number, "resolve", incidents.resolve(number, ResolveInput(actor=actor, resolution=resolution)))
    return await _update(number, "reopen", incidents.reopen(number, ReopenInput(actor=actor, note=f"moved to {status} in Jira")))


async def _update(number: int, name: str, call: Awaitable[object]) -> WebhookResult:
    try:
        await counted(name, call)
    except (IncidentNotFound, TransitionRefused) as err:  # refused by the state machine (already there, out of order) or closed
        return WebhookResult(status="ignored", incident=incident_ref(number), detail=f"{name}: {err.message}")
    # NotStarted and outages reach Jira as a 503: it retries the delivery.
    return WebhookResult(status="applied", incident=incident_ref(number), detail=name)


def _incident_of(state, key: str) -> int | None:  # noqa: ANN001
    with state.sessions() as session:
        return session.scalar(select(JiraIssue.incident_number).where(JiraIssue.jira_key == key))


def _seen(state, delivery: str, body_hash: str) -> bool:  # noqa: ANN001
    """Applied before under this identifier, or handled before with this very body (a replay)."""
    with state.sessions() as session:
        return session.scalar(
            select(JiraSyncEntry.id).where(
                JiraSyncEntry.direction == "in",
                ((JiraSyncEntry.jira_id == delivery[:64]) & (JiraSyncEntry.status == "applied"))
                | ((JiraSyncEntry.body_hash == body_hash) & JiraSyncEntry.status.in_(["applied", "ignored"])),
            ).limit(1)
        ) is not None


def _is_echo(state, who: dict, event: dict) -> bool:  # noqa: ANN001
    """Made by the integration account, or a comment Vigil itself wrote."""
    me = state.jira_identity()
    # Cloud names accounts by accountId; Server/Data Center (a PAT) by key and username, without accountId.
    if me and any(who.get(f) and who.get(f) == me.get(f) for f in ("accountId", "key", "name")):
        return True
    if who.get("emailAddress") and who.get("emailAddress") == state.settings.jira.email:
        return True
    comment_id = (event.get("comment") or {}).get("id")
    if comment_id is None:
        return False
    with state.sessions() as session:
        return session.scalar(
            select(JiraSyncEntry.id).where(
                JiraSyncEntry.direction == "out", JiraSyncEntry.operation == "comment",
                JiraSyncEntry.jira_id == str(comment_id),
            ).limit(1)
        ) is not None


def _log(state, number, key, kind, result, delivery, body_hash, started) -> None:  # noqa: ANN001
    with state.sessions.begin() as session:
        session.add(JiraSyncEntry(
            incident_number=number, direction="in", operation=kind[:64], jira_key=key, status=result.status,
            error=result.detail or None, jira_id=delivery[:64], body_hash=body_hash,
            latency_ms=int((time.monotonic() - started) * 1000), attempt=1, created_at=utcnow(),
        ))
