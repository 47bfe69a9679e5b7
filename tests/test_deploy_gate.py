"""The replay gate: live histories of running incidents replay on this build, and a non-deterministic change is
caught before promotion, naming the incident and the command that diverged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from deploy import gate
from tests.conftest import Keys
from tests.flows import trigger
from tests.helpers import eventually
from tests.nondeterministic_incident import PausesFirst
from vigil.contracts import INCIDENT_WORKFLOW
from vigil.settings import Settings
from worker import WORKFLOWS
from workflows.incident import IncidentWorkflow
from workflows.jira_sync import JiraSyncWorkflow

VENV_BIN = Path(sys.executable).parent


async def running_incidents(api: httpx.AsyncClient, keys: Keys, client: Client, n: int) -> list[int]:
    numbers = [await trigger(api, keys, f"gate-{i}", component=f"svc-{i}") for i in range(n)]
    # Each is mid-ladder: its first page went out and it waits on the timer before the next rung.
    for number in numbers:
        await eventually(lambda: _paged(client, number))
    return numbers


async def _paged(client: Client, number: int) -> bool:
    history = await client.get_workflow_handle(f"INC-{number}").fetch_history()
    return any(e.HasField("activity_task_completed_event_attributes") for e in history.events)


async def test_running_incidents_replay_on_this_build(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings,
) -> None:
    numbers = await running_incidents(api, keys, client, 3)
    report = await gate.check(client, WORKFLOWS, task_queue=settings.temporal.task_queue, closed=0)
    assert report.ok, [f.error for f in report.failures]
    assert report.replayed >= len(numbers)


async def test_a_non_deterministic_change_is_caught_naming_incident_and_command(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings,
) -> None:
    numbers = await running_incidents(api, keys, client, 2)
    broken = [PausesFirst, *(w for w in WORKFLOWS if w is not IncidentWorkflow)]
    report = await gate.check(client, broken, task_queue=settings.temporal.task_queue, closed=0)
    assert {f.workflow_id for f in report.failures} == {f"INC-{n}" for n in numbers}
    for failure in report.failures:
        assert failure.workflow_type == INCIDENT_WORKFLOW
        # The new timer comes where the history has the incident's first recorded command (a patch marker).
        assert failure.first_divergence.startswith("[TMPRL1100] Nondeterminism error:"), failure.error
        assert "cancel-resolves" in failure.first_divergence


async def test_the_command_line_checks_and_exports(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings, tmp_path: Path,
) -> None:
    [number] = await running_incidents(api, keys, client, 1)
    address = client.service_client.config.target_host
    run = lambda *args: subprocess.run(  # noqa: E731
        [str(VENV_BIN / "vigil-deploy"), "--address", address, "--namespace", client.namespace, *args],
        capture_output=True, text=True, timeout=120,
    )
    checked = run("check", "--task-queue", settings.temporal.task_queue, "--closed", "0")
    assert checked.returncode == 0, checked.stderr
    assert "ok: every replayed workflow replays" in checked.stdout

    out = tmp_path / "histories" / "gate.json"
    exported = run("export", f"INC-{number}", str(out))
    assert exported.returncode == 0, exported.stderr
    history = WorkflowHistory.from_json(f"INC-{number}", out.read_text())
    replayer = Replayer(workflows=[IncidentWorkflow, JiraSyncWorkflow], data_converter=pydantic_data_converter)
    assert (await replayer.replay_workflow(history)).replay_failure is None
