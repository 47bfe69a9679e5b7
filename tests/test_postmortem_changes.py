"""The postmortem's timeline lists the service's recent PagerDuty change events (before and during the incident),
in Markdown, HTML and PDF."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pypdf import PdfReader
from temporalio.client import Client

from tests.conftest import Keys, free_port
from tests.flows import handle_of, trigger
from tests.helpers import eventually
from vigil.settings import RcaSettings, Settings
from workflows.incident import IncidentWorkflow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rca": RcaSettings(
        required_severities="critical", prometheus_url=f"http://127.0.0.1:{free_port()}", prometheus_timeout_seconds=2,
    )})


async def change(api: httpx.AsyncClient, keys: Keys, summary: str, at: datetime, service: str, **extra) -> None:  # noqa: ANN003
    body = {"routing_key": keys.integration, "payload": {
        "summary": summary, "source": "ci", "timestamp": at.isoformat(), "custom_details": {"service": service}},
        **extra}
    resp = await api.post("/v2/change/enqueue", json=body)
    assert resp.status_code == 202, resp.text


async def test_the_timeline_section_lists_recent_changes_in_every_rendering(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client,
) -> None:
    now = datetime.now(UTC)
    await change(api, keys, "deploy checkout v42 <b>", now - timedelta(hours=1), "checkout",
                 links=[{"href": "https://ci.example.com/builds/42", "text": "build 42"}])
    await change(api, keys, "flag flip on search", now - timedelta(minutes=30), "search")
    await change(api, keys, "too old for it", now - timedelta(hours=30), "checkout")
    number = await trigger(api, keys, "changes-1")
    auth = keys.auth(keys.responder)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/resolve", json={"resolution": "rolled back"}, headers=auth)
    assert resp.status_code == 200, resp.text

    async def drafted() -> bool:
        pm = (await handle_of(client, number).query(IncidentWorkflow.state)).postmortem
        return pm is not None and pm.progress.sections_total > 0

    await eventually(drafted, timeout=20)
    base = f"/api/v1/incidents/INC-{number}/postmortem"
    md = (await api.get(base, params={"format": "md"}, headers=auth)).text
    timeline = md.split("## Timeline", 1)[1].split("## Charts", 1)[0]
    assert "Recent changes:" in timeline and "deploy checkout v42 <b>" in timeline
    assert "<https://ci.example.com/builds/42>" in timeline
    assert "flag flip on search" not in md and "too old for it" not in md

    page = (await api.get(base, params={"format": "html"}, headers=auth)).text
    assert "deploy checkout v42 &lt;b&gt;" in page
    assert '<a href="https://ci.example.com/builds/42">' in page

    pdf = (await api.get(base, params={"format": "pdf"}, headers=auth)).content
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Recent changes" in text and "deploy checkout v42" in text and "flag flip" not in text
