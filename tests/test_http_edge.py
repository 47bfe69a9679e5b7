"""Clean answers at the HTTP edge: out-of-range integers, oversize chunked bodies, auth before body, a locked DB."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client

from api.main import create_app
from tests.conftest import Keys, free_port
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from tests.test_api import assert_error
from vigil.settings import Settings

TOO_BIG = 2**63  # one past the largest BIGINT/SQLite INTEGER


def _integer_params(openapi: dict) -> list[tuple[str, str, dict, set[str]]]:
    """(method, path with too-big ints, query, the too-big fields) for every operation with an integer path or
    query parameter."""
    cases = []
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            params = op.get("parameters", [])
            ints = [p for p in params if p.get("schema", {}).get("type") == "integer"]
            if not ints:
                continue
            url, query = path, {}
            for p in params:
                value = TOO_BIG if p in ints else 1
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", str(value))
                elif p in ints:
                    query[p["name"]] = str(value)
            url = re.sub(r"\{[^}]+\}", "1", url)
            cases.append((method.upper(), url, query, {f"{p['in']}.{p['name']}" for p in ints}))
    return cases


async def test_integers_past_int64_are_404_or_422_everywhere(api: httpx.AsyncClient, keys: Keys) -> None:
    openapi = (await api.get("/openapi.json")).json()
    cases = _integer_params(openapi)
    assert len(cases) >= 15, cases
    admin = keys.auth(keys.admin)
    for method, url, query, fields in cases:
        resp = await api.request(method, url, params=query, headers=admin)
        assert resp.status_code in (404, 422), (method, url, query, resp.status_code, resp.text)
        assert set(resp.json()) == {"error"}
        if resp.status_code == 422:  # refused for the integer itself, not only for a missing body
            named = {d["field"] for d in resp.json()["error"]["details"]}
            assert fields <= named, (method, url, named)


async def test_body_ids_past_int64_and_non_integers_are_422(api: httpx.AsyncClient, keys: Keys) -> None:
    admin = keys.auth(keys.admin)
    created = await api.post("/api/v1/schedules", headers=admin,
                             json={"name": "s", "timezone": "UTC", "rotation_start": "2026-01-01"})
    assert created.status_code == 201, created.text
    schedule = created.json()["id"]
    step = {"name": "s", "channels": ["email"], "targets": [{"kind": "user", "id": TOO_BIG}]}
    cases = [
        ("POST", f"/api/v1/schedules/{schedule}/overrides",
         {"user_id": TOO_BIG, "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z"}),
        ("PATCH", f"/api/v1/schedules/{schedule}", {"participants": [TOO_BIG]}),
        ("POST", "/api/v1/contact-groups", {"name": "g", "members": [TOO_BIG]}),
        ("POST", "/api/v1/escalation-policies", {"name": "p", "steps": [step]}),
        ("PUT", "/api/v1/escalation-routes", [{"service": "*", "policy_id": TOO_BIG}]),
        # Where the schema says integer (or boolean), JSON true/false/"7" is refused, not read as 0/1/7.
        ("POST", "/api/v1/integrations", {"name": "i", "hold_resolution_seconds": False}),
        ("POST", "/api/v1/integrations", {"name": "i", "auto_resolve": 1}),
        ("PATCH", f"/api/v1/schedules/{schedule}", {"handoff_weekday": True}),
        ("POST", "/api/v1/contact-groups", {"name": "g", "members": ["7"]}),
    ]
    for method, url, body in cases:
        err = assert_error(await api.request(method, url, json=body, headers=admin), 422, "validation_error")
        assert err["details"], (method, url, body)
    ok_step = {"name": "s", "channels": ["email"], "targets": [{"kind": "user", "id": 1}]}
    err = assert_error(await api.post("/api/v1/escalation-policies", headers=admin, json={
        "name": "p", "steps": [ok_step], "severity_multipliers": {"critical": True}}), 422, "validation_error")
    assert [d["field"] for d in err["details"]] == ["body.severity_multipliers.critical"], err


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real uvicorn socket (chunked bodies, real connections)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def with_api(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=changes)})


async def test_chunked_body_over_the_cap_is_413(settings: Settings, keys: Keys, client: Client) -> None:
    app = create_app(with_api(settings, max_body_bytes=2000), client)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"status": "firing", "alerts": [], "padding": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        for path, headers in (("/api/v1/integrations/alertmanager", keys.auth(keys.integration)),
                              ("/v2/enqueue", {}), ("/api/v1/users", keys.auth(keys.admin))):
            resp = await http.post(path, content=chunks(), headers={**headers, "Content-Type": "application/json"})
            assert "content-length" not in resp.request.headers  # really chunked
            err = assert_error(resp, 413, "payload_too_large")
            assert err["details"] == {"limit_bytes": 2000}


def test_settings_read_only_vigil_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil.settings import Settings as FromEnv

    # Names any container may carry for other programs; none of them is Vigil's.
    for name in ("API", "JIRA", "SMTP", "TEMPORAL", "WORKER", "CORE", "INGEST", "ESCALATION", "PROVIDERS"):
        monkeypatch.setenv(name, "http://elsewhere.example:1234")
    settings = FromEnv()
    assert settings.api.port == 8000 and settings.temporal.address == "127.0.0.1:7233"
    monkeypatch.setenv("API", '{"port": 9999}')
    monkeypatch.setenv("TEMPORAL", '{"address": "evil:7233"}')
    assert FromEnv().api.port == 8000 and FromEnv().temporal.address == "127.0.0.1:7233"
    monkeypatch.setenv("VIGIL_API_PORT", "8123")
    assert FromEnv().api.port == 8123


async def test_unauthenticated_bad_body_is_401_not_422(api: httpx.AsyncClient, keys: Keys) -> None:
    """A caller without a valid key learns nothing about the body (no field details), on every kind of route."""
    bad = {"nonsense": True}
    cases = [
        ("POST", "/api/v1/users", {}), ("PATCH", "/api/v1/users/1", {}),
        ("POST", "/api/v1/incidents/1/resolve", {}), ("PUT", "/api/v1/escalation-routes", {}),
        ("POST", "/api/v1/integrations/alertmanager", {}),
        ("POST", "/api/v1/integrations/alertmanager", keys.auth(keys.admin)),  # an API key is not an integration key
        ("POST", "/api/v1/users", keys.auth("vgl_api_wrong")),
    ]
    for method, url, headers in cases:
        for body in (bad, "{not json", b"\x80 not UTF-8"):
            kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
            resp = await api.request(method, url, headers={**headers, "Content-Type": "application/json"}, **kwargs)
            err = assert_error(resp, 401, "unauthorized")
            assert err["details"] is None, (method, url, err)
    # A known key with the wrong role: 403 before the body, too.
    assert_error(await api.post("/api/v1/users", json=bad, headers=keys.auth(keys.viewer)), 403, "forbidden")
    # PagerDuty: the key is in the body; without a valid routing_key nothing else is validated, and the answer is
    # PagerDuty's own (tests/test_pagerduty_compat.py).
    for body in ({"event_action": "explode"}, {"routing_key": "nope", "event_action": "explode"}, {"routing_key": 7}):
        resp = await api.post("/v2/enqueue", json=body)
        assert (resp.status_code, resp.json()["errors"]) == (400, ["Invalid routing key"])
    # With valid keys, the same bad bodies are 422 with the field named.
    err = assert_error(await api.post("/api/v1/users", json=bad, headers=keys.auth(keys.admin)), 422, "validation_error")
    assert any(d["field"] == "body.name" for d in err["details"])
    resp = await api.post("/v2/enqueue", json={"routing_key": keys.integration, "event_action": "explode"})
    assert resp.status_code == 400 and resp.json()["errors"][0].startswith("event_action:")
    err = assert_error(await api.post("/api/v1/integrations/alertmanager", json=bad, headers=keys.auth(keys.integration)),
                       422, "validation_error")


def with_core(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"core": settings.core.model_copy(update=changes)})


@contextmanager
def held_lock(engine: Engine) -> Iterator[None]:
    """Another connection holds the locks every authenticated or ingesting request needs, until the block ends."""
    with engine.connect() as conn:
        conn.begin()  # on SQLite this is BEGIN IMMEDIATE (vigil.db): the write lock, which every transaction takes
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE api_keys, integrations IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


async def test_held_database_lock_is_503_with_retry_after(
    settings: Settings, keys: Keys, client: Client, engine: Engine
) -> None:
    app = create_app(with_core(settings, database_lock_timeout_seconds=0.5), client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        with held_lock(engine):
            for method, url, kwargs in (
                ("GET", "/api/v1/incidents", {"headers": keys.auth(keys.viewer)}),
                ("POST", "/api/v1/users", {"headers": keys.auth(keys.admin), "json": {"name": "n", "email": "n@x.io"}}),
                ("POST", "/v2/enqueue", {"json": {"routing_key": keys.integration, "event_action": "resolve",
                                                  "dedup_key": "d"}}),
                ("POST", "/api/v1/integrations/alertmanager", {"headers": keys.auth(keys.integration),
                                                               "json": {"status": "firing", "alerts": []}}),
            ):
                resp = await http.request(method, url, **kwargs)
                assert_error(resp, 503, "database_unavailable")
                assert int(resp.headers["Retry-After"]) > 0
        # The lock released, the same calls work again.
        assert (await http.get("/api/v1/incidents", headers=keys.auth(keys.viewer))).status_code == 200


async def test_readyz_answers_while_a_lock_is_held(settings: Settings, keys: Keys, client: Client, engine: Engine) -> None:
    # A lock timeout far past readyz's deadline: readyz must not wait for it (the client gives up well before).
    app = create_app(with_core(settings, database_lock_timeout_seconds=20), client)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=8) as http:
        with held_lock(engine):
            resp = await http.get("/readyz")
        body = resp.json()
        if engine.dialect.name == "sqlite":  # every transaction needs the write lock there
            assert resp.status_code == 503 and body["checks"]["database"].startswith("error: timeout"), body
        else:  # SELECT 1 needs no table lock on PostgreSQL
            assert resp.status_code == 200 and body["checks"]["database"] == "ok", body


async def test_405_names_every_allowed_method(api: httpx.AsyncClient, keys: Keys) -> None:
    admin = keys.auth(keys.admin)
    for method, url, allowed in (
        ("POST", "/api/v1/users/1", "GET, PATCH, DELETE"),
        ("PUT", "/api/v1/users", "GET, POST"),
        ("PATCH", "/api/v1/integrations/alertmanager", "POST"),  # not PATCH /integrations/{integration_id}
        ("DELETE", "/api/v1/incidents/INC-1", "GET"),
        ("GET", "/ack/some-token", None),
        ("PUT", "/ack/some-token", "GET, POST"),
        ("POST", "/metrics", "GET"),
    ):
        resp = await api.request(method, url, headers=admin)
        if allowed is None:
            assert resp.status_code != 405
            continue
        assert_error(resp, 405, "method_not_allowed")
        assert resp.headers["Allow"] == allowed, (method, url, resp.headers["Allow"])


def _allows_null(prop: dict) -> bool:
    return prop.get("type") == "null" or any(v.get("type") == "null" for v in prop.get("anyOf", []))


async def test_openapi_tells_the_truth(api: httpx.AsyncClient, keys: Keys) -> None:
    admin = keys.auth(keys.admin)
    schema = (await api.get("/openapi.json")).json()
    models = schema["components"]["schemas"]
    # A PATCH field that refuses null is not documented as nullable; one that takes null is.
    user = (await api.post("/api/v1/users", headers=admin, json={"name": "Nell", "email": "nell@x.io",
                                                                 "phone": "+14155550100"})).json()
    for field, value_ok in (("name", False), ("email", False), ("timezone", False), ("role", False), ("phone", True)):
        assert _allows_null(models["UserUpdate"]["properties"][field]) is value_ok, field
        resp = await api.patch(f"/api/v1/users/{user['id']}", headers=admin, json={field: None})
        assert resp.status_code == (200 if value_ok else 422), (field, resp.text)
    for model, field in (("GroupUpdate", "members"), ("ScheduleUpdate", "participants"), ("WebhookUpdate", "url"),
                         ("PolicyUpdate", "steps")):
        assert not _allows_null(models[model]["properties"][field]), (model, field)
    assert _allows_null(models["WebhookUpdate"]["properties"]["secret"])  # null removes the secret
    assert _allows_null(models["PolicyUpdate"]["properties"]["manager"])  # null removes the manager step
    # Formats the validators check are in the schema, so a client can send a valid value.
    assert models["UserCreate"]["properties"]["email"]["format"] == "email"
    assert models["UserCreate"]["properties"]["phone"]["anyOf"][0]["pattern"].startswith("^\\+")
    # Integers and booleans are strict where the schema says integer or boolean (see the body id test).
    assert models["IntegrationCreate"]["properties"]["hold_resolution_seconds"]["type"] == "integer"
    # /metrics is Prometheus text, and the ack link's pages are HTML, with their error pages documented.
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert (await api.get("/metrics")).headers["content-type"].startswith("text/plain")
    for method in ("get", "post"):
        responses = schema["paths"]["/ack/{token}"][method]["responses"]
        assert {"400", "409", "410"} <= set(responses)
        assert "text/html" in responses["400"]["content"]
    bad = await api.get("/ack/not-a-token")
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html")
    # Every 422 is documented in the one error shape, and the common answers are listed on every operation.
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            if "422" in responses:
                assert "ErrorResponse" in str(responses["422"]), (method, path)
            if "requestBody" in op:
                # PagerDuty's endpoints answer an invalid body with PagerDuty's 400, never a 422.
                validation = "400" if path in ("/v2/enqueue", "/v2/change/enqueue") else "422"
                assert {"400", "413", validation} <= set(responses), (method, path)
            if op.get("security"):
                assert {"401", "503"} <= set(responses), (method, path)


async def test_ack_reply_past_int64_is_ignored_not_500(
    settings: Settings, keys: Keys, client: Client, provider: ProviderServer
) -> None:
    app = create_app(settings.model_copy(update={"providers": provider.provider_settings()}), client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        for n, text in enumerate(("ACK 9223372036854775808", "ACK " + "9" * 32, "ACK INC-99999999999999999999")):
            resp = await provider.callback("/api/v1/providers/middleware/callbacks", {
                "event_id": f"big-{n}", "type": "sms_reply", "message_id": "m", "from": "+15550100100", "text": text,
            }, client=http)
            assert resp.status_code == 200 and resp.json()["status"] == "ignored", resp.text


async def test_signed_routes_check_the_signature_before_temporal(
    settings: Settings, keys: Keys, provider: ProviderServer
) -> None:
    """With Temporal unreachable, a forged callback is still refused as forged (401), not told to retry (503)."""
    from pydantic import SecretStr

    from vigil.settings import JiraSettings

    down = settings.model_copy(update={
        "temporal": settings.temporal.model_copy(update={"address": f"127.0.0.1:{free_port()}"}),
        "providers": provider.provider_settings(),
        "jira": JiraSettings(url="http://127.0.0.1:9", pat=SecretStr("p"), webhook_secret=SecretStr("s")),
    })
    app = create_app(down)  # no Temporal client: it connects lazily, and fails
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        event = {"event_id": "e", "type": "sms_reply", "message_id": "m", "from": "+15550100100", "text": "ACK 1"}
        forged = await provider.callback("/api/v1/providers/middleware/callbacks", event, client=http,
                                         secret=b"not-the-secret")
        assert_error(forged, 401, "invalid_signature")
        signed = await provider.callback("/api/v1/providers/middleware/callbacks", event, client=http)
        assert signed.status_code in (200, 503), signed.text  # ignored (never paged), or Temporal down
        jira = await http.post("/api/v1/webhooks/jira", json={"webhookEvent": "jira:issue_updated"},
                               headers={"X-Hub-Signature": "sha256=forged"})
        assert_error(jira, 401, "invalid_signature")
        page = await http.post("/ack/not-a-token")
        assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
