"""A configured escalation policy end to end: routing, schedule on-call resolved at each step's time, contact
groups, an outgoing webhook, repeat and manager; the policy preview predicts exactly what the ladder pages;
editing the policy changes only new incidents."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Keys
from tests.flows import admin, attempts, handle_of, save_history, trigger
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from vigil.models import utcnow
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow

WAIT = 300


@pytest.fixture
def settings(settings: Settings, provider: ProviderServer) -> Settings:
    return settings.model_copy(update={"providers": provider.provider_settings()})


async def checkout_policy(api: httpx.AsyncClient, keys: Keys, provider: ProviderServer) -> dict:
    """alice is on call for 3 more minutes, then bob (overrides); carol manages; ops = [dave, erin]."""
    users = {}
    for name, phone in (("alice", "+15550000001"), ("bob", "+15550000002"), ("carol", "+15550000003"),
                        ("dave", "+15550000004"), ("erin", "+15550000005")):
        users[name] = (await admin(api, keys, "users", {
            "name": name, "email": f"{name}@example.com", "phone": phone, "timezone": "Europe/Paris",
        }))["id"]
    schedule = await admin(api, keys, "schedules", {
        "name": "primary", "timezone": "Europe/Paris", "rotation_start": "2026-01-05",
        "participants": [users["carol"]],
    })
    now = utcnow()
    for who, start, end in (("alice", now - timedelta(hours=1), now + timedelta(minutes=3)),
                            ("bob", now + timedelta(minutes=3), now + timedelta(hours=3))):
        await admin(api, keys, f"schedules/{schedule['id']}/overrides", {
            "user_id": users[who], "starts_at": start.isoformat(), "ends_at": end.isoformat(),
        })
    group = await admin(api, keys, "contact-groups", {"name": "ops", "members": [users["dave"], users["erin"]]})
    hook = await admin(api, keys, "webhooks", {"name": "chat", "url": provider.hook_url("chat"), "secret": "s3"})
    provider.set_hook_secret("chat", b"s3")
    policy = await admin(api, keys, "escalation-policies", {
        "name": "checkout",
        "steps": [
            {"name": "on-call", "channels": ["email", "sms"],
             "targets": [{"kind": "schedule", "id": schedule["id"]}], "wait_seconds": WAIT},
            {"name": "team", "channels": ["email"], "targets": [{"kind": "group", "id": group["id"]}],
             "wait_seconds": WAIT},
            {"name": "chat", "channels": ["webhook"], "targets": [{"kind": "webhook", "id": hook["id"]}],
             "wait_seconds": WAIT},
        ],
        "repeat": 1,
        "manager": {"name": "manager", "channels": ["email"], "targets": [{"kind": "user", "id": users["carol"]}],
                    "wait_seconds": 0},
    })
    await admin(api, keys, "escalation-routes", [{"service": "checkout", "severities": [], "policy_id": policy["id"]}],
               method="PUT")
    return {"policy": policy, "users": users}


async def test_policy_ladder_matches_its_preview_and_edits_only_change_new_incidents(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    made = await checkout_policy(api, keys, provider)
    policy_id = made["policy"]["id"]
    preview = await admin(api, keys, f"escalation-policies/{policy_id}/preview", {"severity": "critical"})
    predicted = [(label(e), e["recipient"], e["channel"]) for e in preview["entries"]]
    assert predicted[:3] == [("on-call", "alice", "email"), ("on-call", "alice", "sms"), ("team", "dave", "email")]
    assert ("on-call (repeat 1)", "bob", "sms") in predicted  # the repeat, after the handoff to bob

    number = await trigger(api, keys, dedup_key="policy-1")
    handle = handle_of(client, number)
    plan = await eventually(lambda: frozen(handle))
    assert plan.name == "checkout"

    # Edited after the incident froze it: the team step now pages carol instead of the group.
    await admin(api, keys, f"escalation-policies/{policy_id}", {"steps": [
        *made["policy"]["steps"][:1],
        {"name": "team", "channels": ["email"], "targets": [{"kind": "user", "id": made["users"]["carol"]}],
         "wait_seconds": WAIT},
        *made["policy"]["steps"][2:],
    ]}, method="PATCH")

    def paged() -> list[tuple[str, str, str]]:
        return [(a.step, a.recipient or "", a.channel) for a in attempts(sessions, number) if a.status == "sent"]

    rungs = len(preview["policy"]["steps"]) * 2 + 1
    for rung in range(rungs):
        expected = sum(1 for e in preview["entries"] if e["round"] * 3 + e["step_index"] <= rung)
        await eventually(lambda expected=expected: len(paged()) == expected)
        if rung < rungs - 1:
            assert await skipper.fast_forward(handle, timedelta(seconds=WAIT + 1))
    # Who, how and in which rung: exactly the preview (made before the edit). Pages of one rung go out
    # together, so only the rungs' order is fixed.
    assert sorted(paged()) == sorted(predicted)
    assert list(dict.fromkeys(p[0] for p in paged())) == list(dict.fromkeys(p[0] for p in predicted))

    # The webhook reached the receiver, Slack-compatible and signed (the server checked the signature).
    hooks = provider.hooks("chat")
    assert len(hooks) == 2 and f"INC-{number}" in hooks[0]["text"]
    assert hooks[0]["incident"]["number"] == number
    # SMS went to the middleware once per key: alice in the first round, bob in the repeat.
    assert [s.to for s in provider.sent if s.channel == "sms"] == ["+15550000001", "+15550000002"]
    assert "ladder exhausted" in (await handle.query(IncidentWorkflow.state)).current_step
    await save_history(handle, "policy_ladder")

    # A new incident freezes the edited policy: its team step pages carol.
    second = await trigger(api, keys, dedup_key="policy-2", component="checkout", klass="Other")
    await eventually(lambda: len(attempts(sessions, second)) >= 2)
    await skipper.fast_forward(handle_of(client, second), timedelta(seconds=WAIT + 1))
    await eventually(lambda: any(a.step == "team" for a in attempts(sessions, second)))
    assert [a.recipient for a in attempts(sessions, second) if a.step == "team"] == ["carol"]


async def test_unrouted_service_gets_the_default_ladder(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, provider: ProviderServer,
) -> None:
    await checkout_policy(api, keys, provider)
    number = await trigger(api, keys, dedup_key="other-service", component="billing")
    assert (await eventually(lambda: frozen(handle_of(client, number)))).name == "default"


def label(entry: dict) -> str:
    """The rung name the ladder logs for a preview entry."""
    if entry["manager"]:
        return f"{entry['step_name']} (manager)"
    return f"{entry['step_name']} (repeat {entry['round']})" if entry["round"] else entry["step_name"]


async def frozen(handle):  # noqa: ANN001, ANN201
    return (await handle.query(IncidentWorkflow.state)).plan
