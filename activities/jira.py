"""Jira side effects through the real `jira` client: create the incident's issue (idempotently), transition it,
comment on it. Every call is logged in jira_sync_log. Runs in the worker's thread pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import requests
from jira import JIRA, JIRAError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from vigil.alert_context import AlertContext, load_contexts
from vigil.contracts import JiraCallInput, JiraCallResult, JiraIssueFields, JiraOpKind
from vigil.jira_client import make_client
from vigil.logging import get_logger
from vigil.models import Incident, JiraIssue, JiraSyncEntry, utcnow
from vigil.settings import JiraSettings
from vigil.contracts import incident_ref

log = get_logger(__name__)
REJECTED = "JiraRejected"  # a 400/403/404: retrying cannot help; recorded and skipped
PERMANENT_STATUSES = {400, 403, 404, 410}  # 410: an API Jira removed (a client/Jira mismatch), not an outage
# Jira's description holds 32,767 characters; the alerts and their context get this much of it.
JIRA_ALERTS_CHARS = 30_000


def label(number: int) -> str:
    return f"vigil-{incident_ref(number)}"


class JiraActivities:
    def __init__(
        self, sessions: sessionmaker[Session], settings: JiraSettings,
        client_factory: Callable[[JiraSettings], JIRA] = make_client,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self._factory = client_factory
        self._local = threading.local()  # requests sessions are not shared between threads

    def _client(self) -> JIRA:
        if not self.settings.enabled:
            # Retried: a worker configured for Jira (or this one, once configured) picks the change up.
            raise ApplicationError("Jira sync is not configured on this worker (VIGIL_JIRA_URL)", type="JiraOff")
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._factory(self.settings)
        return client

    @activity.defn
    def apply_jira_op(self, inp: JiraCallInput) -> JiraCallResult:
        """Apply one change to the incident's Jira issue; errors are classified for Temporal's retry policy."""
        started = time.monotonic()
        op = inp.op
        operation = op.kind.value if op.kind != JiraOpKind.transition else f"transition:{op.status.value}"  # type: ignore[union-attr]
        try:
            result, jira_id = self._apply(inp)
        except JIRAError as err:
            self._log(inp, operation, inp.key, "failed" if err.status_code in PERMANENT_STATUSES else "retrying",
                      started, error=_describe(err))
            raise _classified(err) from err
        except (requests.ConnectionError, requests.Timeout) as err:
            self._log(inp, operation, inp.key, "retrying", started, error=f"{type(err).__name__}: {err}")
            raise
        detail = result.detail if result.outcome != "ok" else None
        self._log(inp, operation, result.key, result.outcome, started, error=detail, jira_id=jira_id)
        return result

    def _apply(self, inp: JiraCallInput) -> tuple[JiraCallResult, str | None]:
        if inp.op.kind == JiraOpKind.create:
            return JiraCallResult(key=self._create(inp)), None
        if inp.key is None:
            return JiraCallResult(outcome="skipped", detail="the incident has no Jira issue"), None
        client = self._client()
        if inp.op.kind == JiraOpKind.comment:
            comment = client.add_comment(inp.key, inp.op.body or "")
            return JiraCallResult(key=inp.key), str(comment.id)
        if inp.op.kind == JiraOpKind.transition:
            assert inp.op.status is not None
            name = self.settings.transitions.get(inp.op.status.value)
            if name is None:
                return JiraCallResult(key=inp.key, outcome="skipped", detail=f"no transition mapped for {inp.op.status.value}"), None
            available = {t["name"]: t["id"] for t in client.transitions(inp.key)}
            if name not in available:
                detail = f"transition {name!r} is not available now (available: {', '.join(sorted(available)) or 'none'})"
                return JiraCallResult(key=inp.key, outcome="skipped", detail=detail), None
            client.transition_issue(inp.key, available[name])
            return JiraCallResult(key=inp.key, detail=name), None
        if inp.op.kind == JiraOpKind.assign:
            return self._assign(client, inp.key, inp.op.body), None
        return JiraCallResult(key=inp.key, outcome="skipped", detail=f"nothing to do for {inp.op.kind.value}"), None

    def _assign(self, client: JIRA, key: str, email: str | None) -> JiraCallResult:
        """Assign by email: Cloud needs the account id, Data Center the username; the client maps either."""
        if email is None:
            client.assign_issue(key, None)
            return JiraCallResult(key=key, detail="unassigned")
        # Cloud searches users with `query`, Data Center with `user`.
        found = client.search_users(query=email) if client._is_cloud else client.search_users(user=email)  # noqa: SLF001
        if not any(getattr(u, "emailAddress", None) == email for u in found) and len(found) != 1:
            return JiraCallResult(key=key, outcome="skipped", detail=f"no single Jira user with email {email}")
        client.assign_issue(key, email)
        return JiraCallResult(key=key, detail=email)

    def _create(self, inp: JiraCallInput) -> str:
        """The incident's issue: the stored mapping, else one found by its label (created by an attempt that
        died before storing it), else a new one. A crash anywhere in between never makes a second issue."""
        number = inp.issue.number
        with self.sessions() as session:
            known = session.get(JiraIssue, number)
            if known is not None:
                return known.jira_key
        client = self._client()
        found = client.search_issues(f'labels = "{label(number)}"', maxResults=1, fields="key")
        if found:
            key = found[0].key
            log.warning("jira issue found by label; recording it", incident=incident_ref(number), jira_key=key)
        else:
            key = client.create_issue(fields=self._fields(inp.project_key, inp.issue), prefetch=False).key
        self._record_key(number, key)
        return key

    def _fields(self, project_key: str, issue: JiraIssueFields) -> dict:
        contexts = self._contexts(issue)
        lines = [
            f"* [{a.status.value}] {_wiki(a.summary)} ({a.severity.value})" + _jira_context(contexts.get(a.fingerprint))
            for a in issue.alerts
        ]
        firing = _within("\n".join(lines), JIRA_ALERTS_CHARS) or "(none yet)"
        if issue.alert_count > len(issue.alerts):
            firing += f"\n* … and {issue.alert_count - len(issue.alerts)} more"
        return {
            "project": {"key": project_key},
            "issuetype": {"name": self.settings.issue_type},
            "summary": f"{incident_ref(issue.number)} [{issue.severity.value}] {issue.service}: {issue.title}"[:250],
            "description": (
                f"Vigil incident *{incident_ref(issue.number)}* ({issue.severity.value}, service {issue.service}).\n\n"
                f"h3. Alerts\n{firing}\n\n"
                f"* Vigil: {issue.incident_url}\n* Temporal UI: {issue.temporal_url}\n"
            ),
            "priority": {"name": self.settings.priorities.get(issue.severity.value, "Medium")},
            "labels": ["vigil", label(issue.number)],
        }

    def _contexts(self, issue: JiraIssueFields) -> dict[str, AlertContext]:
        """The digest's alert context from the database (not carried in history); an outage costs the context."""
        try:
            with self.sessions() as session:
                return load_contexts(session, number=issue.number, keys=[a.fingerprint for a in issue.alerts])
        except SQLAlchemyError as err:
            log.error("alert context unavailable; issue created without it", incident=incident_ref(issue.number),
                      error=str(err))
            return {}

    def _record_key(self, number: int, key: str) -> None:
        with self.sessions.begin() as session:
            if session.get(JiraIssue, number) is None:
                session.add(JiraIssue(incident_number=number, jira_key=key, created_at=utcnow()))
            incident = session.get(Incident, number)
            if incident is not None:
                incident.jira_key = key

    def _log(
        self, inp: JiraCallInput, operation: str, key: str | None, status: str, started: float, *,
        error: str | None = None, jira_id: str | None = None,
    ) -> None:
        """Best effort, like the notification log: a DB outage costs the row, not the sync."""
        latency = int((time.monotonic() - started) * 1000)
        attempt = activity.info().attempt
        log.info("jira call", incident=incident_ref(inp.issue.number), operation=operation, jira_key=key, status=status,
                 error=error, latency_ms=latency, attempt=attempt)
        try:
            with self.sessions.begin() as session:
                session.add(JiraSyncEntry(
                    incident_number=inp.issue.number, direction="out", operation=operation, jira_key=key,
                    status=status, error=error, jira_id=jira_id, latency_ms=latency, attempt=attempt,
                    created_at=utcnow(),
                ))
        except SQLAlchemyError as err:
            log.error("jira sync log unavailable", incident=incident_ref(inp.issue.number), error=str(err))


def _wiki(text: str) -> str:
    """Alert text as plain Jira wiki text: markup characters are escaped, so `[x|javascript:…]` stays text."""
    return "".join(f"\\{c}" if c in "[]{}|*_-+^~?#!" else c for c in text)


def _jira_context(context: AlertContext | None) -> str:
    """An alert's runbook (first), links, description and details as nested list items, cut as pages cut them."""
    if context is None:
        return ""
    items = [f"[{_wiki(text)}|{href}]" for text, href in context.shown_links()]
    items += [f"Image: [{_wiki(alt)}|{href}]" for alt, href in context.shown_images()]
    if description := context.shown_description():
        items.append(_wiki(description))
    items += [f"{_wiki(k)}: {_wiki(v)}" for k, v in context.shown_details()]
    return "".join(f"\n** {item}" for item in items)


def _within(text: str, limit: int) -> str:
    """Jira refuses a description over 32,767 characters: the alerts' part is cut at a line within `limit`."""
    if len(text) <= limit:
        return text
    head = text[:limit].rsplit("\n", 1)[0]
    return f"{head}\n* … cut at {limit:,} characters; the whole context is in Vigil"


def _describe(err: JIRAError) -> str:
    text = (err.text or "").strip()
    return f"HTTP {err.status_code}: {text[:300]}" if err.status_code else f"{text[:300]}"


def _classified(err: JIRAError) -> ApplicationError:
    """400/403/404: not retried (recorded, the sync moves on). 429: retried after Retry-After. Others: retried."""
    if err.status_code in PERMANENT_STATUSES:
        return ApplicationError(_describe(err), type=REJECTED, non_retryable=True)
    delay = None
    if err.status_code == 429 and err.response is not None:
        retry_after = err.response.headers.get("Retry-After", "")
        delay = timedelta(seconds=float(retry_after)) if retry_after.replace(".", "", 1).isdigit() else None
    return ApplicationError(_describe(err), type="JiraUnavailable", next_retry_delay=delay)


def jira_issue_of(sessions: sessionmaker[Session], number: int) -> str | None:
    with sessions() as session:
        return session.scalar(select(JiraIssue.jira_key).where(JiraIssue.incident_number == number))
