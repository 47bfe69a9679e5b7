"""/api/v1/webhooks, /api/v1/escalation-policies (with a preview) and /api/v1/escalation-routes (admin)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from api.admin import ADMIN_ERRORS, get_or_404
from api.deps import Admin, SessionDep, StateDep
from api.escalation import service
from api.escalation.schemas import (
    PolicyCreate,
    PolicyRead,
    PolicyUpdate,
    PreviewRequest,
    RouteIn,
    RouteRead,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
)
from vigil.contracts import Id
from vigil.models import EscalationPolicyRow, Webhook, utcnow
from vigil.policies.preview import Preview, preview

webhooks = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
policies = APIRouter(prefix="/api/v1/escalation-policies", tags=["escalation policies"])
routes = APIRouter(prefix="/api/v1/escalation-routes", tags=["escalation policies"])
# `:int` keeps these paths clear of inbound webhooks under the same prefix (`POST /api/v1/webhooks/jira`).
WEBHOOK = "/{webhook_id:int}"


@webhooks.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookRead, responses=ADMIN_ERRORS)
def create_webhook(body: WebhookCreate, _user: Admin, session: SessionDep, state: StateDep) -> WebhookRead:
    """An outgoing webhook: the target of the `webhook` channel. 422 for a URL reaching a non-public address."""
    allowlist = state.settings.core.private_url_allowlist
    return service.webhook_read(service.create_webhook(session=session, body=body, allowlist=allowlist))


@webhooks.get("", response_model=list[WebhookRead], responses=ADMIN_ERRORS)
def list_webhooks(_user: Admin, session: SessionDep) -> list[WebhookRead]:
    return [service.webhook_read(r) for r in session.scalars(select(Webhook).order_by(Webhook.id))]


@webhooks.get(WEBHOOK, response_model=WebhookRead, responses=ADMIN_ERRORS)
def get_webhook(webhook_id: Id, _user: Admin, session: SessionDep) -> WebhookRead:
    return service.webhook_read(get_or_404(session, Webhook, webhook_id, "webhook"))


@webhooks.patch(WEBHOOK, response_model=WebhookRead, responses=ADMIN_ERRORS)
def update_webhook(webhook_id: Id, body: WebhookUpdate, _user: Admin, session: SessionDep, state: StateDep) -> WebhookRead:
    allowlist = state.settings.core.private_url_allowlist
    return service.webhook_read(
        service.update_webhook(session=session, webhook_id=webhook_id, body=body, allowlist=allowlist)
    )


@webhooks.delete(WEBHOOK, status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def delete_webhook(webhook_id: Id, _user: Admin, session: SessionDep) -> None:
    """409 naming the escalation policies that still target the webhook."""
    service.delete_webhook(session=session, webhook_id=webhook_id)


@policies.post("", status_code=status.HTTP_201_CREATED, response_model=PolicyRead, responses=ADMIN_ERRORS)
def create_policy(body: PolicyCreate, _user: Admin, session: SessionDep) -> PolicyRead:
    """Steps run in order (each pages every target over every channel that fits it, then waits), `repeat`
    more times, then the manager step once. An incident freezes the policy its route picks when it opens."""
    return service.policy_read(session, service.create_policy(session=session, body=body))


@policies.get("", response_model=list[PolicyRead], responses=ADMIN_ERRORS)
def list_policies(_user: Admin, session: SessionDep) -> list[PolicyRead]:
    rows = session.scalars(select(EscalationPolicyRow).order_by(EscalationPolicyRow.id))
    return [service.policy_read(session, r) for r in rows]


@policies.get("/{policy_id:int}", response_model=PolicyRead, responses=ADMIN_ERRORS)
def get_policy(policy_id: Id, _user: Admin, session: SessionDep) -> PolicyRead:
    return service.policy_read(session, get_or_404(session, EscalationPolicyRow, policy_id, "escalation policy"))


@policies.patch("/{policy_id:int}", response_model=PolicyRead, responses=ADMIN_ERRORS)
def update_policy(policy_id: Id, body: PolicyUpdate, _user: Admin, session: SessionDep) -> PolicyRead:
    """Applies to incidents opened from now on; running ones keep the policy they froze."""
    return service.policy_read(session, service.update_policy(session=session, policy_id=policy_id, body=body))


@policies.delete("/{policy_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def delete_policy(policy_id: Id, _user: Admin, session: SessionDep) -> None:
    """409 naming the escalation routes that still pick the policy."""
    service.delete_policy(session=session, policy_id=policy_id)


@policies.post("/{policy_id:int}/preview", response_model=Preview, responses=ADMIN_ERRORS)
def preview_policy(policy_id: Id, body: PreviewRequest, _user: Admin, session: SessionDep) -> Preview:
    """Every page the policy would send from `start` if nobody acknowledges, with addresses: targets are
    resolved at each step's own time, so a schedule handing off mid-ladder shows the new person."""
    get_or_404(session, EscalationPolicyRow, policy_id, "escalation policy")
    return preview(session=session, policy_id=policy_id, severity=body.severity, start=body.start or utcnow())


@routes.get("", response_model=list[RouteRead], responses=ADMIN_ERRORS)
def list_routes(_user: Admin, session: SessionDep) -> list[RouteRead]:
    """In order: an incident takes the policy of the first route matching its service and severity, else the
    built-in ladder."""
    return service.list_routes(session=session)


@routes.put("", response_model=list[RouteRead], responses=ADMIN_ERRORS)
def replace_routes(body: list[RouteIn], _user: Admin, session: SessionDep) -> list[RouteRead]:
    """Replaces the whole ordered list. Applies to incidents opened from now on."""
    return service.replace_routes(session=session, routes=body)
