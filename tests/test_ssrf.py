"""SSRF: webhook and provider URLs that reach loopback, link-local or private addresses are refused when an
admin sets them (422 naming the field) and again before every request; bodies and webhook URLs stay out of
what viewers read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import ip_network

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.main import create_app
from tests.conftest import LOOPBACK, Keys
from tests.provider_server import ProviderServer
from tests.test_api import assert_error
from vigil.bootstrap import create_integration
from vigil.models import Incident, NotificationAttempt, Webhook, utcnow
from vigil.providers import PermanentDeliveryError, build_phone_providers
from vigil.providers.base import OutboundMessage
from vigil.providers.webhook import WebhookIncident, WebhookMessage, WebhookSender
from vigil.settings import Settings
from vigil.urls import UnsafeUrl, check_url, mask_url

INTERNAL = [
    "http://169.254.169.254/latest/meta-data/iam/",  # cloud metadata (link-local)
    "http://localhost:8080/admin",  # a name: resolved, to loopback
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
    "http://10.0.0.7/hook",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # shared address space (carrier-grade NAT)
    "http://0.0.0.0:8000/",
    "https://[fe80::1]/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="VIGIL_PRIVATE_URL_ALLOWLIST"):
        check_url(url, [])


def test_public_addresses_and_the_allow_list_pass() -> None:
    check_url("https://93.184.215.14/hook", [])
    check_url("http://[2606:4700::1111]/", [])
    check_url("http://localhost:8080/", LOOPBACK)
    check_url("http://10.0.0.7/hook", [ip_network("10.0.0.0/24")])
    with pytest.raises(UnsafeUrl):
        check_url("http://10.0.1.7/hook", [ip_network("10.0.0.0/24")])
    with pytest.raises(UnsafeUrl, match="http"):
        check_url("file:///etc/passwd", [])


@pytest.fixture
async def strict_api(settings: Settings, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the production default: no private network allowed."""
    strict = settings.model_copy(update={"core": settings.core.model_copy(update={"private_url_allowlist": []})})
    transport = httpx.ASGITransport(app=create_app(strict, client))
    async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test") as http:
        yield http


@pytest.mark.parametrize("url", INTERNAL[:4])
async def test_admin_api_refuses_internal_webhook_urls(strict_api: httpx.AsyncClient, keys: Keys, url: str) -> None:
    admin = keys.auth(keys.admin)
    err = assert_error(await strict_api.post("/api/v1/webhooks", json={"name": "x", "url": url}, headers=admin),
                       422, "validation_error")
    assert [d["field"] for d in err["details"]] == ["body.url"]
    hook = (await strict_api.post("/api/v1/webhooks", json={"name": "ok", "url": "https://chat.example.com/h"},
                                  headers=admin)).json()
    err = assert_error(await strict_api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": url}, headers=admin),
                       422, "validation_error")
    assert [d["field"] for d in err["details"]] == ["body.url"]


def _hook_message(url: str) -> WebhookMessage:
    incident = WebhookIncident(number=1, title="t", severity="critical", service="s", status="triggered",
                               url="http://vigil.test/api/v1/incidents/INC-1")
    return WebhookMessage(url=url, idempotency_key="INC-1/r0s1/webhook/x", text="x", incident=incident)


def test_send_time_check_refuses_what_the_admin_check_let_through(provider: ProviderServer) -> None:
    """A URL stored earlier, or a name whose DNS answer changed since, is checked again before each request."""
    sender = WebhookSender(read_timeout_seconds=2.0)  # the production default: no allow-list
    port = provider.hook_url("x").rsplit(":", 1)[1].split("/")[0]
    for url in (provider.hook_url("x"), f"http://localhost:{port}/hooks/x"):
        with pytest.raises(PermanentDeliveryError, match="refused to send"):
            sender.send(_hook_message(url))
    sender.close()
    phones = build_phone_providers(provider.provider_settings())
    with pytest.raises(PermanentDeliveryError, match="refused to send"):
        phones["sms"].send(OutboundMessage(channel="sms", to="+15550100100", text="x", idempotency_key="k",
                                           incident="INC-1", ack_code="1", callback_url="http://vigil.test/cb"))
    phones["sms"].close()
    assert provider.requests == []  # nothing reached the internal service


async def test_viewers_see_webhook_urls_masked(
    api: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    secret_url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    with sessions.begin() as session:
        create_integration(session, name="i")
        session.flush()
        from vigil.models import Integration  # noqa: PLC0415

        integ = session.scalar(select(Integration.id))
        session.add(Incident(number=990001, group_key="g", integration_id=integ, service="s", severity="critical",
                             title="t", status="triggered"))
        session.flush()
        session.add(NotificationAttempt(incident_number=990001, idempotency_key="INC-990001/r0s1/webhook/chat",
                                        step="chat", channel="webhook", target=secret_url, provider="webhook",
                                        recipient="chat", status="failed", error="HTTP 500 Internal Server Error",
                                        started_at=utcnow()))
    for key in (keys.viewer, keys.admin):
        body = (await api.get("/api/v1/incidents/990001/notifications", headers=keys.auth(key))).text
        assert "XXXXSECRET" not in body and '"target":"https://hooks.slack.com/…"' in body
    assert mask_url(secret_url) == "https://hooks.slack.com/…"


async def test_webhook_secrets_are_encrypted_at_rest(
    api: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    made = (await api.post("/api/v1/webhooks", json={"name": "h", "url": "https://chat.example.com/h",
                                                       "secret": "hook-s3cret"}, headers=keys.auth(keys.admin))).json()
    with sessions() as session:
        raw = session.connection().exec_driver_sql(f"SELECT secret FROM webhooks WHERE id = {int(made['id'])}").scalar()
        assert raw and "hook-s3cret" not in raw and raw.startswith("gAAAAA")  # a Fernet token
        assert session.get(Webhook, made["id"]).secret == "hook-s3cret"
