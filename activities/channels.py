"""Delivery channels: SMTP email here; SMS/IVR adapters live in vigil.providers."""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from vigil.alert_context import AlertContext
from vigil.contracts import Channel, NotifyInput
from vigil.logging import get_logger
from vigil.providers import PermanentDeliveryError
from vigil.settings import SmtpSettings
from vigil.contracts import incident_ref

__all__ = ["EmailSender", "PermanentDeliveryError", "SmtpLoginRefused", "short_text"]
log = get_logger(__name__)
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    # The HTML template is `*.html.j2`: without its full suffix here, alert text would be rendered as raw HTML.
    autoescape=select_autoescape(["html", "html.j2"]),
    keep_trailing_newline=True,
)


# An SMS carries the runbook's URL only while the whole text fits two concatenated segments (2 x 153 GSM-7
# characters): a longer text costs more segments and some phones split it.
SMS_MAX_CHARS = 306
# SMTP's line limit is 998 octets: a part whose lines fit is sent 8bit, so the raw message keeps every URL
# whole on its line (quoted-printable would cut the ack link with `=` soft breaks); a longer line falls back.
SMTP_LINE_OCTETS = 998


def short_text(inp: NotifyInput, runbook: str | None = None) -> str:
    """The SMS / IVR text: short, it names the incident, how to acknowledge from the phone and, when it fits,
    the runbook."""
    head = f"[Vigil] {incident_ref(inp.number)} {inp.severity.value.upper()} {inp.service}: {inp.title}"[:240]
    how = "Press 1 to acknowledge." if inp.target_channel == Channel.ivr else f"Reply ACK {inp.number} to acknowledge."
    text = f"{head} {how}"
    if runbook and inp.target_channel == Channel.sms and len(text) + len(runbook) + 10 <= SMS_MAX_CHARS:
        text += f" Runbook: {runbook}"
    return text


def _cte(text: str) -> str:
    """8bit when every line fits SMTP's limit (URLs stay whole in the raw .eml), else quoted-printable."""
    fits = all(len(line.encode()) <= SMTP_LINE_OCTETS for line in text.splitlines())
    return "8bit" if fits else "quoted-printable"


def message_id(idempotency_key: str, from_addr: str) -> str:
    """The same Message-ID for every send of one page, so mail clients show a resent email once."""
    domain = parseaddr(from_addr)[1].rpartition("@")[2] or "vigil.local"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<vigil.{digest}@{domain}>"


class SmtpLoginRefused(smtplib.SMTPAuthenticationError):
    """Wrong SMTP credentials: still an OSError, so retried, but named plainly in the notification log."""

    @property
    def reply(self) -> str:
        text = self.smtp_error
        return f"{self.smtp_code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"

    def __str__(self) -> str:
        return f"SMTP login refused ({self.reply}); check VIGIL_SMTP_USERNAME and VIGIL_SMTP_PASSWORD"


class EmailSender:
    """Sends one email per call over SMTP (plain, STARTTLS or implicit TLS, optional auth)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def render(
        self, inp: NotifyInput, ack_url: str | None = None, view_url: str | None = None,
        contexts: dict[str, AlertContext] | None = None,
    ) -> EmailMessage:
        ctx = {
            "n": inp, "ref": incident_ref(inp.number), "ack_url": ack_url, "view_url": view_url or inp.incident_url,
            "contexts": contexts or {},
        }
        msg = EmailMessage()
        msg["Subject"] = f"[Vigil] {incident_ref(inp.number)} [{inp.severity.value}] {inp.service}: {inp.title}"
        msg["From"] = self.settings.from_addr
        msg["To"] = inp.address
        msg["Message-ID"] = message_id(inp.idempotency_key, self.settings.from_addr)
        msg["X-Vigil-Incident"] = incident_ref(inp.number)
        msg["X-Vigil-Idempotency-Key"] = inp.idempotency_key
        text = TEMPLATES.get_template("incident_email.txt.j2").render(ctx)
        html = TEMPLATES.get_template("incident_email.html.j2").render(ctx)
        msg.set_content(text, cte=_cte(text))
        msg.add_alternative(html, subtype="html", cte=_cte(html))
        return msg

    def tls_context(self) -> ssl.SSLContext:
        """A verifying context: certificate and host name are checked, against `ca_file` if set."""
        ca_file = self.settings.ca_file
        # Built per send, not at start: a bad CA file fails the email (retried, in the notification log),
        # never the worker and with it every other channel.
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def send(
        self, inp: NotifyInput, ack_url: str | None = None, view_url: str | None = None,
        contexts: dict[str, AlertContext] | None = None,
    ) -> str:
        return self.deliver(self.render(inp, ack_url, view_url, contexts), number=inp.number)

    def deliver(self, msg: EmailMessage, *, number: int) -> str:
        """Send a composed email (it carries its own Message-ID); returns that Message-ID."""
        s = self.settings
        try:
            # smtplib.SMTP_SSL without a context would use the stdlib's unverified one.
            smtp = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=self.tls_context())
                if s.ssl else smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
            )
            with smtp:
                if s.starttls:
                    smtp.starttls(context=self.tls_context())
                if s.username and s.password:
                    smtp.login(s.username, s.password.get_secret_value())
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as err:
            refused = SmtpLoginRefused(err.smtp_code, err.smtp_error)
            log.error(
                "smtp login refused; check VIGIL_SMTP_USERNAME and VIGIL_SMTP_PASSWORD",
                integration=self.name, incident=incident_ref(number), host=s.host, port=s.port,
                username=s.username, reply=refused.reply,
            )
            raise refused from err
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as err:
            raise PermanentDeliveryError(str(err)) from err
        return str(msg["Message-ID"])
