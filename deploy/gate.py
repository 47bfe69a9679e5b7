"""The replay gate: replay the live histories of a Temporal namespace against this build's workflow code.

A change that would break a running incident (a command added, removed or reordered without `workflow.patched`)
shows up here as a non-determinism failure naming the incident and the first command that diverged, before the
build is promoted. Histories are fetched concurrently; the replay itself runs in this process, without a server.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

FETCH_CONCURRENCY = 16


@dataclass
class Failure:
    workflow_id: str
    run_id: str
    workflow_type: str
    error: str

    @property
    def first_divergence(self) -> str:
        """What the SDK says diverged first: the command this build issued where the history has another event."""
        found = re.search(r'message: "((?:[^"\\]|\\.)*)"', self.error)  # core's failure: `message: "[TMPRL…] …"`
        if found:
            return found.group(1)
        lines = self.error.strip().splitlines()
        return lines[0] if lines else "unknown failure"


@dataclass
class Report:
    replayed: int = 0
    failures: list[Failure] = field(default_factory=list)
    fetch_seconds: float = 0.0
    replay_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def queries(task_queue: str | None, closed: int) -> list[tuple[str, int | None]]:
    """What to replay: every running workflow (of the task queue), and the `closed` most recently closed ones."""
    where = f' AND TaskQueue = "{task_queue}"' if task_queue else ""
    found: list[tuple[str, int | None]] = [(f'ExecutionStatus = "Running"{where}', None)]
    if closed:
        found.append((f'ExecutionStatus != "Running"{where} ORDER BY CloseTime DESC', closed))
    return found


async def executions(client: Client, task_queue: str | None, closed: int) -> list[WorkflowExecution]:
    found: dict[tuple[str, str], WorkflowExecution] = {}
    for query, limit in queries(task_queue, closed):
        async for execution in client.list_workflows(query, limit=limit):
            found.setdefault((execution.id, execution.run_id), execution)
    return list(found.values())


async def fetch(client: Client, found: Sequence[WorkflowExecution]) -> list[WorkflowHistory]:
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(execution: WorkflowExecution) -> WorkflowHistory:
        async with gate:
            return await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()

    return list(await asyncio.gather(*(one(e) for e in found)))


async def replay(histories: Sequence[WorkflowHistory], workflows: Sequence[type], types: dict[str, str]) -> list[Failure]:
    replayer = Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    failures: list[Failure] = []
    async with replayer.workflow_replay_iterator(each()) as results:
        async for result in results:
            if result.replay_failure is not None:
                run_id = result.history.events[0].workflow_execution_started_event_attributes.original_execution_run_id
                failures.append(Failure(
                    workflow_id=result.history.workflow_id, run_id=run_id,
                    workflow_type=types.get(result.history.workflow_id, "?"), error=str(result.replay_failure),
                ))
    return failures


async def check(client: Client, workflows: Sequence[type], *, task_queue: str | None = None, closed: int = 20) -> Report:
    """Replay every running workflow (and a sample of recently closed ones) against `workflows`."""
    report = Report()
    started = time.monotonic()
    found = await executions(client, task_queue, closed)
    known = {getattr(w, "__temporal_workflow_definition").name for w in workflows}
    found = [e for e in found if e.workflow_type in known]  # a type this build does not run is not its concern
    histories = await fetch(client, found)
    report.fetch_seconds = time.monotonic() - started
    started = time.monotonic()
    report.failures = await replay(histories, workflows, {e.id: e.workflow_type for e in found})
    report.replay_seconds = time.monotonic() - started
    report.replayed = len(histories)
    return report


async def export(client: Client, workflow_id: str, path: Path, run_id: str | None = None) -> int:
    """Write one workflow's history as JSON (the format tests/test_replay.py reads); its number of events."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())
    return len(history.events)
