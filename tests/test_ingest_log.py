"""The ingestion log in a storm (issue 11): a request that only repeats alerts already delivered is logged at
debug, one that brings anything new at info (the access log has every request either way)."""

from __future__ import annotations

import httpx
from structlog.testing import capture_logs

from tests.conftest import Keys
from tests.helpers import pd_event


def _levels(entries: list[dict], event: str) -> list[str]:
    return [e["log_level"] for e in entries if e["event"] == event]


async def test_repeats_are_logged_at_debug_and_news_at_info(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    am = {"status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "LogLevel", "service": "log"}, "fingerprint": "log-level"},
    ]}
    headers = keys.auth(keys.integration)
    with capture_logs() as entries:
        first = await api.post("/api/v1/integrations/alertmanager", json=am, headers=headers)
        again = await api.post("/api/v1/integrations/alertmanager", json=am, headers=headers)
        pd_first = await api.post("/v2/enqueue", json=pd_event(keys.integration, "log-level-pd"))
        pd_again = await api.post("/v2/enqueue", json=pd_event(keys.integration, "log-level-pd"))
    assert (first.json()["outcomes"]["new"], again.json()["outcomes"]) == (1, {"repeat": 1})
    assert _levels(entries, "alertmanager webhook") == ["info", "debug"]
    assert [r.status_code for r in (pd_first, pd_again)] == [202, 202]
    assert _levels(entries, "pagerduty event") == ["info", "debug"]
    new = next(e for e in entries if e["event"] == "alertmanager webhook")
    assert new["outcomes"]["new"] == 1
