"""Secrets in URL paths (ack, view, check-in and calendar tokens) are redacted from uvicorn's access log."""

from __future__ import annotations

import logging
import re

ACCESS_LOG = logging.getLogger("uvicorn.access")


class RedactPathTokens(logging.Filter):
    """Uvicorn's access log writes the request path, which holds the whole token after `prefix`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.pattern = re.compile(rf"({re.escape(prefix)})[^\s?/\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # Every request's line passes here: most hold no token, and a substring test is far cheaper than the regex.
        if isinstance(args, tuple) and any(isinstance(a, str) and self.prefix in a for a in args):
            record.args = tuple(
                self.pattern.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in args
            )
        return True


def redact_tokens_after(prefix: str) -> None:
    """Redact the path segment after `prefix` (e.g. "/ack/") in the access log; once per prefix per process."""
    if not any(isinstance(f, RedactPathTokens) and f.prefix == prefix for f in ACCESS_LOG.filters):
        ACCESS_LOG.addFilter(RedactPathTokens(prefix))
