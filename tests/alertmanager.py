"""A real Alertmanager process for end-to-end tests (Debian `prometheus-alertmanager`, 0.25 in bookworm).

`make test` and `.ci/run` install the package (scripts/ensure-debian-packages.sh). A missing binary fails the
test with what to install; it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.helpers import eventually

ALERTMANAGER_BIN = os.environ.get("VIGIL_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0


def alertmanager_binary() -> str:
    path = shutil.which(ALERTMANAGER_BIN)
    if path is None:
        pytest.fail(
            f"Alertmanager binary {ALERTMANAGER_BIN} not found: install the Debian package prometheus-alertmanager "
            "(`make test` does it via scripts/ensure-debian-packages.sh; by hand: "
            "`sudo apt-get install prometheus-alertmanager`), or set VIGIL_ALERTMANAGER_BIN",
            pytrace=False,
        )
    return path


def route(receiver: str, **overrides: object) -> dict:
    """A route that groups like Vigil (service + alertname) and flushes fast enough for a test."""
    return {
        "receiver": receiver,
        "group_by": ["service", "alertname"],
        "group_wait": "1s",
        "group_interval": "1s",
        "repeat_interval": "1h",
        **overrides,
    }


def webhook_receiver(name: str, url: str, bearer: str) -> dict:
    return {
        "name": name,
        "webhook_configs": [
            {
                "url": url,
                "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials": bearer}},
            }
        ],
    }


def pagerduty_receiver(name: str, url: str, routing_key: str) -> dict:
    """Alertmanager's own PagerDuty Events v2 client, pointed at `url` instead of events.pagerduty.com."""
    return {"name": name, "pagerduty_configs": [{"url": url, "routing_key": routing_key, "send_resolved": True}]}


@dataclass
class Alertmanager:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """The process's output, for assertion messages."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def post_alerts(self, alerts: list[dict]) -> None:
        """POST /api/v2/alerts, as Prometheus does."""
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(f"{self.url}/api/v2/alerts", json=alerts)
        assert resp.status_code == 200, f"{resp.status_code} {resp.text}\n{self.log()}"

    async def alerts(self) -> list[dict]:
        """GET /api/v2/alerts: what Alertmanager currently holds as active."""
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.get(f"{self.url}/api/v2/alerts")
        resp.raise_for_status()
        return resp.json()


def alert(
    labels: dict[str, str], *, summary: str, starts_at: datetime | None = None, ends_in: timedelta | None = None,
    omit_starts_at: bool = False,
) -> dict:
    """One alert in the /api/v2/alerts (postableAlert) shape; without startsAt, Alertmanager stamps its own."""
    start = starts_at or datetime.now(timezone.utc)
    body: dict = {"labels": labels, "annotations": {"summary": summary}}
    if not omit_starts_at:
        body["startsAt"] = _rfc3339(start)
    if ends_in is not None:
        body["endsAt"] = _rfc3339(start + ends_in)
    return body


def _rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@asynccontextmanager
async def running_alertmanager(workdir: Path, config: dict) -> AsyncIterator[Alertmanager]:
    """Start Alertmanager on a free 127.0.0.1 port, clustering off, state under `workdir`; wait for /-/ready."""
    binary = alertmanager_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url={url}",
                "--cluster.listen-address=",  # empty: no gossip, so two instances are an unclustered HA pair
                "--log.level=debug",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    am = Alertmanager(url=url, process=process, log_path=log_path)
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                assert process.poll() is None, f"alertmanager exited with {process.returncode}:\n{am.log()}"
                try:
                    return (await http.get(f"{url}/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=READY_TIMEOUT_SECONDS, interval=0.1)
        yield am
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
