"""Jira side effects through the real `jira` client: create the incident's issue (idempotently), transition it,
comment on it, attach its completed postmortem and create its action items (both once). Every call is logged in
jira_sync_log. Runs in the worker's thread pool."""

from __future__ import annotations

import dataclasses
import io
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
from vigil.models import Incident, JiraIssue, JiraSyncEntry, Postmortem, PostmortemSection, utcnow
from vigil.rca.artifacts import Artifact, ArtifactNotFound, ArtifactStore
from vigil.rca.document import ActionItem, action_items
from vigil.rca.postmortems import document_view
from vigil.rca.render import to_pdf
from vigil.settings import JiraSettings
from vigil.contracts import incident_ref

log = get_logger(__name__)
REJECTED = "JiraRejected"  # a 400/403/404: retrying cannot help; recorded and skipped
# 410: an API Jira removed (a client/Jira mismatch), not an outage; 413: an attachment over Jira's size limit.
PERMANENT_STATUSES = {400, 403, 404, 410, 413}
# Action items relate to the incident's issue through Jira's default link type ("relates to" both ways).
ACTION_LINK_TYPE = "Relates"
# Jira's description holds 32,767 characters; the alerts and their context get this much of it.
JIRA_ALERTS_CHARS = 30_000


def label(number: int) -> str:
    return f"vigil-{incident_ref(number)}"


def action_label(number: int, item_key: str | None = None) -> str:
    """Every action item of the incident carries `vigil-INC-<n>-action`, and its own row's key after it."""
    return f"{label(number)}-action" + (f"-{item_key}" if item_key else "")


def postmortem_filename(number: int) -> str:
    return f"{incident_ref(number)}-postmortem.pdf"


class _NoArtifacts:
    """For a worker built without an artifact store: the PDF goes without its charts."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        raise ArtifactNotFound(key)

    def get(self, key: str) -> Artifact:
        raise ArtifactNotFound(key)

    def delete(self, key: str) -> None:
        return None


class JiraActivities:
    def __init__(
        self, sessions: sessionmaker[Session], settings: JiraSettings,
        client_factory: Callable[[JiraSettings], JIRA] = make_client, *, store: ArtifactStore | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.store: ArtifactStore = store or _NoArtifacts()  # the postmortem PDF's charts
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

    @activity.defn(no_thread_cancel_exception=True)
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
        if inp.op.kind == JiraOpKind.attach_postmortem:
            return self._attach_postmortem(client, inp.key, inp.issue.number)
        if inp.op.kind == JiraOpKind.action_items:
            return self._action_items(client, inp.key, inp), None
        return JiraCallResult(key=inp.key, outcome="skipped", detail=f"nothing to do for {inp.op.kind.value}"), None

    def _assign(self, client: JIRA, key: str, email: str | None) -> JiraCallResult:
        """Assign by email: Cloud needs the account id, Data Center the username; the client maps either."""
        if email is None:
            client.assign_issue(key, None)
            return JiraCallResult(key=key, detail="unassigned")
        if _jira_user(client, email) is None:
            return JiraCallResult(key=key, outcome="skipped", detail=f"no single Jira user with email {email}")
        client.assign_issue(key, email)
        return JiraCallResult(key=key, detail=email)

    def _attach_postmortem(self, client: JIRA, key: str, number: int) -> tuple[JiraCallResult, str | None]:
        """The postmortem's PDF, rendered from the database, attached unless a file of its name is there already
        (an attempt whose answer was lost, or a second completion)."""
        filename = postmortem_filename(number)
        attached = client.issue(key, fields="attachment").fields.attachment or []
        known = next((a for a in attached if a.filename == filename), None)
        if known is not None:
            return JiraCallResult(key=key, outcome="skipped", detail=f"{filename} is already attached"), str(known.id)
        with self.sessions() as session:
            if session.get(Postmortem, number) is None:
                return JiraCallResult(key=key, outcome="skipped", detail="the incident has no postmortem"), None
            view = document_view(session, number=number, store=self.store)
        # The workflow accepted the completion; the API marks the row complete only after it, so it may lag.
        pdf = to_pdf(dataclasses.replace(view, status="complete"))
        attachment = client.add_attachment(key, io.BytesIO(pdf), filename=filename)
        return JiraCallResult(key=key, detail=filename), str(attachment.id)

    def _action_items(self, client: JIRA, key: str, inp: JiraCallInput) -> JiraCallResult:
        """Each row of the action-items table as an issue that relates to the incident's, created once per row:
        a row's issue carries the label `vigil-INC-<n>-action-<row key>`, and a retry (or a second completion)
        finds it by that label, or among the incident issue's links, before creating anything."""
        number = inp.issue.number
        with self.sessions() as session:
            body = session.scalar(select(PostmortemSection.body).where(
                PostmortemSection.incident_number == number, PostmortemSection.key == "action_items"))
        items = action_items(body or "")
        if not items:
            return JiraCallResult(key=key, outcome="skipped", detail="no action items")
        links = client.issue(key, fields="issuelinks").fields.issuelinks or []
        linked = {other.key for link in links if link.type.name == ACTION_LINK_TYPE
                  for other in (getattr(link, "outwardIssue", None), getattr(link, "inwardIssue", None)) if other}
        found = self._action_issues(client, number, linked)
        created = 0
        for item in items:
            item_key = found.get(item.key)
            if item_key is None:
                item_key = self._create_action(client, inp, item)
                found[item.key] = item_key
                created += 1
            if item_key not in linked:
                client.create_issue_link(ACTION_LINK_TYPE, key, item_key)
                linked.add(item_key)
        keys = ", ".join(found[i.key] for i in items)
        return JiraCallResult(key=key, detail=f"{len(items)} action item(s), {created} created: {keys}")

    def _action_issues(self, client: JIRA, number: int, linked: set[str]) -> dict[str, str]:
        """Row key -> issue key of the action items that exist. Jira's search index lags a create by a few
        seconds; the incident issue's links are read directly, so an item created and linked just before a
        crash is found even while search misses it."""
        prefix = action_label(number) + "-"
        found: dict[str, str] = {}
        issues = list(client.search_issues(f'labels = "{action_label(number)}"', maxResults=False, fields="labels"))
        unseen = linked - {i.key for i in issues}
        issues += [client.issue(k, fields="labels") for k in sorted(unseen)]
        for issue in issues:
            for name in issue.fields.labels or []:
                if name.startswith(prefix):
                    found.setdefault(name.removeprefix(prefix), issue.key)
        return found

    def _create_action(self, client: JIRA, inp: JiraCallInput, item: ActionItem) -> str:
        """The item's issue: summary, owner as assignee when Jira knows the email, due date. A project whose
        screens refuse the assignee or the due date still gets the issue, with both in its description."""
        number = inp.issue.number
        fields: dict = {
            "project": {"key": inp.project_key},
            "issuetype": {"name": self.settings.issue_type},
            "summary": f"{incident_ref(number)}: {item.action}"[:250],
            "description": (
                f"Action item of the postmortem of *{incident_ref(number)}* ({inp.key}).\n\n"
                f"* Owner: {_wiki(item.owner) or '—'}\n* Due: {_wiki(item.due_text) or '—'}\n"
                f"* Postmortem: {inp.issue.incident_url}/postmortem\n"
            ),
            "labels": [action_label(number), action_label(number, item.key)],
        }
        extra: dict = {}
        user = _jira_user(client, item.owner) if "@" in item.owner else None
        if user is not None:
            extra["assignee"] = {"accountId": user.accountId} if client._is_cloud else {"name": user.name}  # noqa: SLF001
        if item.due is not None:
            extra["duedate"] = item.due.isoformat()
        try:
            return client.create_issue(fields=fields | extra, prefetch=False).key
        except JIRAError as err:
            if err.status_code != 400 or not extra:
                raise
            log.warning("action item refused with assignee/due date; created without them",
                        incident=incident_ref(number), error=_describe(err))
            return client.create_issue(fields=fields, prefetch=False).key

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


def _jira_user(client: JIRA, email: str):  # noqa: ANN202 - the client's User resource
    """The one Jira account with this email (Cloud searches users with `query`, Data Center with `user`)."""
    found = client.search_users(query=email) if client._is_cloud else client.search_users(user=email)  # noqa: SLF001
    exact = [u for u in found if getattr(u, "emailAddress", None) == email]
    if exact:
        return exact[0]
    return found[0] if len(found) == 1 else None


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
