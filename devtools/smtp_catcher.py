"""Local SMTP catcher: every message received is stored as an .eml file in the outbox."""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from vigil.settings import CoreSettings, SmtpSettings

OUTBOX_CHECK_SECONDS = 1.0


def outbox_dir(data_dir: Path) -> Path:
    """The outbox directory under a data directory."""
    return data_dir / "outbox"


class OutboxHandler:
    """aiosmtpd handler that writes each message to `outbox_dir` as `<utc-timestamp>-<id>.eml`."""

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = Path(outbox_dir)
        self.outbox_dir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message and accept it."""
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # Bcc recipients only exist in the envelope; keep them so a reader can tell who was really paged.
        trace = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        try:
            path = self.store(trace + raw)
        except OSError as err:
            # A 4xx, not aiosmtpd's 500 for an exception: the sender retries, and by then a catcher that can
            # store it is listening (this one stops once its outbox is gone, see main).
            print(f"cannot store a message from={envelope.mail_from}: {err}", flush=True)
            return f"451 4.3.0 Cannot store the message: {err.strerror or err}"
        subject = BytesHeaderParser().parsebytes(raw).get("Subject", "")
        print(
            f"received from={envelope.mail_from} to={','.join(envelope.rcpt_tos)} "
            f"subject={subject!r} file={path}",
            flush=True,
        )
        return "250 Message accepted for delivery"

    def store(self, data: bytes) -> Path:
        """Write `data` atomically to a new .eml file and return its path."""
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.eml"
        final = self.outbox_dir / name
        # Readers glob *.eml, so they never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=self.outbox_dir, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final


def make_controller(outbox: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    """An aiosmtpd Controller (not started) that stores messages into `outbox`, and names it in its greeting."""
    # `make run` shows the greeting of an SMTP server it finds already listening: this says whose outbox it is.
    return Controller(
        OutboxHandler(outbox), hostname=host, port=port, ident=f"Vigil SMTP catcher, outbox {outbox}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the catcher until SIGINT or SIGTERM (exit 0) or until its outbox directory is gone (exit 1)."""
    smtp = SmtpSettings()
    parser = argparse.ArgumentParser(prog="python -m devtools.smtp_catcher", description=__doc__)
    parser.add_argument("--host", default=smtp.host, help="default: VIGIL_SMTP_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=smtp.port, help="default: VIGIL_SMTP_PORT or 1025")
    parser.add_argument("--outbox", type=Path, default=outbox_dir(CoreSettings().data_dir))
    args = parser.parse_args(argv)

    # Block the signals before the server thread starts so it inherits the mask and sigwait gets them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    controller = make_controller(args.outbox, args.host, args.port)
    controller.start()
    print(f"listening on {args.host}:{args.port}, storing into {args.outbox}/", flush=True)
    try:
        while (received := signal.sigtimedwait(stop_signals, OUTBOX_CHECK_SECONDS)) is None:
            # An orphaned catcher whose outbox was deleted kept its port and failed every email; better gone.
            if not args.outbox.is_dir():
                print(f"outbox {args.outbox}/ is gone; stopping rather than refusing every email", flush=True)
                return 1
        print(f"{signal.Signals(received.si_signo).name} received, stopping", flush=True)
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
