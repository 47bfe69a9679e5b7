"""The local SMTP catcher stores real SMTP deliveries as .eml files."""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

from devtools.smtp_catcher import make_controller

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(probe: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.05) -> T:
    """Return the first truthy result of `probe`, or fail once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)  # eventually: poll interval


def test_message_is_stored_as_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    port = free_port()
    controller = make_controller(outbox, "127.0.0.1", port)
    controller.start()
    try:
        msg = EmailMessage()
        msg["From"] = "Vigil <vigil@localhost>"
        msg["To"] = "oncall@localhost"
        msg["Subject"] = "INC-1 [critical] checkout: HighErrorRate"
        msg.set_content("High error rate on checkout.")
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.send_message(msg, to_addrs=["oncall@localhost", "hidden@localhost"])

        files = eventually(lambda: sorted(outbox.glob("*.eml")))
    finally:
        controller.stop()

    assert len(files) == 1
    assert not list(outbox.glob(".incoming-*")), "temp file left behind"
    stored = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert stored["Subject"] == "INC-1 [critical] checkout: HighErrorRate"
    assert stored["To"] == "oncall@localhost"
    assert "hidden@localhost" in stored["X-Envelope-To"]
    assert stored.get_content().strip() == "High error rate on checkout."
