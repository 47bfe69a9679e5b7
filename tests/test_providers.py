"""SMS/IVR adapters, outgoing webhooks, signatures and acknowledge links, over real HTTP to tests/provider_server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from activities.channels import PermanentDeliveryError as ChannelsPermanentDeliveryError
from tests.conftest import LOOPBACK, free_port
from tests.helpers import eventually
from tests.provider_server import ProviderServer, Received
from vigil.contracts import LegacyStep, NotifyInput, Severity
from vigil.providers import (
    ConsoleProvider,
    HttpPhoneProvider,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
    build_phone_providers,
)
from vigil.providers import acklinks, signing
from vigil.providers.callbacks import CallbackType, ProviderCallback, parse_ack_reply
from vigil.providers.transport import retry_after_seconds
from vigil.providers.webhook import WebhookIncident, WebhookMessage, WebhookSender, incident_text
from vigil.settings import AckLinkSettings, ProviderSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"ack-link-secret"


def message(channel: str = "sms", key: str = "INC-42/r0s1/sms/+15550100100") -> OutboundMessage:
    return OutboundMessage(
        channel=channel, to="+15550100100", text="[Vigil] INC-42 CRITICAL checkout: High error rate",
        idempotency_key=key, incident="INC-42", ack_code="42",
        callback_url="http://vigil.test/api/v1/providers/middleware/callbacks",
    )


@pytest.fixture
def phones(provider: ProviderServer) -> Iterator[dict[str, HttpPhoneProvider]]:
    built = build_phone_providers(provider.provider_settings(read_timeout_seconds=2.0), LOOPBACK)
    yield built  # type: ignore[misc]
    for adapter in built.values():
        adapter.close()


def only(requests: list[Received]) -> Received:
    assert len(requests) == 1, requests
    return requests[0]


# --- the HTTP middleware adapter ------------------------------------------------------------------


def test_sms_is_signed_and_accepted(provider: ProviderServer, phones: dict[str, HttpPhoneProvider]) -> None:
    result = phones["sms"].send(message())

    request = only(provider.requests)
    assert request.status == 200 and request.path == "/sms"
    assert result.message_id == provider.sent[0].message_id
    h = request.headers
    assert h["idempotency-key"] == "INC-42/r0s1/sms/+15550100100"
    assert h["content-type"] == "application/json"
    assert re.fullmatch(r"vigil/\S+", h["user-agent"])
    assert abs(int(h["x-vigil-timestamp"]) - time.time()) < 5
    # Vigil's own verifier agrees with the server's independent check.
    signing.verify(provider.secret, h["x-vigil-timestamp"], h["x-vigil-signature"], request.body, now=time.time())
    assert request.json == {
        "channel": "sms", "to": "+15550100100", "text": "[Vigil] INC-42 CRITICAL checkout: High error rate",
        "idempotency_key": "INC-42/r0s1/sms/+15550100100", "incident": "INC-42", "ack_code": "42",
        "callback_url": "http://vigil.test/api/v1/providers/middleware/callbacks",
    }


def test_ivr_goes_to_its_own_url_with_the_ack_digit(
    provider: ProviderServer, phones: dict[str, HttpPhoneProvider]
) -> None:
    phones["ivr"].send(message("ivr", key="INC-42/r0s2/ivr/+15550100100"))
    request = only(provider.requests)
    assert request.path == "/ivr" and request.json["channel"] == "ivr" and request.json["ack_digit"] == "1"
    assert phones["ivr"].name == "middleware"


def test_wrong_secret_is_refused_by_the_provider_and_permanent(provider: ProviderServer) -> None:
    adapter = HttpPhoneProvider(name="middleware", channel="sms", url=provider.url("sms"), secret=b"not-the-secret",
                                allowlist=LOOPBACK)
    with pytest.raises(PermanentDeliveryError, match="401"):
        adapter.send(message())
    adapter.close()
    assert only(provider.requests).status == 401 and provider.sent == []


def test_a_repeated_key_sends_once(provider: ProviderServer, phones: dict[str, HttpPhoneProvider]) -> None:
    first = phones["sms"].send(message())
    second = phones["sms"].send(message())
    other = phones["sms"].send(message(key="INC-42/r1s1/sms/+15550100100"))

    assert first.message_id == second.message_id != other.message_id
    assert provider.key_counts()["INC-42/r0s1/sms/+15550100100"] == 2
    assert provider.sends_by_key() == {"INC-42/r0s1/sms/+15550100100": 1, "INC-42/r1s1/sms/+15550100100": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_are_transient_and_the_retry_sends_once(
    status: int, provider: ProviderServer, phones: dict[str, HttpPhoneProvider]
) -> None:
    provider.fail_next(1, status, body="upstream gateway down")
    with pytest.raises(TransientDeliveryError, match=str(status)) as err:
        phones["sms"].send(message())
    assert err.value.retry_after_seconds is None
    assert provider.sent == []

    phones["sms"].send(message())  # what Temporal's retry does: same message, same key
    assert provider.sends_by_key() == {"INC-42/r0s1/sms/+15550100100": 1}


def test_429_is_transient_with_retry_after(provider: ProviderServer, phones: dict[str, HttpPhoneProvider]) -> None:
    provider.fail_next(1, 429, retry_after=7, body="slow down")
    with pytest.raises(TransientDeliveryError, match="429") as err:
        phones["sms"].send(message())
    assert err.value.retry_after_seconds == 7.0
    assert "Retry-After 7s" in str(err.value)


@pytest.mark.parametrize("status", [400, 404, 422, 302])
def test_refusals_are_permanent_with_status_and_truncated_body(
    status: int, provider: ProviderServer, phones: dict[str, HttpPhoneProvider]
) -> None:
    provider.fail_next(1, status, body=json.dumps({"error": "invalid number\n" + "x" * 1000, "debug": "db_password=1"}))
    with pytest.raises(PermanentDeliveryError) as err:
        phones["sms"].send(message())
    text = str(err.value)
    # Only the contract's `error` string, bounded and on one line; never the rest of the body.
    assert f"HTTP {status}" in text and "invalid number x" in text and len(text) < 300
    assert "db_password" not in text and "\n" not in text
    # Importable from the old place too, as the same class.
    assert isinstance(err.value, ChannelsPermanentDeliveryError)


def test_connection_refused_is_transient(provider: ProviderServer) -> None:
    adapter = HttpPhoneProvider(
        name="middleware", channel="sms", url=provider.url("sms"), secret=provider.secret,
        connect_timeout_seconds=2.0, allowlist=LOOPBACK,
    )
    provider.stop()
    with pytest.raises(TransientDeliveryError, match="connection error"):
        adapter.send(message())
    adapter.close()


def test_unused_port_is_transient() -> None:
    adapter = HttpPhoneProvider(
        name="middleware", channel="sms", url=f"http://127.0.0.1:{free_port()}/sms", secret=b"s",
        connect_timeout_seconds=2.0, allowlist=LOOPBACK,
    )
    with pytest.raises(TransientDeliveryError):
        adapter.send(message())
    adapter.close()


def test_read_timeout_is_transient_and_the_retry_does_not_send_twice(provider: ProviderServer) -> None:
    adapter = HttpPhoneProvider(
        name="middleware", channel="sms", url=provider.url("sms"), secret=provider.secret, read_timeout_seconds=0.3,
        allowlist=LOOPBACK,
    )
    provider.latency = 5.0
    with pytest.raises(TransientDeliveryError, match="timeout"):
        adapter.send(message())
    assert len(provider.sent) == 1  # the provider did send; only its answer was late

    provider.latency = 0.0
    result = adapter.send(message())
    adapter.close()
    assert result.message_id == provider.sent[0].message_id
    assert provider.sends_by_key() == {"INC-42/r0s1/sms/+15550100100": 1}


def test_missing_message_id_falls_back_to_the_key(
    provider: ProviderServer, phones: dict[str, HttpPhoneProvider]
) -> None:
    provider.omit_message_id = True
    assert phones["sms"].send(message()).message_id == "INC-42/r0s1/sms/+15550100100"


async def test_held_send_is_in_flight_until_released(provider: ProviderServer) -> None:
    """The hold crash tests use: the message counts as sent while its answer is withheld."""
    adapter = HttpPhoneProvider(name="middleware", channel="sms", url=provider.url("sms"), secret=provider.secret,
                                allowlist=LOOPBACK)
    provider.hold()
    send = asyncio.create_task(asyncio.to_thread(adapter.send, message()))
    await eventually(lambda: provider.in_flight == 1)
    assert len(provider.sent) == 1 and not send.done()
    provider.release()
    result = await asyncio.wait_for(send, timeout=10)
    adapter.close()
    assert result.message_id == provider.sent[0].message_id and provider.in_flight == 0


def test_outbound_message_requires_e164() -> None:
    with pytest.raises(ValidationError):
        OutboundMessage.model_validate(message().model_dump() | {"to": "555-0100"})


# --- console adapters -------------------------------------------------------------------------------


def test_console_adapter() -> None:
    assert ConsoleProvider("sms").send(message()).message_id.startswith("console-")


# --- outgoing webhooks --------------------------------------------------------------------------------


def webhook(provider: ProviderServer, name: str = "ops", secret: str | None = None) -> WebhookMessage:
    incident = WebhookIncident(
        number=42, title="High error rate", severity="critical", service="checkout", status="triggered",
        url="http://vigil.test/api/v1/incidents/INC-42", temporal_url="http://ui.test/INC-42", step="sms on-call",
    )
    return WebhookMessage(
        url=provider.hook_url(name), secret=secret, idempotency_key=f"INC-42/r0s1/webhook/{name}",
        text=incident_text(incident), incident=incident,
    )


@pytest.fixture
def sender() -> Iterator[WebhookSender]:
    s = WebhookSender(read_timeout_seconds=2.0, allowlist=LOOPBACK)
    yield s
    s.close()


def test_webhook_is_slack_compatible_and_unsigned_without_secret(
    provider: ProviderServer, sender: WebhookSender
) -> None:
    sender.send(webhook(provider))
    (body,) = provider.hooks("ops")
    assert isinstance(body["text"], str) and "INC-42" in body["text"] and "<http://vigil.test/" in body["text"]
    assert "blocks" not in body and body["event"] == "escalation"
    assert body["incident"] == {
        "number": 42, "title": "High error rate", "severity": "critical", "service": "checkout",
        "status": "triggered", "url": "http://vigil.test/api/v1/incidents/INC-42",
        "temporal_url": "http://ui.test/INC-42", "step": "sms on-call",
    }
    headers = only(provider.requests).headers
    assert headers["idempotency-key"] == "INC-42/r0s1/webhook/ops"
    assert "x-vigil-signature" not in headers


def test_webhook_is_signed_when_it_has_a_secret(provider: ProviderServer, sender: WebhookSender) -> None:
    provider.set_hook_secret("signed", b"hook-secret")
    sender.send(webhook(provider, "signed", secret="hook-secret"))
    assert len(provider.hooks("signed")) == 1
    with pytest.raises(PermanentDeliveryError, match="401"):
        sender.send(webhook(provider, "signed", secret="wrong"))
    assert "hook-secret" not in repr(webhook(provider, "signed", secret="hook-secret"))


def test_webhook_errors_are_classified(provider: ProviderServer, sender: WebhookSender) -> None:
    provider.fail_next(1, 503, path="/hooks/ops")
    with pytest.raises(TransientDeliveryError):
        sender.send(webhook(provider))
    provider.fail_next(1, 410, body="db_password=hunter2", path="/hooks/ops")
    with pytest.raises(PermanentDeliveryError) as err:
        sender.send(webhook(provider))
    assert str(err.value) == "HTTP 410 Gone"  # a receiver's body is never kept (it reaches the notification log)
    assert provider.hooks("ops") == []


# --- signatures ---------------------------------------------------------------------------------------


def test_signature_round_trip_and_rejections() -> None:
    secret, body, now = b"s3cret", b'{"a":1}', 1_767_225_600
    sig = signing.sign(secret, now, body)
    assert sig == "sha256=" + hmac.new(secret, f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    signing.verify(secret, str(now), sig, body, now=now + 10)
    signing.verify(secret, str(now), sig, body, now=datetime.fromtimestamp(now, UTC))

    bad = [
        (str(now), sig, b'{"a":2}', now),  # tampered body
        (str(now), sig.replace("sha256=", "sha256=0"), body, now),  # bad signature
        (str(now), signing.sign(b"other", now, body), body, now),  # other secret
        (str(now), sig, body, now + 301),  # stale
        (str(now), sig, body, now - 301),  # from the future
        (None, sig, body, now),
        (str(now), None, body, now),
        ("12x", sig, body, now),
        (str(now), "sha256=é", body, now),
    ]
    for ts, signature, payload, at in bad:
        with pytest.raises(signing.InvalidSignature):
            signing.verify(secret, ts, signature, payload, now=at)


def test_docs_verification_snippet_accepts_vigil_requests(
    provider: ProviderServer, phones: dict[str, HttpPhoneProvider]
) -> None:
    """The Python snippet operators copy from docs/providers.md verifies what the adapter sends."""
    doc = (ROOT / "docs" / "providers.md").read_text()
    section = doc.split("## Implementing your own SMS/IVR provider", 1)[1]
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "def verify_vigil" in block]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102
    phones["sms"].send(message())
    request = only(provider.requests)
    assert namespace["verify_vigil_request"](provider.secret, request.headers, request.body)
    assert not namespace["verify_vigil_request"](b"wrong", request.headers, request.body)


async def test_provider_callback_helper_signs_like_vigil_expects(provider: ProviderServer) -> None:
    payload = {"event_id": "evt-1", "type": "sms_reply", "message_id": "msg-1", "from": "+15550100100",
               "text": "ACK 42"}
    body, headers = provider.signed(payload)
    signing.verify(provider.secret, headers["X-Vigil-Timestamp"], headers["X-Vigil-Signature"], body, now=time.time())
    # Over TCP to a receiver that checks the same scheme (here: the server's own hook endpoint).
    provider.set_hook_secret("vigil", provider.secret)
    assert (await provider.callback(provider.hook_url("vigil"), payload)).status_code == 200
    assert provider.callback_sync(provider.hook_url("vigil"), payload, secret=b"wrong").status_code == 401
    assert provider.hooks("vigil") == [payload]


# --- callbacks ----------------------------------------------------------------------------------------


def test_callback_model() -> None:
    cb = ProviderCallback.model_validate_json(json.dumps({
        "event_id": "evt-1", "type": "ivr_keypress", "message_id": "msg-1", "from": "+15550100100",
        "digits": "1", "occurred_at": "2026-01-01T00:00:00Z", "vendor_extra": {"x": 1},
    }))
    assert cb.type == CallbackType.ivr_keypress and cb.from_ == "+15550100100" and cb.digits == "1"
    assert cb.idempotency_key is None and cb.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert cb.model_dump(by_alias=True)["from"] == "+15550100100"
    for bad in ({"type": "opened"}, {"from": "5550100"}, {"event_id": ""}):
        with pytest.raises(ValidationError):
            ProviderCallback.model_validate({"event_id": "e", "type": "delivered", "message_id": "m"} | bad)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("ACK 123", 123), ("ack 123", 123), (" Ack  123 ", 123), ("ACK\t42\n", 42), ("ack INC-42", 42),
        ("ACK", None), ("ACK123", None), ("ACKNOWLEDGE 123", None), ("ok ack 123", None), ("ACK 1 2", None),
        ("", None), ("yes", None), ("ACK 0", None), ("ACK 9223372036854775808", None), ("ACK 1" + "0" * 30, None),
    ],
)
def test_parse_ack_reply(text: str, code: int | None) -> None:
    assert parse_ack_reply(text) == code


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


# --- acknowledge links --------------------------------------------------------------------------------


def test_ack_link_round_trip() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = acklinks.make_token(SECRET, number=42, recipient="alice@example.com", expires_at=now + timedelta(days=1),
                                nonce="n-1")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token) and len(token) < 160
    claim = acklinks.read_token(SECRET, token, now=now)
    assert claim == acklinks.AckClaim(42, "alice@example.com", now + timedelta(days=1), "n-1")


def test_ack_link_tampering_and_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = acklinks.make_token(SECRET, number=42, recipient="a@x", expires_at=now + timedelta(hours=1), nonce="n")
    head, sig = token.split(".")
    forged_head = acklinks._b64(json.dumps({"n": 43, "r": "a@x", "e": int(now.timestamp()) + 3600, "k": "n"},
                                           separators=(",", ":")).encode())
    for bad in (f"{forged_head}.{sig}", f"{head}.{sig[:-2]}AA", f"{head}.", "garbage", "", f"{head}.{sig}!",
                f"{head}x.{sig}"):
        with pytest.raises(acklinks.InvalidToken):
            acklinks.read_token(SECRET, bad, now=now)
    with pytest.raises(acklinks.InvalidToken):
        acklinks.read_token(b"other secret", token, now=now)
    with pytest.raises(acklinks.ExpiredToken):
        acklinks.read_token(SECRET, token, now=now + timedelta(hours=1))
    with pytest.raises(ValueError):
        acklinks.make_token(SECRET, number=1, recipient="a@x", expires_at=datetime(2026, 1, 1), nonce="n")


def test_ack_link_with_a_valid_signature_over_junk_is_invalid() -> None:
    head = acklinks._b64(b'{"n":"42"}')
    token = f"{head}.{acklinks._b64(acklinks._mac(SECRET, head))}"
    with pytest.raises(acklinks.InvalidToken, match="malformed payload"):
        acklinks.read_token(SECRET, token, now=datetime.now(UTC))


# --- settings -----------------------------------------------------------------------------------------


def test_provider_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="VIGIL_PROVIDER_SECRET is required"):
        ProviderSettings(sms_url="http://sms.example/send")
    with pytest.raises(ValidationError, match="VIGIL_PROVIDER_SECRET is required"):
        ProviderSettings(ivr_url="http://ivr.example/call", secret=SecretStr(""))
    with pytest.raises(ValidationError, match="http"):
        ProviderSettings(sms_url="sms.example/send", secret=SecretStr("s"))
    with pytest.raises(ValidationError):
        ProviderSettings(name="Has Spaces")

    monkeypatch.setenv("VIGIL_PROVIDER_SMS_URL", "https://sms.example/send")
    monkeypatch.setenv("VIGIL_PROVIDER_SECRET", "s3cret")
    monkeypatch.setenv("VIGIL_ACK_LINK_TTL_SECONDS", "600")
    settings = Settings()
    assert settings.providers.sms_url == "https://sms.example/send" and settings.ack_links.ttl_seconds == 600
    assert "s3cret" not in repr(settings)
    built = build_phone_providers(settings)
    assert isinstance(built["sms"], HttpPhoneProvider) and isinstance(built["ivr"], ConsoleProvider)
    built["sms"].close()
    assert AckLinkSettings().secret is None


def test_console_when_nothing_is_configured() -> None:
    built = build_phone_providers(ProviderSettings())
    assert {c: type(p) for c, p in built.items()} == {"sms": ConsoleProvider, "ivr": ConsoleProvider}
