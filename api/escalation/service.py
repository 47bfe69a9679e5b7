"""Webhooks, escalation policies and the routes that pick one for an incident."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.admin import delete_unused, get_or_404, invalid, save_unique
from api.escalation.schemas import (
    PolicyCreate,
    PolicyRead,
    PolicyUpdate,
    RouteIn,
    RouteRead,
    StepIn,
    StepRead,
    TargetRead,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
)
from vigil.contracts import PolicyTarget, TargetKind
from vigil.escalation import can_reach
from vigil.models import EscalationPolicyRow, EscalationRoute, Webhook
from vigil.policies.service import TARGET_MODELS, policy_referrers, target_name
from vigil.urls import Network, UnresolvableUrl, UnsafeUrl, check_url

# --- webhooks -----------------------------------------------------------------------------------


def webhook_read(row: Webhook) -> WebhookRead:
    return WebhookRead(id=row.id, name=row.name, url=row.url, has_secret=bool(row.secret), created_at=row.created_at)


def save_webhook(session: Session, row: Webhook) -> Webhook:
    save_unique(session, row, Webhook.name, f"a webhook named {row.name!r} exists")
    return row


def public_url(url: str, allowlist: Sequence[Network]) -> str:
    """422 on `body.url` for a URL reaching a non-public address (SSRF). A host that does not resolve now is
    accepted: the sender checks every request again."""
    try:
        check_url(url, allowlist)
    except UnsafeUrl as err:
        raise invalid([("body.url", str(err))]) from None
    except UnresolvableUrl:
        pass
    return url


def create_webhook(*, session: Session, body: WebhookCreate, allowlist: Sequence[Network]) -> Webhook:
    url = public_url(str(body.url), allowlist)
    return save_webhook(session, Webhook(name=body.name, url=url, secret=body.secret))


def update_webhook(*, session: Session, webhook_id: int, body: WebhookUpdate, allowlist: Sequence[Network]) -> Webhook:
    row = get_or_404(session, Webhook, webhook_id, "webhook")
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        changes["url"] = public_url(str(body.url), allowlist)
    for name, value in changes.items():
        setattr(row, name, value)
    return save_webhook(session, row)


def delete_webhook(*, session: Session, webhook_id: int) -> None:
    row = get_or_404(session, Webhook, webhook_id, "webhook")
    delete_unused(session, row, f"webhook {row.name!r}",
                  policy_referrers(session=session, kind=TargetKind.webhook, id=row.id))


# --- policies -----------------------------------------------------------------------------------


def step_problems(session: Session, step: StepIn, path: str) -> list[tuple[str, str]]:
    """Targets that do not exist or that no channel of the step reaches, and channels that reach no target."""
    problems = []
    for j, target in enumerate(step.targets):
        if session.get(TARGET_MODELS[target.kind], target.id) is None:
            problems.append((f"{path}.targets.{j}.id", f"{target.kind.value} {target.id} does not exist"))
        if not any(can_reach(c, target.kind) for c in step.channels):
            needs = "the webhook channel" if target.kind == TargetKind.webhook else "email, sms or ivr"
            problems.append((f"{path}.targets.{j}",
                             f"no channel of this step reaches a {target.kind.value} target (it needs {needs})"))
    for k, channel in enumerate(step.channels):
        if not any(can_reach(channel, t.kind) for t in step.targets):
            problems.append((f"{path}.channels.{k}", f"{channel.value} reaches none of this step's targets"))
    return problems


def check_steps(session: Session, steps: list[StepIn] | None, manager: StepIn | None) -> None:
    problems = []
    for i, step in enumerate(steps or []):
        problems += step_problems(session, step, f"body.steps.{i}")
    if manager is not None:
        problems += step_problems(session, manager, "body.manager")
    if problems:
        raise invalid(problems)


def stored(step: StepIn | None) -> dict[str, Any] | None:
    return step.model_dump(mode="json") if step is not None else None


def step_read(session: Session, raw: dict[str, Any]) -> StepRead:
    targets = [
        TargetRead(kind=t["kind"], id=t["id"], name=target_name(session, PolicyTarget.model_validate(t)))
        for t in raw["targets"]
    ]
    return StepRead(name=raw["name"], channels=raw["channels"], targets=targets, wait_seconds=raw["wait_seconds"])


def policy_read(session: Session, row: EscalationPolicyRow) -> PolicyRead:
    return PolicyRead(
        id=row.id, name=row.name, steps=[step_read(session, s) for s in row.steps], repeat=row.repeat,
        manager=step_read(session, row.manager) if row.manager else None,
        ack_timeout_seconds=row.ack_timeout_seconds, ivr_attempts=row.ivr_attempts,
        ivr_retry_seconds=row.ivr_retry_seconds, severity_multipliers=row.severity_multipliers,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def save_policy(session: Session, row: EscalationPolicyRow) -> EscalationPolicyRow:
    save_unique(session, row, EscalationPolicyRow.name, f"an escalation policy named {row.name!r} exists")
    return row


def create_policy(*, session: Session, body: PolicyCreate) -> EscalationPolicyRow:
    check_steps(session, body.steps, body.manager)
    return save_policy(session, EscalationPolicyRow(
        **body.model_dump(mode="json", exclude={"steps", "manager"}),
        steps=[stored(s) for s in body.steps], manager=stored(body.manager),
    ))


def update_policy(*, session: Session, policy_id: int, body: PolicyUpdate) -> EscalationPolicyRow:
    """Only new incidents see the change: running ones froze the policy when they started."""
    row = get_or_404(session, EscalationPolicyRow, policy_id, "escalation policy")
    check_steps(session, body.steps, body.manager)
    for name, value in body.model_dump(mode="json", exclude_unset=True).items():
        setattr(row, name, value)
    return save_policy(session, row)


def delete_policy(*, session: Session, policy_id: int) -> None:
    row = get_or_404(session, EscalationPolicyRow, policy_id, "escalation policy")
    routes = session.scalars(
        select(EscalationRoute).where(EscalationRoute.policy_id == row.id).order_by(EscalationRoute.position)
    )
    delete_unused(session, row, f"escalation policy {row.name!r}",
                  [f"escalation route {r.position} (service {r.service!r})" for r in routes])


# --- routes -------------------------------------------------------------------------------------


def list_routes(*, session: Session) -> list[RouteRead]:
    rows = session.execute(
        select(EscalationRoute, EscalationPolicyRow.name)
        .join(EscalationPolicyRow, EscalationPolicyRow.id == EscalationRoute.policy_id)
        .order_by(EscalationRoute.position)
    )
    return [
        RouteRead(position=r.position, service=r.service, severities=r.severities, policy_id=r.policy_id, policy_name=name)
        for r, name in rows
    ]


def replace_routes(*, session: Session, routes: list[RouteIn]) -> list[RouteRead]:
    """The whole ordered list at once; position = index, and the first match wins."""
    known = set(session.scalars(select(EscalationPolicyRow.id)))
    problems = [
        (f"body.{i}.policy_id", f"escalation policy {r.policy_id} does not exist")
        for i, r in enumerate(routes) if r.policy_id not in known
    ]
    if problems:
        raise invalid(problems)
    session.execute(delete(EscalationRoute))
    session.add_all(
        EscalationRoute(position=i, service=r.service, severities=[s.value for s in r.severities], policy_id=r.policy_id)
        for i, r in enumerate(routes)
    )
    session.commit()
    return list_routes(session=session)
