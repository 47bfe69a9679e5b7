"""The incident JSON and filters a responder expects: assignee, retriggers_at / snoozed_until, actor names for
people, the acknowledger unmasked for responders; several statuses, `open`, assignee and time-range filters;
the email's Incident link opens a read-only page in a browser, and the raw .eml keeps the ack URL whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session, sessionmaker

from devtools.smtp_catcher import make_controller
from tests.conftest import Inbox, Keys, free_port
from tests.flows import attempts, fixture, post_alertmanager, trigger
from tests.helpers import eventually
from vigil.bootstrap import ack_link_secret
from vigil.models import utcnow
from vigil.providers.acklinks import make_token
from vigil.settings import Settings, SmtpSettings
from vigil.viewlinks import make_view_token

INCIDENTS = "/api/v1/incidents"


async def get(api: httpx.AsyncClient, key: str, path: str, **params: object) -> httpx.Response:
    return await api.get(path, params=params, headers={"Authorization": f"Bearer {key}"})


async def listed(api: httpx.AsyncClient, keys: Keys, **params: object) -> list[int]:
    resp = await get(api, keys.viewer, INCIDENTS, **params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["items"])
    return [i["number"] for i in body["items"]]


async def post(api: httpx.AsyncClient, keys: Keys, number: int, verb: str, body: dict | None = None) -> dict:
    resp = await api.post(f"{INCIDENTS}/INC-{number}/{verb}", json=body, headers=keys.auth(keys.responder))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_status_takes_several_values_and_open_assignee_and_time_range_filter(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    before = utcnow() - timedelta(seconds=1)
    triggered = await trigger(api, keys, dedup_key="f-1", component="one")
    acked = await trigger(api, keys, dedup_key="f-2", component="two")
    resolved = await trigger(api, keys, dedup_key="f-3", component="three")
    await post(api, keys, acked, "acknowledge")
    await post(api, keys, acked, "assign", {"assignee": "rita@test"})
    await post(api, keys, resolved, "resolve", {"resolution": "rolled back"})
    await eventually(lambda: listed(api, keys, status="acknowledged"))
    await eventually(lambda: listed(api, keys, status="resolved"))

    assert await listed(api, keys, status=["triggered", "acknowledged"]) == [acked, triggered]
    assert await listed(api, keys, status="open") == [resolved, acked, triggered]
    assert await listed(api, keys, status=["resolved", "closed"]) == [resolved]
    assert await eventually(lambda: listed(api, keys, assignee="rita@test")) == [acked]
    assert await listed(api, keys, assignee="nobody@test") == []
    [item] = (await get(api, keys.viewer, INCIDENTS, assignee="rita@test")).json()["items"]
    assert item["assignee"] == "rita@test"

    after = utcnow() + timedelta(seconds=1)
    assert await listed(api, keys, opened_after=before.isoformat()) == [resolved, acked, triggered]
    assert await listed(api, keys, opened_after=after.isoformat()) == []
    assert await listed(api, keys, opened_before=before.isoformat()) == []
    # A time without a zone is UTC, as at the ingest door.
    naive = before.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert await listed(api, keys, opened_after=naive, status="triggered") == [triggered]

    for params, code in (({"status": "bogus"}, "validation_error"),
                         ({"opened_after": after.isoformat(), "opened_before": before.isoformat()}, "invalid_range"),
                         ({"opened_after": "yesterday"}, "validation_error")):
        resp = await get(api, keys.viewer, INCIDENTS, **params)
        assert resp.status_code == 422 and set(resp.json()) == {"error"}, resp.text
        assert resp.json()["error"]["code"] == code, resp.text


async def test_one_incident_says_who_owns_it_until_when_it_is_quiet_and_names_actors_for_people(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    [ref] = (await post_alertmanager(api, keys.integration, fixture("alertmanager-0.25-webhook-firing.json")))["incidents"]
    number = int(ref.removeprefix("INC-"))
    # Once the first page went, the policy (and its ack timeout) is frozen into the incident.
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    acked = await post(api, keys, number, "acknowledge")
    assert (acked["acknowledged_by"], acked["acknowledged_by_name"]) == ("user:rita@test", "rita@test")
    at = datetime.fromisoformat(acked["acknowledged_at"])
    assert datetime.fromisoformat(acked["retriggers_at"]) == at + timedelta(minutes=30)  # the default ack timeout
    assert acked["snoozed_until"] is None

    snoozed = await post(api, keys, number, "snooze", {"minutes": 90})
    until = datetime.fromisoformat(snoozed["snoozed_until"])
    assert snoozed["retriggers_at"] == snoozed["snoozed_until"] and until - utcnow() > timedelta(minutes=89)
    assigned = await post(api, keys, number, "assign", {"assignee": "rita@test"})
    assert assigned["assignee"] == "rita@test"

    # A viewer's read (projection + the workflow's state for an acknowledged incident) says the same.
    async def projected() -> dict:
        body = (await get(api, keys.viewer, f"{INCIDENTS}/{ref}")).json()
        assert body["assignee"] == "rita@test" and body["status"] == "acknowledged"
        return body
    body = await eventually(projected)
    assert body["snoozed_until"] == snoozed["snoozed_until"] and body["acknowledged_by_name"] == "rita@test"
    names = {(e["actor"], e["actor_name"]) for e in body["timeline"]}
    assert ("user:rita@test", "rita@test") in names
    assert all(":" not in name for _, name in names), names

    resolved = await post(api, keys, number, "resolve", {"resolution": "fixed"})
    assert (resolved["retriggers_at"], resolved["snoozed_until"]) == (None, None)
    assert resolved["resolved_by_name"] == "rita@test"


async def test_the_email_link_acknowledger_is_unmasked_for_responders_only(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox,
) -> None:
    number = await trigger(api, keys, dedup_key="unmask")
    [mail] = await eventually(lambda: inbox.for_incident(number))
    ack = re.search(r"Acknowledge:\s+(\S+)", mail.get_body(preferencelist=("plain",)).get_content())
    assert ack is not None
    assert (await api.post(ack.group(1).removeprefix("http://127.0.0.1:8000"))).status_code == 200

    async def read(key: str) -> str:
        body = (await get(api, key, f"{INCIDENTS}/INC-{number}")).json()
        assert body["acknowledged_by_name"], body
        return body["acknowledged_by_name"]
    assert await eventually(lambda: read(keys.viewer)) == "oncal@… (email link)"
    assert await read(keys.responder) == "oncall@localhost (email link)"
    assert await read(keys.admin) == "oncall@localhost (email link)"


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[tuple[Controller, Path]]:
    """Vigil's own SMTP catcher (make run's), which stores each message's raw bytes as an .eml file."""
    outbox = tmp_path / "outbox"
    controller = make_controller(outbox, port=free_port())
    controller.start()
    yield controller, outbox
    controller.stop()


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Email to the catcher for a test that takes it."""
    if "catcher" not in request.fixturenames:
        return settings
    controller, _ = request.getfixturevalue("catcher")
    return settings.model_copy(update={"smtp": SmtpSettings(host="127.0.0.1", port=controller.port)})


async def test_raw_eml_keeps_the_urls_whole_and_the_incident_link_opens_a_page_in_a_browser(
    api: httpx.AsyncClient, worker: None, keys: Keys, catcher: tuple[Controller, Path], settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    body = fixture("alertmanager-0.25-webhook-runbook.json")
    body["alerts"][0]["annotations"]["summary"] = "checkout über budget — 14× too fast"  # non-ASCII in the mail
    [ref] = (await post_alertmanager(api, keys.integration, body))["incidents"]
    number = int(ref.removeprefix("INC-"))
    [eml] = await eventually(lambda: list(catcher[1].glob("*.eml")))
    raw = eml.read_bytes()

    base = settings.core.public_url.encode()
    ack = re.search(rb"^Acknowledge:\s+(" + re.escape(base) + rb"/ack/[A-Za-z0-9_.-]+)\r?$", raw, re.MULTILINE)
    page = re.search(rb"^Incident:\s+(" + re.escape(base) + rb"/view/[A-Za-z0-9_.-]+)\r?$", raw, re.MULTILINE)
    assert ack and page, raw.decode(errors="replace")
    ack_path = ack.group(1).decode().removeprefix(settings.core.public_url)
    page_path = page.group(1).decode().removeprefix(settings.core.public_url)
    assert rb"=\r\n" not in raw and rb"=3D" not in raw  # no quoted-printable soft breaks or escapes
    assert (await api.get(ack_path)).status_code == 200  # the confirmation page: the URL arrived whole

    view = await api.get(page_path)  # no API key: what a browser sends
    assert view.status_code == 200 and view.headers["content-type"].startswith("text/html"), view.text
    assert view.headers["referrer-policy"] == "no-referrer" and "default-src 'none'" in view.headers["content-security-policy"]
    runbook = body["alerts"][0]["annotations"]["runbook_url"]
    assert f"{ref} <small>[critical]</small> checkout" in view.text and f'<a href="{runbook}"' in view.text
    assert "checkout über budget" in view.text and "<form" not in view.text  # read-only

    secret = ack_link_secret(settings)
    soon = utcnow() + timedelta(hours=1)
    as_ack = make_token(secret, number=number, recipient="oncall@localhost", expires_at=soon, nonce="n1")
    assert (await api.get(f"/view/{as_ack}")).status_code == 400  # an ack token does not open the page …
    as_view = make_view_token(secret, number=number, recipient="oncall@localhost", expires_at=soon)
    assert (await api.post(f"/ack/{as_view}")).status_code == 400  # … and a view token never acknowledges
    expired = make_view_token(secret, number=number, recipient="oncall@localhost", expires_at=utcnow() - timedelta(seconds=1))
    assert (await api.get(f"/view/{expired}")).status_code == 410
    gone = make_view_token(secret, number=number + 1000, recipient="oncall@localhost", expires_at=soon)
    assert (await api.get(f"/view/{gone}")).status_code == 404
    assert [a.status for a in attempts(sessions, number)] == ["sent"]
