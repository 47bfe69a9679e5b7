"""worker.py as a real process: graceful SIGTERM, and a replacement worker picks up the ladder's timers."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Keys
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually
from tests.servers import worker_process
from vigil.settings import Settings


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
