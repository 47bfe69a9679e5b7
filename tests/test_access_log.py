"""Every path that carries a secret token (ack, view, heartbeat check-in, calendar feed) is redacted from uvicorn's
access log, once the app's routers are loaded."""

from __future__ import annotations

import logging

import pytest

import api.main  # noqa: F401 - loading the routers registers their redactions
from api.access_log import ACCESS_LOG


@pytest.mark.parametrize("path", [
    "/ack/s3cret-token", "/view/s3cret-token", "/api/v1/heartbeats/check-in/s3cret-token",
    "/api/v1/calendars/s3cret-token.ics?weeks=4",
])
def test_tokens_in_paths_are_redacted(path: str) -> None:
    # uvicorn's access record: '%s - "%s %s HTTP/%s" %d' with the path among its args.
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", path, "1.1", 200), None)
    for f in ACCESS_LOG.filters:
        assert f.filter(record)  # type: ignore[union-attr]
    logged = record.getMessage()
    assert "s3cret-token" not in logged and "<redacted>" in logged, logged
