"""The RCA stage's HTTP API over real HTTP: postmortem sections, completion's checks, renderings, charts,
attachments, evidence queries and roles. The workflow's side (close waits for completion) is tested with the phase."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta

import httpx
import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.main import create_app
from api.postmortems.attachments import MULTIPART_SLACK, safe_filename
from tests.conftest import Keys, free_port
from tests.helpers import eventually, pd_event
from vigil.contracts import STATE_QUERY, IncidentState
from vigil.models import EvidenceSeries, Incident, Integration, Postmortem, PostmortemAttachment, utcnow
from vigil.rca.artifacts import LocalArtifactStore, chart_key
from vigil.rca.document import TEMPLATE
from vigil.rca.postmortems import open_postmortem
from vigil.settings import RcaSettings, Settings

CAP = 2000  # attachment cap in these tests, so the over-cap bodies stay small


def png() -> bytes:
    """A real PNG: the PDF rendering decodes it."""
    out = io.BytesIO()
    Image.new("RGB", (40, 16), "red").save(out, "PNG")
    return out.getvalue()


PNG = png()


@pytest.fixture
def rca_settings(settings: Settings) -> Settings:
    settings.rca = RcaSettings(attachments_max_bytes=CAP, artifacts_dir=settings.core.data_dir / "artifacts")
    return settings


@pytest.fixture
async def http(rca_settings: Settings, live_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        yield client


def add_incident(sessions: sessionmaker[Session], *, status: str = "resolved", postmortem: bool = True) -> int:
    """A resolved incident row (no workflow), with its postmortem opened from the template as the activity does."""
    now = utcnow()
    with sessions.begin() as session:
        integration = session.scalar(select(Integration.id).where(Integration.name == "test-integration"))
        row = Incident(group_key=f"g-{now.timestamp()}", integration_id=integration, service="checkout",
                       severity="critical", title="High error rate", status=status, created_at=now - timedelta(hours=1),
                       resolved_at=now, resolved_by="user:rita@test", resolution="rolled back")
        session.add(row)
        session.flush()
        if postmortem:
            open_postmortem(session, number=row.number)
        return row.number


@pytest.fixture
def number(sessions: sessionmaker[Session], keys: Keys) -> int:
    return add_incident(sessions)


def pm_url(number: int, tail: str = "") -> str:
    return f"/api/v1/incidents/INC-{number}/postmortem{tail}"


def section(doc: dict, key: str) -> dict:
    return next(s for s in doc["sections"] if s["key"] == key)


# --- sections ------------------------------------------------------------------------------------


async def test_a_section_edit_records_who_and_when(http: httpx.AsyncClient, keys: Keys, number: int) -> None:
    before = (await http.get(pm_url(number), headers=keys.auth(keys.viewer))).json()
    assert [s["key"] for s in before["sections"]] == [t.key for t in TEMPLATE]
    assert before["status"] == "draft" and before["progress"]["sections_total"] == len(TEMPLATE)
    assert {"root_cause", "action_items"} <= set(before["missing"])
    assert section(before, "root_cause")["updated_by"] == "system:vigil"

    resp = await http.patch(pm_url(number), headers=keys.auth(keys.responder),
                            json={"sections": {"root_cause": "A bad deploy of the payment client."}})
    # No workflow runs for this incident: the progress signal fails and is logged, the stored edit stands.
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    root = section(doc, "root_cause")
    assert root["body"] == "A bad deploy of the payment client."
    assert (root["updated_by"], root["edited"], root["filled"]) == ("user:rita@test", True, True)
    assert root["updated_at"] > section(before, "root_cause")["updated_at"]
    assert doc["progress"]["sections_filled"] == before["progress"]["sections_filled"] + 1
    assert "root_cause" not in doc["missing"]

    # Re-sending the same text (a client saving the whole document) keeps the author.
    resp = await http.patch(pm_url(number), headers=keys.auth(keys.admin),
                            json={"sections": {"root_cause": "A bad deploy of the payment client.", "lessons": "Canary."}})
    assert resp.status_code == 200, resp.text
    assert section(resp.json(), "root_cause")["updated_by"] == "user:rita@test"
    assert section(resp.json(), "lessons")["updated_by"] == "user:admin@test"


@pytest.mark.parametrize(("body", "status"), [
    ({"sections": {"no_such_section": "x"}}, 422),
    ({"sections": {}}, 422),
    ({"sections": {"root_cause": "x" * 70_000}}, 422),
    ({"sections": {"root_cause": 7}}, 422),
])
async def test_bad_section_edits_are_refused(
    http: httpx.AsyncClient, keys: Keys, number: int, body: dict, status: int
) -> None:
    resp = await http.patch(pm_url(number), headers=keys.auth(keys.responder), json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == "validation_error"


async def test_text_the_database_cannot_store_is_replaced_or_refused(
    http: httpx.AsyncClient, keys: Keys, number: int
) -> None:
    headers = {**keys.auth(keys.responder), "Content-Type": "application/json"}
    resp = await http.patch(pm_url(number), content=b'{"sections": {"lessons": "a\\u0000b"}}', headers=headers)
    assert resp.status_code == 200, resp.text  # PostgreSQL refuses NUL in text: it is stored as U+FFFD
    assert section(resp.json(), "lessons")["body"] == "a\ufffdb"
    resp = await http.patch(pm_url(number), content=b'{"sections": {"lessons": "a\\ud800"}}', headers=headers)
    assert resp.status_code == 422, resp.text  # a lone surrogate is not text


async def test_roles_and_missing_things(http: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session],
                                        number: int) -> None:
    edit = {"sections": {"root_cause": "x"}}
    assert (await http.get(pm_url(number))).status_code == 401
    assert (await http.patch(pm_url(number), headers=keys.auth(keys.viewer), json=edit)).status_code == 403
    assert (await http.post(pm_url(number, "/complete"), headers=keys.auth(keys.viewer))).status_code == 403
    waive = await http.post(pm_url(number, "/waive"), headers=keys.auth(keys.responder), json={"reason": "dup"})
    assert waive.status_code == 403
    assert (await http.post(f"/api/v1/incidents/INC-{number}/close", headers=keys.auth(keys.viewer))).status_code == 403

    missing = await http.get(pm_url(number + 1000), headers=keys.auth(keys.viewer))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    none = add_incident(sessions, postmortem=False)
    resp = await http.get(pm_url(none), headers=keys.auth(keys.viewer))
    assert resp.status_code == 404 and "no postmortem" in resp.json()["error"]["message"]
    assert (await http.get("/api/v1/incidents/nope/postmortem", headers=keys.auth(keys.viewer))).status_code == 404


# --- complete, waive, close (their database side; the workflow's is the RCA phase's tests) ------------------


async def test_complete_names_the_empty_required_sections(http: httpx.AsyncClient, keys: Keys, number: int) -> None:
    resp = await http.post(pm_url(number, "/complete"), headers=keys.auth(keys.responder))
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "postmortem_incomplete"
    assert error["details"]["missing"] == ["summary", "root_cause", "action_items"]
    assert "Root cause" in error["message"] and "Action items" in error["message"]

    # The template's empty action-item table is not an action item.
    hint = next(t.hint for t in TEMPLATE if t.key == "action_items")
    await http.patch(pm_url(number), headers=keys.auth(keys.responder),
                     json={"sections": {"summary": "Checkout failed.", "root_cause": "Bad deploy.", "action_items": hint}})
    resp = await http.post(pm_url(number, "/complete"), headers=keys.auth(keys.responder))
    assert resp.status_code == 409 and resp.json()["error"]["details"]["missing"] == ["action_items"]


async def test_waive_needs_a_reason(http: httpx.AsyncClient, keys: Keys, number: int) -> None:
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        resp = await http.post(pm_url(number, "/waive"), headers=keys.auth(keys.admin), json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"]["details"][0]["field"] == "body.reason"


async def test_close_of_a_closed_incident_names_its_state(
    http: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    closed = add_incident(sessions, status="closed", postmortem=False)
    resp = await http.post(f"/api/v1/incidents/INC-{closed}/close", headers=keys.auth(keys.responder), json={})
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"] == {"code": "invalid_transition", "message": "cannot close an incident that is closed",
                                    "details": {"current_status": "closed"}}
    missing = await http.post("/api/v1/incidents/INC-999999/close", headers=keys.auth(keys.responder))
    assert missing.status_code == 404


# --- renderings -----------------------------------------------------------------------------------


async def test_renderings_hold_every_section(
    http: httpx.AsyncClient, keys: Keys, number: int, rca_settings: Settings, sessions: sessionmaker[Session]
) -> None:
    store_chart(rca_settings, sessions, number, "checkout-error-rate")
    await http.patch(pm_url(number), headers=keys.auth(keys.responder), json={"sections": {
        "root_cause": "The <script>alert(1)</script> payment client deploy.", "lessons": "Canary first.",
    }})
    viewer = keys.auth(keys.viewer)

    md = await http.get(pm_url(number), params={"format": "md"}, headers=viewer)
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert all(f"## {t.title}" in md.text for t in TEMPLATE)
    assert f"{rca_settings.core.public_url}/api/v1/incidents/INC-{number}/postmortem/charts/checkout-error-rate.png" in md.text

    page = await http.get(pm_url(number), params={"format": "html"}, headers=viewer)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert all(t.title in page.text for t in TEMPLATE) and "data:image/png;base64," in page.text

    pdf = await http.get(pm_url(number), params={"format": "pdf"}, headers=viewer)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == f'attachment; filename="INC-{number}-postmortem.pdf"'
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert all(t.title in text for t in TEMPLATE), text
    assert "Canary first." in text

    assert (await http.get(pm_url(number), params={"format": "doc"}, headers=viewer)).status_code == 422


# --- charts ---------------------------------------------------------------------------------------


def store_chart(settings: Settings, sessions: sessionmaker[Session], number: int, name: str) -> None:
    """What the evidence activity leaves behind: a PNG in the artifact store and its series row."""
    key = chart_key(number, name)
    LocalArtifactStore(settings.rca.artifacts_path(settings.core)).put(key, PNG, "image/png")
    with sessions.begin() as session:
        session.add(EvidenceSeries(incident_number=number, name="Checkout error rate", promql="rate(errors[5m])",
                                   source="service", step_seconds=15, points=[{"metric": {}, "values": [[1, "2"]]}],
                                   chart_key=key))


async def test_charts_come_from_the_artifact_store(
    http: httpx.AsyncClient, keys: Keys, number: int, rca_settings: Settings, sessions: sessionmaker[Session]
) -> None:
    url = pm_url(number, "/charts/checkout-error-rate.png")
    resp = await http.get(url, headers=keys.auth(keys.viewer))
    assert (resp.status_code, resp.json()["error"]["code"]) == (404, "not_found")

    store_chart(rca_settings, sessions, number, "checkout-error-rate")
    resp = await http.get(url, headers=keys.auth(keys.viewer))
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png" and resp.content == PNG

    doc = (await http.get(pm_url(number), headers=keys.auth(keys.viewer))).json()
    assert [c["url"] for c in doc["charts"]] == [f"{rca_settings.core.public_url}{url}"]
    assert doc["evidence"][0]["samples"] == 1 and doc["evidence"][0]["chart_url"].endswith(url)
    for bad in ("..%2F..%2Fsecret", "UPPER", ".hidden"):
        assert (await http.get(pm_url(number, f"/charts/{bad}.png"), headers=keys.auth(keys.viewer))).status_code in (404, 422)


# --- attachments ----------------------------------------------------------------------------------


def att_url(number: int, tail: str = "") -> str:
    return f"/api/v1/incidents/INC-{number}/attachments{tail}"


async def upload(http: httpx.AsyncClient, key: str, number: int, name: str, data: bytes, kind: str) -> httpx.Response:
    return await http.post(att_url(number), headers={"Authorization": f"Bearer {key}"},
                           files={"file": (name, data, kind)})


async def test_attachment_round_trip(http: httpx.AsyncClient, keys: Keys, number: int, rca_settings: Settings) -> None:
    resp = await upload(http, keys.responder, number, "../../etc/app.log", b"boom\n", "text/x-log")
    assert resp.status_code == 201, resp.text
    row = resp.json()
    assert (row["filename"], row["content_type"], row["size"], row["uploaded_by"]) == (
        "app.log", "text/x-log", 5, "user:rita@test")

    listed = (await http.get(att_url(number), headers=keys.auth(keys.viewer))).json()
    assert [a["id"] for a in listed] == [row["id"]]
    assert row["url"].endswith(att_url(number, f"/{row['id']}"))

    got = await http.get(att_url(number, f"/{row['id']}"), headers=keys.auth(keys.viewer))
    assert got.status_code == 200 and got.content == b"boom\n"
    assert got.headers["content-type"].startswith("text/x-log")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith('attachment; filename="app.log"')
    doc = (await http.get(pm_url(number), headers=keys.auth(keys.viewer))).json()
    assert [a["filename"] for a in doc["attachments"]] == ["app.log"]

    assert (await http.delete(att_url(number, f"/{row['id']}"), headers=keys.auth(keys.viewer))).status_code == 403
    assert (await http.delete(att_url(number, f"/{row['id']}"), headers=keys.auth(keys.responder))).status_code == 204
    assert (await http.get(att_url(number, f"/{row['id']}"), headers=keys.auth(keys.viewer))).status_code == 404
    assert not list((rca_settings.core.data_dir / "artifacts" / "incidents" / str(number) / "attachments").iterdir())


async def test_a_non_ascii_name_survives_download(http: httpx.AsyncClient, keys: Keys, number: int) -> None:
    resp = await upload(http, keys.responder, number, "écran:1.png", PNG, "image/png")
    assert resp.status_code == 201, resp.text
    assert resp.json()["filename"] == "écran_1.png"
    got = await http.get(att_url(number, f"/{resp.json()['id']}"), headers=keys.auth(keys.viewer))
    assert got.headers["content-disposition"] == "attachment; filename=\"_cran_1.png\"; filename*=UTF-8''%C3%A9cran_1.png"


@pytest.mark.parametrize(("name", "safe"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\shot.png", "shot.png"), ('a"b;c.txt', "a_b;c.txt"),
    ("bell\x07\u202e.log", "bell.log"), ("...", "attachment"), (None, "attachment"), (" .hidden ", "hidden"),
    ("x" * 300 + ".log", "x" * 251 + ".log"),
])
def test_filenames_are_sanitised(name: str | None, safe: str) -> None:
    assert safe_filename(name) == safe


async def test_attachment_refusals(
    http: httpx.AsyncClient, keys: Keys, number: int, sessions: sessionmaker[Session]
) -> None:
    over = await upload(http, keys.responder, number, "big.log", b"x" * (CAP + 1), "text/plain")
    assert (over.status_code, over.json()["error"]["details"]) == (413, {"limit_bytes": CAP})
    exe = await upload(http, keys.responder, number, "tool.exe", b"MZ", "application/x-msdownload")
    assert (exe.status_code, exe.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert "text/plain" in exe.json()["error"]["details"]["allowed"]
    html = await upload(http, keys.responder, number, "x.html", b"<script>", "text/html")
    assert html.status_code == 415
    json_body = await http.post(att_url(number), headers=keys.auth(keys.responder), json={"file": "x"})
    assert json_body.status_code == 415
    no_file = await http.post(att_url(number), headers=keys.auth(keys.responder), data={"other": "x"},
                              files={"other_file": ("a.txt", b"a", "text/plain")})
    assert (no_file.status_code, no_file.json()["error"]["details"][0]["field"]) == (422, "body.file")
    empty = await upload(http, keys.responder, number, "empty.txt", b"", "text/plain")
    assert empty.status_code == 422
    assert (await upload(http, keys.viewer, number, "a.txt", b"a", "text/plain")).status_code == 403
    assert (await upload(http, keys.responder, 999999, "a.txt", b"a", "text/plain")).status_code == 404
    with sessions() as session:
        assert session.scalars(select(PostmortemAttachment)).all() == []


async def test_an_oversized_upload_is_cut_off_while_it_streams(
    rca_settings: Settings, client: Client, keys: Keys, number: int
) -> None:
    """Chunked, with no Content-Length, 32 MB if it were all read: the app stops pulling it near the cap.

    At the ASGI interface, not over TCP: only there can the test count what the server read, rather than what
    the socket buffered or the client managed to send.
    """
    app = create_app(rca_settings, client)
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.log"\r\nContent-Type: text/plain\r\n\r\n'
    chunk, chunks, pulled = b"x" * 16384, 2000, 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": head if pulled == 1 else chunk, "more_body": pulled < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    path = att_url(number)
    await app({
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "client": ("127.0.0.1", 50000), "server": ("vigil.test", 80),
        "headers": [(b"host", b"vigil.test"), (b"authorization", f"Bearer {keys.responder}".encode()),
                    (b"content-type", b"multipart/form-data; boundary=b")],
    }, receive, send)
    assert sent[0]["status"] == 413
    assert pulled * len(chunk) <= CAP + MULTIPART_SLACK + 2 * len(chunk)


# --- evidence queries -----------------------------------------------------------------------------


async def test_evidence_queries_crud(http: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session]) -> None:
    admin = keys.auth(keys.admin)
    base = "/api/v1/evidence-queries"
    created = await http.post(base, headers=admin, json={
        "name": "checkout error rate", "promql": 'sum(rate(http_errors_total{service="checkout"}[5m]))',
        "service": "checkout", "threshold": 0.05})
    assert created.status_code == 201, created.text
    qid = created.json()["id"]
    with sessions() as session:
        integration = session.scalar(select(Integration.id).where(Integration.name == "test-integration"))
    by_integration = await http.post(base, headers=admin, json={
        "name": "latency", "promql": "histogram_quantile(0.99, rate(lat_bucket[5m]))", "integration_id": integration})
    assert by_integration.status_code == 201, by_integration.text

    assert [q["id"] for q in (await http.get(base, headers=admin, params={"service": "checkout"})).json()] == [qid]
    patched = await http.patch(f"{base}/{qid}", headers=admin, json={"promql": "rate(errors[1m])", "threshold": None})
    assert patched.status_code == 200 and patched.json()["promql"] == "rate(errors[1m])"
    assert patched.json()["threshold"] is None and patched.json()["name"] == "checkout error rate"
    assert (await http.patch(f"{base}/{qid}", headers=admin, json={"promql": None})).status_code == 422
    assert (await http.delete(f"{base}/{qid}", headers=admin)).status_code == 204
    assert (await http.get(f"{base}/{qid}", headers=admin)).status_code == 404
    assert (await http.get(base, headers=keys.auth(keys.responder))).status_code == 403


@pytest.mark.parametrize("body", [
    {"name": "x", "promql": "up"},  # neither scope
    {"name": "x", "promql": "up", "service": "a", "integration_id": 1},  # both
    {"name": "x", "promql": "   ", "service": "a"},
    {"name": "x", "promql": "u" * 5000, "service": "a"},
    {"name": "", "promql": "up", "service": "a"},
    {"name": "x", "promql": "up", "integration_id": 987654},  # no such integration
    {"name": "x", "promql": "up", "integration_id": "1"},
    {"name": "x", "promql": "up", "service": "a", "threshold": "high"},
])
async def test_evidence_query_refusals(http: httpx.AsyncClient, keys: Keys, body: dict) -> None:
    resp = await http.post("/api/v1/evidence-queries", headers=keys.auth(keys.admin), json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"


async def test_an_edit_stands_when_temporal_is_down(
    rca_settings: Settings, keys: Keys, number: int
) -> None:
    """The progress signal is best effort: with Temporal unreachable the edit is stored and answered 200."""
    rca_settings.temporal = rca_settings.temporal.model_copy(update={"address": f"127.0.0.1:{free_port()}"})
    app = create_app(rca_settings)  # no client: it connects on first use, and nothing listens there
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        resp = await http.patch(pm_url(number), headers=keys.auth(keys.responder),
                                json={"sections": {"root_cause": "Stored anyway."}})
        assert resp.status_code == 200, resp.text
        assert section(resp.json(), "root_cause")["body"] == "Stored anyway."


# --- end to end, through the incident workflow's RCA phase ----------------------------------------


async def resolved_critical(http: httpx.AsyncClient, keys: Keys, client: Client) -> int:
    """A critical incident resolved through the API, once its workflow has opened the postmortem."""
    resp = await http.post("/v2/enqueue", json=pd_event(keys.integration, f"pm-{uuid.uuid4()}"))
    assert resp.status_code == 202, resp.text
    number = int(resp.json()["message"].rsplit("INC-", 1)[1])
    auth = keys.auth(keys.responder)
    assert (await http.post(f"/api/v1/incidents/INC-{number}/acknowledge", json={}, headers=auth)).status_code == 200
    resp = await http.post(f"/api/v1/incidents/INC-{number}/resolve", json={"resolution": "rolled back"}, headers=auth)
    assert resp.status_code == 200, resp.text

    async def opened() -> bool:
        state = await client.get_workflow_handle(f"INC-{number}").query(STATE_QUERY, result_type=IncidentState)
        return state.postmortem is not None and state.postmortem.progress.sections_total > 0

    await eventually(opened)
    return number


async def live_progress(client: Client, number: int) -> int:
    state = await client.get_workflow_handle(f"INC-{number}").query(STATE_QUERY, result_type=IncidentState)
    assert state.postmortem is not None
    return state.postmortem.progress.sections_filled


async def test_close_waits_for_the_completed_postmortem(
    http: httpx.AsyncClient, keys: Keys, client: Client, worker: None
) -> None:
    number = await resolved_critical(http, keys, client)
    auth = keys.auth(keys.responder)
    close_url = f"/api/v1/incidents/INC-{number}/close"

    refused = await http.post(close_url, headers=auth, json={"note": "done"})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "postmortem_required"
    assert error["details"]["postmortem"] == "draft" and error["details"]["url"].endswith(pm_url(number))
    assert error["details"]["sections_total"] == len(TEMPLATE)

    filled_before = await live_progress(client, number)
    resp = await http.patch(pm_url(number), headers=auth, json={"sections": {
        "root_cause": "A bad deploy.", "action_items": "| Canary deploys | rita@test | 2026-04-01 |"}})
    assert resp.status_code == 200, resp.text
    # The signal carried the new count to the workflow (the Temporal UI's "Postmortem: draft, n/9 sections").
    await eventually(lambda: _equals(live_progress(client, number), filled_before + 2))

    done = await http.post(pm_url(number, "/complete"), headers=auth)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["completed_by"]) == ("complete", "user:rita@test")
    again = await http.patch(pm_url(number), headers=auth, json={"sections": {"lessons": "late"}})
    assert again.status_code == 409

    closed = await http.post(close_url, headers=auth, json={"note": "reviewed"})
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    late = await http.post(pm_url(number, "/waive"), headers=keys.auth(keys.admin), json={"reason": "x"})
    assert (late.status_code, late.json()["error"]["code"]) == (409, "invalid_transition")


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_an_admin_waives_it_and_the_incident_closes(
    http: httpx.AsyncClient, keys: Keys, client: Client, worker: None
) -> None:
    number = await resolved_critical(http, keys, client)
    blank = await http.post(pm_url(number, "/waive"), headers=keys.auth(keys.admin), json={"reason": " "})
    assert blank.status_code == 422
    resp = await http.post(pm_url(number, "/waive"), headers=keys.auth(keys.admin), json={"reason": "duplicate of INC-1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["status"], body["waived_by"], body["waived_reason"]) == ("waived", "user:admin@test", "duplicate of INC-1")
    closed = await http.post(f"/api/v1/incidents/INC-{number}/close", headers=keys.auth(keys.responder))
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text


async def test_a_row_behind_the_workflow_gets_a_409_not_a_500(
    http: httpx.AsyncClient, keys: Keys, client: Client, worker: None, sessions: sessionmaker[Session]
) -> None:
    """The workflow accepted a completion whose row write was lost: a retry is refused as a transition, and the
    refusal, which names the postmortem's state rather than the incident's, is still mapped."""
    number = await resolved_critical(http, keys, client)
    auth = keys.auth(keys.responder)
    await http.patch(pm_url(number), headers=auth, json={"sections": {"root_cause": "x", "action_items": "y"}})
    assert (await http.post(pm_url(number, "/complete"), headers=auth)).status_code == 200
    with sessions.begin() as session:
        session.get_one(Postmortem, number).status = "draft"
    retry = await http.post(pm_url(number, "/complete"), headers=auth)
    assert retry.status_code == 409, retry.text
    assert retry.json()["error"]["code"] == "invalid_transition" and "complete" in retry.json()["error"]["message"]
    assert retry.json()["error"]["details"] == {"current_status": "resolved"}
