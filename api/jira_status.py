"""`checks.jira` of /readyz: the Jira settings checked against the project, once at start and every 5 minutes."""

from __future__ import annotations

import threading
import time

from vigil.jira_check import check_jira
from vigil.logging import get_logger
from vigil.settings import JiraSettings

log = get_logger(__name__)
RECHECK_SECONDS = 300.0


class JiraStatus:
    """Caches the last check: Jira is asked at most every RECHECK_SECONDS, one check at a time."""

    def __init__(self, settings: JiraSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._result: str | None = None
        self._checked_at = 0.0

    def get(self) -> str:
        """`ok`, `off (...)` or `error: <what is wrong>`; blocking (run it in a thread)."""
        if not self.settings.enabled:
            return "off (VIGIL_JIRA_URL is not set)"
        with self._lock:
            if self._result is None or time.monotonic() - self._checked_at > RECHECK_SECONDS:
                problems = check_jira(self.settings)
                self._result = "ok" if not problems else "error: " + "; ".join(problems)
                self._checked_at = time.monotonic()
                if problems:
                    log.warning("jira settings do not match the project", problems=problems)
            return self._result

    def cached(self) -> str:
        """The last result without asking Jira (for a readiness probe that ran out of time)."""
        return self._result or "unknown (checking Jira)"
