"""Real processes the crash tests stop and start: a persisted Temporal dev server, and `worker.py` itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT, free_port, start_dev_server
from vigil.settings import Settings


class RestartableServer:
    """A dev server on a fixed port with a database file: stopped and started again with its state."""

    def __init__(self, db_file: Path) -> None:
        self.db_file, self.port = db_file, free_port()
        self.env: WorkflowEnvironment | None = None

    async def start(self) -> Client:
        self.env = await start_dev_server(port=self.port, dev_server_database_filename=str(self.db_file))
        return self.env.client

    async def stop(self) -> None:
        assert self.env is not None
        await self.env.shutdown()
        self.env = None


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc, self.log = proc, log

    def events(self) -> list[str]:
        events = []
        for line in self.log.read_text().splitlines():
            try:
                events.append(json.loads(line)["event"])
            except (json.JSONDecodeError, KeyError):
                continue
        return events


def worker_env(client: Client, settings: Settings) -> dict[str, str]:
    """`settings` as the VIGIL_* variables `python worker.py` reads (SMS/IVR middleware included, if set)."""
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": settings.core.database_url,
        "VIGIL_DATA_DIR": str(settings.core.data_dir),
        "VIGIL_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "VIGIL_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "VIGIL_SMTP_HOST": settings.smtp.host,
        "VIGIL_SMTP_PORT": str(settings.smtp.port),
        "VIGIL_WORKER_METRICS_PORT": "0",
        "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        "VIGIL_LOG_FORMAT": "json",
        "VIGIL_RCA_REQUIRED_SEVERITIES": settings.rca.required_severities,
        # The test receivers (SMTP, middleware) listen on loopback, as the suite's own settings allow.
        "VIGIL_PRIVATE_URL_ALLOWLIST": json.dumps([str(n) for n in settings.core.private_url_allowlist]),
    }
    p = settings.providers
    for name, value in (("SMS_URL", p.sms_url), ("IVR_URL", p.ivr_url), ("NAME", p.name)):
        if value is not None:
            env[f"VIGIL_PROVIDER_{name}"] = value
    if p.secret is not None:
        env["VIGIL_PROVIDER_SECRET"] = p.secret.get_secret_value()
    return env


@contextmanager
def worker_process(client: Client, settings: Settings, log: Path) -> Iterator[WorkerProcess]:
    """`python worker.py` with `settings`, logging JSON to `log`; killed on exit if still running."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=worker_env(client, settings), stdout=out,
            stderr=subprocess.STDOUT, text=True,
        )
    try:
        yield WorkerProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
