"""Email over real TLS: STARTTLS and implicit TLS against real aiosmtpd servers, with trustme certificates."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr, ValidationError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.channels import EmailSender, SmtpLoginRefused
from tests.conftest import free_port
from tests.flows import attempts
from vigil.bootstrap import create_integration
from vigil.contracts import Channel, NotifyInput, Recipient, Severity, TargetKind
from vigil.models import Incident, Integration
from vigil.settings import Settings, SmtpSettings
from worker import build_notify

USER, PASSWORD = "vigil", "s3cret"
STARTTLS, IMPLICIT = "starttls", "implicit"


@dataclass
class Received:
    message: EmailMessage
    rcpt_tos: list[str]
    authenticated: bool
    over_tls: bool


@dataclass
class Mailbox:
    """aiosmtpd handler and authenticator: one account, every delivery kept with how its session looked."""

    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (mechanism, accepted)

    def authenticate(  # noqa: ANN001
        self, server, session, envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = auth_data == LoginPassword(USER.encode(), PASSWORD.encode())
        self.logins.append((mechanism, ok))
        # handled=False: aiosmtpd itself replies 535 to a refusal (the default leaves the client hanging).
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.received.append(Received(
            message=message_from_bytes(envelope.original_content or envelope.content, policy=policy.default),
            rcpt_tos=list(envelope.rcpt_tos),
            authenticated=bool(session.authenticated),
            over_tls=server.transport.get_extra_info("ssl_object") is not None,
        ))
        return "250 OK"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA, name: str = "127.0.0.1") -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    return ctx


@contextmanager
def smtp_server(
    mode: str, tls: ssl.SSLContext, *, exclude_auth: tuple[str, ...] = ()
) -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server on 127.0.0.1 that accepts only USER/PASSWORD, and only over TLS."""
    mailbox = Mailbox()
    if mode == STARTTLS:
        tls_kwargs: dict[str, object] = {
            "tls_context": tls, "require_starttls": True, "auth_require_tls": True,
        }
    else:
        # aiosmtpd 1.4 counts only STARTTLS as TLS for auth_require_tls; the handler checks the socket.
        tls_kwargs = {"ssl_context": tls, "auth_require_tls": False}
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), authenticator=mailbox.authenticate,
        auth_exclude_mechanism=list(exclude_auth), **tls_kwargs,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def sender(mode: str, port: int, *, ca_file: Path | None, password: str = PASSWORD) -> EmailSender:
    return EmailSender(SmtpSettings(
        host="127.0.0.1", port=port, username=USER, password=SecretStr(password), starttls=mode == STARTTLS,
        ssl=mode == IMPLICIT, ca_file=ca_file, timeout_seconds=5,
    ))


def page(number: int = 7) -> NotifyInput:
    return NotifyInput(
        number=number, title="High error rate", severity=Severity.critical, service="checkout",
        step_name="email on-call", channel=Channel.email,
        recipient=Recipient(kind=TargetKind.contact, name="on-call", email="oncall@example.com"),
        step_index=0, ladder_round=0, idempotency_key=f"INC-{number}:0:0:email:on-call",
        incident_url=f"http://vigil.test/incidents/INC-{number}", temporal_url="http://temporal.test/",
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_with_login_delivers(ca: trustme.CA, ca_file: Path, mechanism: str) -> None:
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    with smtp_server(STARTTLS, server_context(ca), exclude_auth=(other,)) as (port, mailbox):
        message_id = sender(STARTTLS, port, ca_file=ca_file).send(page(), ack_url=None)

    assert mailbox.logins == [(mechanism, True)]
    [got] = mailbox.received
    assert got.authenticated and got.over_tls
    assert got.rcpt_tos == ["oncall@example.com"]
    assert got.message["Message-ID"] == message_id
    assert got.message["X-Vigil-Incident"] == "INC-7"


def test_implicit_tls_with_login_delivers(ca: trustme.CA, ca_file: Path) -> None:
    with smtp_server(IMPLICIT, server_context(ca)) as (port, mailbox):
        message_id = sender(IMPLICIT, port, ca_file=ca_file).send(page(), ack_url=None)

    assert [accepted for _, accepted in mailbox.logins] == [True]
    [got] = mailbox.received
    assert got.authenticated and got.over_tls
    assert got.message["Message-ID"] == message_id


@pytest.mark.parametrize("mode", [STARTTLS, IMPLICIT])
@pytest.mark.parametrize("refusal", ["untrusted CA", "system store only", "other host name"])
def test_unverifiable_certificate_is_refused(ca: trustme.CA, ca_file: Path, mode: str, refusal: str) -> None:
    if refusal == "untrusted CA":
        tls, trusted = server_context(trustme.CA()), ca_file
    elif refusal == "system store only":
        tls, trusted = server_context(ca), None
    else:
        tls, trusted = server_context(ca, name="mail.example.com"), ca_file
    with smtp_server(mode, tls) as (port, mailbox):
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            sender(mode, port, ca_file=trusted).send(page(), ack_url=None)

    assert isinstance(caught.value, OSError), "an OSError: the activity retries it"
    assert mailbox.logins == [], "the password must not reach an unverified server"
    assert mailbox.received == []


@pytest.mark.parametrize("mode", [STARTTLS, IMPLICIT])
def test_wrong_password_is_refused(ca: trustme.CA, ca_file: Path, mode: str) -> None:
    with smtp_server(mode, server_context(ca)) as (port, mailbox):
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            sender(mode, port, ca_file=ca_file, password="wrong").send(page(), ack_url=None)

    assert mailbox.logins and not any(accepted for _, accepted in mailbox.logins)
    assert mailbox.received == []
    assert str(caught.value) == (
        "SMTP login refused (535 5.7.8 Authentication credentials invalid); "
        "check VIGIL_SMTP_USERNAME and VIGIL_SMTP_PASSWORD"
    )


def test_wrong_password_is_readable_in_the_notification_log(
    ca: trustme.CA, ca_file: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        create_integration(session, name="smtp-tls")
        session.flush()
        integration = session.query(Integration).filter_by(name="smtp-tls").one()
        incident = Incident(
            group_key="smtp-tls", integration_id=integration.id, service="checkout", severity="critical",
            title="High error rate", status="triggered",
        )
        session.add(incident)
        session.flush()
        number = incident.number
    with smtp_server(STARTTLS, server_context(ca)) as (port, mailbox):
        smtp = SmtpSettings(
            host="127.0.0.1", port=port, username=USER, password=SecretStr("wrong"), starttls=True,
            ca_file=ca_file, timeout_seconds=5,
        )
        notify = build_notify(settings.model_copy(update={"smtp": smtp}), sessions)
        try:
            with pytest.raises(SmtpLoginRefused):
                ActivityEnvironment().run(notify.send_notification, page(number))
        finally:
            notify.close()

    assert mailbox.received == []
    [row] = attempts(sessions, number)
    assert (row.status, row.error) == (
        "failed",
        "SmtpLoginRefused: SMTP login refused (535 5.7.8 Authentication credentials invalid); "
        "check VIGIL_SMTP_USERNAME and VIGIL_SMTP_PASSWORD",
    )


def test_ssl_and_starttls_together_are_rejected() -> None:
    exclusive = r"VIGIL_SMTP_SSL .* and VIGIL_SMTP_STARTTLS .* exclude each other"
    with pytest.raises(ValidationError, match=exclusive):
        SmtpSettings(ssl=True, starttls=True)


def test_ca_file_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SMTP_CA_FILE", "/etc/vigil/smtp-ca.pem")
    assert SmtpSettings().ca_file == Path("/etc/vigil/smtp-ca.pem")
    monkeypatch.setenv("VIGIL_SMTP_CA_FILE", "")
    assert SmtpSettings().ca_file is None
