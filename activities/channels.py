"""Delivery channels: SMTP email and the SMS/IVR provider adapters (console for now)."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol

from jinja2 import Environment, FileSystemLoader, select_autoescape

from vigil.contracts import NotifyInput
from vigil.escalation import mask_target
from vigil.logging import get_logger
from vigil.settings import SmtpSettings

log = get_logger(__name__)
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
)


class PermanentDeliveryError(Exception):
    """The provider refused for good (bad address, invalid number); retrying will not help."""


class PhoneProvider(Protocol):
    """An SMS or IVR backend. Returns the provider's message id."""

    name: str

    def send(self, inp: NotifyInput, text: str) -> str: ...


class ConsoleProvider:
    """Writes the SMS or call to the log; the local stand-in until a real provider is configured."""

    name = "console"

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send(self, inp: NotifyInput, text: str) -> str:
        message_id = f"console-{uuid.uuid4().hex[:12]}"
        log.warning(
            f"{self.channel.upper()} to {mask_target(inp.step.target)}: {text}",
            channel=self.channel,
            target=mask_target(inp.step.target),
            incident=f"INC-{inp.number}",
            idempotency_key=inp.idempotency_key,
            provider_message_id=message_id,
        )
        return message_id


def short_text(inp: NotifyInput) -> str:
    """The SMS / IVR text: short, and it names the incident."""
    return f"[Vigil] INC-{inp.number} {inp.severity.value.upper()} {inp.service}: {inp.title}"[:300]


class EmailSender:
    """Sends one email per call over SMTP (plain, STARTTLS or implicit TLS, optional auth)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def render(self, inp: NotifyInput) -> EmailMessage:
        ctx = {"n": inp, "ref": f"INC-{inp.number}"}
        msg = EmailMessage()
        msg["Subject"] = f"[Vigil] INC-{inp.number} [{inp.severity.value}] {inp.service}: {inp.title}"
        msg["From"] = self.settings.from_addr
        msg["To"] = inp.step.target
        msg["Message-ID"] = make_msgid(domain="vigil.local")
        msg["X-Vigil-Incident"] = f"INC-{inp.number}"
        msg["X-Vigil-Idempotency-Key"] = inp.idempotency_key
        msg.set_content(TEMPLATES.get_template("incident_email.txt.j2").render(ctx))
        msg.add_alternative(TEMPLATES.get_template("incident_email.html.j2").render(ctx), subtype="html")
        return msg

    def send(self, inp: NotifyInput) -> str:
        s = self.settings
        msg = self.render(inp)
        smtp_cls = smtplib.SMTP_SSL if s.ssl else smtplib.SMTP
        try:
            with smtp_cls(s.host, s.port, timeout=s.timeout_seconds) as smtp:
                if s.starttls and not s.ssl:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username and s.password:
                    smtp.login(s.username, s.password.get_secret_value())
                smtp.send_message(msg)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as err:
            raise PermanentDeliveryError(str(err)) from err
        return str(msg["Message-ID"])
