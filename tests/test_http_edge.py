"""Clean answers at the HTTP edge: out-of-range integers, oversize chunked bodies, auth before body, a locked DB."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import Keys
from tests.test_api import assert_error

TOO_BIG = 2**63  # one past the largest BIGINT/SQLite INTEGER


def _integer_params(openapi: dict) -> list[tuple[str, str, dict, dict]]:
    """(method, path with too-big ints, query, json) for every operation with an integer path or query parameter."""
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
            cases.append((method.upper(), url, query, {}))
    return cases


async def test_integers_past_int64_are_404_or_422_everywhere(api: httpx.AsyncClient, keys: Keys) -> None:
    openapi = (await api.get("/openapi.json")).json()
    cases = _integer_params(openapi)
    assert len(cases) >= 15, cases
    admin = keys.auth(keys.admin)
    for method, url, query, body in cases:
        resp = await api.request(method, url, params=query, json=body or None, headers=admin)
        assert resp.status_code in (404, 422), (method, url, query, resp.status_code, resp.text)
        assert set(resp.json()) == {"error"}


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
