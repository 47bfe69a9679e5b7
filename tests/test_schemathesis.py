"""A bounded schemathesis run of the whole OpenAPI against the live app: no 5xx, no answer the schema does not
describe (status, content type, headers, body), with an admin key and with none.

Schemathesis' Python API (hypothesis strategies per operation), positive and negative examples, a fixed seed.
Its requests block, so they run in a thread while the test's event loop serves the app (uvicorn, live_api).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Keys
from vigil.settings import Settings

SEED = 20260901
EXAMPLES = 6  # per operation, generation mode and key: about 1,000 requests, a minute on 2 cores
# negative_data_rejection: a body the schema calls invalid (`false` where it says integer) must not get a 2xx.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


def fuzz(base_url: str, headers: dict[str, str], integration_key: str | None) -> tuple[Counter[str], list[str]]:
    """Run every operation; (2xx answers per operation, one line per failure). With `integration_key`, the ingestion
    endpoints get it (as Bearer, or as the body's routing_key) so that their bodies are fuzzed past the key."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sent = 0
    accepted: Counter[str] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Revoking keys last: a random id may be the run's own admin key, and every later request would be a 401.
    operations.sort(key=lambda op: op.method.upper() == "DELETE" and "/keys/" in op.path)
    for operation in operations:
        # /readyz answers 503 when a check fails or times out, as documented (a busy CI machine can make a check
        # miss its deadline): the answer must conform, but a 503 there is the contract, not a server error.
        checks = [c for c in CHECKS if c is not not_a_server_error] if operation.path == "/readyz" else CHECKS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.seed(SEED)
            @hypothesis.settings(
                max_examples=EXAMPLES, database=None, deadline=None, derandomize=False,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                nonlocal sent
                sent += 1
                sent_headers = _keys(case, headers, integration_key)
                try:
                    response = case.call_and_validate(base_url=base_url, headers=sent_headers, checks=checks,
                                                      timeout=30)
                    if response.status_code < 300:
                        accepted[operation.label] += 1
                except (Failure, FailureGroup) as err:
                    found = err.exceptions if isinstance(err, FailureGroup) else (err,)
                    for failure in found:
                        failures.append(f"{operation.label} [{mode.value}] {failure.title}: {failure.message[:300]}"
                                        f" <- {case.as_curl_command()[:400]}")

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to negate: the operation has no parameters or body (GET /healthz).
                assert mode is GenerationMode.NEGATIVE, operation.label
    accepted["requests"] = sent
    return accepted, failures


def _negated(case: schemathesis.Case, location: ParameterLocation) -> bool:
    info = case.meta.components.get(location) if case.meta else None
    return info is not None and info.mode is GenerationMode.NEGATIVE


def _keys(case: schemathesis.Case, headers: dict[str, str], integration_key: str | None) -> dict[str, str]:
    """The run's key for this case, unless the case is about a missing or malformed key (negated headers), and
    the integration key on ingestion endpoints (in the body's routing_key unless the body is the negated part)."""
    if _negated(case, ParameterLocation.HEADER):
        return {}
    if not integration_key or "ingestion" not in (case.operation.tags or []):
        return headers
    if isinstance(case.body, dict) and not _negated(case, ParameterLocation.BODY):
        case.body["routing_key"] = integration_key
    return {"Authorization": f"Bearer {integration_key}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The failed-authentication limit off: the no-key run fails authentication on purpose, hundreds of times."""
    return settings.model_copy(update={"api": settings.api.model_copy(update={"auth_failure_limit": "100000/minute"})})


@pytest.mark.parametrize("key", ["admin", "none"])
async def test_openapi_fuzz(live_api: str, worker: None, keys: Keys, key: str) -> None:
    if key == "admin":
        accepted, failures = await asyncio.to_thread(fuzz, live_api, keys.auth(keys.admin), keys.integration)
    else:
        accepted, failures = await asyncio.to_thread(fuzz, live_api, {}, None)
    sent = accepted.pop("requests")
    print(f"schemathesis ({key} key): {sent} requests, 2xx per operation: {dict(accepted)}")
    assert sent > 300
    if key == "admin":  # the run reached past the keys: bodies were accepted, alerts were ingested
        assert accepted["POST /api/v1/integrations/alertmanager"] and accepted["POST /api/v1/contact-groups"], accepted
        assert accepted["GET /api/v1/incidents"] and accepted["GET /api/v1/users"], accepted
    else:
        assert set(accepted) <= {"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"}, accepted
    kinds = Counter(line.split(":", 1)[0] for line in failures)
    first: dict[str, str] = {}
    for line in failures:
        first.setdefault(line.split(":", 1)[0], line)
    assert not failures, f"{len(failures)} failures in {sent} requests; one of each kind:\n" + "\n".join(
        f"{kinds[kind]}x {line}" for kind, line in first.items()
    )
