"""People, schedules, webhooks and escalation policies: the admin API (real HTTP, real DB), routing and freezing,
target resolution and the preview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Keys
from tests.test_api import assert_error
from vigil.contracts import Channel, FrozenPolicy, PolicyStep, PolicyTarget, Recipient, Severity, TargetKind
from vigil.escalation import deliveries, rungs
from vigil.policies.service import freeze_policy, resolve_targets

DEFAULT = FrozenPolicy(
    name="default",
    steps=[PolicyStep(name="email on-call", channels=[Channel.email], wait_seconds=300,
                      targets=[PolicyTarget(kind=TargetKind.contact, name="on-call", email="oncall@localhost")])],
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Admin:
    """The admin API as the tests use it: every call authenticated, the expected status asserted."""

    def __init__(self, api: httpx.AsyncClient, keys: Keys) -> None:
        self.api, self.headers = api, keys.auth(keys.admin)

    async def call(self, method: str, path: str, body: object = None, status: int = 200, **kw: object) -> httpx.Response:
        resp = await self.api.request(method, path, json=body, headers=self.headers, **kw)  # type: ignore[arg-type]
        assert resp.status_code == status, resp.text
        return resp

    async def create(self, path: str, body: dict) -> dict:
        return (await self.call("POST", path, body, 201)).json()

    async def refused(self, method: str, path: str, body: object, status: int, code: str) -> dict:
        return assert_error(await self.api.request(method, path, json=body, headers=self.headers), status, code)

    async def user(self, name: str, phone: str | None = None, **kw: object) -> dict:
        return await self.create("/api/v1/users", {"name": name, "email": f"{name.lower()}@example.com", "phone": phone, **kw})


@pytest.fixture
def admin(api: httpx.AsyncClient, keys: Keys) -> Admin:
    return Admin(api, keys)


def fields(error: dict) -> dict[str, str]:
    return {d["field"]: d["message"] for d in error["details"]}


def step(name: str, channels: list[str], targets: list[tuple[str, int]], wait: int | None = None) -> dict:
    body: dict = {"name": name, "channels": channels, "targets": [{"kind": k, "id": i} for k, i in targets]}
    if wait is not None:
        body["wait_seconds"] = wait
    return body


# --- users and groups ---------------------------------------------------------------------------


async def test_users_crud_and_validation(admin: Admin, api: httpx.AsyncClient, keys: Keys) -> None:
    alice = await admin.user("Alice", "+14155550100", timezone="Europe/Paris")
    assert {k: alice[k] for k in ("name", "email", "phone", "timezone", "role")} == {
        "name": "Alice", "email": "alice@example.com", "phone": "+14155550100", "timezone": "Europe/Paris",
        "role": "responder",
    }
    assert (await admin.call("GET", f"/api/v1/users/{alice['id']}")).json() == alice
    assert alice["id"] in [u["id"] for u in (await admin.call("GET", "/api/v1/users")).json()]

    err = await admin.refused("POST", "/api/v1/users", {"name": "Bad", "email": "bad@example.com", "phone": "555-0100",
                                                         "timezone": "Mars/Olympus"}, 422, "validation_error")
    assert set(fields(err)) == {"body.phone", "body.timezone"}
    assert "E.164" in fields(err)["body.phone"] and "unknown timezone" in fields(err)["body.timezone"]
    err = await admin.refused("POST", "/api/v1/users", {"name": "Again", "email": "ALICE@example.com"}, 409, "conflict")
    assert "alice@example.com" in err["message"]

    path = f"/api/v1/users/{alice['id']}"
    changed = (await admin.call("PATCH", path, {"phone": None, "name": "Alice B."})).json()
    assert (changed["phone"], changed["name"], changed["email"]) == (None, "Alice B.", "alice@example.com")
    err = await admin.refused("PATCH", path, {"name": None}, 422, "validation_error")
    assert list(fields(err)) == ["body.name"]
    bob = await admin.user("Bob")
    await admin.refused("PATCH", path, {"email": bob["email"]}, 409, "conflict")

    assert_error(await api.get("/api/v1/users", headers=keys.auth(keys.responder)), 403, "forbidden")
    assert_error(await api.get("/api/v1/users"), 401, "unauthorized")
    await admin.call("DELETE", path, status=204)
    await admin.refused("GET", path, None, 404, "not_found")
    await admin.refused("PATCH", path, {"name": "x"}, 404, "not_found")
    me = next(u for u in (await admin.call("GET", "/api/v1/users")).json() if u["email"] == "admin@test")
    assert "your own" in (await admin.refused("DELETE", f"/api/v1/users/{me['id']}", None, 409, "conflict"))["message"]


async def test_contact_groups_crud_and_validation(admin: Admin) -> None:
    alice, bob = await admin.user("Alice"), await admin.user("Bob")
    ops = await admin.create("/api/v1/contact-groups", {"name": "ops", "members": [bob["id"], alice["id"]]})
    assert ops["members"] == [bob["id"], alice["id"]]

    err = await admin.refused("POST", "/api/v1/contact-groups", {"name": "x", "members": [alice["id"], 99999, alice["id"]]},
                              422, "validation_error")
    assert fields(err) == {"body.members.1": "user 99999 does not exist", "body.members.2": f"user {alice['id']} is listed twice"}
    await admin.refused("POST", "/api/v1/contact-groups", {"name": "ops"}, 409, "conflict")

    path = f"/api/v1/contact-groups/{ops['id']}"
    assert (await admin.call("PATCH", path, {"members": [alice["id"]]})).json()["members"] == [alice["id"]]
    assert (await admin.call("GET", path)).json()["members"] == [alice["id"]]
    assert [g["name"] for g in (await admin.call("GET", "/api/v1/contact-groups")).json()] == ["ops"]
    # Alice is in the group: deleting her is refused, naming it; Bob is not.
    err = await admin.refused("DELETE", f"/api/v1/users/{alice['id']}", None, 409, "conflict")
    assert err["details"]["referrers"] == ["contact group 'ops'"]
    await admin.call("DELETE", f"/api/v1/users/{bob['id']}", status=204)
    await admin.call("DELETE", path, status=204)
    await admin.refused("DELETE", path, None, 404, "not_found")
    await admin.call("DELETE", f"/api/v1/users/{alice['id']}", status=204)


# --- schedules and on-call ----------------------------------------------------------------------


async def test_schedule_oncall_over_a_dst_handoff_and_with_an_override(
    admin: Admin, api: httpx.AsyncClient, keys: Keys,
) -> None:
    alice, bob, carol = await admin.user("Alice"), await admin.user("Bob"), await admin.user("Carol")
    err = await admin.refused("POST", "/api/v1/schedules", {
        "name": "primary", "timezone": "America/Nowhere", "handoff_weekday": 7, "handoff_time": "9am",
        "rotation_start": "2026-03-02", "participants": [alice["id"], 424242],
    }, 422, "validation_error")
    assert set(fields(err)) == {"body.timezone", "body.handoff_weekday", "body.handoff_time"}  # ids: once the body is valid
    schedule = await admin.create("/api/v1/schedules", {
        "name": "primary", "timezone": "America/New_York", "handoff_weekday": 0, "handoff_time": "09:00",
        "rotation_start": "2026-03-02", "participants": [alice["id"], bob["id"]],
    })
    err = await admin.refused("POST", "/api/v1/schedules", {"name": "other", "timezone": "UTC", "rotation_start": "2026-03-02",
                                                            "participants": [alice["id"], 424242]}, 422, "validation_error")
    assert fields(err) == {"body.participants.1": "user 424242 does not exist"}
    await admin.refused("POST", "/api/v1/schedules", {"name": "primary", "timezone": "UTC", "rotation_start": "2026-03-02"},
                        409, "conflict")
    path = f"/api/v1/schedules/{schedule['id']}"

    async def oncall(at: str, headers: dict | None = None) -> dict:
        resp = await api.get(f"{path}/oncall", params={"at": at}, headers=headers or admin.headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    # DST starts 2026-03-08: Monday 09:00 EDT is 13:00 UTC, an hour earlier than the week before.
    before = await oncall("2026-03-09T12:59:59Z")
    assert (before["user"]["name"], before["source"]) == ("Alice", "rotation")
    assert before["next_handoff"].startswith("2026-03-09T13:00:00")
    at_handoff = await oncall("2026-03-09T09:00:00-04:00", keys.auth(keys.viewer))
    assert (at_handoff["user"], at_handoff["source"]) == ({"id": bob["id"], "name": "Bob", "timezone": "UTC"}, "rotation")
    assert await oncall("2026-03-02T13:59:00Z") == {"user": None, "source": None, "layer": None,
                                                    "at": "2026-03-02T13:59:00Z", "next_handoff": "2026-03-02T14:00:00Z"}

    overrides = f"{path}/overrides"
    err = await admin.refused("POST", overrides, {"user_id": carol["id"], "starts_at": "2026-03-09T10:00:00",
                                                  "ends_at": "2026-03-09T09:00:00Z"}, 422, "validation_error")
    assert list(fields(err)) == ["body.starts_at"]
    err = await admin.refused("POST", overrides, {"user_id": carol["id"], "starts_at": "2026-03-09T14:00:00Z",
                                                  "ends_at": "2026-03-09T14:00:00Z"}, 422, "validation_error")
    assert fields(err) == {"body.ends_at": "Value error, ends_at must be after starts_at"}
    err = await admin.refused("POST", overrides, {"user_id": 777777, "starts_at": "2026-03-09T14:00:00Z",
                                                  "ends_at": "2026-03-09T16:00:00Z"}, 422, "validation_error")
    assert fields(err) == {"body.user_id": "user 777777 does not exist"}
    override = await admin.create(overrides, {"user_id": carol["id"], "starts_at": "2026-03-09T14:00:00Z",
                                              "ends_at": "2026-03-09T16:00:00Z"})
    covered = await oncall("2026-03-09T15:00:00Z")
    assert (covered["user"]["name"], covered["source"]) == ("Carol", "override")
    assert (await oncall("2026-03-09T16:00:00Z"))["user"]["name"] == "Bob"  # the end is exclusive
    assert [o["id"] for o in (await admin.call("GET", overrides)).json()] == [override["id"]]
    await admin.refused("GET", "/api/v1/schedules/999999/oncall", None, 404, "not_found")
    err = assert_error(await api.get(f"{path}/oncall", params={"at": "2026-03-09T15:00:00"}, headers=admin.headers),
                       422, "validation_error")
    assert list(fields(err)) == ["query.at"]

    await admin.call("DELETE", f"{overrides}/{override['id']}", status=204)
    await admin.refused("DELETE", f"{overrides}/{override['id']}", None, 404, "not_found")
    assert (await oncall("2026-03-09T15:00:00Z"))["source"] == "rotation"

    # A current or future override keeps its user from being deleted; a past one goes with the user.
    soon = datetime.now(UTC) + timedelta(days=1)
    future = await admin.create(overrides, {"user_id": carol["id"], "starts_at": soon.isoformat(),
                                            "ends_at": (soon + timedelta(hours=1)).isoformat()})
    past = await admin.create(overrides, {"user_id": carol["id"], "starts_at": "2020-01-01T00:00:00Z",
                                          "ends_at": "2020-01-02T00:00:00Z"})
    err = await admin.refused("DELETE", f"/api/v1/users/{carol['id']}", None, 409, "conflict")
    assert err["details"]["referrers"] == ["an override of schedule 'primary'"]
    err = await admin.refused("DELETE", f"/api/v1/users/{alice['id']}", None, 409, "conflict")
    assert err["details"]["referrers"] == ["schedule 'primary'"]
    await admin.call("DELETE", f"{overrides}/{future['id']}", status=204)
    await admin.call("DELETE", f"/api/v1/users/{carol['id']}", status=204)
    assert [o["id"] for o in (await admin.call("GET", overrides)).json()] == []
    assert past["user_id"] == carol["id"]

    changed = (await admin.call("PATCH", path, {"participants": [bob["id"]], "handoff_time": "10:30"})).json()
    assert (changed["participants"], changed["handoff_time"], changed["timezone"]) == ([bob["id"]], "10:30", "America/New_York")
    await admin.refused("PATCH", path, {"timezone": None}, 422, "validation_error")
    await admin.call("DELETE", path, status=204)
    await admin.call("DELETE", f"/api/v1/users/{alice['id']}", status=204)  # the schedule no longer holds her


# --- webhooks, policies, routes -----------------------------------------------------------------


async def test_webhooks_never_show_their_secret(admin: Admin) -> None:
    hook = await admin.create("/api/v1/webhooks", {"name": "chatops", "url": "https://chat.example.com/hook", "secret": "s3cret"})
    assert (hook["url"], hook["has_secret"]) == ("https://chat.example.com/hook", True) and "secret" not in hook
    err = await admin.refused("POST", "/api/v1/webhooks", {"name": "bad", "url": "ftp://x"}, 422, "validation_error")
    assert list(fields(err)) == ["body.url"]
    await admin.refused("POST", "/api/v1/webhooks", {"name": "chatops", "url": "https://x.example.com"}, 409, "conflict")
    path = f"/api/v1/webhooks/{hook['id']}"
    assert (await admin.call("PATCH", path, {"secret": None})).json()["has_secret"] is False
    assert [h["name"] for h in (await admin.call("GET", "/api/v1/webhooks")).json()] == ["chatops"]
    await admin.call("DELETE", path, status=204)
    await admin.refused("GET", path, None, 404, "not_found")


async def test_policy_validation_names_the_field(admin: Admin) -> None:
    alice = await admin.user("Alice", "+14155550100")
    hook = await admin.create("/api/v1/webhooks", {"name": "chatops", "url": "https://chat.example.com/hook"})
    url = "/api/v1/escalation-policies"

    async def problems(body: dict) -> dict[str, str]:
        return fields(await admin.refused("POST", url, {"name": "p", **body}, 422, "validation_error"))

    assert list(await problems({"steps": []})) == ["body.steps"]
    assert list(await problems({"steps": [step("s", [], [("user", alice["id"])])]})) == ["body.steps.0.channels"]
    assert list(await problems({"steps": [step("s", ["email"], [])]})) == ["body.steps.0.targets"]
    assert list(await problems({"steps": [step("s", ["email"], [("user", alice["id"])], wait=-1)]})) == [
        "body.steps.0.wait_seconds"]
    assert list(await problems({"steps": [step("s", ["email"], [("contact", 1)])]})) == ["body.steps.0.targets.0.kind"]
    assert list(await problems({"steps": [step("s", ["email"], [("user", alice["id"])])],
                                "severity_multipliers": {"critical": 0, "warning": 2}})) == [
        "body.severity_multipliers.critical"]
    assert list(await problems({"steps": [step("s", ["email"], [("user", alice["id"])])], "repeat": -1})) == ["body.repeat"]
    # Checked against the database and across fields, every problem at once.
    found = await problems({"steps": [
        step("webhook only", ["webhook"], [("user", alice["id"])]),
        step("unknown", ["email", "webhook"], [("group", 555), ("schedule", 556), ("webhook", hook["id"])]),
    ], "manager": step("boss", ["sms"], [("user", 557)])})
    assert found == {
        "body.steps.0.targets.0": "no channel of this step reaches a user target (it needs email, sms or ivr)",
        "body.steps.0.channels.0": "webhook reaches none of this step's targets",
        "body.steps.1.targets.0.id": "group 555 does not exist",
        "body.steps.1.targets.1.id": "schedule 556 does not exist",
        "body.manager.targets.0.id": "user 557 does not exist",
    }

    policy = await admin.create(url, {"name": "p", "steps": [step("page", ["email", "webhook"], [("user", alice["id"]), ("webhook", hook["id"])])]})
    assert policy["steps"][0]["targets"] == [{"kind": "user", "id": alice["id"], "name": "Alice"},
                                             {"kind": "webhook", "id": hook["id"], "name": "chatops"}]
    assert (policy["steps"][0]["wait_seconds"], policy["repeat"], policy["manager"], policy["ack_timeout_seconds"],
            policy["ivr_attempts"], policy["ivr_retry_seconds"], policy["severity_multipliers"]) == (300, 0, None, 1800, 3, 120, {})
    await admin.refused("POST", url, {"name": "p", "steps": [step("s", ["email"], [("user", alice["id"])])]}, 409, "conflict")
    path = f"{url}/{policy['id']}"
    err = await admin.refused("PATCH", path, {"manager": step("boss", ["email"], [("user", 999)])}, 422, "validation_error")
    assert list(fields(err)) == ["body.manager.targets.0.id"]
    changed = (await admin.call("PATCH", path, {"repeat": 2, "manager": step("boss", ["sms"], [("user", alice["id"])], wait=0),
                                                "severity_multipliers": {"critical": 0.5}})).json()
    assert (changed["repeat"], changed["manager"]["name"], changed["severity_multipliers"], changed["steps"]) == (
        2, "boss", {"critical": 0.5}, policy["steps"])
    assert (await admin.call("PATCH", path, {"manager": None})).json()["manager"] is None
    assert [p["name"] for p in (await admin.call("GET", url)).json()] == ["p"]
    await admin.refused("GET", f"{url}/999999", None, 404, "not_found")


async def test_deleting_what_a_policy_or_route_uses_is_refused(admin: Admin) -> None:
    alice = await admin.user("Alice")
    group = await admin.create("/api/v1/contact-groups", {"name": "ops", "members": []})
    schedule = await admin.create("/api/v1/schedules", {"name": "primary", "timezone": "UTC", "rotation_start": "2026-01-05"})
    hook = await admin.create("/api/v1/webhooks", {"name": "chatops", "url": "https://chat.example.com/hook"})
    policy = await admin.create("/api/v1/escalation-policies", {
        "name": "checkout",
        "steps": [step("first", ["email"], [("group", group["id"]), ("schedule", schedule["id"])]),
                  step("second", ["webhook"], [("webhook", hook["id"])])],
        "manager": step("boss", ["email"], [("user", alice["id"])]),
    })
    for path, referrer in [
        (f"/api/v1/users/{alice['id']}", "escalation policy 'checkout' manager step"),
        (f"/api/v1/contact-groups/{group['id']}", "escalation policy 'checkout' step 1"),
        (f"/api/v1/schedules/{schedule['id']}", "escalation policy 'checkout' step 1"),
        (f"/api/v1/webhooks/{hook['id']}", "escalation policy 'checkout' step 2"),
    ]:
        err = await admin.refused("DELETE", path, None, 409, "conflict")
        assert err["details"]["referrers"] == [referrer] and referrer in err["message"], path
    await admin.call("PUT", "/api/v1/escalation-routes", [{"service": "*", "policy_id": policy["id"]}])
    err = await admin.refused("DELETE", f"/api/v1/escalation-policies/{policy['id']}", None, 409, "conflict")
    assert err["details"]["referrers"] == ["escalation route 0 (service '*')"]
    await admin.call("PUT", "/api/v1/escalation-routes", [])
    await admin.call("DELETE", f"/api/v1/escalation-policies/{policy['id']}", status=204)
    await admin.call("DELETE", f"/api/v1/users/{alice['id']}", status=204)


async def test_routes_pick_a_policy_by_service_and_severity_and_scale_its_waits(
    admin: Admin, sessions: sessionmaker[Session],
) -> None:
    alice = await admin.user("Alice", "+14155550100")
    ops = await admin.create("/api/v1/contact-groups", {"name": "ops", "members": [alice["id"]]})
    urgent = await admin.create("/api/v1/escalation-policies", {
        "name": "checkout urgent", "repeat": 1, "ack_timeout_seconds": 600, "ivr_attempts": 2,
        "steps": [step("email", ["email"], [("user", alice["id"])], wait=301), step("call", ["ivr"], [("group", ops["id"])])],
        "manager": step("boss", ["sms"], [("user", alice["id"])], wait=60),
        "severity_multipliers": {"critical": 0.5, "warning": 3},
    })
    fallback = await admin.create("/api/v1/escalation-policies", {
        "name": "any service", "steps": [step("email", ["email"], [("group", ops["id"])], wait=120)],
    })
    err = await admin.refused("PUT", "/api/v1/escalation-routes", [
        {"service": "checkout", "policy_id": urgent["id"]}, {"service": "*", "policy_id": 999999}], 422, "validation_error")
    assert fields(err) == {"body.1.policy_id": "escalation policy 999999 does not exist"}
    routes = (await admin.call("PUT", "/api/v1/escalation-routes", [
        {"service": "checkout", "severities": ["critical", "warning"], "policy_id": urgent["id"]},
        {"service": "*", "severities": ["critical", "high"], "policy_id": fallback["id"]},
        {"service": "search", "policy_id": urgent["id"]},  # shadowed for critical/high by the wildcard above
    ])).json()
    assert [(r["position"], r["policy_name"]) for r in routes] == [(0, "checkout urgent"), (1, "any service"), (2, "checkout urgent")]
    assert (await admin.call("GET", "/api/v1/escalation-routes")).json() == routes

    def freeze(service: str, severity: Severity) -> FrozenPolicy:
        with sessions() as session:
            return freeze_policy(session=session, service=service, severity=severity, default=DEFAULT)

    critical = freeze("checkout", Severity.critical)
    assert (critical.policy_id, critical.name, critical.repeat, critical.ack_timeout_seconds, critical.ivr_attempts) == (
        urgent["id"], "checkout urgent", 1, 600, 2)
    assert [s.wait_seconds for s in critical.steps] == [151, 150]  # 301 * 0.5 rounds half up; the default 300 halves
    assert critical.manager is not None and critical.manager.wait_seconds == 30
    assert [[(t.kind, t.id, t.name) for t in s.targets] for s in critical.steps] == [
        [(TargetKind.user, alice["id"], "Alice")], [(TargetKind.group, ops["id"], "ops")]]
    assert [s.wait_seconds for s in freeze("checkout", Severity.warning).steps] == [903, 900]
    assert freeze("checkout", Severity.high).name == "any service"  # not in the first route's severities
    assert freeze("billing", Severity.critical).steps[0].wait_seconds == 120  # no multiplier: unscaled
    assert freeze("search", Severity.info).name == "checkout urgent"
    assert [s.wait_seconds for s in freeze("search", Severity.info).steps] == [301, 300]  # no info multiplier
    assert freeze("billing", Severity.warning) == DEFAULT  # no route matches

    # Editing the policy changes what the next freeze gets; what was frozen stays as it was.
    await admin.call("PATCH", f"/api/v1/escalation-policies/{urgent['id']}", {"repeat": 0})
    assert freeze("checkout", Severity.critical).repeat == 0 and critical.repeat == 1


# --- resolving targets and the preview ----------------------------------------------------------


async def test_resolve_targets_for_each_kind(admin: Admin, sessions: sessionmaker[Session]) -> None:
    alice = await admin.user("Alice", "+14155550100")
    bob, carol, dave = await admin.user("Bob"), await admin.user("Carol"), await admin.user("Dave")
    ops = await admin.create("/api/v1/contact-groups", {"name": "ops", "members": [carol["id"], alice["id"], bob["id"]]})
    empty = await admin.create("/api/v1/contact-groups", {"name": "nobody", "members": []})
    gone = await admin.create("/api/v1/contact-groups", {"name": "gone", "members": []})
    primary = await admin.create("/api/v1/schedules", {"name": "primary", "timezone": "UTC", "rotation_start": "2026-01-05",
                                                       "participants": [bob["id"]]})
    later = await admin.create("/api/v1/schedules", {"name": "later", "timezone": "UTC", "rotation_start": "2030-01-07",
                                                     "participants": [bob["id"]]})
    hook = await admin.create("/api/v1/webhooks", {"name": "chatops", "url": "https://chat.example.com/hook", "secret": "k"})
    await admin.call("DELETE", f"/api/v1/users/{dave['id']}", status=204)
    await admin.call("DELETE", f"/api/v1/contact-groups/{gone['id']}", status=204)

    targets = [
        PolicyTarget(kind=TargetKind.user, id=alice["id"], name="Alice"),
        PolicyTarget(kind=TargetKind.group, id=ops["id"], name="ops"),
        PolicyTarget(kind=TargetKind.schedule, id=primary["id"], name="primary"),
        PolicyTarget(kind=TargetKind.webhook, id=hook["id"], name="chatops"),
        PolicyTarget(kind=TargetKind.contact, name="noc", email="noc@example.com", phone="+14155550199"),
        PolicyTarget(kind=TargetKind.user, id=dave["id"], name="Dave"),  # deleted since the freeze
        PolicyTarget(kind=TargetKind.group, id=gone["id"], name="gone"),
        PolicyTarget(kind=TargetKind.group, id=empty["id"], name="nobody"),
        PolicyTarget(kind=TargetKind.schedule, id=later["id"], name="later"),
    ]
    with sessions() as session:
        result = resolve_targets(session=session, targets=targets, at=utc(2026, 2, 1, 12))
    assert [(r.kind, r.id, r.name, r.via) for r in result.recipients] == [
        (TargetKind.user, alice["id"], "Alice", "user Alice"),
        (TargetKind.user, carol["id"], "Carol", "group ops"),
        (TargetKind.user, bob["id"], "Bob", "group ops"),  # on call too, but already paged through the group
        (TargetKind.webhook, hook["id"], "chatops", "webhook chatops"),
        (TargetKind.contact, None, "noc", "contact noc"),
    ]
    first = result.recipients[0]
    assert (first.email, first.phone) == ("alice@example.com", "+14155550100")
    assert result.recipients[3].url == "https://chat.example.com/hook"
    assert (result.recipients[4].email, result.recipients[4].phone) == ("noc@example.com", "+14155550199")
    assert result.unresolved == [
        "user Dave: deleted", "group gone: deleted", "group nobody: no members", "schedule later: nobody on call"]

    with sessions() as session:
        oncall = resolve_targets(session=session, targets=[targets[2]], at=utc(2026, 2, 1, 12))
    assert [(r.name, r.via) for r in oncall.recipients] == [("Bob", "schedule primary (on call)")]


def test_rungs_time_the_ladder_and_deliveries_fit_channels_to_recipients() -> None:
    person = PolicyTarget(kind=TargetKind.user, id=1)
    policy = FrozenPolicy(
        name="p", repeat=1,
        steps=[PolicyStep(name="a", channels=[Channel.email], targets=[person], wait_seconds=60),
               PolicyStep(name="b", channels=[Channel.sms], targets=[person], wait_seconds=120)],
        manager=PolicyStep(name="boss", channels=[Channel.email], targets=[person], wait_seconds=999),
    )
    assert [(r.round, r.index, r.step.name, r.offset_seconds, r.manager) for r in rungs(policy)] == [
        (0, 0, "a", 0, False), (0, 1, "b", 60, False), (1, 0, "a", 180, False), (1, 1, "b", 240, False),
        (1, 2, "boss", 360, True),  # the manager follows the last step's wait
    ]
    both = PolicyStep(name="x", channels=[Channel.sms, Channel.email, Channel.webhook, Channel.ivr], targets=[person], wait_seconds=0)
    phone_only = Recipient(kind=TargetKind.user, id=1, name="a", phone="+14155550100")
    email_only = Recipient(kind=TargetKind.user, id=2, name="b", email="b@example.com")
    hook = Recipient(kind=TargetKind.webhook, id=3, name="h", url="https://x.example.com")
    assert [(r.name, c) for r, c in deliveries(both, [phone_only, email_only, hook])] == [
        ("a", Channel.sms), ("a", Channel.ivr), ("b", Channel.email), ("h", Channel.webhook)]


async def test_preview_resolves_each_step_at_its_own_time(admin: Admin) -> None:
    alice = await admin.user("Alice")  # email only
    bob = await admin.user("Bob", "+14155550101")
    boss = await admin.user("Boss", "+14155550199")
    schedule = await admin.create("/api/v1/schedules", {
        "name": "primary", "timezone": "Europe/Paris", "handoff_weekday": 0, "handoff_time": "10:00",
        "rotation_start": "2026-01-05", "participants": [alice["id"], bob["id"]],
    })
    empty = await admin.create("/api/v1/schedules", {"name": "secondary", "timezone": "UTC", "rotation_start": "2030-01-07"})
    policy = await admin.create("/api/v1/escalation-policies", {
        "name": "checkout",
        "steps": [step("page on-call", ["email", "sms"], [("schedule", schedule["id"]), ("schedule", empty["id"])], wait=600),
                  step("call on-call", ["sms", "ivr"], [("schedule", schedule["id"])], wait=900)],
        "manager": step("boss", ["email"], [("user", boss["id"])]),
        "ivr_attempts": 2, "severity_multipliers": {"critical": 0.5},
    })
    url = f"/api/v1/escalation-policies/{policy['id']}/preview"
    # 10:00 Paris on Monday 2026-01-12 is 09:00 UTC: Alice hands over to Bob between step 1 and step 2.
    body = (await admin.call("POST", url, {"severity": "warning", "start": "2026-01-12T08:55:00Z"})).json()
    entries = [(e["offset_seconds"], e["at"], e["round"], e["step_index"], e["step_name"], e["manager"], e["channel"],
                e["recipient"], e["address"], e["via"], e["attempts"]) for e in body["entries"]]
    assert entries == [
        (0, "2026-01-12T08:55:00Z", 0, 0, "page on-call", False, "email", "Alice", "alice@example.com",
         "schedule primary (on call)", 1),
        (600, "2026-01-12T09:05:00Z", 0, 1, "call on-call", False, "sms", "Bob", "+14155550101",
         "schedule primary (on call)", 1),
        (600, "2026-01-12T09:05:00Z", 0, 1, "call on-call", False, "ivr", "Bob", "+14155550101",
         "schedule primary (on call)", 2),
        (1500, "2026-01-12T09:20:00Z", 0, 2, "boss", True, "email", "Boss", "boss@example.com", "user Boss", 1),
    ]
    assert [(g["step_index"], g["problem"]) for g in body["unresolved"]] == [(0, "schedule secondary: nobody on call")]
    assert [s["wait_seconds"] for s in body["policy"]["steps"]] == [600, 900]

    # Critical halves the waits: step 2 lands exactly on the handoff instant, which belongs to Bob.
    critical = (await admin.call("POST", url, {"severity": "critical", "start": "2026-01-12T08:55:00Z"})).json()
    assert [(e["offset_seconds"], e["recipient"], e["channel"]) for e in critical["entries"]] == [
        (0, "Alice", "email"), (300, "Bob", "sms"), (300, "Bob", "ivr"), (750, "Boss", "email")]
    # A week earlier Alice is on call for both steps; she has no phone, so step 2 reaches nobody.
    early = (await admin.call("POST", url, {"severity": "warning", "start": "2026-01-05T09:00:00Z"})).json()
    assert [(e["step_index"], e["recipient"]) for e in early["entries"]] == [(0, "Alice"), (2, "Boss")]
    assert [(g["step_index"], g["problem"]) for g in early["unresolved"]] == [
        (0, "schedule secondary: nobody on call"), (1, "schedule primary (on call): not reachable by sms, ivr")]

    assert list(fields(await admin.refused("POST", url, {"severity": "warning", "start": "2026-01-12T08:55:00"},
                                           422, "validation_error"))) == ["body.start"]
    await admin.refused("POST", url, {"severity": "sev1"}, 422, "validation_error")
    await admin.refused("POST", "/api/v1/escalation-policies/999999/preview", {"severity": "critical"}, 404, "not_found")
    now = (await admin.call("POST", url, {"severity": "info"})).json()
    assert abs(datetime.fromisoformat(now["start"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_openapi_lists_the_new_endpoints_and_their_errors(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    expected = {
        "/api/v1/users": {"get", "post"}, "/api/v1/users/{user_id}": {"get", "patch", "delete"},
        "/api/v1/contact-groups": {"get", "post"}, "/api/v1/contact-groups/{group_id}": {"get", "patch", "delete"},
        "/api/v1/schedules": {"get", "post"}, "/api/v1/schedules/{schedule_id}": {"get", "patch", "delete"},
        "/api/v1/schedules/{schedule_id}/overrides": {"get", "post"},
        "/api/v1/schedules/{schedule_id}/overrides/{override_id}": {"delete"},
        "/api/v1/schedules/{schedule_id}/oncall": {"get"},
        "/api/v1/webhooks": {"get", "post"}, "/api/v1/webhooks/{webhook_id}": {"get", "patch", "delete"},
        "/api/v1/escalation-policies": {"get", "post"},
        "/api/v1/escalation-policies/{policy_id}": {"get", "patch", "delete"},
        "/api/v1/escalation-policies/{policy_id}/preview": {"post"},
        "/api/v1/escalation-routes": {"get", "put"},
    }
    for path, methods in expected.items():
        assert set(schema["paths"][path]) == methods, path
        for method in methods:
            responses = schema["paths"][path][method]["responses"]
            assert {"401", "403", "422"} <= set(responses), (path, method)
            assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "409" in schema["paths"]["/api/v1/users/{user_id}"]["delete"]["responses"]
