"""POST /api/v1/providers/{name}/callbacks: an SMS/IVR middleware reports receipts, replies and keypresses.

Signed like Vigil's requests to it (docs/providers.md). Receipts become `delivery_receipt` signals; an
`ACK <n>` reply or an IVR keypress `1` acknowledges through the same update as REST, so the 200 means no
page will start afterwards. Each event_id acts once.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from pydantic import ValidationError

from api.deps import IncidentsDep, StateDep
from api.errors import ERROR_RESPONSES, ApiError
from api.providers import service
from api.providers.schemas import CallbackResult
from client.incidents import IncidentClient
from vigil.contracts import ReceiptInput, ReceiptType, incident_ref
from vigil.logging import get_logger
from vigil.providers.callbacks import ACK_DIGIT, CallbackType, ProviderCallback, parse_ack_reply
from vigil.providers.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidSignature, verify

router = APIRouter(prefix="/api/v1/providers", tags=["providers"])
log = get_logger(__name__)
RECEIPTS = {
    CallbackType.delivered: ReceiptType.delivered,
    CallbackType.failed: ReceiptType.failed,
    CallbackType.ivr_answered: ReceiptType.ivr_answered,
    CallbackType.ivr_no_answer: ReceiptType.ivr_no_answer,
}


def _inlined(schema: dict) -> dict:
    """The model's JSON schema with its `$defs` inlined, to sit inside the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def walk(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


@router.post(
    "/{name}/callbacks",
    response_model=CallbackResult,
    responses={k: ERROR_RESPONSES[k] for k in (401, 404, 422, 503)},
    # The body is read raw (its signature is checked before it is parsed), so FastAPI cannot infer it.
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _inlined(ProviderCallback.model_json_schema(by_alias=True)),
    }}}},
)
async def callback(name: str, request: Request, state: StateDep, incidents: IncidentsDep) -> CallbackResult:
    """A receipt, an SMS reply or an IVR event; 401 unless signed with the provider secret."""
    p = state.settings.providers
    if name != p.name or p.secret is None:
        raise ApiError(404, "not_found", f"no provider named {name!r} is configured")
    body = await request.body()
    try:
        verify(
            p.secret.get_secret_value().encode(), request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER), body, now=time.time(),
        )
    except InvalidSignature as err:
        raise ApiError(401, "invalid_signature", str(err)) from err
    try:
        event = ProviderCallback.model_validate_json(body)
    except ValidationError as err:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in err.errors()]
        raise ApiError(422, "validation_error", "invalid callback body", details) from err
    if await asyncio.to_thread(service.seen, state.sessions, name, event.event_id):
        return CallbackResult(status="duplicate", detail=f"event {event.event_id} was already applied")
    # Temporal only once the signature is checked (the client connects on its first call): an unsigned request
    # is a 401 even while Temporal is down.
    result = await _apply(name, event, state, incidents)
    # Recorded after acting: a failure above (Temporal down: 503) leaves the event to the provider's retry.
    await asyncio.to_thread(service.record, state.sessions, name, event, result.incident, result.status, body)
    log.info("provider callback", provider=name, event_id=event.event_id, type=event.type.value,
             incident=result.incident, outcome=result.status)
    return result


async def _unknown_yet(name: str, state) -> None:  # noqa: ANN001
    """503 while one of this provider's sends is in flight: a fast provider's callback can arrive before the
    worker has recorded the message id it answered, and "ignored" would lose it (an unanswered call would
    never be placed again). The provider retries until a 2xx (docs/providers.md); the event is not recorded."""
    if await asyncio.to_thread(service.send_in_flight, state.sessions, name):
        raise ApiError(503, "not_recorded_yet", "no notification with that message id yet; a send is still being "
                       "recorded: retry", headers={"Retry-After": "2"})


async def _apply(name: str, event: ProviderCallback, state, incidents: IncidentClient) -> CallbackResult:  # noqa: ANN001
    if event.type in RECEIPTS:
        page = await asyncio.to_thread(service.record_receipt, state.sessions, event)
        if page is None:
            await _unknown_yet(name, state)
            return CallbackResult(status="ignored", detail="no notification with that message id or key")
        number, key = page
        receipt = ReceiptInput(event_id=f"{name}:{event.event_id}", idempotency_key=key, type=RECEIPTS[event.type],
                               error=event.error)
        await incidents.receipt(number, receipt)
        return CallbackResult(status="applied", incident=incident_ref(number))
    if event.type == CallbackType.sms_reply:
        number = parse_ack_reply(event.text or "")
        if number is None:
            return CallbackResult(status="ignored", detail="not an `ACK <incident number>` reply")
        if not event.from_ or not await asyncio.to_thread(service.was_paged, state.sessions, number, event.from_):
            return CallbackResult(status="ignored", incident=incident_ref(number),
                                  detail="that number was not paged for this incident")
        return await service.acknowledge(state.sessions, incidents, number, event.from_, via="SMS reply")
    if event.type == CallbackType.ivr_keypress:
        page = await asyncio.to_thread(service.find_page, state.sessions, event)
        if page is None:
            await _unknown_yet(name, state)
            return CallbackResult(status="ignored", detail="no call with that message id or key")
        if (event.digits or "").strip() != ACK_DIGIT:
            return CallbackResult(status="ignored", incident=incident_ref(page.incident_number),
                                  detail=f"keypress {event.digits!r} is not {ACK_DIGIT}")
        return await service.acknowledge(state.sessions, incidents, page.incident_number, page.target, via="IVR keypress")
    return CallbackResult(status="ignored", detail=f"unhandled type {event.type.value}")
