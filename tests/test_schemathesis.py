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
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Keys
from vigil.settings import Settings

SEED = 20260901
EXAMPLES = 6  # per operation, generation mode and key: about 1,000 requests, a minute on 2 cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def fuzz(base_url: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Run every operation; (requests sent, one line per failure)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sent = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
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
                try:
                    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
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
    return sent, failures


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The failed-authentication limit off: the no-key run fails authentication on purpose, hundreds of times."""
    return settings.model_copy(update={"api": settings.api.model_copy(update={"auth_failure_limit": "100000/minute"})})


@pytest.mark.parametrize("key", ["admin", "none"])
async def test_openapi_fuzz(live_api: str, worker: None, keys: Keys, key: str) -> None:
    headers = keys.auth(keys.admin) if key == "admin" else {}
    sent, failures = await asyncio.to_thread(fuzz, live_api, headers)
    assert sent > 300
    kinds = Counter(line.split(":", 1)[0] for line in failures)
    first: dict[str, str] = {}
    for line in failures:
        first.setdefault(line.split(":", 1)[0], line)
    assert not failures, f"{len(failures)} failures in {sent} requests; one of each kind:\n" + "\n".join(
        f"{kinds[kind]}x {line}" for kind, line in first.items()
    )
