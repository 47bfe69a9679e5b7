"""`vigil postmortem`, `vigil postmortem complete` and `vigil close`, run as a person runs them against the live app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Keys, free_port
from tests.flows import trigger
from tests.helpers import eventually
from tests.test_cli import api_message, env, http, vigil  # noqa: F401 - fixtures and helpers of the CLI tests
from vigil.settings import RcaSettings, Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Critical incidents need a postmortem; Prometheus configured but down."""
    return settings.model_copy(update={"rca": RcaSettings(
        required_severities="critical", prometheus_url=f"http://127.0.0.1:{free_port()}", prometheus_timeout_seconds=2,
    )})


async def test_show_complete_and_close_a_postmortem(
    env: dict, http: httpx.AsyncClient, keys: Keys, worker: None, tmp_path: Path,  # noqa: F811
) -> None:
    number = await trigger(http, keys, "cli-pm")
    ref = f"INC-{number}"
    resolved = await vigil(env, "resolve", ref, "-m", "Rolled back", key=keys.responder)
    assert resolved.code == 0, resolved.err
    auth = {"Authorization": f"Bearer {keys.responder}"}

    async def drafted() -> bool:
        resp = await http.get(f"/api/v1/incidents/{ref}/postmortem", headers=auth)
        return resp.status_code == 200 and "Rolled back" in resp.json()["sections"][0]["body"]

    await eventually(drafted, timeout=30)

    shown = await vigil(env, "postmortem", ref, key=keys.viewer)
    assert shown.code == 0, shown.err
    assert shown.out.startswith(f"# Postmortem: {ref} ") and "## Root cause" in shown.out
    page = await vigil(env, "postmortem", str(number), "--format", "html", "-o", str(tmp_path / "pm.html"),
                       key=keys.viewer)
    assert page.code == 0 and page.out == "" and "pm.html" in page.err, page.err
    assert (tmp_path / "pm.html").read_text().startswith("<!doctype html>")
    pdf = await vigil(env, "postmortem", ref, "--format", "pdf", "-o", str(tmp_path / "pm.pdf"), key=keys.viewer)
    assert pdf.code == 0, pdf.err
    assert (tmp_path / "pm.pdf").read_bytes().startswith(b"%PDF-")
    as_json = await vigil(env, "postmortem", "show", ref, "--json", key=keys.viewer)
    assert f'"id": "{ref}"' in as_json.out and '"status": "draft"' in as_json.out

    # Refused as the API refuses, with its message, until the postmortem is complete.
    closing = await vigil(env, "close", ref, key=keys.responder)
    message = await api_message(http, "POST", f"/api/v1/incidents/{ref}/close", keys.responder, json={})
    assert closing.code == 1 and message in closing.err and "postmortem_required" in closing.err
    early = await vigil(env, "postmortem", "complete", ref, key=keys.responder)
    assert early.code == 1 and "postmortem_incomplete" in early.err and "Root cause" in early.err
    viewer = await vigil(env, "postmortem", "complete", ref, key=keys.viewer)
    assert viewer.code == 1 and "HTTP 403" in viewer.err

    sections = {"root_cause": "A bad deploy.", "action_items": "| Action | Owner | Due date |\n|---|---|---|\n| Canary | rita@test | 2026-05-01 |"}
    resp = await http.patch(f"/api/v1/incidents/{ref}/postmortem", json={"sections": sections}, headers=auth)
    assert resp.status_code == 200, resp.text
    done = await vigil(env, "postmortem", "complete", str(number), key=keys.responder)
    assert (done.code, done.out.strip()) == (0, f"{ref} postmortem complete"), done.err
    closed = await vigil(env, "close", ref, "-m", "reviewed", key=keys.responder)
    assert (closed.code, closed.out.strip()) == (0, f"{ref} closed (now closed)"), closed.err
    missing = await vigil(env, "postmortem", "INC-999999", key=keys.viewer)
    assert missing.code == 1 and "HTTP 404" in missing.err
