"""Determinism guard: committed histories of representative incidents replay against today's workflow code.

Re-record after an intentional, patched change with:
    VIGIL_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/test_incident_flow.py tests/test_escalation.py \
        tests/test_alert_lifecycle.py tests/test_policy_ladder.py tests/test_jira_sync.py tests/test_jira_webhooks.py \
        tests/test_lifecycle.py tests/test_rca_stage.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.incident import IncidentWorkflow
from workflows.jira_sync import JiraSyncWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").rglob("*.json"))


def test_histories_are_committed() -> None:
    names = {str(p.relative_to(p.parents[1] if p.parent.name == "pre_policies" else p.parent)) for p in HISTORIES}
    # pre_policies/: incidents started before escalation policies (the fixed ladder, no `escalation-policies`
    # patch marker); they must keep replaying while such incidents may still be running.
    # *_update_with_start: incidents whose workflow was started by an update-with-start (a joiner won the
    # race, or a retry) rather than by a start carrying the first alerts.
    legacy = {
        "ack_then_resolve", "ladder_exhausted", "auto_resolved_closed", "reopened",
        "ack_then_resolve_update_with_start", "ladder_exhausted_update_with_start",
    }
    current = {
        "ack_then_resolve", "ladder_exhausted", "auto_resolved_closed", "reopened", "policy_ladder",
        "jira_linked", "jira_sync", "jira_webhooks", "cancelled", "postmortem_completed",
    }
    assert {f"pre_policies/{n}.json" for n in legacy} | {f"{n}.json" for n in current} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[IncidentWorkflow, JiraSyncWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
