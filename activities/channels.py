"""Delivery channels: SMTP email here; SMS/IVR adapters live in vigil.providers."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from vigil.contracts import Channel, NotifyInput
from vigil.providers import PermanentDeliveryError
from vigil.settings import SmtpSettings

__all__ = ["EmailSender", "PermanentDeliveryError", "short_text"]
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
)


def short_text(inp: NotifyInput) -> str:
    """The SMS / IVR text: short, it names the incident and says how to acknowledge from the phone."""
    head = f"[Vigil] INC-{inp.number} {inp.severity.value.upper()} {inp.service}: {inp.title}"[:240]
    how = "Press 1 to acknowledge." if inp.target_channel == Channel.ivr else f"Reply ACK {inp.number} to acknowledge."
    return f"{head} {how}"


class EmailSender:
    """Sends one email per call over SMTP (plain, STARTTLS or implicit TLS, optional auth)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def render(self, inp: NotifyInput, ack_url: str | None = None) -> EmailMessage:
        ctx = {"n": inp, "ref": f"INC-{inp.number}", "ack_url": ack_url}
        msg = EmailMessage()
        msg["Subject"] = f"[Vigil] INC-{inp.number} [{inp.severity.value}] {inp.service}: {inp.title}"
        msg["From"] = self.settings.from_addr
        msg["To"] = inp.address
        msg["Message-ID"] = make_msgid(domain="vigil.local")
        msg["X-Vigil-Incident"] = f"INC-{inp.number}"
        msg["X-Vigil-Idempotency-Key"] = inp.idempotency_key
        msg.set_content(TEMPLATES.get_template("incident_email.txt.j2").render(ctx))
        msg.add_alternative(TEMPLATES.get_template("incident_email.html.j2").render(ctx), subtype="html")
        return msg

    def send(self, inp: NotifyInput, ack_url: str | None = None) -> str:
        s = self.settings
        msg = self.render(inp, ack_url)
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
