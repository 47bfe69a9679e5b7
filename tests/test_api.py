"""HTTP contract: auth and roles, the one error shape, health, metrics and the OpenAPI schema."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Keys
from tests.flows import trigger
from tests.helpers import eventually, pd_event


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert "Traceback" not in resp.text
    return body["error"]


async def test_roles(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    number = await trigger(api, keys)
    viewer, responder = keys.auth(keys.viewer), keys.auth(keys.responder)
    assert (await api.get(f"/api/v1/incidents/INC-{number}", headers=viewer)).status_code == 200
    err = assert_error(await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=viewer), 403, "forbidden")
    assert "responder" in err["message"]
    ok = await api.post(f"/api/v1/incidents/{number}/acknowledge", headers=responder)
    assert ok.status_code == 200 and ok.json()["acknowledged_by"] == "user:rita@test"


async def test_keys_are_checked(api: httpx.AsyncClient, keys: Keys) -> None:
    assert_error(await api.get("/api/v1/incidents"), 401, "unauthorized")
    assert_error(await api.get("/api/v1/incidents", headers=keys.auth("vgl_api_nope")), 401, "unauthorized")
    # The integration key only posts alerts.
    err = assert_error(await api.get("/api/v1/incidents", headers=keys.auth(keys.integration)), 403, "forbidden")
    assert "ingestion" in err["message"]
    # An API key is not an integration key (PagerDuty's own answer: tests/test_pagerduty_compat.py).
    resp = await api.post("/v2/enqueue", json=pd_event(keys.admin, "x"))
    assert (resp.status_code, resp.json()["errors"]) == (400, ["Invalid routing key"])
    am = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A"}}]}
    assert_error(await api.post("/api/v1/integrations/alertmanager", json=am), 401, "unauthorized")
    assert_error(
        await api.post("/api/v1/integrations/alertmanager", json=am, headers=keys.auth(keys.admin)), 401, "unauthorized"
    )


async def test_not_found(api: httpx.AsyncClient, keys: Keys) -> None:
    admin = keys.auth(keys.admin)
    assert_error(await api.get("/api/v1/incidents/INC-999999", headers=admin), 404, "not_found")
    assert_error(await api.get("/api/v1/incidents/banana", headers=admin), 404, "not_found")
    assert_error(await api.post("/api/v1/incidents/INC-999999/acknowledge", headers=admin), 404, "not_found")
    assert_error(await api.get("/nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"event_action": "explode"}, "event_action: Input should be 'trigger', 'acknowledge' or 'resolve'"),
        ({"event_action": "trigger", "payload": {"summary": "s", "source": "x", "severity": "bad"}},
         "payload.severity: Input should be 'critical', 'error', 'warning' or 'info'"),
        ({"event_action": "trigger"}, "payload is required for event_action=trigger"),
        ({"event_action": "resolve"}, "dedup_key is required for event_action=resolve"),
    ],
)
async def test_pagerduty_validation_names_the_field(api: httpx.AsyncClient, keys: Keys, body: dict, error: str) -> None:
    # PagerDuty's 400 body, only with a valid routing_key: without one it says just that (test_pagerduty_compat).
    resp = await api.post("/v2/enqueue", json={"routing_key": keys.integration, **body})
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"status": "invalid event", "message": "Event object is invalid", "errors": [error]}


async def test_malformed_json(api: httpx.AsyncClient, keys: Keys) -> None:
    resp = await api.post("/api/v1/users", content=b"{not json", headers={"Content-Type": "application/json",
                                                                           **keys.auth(keys.admin)})
    assert_error(resp, 422, "validation_error")
    resp = await api.post(
        "/api/v1/integrations/alertmanager", json={"status": "firing", "alerts": []}, headers=keys.auth(keys.integration)
    )
    err = assert_error(resp, 422, "validation_error")
    assert err["details"][0]["field"] == "body.alerts"


async def test_resolution_must_not_be_blank(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    number = await trigger(api, keys)
    err = assert_error(
        await api.post(f"/api/v1/incidents/{number}/resolve", json={"resolution": "   "}, headers=keys.auth(keys.admin)),
        422, "validation_error",
    )
    assert err["details"][0]["field"] == "body.resolution"


async def test_list_filters(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    a = await trigger(api, keys, dedup_key="a", component="checkout", severity="critical", klass="A")
    b = await trigger(api, keys, dedup_key="b", component="search", severity="warning", klass="B")
    admin = keys.auth(keys.admin)
    await api.post(f"/api/v1/incidents/{a}/acknowledge", headers=admin)

    async def ids(**params: str) -> list[str]:
        resp = await api.get("/api/v1/incidents", params=params, headers=admin)
        assert resp.status_code == 200
        return [i["id"] for i in resp.json()["items"]]

    assert await ids() == [f"INC-{b}", f"INC-{a}"]
    assert await ids(service="search") == [f"INC-{b}"]
    assert await ids(severity="critical") == [f"INC-{a}"]

    async def only_b_triggered() -> bool:  # the list reads the projection, which follows the ack within moments
        return await ids(status="triggered") == [f"INC-{b}"]

    await eventually(only_b_triggered)
    assert_error(await api.get("/api/v1/incidents", params={"status": "sleepy"}, headers=admin), 422, "validation_error")


async def test_health_ready_metrics_openapi(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}

    async def ready() -> dict:
        resp = await api.get("/readyz")
        assert resp.status_code == 200
        return resp.json()["checks"] if resp.json()["checks"]["worker"] == "ok" else {}

    # The worker has just started: Temporal sees its poller within a moment.
    assert await eventually(ready) == {
        "database": "ok", "temporal": "ok", "worker": "ok", "jira": "off (VIGIL_JIRA_URL is not set)",
        "dead_letter": "ok",
    }

    await trigger(api, keys)
    metrics = (await api.get("/metrics")).text
    assert 'vigil_alerts_ingested_total{endpoint="enqueue",outcome="new"}' in metrics
    assert "vigil_api_transitions_total" in metrics

    schema = (await api.get("/openapi.json")).json()
    for path in ("/v2/enqueue", "/api/v1/integrations/alertmanager", "/api/v1/incidents",
                 "/api/v1/incidents/{ref}", "/api/v1/incidents/{ref}/acknowledge", "/api/v1/incidents/{ref}/resolve",
                 "/healthz", "/readyz", "/metrics"):
        assert path in schema["paths"], path
    ack = schema["paths"]["/api/v1/incidents/{ref}/acknowledge"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409", "503"} <= set(ack)
    assert (await api.get("/docs")).status_code == 200


async def test_temporal_down_answers_503_and_keeps_the_alert(
    settings, keys: Keys, sessions,  # noqa: ANN001
) -> None:
    """Senders retry on 503; what was accepted into the DB stays there for redelivery."""
    from sqlalchemy import select

    from api.main import create_app
    from tests.conftest import free_port
    from vigil.models import AlertRow

    down = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"address": f"127.0.0.1:{free_port()}"})})
    app = create_app(down)  # no client: it connects lazily, and fails
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        resp = await http.post("/v2/enqueue", json=pd_event(keys.integration, "kept"))
        assert_error(resp, 503, "temporal_unavailable")
        assert resp.headers["Retry-After"]
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["temporal"].startswith("error")
        # Reads come from the DB and keep working.
        assert (await http.get("/api/v1/incidents", headers=keys.auth(keys.admin))).status_code == 200
    with sessions() as session:
        assert session.scalar(select(AlertRow.fingerprint).where(AlertRow.delivered_status.is_(None))) == "kept"


async def test_no_worker_answers_503_within_the_deadline(settings, keys: Keys, client, sessions) -> None:  # noqa: ANN001
    """A worker deploy gap must not hang senders or lose alerts.

    A new incident's start is durable in Temporal without a worker (202; the workflow runs when one comes
    back). What needs the workflow to answer (a later alert, an ack) gets 503 after the deadline, alert kept.
    """
    from sqlalchemy import select

    from api.main import create_app
    from vigil.models import AlertRow

    quick = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"update_timeout_seconds": 1})})
    app = create_app(quick, client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["worker"].startswith("error")
        opened = await http.post("/v2/enqueue", json=pd_event(keys.integration, "first"))
        assert opened.status_code == 202, opened.text
        number = int(opened.json()["message"].rsplit("INC-", 1)[1])
        err = assert_error(await http.post("/v2/enqueue", json=pd_event(keys.integration, "waiting")), 503, "workflow_timeout")
        assert "worker" in err["message"]
        ack = await http.post(f"/api/v1/incidents/{number}/acknowledge", headers=keys.auth(keys.admin))
        assert_error(ack, 503, "workflow_timeout")
    with sessions() as session:
        assert session.scalar(select(AlertRow.fingerprint).where(AlertRow.delivered_status.is_(None))) == "waiting"
    # The first alert is in the workflow's start input, durable in Temporal's history.
    history = await client.get_workflow_handle(f"INC-{number}").fetch_history()
    assert "first" in history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data.decode()


async def test_real_http_server(live_api: str, worker: None, keys: Keys) -> None:
    """The same app over a real socket (uvicorn), as Alertmanager and curl reach it."""
    async with httpx.AsyncClient(base_url=live_api) as http:
        resp = await http.post("/v2/enqueue", json=pd_event(keys.integration, "tcp-1"))
        assert resp.status_code == 202, resp.text
        listed = await http.get("/api/v1/incidents", headers=keys.auth(keys.viewer))
        assert listed.json()["total"] == 1


async def test_body_and_alert_caps_answer_413(api: httpx.AsyncClient, keys: Keys, settings) -> None:  # noqa: ANN001
    from api.main import create_app

    small = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_body_bytes": 2000, "max_alerts_per_request": 3})}
    )
    app = create_app(small)
    auth = keys.auth(keys.integration)
    alert = {"status": "firing", "labels": {"alertname": "A", "service": "s"}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
        err = assert_error(
            await http.post("/api/v1/integrations/alertmanager", json={"status": "firing", "alerts": [alert] * 4},
                            headers=auth),
            413, "payload_too_large",
        )
        assert err["details"] == {"alerts": 4, "limit": 3} and "max_alerts" in err["message"]
        big = {"status": "firing", "alerts": [{**alert, "annotations": {"summary": "x" * 3000}}]}
        assert_error(await http.post("/api/v1/integrations/alertmanager", json=big, headers=auth), 413, "payload_too_large")


async def test_alerts_api(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    from tests.flows import am_body, post_alertmanager

    first = await post_alertmanager(api, keys.integration, am_body("alertmanager-0.25-webhook-firing.json"))
    await post_alertmanager(api, keys.integration, am_body("alertmanager-0.25-webhook-firing.json"))
    await trigger(api, keys, dedup_key="other", component="search", klass="Slow")
    viewer = keys.auth(keys.viewer)

    async def items(**params: str) -> list[dict]:
        resp = await api.get("/api/v1/alerts", params=params, headers=viewer)
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]

    assert len(await items()) == 2
    [checkout] = await items(group="service=checkout|alertname=AccCheckoutLatency")
    assert checkout["incident"] == first["incidents"][0]
    assert checkout["count"] == 2 and checkout["delivered"] is True
    assert checkout["first_seen"] <= checkout["last_seen"]
    assert await items(incident=first["incidents"][0]) == [checkout]
    assert await items(fingerprint=checkout["fingerprint"]) == [checkout]
    assert await items(status="resolved") == []
    assert_error(await api.get("/api/v1/alerts", params={"incident": "x"}, headers=viewer), 422, "validation_error")
    assert_error(await api.get("/api/v1/alerts"), 401, "unauthorized")
