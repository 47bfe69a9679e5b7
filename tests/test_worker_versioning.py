"""Worker Versioning with real `worker.py` processes: a new build takes over running incidents mid-ladder, each
page goes out once, and a rollback (or a bad build promoted anyway) moves only the incidents the build can run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from deploy import gate, versions
from tests.conftest import ROOT, Keys
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually
from tests.patched_incident import AddsAStep
from tests.servers import WorkerProcess, worker_env
from vigil.settings import Settings
from worker import WORKFLOWS
from workflows.incident import IncidentWorkflow

SMS_WAIT = timedelta(minutes=5, seconds=1)  # the default ladder: email now, SMS at +5 min, IVR at +10


@pytest.fixture
def deployment() -> str:
    """A deployment of the test's own: the session's dev server is shared, versions are per deployment."""
    return f"vigil-test-{uuid.uuid4().hex[:8]}"


@contextmanager
def versioned_worker(
    client: Client, settings: Settings, deployment: str, build: str, log: Path, variant: str | None = None,
) -> Iterator[WorkerProcess]:
    """`python worker.py` (or tests/variant_worker.py's `variant` of it) as version `build` of `deployment`."""
    env = {**worker_env(client, settings), "VIGIL_WORKER_VERSIONING": "true",
           "VIGIL_WORKER_DEPLOYMENT_NAME": deployment, "VIGIL_WORKER_BUILD_ID": build}
    cmd = [sys.executable, "-m", "tests.variant_worker", variant] if variant else [sys.executable, "worker.py"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        yield WorkerProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def build_of(client: Client, number: int) -> str:
    """The build the incident's last workflow task ran on, as Temporal recorded it."""
    described = await handle_of(client, number).describe()
    return described.raw_description.workflow_execution_info.versioning_info.deployment_version.build_id


async def memo(client: Client, number: int) -> dict:
    return await (await handle_of(client, number).describe()).memo()


def channels(sessions: sessionmaker[Session], number: int) -> list[str]:
    return [a.channel for a in attempts(sessions, number)]


async def paged(sessions: sessionmaker[Session], number: int, expected: list[str]) -> None:
    await eventually(lambda: channels(sessions, number) == expected, timeout=30)


async def stalled(client: Client, number: int) -> bool:
    """The incident's last workflow task failed on non-determinism (it waits for a build that can run it)."""
    events = (await handle_of(client, number).fetch_history()).events
    failed = [e for e in events if e.HasField("workflow_task_failed_event_attributes")]
    return bool(failed) and "Nondeterminism" in failed[-1].workflow_task_failed_event_attributes.failure.message


async def test_v2_takes_over_running_incidents_and_a_rollback_returns_them(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper, settings: Settings,
    sessions: sessionmaker[Session], deployment: str, tmp_path: Path,
) -> None:
    queue = settings.temporal.task_queue
    with versioned_worker(client, settings, deployment, "v1", tmp_path / "v1.log") as v1:
        await versions.set_current(client, deployment, "v1")
        a = await trigger(api, keys, "ver-a", component="svc-a")
        b = await trigger(api, keys, "ver-b", component="svc-b")
        await paged(sessions, a, ["email"])
        await paged(sessions, b, ["email"])
        assert await build_of(client, a) == "v1"

        with versioned_worker(client, settings, deployment, "v2", tmp_path / "v2.log", "adds-a-step") as v2:
            # The gate with v2's code passes, so v2 is promoted; running incidents move to it on their next task.
            v2_code = [AddsAStep if w is IncidentWorkflow else w for w in WORKFLOWS]
            report = await gate.check(client, v2_code, task_queue=queue, closed=0)
            assert report.ok and report.replayed >= 2, [f.error for f in report.failures]
            await versions.set_current(client, deployment, "v2")

            await skipper.fast_forward(handle_of(client, a), SMS_WAIT)
            await paged(sessions, a, ["email", "sms"])  # its timer fired once, on v2
            assert await build_of(client, a) == "v2"
            assert "built_by" not in await memo(client, a)  # replaying, it kept v1's path

            c = await trigger(api, keys, "ver-c", component="svc-c")  # a new incident runs v2's code
            await paged(sessions, c, ["email"])
            assert await build_of(client, c) == "v2"
            assert (await memo(client, c))["built_by"] == "v2"

            # Roll back, from v1's code: c recorded v2's step, which v1 cannot replay, so it stays on v2.
            rolled = await versions.rollback(client, deployment, "v1", WORKFLOWS, task_queue=queue)
            assert rolled.pinned == {f"INC-{c}": "v2"}
            assert (await versions.routing(client, deployment)).current == "v1"

            await skipper.fast_forward(handle_of(client, b), SMS_WAIT)
            await paged(sessions, b, ["email", "sms"])
            assert await build_of(client, b) == "v1"
            await skipper.fast_forward(handle_of(client, a), SMS_WAIT)  # a's IVR rung: back on v1
            await paged(sessions, a, ["email", "sms", "ivr"])
            assert await build_of(client, a) == "v1"
            await skipper.fast_forward(handle_of(client, c), SMS_WAIT)
            await paged(sessions, c, ["email", "sms"])
            assert await build_of(client, c) == "v2"
            assert "worker started" in v1.events() and "worker started" in v2.events()


async def test_a_non_deterministic_build_promoted_anyway_stalls_only_the_incidents_it_breaks(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper, settings: Settings,
    sessions: sessionmaker[Session], deployment: str, tmp_path: Path,
) -> None:
    queue = settings.temporal.task_queue
    with versioned_worker(client, settings, deployment, "v1", tmp_path / "v1.log"):
        await versions.set_current(client, deployment, "v1")
        a = await trigger(api, keys, "nd-a", component="svc-a")
        await paged(sessions, a, ["email"])

        with versioned_worker(client, settings, deployment, "bad", tmp_path / "bad.log", "pauses-first"):
            await versions.set_current(client, deployment, "bad")  # no gate: it would have said INC-a breaks
            await skipper.fast_forward(handle_of(client, a), SMS_WAIT)
            await eventually(lambda: stalled(client, a), timeout=30)

            c = await trigger(api, keys, "nd-c", component="svc-c")  # born on the bad build: it pages
            await paged(sessions, c, ["email"])
            await skipper.fast_forward(handle_of(client, c), SMS_WAIT)
            await paged(sessions, c, ["email", "sms"])
            assert channels(sessions, a) == ["email"]  # still stalled, nothing sent twice

            # The runbook's recovery: roll back; a goes back to v1 and pages, c stays on the build it was born on.
            rolled = await versions.rollback(client, deployment, "v1", WORKFLOWS, task_queue=queue)
            assert rolled.pinned == {f"INC-{c}": "bad"}
            await paged(sessions, a, ["email", "sms"])
            assert await build_of(client, a) == "v1"
            await skipper.fast_forward(handle_of(client, c), SMS_WAIT)
            await paged(sessions, c, ["email", "sms", "ivr"])
