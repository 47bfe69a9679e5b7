"""worker.py as a real process: graceful SIGTERM, and a replacement worker picks up the ladder's timers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import ROOT, Keys
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually
from vigil.settings import Settings


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


@contextmanager
def worker_process(client: Client, settings: Settings, log: Path) -> Iterator[WorkerProcess]:
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": settings.core.database_url,
        "VIGIL_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "VIGIL_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "VIGIL_SMTP_HOST": settings.smtp.host,
        "VIGIL_SMTP_PORT": str(settings.smtp.port),
        "VIGIL_WORKER_METRICS_PORT": "0",
        "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        "VIGIL_LOG_FORMAT": "json",
    }
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        yield WorkerProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_is_graceful_and_a_new_worker_keeps_the_timers(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper, settings: Settings,
    sessions: sessionmaker[Session], tmp_path: Path,
) -> None:
    with worker_process(client, settings, tmp_path / "a.log") as first:
        await eventually(lambda: "worker started" in first.events(), timeout=30)
        number = await trigger(api, keys)
        await eventually(lambda: [a.channel for a in attempts(sessions, number)] == ["email"])
        first.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(first.proc.wait, 20)
        assert code == 0, first.log.read_text()[-2000:]
        assert "worker stopped" in first.events()

    # A new deployment of the worker: the 5-minute SMS timer lives in Temporal, not in the old process.
    with worker_process(client, settings, tmp_path / "b.log") as second:
        await eventually(lambda: "worker started" in second.events(), timeout=30)
        await skipper.fast_forward(handle_of(client, number), timedelta(minutes=5, seconds=1))
        await eventually(lambda: [a.channel for a in attempts(sessions, number)] == ["email", "sms"])
        second.proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(second.proc.wait, 20) == 0, second.log.read_text()[-3000:]
