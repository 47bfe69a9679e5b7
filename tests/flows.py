"""Shared steps for the end-to-end tests: post alerts, read the notification log, read UI details."""

from __future__ import annotations

import json
import os
from copy import deepcopy
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.conftest import Keys
from tests.helpers import pd_event
from vigil.models import NotificationAttempt

LOCAL_FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    """A real Alertmanager 0.25 payload (copied into tests/fixtures so the suite is self-contained)."""
    return json.loads((LOCAL_FIXTURES / name).read_text())


def attempts(sessions: sessionmaker[Session], number: int) -> list[NotificationAttempt]:
    with sessions() as session:
        return list(
            session.scalars(
                select(NotificationAttempt)
                .where(NotificationAttempt.incident_number == number)
                .order_by(NotificationAttempt.id)
            )
        )


async def trigger(api: httpx.AsyncClient, keys: Keys, dedup_key: str = "demo-1", **kw) -> int:  # noqa: ANN003
    resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, dedup_key, **kw))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "success" and body["dedup_key"] == dedup_key
    return int(body["message"].rsplit("INC-", 1)[1].split()[0])


async def admin(api: httpx.AsyncClient, keys: Keys, path: str, body: dict | list, method: str = "POST") -> dict:
    """An admin API call under /api/v1 that must succeed (200 or 201); its JSON body."""
    resp = await api.request(method, f"/api/v1/{path}", json=body, headers=keys.auth(keys.admin))
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


async def post_alertmanager(api: httpx.AsyncClient, key: str, body: dict) -> dict:
    resp = await api.post("/api/v1/integrations/alertmanager", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 202, resp.text
    return resp.json()


def am_body(name: str, *, starts_at: str | None = None, status: str | None = None, labels: dict | None = None) -> dict:
    """The captured webhook body, optionally as a new episode (startsAt) or with other labels."""
    body = deepcopy(fixture(name))
    for alert in body["alerts"]:
        if starts_at:
            alert["startsAt"] = starts_at
        if status:
            alert["status"] = status
        if labels:
            alert["labels"].update(labels)
    if status:
        body["status"] = status
    return body


async def current_details(handle: WorkflowHandle) -> str:
    """What the Temporal UI shows as the workflow's current details."""
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return meta.current_details


def handle_of(client: Client, number: int) -> WorkflowHandle:
    return client.get_workflow_handle(f"INC-{number}")


async def save_history(handle: WorkflowHandle, name: str) -> None:
    """With VIGIL_RECORD_HISTORIES=1, commit-ready histories land in tests/histories/ for the replay test."""
    if os.environ.get("VIGIL_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (Path(__file__).parent / "histories" / f"{name}.json").write_text(history.to_json())


async def activity_summaries(handle: WorkflowHandle) -> list[str]:
    """The summary of every scheduled activity, as the Temporal UI shows it in the event history."""
    converter = pydantic_data_converter.payload_converter
    return [
        converter.from_payload(event.user_metadata.summary, str)
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes") and event.user_metadata.HasField("summary")
    ]
