"""Several API processes under one command (issue 11): `python -m api.serve` with VIGIL_API_WORKERS=2 ingests and
acknowledges, and /metrics from whichever process answers counts the requests of both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from tests.conftest import ROOT, Keys, free_port
from tests.helpers import eventually, pd_event
from vigil.settings import Settings


@pytest.fixture
def served(settings: Settings, client: Client, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, metrics = free_port(), tmp_path / "metrics"
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": settings.core.database_url, "VIGIL_DATA_DIR": str(settings.core.data_dir),
        "VIGIL_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "VIGIL_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "VIGIL_SMTP_HOST": settings.smtp.host, "VIGIL_SMTP_PORT": str(settings.smtp.port),
        "VIGIL_API_HOST": "127.0.0.1", "VIGIL_API_PORT": str(port), "VIGIL_API_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics), "VIGIL_LOG_FORMAT": "json",
    }
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "api.serve"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", metrics
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn's parent stops its workers
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


async def get(base: str, path: str, **kwargs: object) -> httpx.Response:
    # A new connection per request: the kernel hands each to whichever process accepts first.
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return await http.request(kwargs.pop("method", "GET"), path, **kwargs)  # type: ignore[arg-type]


async def up(base: str) -> bool:
    try:
        return (await get(base, "/healthz")).status_code == 200
    except httpx.TransportError:
        return False  # not listening yet


def ingested(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vigil_ingest_requests_total" and sample.labels == {"endpoint": "enqueue", "status": "202"}:
                return sample.value
    return 0.0


async def test_two_api_processes_ingest_acknowledge_and_count_together(
    served: tuple[str, Path], worker: None, keys: Keys
) -> None:
    base, metrics = served
    await eventually(lambda: up(base), timeout=60)
    sent, incidents = 0, set()

    def both_served() -> bool:  # each process writes its counters to its own file
        return len(list(metrics.glob("counter_*.db"))) >= 2

    while not both_served() and sent < 200:
        resp = await get(base, "/v2/enqueue", method="POST", json=pd_event(keys.integration, f"w-{sent}"))
        assert resp.status_code == 202, resp.text
        incidents.add(resp.json()["message"].removeprefix("Event processed: "))
        sent += 1
    assert both_served(), "one process answered 200 connections: cannot tell the counts apart"
    assert len(incidents) == 1  # one group, one incident, whichever process stored its alerts

    # Every process answers with the sum over both.
    for _ in range(6):
        resp = await get(base, "/metrics")
        assert resp.status_code == 200
        assert ingested(resp.text) == sent

    (incident,) = incidents
    ack = await get(base, f"/api/v1/incidents/{incident}/acknowledge", method="POST",
                    headers=keys.auth(keys.responder), json={})
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged"
