"""The local SMTP catcher stores real SMTP deliveries as .eml files."""

from __future__ import annotations

import email
import email.policy
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import pytest

from devtools.smtp_catcher import make_controller

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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


def test_greeting_names_the_outbox(tmp_path: Path) -> None:
    """`make run` shows the greeting of a catcher it finds already running: it says where the emails go."""
    outbox = tmp_path / "outbox"
    port = free_port()
    controller = make_controller(outbox, "127.0.0.1", port)
    controller.start()
    try:
        client = smtplib.SMTP(timeout=5)
        code, greeting = client.connect("127.0.0.1", port)
        client.quit()
    finally:
        controller.stop()
    assert code == 220
    assert f"Vigil SMTP catcher, outbox {outbox}" in greeting.decode()


def test_message_that_cannot_be_stored_is_refused_for_retry(tmp_path: Path) -> None:
    """The outbox was deleted: 451 (the sender retries later), not 500 with a FileNotFoundError."""
    outbox = tmp_path / "outbox"
    port = free_port()
    controller = make_controller(outbox, "127.0.0.1", port)
    controller.start()
    try:
        shutil.rmtree(outbox)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("vigil@localhost", ["oncall@localhost"], b"Subject: INC-1\r\n\r\nbody\r\n")
    finally:
        controller.stop()
    assert refused.value.smtp_code == 451, refused.value
    assert b"Cannot store the message" in refused.value.smtp_error


def test_catcher_stops_when_its_outbox_is_deleted(tmp_path: Path) -> None:
    """An orphaned catcher whose directory is gone must free its port instead of failing every email."""
    outbox = tmp_path / "outbox"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.smtp_catcher", "--host", "127.0.0.1", "--port", str(port),
         "--outbox", str(outbox)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        eventually(lambda: listening(port) or proc.poll() is not None, timeout=15)
        assert proc.poll() is None, proc.communicate()[0]
        shutil.rmtree(outbox)
        code = proc.wait(timeout=10)
        out = proc.communicate()[0]
    finally:
        proc.kill()
        proc.wait()
    assert code == 1, out
    assert f"outbox {outbox}/ is gone" in out
    assert not listening(port)
